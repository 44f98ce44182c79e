//! Classic speculation: a chain of γ drafter tokens a round, no pool.

use std::sync::Arc;

use crate::controller::{CostCurve, DraftPolicy, FixedPolicy};
use crate::engine::{DrafterConfig, EngineError};

use super::{model_source, DraftSource, DraftStrategy, Entry, Opening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub gamma: usize,
}

pub const ENTRY: Entry = Entry {
    name: "chain",
    usage: "chainN",
    about: "N drafter tokens a round (fixed γ = N), no phrase pool",
    build: |rest| match rest.parse() {
        Ok(gamma) if gamma > 0 => Some(Arc::new(Chain { gamma })),
        _ => None,
    },
};

impl DraftStrategy for Chain {
    fn name(&self) -> String {
        format!("chain{}", self.gamma)
    }

    fn policy(&self, _costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        Box::new(FixedPolicy(self.gamma))
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        model_source(&self.name(), at, DrafterConfig { use_pool: false, ..DrafterConfig::default() })
    }
}
