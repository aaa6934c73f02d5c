//! The engine's own overhead per agent step (a bench binary; run with
//! `cargo bench -p flightdeck-engine --bench agent_step`).
//!
//! A coder agent on a scripted model (zero latency, no network) reads one file per turn:
//! `read_file` spawns no process, so a step is pure engine work: the model call through the
//! router and the scripted provider, `model.requested` and `model.responded` recorded (with
//! the request and response artifacts), the tool call judged (`tool.requested` +
//! `policy.decided`), the file read, `tool.completed` recorded (with the output artifact).
//! The last turn writes one file and calls `finish`, so the mission ends by publishing.
//!
//! Each run drives a mission of `N1` and one of `N2` read turns through `Engine::run`, built
//! as the `flightdeck` binary builds it (SQLite store, file artifacts, system clock); the
//! per-step overhead is `(T(N2) − T(N1)) / (N2 − N1)`, which cancels the fixed parts
//! (creation, worktree, publishing): the mean cost of steps `N1 + 1 ..= N2`. An observer
//! also times each step of the long mission (from one `tool.completed` to the next),
//! because a step costs more the longer the mission has run.
//!
//! It is measured twice: with the data directory on a real disk (every append is fsynced,
//! and with it the artifacts put since the last one, which live in the same database) and on
//! tmpfs (`/dev/shm`, where fsync costs nothing, so what remains is the engine's CPU work).
//! The store and the artifact store are wrapped to count appends, events and artifacts and
//! to time them, which splits a step into store, artifacts and the rest. (A small artifact's
//! put only stages it; writing it is part of the next append.)
//!
//! **Constant over a mission's length** (`-- long`): a mission of `LONG_STEPS` template steps,
//! each a coder agent that reads a file and finishes (two model calls, two tool calls, a
//! step started and finished), on tmpfs so what is measured is CPU. Each step's duration is
//! taken between two `step.finished`; the mean of steps 51–150 ("step 100") is compared with
//! the mean of steps `LONG_STEPS − 149 … LONG_STEPS − 50` ("step 9,900" for 10,000 steps).
//! Anything the engine does per append that grows with the mission (a summary rebuilt and
//! stored whole, one entry per step) shows as a ratio above 1.
//!
//! `cargo bench -p flightdeck-engine --bench agent_step -- steps` runs only the per-step
//! measurement, `-- long` only the long mission (`FLIGHTDECK_BENCH_LONG_STEPS` overrides its
//! length).
//!
//! Each measurement runs several times; the median, min and max are printed. Outside
//! `cargo bench` (which passes `--bench`), e.g. under `cargo test --all-targets`, it drives
//! one short mission only, to prove the benchmark still works.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flightdeck_core::{Digest, MissionId, MissionStatus, StoredEvent};
use flightdeck_engine::{
    Clock, CreateMission, Engine, EngineConfig, LiveParts, ModelSettings, Observer, SystemClock,
};
use flightdeck_store::{
    AppendRequest, ArtifactError, ArtifactStore, ChangeFeed, EventStore, InputRow, Lease,
    MissionRow, NewInput, RawEvent, StoreError,
};
use flightdeck_testkit::TestRepo;

/// Read turns of the short and the long mission (bench mode).
const N1: usize = 50;
const N2: usize = 200;
const RUNS: usize = 5;
/// Read turns of the one mission of a smoke run.
const SMOKE_TURNS: usize = 10;
/// Template steps of the long mission (bench mode), and of its smoke run.
const LONG_STEPS: usize = 10_000;
const LONG_RUNS: usize = 3;
const SMOKE_LONG_STEPS: usize = 120;
/// The long mission's steps read these files in turn.
const LONG_FILES: usize = 100;

/// Publishing is allowed, so the mission ends by publishing. (A `read_file` call is judged by
/// the workspace's confinement, not by these rules.)
const POLICY: &str = r#"# The bench's policy.
[defaults]
command = "allow"
write = "allow"
publish = "allow"
merge = "approve"

