//! A chain whose length follows "+2 on full accept, −1 otherwise", no pool.

use std::sync::Arc;

use crate::controller::{CostCurve, DraftPolicy, HeuristicPolicy};
use crate::engine::{DrafterConfig, EngineError};

use super::{bare, model_source, DraftSource, DraftStrategy, Entry, Opening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heuristic;

pub const ENTRY: Entry = Entry {
    name: "heuristic",
    usage: "heuristic",
    about: "a drafter chain, +2 tokens after a fully accepted round, −1 otherwise",
    build: |rest| bare(rest, || Arc::new(Heuristic)),
};

impl DraftStrategy for Heuristic {
    fn name(&self) -> String {
        "heuristic".into()
    }

    fn policy(&self, _costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        Box::new(HeuristicPolicy::default())
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        model_source(&self.name(), at, DrafterConfig { use_pool: false, ..DrafterConfig::default() })
    }
}
