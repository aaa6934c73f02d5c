#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The scripted model, as CONTRACT.md "Scripted model" describes it.

use flightdeck_models::{
    estimate_input_tokens, ChatRequest, ChatResponse, Message, ModelError, Pricing, Provider,
    Script, ScriptError, ScriptedProvider, StopReason, WireFormat,
};
use serde_json::json;

const CONTRACT_EXAMPLE: &str = r#"
model = "sim-1"
[pricing]
input_per_mtok = 1.0
output_per_mtok = 2.0

[[turn]]
expect = "Upgrade"
content = "Running the tests first."
input_tokens = 1200
output_tokens = 40
[[turn.call]]
tool = "run"
args = { command = "cargo test" }

[[turn]]
[[turn.call]]
tool = "finish"
args = { summary = "Upgraded; all tests pass." }
"#;

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest::new("fixtures/model.toml", messages)
}

fn provider(source: &str) -> ScriptedProvider {
    ScriptedProvider::new(Script::parse(source, "model.toml").unwrap())
}

async fn call(
    provider: &ScriptedProvider,
    messages: Vec<Message>,
) -> Result<ChatResponse, ModelError> {
    provider.chat(&request(messages)).await.map(|e| e.response)
}

#[tokio::test]
async fn the_contract_example_answers_in_order() {
    let provider = provider(CONTRACT_EXAMPLE);
    assert_eq!(provider.script().model, "sim-1");
    assert_eq!(provider.script().pricing, Some(Pricing::new(1.0, 2.0)));

    let first = call(
        &provider,
        vec![Message::system("sys"), Message::user("Upgrade serde")],
    )
    .await
    .unwrap();
    assert_eq!(first.model_served, "sim-1");
    assert_eq!(first.content.as_deref(), Some("Running the tests first."));
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.tool_calls.len(), 1);
    assert_eq!(first.tool_calls[0].id, "scripted-1-1");
    assert_eq!(first.tool_calls[0].name, "run");
    assert_eq!(
        first.tool_calls[0].arguments,
        json!({"command": "cargo test"})
    );
    assert_eq!(
        (first.usage.input_tokens, first.usage.output_tokens),
        (1200, 40)
    );

    let history = vec![
        Message::user("Upgrade serde"),
        first.to_message(),
        Message::tool_result("scripted-1-1", "test result: ok"),
    ];
    let second = call(&provider, history.clone()).await.unwrap();
    assert_eq!(second.content, None);
    assert_eq!(second.tool_calls[0].name, "finish");
    assert_eq!(second.tool_calls[0].id, "scripted-2-1");
    // Usage is estimated when not overridden.
    assert_eq!(
        second.usage.input_tokens,
        estimate_input_tokens(&request(history))
    );
    assert!(second.usage.output_tokens > 0);

    let error = call(&provider, vec![Message::user("more?")])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "script");
    assert!(!error.retryable());
    assert_eq!(
        error.to_string(),
        "model.toml: turn 3: the script has run out of turns (it has 2); model call 3 has no answer"
    );
}

