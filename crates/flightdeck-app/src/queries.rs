//! What people and scripts read: missions, timelines and approvals, as typed views. Reading
//! never writes: an approval past its expiry is shown as expired (the mission's driver or
//! the scheduler records the expiry), and nothing here opens the store to write.

use flightdeck_core::state::ApprovalStatus;
use flightdeck_core::views::{ApprovalListing, MissionSummary};
use flightdeck_core::{MissionState, StoredEvent};
use flightdeck_store::EventStore;

use crate::error::AppError;
use crate::Reader;

/// How many missions `approvals` looks through (newest first).
const APPROVALS_SCAN_LIMIT: u32 = 100_000;

/// The full id of a mission from its id or a unique prefix of it.
pub async fn resolve_id(store: &dyn EventStore, given: &str) -> Result<String, AppError> {
    let given = given.trim();
    let unknown = || {
        AppError::not_found(
            format!("no mission `{given}`"),
            Some("`flightdeck missions` lists missions; a unique prefix of an id is enough".into()),
        )
    };
    if given.is_empty() {
        return Err(unknown());
    }
    if store.mission(given).await?.is_some() {
        return Ok(given.to_string());
    }
    let candidates = store.mission_ids_with_prefix(given, 6).await?;
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(unknown()),
        many => Err(AppError::bad_input(
            format!(
                "mission id prefix `{given}` is ambiguous: {}",
                many.join(", ")
            ),
            Some("give more of the id".into()),
        )),
    }
}

/// A mission's state, folded from its timeline.
pub async fn mission(reader: &Reader, id: &str) -> Result<MissionState, AppError> {
    Ok(flightdeck_engine::load(&*reader.store, id).await?)
}

/// The newest missions' summaries, newest first (the store's projections).
pub async fn missions(reader: &Reader, limit: u32) -> Result<Vec<MissionSummary>, AppError> {
    let rows = reader.store.missions(limit).await?;
    let mut summaries = Vec::with_capacity(rows.len());
    for row in rows {
        match serde_json::from_value::<MissionSummary>(row.summary) {
            Ok(summary) => summaries.push(summary),
            // A projection written by another version: fold the timeline instead.
            Err(_) => summaries.push(mission(reader, &row.id).await?.summary_view()),
        }
    }
    Ok(summaries)
}

/// A mission's events after `after` (a seq).
pub async fn timeline(reader: &Reader, id: &str, after: u64) -> Result<Vec<StoredEvent>, AppError> {
    Ok(reader.store.events(id, after).await?)
}

/// Every approval of every mission (newest mission first), or only those still waiting for
/// decisions at `now_ms`. An approval past its expiry that no one recorded yet is listed as
/// expired: that is what it is.
pub async fn approvals(
    reader: &Reader,
    pending_only: bool,
    now_ms: i64,
) -> Result<Vec<ApprovalListing>, AppError> {
    let summaries = missions(reader, APPROVALS_SCAN_LIMIT).await?;
    let mut listed = Vec::new();
    for summary in summaries {
        for mut approval in summary.approvals.iter().cloned() {
            if approval.expired_at(now_ms) {
                approval.status = ApprovalStatus::Expired;
            }
            if pending_only && approval.status != ApprovalStatus::Pending {
                continue;
            }
            listed.push(ApprovalListing {
                approval,
                mission: summary.id.clone(),
                mission_status: summary.status,
                template: summary.template.clone(),
                requested_by: summary.requested_by.clone(),
            });
        }
    }
    Ok(listed)
}

/// How many missions (the newest) metrics look at.
pub const METRICS_SCAN_LIMIT: u32 = 10_000;

/// Metrics of the newest missions (up to [`METRICS_SCAN_LIMIT`]) created within `since_days`
/// of `now_ms`, of `template` when given.
pub async fn metrics(
    reader: &Reader,
    now_ms: i64,
    since_days: Option<u32>,
    template: Option<&str>,
) -> Result<flightdeck_core::metrics::MetricsView, AppError> {
    let summaries = missions(reader, METRICS_SCAN_LIMIT).await?;
    Ok(flightdeck_core::metrics::MetricsView::of(
        &summaries, now_ms, since_days, template,
    ))
}

