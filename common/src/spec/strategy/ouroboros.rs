//! Ouroboros: a drafter trunk extended by pool phrases it agrees with, pool
//! phrases as side branches, the drafter's runner-up beside trunk tokens it
//! is unsure of (dynamic trees, greedy only), and the adaptive controller
//! sizing trunk and branches.

use std::sync::Arc;

use crate::controller::{Controller, ControllerConfig, CostCurve, DraftPolicy, Objective};
use crate::engine::{DrafterConfig, EngineError};

use super::{adaptive, bare, model_source, DraftSource, DraftStrategy, Entry, Opening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ouroboros {
    /// What the controller maximises.
    pub objective: Objective,
}

pub const ENTRY: Entry = Entry {
    name: "ouroboros",
    usage: "ouroboros",
    about: "phrase pool and adaptive controller, maximising tokens per second",
    build: |rest| bare(rest, || Arc::new(Ouroboros { objective: Objective::Latency })),
};

pub const COMPUTE_ENTRY: Entry = Entry {
    name: "ouroboros-compute",
    usage: "ouroboros-compute",
    about: "ouroboros, maximising tokens per unit of verifier compute",
    build: |rest| bare(rest, || Arc::new(Ouroboros { objective: Objective::VerifierCompute })),
};

impl DraftStrategy for Ouroboros {
    fn name(&self) -> String {
        match self.objective {
            Objective::Latency => "ouroboros".into(),
            Objective::VerifierCompute => "ouroboros-compute".into(),
        }
    }

    fn policy(&self, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        let controller = Controller::new(ControllerConfig { objective: self.objective, ..ControllerConfig::default() })
            .expect("the default controller configuration is valid");
        adaptive(controller, costs)
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        model_source(&self.name(), at, DrafterConfig { siblings: true, ..DrafterConfig::default() })
    }
}