/// `expect` against the newest user/tool message: (expect, messages, Ok or the error's tail).
#[tokio::test]
async fn expect_table() {
    let user = |t: &str| Message::user(t);
    let tool = |t: &str| Message::tool_result("c1", t);
    let cases: Vec<(&str, Vec<Message>, Result<(), &str>)> = vec![
        ("Upgrade", vec![user("Upgrade serde")], Ok(())),
        (
            "Upgrade",
            vec![user("upgrade serde")],
            Err(r#"expected "Upgrade" in the newest user/tool message, which is: "upgrade serde""#),
        ),
        (
            "Upgrade",
            vec![user("Upgrade serde"), user("now")],
            Err(r#"which is: "now""#),
        ),
        (
            "test result: ok",
            vec![user("go"), tool("test result: ok. 3 passed")],
            Ok(()),
        ),
        (
            "/^test result: (ok|FAILED)/",
            vec![tool("test result: FAILED")],
            Ok(()),
        ),
        (
            "/^test result: ok$/",
            vec![tool("test result: FAILED")],
            Err("expected /^test result: ok$/ in the newest"),
        ),
        ("/(?i)upgrade/", vec![user("UPGRADE")], Ok(())),
        // A lone "/" is a substring, not an empty regex.
        ("/", vec![user("a/b")], Ok(())),
        // System and assistant messages are not looked at.
        (
            "secret",
            vec![
                Message::system("secret"),
                user("hello"),
                Message::assistant("secret"),
            ],
            Err(r#"which is: "hello""#),
        ),
        (
            "x",
            vec![Message::system("x")],
            Err("expected \"x\" but the request has no user/tool message"),
        ),
    ];
    for (expect, messages, expected) in cases {
        let source = format!("[[turn]]\nexpect = {expect:?}\ncontent = \"ok\"\n");
        let provider = provider(&source);
        let result = call(&provider, messages).await;
        match (result, expected) {
            (Ok(response), Ok(())) => {
                assert_eq!(response.content.as_deref(), Some("ok"));
                assert_eq!(provider.next_turn(), 1, "{expect}");
            }
            (Err(error), Err(tail)) => {
                let text = error.to_string();
                assert!(text.starts_with("model.toml: turn 1: "), "{expect}: {text}");
                assert!(text.contains(tail), "{expect}: {text}\nwanted: {tail}");
                // A failed expect does not consume the turn.
                assert_eq!(provider.next_turn(), 0, "{expect}");
            }
            (result, expected) => panic!("{expect}: got {result:?}, wanted {expected:?}"),
        }
    }
}

/// Usage overrides: (turn source, expected (input, output) or None for "estimated").
#[tokio::test]
async fn usage_override_table() {
    let messages = vec![Message::user("hello there, model")];
    let estimated_input = estimate_input_tokens(&request(messages.clone()));
    let cases: &[(&str, u64, u64)] = &[
        ("content = \"abcdabcd\"", estimated_input, 2),
        ("content = \"abcd\"\ninput_tokens = 7", 7, 1),
        ("content = \"abcd\"\noutput_tokens = 9", estimated_input, 9),
        ("input_tokens = 0\noutput_tokens = 0", 0, 0),
    ];
    for (turn, input, output) in cases {
        let provider = provider(&format!("[[turn]]\n{turn}\n"));
        let response = call(&provider, messages.clone()).await.unwrap();
        assert_eq!(
            (response.usage.input_tokens, response.usage.output_tokens),
            (*input, *output),
            "{turn}"
        );
    }
}

#[tokio::test]
async fn several_calls_in_one_turn_keep_their_order_and_args() {
    let provider = provider(
        r#"
[[turn]]
[[turn.call]]
tool = "read_file"
args = { path = "src/lib.rs" }
[[turn.call]]
tool = "edit_file"
args = { path = "src/lib.rs", old = "a", new = "b" }
[[turn.call]]
tool = "list_files"
"#,
    );
    let response = call(&provider, vec![Message::user("go")]).await.unwrap();
    let calls: Vec<(String, String, serde_json::Value)> = response
        .tool_calls
        .into_iter()
        .map(|c| (c.id, c.name, c.arguments))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "scripted-1-1".into(),
                "read_file".into(),
                json!({"path": "src/lib.rs"})
            ),
            (
                "scripted-1-2".into(),
                "edit_file".into(),
                json!({"path": "src/lib.rs", "old": "a", "new": "b"})
            ),
            ("scripted-1-3".into(), "list_files".into(), json!({})),
        ]
    );
}

#[tokio::test]
async fn resume_starts_at_the_turn_the_timeline_reached() {
    let script = Script::parse(CONTRACT_EXAMPLE, "model.toml").unwrap();
    // One call was answered before the mission was interrupted.
    let provider = ScriptedProvider::starting_at(script, 1);
    let response = call(&provider, vec![Message::user("anything")])
        .await
        .unwrap();
    assert_eq!(response.tool_calls[0].name, "finish");
    assert_eq!(provider.next_turn(), 2);
}

#[tokio::test]
async fn bytes_are_the_neutral_json_of_request_and_response() {
    let provider = provider(CONTRACT_EXAMPLE);
    let request = request(vec![Message::user("Upgrade it")]);
    assert_eq!(provider.wire_format(), WireFormat::Neutral);
    let exchange = provider.chat(&request).await.unwrap();
    // Nothing crosses a wire, so no request body is built for the scripted model.
    assert!(!WireFormat::Neutral.sends());
    assert!(exchange.request_body.is_empty());
    let decoded = WireFormat::Neutral
        .decode_response(&exchange.response_body)
        .unwrap();
    assert_eq!(decoded, exchange.response);
    let value: serde_json::Value = serde_json::from_slice(&exchange.response_body).unwrap();
    assert_eq!(value["model_served"], "sim-1");
    assert_eq!(value["stop_reason"], "tool_use");
}

/// Scripts that cannot be used: (source, the error).
#[test]
fn bad_script_table() {
    let cases: &[(&str, &str)] = &[
        (
            "modle = \"x\"",
            "model.toml: TOML parse error at line 1, column 1",
        ),
        ("[[turn]]\nexpct = \"x\"", "unknown field `expct`"),
        (
            "[[turn]]\n[[turn]]\nexpect = \"/(unclosed/\"",
            "model.toml: turn 2: `expect` is not a valid regex",
        ),
        (
            "[[turn]]\n[[turn.call]]\ntool = \" \"",
            "model.toml: turn 1: a call has an empty `tool`",
        ),
        ("[[turn]]\n[[turn.call]]\nargs = {}", "missing field `tool`"),
        (
            "[pricing]\ninput_per_mtok = 1.0",
            "missing field `output_per_mtok`",
        ),
    ];
    for (source, message) in cases {
        let error = Script::parse(source, "model.toml").unwrap_err().to_string();
        assert!(error.contains(message), "{source:?}: {error}");
    }
    let missing = Script::load(std::path::Path::new("/nonexistent/model.toml")).unwrap_err();
    assert!(matches!(missing, ScriptError::Read { .. }), "{missing}");
}

#[test]
fn an_empty_script_reports_the_default_model() {
    let script = Script::parse("", "model.toml").unwrap();
    assert_eq!(script.model, "scripted");
    assert!(script.turns.is_empty());
}
