//! Hybrid drafting: the phrase pool proposes first, and the drafter model
//! drafts only the rounds the pool has nothing for.
//!
//! A pool phrase costs no drafter time, and with a verify pass of a few
//! tokens costing about one step, a phrase that is often right is the
//! cheapest draft there is. Ouroboros runs the drafter over every phrase
//! before sending it (keeping only what the drafter agrees with); the
//! hybrid sends a well-matched phrase as it is and lets the verifier judge.
//! The choice is made per round, from what the pool holds for the text's
//! last tokens (`engine::drafter::POOL_FIRST_MATCH`).

use std::sync::Arc;

use crate::controller::{Controller, CostCurve, DraftPolicy};
use crate::engine::{DrafterConfig, EngineError};

use super::{adaptive, copy_name, copying, model_source, DraftSource, DraftStrategy, Entry, Opening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hybrid {
    /// Copies of the text's earlier tokens on long matches (`draft::lookup`).
    pub copies: bool,
}

pub const ENTRY: Entry = Entry {
    name: "hybrid",
    usage: "hybrid[-nocopy]",
    about: "copies of earlier text and pool phrases first (no drafter pass), the drafter model where they have nothing",
    build: |rest| copying(rest, |copies| Arc::new(Hybrid { copies })),
};

impl DraftStrategy for Hybrid {
    fn name(&self) -> String {
        copy_name("hybrid", self.copies)
    }

    fn policy(&self, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        adaptive(Controller::default(), costs)
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        model_source(
            &self.name(),
            at,
            DrafterConfig { pool_first: true, siblings: true, copies: self.copies, ..DrafterConfig::default() },
        )
    }
}
