//! OpenTelemetry end to end with the real binary: `[telemetry] otlp_endpoint` pointed at a
//! test OTLP/HTTP receiver (real HTTP on 127.0.0.1) that records every export of a mission
//! that calls a model and tools, parks for an approval, is approved and resumed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use flightdeck_testkit::{Cli, TestRepo};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// What the receiver got: method, path, content type, body.
type Received = Arc<Mutex<Vec<(String, String, String, Vec<u8>)>>>;

async fn record(
    State(received): State<Received>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    received.lock().unwrap().push((
        method.to_string(),
        uri.path().to_string(),
        content_type,
        body.to_vec(),
    ));
    (StatusCode::OK, [("content-type", "application/json")], "{}")
}

/// An OTLP/HTTP receiver on 127.0.0.1, served by `runtime`'s threads.
fn receiver(runtime: &tokio::runtime::Runtime) -> (SocketAddr, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(received.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

const POLICY: &str = "[defaults]\npublish = \"allow\"\n[[rule]]\nid = \"src-reviewed\"\naction = \"write\"\npaths = [\"src/**\"]\ndecision = \"approve\"\napprovers = [\"@alice\"]\ntier = \"medium\"\n";
const TEMPLATE: &str = "goal = \"GOAL-MARKER-a1: make answer return 42\"\n[model]\npin = \"scripted:.flightdeck/script.toml\"\n[[steps]]\nagent = \"coder\"\n";
const SCRIPT: &str = r#"
model = "sim-1"
[[turn]]
content = "OUTPUT-MARKER-b2: editing"
[[turn.call]]
tool = "edit_file"
args = { path = "src/lib.rs", old = "41", new = "42 /* ARG-MARKER-c3 */" }
[[turn]]
expect = "edited src/lib.rs"
[[turn.call]]
tool = "finish"
args = { summary = "SUMMARY-MARKER-d4" }
"#;
/// Text that must stay in the timeline and never reach a trace.
const CONTENTS: [&str; 4] = [
    "GOAL-MARKER-a1",
    "OUTPUT-MARKER-b2",
    "ARG-MARKER-c3",
    "SUMMARY-MARKER-d4",
];

fn attrs(span: &Value) -> BTreeMap<String, Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
        .collect()
}

fn s(value: &str) -> Value {
    json!({ "stringValue": value })
}

fn seqs(span: &Value) -> Vec<u64> {
    attrs(span)["flightdeck.event.seq"]["arrayValue"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["intValue"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn nanos(span: &Value, key: &str) -> u128 {
    span[key].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_parked_and_resumed_mission_exports_linked_traces_by_the_genai_conventions() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (addr, received) = receiver(&runtime);
    let repo = TestRepo::with_files(&[
        ("README.md", "hello\n"),
        ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n"),
        (".flightdeck/policy.toml", POLICY),
        (".flightdeck/missions/t.toml", TEMPLATE),
        (".flightdeck/script.toml", SCRIPT),
    ]);
    repo.commit_all("agent template");
    let cli = Cli::new(BIN);
    cli.write_config(&format!("[telemetry]\notlp_endpoint = \"http://{addr}\"\n"));

    // Run: it edits src/lib.rs, which needs @alice: it parks. Approve. Resume: it finishes.
    let out = cli.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let summary = out.json();
    let id = summary["id"].as_str().unwrap().to_string();
    let approval = summary["pending_approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    cli.run_as("@alice", &["approve", &approval]).expect_code(0);
    let done = cli.run(&["--json", "resume", &id]).expect_code(0).json();
    assert_eq!(done["status"], "succeeded");
    let timeline = cli.timeline(&id);
    let type_at = |seq: u64| {
        timeline[usize::try_from(seq - 1).unwrap()]["type"]
            .as_str()
            .unwrap()
    };
    // Arguments are in the timeline's events (prompts and answers in its artifacts).
    for content in ["ARG-MARKER-c3", "SUMMARY-MARKER-d4"] {
        assert!(timeline.iter().any(|e| e.to_string().contains(content)));
    }

    // Every process flushed before it exited: everything is here.
    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty());
    let mut spans: Vec<Value> = Vec::new();
    for (method, path, content_type, body) in &received {
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/v1/traces"));
        assert_eq!(content_type, "application/json");
        let text = String::from_utf8(body.clone()).unwrap();
        for content in CONTENTS {
            assert!(!text.contains(content), "{content} reached a trace: {text}");
        }
        let request: Value = serde_json::from_str(&text).unwrap();
        for resource in request["resourceSpans"].as_array().unwrap() {
            assert!(resource["resource"]["attributes"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "service.name", "value": s("flightdeck")})));
            for scope in resource["scopeSpans"].as_array().unwrap() {
                assert_eq!(scope["scope"]["name"], "flightdeck");
                spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    let ids: BTreeSet<&str> = spans
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), spans.len(), "each span exported once");
    for span in &spans {
        assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        assert!(nanos(span, "startTimeUnixNano") <= nanos(span, "endTimeUnixNano"));
        let attributes = attrs(span);
        assert_eq!(attributes["flightdeck.mission.id"], s(&id), "{span}");
        assert!(!seqs(span).is_empty(), "{span}");
    }

    // One trace per driven segment: the run, the approval's settle, the resume; in time order.
    let mut roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s.get("parentSpanId").is_none())
        .collect();
    roots.sort_by_key(|r| nanos(r, "startTimeUnixNano"));
    let traces: BTreeSet<&str> = spans
        .iter()
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(roots.len(), 3, "{roots:#?}");
    assert_eq!(traces.len(), 3);
    for root in &roots {
        assert_eq!(root["name"], "invoke_agent t");
        let attributes = attrs(root);
        assert_eq!(attributes["gen_ai.operation.name"], s("invoke_agent"));
        assert_eq!(attributes["gen_ai.conversation.id"], s(&id));
        assert_eq!(attributes["gen_ai.agent.name"], s("t"));
    }
    let [run, vote, resume] = [roots[0], roots[1], roots[2]];
    assert!(
        run.get("links").is_none(),
        "a mission's first segment links nowhere"
    );
    for (later, earlier) in [(vote, run), (resume, vote)] {
        let links = later["links"].as_array().unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0]["traceId"], earlier["traceId"]);
        assert_eq!(links[0]["spanId"], earlier["spanId"]);
        // No span crosses from one segment into the next.
        assert!(nanos(earlier, "endTimeUnixNano") <= nanos(later, "startTimeUnixNano"));
    }
    assert_eq!(attrs(run)["flightdeck.segment.end"], s("parked"));
    assert_eq!(type_at(seqs(vote)[0]), "approval.decided");
    assert_eq!(attrs(resume)["flightdeck.mission.status"], s("succeeded"));
    assert_eq!(resume["status"]["code"], 1);
    let children = |root: &Value| -> Vec<Value> {
        let children: Vec<Value> = spans
            .iter()
            .filter(|s| s["traceId"] == root["traceId"] && s.get("parentSpanId").is_some())
            .cloned()
            .collect();
        for child in &children {
            assert_eq!(child["parentSpanId"], root["spanId"], "{child}");
            assert!(nanos(child, "startTimeUnixNano") >= nanos(root, "startTimeUnixNano"));
            assert!(nanos(child, "endTimeUnixNano") <= nanos(root, "endTimeUnixNano"));
        }
        children
    };
    assert!(children(vote).is_empty());

    // The run: one model call, then the edit it proposed, cut short by the park.
    let run_spans = children(run);
    let requested = timeline
        .iter()
        .find(|e| e["type"] == "model.requested")
        .unwrap();
    let model = requested["data"]["model"].as_str().unwrap();
    let names: Vec<&str> = run_spans
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [format!("chat {model}").as_str(), "execute_tool edit_file"]
    );
    let chat = &run_spans[0];
    assert_eq!(chat["kind"], 3, "a chat span is a client span");
    let a = attrs(chat);
    assert_eq!(a["gen_ai.operation.name"], s("chat"));
    assert_eq!(a["gen_ai.provider.name"], s("scripted"));
    assert_eq!(a["gen_ai.request.model"], s(model));
    assert_eq!(a["gen_ai.response.model"], s("sim-1"));
    let responded = timeline
        .iter()
        .find(|e| e["type"] == "model.responded")
        .unwrap();
    assert_eq!(
        a["gen_ai.usage.input_tokens"],
        json!({"intValue": responded["data"]["input_tokens"].to_string()})
    );
    assert_eq!(
        a["gen_ai.usage.output_tokens"],
        json!({"intValue": responded["data"]["output_tokens"].to_string()})
    );
    assert_eq!(
        seqs(chat),
        [
            requested["seq"].as_u64().unwrap(),
            responded["seq"].as_u64().unwrap()
        ]
    );
    let edit = &run_spans[1];
    assert_eq!(edit["kind"], 1);
    let a = attrs(edit);
    assert_eq!(a["gen_ai.operation.name"], s("execute_tool"));
    assert_eq!(a["gen_ai.tool.name"], s("edit_file"));
    assert_eq!(a["gen_ai.tool.call.id"], s("step-0.m1.t1"));
    assert_eq!(a["flightdeck.span.cut"], s("parked"));
    assert!(edit["status"]["message"]
        .as_str()
        .unwrap()
        .contains("parked"));
    assert_eq!(
        seqs(edit)
            .iter()
            .map(|seq| type_at(*seq))
            .collect::<Vec<_>>(),
        ["tool.requested", "policy.decided", "approval.requested"]
    );
    assert_eq!(edit["endTimeUnixNano"], run["endTimeUnixNano"]);

    // The resume: the approved edit runs, the second model call, the finish.
    let resume_spans = children(resume);
    let names: Vec<&str> = resume_spans
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "execute_tool edit_file",
            format!("chat {model}").as_str(),
            "execute_tool finish"
        ]
    );
    let ran = &resume_spans[0];
    assert_eq!(attrs(ran)["gen_ai.tool.call.id"], s("step-0.m1.t1"));
    assert_eq!(
        attrs(ran)["flightdeck.tool.requested_earlier"],
        json!({"boolValue": true})
    );
    assert_eq!(type_at(seqs(ran)[0]), "tool.completed");
    assert_eq!(
        seqs(&resume_spans[1])
            .iter()
            .map(|seq| type_at(*seq))
            .collect::<Vec<_>>(),
        ["model.requested", "model.responded"]
    );
    assert_eq!(
        attrs(&resume_spans[2])["gen_ai.tool.call.id"],
        s("step-0.m2.t1")
    );
    assert_eq!(
        type_at(*seqs(&resume_spans[2]).last().unwrap()),
        "tool.completed"
    );

    // A receiver that is not there: the mission does not notice; one warning says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quiet = Cli::new(BIN);
    quiet.write_config(&format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n"
    ));
    let repo =
        TestRepo::with_files(&[(".flightdeck/missions/t.toml", "[[steps]]\nrun = \"true\"\n")]);
    repo.commit_all("template");
    let out = quiet.run(&[
        "--json",
        "run",
        "t",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(out.json()["status"], "succeeded");
    let stderr = out.stderr();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("telemetry")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("warning: telemetry: cannot export traces to http://127.0.0.1:"),
        "{stderr}"
    );

    // A bad endpoint is refused before anything is recorded.
    let bad = Cli::new(BIN);
    bad.write_config("[telemetry]\notlp_endpoint = \"grpc://127.0.0.1:4317\"\n");
    let out = bad.run(&["run", "t", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let stderr = out.stderr();
    assert!(
        stderr.contains("config.toml") && stderr.contains("[telemetry] otlp_endpoint"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(bad
        .data_files()
        .iter()
        .all(|(path, _)| path.ends_with("config.toml")));
}