/// How many missions (the newest) a listing looks through.
pub const LISTING_SCAN_LIMIT: u32 = 10_000;

/// One page of a listing of missions, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MissionPage {
    pub missions: Vec<MissionSummary>,
    /// The id to pass as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// A page of at most `limit` missions (of the newest [`LISTING_SCAN_LIMIT`]) with `status`,
/// `template` and `requested_by` when given, created before the mission `cursor` names. Ids are ULIDs, so
/// they sort by creation time and the cursor finds the next page whatever changed since.
/// Only the page's summaries are read.
pub async fn mission_page(
    reader: &Reader,
    status: Option<&str>,
    template: Option<&str>,
    requested_by: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<MissionPage, AppError> {
    let mut index = match requested_by {
        Some(who) => {
            reader
                .store
                .mission_index_requested_by(LISTING_SCAN_LIMIT, who)
                .await?
        }
        None => reader.store.mission_index(LISTING_SCAN_LIMIT).await?,
    };
    index.sort_by(|a, b| b.id.cmp(&a.id));
    let mut matching = index
        .into_iter()
        .filter(|m| cursor.is_none_or(|c| m.id.as_str() < c))
        .filter(|m| status.is_none_or(|s| m.status == s))
        .filter(|m| template.is_none_or(|t| m.template == t));
    let ids: Vec<String> = matching.by_ref().take(limit).map(|m| m.id).collect();
    let more = matching.next().is_some();
    let mut missions = Vec::with_capacity(ids.len());
    for id in &ids {
        match summary(reader, id).await? {
            Some(summary) => missions.push(summary),
            // Gone since the index was read.
            None => continue,
        }
    }
    let next_cursor = more.then(|| ids.last().cloned()).flatten();
    Ok(MissionPage {
        missions,
        next_cursor,
    })
}

/// The summary of mission `id` (full id) as its projection keeps it (without `steps`), read
/// without its timeline; `None` if there is no such mission.
pub async fn summary(reader: &Reader, id: &str) -> Result<Option<MissionSummary>, AppError> {
    match reader.store.mission(id).await? {
        Some(row) => match serde_json::from_value::<MissionSummary>(row.summary) {
            Ok(summary) => Ok(Some(summary)),
            // A projection written by another version: fold the timeline instead.
            Err(_) => Ok(Some(mission(reader, id).await?.summary_view())),
        },
        None => Ok(None),
    }
}

/// Events `after` < seq <= `after + limit` of mission `id` (full id), and the seq of its last
/// event: one page of a timeline, read without the rest.
pub async fn events_page(
    reader: &Reader,
    id: &str,
    after: u64,
    limit: u64,
) -> Result<(Vec<StoredEvent>, u64), AppError> {
    let events = reader
        .store
        .events_between(id, after, after.saturating_add(limit))
        .await?;
    // Read after the events: the last seq is never behind the page (an append in between
    // shows as more to read, not as the end).
    let Some(row) = reader.store.mission(id).await? else {
        return Err(AppError::not_found(format!("no mission {id}"), None));
    };
    Ok((events, row.last_seq))
}

/// The change from `base` to `tree` (a snapshot a tool call recorded) in mission `id`'s
/// repository `repo`, as `git diff` shows it: its worktree as of that step.
pub fn diff_at(
    data_dir: &std::path::Path,
    id: &str,
    repo: &std::path::Path,
    base: &str,
    tree: &str,
) -> Result<Vec<u8>, AppError> {
    let is_object = |s: &str| s.len() >= 40 && s.chars().all(|c| c.is_ascii_hexdigit());
    if !is_object(base) || !is_object(tree) {
        return Err(AppError::bad_input(
            format!("`{base}`..`{tree}`: not git object ids"),
            None,
        ));
    }
    let objects = data_dir.join("objects").join(id);
    flightdeck_workspace::diff_in_objects(repo, &objects, base, tree).map_err(|e| {
        AppError::not_found(
            format!("the worktree of mission {id} at tree {tree} cannot be read: {e}"),
            Some(
                "the mission's objects (<data-dir>/objects/<id>) or its repository were removed"
                    .to_string(),
            ),
        )
    })
}
