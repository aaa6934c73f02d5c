//! The routes of CONTRACT.md's "HTTP API" that this build serves, and the error JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flightdeck_app::tokens::{Principal, Role};
use flightdeck_app::{intake, queries, AppError, ErrorKind};
use flightdeck_core::{Digest, MissionStatus};
use flightdeck_engine::{Channel, Clock, SystemClock, Vote};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{authenticate, credential_of, require, still_valid, Credential};
use crate::ServerState;

pub type Shared = Arc<ServerState>;

/// Page sizes: the default and the most a request may ask for.
const MISSIONS_PAGE: usize = 50;
const MISSIONS_PAGE_MAX: usize = 500;
const EVENTS_PAGE: usize = 100;
const EVENTS_PAGE_MAX: usize = 1_000;
/// How often an open stream checks that its token still works (revoked, expired).
const TOKEN_RECHECK: Duration = Duration::from_secs(5);

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/missions", get(list_missions).post(start_mission))
        .route("/api/v1/missions/{id}", get(get_mission))
        .route("/api/v1/missions/{id}/events", get(list_events))
        .route("/api/v1/missions/{id}/events/stream", get(stream_events))
        .route("/api/v1/missions/{id}/verify", get(verify))
        .route("/api/v1/missions/{id}/cancel", post(cancel))
        .route("/api/v1/missions/{id}/resume", post(resume))
        .route("/api/v1/missions/{id}/budget", post(raise_budget))
        .route("/api/v1/missions/{id}/fork", post(fork))
        .route("/api/v1/artifacts/{digest}", get(artifact))
        .route("/api/v1/approvals", get(list_approvals))
        .route("/api/v1/metrics", get(metrics))
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/deny", post(deny))
        // Slack's clicks: authenticated by their signature, not a token.
        .route(
            "/slack/actions",
            post(crate::slack::actions).layer(axum::extract::DefaultBodyLimit::max(
                flightdeck_slack::interactivity::MAX_BODY_BYTES,
            )),
        )
        // GitHub's deliveries: authenticated by their signature, checked before the body
        // is parsed; more than GitHub ever sends is refused unread (413).
        .route(
            "/webhooks/github",
            post(crate::github::webhook).layer(axum::extract::DefaultBodyLimit::max(
                flightdeck_github::webhook::MAX_BODY_BYTES,
            )),
        )
        .merge(crate::web::router())
        .fallback(|uri: axum::http::Uri| async move {
            let e = AppError::not_found(
                format!("no such route: {}", uri.path()),
                Some(
                    "the API lives under /api/v1 (see docs/reference/http-api.md); the web UI at /"
                        .to_string(),
                ),
            );
            if uri.path().starts_with("/api/") {
                ApiError(e).into_response()
            } else {
                crate::web::error_page(&e)
            }
        })
        .method_not_allowed_fallback(|| async {
            let mut response = ApiError(AppError::bad_input(
                "this route does not take this method",
                Some("see docs/reference/http-api.md for each route's method".to_string()),
            ))
            .into_response();
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
        })
        .with_state(state)
}

/// An [`AppError`] as the API answers it.
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        ApiError(e)
    }
}

impl From<flightdeck_store::StoreError> for ApiError {
    fn from(e: flightdeck_store::StoreError) -> ApiError {
        ApiError(e.into())
    }
}

impl From<flightdeck_engine::EngineError> for ApiError {
    fn from(e: flightdeck_engine::EngineError) -> ApiError {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {
            "kind": self.0.kind.as_str(),
            "message": self.0.message,
            "hint": self.0.hint,
        }});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The caller of a route, authenticated (see [`crate::auth`]).
pub struct Caller(pub Principal);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Caller, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(|| ApiError(AppError::failed("the peer's address is unknown")))?;
        Ok(Caller(
            authenticate(state, &parts.method, &parts.headers, peer)
                .await?
                .principal,
        ))
    }
}

/// A JSON body, its errors in the API's shape.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Shared> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &Shared) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                ApiError(AppError::bad_input(
                    format!("cannot read the body: {e}"),
                    None,
                ))
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            ApiError(AppError::bad_input(
                format!("the body is not what this route takes: {e}"),
                Some("send JSON as docs/reference/http-api.md shows for this route".to_string()),
            ))
        })
    }
}

