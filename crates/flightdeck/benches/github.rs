//! GitHub webhooks (issue 19): how fast `flightdeck serve` answers a burst of deliveries,
//! how long until it has handled them all, and how many GitHub API calls a mission costs.
//!
//! The real binary (`flightdeck serve`, default `--workers 2`, its store SQLite) with
//! `[github]` pointed at `flightdeck_testkit::fake_github::FakeGitHub` hosting `acme/widgets`
//! over smart HTTP: the same setup as `tests/github.rs` (`tests/common/github_setup.rs`).
//!
//! 1. **Burst**: N deliveries (a mix: one `ping`; `issues.labeled` with labels that are not
//!    flightdeck's; comments that ask nothing; `pull_request.synchronize` and commented
//!    reviews on a person's pull request; and N/100 each of real ones: a `flightdeck:fix`
//!    label by Carol, who may write, which starts a mission, and a `/flightdeck run fix`
//!    comment by Mallory, who may only read, which is refused and told). Each payload is
//!    made by the fake's builders and validated against GitHub's webhook description, its
//!    body signed (`X-Hub-Signature-256` with `flightdeck_github::webhook::sign`, the legacy
//!    `X-Hub-Signature` too) under its own delivery id, with hookshot's headers, all before
//!    the clock starts. Then all are POSTed at once, each by its own task on one reqwest
//!    client, each over its own new connection (no keep-alive: hookshot's deliveries do not
//!    share one), the tasks released together by a barrier. Per request, on this process's
//!    monotonic clock: from the release to its 2xx, and from its own send to its 2xx.
//!    Then how long until the server has handled them all (read through a read-only
//!    `SqliteStore` of the server's data directory: nothing pending, `pending_deliveries`),
//!    and per delivery when it was first seen handled (`delivery_outcome` is Some), looked
//!    for in the order the answers came (the server handles in order of receipt), every
//!    `POLL`. Each outcome must be what its kind makes. Beside them, to tell where the time
//!    went: the handshakes the kernel's listen queues dropped meanwhile (`ListenDrops`, a
//!    client tries a dropped one again after 1 s), and the CPU: the machine's busy share,
//!    the time on CPU of the server's threads and of this process's (client and fake).
//! 2. **Redelivery**: the same N (ids, bodies, signatures) again, at once: each must be
//!    answered 200 ("already received"); a few seconds later, no mission started, no
//!    permission asked, no pull request read and no reply posted that was not before.
//! 3. **API calls per mission**: in a fresh world, M missions one after another, each as in
//!    `tests/github.rs`: Carol's `flightdeck:fix` label → mission → its commit pushed, a
//!    draft pull request, the `flightdeck/approval` check run `action_required` → Bob's
//!    (the code owner's) approving review on the head → the mission succeeds, the check run
//!    `success`, the pull request ready for review, the issue's comment says so. Once the
//!    fake has had no request for `QUIET`, the REST requests it received since the label
//!    was delivered (`FakeGitHub::requests`, GraphQL's `POST /graphql` included, by
//!    operation) and the git smart HTTP requests (`FakeGitHub::git_requests`) are counted,
//!    and what the issue's comment said each time it was drawn (the first mission).
//!
//! `cargo bench -p flightdeck --bench github`: N = 500 (`FLIGHTDECK_GITHUB_BURST`), M = 5
//! (`FLIGHTDECK_GITHUB_MISSIONS`); nearest-rank p50 / p90 / p99 / max. Outside
//! `cargo bench` (no `--bench` argument, e.g. `cargo test --all-targets`) N = 20 and M = 1,
//! checking only that each delivery was answered 2xx and handled and the mission went
//! through. Needs `FLIGHTDECK_GITHUB_SPECS`. The server's own lines (one per delivery
//! handled) go to stderr.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck_store::{EventStore, SqliteStore};
use flightdeck_testkit::fake_github::{
    sign_sha1, uuid_v4, GitHubRequest, GitHubSpecs, HOOKSHOT_USER_AGENT, HOOK_ID,
};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

#[path = "../tests/common/github_setup.rs"]
mod github_setup;

use github_setup::{git, wait_until, World, APP_ID, REPO, SECRET};

