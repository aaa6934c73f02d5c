//! GitHub in poll mode (`[github] mode = "poll"`), with the real binary and the fake GitHub,
//! and no webhook delivered at all: the poller finds Carol's `flightdeck:fix` label (she may
//! write) → a mission → a draft pull request waiting for approval; it finds Mallory's label
//! and `/flightdeck run` comment (she may only read) → she is told twice, nothing starts; it
//! finds the approving review of Bob, the code owner, on the proposed head → the mission
//! succeeds. Every look overlaps the last, and each finding is taken once. The payloads the
//! poller stores are what GitHub would have sent: held to GitHub's webhook description, and
//! parsed into the events they stand for. Needs `FLIGHTDECK_GITHUB_SPECS`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flightdeck_github::webhook::{parse_event, WebhookEvent};
use flightdeck_github::ReviewState;
use flightdeck_server::github::poll;
use flightdeck_testkit::fake_github::GitHubSpecs;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
#[path = "common/github_setup.rs"]
mod github_setup;

use github_setup::{wait_until, World, INSTALLATION, REPO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_finds_labels_comments_and_reviews_without_webhooks() {
    let w = World::with(BIN, "mode = \"poll\"\npoll_seconds = 10\n").await;
    let since = w.fake.now() - 60;
    let issue = w.fake.open_issue(
        REPO,
        "The parser needs g",
        "Add `g` next to `f`.",
        "carol-gh",
    );
    let other = w.fake.open_issue(REPO, "Anything", "", "mallory");
    w.fake
        .label_issue(REPO, issue, "flightdeck:fix", "carol-gh");
    w.fake.label_issue(REPO, other, "flightdeck:fix", "mallory");
    w.fake
        .issue_comment_created(REPO, other, "mallory", "/flightdeck run fix");
    // A plain comment asks nothing: not a finding.
    w.fake
        .issue_comment_created(REPO, issue, "eve-gh", "Looks right to me.");

    // Carol's label: a mission, proposed as a draft pull request, waiting for approval.
    wait_until("a mission is created", || w.missions().len() == 1).await;
    let id = w.missions()[0]["id"].as_str().unwrap().to_string();
    let created = w.created(&id);
    assert_eq!(created["source"], "github");
    assert_eq!(created["requested_by"], "@carol");
    assert_eq!(created["github"]["issue"], issue);
    assert_eq!(created["github"]["requested_by_login"], "carol-gh");
    wait_until("the mission waits for approval", || {
        w.status(&id) == "awaiting_approval"
    })
    .await;
    let pull = w.fake.pulls(REPO)[0].clone();
    let number = pull["number"].as_u64().unwrap();
    let head = pull["head"]["sha"].as_str().unwrap().to_string();
    assert_eq!(pull["draft"], true);
    wait_until("the check run asks for action", || {
        w.check_runs_on(&head)
            .iter()
            .any(|r| r["conclusion"] == "action_required")
    })
    .await;

    // Mallory may only read: told for her label and for her command, nothing started.
    wait_until("Mallory is told twice", || {
        w.comments_with(other, "@mallory").len() == 2
    })
    .await;

    // Bob, the code owner, approves the head on GitHub: the poller finds the review.
    let review = w
        .fake
        .submit_review(REPO, number, "bob-gh", "APPROVED", &head);
    wait_until("the mission succeeds", || w.status(&id) == "succeeded").await;
    let decided = w.events(&id, "approval.decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["data"]["by"], "@bob");
    assert_eq!(decided[0]["data"]["channel"], "github");
    assert_eq!(decided[0]["data"]["actor"]["channel_user"], "bob-gh");

    // Every look found the labels again (a minute's overlap): each was taken once.
    assert_eq!(w.missions().len(), 1);
    assert_eq!(w.comments_with(other, "@mallory").len(), 2);
    assert!(w.fake.deliveries().is_empty(), "no webhook was delivered");

    // What the poller stores is what GitHub would have sent.
    let client = w.app_client();
    let repository = client
        .list_installation_repositories_as_sent(INSTALLATION)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.full_name == REPO)
        .unwrap();
    let found = poll::findings(&client, INSTALLATION, &repository, "flightdeck", since)
        .await
        .unwrap();
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    let mut seen = Vec::new();
    for finding in &found.found {
        GitHubSpecs::get()
            .check_webhook(finding.event, &finding.payload)
            .unwrap_or_else(|problems| panic!("{} ({}): {problems:#?}", finding.id, finding.event));
        let body = serde_json::to_vec(&finding.payload).unwrap();
        let event = parse_event(finding.event, &body).unwrap();
        let context = match &event {
            WebhookEvent::IssueLabeled { context, .. }
            | WebhookEvent::IssueCommentCreated { context, .. }
            | WebhookEvent::PullRequestReviewSubmitted { context, .. }
            | WebhookEvent::PullRequestSynchronize { context, .. } => context,
            other => panic!("{}: {other:?}", finding.id),
        };
        assert_eq!(context.installation_id, Some(INSTALLATION));
        assert_eq!(context.repository.full_name, REPO);
        assert_eq!(context.repository.default_branch.as_deref(), Some("main"));
        assert_eq!(
            context.repository.clone_url.as_deref(),
            Some(w.fake.clone_url(REPO).as_str())
        );
        let what = match event {
            WebhookEvent::IssueLabeled {
                context,
                issue,
                label,
            } => {
                assert_eq!(label, "flightdeck:fix");
                assert!(finding
                    .id
                    .starts_with(&format!("poll:labeled:{}:{}:", repository.id, issue.number)));
                format!("labeled #{} by {}", issue.number, context.sender.login)
            }
            WebhookEvent::IssueCommentCreated {
                context,
                issue,
                comment,
            } => {
                assert_eq!(finding.id, format!("poll:comment:{}", comment.id));
                assert_eq!(comment.author.login, context.sender.login);
                format!(
                    "{:?} on #{} by {}",
                    comment.body, issue.number, context.sender.login
                )
            }
            WebhookEvent::PullRequestReviewSubmitted {
                context,
                pull_request,
                review: submitted,
            } => {
                assert_eq!(finding.id, format!("poll:review:{review}"));
                assert_eq!(submitted.id, review);
                assert_eq!(submitted.state, ReviewState::Approved);
                assert_eq!(submitted.commit_id.as_deref(), Some(head.as_str()));
                assert_eq!(pull_request.head_ref, format!("flightdeck/{id}"));
                format!(
                    "review of #{} by {}",
                    pull_request.number, context.sender.login
                )
            }
            WebhookEvent::PullRequestSynchronize {
                pull_request,
                after,
                ..
            } => {
                assert_eq!(
                    finding.id,
                    format!(
                        "poll:head:{}:{}",
                        pull_request.number, pull_request.head_sha
                    )
                );
                assert_eq!(after.as_deref(), Some(pull_request.head_sha.as_str()));
                format!(
                    "head of #{} at {}",
                    pull_request.number, pull_request.head_sha
                )
            }
            _ => unreachable!(),
        };
        seen.push(what);
    }
    seen.sort();
    let mut expected = [
        format!("labeled #{issue} by carol-gh"),
        format!("labeled #{other} by mallory"),
        format!("\"/flightdeck run fix\" on #{other} by mallory"),
        format!("review of #{number} by bob-gh"),
        format!("head of #{number} at {head}"),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    w.fake.assert_clean();
}
