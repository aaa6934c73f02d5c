//! Redaction: every artifact (`log::put_artifact`), every event's data (`MissionLog::append`)
//! and a tool's output before the model sees it pass through [`Secrets`]. It lives in
//! `flightdeck-workspace`, next to the command output it mostly scrubs.

pub use flightdeck_workspace::redact::{Secrets, MIN_SECRET_LEN};
