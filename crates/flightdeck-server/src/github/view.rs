//! What flightdeck writes on GitHub, from a mission's state: the mission's comment on its
//! issue, and the `flightdeck/approval` check run.
//!
//! Text a mission or a person wrote (a title, an error, a handle) is shown only inside a
//! code span or a fenced block, so it cannot mention anyone, make a link or an image, or
//! close the Markdown around it.

use flightdeck_core::event::ChangeProposed;
use flightdeck_core::state::{ApprovalProgress, ApprovalStatus};
use flightdeck_core::{MissionState, MissionStatus};
use flightdeck_github::api::{
    CheckAction, CheckConclusion, CheckOutput, CheckRunFields, CheckStatus,
};

use super::{GitHubChannel, CHECK_NAME};

/// `text` as an inline code span on one line (backticks inside become `'`, so the span
/// cannot end early), at most `max` characters.
pub(super) fn code(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(max)
        .collect();
    if line.trim().is_empty() {
        "` `".to_string()
    } else {
        format!("`{}`", line.trim())
    }
}

/// `text` as a fenced block whose fence is longer than any run of backticks in it.
pub(super) fn block(text: &str, max: usize) -> String {
    let text: String = text.chars().take(max).collect();
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}text\n{}\n{fence}", text.trim_end())
}

