//! The IO of telemetry: a bounded queue drained by one background task that resolves each
//! segment's link (reading the store), batches spans and POSTs them as OTLP/JSON. Nothing
//! here can slow or fail a mission: the observer only `try_send`s, a full queue drops spans
//! (counted), a failed POST drops its batch (counted, the first failure reported once).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck_store::EventStore;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::otlp;
use super::spans::{link_to, previous_segment_start, ClosedSegment, SegmentStart, Span};

/// Messages the queue holds at most (a message is a span or a few).
pub(crate) const QUEUE: usize = 1024;
/// Spans sent in one request at most.
const BATCH: usize = 256;
/// How long a span waits for others before its batch is sent.
const LINGER: Duration = Duration::from_secs(1);
/// One POST's limit.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading the timeline for a segment's link; past it, the root goes without its link.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read at first when looking for where the previous segment began.
const FIRST_WINDOW: u64 = 256;

/// What a warning goes to (the CLI prints it on stderr).
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) enum Message {
    Spans(Vec<Span>),
    /// A segment's root: its link is found in the store first.
    Segment {
        closed: ClosedSegment,
        store: Arc<dyn EventStore>,
    },
    Flush(oneshot::Sender<()>),
}

impl Message {
    fn spans(&self) -> u64 {
        match self {
            Message::Spans(spans) => spans.len() as u64,
            Message::Segment { .. } => 1,
            Message::Flush(_) => 0,
        }
    }
}

/// What the exporter counts, and where its warnings go.
#[derive(Default)]
pub(crate) struct Stats {
    pub exported: AtomicU64,
    pub failed_posts: AtomicU64,
    pub dropped: AtomicU64,
    warned: AtomicBool,
    warn: Mutex<Option<Warn>>,
}

impl Stats {
    pub fn set_warn(&self, warn: Warn) {
        if let Ok(mut slot) = self.warn.lock() {
            *slot = Some(warn);
        }
    }

    pub fn warn(&self, message: &str) {
        let warn = self.warn.lock().ok().and_then(|slot| slot.clone());
        if let Some(warn) = warn {
            warn(message);
        }
    }

    /// Warns about the first failure only.
    fn warn_once(&self, message: &str) {
        if !self.warned.swap(true, Ordering::SeqCst) {
            self.warn(message);
        }
    }

    pub fn drop_message(&self, message: &Message) {
        self.dropped.fetch_add(message.spans(), Ordering::Relaxed);
    }
}

/// The running exporter: the queue's sending side.
pub(crate) struct Exporter {
    pub sender: mpsc::Sender<Message>,
    pub url: String,
}

impl Exporter {
    /// Starts the background task on the current tokio runtime.
    pub fn start(url: String, stats: Arc<Stats>) -> Result<Exporter, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("flightdeck/", env!("CARGO_PKG_VERSION")))
            .timeout(POST_TIMEOUT)
            .build()?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(receiver, client, url.clone(), stats));
        Ok(Exporter { sender, url })
    }

    /// Sends what is queued now, waiting at most `deadline`; whether it finished in time.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        tokio::time::timeout(deadline, async {
            if self.sender.send(Message::Flush(done)).await.is_ok() {
                let _ = finished.await;
            }
        })
        .await
        .is_ok()
    }
}

async fn run(
    mut receiver: mpsc::Receiver<Message>,
    client: reqwest::Client,
    url: String,
    stats: Arc<Stats>,
) {
    let mut batch: Vec<Span> = Vec::new();
    let mut due: Option<Instant> = None;
    loop {
        let message = match due {
            None => receiver.recv().await,
            Some(at) => match tokio::time::timeout_at(at, receiver.recv()).await {
                Ok(message) => message,
                Err(_) => {
                    post(&client, &url, &stats, std::mem::take(&mut batch)).await;
                    due = None;
                    continue;
                }
            },
        };
        let Some(message) = message else {
            post(&client, &url, &stats, std::mem::take(&mut batch)).await;
            return;
        };
        match message {
            Message::Spans(spans) => batch.extend(spans),
            Message::Segment { closed, store } => batch.push(with_link(closed, &*store).await),
            Message::Flush(done) => {
                post(&client, &url, &stats, std::mem::take(&mut batch)).await;
                let _ = done.send(());
            }
        }
        due = if batch.is_empty() {
            None
        } else {
            due.or_else(|| Some(Instant::now() + LINGER))
        };
        if batch.len() >= BATCH {
            post(&client, &url, &stats, std::mem::take(&mut batch)).await;
            due = None;
        }
    }
}

/// The root with its link to the previous segment's root, when the timeline tells which
/// that is (none for a mission's first segment).
async fn with_link(closed: ClosedSegment, store: &dyn EventStore) -> Span {
    let mut root = closed.root;
    if closed.after_seq > 0 {
        let found = tokio::time::timeout(
            LINK_TIMEOUT,
            previous_start(store, &closed.mission, closed.after_seq),
        )
        .await;
        if let Ok(Some(first_seq)) = found {
            root.links.push(link_to(&closed.mission, first_seq));
        }
    }
    root
}

/// The first seq of the segment that holds `seq`, reading back from it in growing windows.
async fn previous_start(store: &dyn EventStore, mission: &str, seq: u64) -> Option<u64> {
    let mut size = FIRST_WINDOW;
    loop {
        let after = seq.saturating_sub(size);
        let window = store.events_between(mission, after, seq).await.ok()?;
        match previous_segment_start(&window, after == 0) {
            SegmentStart::At(first) => return Some(first),
            SegmentStart::NotDriven => return None,
            SegmentStart::NeedMore if after == 0 => return None,
            SegmentStart::NeedMore => size = size.saturating_mul(4),
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, stats: &Stats, batch: Vec<Span>) {
    if batch.is_empty() {
        return;
    }
    let body = otlp::encode(&batch, flightdeck_core::ENGINE_VERSION);
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let failure = match sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("the receiver answered {}", response.status())),
        Err(e) => Some(describe(&e)),
    };
    match failure {
        None => {
            stats
                .exported
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Some(why) => {
            stats.failed_posts.fetch_add(1, Ordering::Relaxed);
            stats
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            stats.warn_once(&format!(
                "telemetry: cannot export traces to {url}: {why}; their spans are dropped (missions are not affected)"
            ));
        }
    }
}

/// A reqwest error and its causes, in one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
