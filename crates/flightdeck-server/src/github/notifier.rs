//! What GitHub shows of a mission from GitHub, kept up to date from the store's feed (the
//! feed notifier's machine, under the `github-notifier` reader):
//!
//! - its comment on the issue (or, for a follow-up, on the pull request), updated in place
//!   when what it says changes;
//! - once the change is proposed (`change.proposed`), the `flightdeck/approval` check run
//!   on the proposed head: the publish gate's state, or `success` when the policy needs
//!   no approval;
//! - once the mission succeeded, the pull request out of draft, with the final PR
//!   description (approvals and cost included) as its body.
//!
//! Each send is recorded as `notification.sent {channel: "github"}` with the digest of what
//! it drew, so nothing is drawn twice; what a finished mission's end sends is kept by the
//! machine's memory and cursor.

use std::collections::HashSet;
use std::sync::PoisonError;

use flightdeck_core::event::NotificationSent;
use flightdeck_core::{MissionState, MissionStatus};
use flightdeck_github::api::{CheckRunFields, PullRequestUpdate};
use flightdeck_github::GitHubError;

use super::{digest, notification, view, GitHubChannel, CHECK_RUN, COMMENT, READY};
use crate::feed_notifier::{self, FeedChannel, Memory, SyncError};
use crate::routes::Shared;

/// How many missions not from GitHub are remembered as such (then forgotten at once).
const NOT_OURS_KEPT: usize = 10_000;

/// Runs the notifier until the server stops.
pub(super) async fn notify(state: Shared, github: std::sync::Arc<GitHubChannel>) {
    feed_notifier::notify(state, github).await;
}

/// A failed GitHub call, final or worth another try.
fn github_failed(what: &str, e: GitHubError) -> SyncError {
    let message = format!("{what}: {e}");
    if super::deliveries::transient(&e) {
        SyncError::Again(message)
    } else {
        SyncError::Final(message)
    }
}

#[async_trait::async_trait]
impl FeedChannel for GitHubChannel {
    fn reader(&self) -> &'static str {
        "github-notifier"
    }

    fn name(&self) -> &'static str {
        "GitHub"
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }

    fn report(&self, message: &str) {
        (self.report)(message);
    }

    fn shows(&self, _status: &str) -> bool {
        // The comment tells every status; what did not change is not drawn again.
        true
    }

    async fn sync_mission(&self, state: &Shared, id: &str) -> Result<Option<i64>, SyncError> {
        if self.not_ours().contains(id) {
            return Ok(None);
        }
        let mission = state.engine.load(id).await?;
        let Some(origin) = mission.created.as_ref().and_then(|c| c.github.clone()) else {
            let mut not_ours = self.not_ours();
            if not_ours.len() >= NOT_OURS_KEPT {
                not_ours.clear();
            }
            not_ours.insert(id.to_string());
            return Ok(None);
        };
        let Some((owner, repo)) = origin.repository.split_once('/') else {
            return Err(SyncError::Final(format!(
                "mission {id}: {:?} is not owner/name",
                origin.repository
            )));
        };
        let at = Place {
            installation: origin.installation_id,
            owner,
            repo,
            issue: origin.issue,
        };
        self.sync_comment(state, &mission, &at).await?;
        self.sync_check(state, &mission, &at).await?;
        if mission.status == MissionStatus::Succeeded {
            self.sync_ready(state, &mission, &at).await?;
        }
        if mission.status.is_terminal() {
            self.memory.done_with(&mission);
        }
        Ok(None)
    }
}

/// Where on GitHub a mission's things are.
struct Place<'a> {
    installation: u64,
    owner: &'a str,
    repo: &'a str,
    /// The issue (or pull request) the mission's comment is on.
    issue: u64,
}

/// A state that lasts moments (provisioning, running between gates, a gate just granted):
/// the comment, once posted, is not redrawn for it, so a mission costs a few calls, not one
/// per step.
fn passing(mission: &MissionState) -> bool {
    match mission.status {
        MissionStatus::Queued | MissionStatus::Provisioning | MissionStatus::Running => true,
        MissionStatus::AwaitingApproval => mission.pending_approvals().next().is_none(),
        _ => false,
    }
}