/// A query string, its errors in the API's shape.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<Shared> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let Query(q) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError(AppError::bad_input(
                    format!("bad query string: {}", e.body_text()),
                    None,
                ))
            })?;
        Ok(ApiQuery(q))
    }
}

async fn resolve(state: &ServerState, given: &str) -> ApiResult<String> {
    Ok(queries::resolve_id(state.engine.config().store.as_ref(), given).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MissionsQuery {
    status: Option<String>,
    template: Option<String>,
    requested_by: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_missions(
    State(state): State<Shared>,
    Caller(_who): Caller,
    ApiQuery(q): ApiQuery<MissionsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = page_size(q.limit, MISSIONS_PAGE, MISSIONS_PAGE_MAX, "limit")?;
    if let Some(status) = q.status.as_deref() {
        let known: Value = json!(status);
        if serde_json::from_value::<MissionStatus>(known).is_err() {
            return Err(ApiError(AppError::bad_input(
                format!("status={status}: not a mission status"),
                Some("statuses: queued, provisioning, running, awaiting_approval, blocked, succeeded, failed, cancelled".to_string()),
            )));
        }
    }
    let cursor = match q.cursor.as_deref() {
        Some(c) if !c.starts_with("m-") => {
            return Err(ApiError(AppError::bad_input(
                format!("cursor={c}: not a mission id"),
                Some("pass next_cursor from the previous page as it was".to_string()),
            )))
        }
        other => other,
    };
    let page = queries::mission_page(
        &state.reader(),
        q.status.as_deref(),
        q.template.as_deref(),
        q.requested_by.as_deref(),
        cursor,
        limit,
    )
    .await?;
    Ok(Json(json!(page)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    template: String,
    /// A configured `[repos.NAME]`, or the URL of one.
    repo: String,
    base: Option<String>,
    #[serde(default)]
    params: std::collections::BTreeMap<String, String>,
}

/// Starts a mission as `flightdeck run --remote … --detach` does: the repository fetched, the
/// template, policy and CODEOWNERS read at the base commit, everything checked as the command
/// line checks it (same messages) before anything is created, then driven in the background.
async fn start_mission(
    State(state): State<Shared>,
    Caller(who): Caller,
    body: Result<JsonBody<StartBody>, ApiError>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require(&who, Role::Operator)?;
    let JsonBody(body) = body?;
    // A name under the repository's `.flightdeck/missions/`, never a path: the server reads
    // nothing of its own disk for a caller.
    let plain_name = !body.template.is_empty()
        && body
            .template
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain_name {
        return Err(ApiError(AppError::bad_input(
            format!("template `{}`: not a template name", body.template),
            Some("name a template of the repository's .flightdeck/missions/ (letters, digits, - and _), not a path".to_string()),
        )));
    }
    let app = state.app.clone();
    let requested_by = who.handle.clone();
    // Fetching and reading the repository is git's work: off the async threads.
    let intake = tokio::task::spawn_blocking(move || {
        let source = intake::repo_source(&app.config, &body.repo, false)?;
        let intake = intake::intake(
            &app.data_dir,
            &intake::RunRequest {
                template: body.template,
                repo: source,
                base: body.base.unwrap_or_else(|| "HEAD".to_string()),
                params: body.params,
                requested_by,
                origin: flightdeck_engine::MissionOrigin::from_source(
                    flightdeck_core::event::MissionSource::Api,
                ),
                git_auth: None,
            },
        )?;
        flightdeck_engine::Engine::validate(&intake.request, &app.models, &app.workspace)
            .map_err(AppError::from)?;
        intake::check_secret_scopes(intake.scope_subject(), &app.config, &app.config_path)?;
        Ok::<_, AppError>(intake)
    })
    .await
    .map_err(|e| ApiError(AppError::failed(format!("the intake stopped: {e}"))))??;
    let created = state.engine.create(intake.request).await?;
    let engine = state.engine.clone();
    let id = created.id.clone();
    spawn_driver(&state, async move {
        let _ = engine.start(&id).await;
    })?;
    Ok((StatusCode::CREATED, Json(json!(created.summary_view()))))
}

fn page_size(asked: Option<usize>, default: usize, max: usize, name: &str) -> ApiResult<usize> {
    match asked {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError(AppError::bad_input(
            format!("{name}={n}: a page holds 1 to {max}"),
            None,
        ))),
    }
}

async fn get_mission(
    State(state): State<Shared>,
    Caller(_who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = resolve(&state, &id).await?;
    let mission = queries::mission(&state.reader(), &id).await?;
    Ok(Json(json!(mission.summary_view())))
}

/// A seq to read after: the store counts in i64.
fn seq_after(after: u64) -> ApiResult<u64> {
    if after > i64::MAX as u64 {
        return Err(ApiError(AppError::bad_input(
            format!("after={after}: no timeline is that long"),
            None,
        )));
    }
    Ok(after)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn list_events(
    State(state): State<Shared>,
    Caller(_who): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = page_size(q.limit, EVENTS_PAGE, EVENTS_PAGE_MAX, "limit")?;
    let id = resolve(&state, &id).await?;
    let after = seq_after(q.after.unwrap_or(0))?;
    let (page, last_seq) = queries::events_page(&state.reader(), &id, after, limit as u64).await?;
    let next_after = match page.last() {
        Some(last) if last.seq < last_seq => json!(last.seq),
        _ => Value::Null,
    };
    Ok(Json(json!({"events": page, "next_after": next_after})))
}

/// The credential a long-lived answer was opened with, checked again every
/// [`TOKEN_RECHECK`] (on time even while events keep coming).
struct Recheck {
    credential: Credential,
    next: tokio::time::Instant,
}

impl Recheck {
    fn new(credential: Credential) -> Recheck {
        Recheck {
            credential,
            next: tokio::time::Instant::now() + TOKEN_RECHECK,
        }
    }

    /// Whether it can stop working (a token or a session; a local request cannot).
    fn revocable(&self) -> bool {
        !matches!(self.credential, Credential::Local)
    }

    /// When the next check is due.
    async fn due(&self) {
        tokio::time::sleep_until(self.next).await;
    }

    /// Checks the credential if a check is due; whether it still works.
    async fn passes(&mut self, state: &ServerState) -> bool {
        if tokio::time::Instant::now() < self.next {
            return true;
        }
        self.next = tokio::time::Instant::now() + TOKEN_RECHECK;
        still_valid(state, &self.credential).await
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    after: Option<u64>,
}

/// The events after `Last-Event-ID` (or `?after=`), then each one as it is appended: woken
/// by the store's change feed, not by polling. Ends after `mission.finished`, or when the
/// server shuts down.
async fn stream_events(
    State(state): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let id = resolve(&state, &id).await?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError(AppError::bad_input(
                    "Last-Event-ID is not a seq",
                    Some("send back the id of the last event received".to_string()),
                ))
            })?,
        None => q.after.unwrap_or(0),
    };
    let after = seq_after(after)?;
    // Watched before the first read: nothing appended in between is missed.
    let tip = state.tails.watch(&id).await?;
    struct Tail {
        state: Shared,
        recheck: Recheck,
        id: String,
        after: u64,
        tip: tokio::sync::watch::Receiver<crate::tails::Tip>,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
        queued: std::collections::VecDeque<flightdeck_core::StoredEvent>,
        /// Whether the store must be read (at the start, and when the tip's events do not
        /// reach back to what was sent).
        read_store: bool,
        finished: bool,
    }
    let tail = Tail {
        state: state.clone(),
        recheck: Recheck::new(credential_of(&state, &headers, &who)),
        id,
        after,
        tip,
        shutdown: state.shutdown.clone(),
        queued: std::collections::VecDeque::new(),
        read_store: true,
        finished: false,
    };
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        loop {
            // Checked on time even while events keep coming.
            if !tail.recheck.passes(&tail.state).await {
                return None;
            }
            if let Some(event) = tail.queued.pop_front() {
                if event.seq <= tail.after {
                    continue;
                }
                tail.after = event.seq;
                tail.finished |= event.event_type == "mission.finished";
                // A line break would end the field (axum refuses one): a type never has it,
                // unless someone wrote it into the database by hand.
                let event_type = event.event_type.replace(['\r', '\n'], " ");
                let sse = Event::default()
                    .id(event.seq.to_string())
                    .event(event_type)
                    .json_data(&event)
                    .unwrap_or_default();
                return Some((Ok::<Event, Infallible>(sse), tail));
            }
            if tail.finished || tail.shutdown.borrow().is_some() {
                return None;
            }
            let tip = tail.tip.borrow_and_update().clone();
            if tail.read_store {
                tail.read_store = false;
                match queries::timeline(&tail.state.reader(), &tail.id, tail.after).await {
                    Ok(events) if !events.is_empty() => {
                        tail.queued.extend(events);
                        continue;
                    }
                    // Nothing after what was sent: the tip is as good as seen.
                    Ok(_) => {}
                    Err(_) => return None,
                }
            } else if tip.last_seq > tail.after {
                match tip.recent.first() {
                    // The tip holds everything after what was sent.
                    Some(first) if first.seq <= tail.after + 1 => {
                        tail.queued.extend(tip.recent.iter().cloned());
                    }
                    _ => tail.read_store = true,
                }
                continue;
            }
            // Nothing more, and nothing more will come: a client that reconnects after the
            // end is told so at once.
            if tip.finished {
                return None;
            }
            tokio::select! {
                changed = tail.tip.changed() => if changed.is_err() { return None },
                _ = tail.shutdown.changed() => return None,
                // The credential is checked at the top of the loop.
                () = tail.recheck.due(), if tail.recheck.revocable() => {}
            }
        }
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(sse.into_response())
}

async fn verify(
    State(state): State<Shared>,
    Caller(_who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = resolve(&state, &id).await?;
    let store = state.engine.config().store.clone();
    let body = match flightdeck_store::verify_mission(store.as_ref(), &id).await? {
        Ok((_head, checked)) => json!({"ok": true, "checked": checked, "first_bad_seq": null}),
        Err(failure) => json!({
            "ok": false,
            "checked": failure.seq.saturating_sub(1),
            "first_bad_seq": failure.seq,
            "reason": failure.reason,
        }),
    };
    Ok(Json(body))
}

async fn cancel(
    State(state): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require(&who, Role::Operator)?;
    let id = resolve(&state, &id).await?;
    let after = state.engine.cancel(&id, &who.handle).await?;
    Ok(Json(json!(after.summary_view())))
}

/// Continues a parked or interrupted mission in the background, as `flightdeck resume` does
/// in the foreground; the answer is the summary as it was when the driver started (follow
/// it on the event stream).
async fn resume(
    State(state): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require(&who, Role::Operator)?;
    let id = resolve(&state, &id).await?;
    let before = queries::mission(&state.reader(), &id).await?;
    if before.status.is_terminal() {
        return Err(ApiError(AppError::new(
            ErrorKind::Conflict,
            format!("mission {id} has finished ({})", before.status.as_str()),
            Some("fork it to go on from a point of its timeline".to_string()),
        )));
    }
    let engine = state.engine.clone();
    let by = who.handle.clone();
    let driven = id.clone();
    // Driven on its own task: the request does not wait for the mission, and a client
    // that goes away does not stop it. A mission another driver holds is left to it.
    spawn_driver(&state, async move {
        let _ = engine.resume(&driven, &by).await;
    })?;
    Ok(Json(json!(before.summary_view())))
}

/// Drives a mission on a task of its own: the request does not wait for it, a client that
/// goes away does not stop it, and `serve` awaits it before it returns.
fn spawn_driver(
    state: &ServerState,
    driver: impl std::future::Future<Output = ()> + Send + 'static,
) -> ApiResult<()> {
    let mut drivers = state
        .drivers
        .lock()
        .map_err(|_| ApiError(AppError::failed("the server cannot start drivers any more")))?;
    // Finished ones are dropped here, so the set holds what still runs.
    while drivers.try_join_next().is_some() {}
    drivers.spawn(driver);
    Ok(())
}

/// How often at most [`changes`] tells a page that something changed.
const CHANGES_EVERY: Duration = Duration::from_secs(1);

/// Where a stream of changes starts: after this global feed position (also taken from the
/// `Last-Event-ID` a reconnecting `EventSource` sends); by default, from now.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    after: Option<u64>,
}

/// How many feed entries one wait reads at most (more are read by the next).
const CHANGES_PAGE: u32 = 1_000;

/// `event: changed` whenever missions changed (any mission, any process; at most once a
/// second), with `id:` the global feed position and the ids of the missions that changed,
/// so a list can refresh itself and a client that reconnects misses nothing: it tails the
/// store's global feed (`EventStore::wait_for_change`), never polling each mission. Ends
/// when the server stops or the token stops working.
async fn changes(
    State(state): State<Shared>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Response> {
    let store = state.engine.config().store.clone();
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // From now by default; never past the head (a position of another database, say,
    // would wait for nothing forever).
    let head = store.feed_head().await?;
    let cursor = q.after.or(resumed).map_or(head, |after| after.min(head));
    struct Watch {
        state: Shared,
        store: std::sync::Arc<dyn flightdeck_store::EventStore>,
        cursor: u64,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
        recheck: Recheck,
    }
    let watch = Watch {
        shutdown: state.shutdown.clone(),
        recheck: Recheck::new(credential_of(&state, &headers, &who)),
        state,
        store,
        cursor,
    };
    let events = futures_util::stream::unfold(watch, |mut w| async move {
        loop {
            if w.shutdown.borrow().is_some() {
                return None;
            }
            if !w.recheck.passes(&w.state).await {
                return None;
            }
            // Waits a while at most, so the credential is rechecked in time.
            let patience = Duration::from_secs(5);
            let waited = tokio::select! {
                entries = w.store.wait_for_change(w.cursor, CHANGES_PAGE, patience) => entries,
                _ = w.shutdown.changed() => return None,
            };
            let Ok(mut entries) = waited else { return None };
            if entries.is_empty() {
                continue;
            }
            // What changes in the next second goes in this one event.
            tokio::time::sleep(CHANGES_EVERY).await;
            if let Some(last) = entries.last().map(|e| e.position) {
                if let Ok(more) = w.store.feed(last, CHANGES_PAGE).await {
                    entries.extend(more);
                }
            }
            let Some(last) = entries.last().map(|e| e.position) else {
                continue;
            };
            w.cursor = last;
            let mut missions: Vec<&str> = entries.iter().map(|e| e.mission.as_str()).collect();
            missions.sort_unstable();
            missions.dedup();
            let data = serde_json::json!({"position": last, "missions": missions});
            let event = Event::default()
                .event("changed")
                .id(last.to_string())
                .data(data.to_string());
            return Some((Ok::<Event, Infallible>(event), w));
        }
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(sse.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    at: u64,
}

/// Forks a mission at a seq of its timeline, as `flightdeck fork ID --at SEQ` does, and
/// drives the new mission in the background. Answers 201 with the new mission's summary
/// once it exists (its first events copied), or the fork's error.
async fn fork(
    State(state): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Result<JsonBody<ForkBody>, ApiError>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require(&who, Role::Operator)?;
    let JsonBody(body) = body?;
    let origin = resolve(&state, &id).await?;
    let new_id = intake::new_mission_id();
    let request = flightdeck_engine::ForkMission {
        id: new_id.clone(),
        origin,
        at_seq: body.at,
        by: who.handle.clone(),
        model: None,
        template_source: None,
        template_file: String::new(),
        model_scripts: std::collections::BTreeMap::new(),
    };
    let engine = state.engine.clone();
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    spawn_driver(&state, async move {
        let _ = done_tx.send(engine.fork(request).await.map(|_| ()));
    })?;
    // The fork writes its copied events first, then runs: answer as soon as it exists.
    let store = state.engine.config().store.clone();
    let mut feed = store.subscribe().await?;
    let mut wakes = true;
    loop {
        if let Some(summary) = queries::summary(&state.reader(), new_id.as_str()).await? {
            return Ok((StatusCode::CREATED, Json(json!(summary))));
        }
        tokio::select! {
            finished = &mut done => {
                finished
                    .map_err(|_| ApiError(AppError::failed("the fork stopped")))?
                    .map_err(ApiError::from)?;
                let summary = queries::summary(&state.reader(), new_id.as_str())
                    .await?
                    .ok_or_else(|| ApiError(AppError::failed("the fork made no mission")))?;
                return Ok((StatusCode::CREATED, Json(json!(summary))));
            }
            // No more wake-ups (the feed closed): only the fork's own end is waited for.
            changed = feed.changed(), if wakes => wakes = changed.is_ok(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsQuery {
    since: Option<u32>,
    template: Option<String>,
}

async fn metrics(
    State(state): State<Shared>,
    Caller(_who): Caller,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<Json<Value>> {
    let now = SystemClock.now_ms();
    let view = queries::metrics(&state.reader(), now, q.since, q.template.as_deref()).await?;
    Ok(Json(json!(view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    add: std::collections::BTreeMap<String, f64>,
}

async fn raise_budget(
    State(state): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Result<JsonBody<BudgetBody>, ApiError>,
) -> ApiResult<Json<Value>> {
    require(&who, Role::Operator)?;
    let JsonBody(body) = body?;
    if body.add.is_empty() {
        return Err(ApiError(AppError::bad_input(
            "`add` names no dimension",
            Some("e.g. {\"add\": {\"usd\": 1.5}} (usd, tokens, tool_calls, model_calls, wall_seconds)".to_string()),
        )));
    }
    let adds: Vec<(String, f64)> = body.add.into_iter().collect();
    let id = resolve(&state, &id).await?;
    let after = state.engine.raise_budget(&id, &who.handle, &adds).await?;
    Ok(Json(json!(after.summary_view())))
}

async fn artifact(
    State(state): State<Shared>,
    Caller(_who): Caller,
    Path(digest): Path<String>,
) -> ApiResult<Response> {
    // Parsed before anything is read: a digest is `sha256:` and 64 hex digits, never a path.
    let digest: Digest =
        digest
            .trim()
            .parse()
            .map_err(|e: flightdeck_core::hash::DigestParseError| {
                ApiError(AppError::bad_input(
                    e.to_string(),
                    Some(
                        "digests look like sha256:<64 hex>, as mission summaries show them"
                            .to_string(),
                    ),
                ))
            })?;
    let bytes = state
        .reader()
        .artifacts
        .get(&digest)
        .await
        .map_err(AppError::from)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // What a mission wrote is never a page of this server's origin.
            (header::CONTENT_DISPOSITION, "attachment"),
            (header::CONTENT_SECURITY_POLICY, "sandbox"),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsQuery {
    pending: Option<bool>,
}

async fn list_approvals(
    State(state): State<Shared>,
    Caller(_who): Caller,
    ApiQuery(q): ApiQuery<ApprovalsQuery>,
) -> ApiResult<Json<Value>> {
    let now = SystemClock.now_ms();
    let listed = queries::approvals(&state.reader(), q.pending.unwrap_or(false), now).await?;
    Ok(Json(json!({"approvals": listed})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

async fn approve(
    state: State<Shared>,
    who: Caller,
    id: Path<String>,
    body: Result<JsonBody<DecisionBody>, ApiError>,
) -> ApiResult<Json<Value>> {
    decide(state, who, id, body, true).await
}

async fn deny(
    state: State<Shared>,
    who: Caller,
    id: Path<String>,
    body: Result<JsonBody<DecisionBody>, ApiError>,
) -> ApiResult<Json<Value>> {
    decide(state, who, id, body, false).await
}

/// A vote, judged by the engine as every channel's is (eligibility, the requester under
/// another name); refused votes record nothing.
async fn decide(
    State(state): State<Shared>,
    Caller(who): Caller,
    Path(approval): Path<String>,
    body: Result<JsonBody<DecisionBody>, ApiError>,
    approve: bool,
) -> ApiResult<Json<Value>> {
    require(&who, Role::Approver)?;
    let JsonBody(body) = body?;
    let approval = approval.trim().to_string();
    let after = state
        .engine
        .decide_approval(Vote {
            approval_id: approval.clone(),
            by: who.handle.clone(),
            approve,
            comment: body.comment,
            channel: Channel::Web,
            vouched_email: None,
        })
        .await?;
    let summary = after.summary_view();
    let entry = summary
        .approvals
        .iter()
        .find(|a| a.id == approval)
        .cloned()
        .ok_or_else(|| {
            ApiError(AppError::new(
                ErrorKind::Failed,
                format!("approval {approval} is not in its mission after the decision"),
                None,
            ))
        })?;
    Ok(Json(json!(entry)))
}
