//! flightdeck's pure domain: ids, the events of a mission's timeline, the mission state
//! machine (a fold over events), mission templates, canonical JSON and the hash chain.
//!
//! Invariant: nothing here does IO, reads the clock or the environment, or draws random
//! numbers; callers pass those in. Everything here is deterministic.

pub mod budget;
pub mod chain;
pub mod clock;
pub mod event;
pub mod hash;
pub mod ids;
pub mod jcs;
pub mod metrics;
pub mod quota;
pub mod schedule;
pub mod state;
pub mod template;
pub mod views;

pub use event::{EventKind, StoredEvent};
pub use hash::Digest;
pub use ids::MissionId;
pub use state::{MissionState, MissionStatus};
pub use template::Template;

/// The version of this build, recorded in `mission.created`.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