/// The `notification.sent` records of one kind on GitHub.
fn records<'a>(
    mission: &'a MissionState,
    kind: &'a str,
) -> impl Iterator<Item = &'a NotificationSent> {
    mission
        .notifications
        .iter()
        .filter(move |n| n.channel == "github" && n.kind == kind)
}

impl GitHubChannel {
    fn not_ours(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.not_ours.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mission's comment: posted when it has none, updated when what it says changed.
    async fn sync_comment(
        &self,
        state: &Shared,
        mission: &MissionState,
        at: &Place<'_>,
    ) -> Result<(), SyncError> {
        let text = view::mission_comment(self, mission);
        let drawn = digest(&text);
        let key = format!("{}/{COMMENT}", mission.id);
        let target = format!("{}/{}#{}", at.owner, at.repo, at.issue);
        let recorded = records(mission, COMMENT)
            .next()
            .map(|n| n.reference.clone());
        let posted = recorded.or_else(|| self.memory.posted().get(&key).map(|p| p.1.clone()));
        let client = self.client();
        let Some(reference) = posted else {
            self.memory.still_notifying()?;
            let comment = client
                .create_issue_comment(at.installation, at.owner, at.repo, at.issue, &text)
                .await
                .map_err(|e| github_failed(&format!("commenting on {target}"), e))?;
            let reference = comment.id.to_string();
            self.memory
                .posted()
                .insert(key.clone(), (target.clone(), reference.clone()));
            self.memory.drawn().insert(key, drawn.clone());
            let sent = notification(&target, &reference, COMMENT, None, Some(drawn));
            feed_notifier::record(state, self, mission, sent).await?;
            return Ok(());
        };
        let last = self.memory.drawn().get(&key).cloned().or_else(|| {
            records(mission, COMMENT)
                .filter_map(|n| n.digest.clone())
                .last()
        });
        if last.as_deref() == Some(drawn.as_str()) || passing(mission) {
            return Ok(());
        }
        let Ok(comment_id) = reference.parse::<u64>() else {
            return Err(SyncError::Final(format!(
                "mission {}: comment reference {reference:?} is not a comment id",
                mission.id
            )));
        };
        self.memory.still_notifying()?;
        client
            .update_issue_comment(at.installation, at.owner, at.repo, comment_id, &text)
            .await
            .map_err(|e| github_failed(&format!("updating the comment on {target}"), e))?;
        self.memory.drawn().insert(key, drawn.clone());
        let sent = notification(&target, &reference, COMMENT, None, Some(drawn));
        feed_notifier::record(state, self, mission, sent).await?;
        Ok(())
    }

    /// The `flightdeck/approval` check run on the proposed head.
    async fn sync_check(
        &self,
        state: &Shared,
        mission: &MissionState,
        at: &Place<'_>,
    ) -> Result<(), SyncError> {
        let Some(proposed) = mission.proposed.clone() else {
            return Ok(());
        };
        let gate = mission
            .approvals_in_order()
            .filter(|a| a.request.gate == "publish")
            .last();
        let (key, fields): (String, CheckRunFields) = match gate {
            Some(approval) => (
                approval.request.approval_id.clone(),
                view::approval_check(self, mission, approval),
            ),
            // Published with no gate: the policy needed no approval.
            None if mission.published.is_some() => {
                (mission.id.clone(), view::no_approval_check(self, mission))
            }
            // Proposed, the gate not decided yet: the next append says.
            None => return Ok(()),
        };
        let body = fields.to_json();
        let drawn = digest(&body.to_string());
        let memory_key = format!("{}/{CHECK_RUN}/{key}/{}", mission.id, proposed.head_sha);
        let recorded = records(mission, CHECK_RUN)
            .filter(|n| {
                n.approval_id.as_deref() == Some(key.as_str()) && n.target == proposed.head_sha
            })
            .map(|n| (n.reference.clone(), n.digest.clone()))
            .collect::<Vec<_>>();
        let posted = recorded
            .first()
            .map(|r| r.0.clone())
            .or_else(|| self.memory.posted().get(&memory_key).map(|p| p.1.clone()));
        let client = self.client();
        let Some(reference) = posted else {
            self.memory.still_notifying()?;
            let run = client
                .create_check_run(
                    at.installation,
                    at.owner,
                    at.repo,
                    &proposed.head_sha,
                    &fields,
                )
                .await
                .map_err(|e| github_failed(&format!("creating the check run for {key}"), e))?;
            let reference = run.id.to_string();
            self.memory.posted().insert(
                memory_key.clone(),
                (proposed.head_sha.clone(), reference.clone()),
            );
            self.memory.drawn().insert(memory_key, drawn.clone());
            let sent = notification(
                &proposed.head_sha,
                &reference,
                CHECK_RUN,
                Some(&key),
                Some(drawn),
            );
            feed_notifier::record(state, self, mission, sent).await?;
            return Ok(());
        };
        let last = self
            .memory
            .drawn()
            .get(&memory_key)
            .cloned()
            .or_else(|| recorded.iter().rev().find_map(|r| r.1.clone()));
        if last.as_deref() == Some(drawn.as_str()) {
            return Ok(());
        }
        let Ok(run_id) = reference.parse::<u64>() else {
            return Err(SyncError::Final(format!(
                "mission {}: check run reference {reference:?} is not a check run id",
                mission.id
            )));
        };
        self.memory.still_notifying()?;
        client
            .update_check_run(at.installation, at.owner, at.repo, run_id, &fields)
            .await
            .map_err(|e| github_failed(&format!("updating the check run for {key}"), e))?;
        self.memory.drawn().insert(memory_key, drawn.clone());
        let sent = notification(
            &proposed.head_sha,
            &reference,
            CHECK_RUN,
            Some(&key),
            Some(drawn),
        );
        feed_notifier::record(state, self, mission, sent).await?;
        Ok(())
    }

    /// A succeeded mission's pull request: its final description as the body, out of draft.
    async fn sync_ready(
        &self,
        state: &Shared,
        mission: &MissionState,
        at: &Place<'_>,
    ) -> Result<(), SyncError> {
        let (Some(proposed), Some(published)) = (&mission.proposed, &mission.published) else {
            return Ok(());
        };
        let key = format!("{}/{READY}", mission.id);
        if records(mission, READY).next().is_some() || self.memory.sent_untracked().contains(&key) {
            return Ok(());
        }
        let description = state
            .engine
            .config()
            .artifacts
            .get(&published.pr_description)
            .await
            .map_err(|e| SyncError::Again(format!("reading the PR description: {e}")))?;
        let body = format!(
            "{}\n\n---\n[The mission's page]({}): its timeline, approvals and cost.\n",
            String::from_utf8_lossy(&description).trim_end(),
            self.mission_url(&mission.id)
        );
        let client = self.client();
        // Someone pushed since it was proposed: what was approved is not the pull request's
        // head, so it stays a draft and keeps its description (the head's `failure` check
        // run says why).
        let current = client
            .get_pull_request(at.installation, at.owner, at.repo, proposed.pr_number)
            .await
            .map_err(|e| github_failed(&format!("reading #{}", proposed.pr_number), e))?;
        if current.head_sha != proposed.head_sha {
            self.memory.sent_untracked().insert(key);
            self.report(&format!(
                "mission {} succeeded, but #{}'s head is {}, not the commit it proposed: left in draft",
                mission.id, proposed.pr_number, current.head_sha
            ));
            return Ok(());
        }
        self.memory.still_notifying()?;
        let pull = client
            .update_pull_request(
                at.installation,
                at.owner,
                at.repo,
                proposed.pr_number,
                &PullRequestUpdate {
                    body: Some(body),
                    ..PullRequestUpdate::default()
                },
            )
            .await
            .map_err(|e| github_failed(&format!("updating #{}", proposed.pr_number), e))?;
        if pull.draft {
            let Some(node) = pull.node_id.clone() else {
                return Err(SyncError::Final(format!(
                    "#{} has no node id to mark it ready for review",
                    proposed.pr_number
                )));
            };
            self.memory.still_notifying()?;
            client
                .mark_ready_for_review(at.installation, &node)
                .await
                .map_err(|e| {
                    github_failed(
                        &format!("marking #{} ready for review", proposed.pr_number),
                        e,
                    )
                })?;
        }
        self.memory.sent_untracked().insert(key);
        let sent = notification(
            &format!("{}/{}#{}", at.owner, at.repo, proposed.pr_number),
            &proposed.pr_number.to_string(),
            READY,
            None,
            None,
        );
        feed_notifier::record(state, self, mission, sent).await?;
        Ok(())
    }
}