[[rule]]
id = "infra-approve"
action = "publish"
changes_any = ["infra"]
decision = "approve"
tier = "high"

[[rule]]
id = "pipe-to-shell"
action = "command"
command_matches = ["* | sh", "* | bash"]
decision = "deny"
"#;

/// The template of a mission of `turns` read turns (its script is `script-<turns>.toml`).
fn template(turns: usize) -> String {
    format!(
        r#"goal = "Read the sources, then leave a note."

[model]
pin = "scripted:.flightdeck/script-{turns}.toml"

[workspace]
runtime = "local-unsandboxed"

# The agent reads for a long time without changing anything: that is the point here.
[breakers]
no_progress = 100000

[[steps]]
agent = "coder"
"#
    )
}

/// `turns` turns of one `read_file` each (a different file each time), then a write and
/// `finish`.
fn script(turns: usize) -> String {
    let mut text = String::from("model = \"bench-1\"\n");
    for i in 0..turns {
        text.push_str(&format!(
            "\n[[turn]]\ncontent = \"Reading file {i}.\"\n[[turn.call]]\ntool = \"read_file\"\nargs = {{ path = \"src/file_{i:03}.rs\" }}\n"
        ));
    }
    text.push_str(
        "\n[[turn]]\n[[turn.call]]\ntool = \"write_file\"\nargs = { path = \"NOTES.md\", content = \"read everything\\n\" }\n[[turn.call]]\ntool = \"finish\"\nargs = { summary = \"Read the sources and left a note.\" }\n",
    );
    text
}

/// The long mission: `steps` agent steps, each reading one file and finishing; the last one
/// also writes a note so the mission publishes.
fn long_template(steps: usize) -> String {
    let mut text = format!(
        r#"goal = "Read the sources one step at a time, then leave a note."

[model]
pin = "scripted:.flightdeck/long-{steps}.toml"

[workspace]
runtime = "local-unsandboxed"

# Reads change nothing and the files are read again in turn: the two breakers that would
# stop such a mission (after 30 calls that change nothing) are off (0).
[breakers]
no_progress = 0
repeated_action = 0
"#
    );
    for i in 0..steps {
        text.push_str(&format!(
            "\n[[steps]]\nagent = \"coder\"\ntask = \"Read part {i}.\"\n"
        ));
    }
    text
}

/// The long mission's script: per step, a `read_file` turn and a `finish` turn.
fn long_script(steps: usize, files: usize) -> String {
    let mut text = String::from("model = \"bench-1\"\n");
    for i in 0..steps {
        text.push_str(&format!(
            "\n[[turn]]\n[[turn.call]]\ntool = \"read_file\"\nargs = {{ path = \"src/file_{:03}.rs\" }}\n",
            i % files
        ));
        if i + 1 == steps {
            text.push_str("\n[[turn]]\n[[turn.call]]\ntool = \"write_file\"\nargs = { path = \"NOTES.md\", content = \"read everything\\n\" }\n[[turn.call]]\ntool = \"finish\"\nargs = { summary = \"Done.\" }\n");
        } else {
            text.push_str(&format!(
                "\n[[turn]]\n[[turn.call]]\ntool = \"finish\"\nargs = {{ summary = \"Read part {i}.\" }}\n"
            ));
        }
    }
    text
}

/// A source file of a few hundred bytes, different for each `i`.
fn source_file(i: usize) -> String {
    let mut text = format!("//! Module {i} of the bench repository.\n\n");
    for k in 0..6 {
        text.push_str(&format!(
            "pub fn value_{i}_{k}(x: u64) -> u64 {{\n    x.wrapping_mul({}).wrapping_add({k})\n}}\n\n",
            i * 31 + k + 1
        ));
    }
    text
}

