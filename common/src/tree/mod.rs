//! Draft trees: the drafter's guesses, rooted at the last committed token.

mod draft_tree;
mod error;
mod verify_inputs;

pub use draft_tree::{DraftTree, TreeLimits};
pub use error::TreeError;
