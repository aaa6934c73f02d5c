//! The mission engine: creates missions from templates and drives them, step by step, to the
//! end or to a point where they park. Every action is an event appended to the mission's
//! timeline before (request) and after (result) it happens; the mission's state is the fold
//! of those events, so a mission continues from its timeline after any crash.
//!
//! Invariants:
//! - the engine is the only writer of a timeline, and appends with optimistic concurrency;
//! - it never reads the wall clock, randomness or the environment for a decision except
//!   through a recorded event (the clock reading is the event's `at`);
//! - it knows nothing of HTTP or terminals: progress goes to an [`Observer`].

mod acceptance;
mod agent;
mod config;
pub mod container;
mod driver;
mod engine;
mod error;
pub mod gate;
pub mod inputs;
mod log;
mod model_call;
mod models;
pub mod people;
mod place;
pub mod ports;
mod pr;
mod program;
pub mod protocol;
mod quota;
mod redact;
mod replay;
mod request_record;
mod shared;
pub mod tools;
mod worker;
pub mod workspaces;

pub use config::{
    no_shutdown, EngineConfig, LiveParts, Ports, DEFAULT_LEASE_TTL, DEFAULT_STEP_TIMEOUT,
};
pub use container::{container_name, INSTALLATION_LABEL, MISSION_LABEL};
pub use driver::Applied;
pub use engine::{CreateMission, Engine, ForkMission, MissionOrigin, RepoFile};
pub use error::EngineError;
pub use inputs::{Foreign, Refusal, Vote};
pub use log::{load, projection_columns};
pub use models::{resolve_script, ModelSettings, ProviderKind, ProviderSettings, SCRIPT_PATH_HINT};
pub use people::{Channel, Directory, Resolved};
pub use ports::{
    Clock, Observer, RecordedRepo, RegistryLogin, RepoPort, Silent, SystemClock, WorkspaceSettings,
};
pub use pr::{render_pr_description, PrContext};
pub use redact::{Secrets, MIN_SECRET_LEN};
pub use replay::{normalize_output, ReplayMode, ReplayReport};
pub use worker::WorkerId;
pub use workspaces::{
    ContainerRuntime, DockerContainers, LiveWorkspaces, Provisioned, WorkspaceConfig,
    WorkspaceProvider,
};