/// The mission's comment as it stands now.
pub(super) fn mission_comment(github: &GitHubChannel, mission: &MissionState) -> String {
    let url = github.mission_url(&mission.id);
    let template = mission
        .created
        .as_ref()
        .map(|c| code(&c.template, 80))
        .unwrap_or_default();
    let mut text = format!(
        "**flightdeck mission [`{}`]({url})** ({template})",
        mission.id
    );
    if let Some(github) = mission.created.as_ref().and_then(|c| c.github.as_ref()) {
        let asked = code(&github.requested_by_login, 60);
        match mission.created.as_ref().and_then(|c| c.follows.as_deref()) {
            Some(earlier) => text.push_str(&format!(
                ": a follow-up of {} on this branch, from the review comments by {asked}",
                code(earlier, 80)
            )),
            None => text.push_str(&format!(", asked by {asked}")),
        }
    }
    text.push_str("\n\n");
    let status = match mission.status {
        MissionStatus::Queued => "Queued: waiting for a worker.".to_string(),
        MissionStatus::Running => "Running.".to_string(),
        MissionStatus::AwaitingApproval => {
            let waiting: Vec<String> = mission
                .pending_approvals()
                .map(|a| {
                    let who = a
                        .request
                        .eligible
                        .iter()
                        .map(|e| code(e, 60))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let place = if a.request.gate == "publish" && mission.proposed.is_some() {
                        format!("on the `{CHECK_NAME}` check of the pull request, or ")
                    } else {
                        String::new()
                    };
                    format!(
                        "- {} ({} of {} approved; may approve: {who}): approve {place}on the [mission page]({url})",
                        code(&a.request.approval_id, 80),
                        a.approved_by().len(),
                        a.request.required
                    )
                })
                .collect();
            format!("Waiting for approval:\n{}", waiting.join("\n"))
        }
        MissionStatus::Blocked => format!(
            "Blocked (budget, quota or a breaker): see the [mission page]({url}) for what lets it go on."
        ),
        MissionStatus::Succeeded => match (&mission.published, &mission.proposed) {
            (Some(_), Some(proposed)) => format!(
                "Succeeded: the change is pull request #{} ({}).",
                proposed.pr_number, proposed.pr_url
            ),
            (Some(published), None) => {
                format!("Succeeded: published on branch {}.", code(&published.branch, 120))
            }
            _ => "Succeeded: the steps changed nothing, so nothing was published.".to_string(),
        },
        MissionStatus::Failed => {
            let why = mission
                .error
                .as_ref()
                .map(|e| format!("\n\n{}", block(&e.message, 2_000)))
                .unwrap_or_default();
            format!("Failed.{why}")
        }
        MissionStatus::Cancelled => "Cancelled.".to_string(),
        other => format!("{}.", code(other.as_str(), 40)),
    };
    text.push_str(&status);
    if mission.status != MissionStatus::Succeeded {
        if let Some(proposed) = &mission.proposed {
            text.push_str(&format!(
                "\n\nProposed as draft pull request #{} (commit `{}`).",
                proposed.pr_number,
                short(&proposed.head_sha)
            ));
        }
    }
    text
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The `flightdeck/approval` check run of a publish gate: `action_required` with Approve
/// and Deny while pending, `success` once granted, `failure` once denied or expired.
pub(super) fn approval_check(
    github: &GitHubChannel,
    mission: &MissionState,
    approval: &ApprovalProgress,
) -> CheckRunFields {
    let request = &approval.request;
    let approved: Vec<String> = approval
        .approved_by()
        .into_iter()
        .map(|p| code(p, 60))
        .collect();
    let eligible: Vec<String> = request.eligible.iter().map(|e| code(e, 60)).collect();
    let rules: Vec<String> = request.rule_ids.iter().map(|r| code(r, 60)).collect();
    let progress = format!("{} of {} approved", approved.len(), request.required);
    // GitHub sends a button's click only as a webhook: in poll mode there are none.
    let buttons = !github.app().polls();
    let (conclusion, title, actions) = match approval.status {
        ApprovalStatus::Pending => (
            CheckConclusion::ActionRequired,
            format!("Waiting for approval: {progress}"),
            if !buttons {
                Vec::new()
            } else {
                vec![
                    CheckAction {
                        label: "Approve".to_string(),
                        description: "Approve this change".to_string(),
                        identifier: "approve".to_string(),
                    },
                    CheckAction {
                        label: "Deny".to_string(),
                        description: "Deny it: the mission fails".to_string(),
                        identifier: "deny".to_string(),
                    },
                ]
            },
        ),
        ApprovalStatus::Approved => (
            CheckConclusion::Success,
            format!("Approved: {progress}"),
            Vec::new(),
        ),
        ApprovalStatus::Denied => {
            let by = approval
                .votes
                .iter()
                .rev()
                .find(|v| v.decided.decision == "deny")
                .map(|v| code(&v.decided.by, 60))
                .unwrap_or_else(|| "someone".to_string());
            (
                CheckConclusion::Failure,
                format!("Denied by {}", by.trim_matches('`')),
                Vec::new(),
            )
        }
        ApprovalStatus::Expired => (
            CheckConclusion::Failure,
            "Expired: nobody approved in time".to_string(),
            Vec::new(),
        ),
        ApprovalStatus::Superseded => (
            CheckConclusion::Neutral,
            "Superseded: the diff changed, and a newer request replaced this one".to_string(),
            Vec::new(),
        ),
        ApprovalStatus::Withdrawn => (
            CheckConclusion::Cancelled,
            "Withdrawn: the mission ended before anyone decided".to_string(),
            Vec::new(),
        ),
    };
    let mut summary = format!(
        "Mission [`{}`]({}): the **{}** tier of the policy asks for {} approval(s) before this change is published.\n\n",
        mission.id,
        github.mission_url(&mission.id),
        request.tier,
        request.required
    );
    summary.push_str(&format!(
        "- Approved by: {}\n",
        if approved.is_empty() {
            "nobody yet".to_string()
        } else {
            approved.join(", ")
        }
    ));
    summary.push_str(&format!("- May approve: {}\n", eligible.join(", ")));
    if !rules.is_empty() {
        summary.push_str(&format!("- Rules: {}\n", rules.join(", ")));
    }
    if approval.status == ApprovalStatus::Pending {
        summary.push_str(if buttons {
            "- Approve with the buttons above, an approving review of this commit, the mission page, the CLI or Slack.\n"
        } else {
            "- Approve with an approving review of this commit, the mission page, the CLI or Slack.\n"
        });
    }
    if let Some(proposed) = &mission.proposed {
        summary.push_str(&format!(
            "- Covers commit `{}` (tree `{}`) only: an approving review counts on that commit, and a push that changes the diff needs a new approval.\n",
            short(&proposed.head_sha),
            short(&proposed.tree)
        ));
    }
    CheckRunFields {
        name: CHECK_NAME.to_string(),
        status: None,
        conclusion: Some(conclusion),
        external_id: Some(request.approval_id.clone()),
        details_url: Some(github.mission_url(&mission.id)),
        output: Some(CheckOutput {
            title,
            summary,
            text: None,
        }),
        actions,
    }
}

/// The check run of a proposal the policy lets publish without approval.
pub(super) fn no_approval_check(github: &GitHubChannel, mission: &MissionState) -> CheckRunFields {
    CheckRunFields {
        name: CHECK_NAME.to_string(),
        status: Some(CheckStatus::Completed),
        conclusion: Some(CheckConclusion::Success),
        external_id: Some(mission.id.clone()),
        details_url: Some(github.mission_url(&mission.id)),
        output: Some(CheckOutput {
            title: "No approval needed".to_string(),
            summary: format!(
                "Mission [`{}`]({}): the policy lets this change publish without an approval.",
                mission.id,
                github.mission_url(&mission.id)
            ),
            text: None,
        }),
        actions: Vec::new(),
    }
}

/// The check run on a head whose diff is not the one proposed: what was approved does not
/// cover it.
pub(super) fn voided_check(
    github: &GitHubChannel,
    mission: &MissionState,
    proposed: &ChangeProposed,
    head: &str,
) -> CheckRunFields {
    CheckRunFields {
        name: CHECK_NAME.to_string(),
        status: Some(CheckStatus::Completed),
        conclusion: Some(CheckConclusion::Failure),
        external_id: Some(format!("void:{}", mission.id)),
        details_url: Some(github.mission_url(&mission.id)),
        output: Some(CheckOutput {
            title: "The diff changed since it was approved".to_string(),
            summary: format!(
                "Mission [`{}`]({}) proposed commit `{}` (tree `{}`), and approvals cover that diff only. Commit `{}` changes it, so they do not count for it.\n\nAsk for the change again: review comments on this pull request start a follow-up mission on this branch, whose approval covers the new diff.",
                mission.id,
                github.mission_url(&mission.id),
                short(&proposed.head_sha),
                short(&proposed.tree),
                short(head)
            ),
            text: None,
        }),
        actions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::{block, code};

    #[test]
    fn what_a_mission_wrote_stays_literal() {
        let cases = [
            ("@alice please", "`@alice please`"),
            ("a `tick` here", "`a 'tick' here`"),
            ("[x](http://evil)", "`[x](http://evil)`"),
            ("line\nbreak", "`line break`"),
            ("", "` `"),
        ];
        for (text, want) in cases {
            assert_eq!(code(text, 100), want, "{text:?}");
        }
        assert_eq!(code("abcdef", 3), "`abc`");
        let fenced = block("x ``` y ```` z", 100);
        assert!(fenced.starts_with("`````text\n"), "{fenced}");
        assert!(fenced.ends_with("\n`````"), "{fenced}");
    }
}
