//! Approvals in Slack (issue 20): how long from a click to the decision recorded and to the
//! request's message redrawn, and how many Slack API calls an approval costs.
//!
//! The real binary (`flightdeck serve`, its store SQLite) with `[slack]` pointed at
//! `flightdeck_testkit::fake_slack::FakeSlack` (Socket Mode and HTTP mode at once), the same
//! `[people]`, policy (two owners must approve a publish) and one-step template as
//! `tests/slack.rs`. 2 × N missions are parked (untimed: `run --json`, exit 3 each) and
//! each one's request message waited for. Then, one click at a time, Bob approves each
//! mission (1 of 2): N missions by Socket Mode, N by HTTP mode. For each click, on this
//! process's monotonic clock (`Instant`) from just before the click is handed over:
//!
//! - **Socket Mode** (`FakeSlack::socket_click`): the ack, as the fake measures it (from
//!   sending the envelope to reading the ack frame, no polling); `approval.decided` visible
//!   in the store; the message showing "1 of 2".
//! - **HTTP mode** (`POST /slack/actions`, the form body signed with the signing secret,
//!   one keep-alive client): the 200 response (the server answers once the decision is
//!   recorded); `approval.decided` visible; the message showing "1 of 2".
//!
//! The two "visible" measures are looked for concurrently, each by its own poller:
//! - `approval.decided`: the mission's events after its last known seq, read through a
//!   read-only `SqliteStore` of the server's data directory (no CLI spawned, nothing asked
//!   of the server) each time the store's change feed wakes (inotify, after each commit
//!   of any process), and at least every 20 ms.
//! - the redraw: the fake's count of `chat.update` calls, every 1 ms (a tokio sleep: 1–2
//!   ms); the fake counts a call in the same step as it stores the edit. Then the message
//!   is read once, untimed, and must show "1 of 2" (reading it copies every stored
//!   message, which takes milliseconds once there are hundreds).
//!
//! Beside them, the server's own stamps (its wall clock, whole ms): from the click (this
//! process's wall clock) to `approval.decided`, and from it to the redraw's
//! `notification.sent` (recorded once `chat.update` answered). Between clicks the bench
//! waits for that `notification.sent`, so each click meets a settled server; the pollers'
//! look counts and costs are printed, to tell what they add.

//! Calls per approval: every call the fake received over the whole run, per method,
//! divided by the approvals decided (the request's post, the redraw after the vote, and
//! the server's one-off `auth.test` / `apps.connections.open` spread over them).
//!
//! `cargo bench -p flightdeck --bench slack`: N = 30 per mode (`FLIGHTDECK_SLACK_CLICKS`
//! overrides), p50 / p90 / p99 / max (nearest rank) of each measure. Outside `cargo bench`
//! (no `--bench` argument, e.g. `cargo test --all-targets`) N = 2 per mode, checking only
//! that every click was decided and redrawn.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a bench: failing loudly is the point

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use flightdeck_store::{ChangeFeed, EventStore, SqliteStore};
use flightdeck_testkit::fake_slack::FakeSlack;
use flightdeck_testkit::{Cli, TestRepo};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

#[path = "../tests/common/slack_setup.rs"]
mod slack_setup;

use slack_setup::{config, serve, APP_TOKEN, CHANNEL, POLICY, SECRET, TOKEN};

/// Clicks per mode under `cargo bench` unless `FLIGHTDECK_SLACK_CLICKS` says otherwise.
const CLICKS: usize = 30;
/// Missions parked at once (each a `run` process).
const PARK_AT_ONCE: usize = 4;
/// How often the fake is looked at for a click's redraw.
const POLL: Duration = Duration::from_millis(1);
/// The store is read when its change feed wakes, and at least this often.
const FEED_FALLBACK: Duration = Duration::from_millis(20);
/// How long a click may take to show all its outcomes before the bench fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// The methods counted per approval.
const METHODS: [&str; 6] = [
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "apps.connections.open",
    "auth.test",
    "users.info",
];

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Milliseconds since the epoch: the clock the server stamps events with.
fn wall_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

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

