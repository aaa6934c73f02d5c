//! GitHub with the real binary and a fake GitHub (its REST API held to GitHub's
//! description, its webhook payloads to GitHub's webhook description, git served over
//! smart HTTP with installation tokens): an issue labelled `flightdeck:fix` by someone with
//! write access → a mission → its commit pushed and a draft pull request with the mission's
//! link → the `flightdeck/approval` check run `action_required` → an approving review by
//! someone who is no code owner is refused and told why → the code owner's approving review
//! on the head → the check run `success`, the pull request ready for review with its final
//! description → a push that changes the diff gets a `failure` check run → the owner's
//! review comments start a follow-up mission on the same branch and pull request. And
//! hostile deliveries: forged, unsigned, replayed, oversize, from someone without write
//! access, for a repository or installation the App does not have, with the App's clock
//! skewed: each refused, nothing started. Needs `FLIGHTDECK_GITHUB_SPECS`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
#[path = "common/github_setup.rs"]
mod github_setup;

use github_setup::{git, wait_until, World, REPO, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_becomes_a_draft_pull_request_approved_by_its_code_owner_on_github() {
    let w = World::new(BIN).await;
    let issue = w.fake.open_issue(
        REPO,
        "The parser needs g",
        "Add `g` next to `f`.",
        "carol-gh",
    );

    // Labelled by Carol, who may write: a mission, its comment on the issue.
    let labelled = w
        .fake
        .issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh");
    assert_eq!(w.deliver("issues", labelled).await, 202);
    wait_until("a mission is created", || w.missions().len() == 1).await;
    let id = w.missions()[0]["id"].as_str().unwrap().to_string();
    let created = w.created(&id);
    assert_eq!(created["source"], "github");
    assert_eq!(created["requested_by"], "@carol");
    assert_eq!(created["github"]["repository"], REPO);
    assert_eq!(created["github"]["issue"], issue);
    assert!(created["goal"]
        .as_str()
        .unwrap()
        .contains("The parser needs g"));
    wait_until("the issue links the mission", || {
        !w.comments_with(issue, &format!("/missions/{id}"))
            .is_empty()
    })
    .await;

    // Proposed: the branch pushed over HTTP with the installation's token, a draft pull
    // request, the gate a check run waiting for a person.
    wait_until("the mission waits for approval", || {
        w.status(&id) == "awaiting_approval"
    })
    .await;
    let branch = format!("flightdeck/{id}");
    let pulls = w.fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    let pull = pulls[0].clone();
    let number = pull["number"].as_u64().unwrap();
    let head = pull["head"]["sha"].as_str().unwrap().to_string();
    assert_eq!(pull["draft"], true);
    assert_eq!(pull["head"]["ref"].as_str(), Some(branch.as_str()));
    assert!(w
        .fake
        .pushes()
        .iter()
        .any(|p| p.1 == format!("refs/heads/{branch}") && p.2 == head));
    let proposed = w.events(&id, "change.proposed");
    assert_eq!(proposed.len(), 1);
    assert_eq!(
        proposed[0]["data"]["head_sha"].as_str(),
        Some(head.as_str())
    );
    assert_eq!(proposed[0]["data"]["pr_number"], number);
    let commit = git(w.bare.path(), &["log", "-1", "--format=%B", &head]);
    assert!(
        commit.contains("Co-authored-by: carol-gh <carol-gh@users.noreply.github.com>"),
        "{commit}"
    );
    wait_until("the check run asks for action", || {
        w.check_runs_on(&head)
            .iter()
            .any(|r| r["conclusion"] == "action_required")
    })
    .await;
    let run = w.check_runs_on(&head)[0].clone();
    assert_eq!(run["actions"].as_array().map(Vec::len), Some(2), "{run:#}");
    assert!(run["details_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/missions/{id}")));

    // Eve approves: she may write, but owns nothing the change touches. Told why, nothing
    // recorded.
    let review = w
        .fake
        .submit_review(REPO, number, "eve-gh", "APPROVED", &head);
    let payload = w.fake.pull_request_review_submitted(REPO, review);
    assert_eq!(w.deliver("pull_request_review", payload).await, 202);
    wait_until("Eve is told her review does not count", || {
        !w.comments_with(number, "@eve-gh").is_empty()
    })
    .await;
    assert!(w.events(&id, "approval.decided").is_empty());
    assert_eq!(w.status(&id), "awaiting_approval");

    // Bob, the code owner, approves the head: recorded as @bob on GitHub, the gate closes,
    // the mission publishes, the pull request is ready for review with its description.
    let review = w
        .fake
        .submit_review(REPO, number, "bob-gh", "APPROVED", &head);
    let payload = w.fake.pull_request_review_submitted(REPO, review);
    assert_eq!(w.deliver("pull_request_review", payload).await, 202);
    wait_until("the mission succeeds", || w.status(&id) == "succeeded").await;
    let decided = w.events(&id, "approval.decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["data"]["by"], "@bob");
    assert_eq!(decided[0]["data"]["channel"], "github");
    assert_eq!(decided[0]["data"]["actor"]["channel_user"], "bob-gh");
    let published = w.events(&id, "change.published");
    assert_eq!(published[0]["data"]["pr_url"], pull["html_url"]);
    wait_until("the check run succeeds and the PR is ready", || {
        let ready = w.fake.pulls(REPO)[0]["draft"] == false;
        ready
            && w.check_runs_on(&head)
                .iter()
                .any(|r| r["conclusion"] == "success")
    })
    .await;
    let body = w.fake.pulls(REPO)[0]["body"].as_str().unwrap().to_string();
    assert!(
        body.contains("@bob"),
        "the description names who approved: {body}"
    );
    assert!(
        body.contains(&format!("/missions/{id})")),
        "the description links the mission's page: {body}"
    );
    wait_until("the issue's comment says it succeeded", || {
        !w.comments_with(issue, "Succeeded").is_empty()
    })
    .await;
    // The mission's comment was updated in place, not posted again.
    assert_eq!(w.comments_with(issue, &format!("/missions/{id}")).len(), 1);

    // The timeline replays: the proposal and its pull request are served from the record,
    // nothing is pushed again.
    let pushes = w.fake.pushes().len();
    let replay = tokio::task::block_in_place(|| w.cli.run(&["--json", "replay", &id]));
    assert_eq!(replay.code(), 0, "{}{}", replay.stdout(), replay.stderr());
    assert_eq!(w.fake.pushes().len(), pushes);

    // Eve pushes to the branch and changes the diff: the new head's check run fails.
    let clone = tempfile::tempdir().unwrap();
    git(
        clone.path(),
        &["clone", "--quiet", w.bare.path().to_str().unwrap(), "."],
    );
    git(clone.path(), &["checkout", "--quiet", &branch]);
    std::fs::write(
        clone.path().join("src/lib.rs"),
        "pub fn f() {}\npub fn evil() {}\n",
    )
    .unwrap();
    git(clone.path(), &["commit", "--quiet", "-am", "sneak"]);
    git(clone.path(), &["push", "--quiet", "origin", &branch]);
    let after = git(clone.path(), &["rev-parse", "HEAD"]);
    let payload = w
        .fake
        .pull_request_synchronize(REPO, number, &after, "eve-gh");
    assert_eq!(w.deliver("pull_request", payload).await, 202);
    wait_until("the new head's check run fails", || {
        w.check_runs_on(&after)
            .iter()
            .any(|r| r["conclusion"] == "failure")
    })
    .await;

    // Bob's review comments on Eve's head: no follow-up, since it would carry her commit
    // under an approval of its own change only; he is told why.
    let review = w
        .fake
        .submit_review(REPO, number, "bob-gh", "COMMENTED", &after);
    w.fake.set_review_body(REPO, review, "Please rename g.");
    let payload = w.fake.pull_request_review_submitted(REPO, review);
    assert_eq!(w.deliver("pull_request_review", payload).await, 202);
    wait_until("Bob is told the head is not what was approved", || {
        w.comments_with(number, "@bob-gh")
            .iter()
            .any(|c| c.contains("nobody approved"))
    })
    .await;
    assert_eq!(w.missions().len(), 1);

    // Eve reverts: the head's content is the approved one again, and its check run says so.
    git(clone.path(), &["revert", "--no-edit", "HEAD"]);
    git(clone.path(), &["push", "--quiet", "origin", &branch]);
    let reverted = git(clone.path(), &["rev-parse", "HEAD"]);
    let payload = w
        .fake
        .pull_request_synchronize(REPO, number, &reverted, "eve-gh");
    assert_eq!(w.deliver("pull_request", payload).await, 202);
    wait_until("the reverted head's check run succeeds", || {
        w.check_runs_on(&reverted)
            .iter()
            .any(|r| r["conclusion"] == "success")
    })
    .await;

    // Bob's review comments now: a follow-up mission on the same branch and pull request,
    // governed by what the first mission was created with.
    let review = w
        .fake
        .submit_review(REPO, number, "bob-gh", "COMMENTED", &reverted);
    w.fake
        .set_review_body(REPO, review, "Add a second g, please.");
    w.fake
        .add_review_comment(REPO, review, "src/lib.rs", 2, "this one");
    let payload = w.fake.pull_request_review_submitted(REPO, review);
    assert_eq!(w.deliver("pull_request_review", payload).await, 202);
    wait_until("a follow-up mission is created", || w.missions().len() == 2).await;
    let follow_up = w
        .missions()
        .into_iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .find(|m| *m != id)
        .unwrap();
    let created = w.created(&follow_up);
    assert_eq!(created["follows"].as_str(), Some(id.as_str()));
    assert_eq!(created["github"]["branch"].as_str(), Some(branch.as_str()));
    assert_eq!(created["github"]["pull_request"], number);
    assert_eq!(created["policy_source"], w.created(&id)["policy_source"]);
    assert_eq!(created["base_commit"].as_str(), Some(reverted.as_str()));
    let goal = created["goal"].as_str().unwrap();
    assert!(
        goal.contains("Add a second g") && goal.contains("src/lib.rs:2: this one"),
        "{goal}"
    );
    wait_until("the follow-up proposes on the same pull request", || {
        w.events(&follow_up, "change.proposed")
            .first()
            .is_some_and(|p| {
                p["data"]["pr_number"] == number && p["data"]["branch"] == branch.as_str()
            })
    })
    .await;
    assert_eq!(w.fake.pulls(REPO).len(), 1);

    // The follow-up's gate is a check run on its own head; "Re-run" draws it again. Bob
    // asked for the follow-up, so his click is refused and told; Dana's decides it.
    let follow_head = w.events(&follow_up, "change.proposed")[0]["data"]["head_sha"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        w.fake.pulls(REPO)[0]["head"]["sha"].as_str(),
        Some(follow_head.as_str())
    );
    wait_until("the follow-up's check run asks for action", || {
        w.check_runs_on(&follow_head)
            .iter()
            .any(|r| r["conclusion"] == "action_required")
    })
    .await;
    let run_id = w.check_runs_on(&follow_head)[0]["id"].as_u64().unwrap();
    let rerun = w.fake.check_run_rerequested(REPO, run_id, "bob-gh");
    assert_eq!(w.deliver("check_run", rerun).await, 202);
    let click = w
        .fake
        .check_run_requested_action(REPO, run_id, "approve", "bob-gh");
    assert_eq!(w.deliver("check_run", click).await, 202);
    wait_until("Bob is told he may not approve his own request", || {
        w.comments_with(number, "@bob-gh")
            .iter()
            .any(|c| c.contains("their own request"))
    })
    .await;
    let click = w
        .fake
        .check_run_requested_action(REPO, run_id, "approve", "dana-gh");
    assert_eq!(w.deliver("check_run", click).await, 202);
    wait_until("the follow-up succeeds", || {
        w.status(&follow_up) == "succeeded"
    })
    .await;
    let decided = w.events(&follow_up, "approval.decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["data"]["by"], "@dana");
    assert_eq!(decided[0]["data"]["channel"], "github");

    w.fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_deliveries_are_refused_and_start_nothing() {
    let w = World::new(BIN).await;
    let issue = w.fake.open_issue(REPO, "Anything", "", "mallory");
    let client = reqwest::Client::new();

    // The App's clock is an hour off GitHub's: its JWT is refused, nothing starts.
    let now = w.fake.now();
    w.fake.set_now(now + 3_600);
    let labelled = w
        .fake
        .issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh");
    let skewed = w.fake.deliver(&w.hook(), SECRET, "issues", labelled).await;
    assert_eq!(skewed.status, Some(202));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(w.missions().is_empty());
    w.fake.set_now(now);

    // A forged signature, none at all, more than GitHub ever sends.
    let labelled = w
        .fake
        .issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh");
    let forged = w
        .fake
        .deliver(&w.hook(), "not the secret", "issues", labelled.clone())
        .await;
    assert_eq!(forged.status, Some(401));
    let unsigned = client
        .post(w.hook())
        .header("X-GitHub-Event", "issues")
        .header("X-GitHub-Delivery", "d-unsigned")
        .body(labelled.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let huge = vec![b' '; 25 * 1024 * 1024 + 1];
    let oversize = client
        .post(w.hook())
        .header("X-GitHub-Event", "issues")
        .header("X-GitHub-Delivery", "d-huge")
        .header(
            "X-Hub-Signature-256",
            flightdeck_github::webhook::sign(SECRET.as_bytes(), &huge),
        )
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status().as_u16(), 413);

    // Mallory may only read: her command is answered, nothing starts.
    let command = w
        .fake
        .issue_comment_created(REPO, issue, "mallory", "/flightdeck run fix");
    assert_eq!(w.deliver("issue_comment", command).await, 202);
    wait_until("Mallory is told", || {
        !w.comments_with(issue, "@mallory").is_empty()
    })
    .await;

    // A label for an installation the App does not have.
    let mut unknown = w
        .fake
        .issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh");
    unknown["installation"]["id"] = Value::from(99_999);
    assert_eq!(w.deliver("issues", unknown).await, 202);

    // A label on a repository of another installation, claimed for this one: the App cannot
    // reach it through this installation, so nothing starts and nothing is said there.
    w.fake.add_installation(7_777, "globex");
    w.fake.add_repo(7_777, "globex/gadgets", "main");
    let theirs = w
        .fake
        .open_issue("globex/gadgets", "Theirs", "", "carol-gh");
    let mut foreign = w
        .fake
        .issues_labeled("globex/gadgets", theirs, "flightdeck:fix", "carol-gh");
    foreign["installation"]["id"] = Value::from(github_setup::INSTALLATION);
    assert_eq!(w.deliver("issues", foreign).await, 202);

    // Carol's label, delivered twice (GitHub's redelivery keeps the id): one mission.
    let labelled = w
        .fake
        .issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh");
    let first = w.fake.deliver(&w.hook(), SECRET, "issues", labelled).await;
    assert_eq!(first.status, Some(202));
    let again = w.fake.redeliver(&first.delivery_id).await;
    assert_eq!(again.status, Some(200), "{}", again.body);
    wait_until("Carol's mission is created", || w.missions().len() == 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let missions = w.missions();
    assert_eq!(
        missions.len(),
        1,
        "only Carol's label started a mission: {missions:#?}"
    );
    let id = missions[0]["id"].as_str().unwrap();
    assert_eq!(w.created(id)["github"]["requested_by_login"], "carol-gh");
    assert_eq!(w.created(id)["github"]["repository"], REPO);
    assert!(w.fake.comments("globex/gadgets", theirs).is_empty());
}
