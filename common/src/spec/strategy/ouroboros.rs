//! Ouroboros: a drafter trunk extended by pool phrases it agrees with, pool
//! phrases as side branches, the drafter's runner-up beside trunk tokens it
//! is unsure of (dynamic trees, greedy only), and the adaptive controller
//! sizing trunk and branches.

use std::sync::Arc;

use crate::controller::{Controller, ControllerConfig, CostCurve, DraftPolicy, Objective};
use crate::engine::{DrafterConfig, EngineError};

use super::{adaptive, copy_name, copying, model_source, DraftSource, DraftStrategy, Entry, Opening};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ouroboros {
    /// What the controller maximises.
    pub objective: Objective,
    /// Copies of the text's earlier tokens on long matches (`draft::lookup`).
    pub copies: bool,
}

pub const ENTRY: Entry = Entry {
    name: "ouroboros",
    usage: "ouroboros[-nocopy]",
    about: "phrase pool and adaptive controller, maximising tokens per second",
    build: |rest| copying(rest, |copies| Arc::new(Ouroboros { objective: Objective::Latency, copies })),
};

pub const COMPUTE_ENTRY: Entry = Entry {
    name: "ouroboros-compute",
    usage: "ouroboros-compute[-nocopy]",
    about: "ouroboros, maximising tokens per unit of verifier compute",
    build: |rest| copying(rest, |copies| Arc::new(Ouroboros { objective: Objective::VerifierCompute, copies })),
};

impl DraftStrategy for Ouroboros {
    fn name(&self) -> String {
        let base = match self.objective {
            Objective::Latency => "ouroboros",
            Objective::VerifierCompute => "ouroboros-compute",
        };
        copy_name(base, self.copies)
    }

    fn objective(&self) -> Objective {
        self.objective
    }

    fn policy(&self, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        let controller = Controller::new(ControllerConfig { objective: self.objective, ..ControllerConfig::default() })
            .expect("the default controller configuration is valid");
        adaptive(controller, costs)
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        model_source(
            &self.name(),
            at,
            DrafterConfig { siblings: true, copies: self.copies, ..DrafterConfig::default() },
        )
    }
}
