//! The shared core of the fake provider servers: real HTTP on 127.0.0.1, a queue of
//! programmed replies, every request recorded, and contract checks on both directions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

/// One programmed answer.
#[derive(Debug, Clone)]
pub struct FakeReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waited before answering (to make a client time out).
    pub delay: Duration,
}

impl FakeReply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: &Value) -> FakeReply {
        FakeReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> FakeReply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> FakeReply {
        self.delay = delay;
        self
    }

    /// Replaces the body (e.g. to echo a key the way a broken proxy might).
    pub fn with_body_text(mut self, text: &str) -> FakeReply {
        self.body = text.as_bytes().to_vec();
        self
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header with `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Checks a request; returns the violations (empty when it is fine).
pub type RequestCheck = Arc<dyn Fn(&RecordedRequest) -> Vec<String> + Send + Sync>;
/// Checks a programmed success body before it is sent.
pub type ResponseCheck = Arc<dyn Fn(&[u8]) -> Vec<String> + Send + Sync>;

struct Shared {
    replies: Mutex<VecDeque<FakeReply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    violations: Mutex<Vec<String>>,
    check_request: RequestCheck,
    check_response: ResponseCheck,
    error_body: fn(&str) -> Value,
}

/// A running fake server. It stops when dropped.
pub struct FakeHttp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHttp {
    /// Starts serving on an ephemeral port of 127.0.0.1. `error_body` renders the fake's own
    /// errors (contract violations, no reply programmed) in the provider's error shape.
    pub async fn start(
        check_request: RequestCheck,
        check_response: ResponseCheck,
        error_body: fn(&str) -> Value,
    ) -> FakeHttp {
        let shared = Arc::new(Shared {
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            check_request,
            check_response,
            error_body,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHttp { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply; requests take them in order.
    pub fn push(&self, reply: FakeReply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every contract violation seen, in either direction.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// Panics with the violations, if any.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "contract violations:\n{}",
            violations.join("\n")
        );
    }

    /// How many programmed replies are left.
    pub fn pending(&self) -> usize {
        self.shared.replies.lock().unwrap().len()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let problems = (shared.check_request)(&request);
    shared.requests.lock().unwrap().push(request);
    if !problems.is_empty() {
        let message = format!(
            "fake: the request breaks the contract: {}",
            problems.join("; ")
        );
        shared.violations.lock().unwrap().extend(problems);
        return respond(&FakeReply::json(400, &(shared.error_body)(&message)));
    }
    let reply = shared.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        let message = "fake: no reply programmed for this request";
        shared.violations.lock().unwrap().push(message.to_string());
        return respond(&FakeReply::json(500, &(shared.error_body)(message)));
    };
    if (200..300).contains(&reply.status) {
        let problems = (shared.check_response)(&reply.body);
        if !problems.is_empty() {
            let message = format!(
                "fake: the programmed response breaks the contract: {}",
                problems.join("; ")
            );
            shared.violations.lock().unwrap().extend(problems);
            return respond(&FakeReply::json(500, &(shared.error_body)(&message)));
        }
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    respond(&reply)
}

fn respond(reply: &FakeReply) -> Response {
    let mut response = Response::new(Body::from(reply.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// `{"error": {"message", "type"}}`: the error shape both providers share (Anthropic adds a
/// top-level `type`).
pub(crate) fn openai_error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
}