/// Parks `count` missions of template `t`, `PARK_AT_ONCE` `run` processes at a time;
/// their ids.
fn park(cli: &Cli, repo: &TestRepo, count: usize) -> Vec<String> {
    let repo = repo.path().to_str().unwrap();
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let batch: Vec<Child> = (ids.len()..count.min(ids.len() + PARK_AT_ONCE))
            .map(|_| {
                cli.command(&["--json", "run", "t", "--repo", repo])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in batch {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(3),
                "the mission should park: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
            ids.push(summary["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// A parked mission and its request's message.
struct Parked {
    id: String,
    ts: String,
    /// The mission's last seq once its request was recorded as sent.
    seq: u64,
}

/// Waits until the mission's request is posted and recorded (`notification.sent`).
async fn request_of(store: &SqliteStore, id: &str) -> Parked {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = store.events(id, 0).await.unwrap();
        let sent = events
            .iter()
            .find(|e| e.event_type == "notification.sent" && e.data["kind"] == "approval_request");
        if let Some(sent) = sent {
            assert_eq!(sent.data["target"], CHANNEL, "{}", sent.data);
            return Parked {
                id: id.to_string(),
                ts: sent.data["ref"].as_str().unwrap().to_string(),
                seq: events.last().unwrap().seq,
            };
        }
        assert!(
            Instant::now() < deadline,
            "mission {id}: its request was never posted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one click measured, in ms from just before it was handed over.
struct Sample {
    /// Socket Mode: the ack as the fake measured it; HTTP mode: the 200 response.
    answered: f64,
    decided: Seen,
    redrawn: Seen,
    /// The server's stamps (ms, wall clock): click → `approval.decided`, and from it to the
    /// redraw's `notification.sent` (recorded once `chat.update` answered).
    stamped_decided: f64,
    stamped_recorded: f64,
}

/// When a poller first saw its outcome, and how often it looked.
#[derive(Clone, Copy)]
struct Seen {
    /// ms from the click.
    at: f64,
    /// Looks until then (the last one saw it).
    looks: u32,
    /// ms spent in those looks, and in the slowest.
    looking: f64,
    slowest: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What a poller waits on between looks.
enum Wake<'a> {
    /// [`POLL`].
    Sleep,
    /// The store's change feed, or [`FEED_FALLBACK`].
    Feed(&'a mut ChangeFeed),
}

impl Wake<'_> {
    async fn wait(&mut self) {
        match self {
            Wake::Sleep => tokio::time::sleep(POLL).await,
            Wake::Feed(feed) => {
                let _ = tokio::time::timeout(FEED_FALLBACK, feed.changed()).await;
            }
        }
    }
}

/// Looks until `look` finds something, waiting on `wake` between looks; when (from
/// `started`) and what.
async fn first_seen<T, F, Fut>(
    started: Instant,
    what: &str,
    mut wake: Wake<'_>,
    mut look: F,
) -> (Seen, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let (mut looks, mut looking, mut slowest) = (0, 0.0, 0.0_f64);
    loop {
        looks += 1;
        let began = Instant::now();
        let found = look().await;
        let took = ms(began.elapsed());
        looking += took;
        slowest = slowest.max(took);
        if let Some(found) = found {
            let at = ms(started.elapsed());
            let seen = Seen {
                at,
                looks,
                looking,
                slowest,
            };
            return (seen, found);
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not seen after {PATIENCE:?}"
        );
        wake.wait().await;
    }
}

/// `approval.decided` after the mission's last known seq, read from the store each time
/// its change feed wakes; its seq.
async fn decided(
    started: Instant,
    store: &SqliteStore,
    feed: &mut ChangeFeed,
    mission: &Parked,
) -> (Seen, u64) {
    first_seen(
        started,
        &format!("{}: approval.decided", mission.id),
        Wake::Feed(feed),
        || async {
            store
                .events(&mission.id, mission.seq)
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.event_type == "approval.decided")
                .map(|e| e.seq)
        },
    )
    .await
}

/// The mission's message redrawn to show Bob's vote. What is looked for is the fake's
/// count of `chat.update` calls passing `updates`: the fake counts a call in the same step
/// as it stores the edit, and a count is a cheap look, where reading a message copies
/// every message of the channel (milliseconds once there are hundreds, which would be
/// added to the measure). Once counted, the message is read (untimed) and must show
/// "1 of 2".
async fn redrawn(started: Instant, slack: &FakeSlack, mission: &Parked, updates: usize) -> Seen {
    let what = format!("{}: the message's chat.update", mission.id);
    let (seen, ()) = first_seen(started, &what, Wake::Sleep, || async {
        (slack.calls("chat.update") > updates).then_some(())
    })
    .await;
    let message = slack.message(CHANNEL, &mission.ts).unwrap();
    assert!(
        message.to_string().contains("1 of 2"),
        "{}: after the click the message shows {message}",
        mission.id
    );
    seen
}

/// Waits until the redraw after the vote at `decided` is recorded (`notification.sent`
/// with a digest): the server is settled for the next click. The server's own stamps (ms):
/// from `clicked` (this process's wall clock) to `approval.decided`, and from it to that
/// `notification.sent`.
async fn settle(store: &SqliteStore, id: &str, decided: u64, clicked: i64) -> (f64, f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = store.events(id, decided - 1).await.unwrap();
        let sent = events
            .iter()
            .find(|e| e.event_type == "notification.sent" && e.data["kind"] == "approval_request");
        if let Some(sent) = sent {
            let at = events[0].at_millis();
            return ((at - clicked) as f64, (sent.at_millis() - at) as f64);
        }
        assert!(
            Instant::now() < deadline,
            "mission {id}: the redraw was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bob approves `mission` over Socket Mode.
async fn socket_click(
    slack: &FakeSlack,
    store: &SqliteStore,
    feed: &mut ChangeFeed,
    mission: &Parked,
) -> Sample {
    let click = slack.click(CHANNEL, &mission.ts, "UBOB", "flightdeck_approve");
    let updates = slack.calls("chat.update");
    // What changed before the click is not looked for.
    let _ = feed.has_changed();
    let clicked = wall_ms();
    let started = Instant::now();
    let envelope = slack.socket_click(&click);
    let ((decided, seq), redrawn) = tokio::join!(
        decided(started, store, feed, mission),
        redrawn(started, slack, mission, updates)
    );
    // The fake timed the ack itself: from sending the envelope to reading the ack.
    let acked = slack.wait_for_ack(&envelope, PATIENCE).await;
    let (stamped_decided, stamped_recorded) = settle(store, &mission.id, seq, clicked).await;
    Sample {
        answered: ms(acked),
        decided,
        redrawn,
        stamped_decided,
        stamped_recorded,
    }
}

/// Bob approves `mission` over HTTP mode.
async fn http_click(
    http: &reqwest::Client,
    server: &str,
    slack: &FakeSlack,
    store: &SqliteStore,
    feed: &mut ChangeFeed,
    mission: &Parked,
) -> Sample {
    let (body, headers) = slack
        .click(CHANNEL, &mission.ts, "UBOB", "flightdeck_approve")
        .signed(SECRET, now());
    let mut request = http.post(format!("{server}/slack/actions")).body(body);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let updates = slack.calls("chat.update");
    // What changed before the click is not looked for.
    let _ = feed.has_changed();
    let clicked = wall_ms();
    let started = Instant::now();
    let post = async {
        let response = request.send().await.unwrap();
        let took = started.elapsed();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "POST /slack/actions: {text}");
        took
    };
    let (answered, (decided, seq), redrawn) = tokio::join!(
        post,
        decided(started, store, feed, mission),
        redrawn(started, slack, mission, updates)
    );
    let (stamped_decided, stamped_recorded) = settle(store, &mission.id, seq, clicked).await;
    Sample {
        answered: ms(answered),
        decided,
        redrawn,
        stamped_decided,
        stamped_recorded,
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(mode: &str, what: &str, samples: &[Sample], pick: impl Fn(&Sample) -> f64) {
    let mut values: Vec<f64> = samples.iter().map(pick).collect();
    values.sort_by(f64::total_cmp);
    println!(
        "  {mode:<11} {what:<38} p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        percentile(&values, 0.50),
        percentile(&values, 0.90),
        percentile(&values, 0.99),
        values[values.len() - 1],
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let clicks = if benching {
        setting("FLIGHTDECK_SLACK_CLICKS", CLICKS)
    } else {
        2
    };
    assert!(clicks > 0, "FLIGHTDECK_SLACK_CLICKS: at least 1");
    let whole = Instant::now();

    let slack = FakeSlack::start(TOKEN).await;
    slack.enable_socket_mode(APP_TOKEN);
    slack.add_channel(CHANNEL, "approvals");
    slack.add_user("UDANA", "dana", Some("Dana@acme.test"));
    let cli = Cli::new(BIN);
    cli.write_config(&config(&slack.api_url()));
    let repo = TestRepo::with_files(&[
        ("README.md", "# sample\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        (".flightdeck/policy.toml", POLICY),
        (
            ".flightdeck/missions/t.toml",
            "[publish]\ntitle = \"Add g\"\n[[steps]]\nrun = \"echo 'pub fn g() {}' >> src/lib.rs\"\n",
        ),
    ]);
    repo.commit_all("sample");
    let server = serve(&cli);
    slack.wait_for_socket(1, Duration::from_secs(30)).await;

    // Untimed: park 2 × N missions and wait for each one's request.
    let parking = Instant::now();
    let ids = tokio::task::block_in_place(|| park(&cli, &repo, 2 * clicks));
    let store = SqliteStore::open_read_only(&cli.data_dir().join("flightdeck.db"))
        .await
        .unwrap();
    let mut parked = Vec::with_capacity(ids.len());
    for id in &ids {
        parked.push(request_of(&store, id).await);
    }
    let parking = parking.elapsed();
    // Nothing else is on its way: the last post's record is in, no click yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (by_socket, by_http) = parked.split_at(clicks);

    let mut feed = store.subscribe().await.unwrap();
    let measuring = Instant::now();
    let mut socket = Vec::with_capacity(clicks);
    for mission in by_socket {
        socket.push(socket_click(&slack, &store, &mut feed, mission).await);
    }
    let http = reqwest::Client::new();
    let mut posted = Vec::with_capacity(clicks);
    for mission in by_http {
        posted.push(http_click(&http, &server.url, &slack, &store, &mut feed, mission).await);
    }
    let measuring = measuring.elapsed();

    // Every mission: one decision, recorded as Bob's in Slack; nobody told off.
    for mission in &parked {
        let decisions: Vec<Value> = store
            .events(&mission.id, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "approval.decided")
            .map(|e| e.data)
            .collect();
        assert_eq!(decisions.len(), 1, "mission {}: {decisions:?}", mission.id);
        assert_eq!(decisions[0]["by"], "@bob", "{}", decisions[0]);
        assert_eq!(decisions[0]["channel"], "slack", "{}", decisions[0]);
    }
    assert!(slack.ephemerals().is_empty(), "{:?}", slack.ephemerals());
    let approvals = parked.len();
    let calls: BTreeMap<&str, usize> = METHODS.iter().map(|m| (*m, slack.calls(m))).collect();
    drop(store);
    drop(server);
    slack.assert_clean();

    if !benching {
        println!(
            "quick run (not under `cargo bench`): {clicks} Socket Mode and {clicks} HTTP clicks, each decided and redrawn; {:.1} s",
            whole.elapsed().as_secs_f64()
        );
        return;
    }
    println!(
        "flightdeck Slack benchmark: {clicks} clicks per mode, one at a time, against the fake; {} cores",
        cores()
    );
    println!(
        "  parked {approvals} missions in {:.1} s (untimed); measured in {:.1} s; whole run {:.1} s",
        parking.as_secs_f64(),
        measuring.as_secs_f64(),
        whole.elapsed().as_secs_f64()
    );
    type Measure = fn(&Sample) -> f64;
    for (mode, samples, answered) in [
        ("socket mode", &socket, "click → ack (fake's clock)"),
        ("http mode", &posted, "click → 200"),
    ] {
        let measures: [(&str, Measure); 6] = [
            (answered, |s| s.answered),
            ("click → approval.decided", |s| s.decided.at),
            ("click → message shows 1 of 2", |s| s.redrawn.at),
            ("decided → message (difference)", |s| {
                s.redrawn.at - s.decided.at
            }),
            ("server stamps: click → decided", |s| s.stamped_decided),
            ("server stamps: decided → redraw rec.", |s| {
                s.stamped_recorded
            }),
        ];
        for (what, pick) in measures {
            report(mode, what, samples, pick);
        }
    }
    for (what, pick) in [
        ("the store", (|s: &Sample| s.decided) as fn(&Sample) -> Seen),
        ("the fake's message", |s: &Sample| s.redrawn),
    ] {
        let seen: Vec<Seen> = socket.iter().chain(&posted).map(pick).collect();
        let looks: u32 = seen.iter().map(|s| s.looks).sum();
        let spent: f64 = seen.iter().map(|s| s.at).sum();
        let looking: f64 = seen.iter().map(|s| s.looking).sum();
        let slowest = seen.iter().map(|s| s.slowest).fold(0.0, f64::max);
        println!(
            "  {what} looked at every {:.2} ms on average until seen ({looks} looks, {:.2} ms each, the slowest {slowest:.1} ms)",
            spent / f64::from(looks),
            looking / f64::from(looks)
        );
    }
    println!("Slack API calls over the run, per approval decided ({approvals}):");
    for (method, count) in &calls {
        println!(
            "  {method:<22} {count:>4} calls  {:.3} per approval",
            *count as f64 / approvals as f64
        );
    }
    let total: usize = calls.values().sum();
    println!(
        "  {:<22} {total:>4} calls  {:.3} per approval",
        "all",
        total as f64 / approvals as f64
    );
}
