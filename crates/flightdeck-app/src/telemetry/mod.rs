//! OpenTelemetry traces over OTLP/HTTP (`[telemetry] otlp_endpoint`), following the GenAI
//! semantic conventions: one trace per driven segment of a mission (docs/reference/telemetry.md).
//!
//! - [`spans`]: the span model, pure: a segment's events → spans, ids derived from the
//!   mission id and seqs, the rule that finds where the previous segment began.
//! - [`otlp`]: the OTLP/JSON encoding, pure.
//! - `export`: the IO: a bounded queue, one background task that batches and POSTs.
//! - [`Telemetry`]: the installation's exporter (started by the first engine that needs it,
//!   flushed when the process ends) and the engine [`Observer`] that feeds it.

mod export;
pub mod otlp;
pub mod spans;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flightdeck_core::{MissionState, StoredEvent};
use flightdeck_engine::Observer;
use flightdeck_store::EventStore;
use tokio::sync::mpsc::error::TrySendError;

pub use self::export::Warn;
use self::export::{Exporter, Message, Stats};
use self::spans::Segment;

/// An OTLP/HTTP receiver's base URL (`http://127.0.0.1:4318`); traces go to `/v1/traces`
/// under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
}

/// Why an `otlp_endpoint` is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("not a URL ({0})")]
    NotAUrl(String),
    #[error("the scheme must be http or https, not `{0}`")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("a user or password in the URL is not supported")]
    Credentials,
    #[error("the URL has a query or a fragment")]
    QueryOrFragment,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let text = text.trim();
        let url = reqwest::Url::parse(text).map_err(|e| EndpointError::NotAUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EndpointError::Scheme(url.scheme().to_string()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(EndpointError::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointError::Credentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(EndpointError::QueryOrFragment);
        }
        Ok(Endpoint {
            base: url.as_str().trim_end_matches('/').to_string(),
        })
    }

    /// Where traces are POSTed.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.base)
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }
}

/// The installation's telemetry: nothing without an endpoint. Cheap to clone (one exporter
/// per process, whatever the number of engines).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Option<Endpoint>,
    stats: Arc<Stats>,
    exporter: OnceLock<Option<Exporter>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

/// What an exporter did, for tests and the summary at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportStats {
    pub exported_spans: u64,
    pub failed_posts: u64,
    pub dropped_spans: u64,
}

impl Telemetry {
    pub fn new(endpoint: Option<Endpoint>) -> Telemetry {
        Telemetry {
            inner: Arc::new(Inner {
                endpoint,
                stats: Arc::new(Stats::default()),
                exporter: OnceLock::new(),
            }),
        }
    }

    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.inner.endpoint.as_ref()
    }

    /// Where warnings go (an export failing): the CLI prints them on stderr; without it,
    /// nowhere.
    pub fn on_warning(&self, warn: Warn) {
        self.inner.stats.set_warn(warn);
    }

    /// `observer`, also feeding the exporter when an endpoint is configured (the exporter's
    /// task starts on the current tokio runtime with the first call). `store` is read for
    /// each segment's link to the previous one.
    pub fn observer(
        &self,
        store: Arc<dyn EventStore>,
        observer: Arc<dyn Observer>,
    ) -> Arc<dyn Observer> {
        let Some(endpoint) = &self.inner.endpoint else {
            return observer;
        };
        let exporter = self.inner.exporter.get_or_init(|| {
            match Exporter::start(endpoint.traces_url(), self.inner.stats.clone()) {
                Ok(exporter) => Some(exporter),
                Err(e) => {
                    self.inner.stats.warn(&format!(
                        "telemetry: cannot start the exporter to {}: {e}; no traces are exported",
                        endpoint.as_str()
                    ));
                    None
                }
            }
        });
        match exporter {
            Some(exporter) => Arc::new(TelemetryObserver {
                inner: observer,
                store,
                sender: exporter.sender.clone(),
                stats: self.inner.stats.clone(),
                segments: Mutex::new(HashMap::new()),
            }),
            None => observer,
        }
    }

    /// Sends what is queued, waiting at most `deadline` (the process is ending); reports
    /// failures after the first, which was reported when it happened.
    pub async fn shutdown(&self, deadline: Duration) -> ExportStats {
        let Some(Some(exporter)) = self.inner.exporter.get() else {
            return self.stats();
        };
        let flushed = exporter.flush(deadline).await;
        let stats = self.stats();
        if !flushed {
            self.inner.stats.warn(&format!(
                "telemetry: traces not sent to {} within {}s; they are dropped",
                exporter.url,
                deadline.as_secs_f32()
            ));
        } else if stats.failed_posts > 1 {
            self.inner.stats.warn(&format!(
                "telemetry: {} exports to {} failed in all; {} spans were dropped",
                stats.failed_posts, exporter.url, stats.dropped_spans
            ));
        }
        stats
    }

    pub fn stats(&self) -> ExportStats {
        let stats = &self.inner.stats;
        ExportStats {
            exported_spans: stats.exported.load(Ordering::Relaxed),
            failed_posts: stats.failed_posts.load(Ordering::Relaxed),
            dropped_spans: stats.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The engine observer: passes everything to the observer it wraps, and turns each driven
/// segment's events into spans for the exporter's queue. Never waits: a full queue drops.
struct TelemetryObserver {
    inner: Arc<dyn Observer>,
    store: Arc<dyn EventStore>,
    sender: tokio::sync::mpsc::Sender<Message>,
    stats: Arc<Stats>,
    /// The segments this process drives, by mission.
    segments: Mutex<HashMap<String, Segment>>,
}

impl TelemetryObserver {
    fn send(&self, message: Message) {
        if let Err(TrySendError::Full(message) | TrySendError::Closed(message)) =
            self.sender.try_send(message)
        {
            self.stats.drop_message(&message);
        }
    }

    fn close(&self, segment: Segment, state: &MissionState) {
        if let Some((spans, closed)) = segment.close(state, now_ms()) {
            if !spans.is_empty() {
                self.send(Message::Spans(spans));
            }
            self.send(Message::Segment {
                closed,
                store: self.store.clone(),
            });
        }
    }
}

impl Observer for TelemetryObserver {
    fn event(&self, event: &StoredEvent) {
        self.inner.event(event);
        let ended = match self.segments.lock() {
            Ok(mut segments) => match segments.get_mut(&event.mission) {
                Some(segment) => segment.event(event),
                None => return,
            },
            Err(_) => return,
        };
        if !ended.is_empty() {
            self.send(Message::Spans(ended));
        }
    }

    fn still_running(&self, call_id: &str, command: &str, elapsed: Duration) {
        self.inner.still_running(call_id, command, elapsed);
    }

    fn segment_opened(&self, state: &MissionState) {
        self.inner.segment_opened(state);
        let segment = Segment::open(state, now_ms());
        let stale = match self.segments.lock() {
            Ok(mut segments) => segments.insert(state.id.clone(), segment),
            Err(_) => None,
        };
        // A driver that went without closing (its future dropped): its segment ends here.
        if let Some(stale) = stale {
            self.close(stale, state);
        }
    }

    fn segment_closed(&self, state: &MissionState) {
        self.inner.segment_closed(state);
        let segment = match self.segments.lock() {
            Ok(mut segments) => segments.remove(&state.id),
            Err(_) => None,
        };
        if let Some(segment) = segment {
            self.close(segment, state);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
