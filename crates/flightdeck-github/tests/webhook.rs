//! Webhook deliveries shaped as GitHub sends them (tests/fixtures/, one per event and
//! action, written after GitHub's webhook payload documentation): signed, verified, parsed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use flightdeck_github::webhook::{self, sign, MAX_BODY_BYTES};
use flightdeck_github::{
    parse_event, verify_signature, Context, Repository, ReviewState, SignatureError, User,
    WebhookError, WebhookEvent,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(event: &str, name: &str) -> WebhookEvent {
    parse_event(event, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn widgets() -> Repository {
    Repository {
        id: 186853002,
        owner: "acme".into(),
        name: "widgets".into(),
        full_name: "acme/widgets".into(),
        private: true,
        default_branch: Some("main".into()),
        clone_url: None,
    }
}

fn user(login: &str, id: u64) -> User {
    User {
        login: login.into(),
        id,
        is_bot: false,
    }
}

fn context(sender: User) -> Context {
    Context {
        installation_id: Some(4242),
        repository: widgets(),
        sender,
    }
}

#[test]
fn every_fixture_verifies_with_its_signature_and_fails_with_another_secret() {
    let secret = b"webhook-secret";
    for name in [
        "issues.labeled",
        "issue_comment.created",
        "pull_request.synchronize",
        "check_run.requested_action",
        "ping",
    ] {
        let body = fixture(name);
        let header = sign(secret, &body);
        assert_eq!(verify_signature(secret, &header, &body), Ok(()), "{name}");
        assert_eq!(
            verify_signature(b"another-secret", &header, &body),
            Err(SignatureError::Mismatch),
            "{name}"
        );
        // One byte changed anywhere (here: re-serialised) is a mismatch.
        let mut reserialised = body.clone();
        reserialised.push(b'\n');
        assert_eq!(
            verify_signature(secret, &header, &reserialised),
            Err(SignatureError::Mismatch),
            "{name}"
        );
    }
}

#[test]
fn githubs_documented_example() {
    assert_eq!(
        verify_signature(
            b"It's a Secret to Everybody",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            b"Hello, World!"
        ),
        Ok(())
    );
}

#[test]
fn issues_labeled() {
    let WebhookEvent::IssueLabeled {
        context: ctx,
        issue,
        label,
    } = parse("issues", "issues.labeled")
    else {
        panic!("not IssueLabeled");
    };
    assert_eq!(ctx, context(user("alice", 21031067)));
    assert_eq!(label, "flightdeck");
    assert_eq!(issue.number, 17);
    assert_eq!(issue.title, "Retry uploads when the network drops");
    assert_eq!(
        issue.body,
        "Uploads fail for good on a dropped connection.\r\n\r\nRetry them with backoff."
    );
    assert_eq!(issue.labels, vec!["bug", "flightdeck"]);
    assert_eq!(issue.author, user("alice", 21031067));
    assert_eq!(issue.state, "open");
    assert!(!issue.is_pull_request);
    assert_eq!(
        issue.html_url.as_deref(),
        Some("https://github.com/acme/widgets/issues/17")
    );
}

#[test]
fn issue_comment_created_on_a_pull_request() {
    let WebhookEvent::IssueCommentCreated {
        context: ctx,
        issue,
        comment,
    } = parse("issue_comment", "issue_comment.created")
    else {
        panic!("not IssueCommentCreated");
    };
    assert_eq!(ctx, context(user("bob", 5346)));
    assert_eq!(issue.number, 18);
    assert!(issue.is_pull_request);
    assert_eq!(issue.author.login, "flightdeck[bot]");
    assert!(issue.author.is_bot);
    assert_eq!(comment.id, 492700400);
    assert_eq!(comment.body, "/flightdeck approve");
    assert_eq!(comment.author, user("bob", 5346));
    assert_eq!(comment.author_association.as_deref(), Some("COLLABORATOR"));
}

#[test]
fn pull_request_synchronize_and_closed() {
    let WebhookEvent::PullRequestSynchronize {
        context: ctx,
        pull_request: pr,
        before,
        after,
    } = parse("pull_request", "pull_request.synchronize")
    else {
        panic!("not PullRequestSynchronize");
    };
    assert_eq!(ctx.installation_id, Some(4242));
    assert!(ctx.sender.is_bot);
    assert_eq!(pr.number, 18);
    assert_eq!(pr.node_id.as_deref(), Some("PR_kwDOCx2Yis5Ao9Ot"));
    assert_eq!(pr.head_sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(pr.head_ref, "flightdeck/17-retry-uploads");
    assert_eq!(pr.head_repo.as_deref(), Some("acme/widgets"));
    assert_eq!(pr.base_ref, "main");
    assert_eq!(pr.base_sha, "f95f852bd8fca8fcc58a9a2d6c842781e32a215e");
    assert!(pr.draft);
    assert!(!pr.merged);
    assert_eq!(
        before.as_deref(),
        Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
    );
    assert_eq!(after.as_deref(), Some(pr.head_sha.as_str()));

    let WebhookEvent::PullRequestClosed {
        context: ctx,
        pull_request: pr,
    } = parse("pull_request", "pull_request.closed")
    else {
        panic!("not PullRequestClosed");
    };
    assert_eq!(ctx, context(user("bob", 5346)));
    assert_eq!(pr.state, "closed");
    assert!(pr.merged);
    assert!(!pr.draft);
}

#[test]
fn pull_request_review_submitted_and_dismissed() {
    let WebhookEvent::PullRequestReviewSubmitted {
        context: ctx,
        pull_request: pr,
        review,
    } = parse("pull_request_review", "pull_request_review.submitted")
    else {
        panic!("not PullRequestReviewSubmitted");
    };
    assert_eq!(ctx, context(user("bob", 5346)));
    assert_eq!(pr.number, 18);
    // Review events' pull requests carry no `merged`: read from `merged_at`.
    assert!(!pr.merged);
    assert_eq!(review.id, 237895671);
    assert_eq!(review.state, ReviewState::Approved);
    assert_eq!(
        review.commit_id.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    assert_eq!(review.author, Some(user("bob", 5346)));
    assert_eq!(review.body, "Looks right.");

    let WebhookEvent::PullRequestReviewDismissed {
        context: ctx,
        review,
        ..
    } = parse("pull_request_review", "pull_request_review.dismissed")
    else {
        panic!("not PullRequestReviewDismissed");
    };
    assert_eq!(ctx.sender.login, "alice");
    assert_eq!(review.id, 237895671);
    assert_eq!(review.state, ReviewState::Dismissed);
    assert_eq!(review.author, Some(user("bob", 5346)));
}

#[test]
fn check_run_requested_action_and_rerequested() {
    let WebhookEvent::CheckRunRequestedAction {
        context: ctx,
        check_run,
        identifier,
    } = parse("check_run", "check_run.requested_action")
    else {
        panic!("not CheckRunRequestedAction");
    };
    assert_eq!(ctx, context(user("bob", 5346)));
    assert_eq!(identifier, "approve");
    assert_eq!(check_run.id, 1494503112);
    assert_eq!(check_run.name, "flightdeck");
    assert_eq!(
        check_run.head_sha,
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    );
    assert_eq!(check_run.external_id.as_deref(), Some("01JH4ZAPPROVAL"));
    assert_eq!(check_run.conclusion.as_deref(), Some("action_required"));
    assert_eq!(check_run.pull_requests, vec![18]);

    let WebhookEvent::CheckRunRerequested {
        context: ctx,
        check_run,
    } = parse("check_run", "check_run.rerequested")
    else {
        panic!("not CheckRunRerequested");
    };
    assert_eq!(ctx.sender.login, "alice");
    // An empty external_id reads as none.
    assert_eq!(check_run.external_id, None);
}

#[test]
fn installation_events() {
    let WebhookEvent::Installation {
        action,
        installation,
        repositories,
        sender,
    } = parse("installation", "installation.created")
    else {
        panic!("not Installation");
    };
    assert_eq!(action, "created");
    assert_eq!(installation.id, 4242);
    assert_eq!(installation.app_id, Some(29310));
    assert_eq!(
        installation.account.as_ref().map(|a| a.login.as_str()),
        Some("acme")
    );
    assert_eq!(
        installation.repository_selection.as_deref(),
        Some("selected")
    );
    assert!(!installation.suspended);
    assert_eq!(sender.login, "alice");
    let names: Vec<(&str, &str, &str)> = repositories
        .iter()
        .map(|r| (r.owner.as_str(), r.name.as_str(), r.full_name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("acme", "widgets", "acme/widgets"),
            ("acme", "gadgets", "acme/gadgets")
        ]
    );
    assert!(repositories[0].private);

    let WebhookEvent::Installation {
        action,
        installation,
        repositories,
        ..
    } = parse("installation", "installation.suspend")
    else {
        panic!("not Installation");
    };
    assert_eq!(action, "suspend");
    assert!(installation.suspended);
    assert!(repositories.is_empty());

    let WebhookEvent::InstallationRepositories {
        action,
        installation,
        added,
        removed,
        sender,
    } = parse(
        "installation_repositories",
        "installation_repositories.added",
    )
    else {
        panic!("not InstallationRepositories");
    };
    assert_eq!(action, "added");
    assert_eq!(installation.id, 4242);
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].full_name, "acme/sprockets");
    assert_eq!(added[0].owner, "acme");
    assert!(removed.is_empty());
    assert_eq!(sender.login, "alice");

    let WebhookEvent::InstallationRepositories { added, removed, .. } = parse(
        "installation_repositories",
        "installation_repositories.removed",
    ) else {
        panic!("not InstallationRepositories");
    };
    assert!(added.is_empty());
    assert_eq!(removed[0].full_name, "acme/gadgets");

    assert_eq!(
        parse("installation_target", "installation_target.renamed"),
        WebhookEvent::InstallationTarget {
            action: "renamed".into(),
            installation_id: 4242,
            account: Some(User {
                login: "acme".into(),
                id: 38302899,
                is_bot: false
            }),
            previous_login: Some("acme-old".into()),
        }
    );
}

#[test]
fn ping() {
    assert_eq!(
        parse("ping", "ping"),
        WebhookEvent::Ping {
            hook_id: Some(109948940),
            app_id: Some(29310),
            zen: Some("Anything added dilutes everything else.".into()),
        }
    );
}

#[test]
fn events_and_actions_not_taken_are_other() {
    assert_eq!(
        parse("issues", "issues.opened"),
        WebhookEvent::Other {
            event: "issues".into(),
            action: Some("opened".into())
        }
    );
    // A taken event's body under another action.
    let mut labeled: serde_json::Value =
        serde_json::from_slice(&fixture("issues.labeled")).expect("json");
    labeled["action"] = "unlabeled".into();
    assert_eq!(
        parse_event("issues", labeled.to_string().as_bytes()),
        Ok(WebhookEvent::Other {
            event: "issues".into(),
            action: Some("unlabeled".into())
        })
    );
    assert_eq!(
        parse_event("push", br#"{"ref":"refs/heads/main","after":"abc"}"#),
        Ok(WebhookEvent::Other {
            event: "push".into(),
            action: None
        })
    );
    // An event we do not take need not even be JSON.
    assert_eq!(
        parse_event("team_add", b"payload=%7B%7D"),
        Ok(WebhookEvent::Other {
            event: "team_add".into(),
            action: None
        })
    );
    assert_eq!(
        parse_event("pull_request", br#"{"action":"opened"}"#),
        Ok(WebhookEvent::Other {
            event: "pull_request".into(),
            action: Some("opened".into())
        })
    );
}

#[test]
fn bad_deliveries_of_taken_events_are_typed_errors() {
    assert_eq!(parse_event("", b"{}"), Err(WebhookError::MissingEvent));
    assert!(matches!(
        parse_event("issues", b"payload=%7B%7D"),
        Err(WebhookError::NotJson { event, .. }) if event == "issues"
    ));
    // issues.labeled without `label`.
    let mut labeled: serde_json::Value =
        serde_json::from_slice(&fixture("issues.labeled")).expect("json");
    labeled.as_object_mut().expect("object").remove("label");
    let err = parse_event("issues", labeled.to_string().as_bytes());
    assert!(
        matches!(&err, Err(WebhookError::Malformed { event, message }) if event == "issues.labeled" && message.contains("label")),
        "{err:?}"
    );
    // requested_action without the identifier.
    let mut action: serde_json::Value =
        serde_json::from_slice(&fixture("check_run.requested_action")).expect("json");
    action
        .as_object_mut()
        .expect("object")
        .remove("requested_action");
    let err = parse_event("check_run", action.to_string().as_bytes());
    assert!(
        matches!(&err, Err(WebhookError::Malformed { event, .. }) if event == "check_run.requested_action"),
        "{err:?}"
    );
    // No repository on a repository event.
    let mut comment: serde_json::Value =
        serde_json::from_slice(&fixture("issue_comment.created")).expect("json");
    comment
        .as_object_mut()
        .expect("object")
        .remove("repository");
    assert!(matches!(
        parse_event("issue_comment", comment.to_string().as_bytes()),
        Err(WebhookError::Malformed { .. })
    ));
}

#[test]
fn oversize_bodies_are_refused_before_parsing() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        parse_event("issues", &body),
        Err(WebhookError::TooLarge {
            bytes: MAX_BODY_BYTES + 1
        })
    );
    assert_eq!(MAX_BODY_BYTES, 25 * 1024 * 1024);
    assert_eq!(webhook::SIGNATURE_HEADER, "X-Hub-Signature-256");
}
