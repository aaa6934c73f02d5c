//! Redaction lives with the workspace (where command output is produced); the engine passes
//! every artifact (`Engine::put_artifact`), every event's data (`Engine::append`) and a tool's
//! output before the model sees it through it.

pub use flightdeck_workspace::redact::{Secrets, MIN_SECRET_LEN};
