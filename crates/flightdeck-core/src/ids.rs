//! Identifiers. They are made from parts the caller supplies (a clock reading and random
//! bits), so this crate stays deterministic.

use std::fmt;

/// A mission id: `m-` followed by a lowercase ULID (sortable by creation time).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MissionId(String);

impl MissionId {
    pub fn from_parts(unix_millis: u64, random: u128) -> MissionId {
        let ulid = ulid::Ulid::from_parts(unix_millis, random);
        MissionId(format!("m-{}", ulid.to_string().to_lowercase()))
    }

    /// Accepts any string that looks like a mission id (`m-` and 26 base32 characters).
    pub fn parse(s: &str) -> Option<MissionId> {
        let rest = s.strip_prefix("m-")?;
        (rest.len() == 26 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| MissionId(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The branch a mission publishes to.
    pub fn branch(&self) -> String {
        format!("flightdeck/{}", self.0)
    }
}

impl fmt::Display for MissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The call id of the tool call that runs step `index` of a template (`run` steps).
/// Deterministic, so a resumed or replayed mission names the same call the same way.
pub fn step_call_id(step_index: usize) -> String {
    format!("step-{step_index}")
}

/// Whether `call_id` is a call of step `step_index`: `step-N`, or a re-run `step-N#k`.
pub fn is_call_of_step(call_id: &str, step_index: usize) -> bool {
    is_attempt_of(call_id, &step_call_id(step_index))
}

/// The id of the `attempt`th run (from 1) of call `base`: `base` itself, then `base#2`, ….
/// A call that was interrupted runs again under a new id, so a completed call is never
/// overwritten.
pub fn attempt_id(base: &str, attempt: usize) -> String {
    if attempt <= 1 {
        base.to_string()
    } else {
        format!("{base}#{attempt}")
    }
}

/// Whether `call_id` is `base` or a re-run of it (`base#k`).
pub fn is_attempt_of(call_id: &str, base: &str) -> bool {
    call_id == base
        || call_id
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('#'))
}

/// The id of the `n`th model call (from 1) of the agent run `run` (`step-<i>` for a step's
/// agent; `step-<i>.fix<r>`, `step-<i>.review<r>`, `acceptance.<r>.fix` for the rounds that
/// follow a review or a failed acceptance check): `<run>.m<n>`. Its retries and fallbacks
/// share it.
pub fn agent_model_call_id(run: &str, n: usize) -> String {
    format!("{run}.m{n}")
}

/// The id of the `k`th tool call (from 1) that model call `model_call_id` asked for:
/// `step-<i>.m<n>.t<k>`; a re-run after an interruption adds `#<attempt>`.
pub fn agent_tool_call_id(model_call_id: &str, k: usize, attempt: usize) -> String {
    attempt_id(&format!("{model_call_id}.t{k}"), attempt)
}

/// The id of a mission's `n`th approval (from 1): `a-<the mission's ULID>-<n>`. The
/// mission can be found from the id alone, so `flightdeck approve ID` needs no index.
pub fn approval_id(mission: &str, n: usize) -> String {
    let ulid = mission.strip_prefix("m-").unwrap_or(mission);
    format!("a-{ulid}-{n}")
}

/// The mission an approval id belongs to, if the id is well formed.
pub fn mission_of_approval(approval_id: &str) -> Option<MissionId> {
    let rest = approval_id.trim().strip_prefix("a-")?;
    let (ulid, n) = rest.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    MissionId::parse(&format!("m-{ulid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_not_calls_of_run_steps() {
        let model = agent_model_call_id(&step_call_id(1), 3);
        assert_eq!(model, "step-1.m3");
        assert_eq!(agent_tool_call_id(&model, 2, 1), "step-1.m3.t2");
        assert_eq!(agent_tool_call_id(&model, 2, 3), "step-1.m3.t2#3");
        assert!(!is_call_of_step("step-1.m3.t2", 1));
        assert!(!is_call_of_step("step-1.m3.t2#3", 1));
    }

    #[test]
    fn approval_ids_name_their_mission() {
        let mission = MissionId::from_parts(1_700_000_000_000, 9);
        let id = approval_id(mission.as_str(), 2);
        assert!(id.starts_with("a-") && id.ends_with("-2"), "{id}");
        assert_eq!(mission_of_approval(&id), Some(mission));
        for bad in [
            "",
            "a-",
            "a-xyz-1",
            "m-01hzzzzzzzzzzzzzzzzzzzzzzz",
            "a-01hzzzzzzzzzzzzzzzzzzzzzzz-",
            "a-01hzzzzzzzzzzzzzzzzzzzzzzz-x",
        ] {
            assert_eq!(mission_of_approval(bad), None, "{bad}");
        }
    }

    #[test]
    fn mission_ids_are_lowercase_ulids_sorted_by_time() {
        let a = MissionId::from_parts(1_700_000_000_000, 7);
        let b = MissionId::from_parts(1_700_000_000_001, 0);
        assert!(a < b);
        assert_eq!(a.as_str().len(), 28);
        assert_eq!(MissionId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(
            MissionId::parse(&a.as_str().to_uppercase().replacen("M-", "m-", 1)),
            Some(a)
        );
        assert_eq!(MissionId::parse("m-short"), None);
        assert_eq!(MissionId::parse("x-01hzzzzzzzzzzzzzzzzzzzzzzz"), None);
    }
}