/// The repository: `README.md`, `src/file_000.rs` … for the longest mission, the policy,
/// and a template and a script for each mission length.
fn bench_repo(lengths: &[usize], long: &[usize]) -> TestRepo {
    let most = lengths.iter().copied().max().unwrap_or(0).max(LONG_FILES);
    let mut files: Vec<(String, String)> = vec![
        ("README.md".into(), "# bench\n".into()),
        (".flightdeck/policy.toml".into(), POLICY.into()),
    ];
    for i in 0..most {
        files.push((format!("src/file_{i:03}.rs"), source_file(i)));
    }
    for &n in lengths {
        files.push((format!(".flightdeck/missions/steps-{n}.toml"), template(n)));
        files.push((format!(".flightdeck/script-{n}.toml"), script(n)));
    }
    for &n in long {
        files.push((
            format!(".flightdeck/missions/long-{n}.toml"),
            long_template(n),
        ));
        files.push((
            format!(".flightdeck/long-{n}.toml"),
            long_script(n, LONG_FILES),
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    TestRepo::with_files(&borrowed)
}

/// What the store and the artifact store were asked to do, and how long it took.
#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    events: AtomicU64,
    append_ns: AtomicU64,
    puts: AtomicU64,
    new_puts: AtomicU64,
    new_bytes: AtomicU64,
    put_ns: AtomicU64,
    seen: Mutex<HashSet<Digest>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    appends: u64,
    events: u64,
    append_ns: u64,
    puts: u64,
    new_puts: u64,
    new_bytes: u64,
    put_ns: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            append_ns: self.append_ns.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            new_puts: self.new_puts.load(Ordering::Relaxed),
            new_bytes: self.new_bytes.load(Ordering::Relaxed),
            put_ns: self.put_ns.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, o: Snapshot) -> Snapshot {
        Snapshot {
            appends: self.appends - o.appends,
            events: self.events - o.events,
            append_ns: self.append_ns - o.append_ns,
            puts: self.puts - o.puts,
            new_puts: self.new_puts - o.new_puts,
            new_bytes: self.new_bytes - o.new_bytes,
            put_ns: self.put_ns - o.put_ns,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The real store, counted and timed.
struct CountingStore {
    inner: Arc<dyn EventStore>,
    counters: Arc<Counters>,
}

#[async_trait]
impl EventStore for CountingStore {
    async fn append(&self, request: AppendRequest) -> Result<Vec<StoredEvent>, StoreError> {
        let events = request.events.len() as u64;
        let start = Instant::now();
        let stored = self.inner.append(request).await;
        let c = &self.counters;
        c.append_ns
            .fetch_add(nanos(start.elapsed()), Ordering::Relaxed);
        c.appends.fetch_add(1, Ordering::Relaxed);
        c.events.fetch_add(events, Ordering::Relaxed);
        stored
    }

    async fn events(&self, mission: &str, after_seq: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events(mission, after_seq).await
    }

    async fn raw_events(&self, mission: &str) -> Result<Vec<RawEvent>, StoreError> {
        self.inner.raw_events(mission).await
    }

    async fn mission(&self, id: &str) -> Result<Option<MissionRow>, StoreError> {
        self.inner.mission(id).await
    }

    async fn missions(&self, limit: u32) -> Result<Vec<MissionRow>, StoreError> {
        self.inner.missions(limit).await
    }

    async fn mission_ids_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.mission_ids_with_prefix(prefix, limit).await
    }

    async fn acquire_lease(
        &self,
        mission: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner
            .acquire_lease(mission, owner, now_ms, ttl_ms, steal_from)
            .await
    }

    async fn release_lease(&self, mission: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release_lease(mission, owner).await
    }

    async fn release_claim(
        &self,
        mission: &str,
        owner: &str,
        epoch: u64,
    ) -> Result<(), StoreError> {
        self.inner.release_claim(mission, owner, epoch).await
    }

    async fn claim_runnable(
        &self,
        request: flightdeck_store::ClaimRequest,
    ) -> Result<Vec<flightdeck_store::Claimed>, StoreError> {
        self.inner.claim_runnable(request).await
    }

    async fn lease_holders(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        self.inner.lease_holders(now_ms).await
    }

    async fn next_deadline_ms(&self) -> Result<Option<i64>, StoreError> {
        self.inner.next_deadline_ms().await
    }

    async fn feed(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<flightdeck_store::FeedEntry>, StoreError> {
        self.inner.feed(after, limit).await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.inner.feed_head().await
    }

    async fn feed_cursor(&self, reader: &str) -> Result<Option<u64>, StoreError> {
        self.inner.feed_cursor(reader).await
    }

    async fn save_feed_cursor(&self, reader: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save_feed_cursor(reader, position).await
    }

    async fn hold_feed_reader(
        &self,
        reader: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.inner
            .hold_feed_reader(reader, owner, now_ms, ttl_ms, steal_from)
            .await
    }

    async fn release_feed_reader(&self, reader: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release_feed_reader(reader, owner).await
    }

    async fn record_delivery(
        &self,
        id: &str,
        event: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.record_delivery(id, event, body, now_ms).await
    }

    async fn pending_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<flightdeck_store::GitHubDelivery>, StoreError> {
        self.inner.pending_deliveries(now_ms, limit).await
    }

    async fn finish_delivery(
        &self,
        id: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner.finish_delivery(id, outcome, now_ms).await
    }

    async fn retry_delivery(
        &self,
        id: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner.retry_delivery(id, error, retry_at_ms).await
    }

    async fn delivery_outcome(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.inner.delivery_outcome(id).await
    }

    async fn post_input(&self, input: NewInput) -> Result<i64, StoreError> {
        self.inner.post_input(input).await
    }

    async fn pending_inputs(&self, mission: &str) -> Result<Vec<InputRow>, StoreError> {
        self.inner.pending_inputs(mission).await
    }

    async fn input(&self, id: i64) -> Result<Option<InputRow>, StoreError> {
        self.inner.input(id).await
    }

    async fn refuse_input(&self, id: i64, reason: &str, at_ms: i64) -> Result<(), StoreError> {
        self.inner.refuse_input(id, reason, at_ms).await
    }

    async fn missions_with_pending_inputs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.inner.missions_with_pending_inputs(limit).await
    }

    async fn subscribe(&self) -> Result<ChangeFeed, StoreError> {
        self.inner.subscribe().await
    }

    async fn subscribe_inputs(&self) -> Result<ChangeFeed, StoreError> {
        self.inner.subscribe_inputs().await
    }

    async fn reserve_quota(
        &self,
        reservation: flightdeck_store::QuotaReservation,
    ) -> Result<flightdeck_store::QuotaGrant, StoreError> {
        self.inner.reserve_quota(reservation).await
    }

    async fn settle_quota(
        &self,
        settlement: flightdeck_store::QuotaSettlement,
    ) -> Result<bool, StoreError> {
        self.inner.settle_quota(settlement).await
    }

    async fn quota_usage(
        &self,
        period: &str,
    ) -> Result<Vec<flightdeck_store::QuotaUsage>, StoreError> {
        self.inner.quota_usage(period).await
    }
}

/// The real artifact store, counted and timed. An artifact is new the first time its
/// digest is stored (the data directory starts empty); storing it again is free.
struct CountingArtifacts {
    inner: Arc<dyn ArtifactStore>,
    counters: Arc<Counters>,
}

#[async_trait]
impl ArtifactStore for CountingArtifacts {
    async fn put(&self, bytes: &[u8]) -> Result<Digest, ArtifactError> {
        let start = Instant::now();
        let digest = self.inner.put(bytes).await;
        let c = &self.counters;
        c.put_ns
            .fetch_add(nanos(start.elapsed()), Ordering::Relaxed);
        c.puts.fetch_add(1, Ordering::Relaxed);
        if let Ok(digest) = &digest {
            if c.seen.lock().unwrap().insert(digest.clone()) {
                c.new_puts.fetch_add(1, Ordering::Relaxed);
                c.new_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        }
        digest
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError> {
        self.inner.get(digest).await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        self.inner.contains(digest).await
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.inner.local_path(digest)
    }
}

/// Notes when each tool call completes: the time between two `tool.completed` of read
/// calls is exactly one step.
#[derive(Default)]
struct StepClock {
    completed: Mutex<Vec<Instant>>,
    /// When each template step finished (the long mission).
    finished: Mutex<Vec<Instant>>,
}

impl Observer for StepClock {
    fn event(&self, event: &StoredEvent) {
        if event.event_type == "tool.completed" {
            self.completed.lock().unwrap().push(Instant::now());
        } else if event.event_type == "step.finished" {
            self.finished.lock().unwrap().push(Instant::now());
        }
    }
}

/// An engine over a fresh data directory under `base`, as the binary builds one.
struct Bench {
    engine: Engine,
    counters: Arc<Counters>,
    clock: Arc<StepClock>,
    _data: tempfile::TempDir,
}

async fn bench_engine(base: &Path) -> Bench {
    let data = tempfile::Builder::new()
        .prefix("flightdeck-agent-step-")
        .tempdir_in(base)
        .unwrap();
    let url = format!("sqlite://{}", data.path().join("flightdeck.db").display());
    let counters = Arc::new(Counters::default());
    let clock = Arc::new(StepClock::default());
    let (store, artifacts) =
        flightdeck_store::open_with_artifacts(&url, &data.path().join("artifacts"))
            .await
            .unwrap();
    let store = CountingStore {
        inner: store,
        counters: counters.clone(),
    };
    let artifacts = CountingArtifacts {
        inner: artifacts,
        counters: counters.clone(),
    };
    let engine = Engine::new(EngineConfig::live(LiveParts {
        store: Arc::new(store),
        artifacts: Arc::new(artifacts),
        data_dir: data.path().to_path_buf(),
        observer: clock.clone(),
        models: ModelSettings::default(),
        secrets: flightdeck_engine::Secrets::default(),
        workspace: flightdeck_engine::WorkspaceSettings {
            allow_unsandboxed: true,
            ..Default::default()
        },
        teams: flightdeck_policy::Teams::new(BTreeMap::new()),
        people: Default::default(),
        shutdown: flightdeck_engine::no_shutdown(),
        anchors: None,
    }));
    Bench {
        engine,
        counters,
        clock,
        _data: data,
    }
}

/// One mission's measurements.
struct Mission {
    id: String,
    wall: Duration,
    counts: Snapshot,
    /// Durations of steps 2..=turns (between consecutive read completions).
    steps: Vec<Duration>,
    events: usize,
    model_requested: usize,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn request(repo: &Path, name: &str) -> CreateMission {
    let template_file = repo.join(format!(".flightdeck/missions/{name}.toml"));
    CreateMission {
        id: MissionId::from_parts(
            u64::try_from(SystemClock.now_ms()).unwrap_or(0),
            u128::from(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        ),
        template_name: name.to_string(),
        template_file: template_file.display().to_string(),
        template_source: std::fs::read_to_string(&template_file).unwrap(),
        params: BTreeMap::new(),
        repo: repo.to_path_buf(),
        base_ref: "HEAD".into(),
        requested_by: "@bench".into(),
        policy_source: std::fs::read_to_string(repo.join(".flightdeck/policy.toml")).unwrap(),
        policy_file: ".flightdeck/policy.toml".into(),
        codeowners: None,
        base_commit: None,
        remote: None,
        origin: Default::default(),
    }
}

async fn run_mission(bench: &Bench, repo: &Path, turns: usize) -> Mission {
    let request = request(repo, &format!("steps-{turns}"));
    bench.clock.completed.lock().unwrap().clear();
    let before = bench.counters.snapshot();
    let start = Instant::now();
    let state = bench.engine.run(request).await.unwrap();
    let wall = start.elapsed();
    let counts = bench.counters.snapshot() - before;
    assert_eq!(
        state.status,
        MissionStatus::Succeeded,
        "the bench mission did not succeed: {:?}",
        state.error
    );
    assert!(
        state.published.is_some(),
        "the bench mission published nothing"
    );
    let completed = bench.clock.completed.lock().unwrap().clone();
    // `turns` reads, then write_file and finish.
    assert_eq!(completed.len(), turns + 2);
    let steps = completed[..turns].windows(2).map(|w| w[1] - w[0]).collect();
    let timeline = bench
        .engine
        .config()
        .store
        .events(&state.id, 0)
        .await
        .unwrap();
    let model_requested = timeline
        .iter()
        .filter(|e| e.event_type == "model.requested")
        .count();
    assert_eq!(model_requested, turns + 1);
    Mission {
        id: state.id.clone(),
        wall,
        counts,
        steps,
        events: timeline.len(),
        model_requested,
    }
}

/// The filesystem type of the mount holding `path` (from /proc/mounts), for the report.
fn fs_type(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

fn stats(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn row(name: &str, unit: &str, samples: Vec<f64>) {
    let (median, min, max) = stats(samples);
    println!("  {name:<56} median {median:>8.3} {unit}  (min {min:.3}, max {max:.3})");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean_ms(steps: &[Duration]) -> f64 {
    steps.iter().map(|d| ms(*d)).sum::<f64>() / steps.len() as f64
}

fn median_ms(steps: &[Duration]) -> f64 {
    stats(steps.iter().map(|d| ms(*d)).collect()).0
}

/// All runs on one data-directory location.
async fn measure(label: &str, base: &Path, repo: &Path) {
    println!(
        "\n{label}: data directory under {} ({})",
        base.display(),
        fs_type(base)
    );
    // Warm-up: page cache, SQLite, git.
    let warm = bench_engine(base).await;
    run_mission(&warm, repo, 5).await;
    drop(warm);
    let span = (N2 - N1) as f64;
    let mut slope = Vec::new();
    let (mut t1, mut t2, mut fixed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut step_median, mut early, mut late) = (Vec::new(), Vec::new(), Vec::new());
    let (mut in_store, mut in_artifacts, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    let (mut per_append, mut per_new_artifact) = (Vec::new(), Vec::new());
    let mut per_step = Snapshot::default();
    let mut events_per_step = 0.0;
    for _ in 0..RUNS {
        // Each mission gets a data directory of its own: in a shared one, the long mission
        // would find the short one's artifacts (same first turns, same files) already stored.
        let short = run_mission(&bench_engine(base).await, repo, N1).await;
        let long = run_mission(&bench_engine(base).await, repo, N2).await;
        let s = (ms(long.wall) - ms(short.wall)) / span;
        slope.push(s);
        t1.push(ms(short.wall));
        t2.push(ms(long.wall));
        // A step costs more the longer the mission, so the slope (steps N1+1..N2) overstates
        // the short mission's steps: take its own.
        fixed.push(ms(short.wall) - mean_ms(&short.steps) * N1 as f64);
        step_median.push(median_ms(&long.steps));
        early.push(mean_ms(&long.steps[..N1 - 1]));
        late.push(mean_ms(&long.steps[long.steps.len() - N1..]));
        let d = long.counts - short.counts;
        let store_ms = d.append_ns as f64 / 1e6 / span;
        let artifacts_ms = d.put_ns as f64 / 1e6 / span;
        in_store.push(store_ms);
        in_artifacts.push(artifacts_ms);
        rest.push(s - store_ms - artifacts_ms);
        per_append.push(d.append_ns as f64 / 1e6 / d.appends as f64);
        per_new_artifact.push(d.put_ns as f64 / 1e6 / d.new_puts as f64);
        per_step = d;
        events_per_step = (long.events - short.events) as f64 / span;
        assert_eq!(long.model_requested - short.model_requested, N2 - N1);
    }
    row(
        &format!("per step: (T({N2}) - T({N1})) / {}", N2 - N1),
        "ms",
        slope,
    );
    row("  of which in EventStore::append", "ms", in_store);
    row("  of which in ArtifactStore::put", "ms", in_artifacts);
    row("  of which the rest (engine CPU, file read)", "ms", rest);
    row(
        &format!("per step: median step of the {N2}-turn mission"),
        "ms",
        step_median,
    );
    row(
        &format!("per step: mean of steps 2-{N1} of the {N2}-turn mission"),
        "ms",
        early,
    );
    row(
        &format!("per step: mean of the last {N1} steps of it"),
        "ms",
        late,
    );
    row("one append (EventStore::append)", "ms", per_append);
    row(
        "one new artifact (ArtifactStore::put)",
        "ms",
        per_new_artifact,
    );
    row(&format!("T({N1}) whole mission"), "ms", t1);
    row(&format!("T({N2}) whole mission"), "ms", t2);
    row(
        &format!("T({N1}) without its steps: T({N1}) - {N1} * its mean step"),
        "ms",
        fixed,
    );
    let per = |n: u64| n as f64 / span;
    println!(
        "  per step: {:.2} appends, {:.2} events, {:.2} artifact puts of which {:.2} new ({:.1} KiB new)",
        per(per_step.appends),
        events_per_step,
        per(per_step.puts),
        per(per_step.new_puts),
        per(per_step.new_bytes) / 1024.0
    );
}

/// Two things that grow with the mission, measured at the end of an `N2`-turn one: cloning
/// the mission state (which the engine does for every append, and once more per tool call to
/// preview the breakers) and the size of the last model request (the whole conversation,
/// stored as an artifact at every step).
async fn anatomy(base: &Path, repo: &Path) {
    let bench = bench_engine(base).await;
    let mission = run_mission(&bench, repo, N2).await;
    let state = bench.engine.load(&mission.id).await.unwrap();
    let mut clones = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(state.clone());
        }
        clones.push(ms(start.elapsed()) / 20.0);
    }
    let events = bench
        .engine
        .config()
        .store
        .events(&mission.id, 0)
        .await
        .unwrap();
    let last_request = events
        .iter()
        .rev()
        .find(|e| e.event_type == "model.requested")
        .unwrap();
    let digest: Digest = serde_json::from_value(last_request.data["request"].clone()).unwrap();
    let bytes = bench.engine.config().artifacts.get(&digest).await.unwrap();
    println!(
        "
at the end of the {N2}-turn mission ({} events):",
        events.len()
    );
    row("clone of the mission state", "ms", clones);
    println!(
        "  the last model request: {:.1} KiB",
        bytes.len() as f64 / 1024.0
    );
}

/// The long mission: each step's duration, in order (steps 2..=steps).
async fn run_long(bench: &Bench, repo: &Path, steps: usize) -> (Vec<Duration>, Duration) {
    bench.clock.finished.lock().unwrap().clear();
    let start = Instant::now();
    let state = bench
        .engine
        .run(request(repo, &format!("long-{steps}")))
        .await
        .unwrap();
    let wall = start.elapsed();
    assert_eq!(
        state.status,
        MissionStatus::Succeeded,
        "the long mission did not succeed: {:?}",
        state.error
    );
    let finished = bench.clock.finished.lock().unwrap().clone();
    assert_eq!(finished.len(), steps, "one step.finished per step");
    (finished.windows(2).map(|w| w[1] - w[0]).collect(), wall)
}

/// The durations of the 100 steps around step `at` (`at − 49 ..= at + 50`).
fn around(steps: &[Duration], at: usize) -> &[Duration] {
    // steps[k] is step k + 2 (between the finishes of steps k + 1 and k + 2).
    let from = at.saturating_sub(51);
    &steps[from..(from + 100).min(steps.len())]
}

async fn measure_long(base: &Path, repo: &Path, steps: usize, runs: usize) {
    println!(
        "
long mission: {steps} agent steps (2 model calls, 2 tool calls each), data directory under {} ({}), {runs} runs",
        base.display(),
        fs_type(base)
    );
    let late_at = steps - 100;
    let (mut early, mut late, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut early_median, mut late_median, mut ratio_median) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut walls = Vec::new();
    for _ in 0..runs {
        let bench = bench_engine(base).await;
        let (durations, wall) = run_long(&bench, repo, steps).await;
        let (e, l) = (around(&durations, 100), around(&durations, late_at));
        early.push(mean_ms(e));
        late.push(mean_ms(l));
        ratio.push(mean_ms(l) / mean_ms(e));
        // Medians too: a WAL checkpoint or another process's burst lands on a few steps.
        early_median.push(median_ms(e));
        late_median.push(median_ms(l));
        ratio_median.push(median_ms(l) / median_ms(e));
        walls.push(wall.as_secs_f64());
    }
    let late_steps = format!(
        "steps {}-{}",
        late_at.saturating_sub(49).max(2),
        late_at + 50
    );
    row("step 100: mean of steps 51-150", "ms", early);
    row(&format!("step {late_at}: mean of {late_steps}"), "ms", late);
    row(
        &format!("ratio of the means, step {late_at} / step 100"),
        "x",
        ratio,
    );
    row("step 100: median of steps 51-150", "ms", early_median);
    row(
        &format!("step {late_at}: median of {late_steps}"),
        "ms",
        late_median,
    );
    row(
        &format!("ratio of the medians, step {late_at} / step 100"),
        "x",
        ratio_median,
    );
    row("whole mission", "s", walls);
}

async fn smoke(repo: &Path) {
    println!("quick run (not under `cargo bench`): numbers are not meaningful");
    let base = std::env::temp_dir();
    let bench = bench_engine(&base).await;
    let mission = run_mission(&bench, repo, SMOKE_TURNS).await;
    println!(
        "one mission of {SMOKE_TURNS} read turns: {:.1} ms, {} events, {} appends, {} artifact puts",
        ms(mission.wall),
        mission.events,
        mission.counts.appends,
        mission.counts.puts
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    if !bench_mode {
        let repo = bench_repo(&[SMOKE_TURNS], &[SMOKE_LONG_STEPS]);
        smoke(repo.path()).await;
        measure_long(&std::env::temp_dir(), repo.path(), SMOKE_LONG_STEPS, 1).await;
        return;
    }
    let only = |name: &str| {
        let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
        filters.is_empty() || filters.iter().any(|f| f.as_str() == name)
    };
    let long_steps = std::env::var("FLIGHTDECK_BENCH_LONG_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LONG_STEPS)
        .max(120);
    let repo = bench_repo(&[5, N1, N2], &[long_steps]);
    let shm = Path::new("/dev/shm");
    let tmpfs = shm.is_dir() && fs_type(shm) == "tmpfs";
    if only("long") {
        let base = if tmpfs {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        measure_long(&base, repo.path(), long_steps, LONG_RUNS).await;
    }
    if !only("steps") {
        return;
    }
    println!(
        "flightdeck agent step benchmark: a scripted coder reading one file per turn, \
         {N1} and {N2} turns, {RUNS} runs each"
    );
    measure("(a) disk", &std::env::temp_dir(), repo.path()).await;
    if tmpfs {
        measure("(b) tmpfs", shm, repo.path()).await;
        anatomy(shm, repo.path()).await;
    } else {
        println!("\n(b) tmpfs: /dev/shm is not a tmpfs here; skipped");
        anatomy(&std::env::temp_dir(), repo.path()).await;
    }
}
