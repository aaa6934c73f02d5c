//! What a mission's program works with and how it stops: [`Place`] (the pinned rules, the
//! template, the workspace) and [`Halt`]. Shared by the program's parts (run steps, agents,
//! acceptance, publishing), below all of them.

use std::sync::Arc;

use flightdeck_core::event::MissionCreated;
use flightdeck_core::template::Template;
use flightdeck_workspace::{ConfinedFs, Workspace, Worktree};

use crate::driver::Stop;
use crate::error::EngineError;
use crate::gate::Gates;

/// Why the program stopped before its end: a driver stop (cancel, shutdown, lost lease)
/// or an error.
#[derive(Debug)]
pub(crate) enum Halt {
    Stop(Stop),
    Error(EngineError),
}

impl From<Stop> for Halt {
    fn from(stop: Stop) -> Halt {
        Halt::Stop(stop)
    }
}

impl From<EngineError> for Halt {
    fn from(error: EngineError) -> Halt {
        Halt::Error(error)
    }
}

impl From<flightdeck_workspace::GitError> for Halt {
    fn from(error: flightdeck_workspace::GitError) -> Halt {
        Halt::Error(error.into())
    }
}

/// Where the mission's work happens: its pinned rules, template and workspace.
pub(crate) struct Place {
    pub(crate) gates: Gates,
    pub(crate) created: MissionCreated,
    pub(crate) template: Template,
    pub(crate) worktree: Worktree,
    pub(crate) workspace: Arc<dyn Workspace>,
    pub(crate) fs: ConfinedFs,
}