/// Deliveries per burst under `cargo bench` unless `FLIGHTDECK_GITHUB_BURST` says otherwise.
const BURST: usize = 500;
/// Missions counted under `cargo bench` unless `FLIGHTDECK_GITHUB_MISSIONS` says otherwise.
const MISSIONS: usize = 5;
/// How often the store is looked at for deliveries handled.
const POLL: Duration = Duration::from_millis(10);
/// Deliveries looked for past the first one not handled yet, in the order of their answers.
const LOOKAHEAD: usize = 16;
/// How long the fake must have had no request before a mission's calls are counted.
const QUIET: Duration = Duration::from_millis(1500);
/// How long after a redelivery burst the server must have done nothing again.
const SETTLE: Duration = Duration::from_secs(3);
/// How long a burst may take to be answered and handled before the bench fails.
const PATIENCE: Duration = Duration::from_secs(120);

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text}: not a number")),
        Err(_) => default,
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(what: &str, values: impl IntoIterator<Item = f64>) {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    println!(
        "  {what:<40} p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        percentile(&values, 0.50),
        percentile(&values, 0.90),
        percentile(&values, 0.99),
        values[values.len() - 1],
    );
}

/// The kernel's count of connections its listen queues dropped (`TcpExt: ListenDrops` of
/// `/proc/net/netstat`, this network namespace, every listener): a dropped handshake is
/// tried again by the client after its retransmission timeout (1 s on Linux).
fn listen_drops() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == "ListenDrops")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// CPU use, to tell where a burst's time went: the machine's (`/proc/stat`, ticks busy and
/// in all), and the time on CPU of the server's threads and of this process's (the client
/// and the fake GitHub), from each thread's `schedstat` (ns; a thread that ended between
/// two readings is not counted, nor the server's child processes).
#[derive(Clone, Copy, Default)]
struct Cpu {
    busy: u64,
    total: u64,
    server_ns: u64,
    bench_ns: u64,
}

fn threads_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// This process's `flightdeck serve` child.
fn server_pid() -> Option<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmdline =
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // `pid (comm) state ppid …`
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(me.as_str()) && cmdline.split('\0').any(|a| a == "serve")
        })
}

fn cpu(server: Option<&str>) -> Cpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Cpu {
        busy: total - idle,
        total,
        server_ns: server.map_or(0, threads_ns),
        bench_ns: threads_ns("self"),
    }
}

/// What the CPU did between two readings `wall` apart.
fn cpu_between(before: Cpu, after: Cpu, wall: Duration) -> String {
    let total = after.total.saturating_sub(before.total).max(1);
    format!(
        "the machine's {} cores {:.0}% busy; the server's threads on CPU {:.0} ms, this bench's (client and fake) {:.0} ms, in {:.0} ms",
        cores(),
        100.0 * after.busy.saturating_sub(before.busy) as f64 / total as f64,
        after.server_ns.saturating_sub(before.server_ns) as f64 / 1e6,
        after.bench_ns.saturating_sub(before.bench_ns) as f64 / 1e6,
        ms(wall)
    )
}

// ---------------------------------------------------------------------------------------------
// The burst

/// What a delivery of the burst is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ping,
    /// Carol's `flightdeck:fix` label on an issue of its own: a mission.
    Trigger,
    /// Mallory's `/flightdeck run fix`: she may only read; refused, told on the issue.
    Refused,
    /// A label that is not flightdeck's.
    OtherLabel,
    /// A comment that asks flightdeck nothing.
    Comment,
    /// A push to a person's pull request.
    Synchronize,
    /// A commented review on a person's pull request.
    Review,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Trigger => "issues.labeled flightdeck:fix (Carol)",
            Kind::Refused => "issue_comment /flightdeck run (Mallory)",
            Kind::OtherLabel => "issues.labeled, another label",
            Kind::Comment => "issue_comment, asks nothing",
            Kind::Synchronize => "pull_request.synchronize, a person's PR",
            Kind::Review => "pull_request_review commented, a person's PR",
        }
    }

    /// What its outcome must say.
    fn outcome(self) -> &'static str {
        match self {
            Kind::Ping => "ping from hook",
            Kind::Trigger => "started from the label `flightdeck:fix`",
            Kind::Refused => "no write access",
            Kind::OtherLabel => "is not a flightdeck label",
            Kind::Comment => "asks flightdeck nothing",
            Kind::Synchronize => "synchronized; no flightdeck mission's",
            Kind::Review => "which is no flightdeck mission's",
        }
    }
}

/// The burst's kinds: one ping, `n / 100` (at least one) of each real one, the rest in the
/// proportions of `NOISE`, in an order shuffled the same way every run (the ping first).
fn mix(n: usize) -> Vec<Kind> {
    const NOISE: [(Kind, usize); 4] = [
        (Kind::OtherLabel, 7),
        (Kind::Comment, 8),
        (Kind::Synchronize, 3),
        (Kind::Review, 2),
    ];
    let real = (n / 100).max(1);
    assert!(n > 2 * real, "a burst of {n} is too small for its mix");
    let mut kinds = vec![Kind::Trigger; real];
    kinds.extend(vec![Kind::Refused; real]);
    let cycle: Vec<Kind> = NOISE
        .iter()
        .flat_map(|(kind, times)| std::iter::repeat_n(*kind, *times))
        .collect();
    let mut at = 0;
    while kinds.len() < n - 1 {
        kinds.push(cycle[at % cycle.len()]);
        at += 1;
    }
    // Fisher–Yates with xorshift64, a fixed seed.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..kinds.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        kinds.swap(i, j);
    }
    kinds.insert(0, Kind::Ping);
    kinds
}

/// One delivery, ready to send.
struct Prepared {
    id: String,
    kind: Kind,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the world holds for the noise: general issues and a person's pull request.
struct Scene {
    issues: Vec<u64>,
    pull: u64,
    pull_head: String,
}

/// Pushes a person's branch `feature` (one commit over main) straight to the bare
/// repository, as a person would, and opens a pull request of it; a few issues.
fn scene(w: &World) -> Scene {
    let clone = tempfile::tempdir().unwrap();
    git(
        clone.path(),
        &["clone", "--quiet", w.bare.path().to_str().unwrap(), "."],
    );
    git(
        clone.path(),
        &["checkout", "--quiet", "-b", "feature", "origin/main"],
    );
    std::fs::write(clone.path().join("README.md"), "# widgets\n\nBy hand.\n").unwrap();
    git(clone.path(), &["commit", "--quiet", "-am", "docs: by hand"]);
    git(clone.path(), &["push", "--quiet", "origin", "feature"]);
    let pull_head = git(clone.path(), &["rev-parse", "HEAD"]);
    let pull = w
        .fake
        .open_pull(REPO, "Docs by hand", "feature", "main", "eve-gh");
    assert_eq!(w.fake.branch_sha(REPO, "feature"), pull_head);
    let issues = (0..10)
        .map(|i| {
            w.fake.open_issue(
                REPO,
                &format!("Question {i}"),
                "How do widgets work?",
                "eve-gh",
            )
        })
        .collect();
    Scene {
        issues,
        pull,
        pull_head,
    }
}

/// Hookshot's headers for a delivery (as `FakeGitHub::deliver` sends them), signed.
fn headers(id: &str, event: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Accept".into(), "*/*".into()),
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), HOOKSHOT_USER_AGENT.into()),
        ("X-GitHub-Delivery".into(), id.into()),
        ("X-GitHub-Event".into(), event.into()),
        ("X-GitHub-Hook-ID".into(), HOOK_ID.to_string()),
        (
            "X-GitHub-Hook-Installation-Target-ID".into(),
            APP_ID.to_string(),
        ),
        (
            "X-GitHub-Hook-Installation-Target-Type".into(),
            "integration".into(),
        ),
        ("X-Hub-Signature".into(), sign_sha1(SECRET, body)),
        (
            "X-Hub-Signature-256".into(),
            flightdeck_github::webhook::sign(SECRET.as_bytes(), body),
        ),
    ]
}

/// The burst's deliveries, made by the fake's builders (its state kept) and validated
/// against GitHub's webhook description.
fn prepare(w: &World, scene: &Scene, kinds: &[Kind]) -> Vec<Prepared> {
    let fake = &w.fake;
    let labels = ["bug", "triage", "good first issue", "documentation"];
    let people = ["carol-gh", "eve-gh", "mallory", "bob-gh"];
    let remarks = [
        "LGTM",
        "Any news on this?",
        "+1",
        "I can reproduce it on main.",
    ];
    let mut triggers = 0;
    kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| {
            let issue = scene.issues[i % scene.issues.len()];
            let (event, payload) = match kind {
                Kind::Ping => ("ping", fake.ping(&w.hook())),
                Kind::Trigger => {
                    triggers += 1;
                    let issue = fake.open_issue(
                        REPO,
                        &format!("Widget {triggers} needs g"),
                        "Add `g` next to `f`.",
                        "carol-gh",
                    );
                    (
                        "issues",
                        fake.issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh"),
                    )
                }
                Kind::Refused => (
                    "issue_comment",
                    fake.issue_comment_created(REPO, issue, "mallory", "/flightdeck run fix"),
                ),
                Kind::OtherLabel => (
                    "issues",
                    fake.issues_labeled(REPO, issue, labels[i % 4], people[i % 3]),
                ),
                Kind::Comment => (
                    "issue_comment",
                    fake.issue_comment_created(REPO, issue, people[i % 4], remarks[i % 4]),
                ),
                Kind::Synchronize => (
                    "pull_request",
                    fake.pull_request_synchronize(REPO, scene.pull, &scene.pull_head, "eve-gh"),
                ),
                Kind::Review => {
                    let review = fake.submit_review(
                        REPO,
                        scene.pull,
                        "carol-gh",
                        "COMMENTED",
                        &scene.pull_head,
                    );
                    fake.set_review_body(REPO, review, "nit: a line about it in the README?");
                    (
                        "pull_request_review",
                        fake.pull_request_review_submitted(REPO, review),
                    )
                }
            };
            if let Err(errors) = GitHubSpecs::get().check_webhook(event, &payload) {
                panic!(
                    "a {event} payload GitHub would not send:\n{}",
                    errors.join("\n")
                );
            }
            let id = uuid_v4();
            let body = payload.to_string().into_bytes();
            Prepared {
                headers: headers(&id, event, &body),
                id,
                kind,
                body,
            }
        })
        .collect()
}

/// One answer: its status and body, when (from the burst's release) and how long after
/// its own send.
struct Answer {
    status: u16,
    text: String,
    from_release: Duration,
    from_send: Duration,
}

/// POSTs every delivery at once, each from its own task (released together by a barrier),
/// over one client that keeps no connection; the release and the answers.
/// Each answer's index goes to `answered` as it comes.
async fn fire(
    client: &reqwest::Client,
    hook: &str,
    all: &Arc<Vec<Prepared>>,
    answered: tokio::sync::mpsc::UnboundedSender<usize>,
) -> (Instant, Vec<Answer>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(all.len() + 1));
    let mut tasks = Vec::with_capacity(all.len());
    for index in 0..all.len() {
        let (client, hook, all, barrier, tell) = (
            client.clone(),
            hook.to_string(),
            all.clone(),
            barrier.clone(),
            answered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let delivery = &all[index];
            let mut request = client.post(&hook).body(delivery.body.clone());
            for (name, value) in &delivery.headers {
                request = request.header(name, value);
            }
            barrier.wait().await;
            let sent = Instant::now();
            let response = request.send().await.unwrap();
            let answered = Instant::now();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let _ = tell.send(index);
            (status, text, sent, answered)
        }));
    }
    drop(answered);
    barrier.wait().await;
    let released = Instant::now();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (status, text, sent, answered) =
            tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
        answers.push(Answer {
            status,
            text,
            from_release: answered.saturating_duration_since(released),
            from_send: answered - sent,
        });
    }
    (released, answers)
}

/// When each delivery (by index) was first seen handled, and its outcome; when nothing
/// was pending any more; the looks at the store.
struct Handled {
    at: Vec<Instant>,
    outcomes: Vec<String>,
    all: Instant,
    looks: usize,
    looking: Duration,
}

/// Looks at the store every `POLL`, while the burst is answered and after, until every
/// delivery was answered and the store holds none pending. Each look asks for the outcome
/// of the deliveries answered and not seen handled yet, in the order their answers came,
/// up to `LOOKAHEAD` past the first one still pending (the server takes them in order of
/// receipt), and, once all were answered, whether any is pending.
async fn handled(
    store: &SqliteStore,
    all: &[Prepared],
    mut answered: tokio::sync::mpsc::UnboundedReceiver<usize>,
) -> Handled {
    let started = Instant::now();
    let mut order: Vec<usize> = Vec::with_capacity(all.len());
    let mut at: Vec<Option<Instant>> = vec![None; all.len()];
    let mut outcomes = vec![String::new(); all.len()];
    let (mut looks, mut looking) = (0, Duration::ZERO);
    let all_done = loop {
        let began = Instant::now();
        while let Ok(index) = answered.try_recv() {
            order.push(index);
        }
        let empty = order.len() == all.len()
            && store
                .pending_deliveries(i64::MAX, 1)
                .await
                .unwrap()
                .is_empty();
        let mut past = 0;
        for &i in &order {
            if at[i].is_some() {
                continue;
            }
            if past >= LOOKAHEAD && !empty {
                break;
            }
            match store.delivery_outcome(&all[i].id).await.unwrap() {
                Some(outcome) => {
                    at[i] = Some(Instant::now());
                    outcomes[i] = outcome;
                }
                None => past += 1,
            }
        }
        looks += 1;
        looking += began.elapsed();
        if empty {
            break Instant::now();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{} of {} deliveries answered, some pending after {PATIENCE:?}",
            order.len(),
            all.len()
        );
        tokio::time::sleep(POLL).await;
    };
    let missing: Vec<&str> = (0..all.len())
        .filter(|&i| at[i].is_none())
        .map(|i| all[i].id.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "nothing pending, yet no outcome for {missing:?}"
    );
    Handled {
        at: at.into_iter().map(Option::unwrap).collect(),
        outcomes,
        all: all_done,
        looks,
        looking,
    }
}

/// What the burst's deliveries did on GitHub and in the store, to compare after the
/// redelivery.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    missions: usize,
    permissions_asked: usize,
    pull_read: usize,
    replies_to_mallory: usize,
    outcomes: Vec<Option<String>>,
}

async fn footprint(w: &World, store: &SqliteStore, all: &[Prepared], scene: &Scene) -> Footprint {
    let mut outcomes = Vec::with_capacity(all.len());
    for delivery in all {
        outcomes.push(store.delivery_outcome(&delivery.id).await.unwrap());
    }
    let replies_to_mallory = scene
        .issues
        .iter()
        .map(|&issue| w.comments_with(issue, "@mallory").len())
        .sum();
    Footprint {
        missions: store.mission_index(10_000).await.unwrap().len(),
        permissions_asked: w.fake.calls("GET", "/repos/acme/widgets/collaborators/"),
        pull_read: w
            .fake
            .calls("GET", &format!("/repos/acme/widgets/pulls/{}", scene.pull)),
        replies_to_mallory,
        outcomes,
    }
}

/// The burst measured: its release, its answers, when handled, the CPU meanwhile.
struct Burst {
    released: Instant,
    cpu_answering: String,
    cpu_handling: String,
    answers: Vec<Answer>,
    handled: Handled,
}

fn check_outcomes(all: &[Prepared], handled: &Handled) {
    for (delivery, outcome) in all.iter().zip(&handled.outcomes) {
        assert!(
            outcome.contains(delivery.kind.outcome()),
            "delivery {} ({}): {outcome}",
            delivery.id,
            delivery.kind.name()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Calls per mission

/// One mission's calls and how long its steps took.
struct Mission {
    rest: Vec<GitHubRequest>,
    git: Vec<GitHubRequest>,
    /// From the label's delivery to the check run asking for action.
    proposed: Duration,
    /// From the review's delivery to the pull request ready and the comment saying so.
    finished: Duration,
}

/// Waits until the fake has had no request for `QUIET`.
async fn quiet(w: &World) {
    let count = || (w.fake.requests().len(), w.fake.git_requests().len());
    let mut last = count();
    let mut since = Instant::now();
    while since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// One mission with one approval, end to end; the requests the fake received for it.
async fn mission(w: &World, n: usize) -> Mission {
    let issue = w.fake.open_issue(
        REPO,
        &format!("The parser needs g ({n})"),
        "Add `g` next to `f`.",
        "carol-gh",
    );
    let known: BTreeSet<String> = w
        .missions()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let (rest_mark, git_mark) = (w.fake.requests().len(), w.fake.git_requests().len());

    let started = Instant::now();
    let labelled = w
        .fake
        .issues_labeled(REPO, issue, "flightdeck:fix", "carol-gh");
    assert_eq!(w.deliver("issues", labelled).await, 202);
    let mut id = String::new();
    wait_until("a mission is created", || {
        match w
            .missions()
            .into_iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .find(|m| !known.contains(m))
        {
            Some(new) => {
                id = new;
                true
            }
            None => false,
        }
    })
    .await;
    wait_until("the mission waits for approval", || {
        w.status(&id) == "awaiting_approval"
    })
    .await;
    let branch = format!("flightdeck/{id}");
    let pull = w
        .fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p["head"]["ref"].as_str() == Some(branch.as_str()))
        .unwrap();
    let number = pull["number"].as_u64().unwrap();
    let head = pull["head"]["sha"].as_str().unwrap().to_string();
    assert_eq!(pull["draft"], true);
    wait_until("the check run asks for action", || {
        w.check_runs_on(&head)
            .iter()
            .any(|r| r["conclusion"] == "action_required")
    })
    .await;
    let proposed = started.elapsed();

    let started = Instant::now();
    let review = w
        .fake
        .submit_review(REPO, number, "bob-gh", "APPROVED", &head);
    let payload = w.fake.pull_request_review_submitted(REPO, review);
    assert_eq!(w.deliver("pull_request_review", payload).await, 202);
    wait_until("the mission succeeds", || w.status(&id) == "succeeded").await;
    let pull_of = |w: &World| {
        w.fake
            .pulls(REPO)
            .into_iter()
            .find(|p| p["number"] == number)
            .unwrap()
    };
    wait_until(
        "the check run succeeds, the PR is ready, the issue says so",
        || {
            pull_of(w)["draft"] == false
                && w.check_runs_on(&head)
                    .iter()
                    .any(|r| r["conclusion"] == "success")
                && !w.comments_with(issue, "Succeeded").is_empty()
        },
    )
    .await;
    let finished = started.elapsed();
    assert_eq!(w.comments_with(issue, &format!("/missions/{id}")).len(), 1);

    quiet(w).await;
    Mission {
        rest: w.fake.requests()[rest_mark..].to_vec(),
        git: w.fake.git_requests()[git_mark..].to_vec(),
        proposed,
        finished,
    }
}

/// A REST request by its operation (`POST /repos/{owner}/{repo}/pulls`), GraphQL's by its
/// path.
fn operation(r: &GitHubRequest) -> String {
    r.operation
        .clone()
        .unwrap_or_else(|| format!("{} {}", r.method, r.path))
}

/// A git request by what it asks (`GET info/refs?service=git-upload-pack`, `POST
/// git-receive-pack`).
fn git_operation(r: &GitHubRequest) -> String {
    let tail = r.path.rsplit_once(".git/").map_or(r.path.as_str(), |t| t.1);
    if r.query.is_empty() {
        format!("{} {tail}", r.method)
    } else {
        format!("{} {tail}?{}", r.method, r.query)
    }
}

fn table(title: &str, missions: &[Mission], pick: impl Fn(&Mission) -> Vec<String>) -> f64 {
    let per: Vec<BTreeMap<String, usize>> = missions
        .iter()
        .map(|m| {
            let mut counts = BTreeMap::new();
            for key in pick(m) {
                *counts.entry(key).or_insert(0) += 1;
            }
            counts
        })
        .collect();
    let keys: BTreeSet<&String> = per.iter().flat_map(BTreeMap::keys).collect();
    println!(
        "{title}, per mission (1..{}) and their mean:",
        missions.len()
    );
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(10).max(10);
    for key in keys {
        let counts: Vec<usize> = per
            .iter()
            .map(|c| c.get(key).copied().unwrap_or(0))
            .collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        let shown: Vec<String> = counts.iter().map(|c| format!("{c:>2}")).collect();
        println!("  {key:<width$}  {}  mean {mean:>5.2}", shown.join(" "));
    }
    let totals: Vec<usize> = per.iter().map(|c| c.values().sum()).collect();
    let mean = totals.iter().sum::<usize>() as f64 / totals.len() as f64;
    let shown: Vec<String> = totals.iter().map(|c| format!("{c:>2}")).collect();
    println!("  {:<width$}  {}  mean {mean:>5.2}", "all", shown.join(" "));
    mean
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (n, m) = if benching {
        (
            setting("FLIGHTDECK_GITHUB_BURST", BURST),
            setting("FLIGHTDECK_GITHUB_MISSIONS", MISSIONS),
        )
    } else {
        (20, 1)
    };
    assert!(m > 0, "FLIGHTDECK_GITHUB_MISSIONS: at least 1");
    let whole = Instant::now();

    // 1. The burst.
    let w = World::new(BIN).await;
    let scene = scene(&w);
    let kinds = mix(n);
    let preparing = Instant::now();
    let all = Arc::new(prepare(&w, &scene, &kinds));
    let preparing = preparing.elapsed();
    let store = SqliteStore::open_read_only(&w.cli.data_dir().join("flightdeck.db"))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .unwrap();
    // Nothing else on its way.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let hook = w.hook();
    let server = server_pid();
    let drops_before = listen_drops();
    let cpu_before = cpu(server.as_deref());
    let (tell, answered) = tokio::sync::mpsc::unbounded_channel();
    let fired = async {
        let fired = fire(&client, &hook, &all, tell).await;
        (fired, cpu(server.as_deref()))
    };
    let (((released, answers), cpu_answered), handled) =
        tokio::join!(fired, handled(&store, &all, answered));
    let cpu_handled = cpu(server.as_deref());
    for (delivery, answer) in all.iter().zip(&answers) {
        assert_eq!(
            answer.status,
            202,
            "delivery {} ({}): {}",
            delivery.id,
            delivery.kind.name(),
            answer.text
        );
    }
    let drops = listen_drops().zip(drops_before).map(|(a, b)| a - b);
    check_outcomes(&all, &handled);
    let answering = answers.iter().map(|a| a.from_release).max().unwrap();
    let cpu_answering = cpu_between(cpu_before, cpu_answered, answering);
    let cpu_handling = cpu_between(
        cpu_answered,
        cpu_handled,
        handled
            .all
            .saturating_duration_since(released)
            .saturating_sub(answering),
    );
    let first = Burst {
        released,
        cpu_answering,
        cpu_handling,
        answers,
        handled,
    };

    // The missions it started, parked at their gates, their check runs drawn: the server
    // is quiet again.
    let triggers = kinds.iter().filter(|k| **k == Kind::Trigger).count();
    wait_until("the burst's missions wait for approval", || {
        let missions = w.missions();
        missions.len() == triggers
            && missions.iter().all(|m| {
                m["status"] == "awaiting_approval"
                    && m["id"].as_str().is_some_and(|id| {
                        w.fake.pulls(REPO).iter().any(|p| {
                            p["head"]["ref"].as_str() == Some(&format!("flightdeck/{id}"))
                                && !w
                                    .check_runs_on(p["head"]["sha"].as_str().unwrap())
                                    .is_empty()
                        })
                    })
            })
    })
    .await;
    quiet(&w).await;

    // 2. The same deliveries again.
    let before = footprint(&w, &store, &all, &scene).await;
    let (tell, _) = tokio::sync::mpsc::unbounded_channel();
    let drops_before = listen_drops();
    let cpu_again_before = cpu(server.as_deref());
    let (_, again) = fire(&client, &hook, &all, tell).await;
    let cpu_again = cpu(server.as_deref());
    let answered_again = again
        .iter()
        .map(|a| a.from_release)
        .max()
        .unwrap_or_default();
    let drops_again = listen_drops().zip(drops_before).map(|(a, b)| a - b);
    for (delivery, answer) in all.iter().zip(&again) {
        assert_eq!(
            answer.status,
            200,
            "redelivery {} ({}): {}",
            delivery.id,
            delivery.kind.name(),
            answer.text
        );
    }
    tokio::time::sleep(SETTLE).await;
    assert!(store
        .pending_deliveries(i64::MAX, 1)
        .await
        .unwrap()
        .is_empty());
    let after = footprint(&w, &store, &all, &scene).await;
    assert_eq!(before, after, "the redelivery changed something");
    w.fake.assert_clean();
    let burst_calls = w.fake.requests().len();
    drop(store);
    drop(w);

    // 3. Calls per mission, in a world of their own.
    let w = World::new(BIN).await;
    quiet(&w).await;
    let at_start: Vec<String> = w.fake.requests().iter().map(operation).collect();
    let mut missions = Vec::with_capacity(m);
    for i in 1..=m {
        missions.push(mission(&w, i).await);
    }
    w.fake.assert_clean();
    drop(w);

    if !benching {
        println!(
            "quick run (not under `cargo bench`): a burst of {n} deliveries, each answered 202 and handled, again each answered 200 and nothing handled twice; {m} mission with {} REST calls; {:.1} s",
            missions[0].rest.len(),
            whole.elapsed().as_secs_f64()
        );
        return;
    }

    println!(
        "flightdeck GitHub webhooks benchmark: a burst of {n} deliveries, {m} missions, against the fake; {} cores",
        cores()
    );
    let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    for kind in &kinds {
        *by_kind.entry(*kind).or_insert(0) += 1;
    }
    let bytes: usize = all.iter().map(|d| d.body.len()).sum();
    println!(
        "  {n} deliveries made, validated and signed in {:.1} s (untimed), bodies {:.1} KB on average:",
        preparing.as_secs_f64(),
        bytes as f64 / n as f64 / 1024.0
    );
    for (kind, count) in &by_kind {
        let example = all
            .iter()
            .zip(&first.handled.outcomes)
            .find(|(d, _)| d.kind == *kind)
            .map(|(_, o)| o.as_str())
            .unwrap_or("");
        println!("    {count:>4} {:<46} e.g. \"{example}\"", kind.name());
    }
    let last_answer = first.answers.iter().map(|a| a.from_release).max().unwrap();
    println!("burst: {n} at once, each on its own connection (all 202)");
    report(
        "release → 202",
        first.answers.iter().map(|a| ms(a.from_release)),
    );
    report(
        "own send → 202",
        first.answers.iter().map(|a| ms(a.from_send)),
    );
    report(
        "release → handled (seen in the store)",
        first
            .handled
            .at
            .iter()
            .map(|t| ms(t.saturating_duration_since(first.released))),
    );
    let all_handled = first.handled.all.saturating_duration_since(first.released);
    println!(
        "  the last 202 at {:.1} ms; nothing pending at {:.1} ms ({:.0} deliveries/s from the release)",
        ms(last_answer),
        ms(all_handled),
        n as f64 / all_handled.as_secs_f64()
    );
    let slow = |answers: &[Answer]| {
        answers
            .iter()
            .filter(|a| a.from_send >= Duration::from_millis(900))
            .count()
    };
    println!(
        "  {} answers took 900 ms or more; the kernel's listen queues dropped {} handshakes meanwhile",
        slow(&first.answers),
        drops.map_or_else(|| "?".to_string(), |d| d.to_string())
    );
    println!("  until the last 202: {}", first.cpu_answering);
    println!("  from it until nothing pending: {}", first.cpu_handling);
    println!(
        "  the store looked at {} times, {:.2} ms each on average",
        first.handled.looks,
        ms(first.handled.looking) / first.handled.looks as f64
    );
    println!("redelivery: the same {n} at once (all 200, nothing handled again)");
    report("release → 200", again.iter().map(|a| ms(a.from_release)));
    report("own send → 200", again.iter().map(|a| ms(a.from_send)));
    println!(
        "  {} answers took 900 ms or more; the kernel's listen queues dropped {} handshakes meanwhile",
        slow(&again),
        drops_again.map_or_else(|| "?".to_string(), |d| d.to_string())
    );
    println!(
        "  until the last 200: {}",
        cpu_between(cpu_again_before, cpu_again, answered_again)
    );
    println!(
        "  REST calls the fake received in the burst's world: {burst_calls} (the {triggers} missions' included)"
    );

    println!("GitHub calls per mission ({m} missions, one approval each):");
    println!(
        "  before the first mission (server start): {} REST requests {at_start:?}",
        at_start.len()
    );
    for (i, mission) in missions.iter().enumerate() {
        println!(
            "  mission {}: label → check run action_required {:.1} s; review → ready and said {:.1} s",
            i + 1,
            mission.proposed.as_secs_f64(),
            mission.finished.as_secs_f64()
        );
    }
    // What the issue's comment said each time it was drawn, for the first mission.
    let drawn: Vec<String> = missions[0]
        .rest
        .iter()
        .filter(|r| r.path.contains("/comments") && r.method != "GET")
        .filter_map(|r| {
            let body = r.json()["body"].as_str()?.to_string();
            // The status, after the header line.
            let status = body
                .split_once("\n\n")
                .map_or("", |b| b.1)
                .replace('\n', " ⏎ ");
            Some(format!("{} {status:.240}", r.method))
        })
        .collect();
    println!("  the issue's comment of mission 1, each time it was drawn:");
    for line in drawn {
        println!("    {line}");
    }
    let rest = table("REST requests (GraphQL included)", &missions, |m| {
        m.rest.iter().map(operation).collect()
    });
    let _ = table("git smart HTTP requests", &missions, |m| {
        m.git.iter().map(git_operation).collect()
    });
    let later: Vec<usize> = missions.iter().skip(1).map(|m| m.rest.len()).collect();
    if !later.is_empty() {
        println!(
            "  REST requests of missions 2..{m} (no token to take): mean {:.2}",
            later.iter().sum::<usize>() as f64 / later.len() as f64
        );
    }
    println!(
        "  goal ≤ 15 REST calls per mission: {}",
        if rest <= 15.0 { "met" } else { "missed" }
    );
    println!("whole run {:.1} s", whole.elapsed().as_secs_f64());
}
