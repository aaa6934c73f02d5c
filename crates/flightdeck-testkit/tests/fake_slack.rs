#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The fake Slack Web API holds requests and its own answers to Slack's description
//! (`../shared/specs/slack-web-openapi-v2.json`), enforces the bearer-token rule, keeps
//! state, can be scripted, and builds signed interactivity payloads.

use flightdeck_testkit::fake_slack::{
    sign, BlockActions, Encoding, FakeSlack, SlackSpec, BOT_USER_ID, METHODS, TEAM_ID,
};
use serde_json::{json, Map, Value};

const TOKEN: &str = "xoxb-1111-2222-fakebottoken";
const CHANNEL: &str = "C0APPROVALS";

struct Call {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// POSTs a JSON body with the bearer token (or `auth` instead, when given).
async fn post_json(fake: &FakeSlack, method: &str, body: Value, auth: Option<&str>) -> Call {
    let request = reqwest::Client::new()
        .post(format!("{}{method}", fake.api_url()))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    send(request, auth.unwrap_or(&format!("Bearer {TOKEN}"))).await
}

async fn post_form(fake: &FakeSlack, method: &str, form: &[(&str, &str)]) -> Call {
    let request = reqwest::Client::new()
        .post(format!("{}{method}", fake.api_url()))
        .form(form);
    send(request, &format!("Bearer {TOKEN}")).await
}

async fn send(request: reqwest::RequestBuilder, auth: &str) -> Call {
    let request = if auth.is_empty() {
        request
    } else {
        request.header("authorization", auth)
    };
    let response = request.send().await.expect("reach the fake");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    Call {
        status,
        retry_after,
        body,
    }
}

fn approval_blocks() -> Value {
    json!([
        {"type": "section", "block_id": "summary",
         "text": {"type": "mrkdwn", "text": "*Upgrade serde* needs 2 approvals"}},
        {"type": "actions", "block_id": "decide", "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": "gate-1",
             "text": {"type": "plain_text", "text": "Approve", "emoji": true}},
            {"type": "button", "action_id": "deny", "style": "danger", "value": "gate-1",
             "text": {"type": "plain_text", "text": "Deny", "emoji": true}}
        ]}
    ])
}

#[test]
fn the_description_has_the_four_methods_and_the_validator_reads_their_answers() {
    let spec = SlackSpec::get();
    for method in METHODS {
        assert!(spec.operation(method).is_some(), "{method} is described");
        for status in ["200", "default"] {
            let schema = spec
                .response_schema(method, status)
                .unwrap_or_else(|| panic!("{method} has a {status} response"));
            let unknown = spec.openapi().unknown_keywords_in(schema);
            // `uniqueItems` (on `files`, `reply_users`, `attachments`, …) is the one keyword
            // the validator skips; no answer of the fake has such an array.
            assert!(
                unknown.iter().all(|k| k == "uniqueItems"),
                "{method} {status} uses unchecked keywords: {unknown:?}"
            );
        }
    }
    // The token is described as a parameter (in a header for chat.*, in the query for
    // users.info): the fake's rule is stricter, it is never an argument.
    let mut args = Map::new();
    args.insert("channel".into(), json!(CHANNEL));
    args.insert("text".into(), json!("hi"));
    assert!(spec
        .check_arguments("chat.postMessage", &args, Encoding::Json)
        .is_empty());
    args.insert("token".into(), json!(TOKEN));
    let problems = spec.check_arguments("chat.postMessage", &args, Encoding::Json);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("Authorization: Bearer"),
        "{problems:?}"
    );
}

#[test]
fn the_response_check_catches_drift() {
    let spec = SlackSpec::get();
    let good = json!({"ok": true, "channel": CHANNEL, "ts": "1700000000.000100",
                      "message": {"type": "message", "text": "hi", "ts": "1700000000.000100",
                                  "user": BOT_USER_ID, "blocks": approval_blocks()}});
    assert_eq!(
        spec.check_response("chat.postMessage", &good),
        Vec::<String>::new()
    );
    let mut bad_ts = good.clone();
    bad_ts["ts"] = json!("1700000000.1");
    assert!(!spec.check_response("chat.postMessage", &bad_ts).is_empty());
    let mut extra = good.clone();
    extra["message"]["app_id"] = json!("A0FAKEAPP1");
    assert!(!spec.check_response("chat.postMessage", &extra).is_empty());
    let mut no_message = good.clone();
    no_message.as_object_mut().unwrap().remove("message");
    assert!(!spec
        .check_response("chat.postMessage", &no_message)
        .is_empty());
    // Errors are held to each method's enum.
    assert!(spec
        .check_response(
            "chat.update",
            &json!({"ok": false, "error": "message_not_found"})
        )
        .is_empty());
    assert!(!spec
        .check_response(
            "chat.update",
            &json!({"ok": false, "error": "made_up_error"})
        )
        .is_empty());
    // `objs_user` is a tuple-form `items: [...]`, read as `anyOf`: a user without its
    // required fields is refused (plain JSON Schema would accept anything).
    assert!(!spec
        .check_response(
            "users.info",
            &json!({"ok": true, "user": {"id": "U0ALICE01"}})
        )
        .is_empty());
}

#[tokio::test]
async fn valid_calls_are_answered_recorded_and_valid() {
    let fake = FakeSlack::start(TOKEN).await;
    fake.add_user("U0ALICE01", "alice", Some("alice@example.com"));
    fake.add_user("U0BOB0001", "bob", None);
    let spec = SlackSpec::get();

    let posted = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHANNEL, "text": "Upgrade serde needs approval", "blocks": approval_blocks()}),
        None,
    )
    .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.body["ok"], json!(true), "{}", posted.body);
    assert_eq!(posted.body["channel"], json!(CHANNEL));
    let ts = posted.body["ts"].as_str().unwrap().to_string();
    assert_eq!(ts, "1700000000.000100");
    assert_eq!(posted.body["message"]["blocks"], approval_blocks());
    assert!(spec
        .check_response("chat.postMessage", &posted.body)
        .is_empty());

    // A reply in the thread, form-encoded: `blocks` travels as a JSON string.
    let reply = post_form(
        &fake,
        "chat.postMessage",
        &[
            ("channel", CHANNEL),
            ("text", "Published: PR #7"),
            ("thread_ts", &ts),
            ("unfurl_links", "false"),
            (
                "blocks",
                r#"[{"type":"section","text":{"type":"mrkdwn","text":"done"}}]"#,
            ),
        ],
    )
    .await;
    assert_eq!(reply.body["ok"], json!(true), "{}", reply.body);
    let reply_ts = reply.body["ts"].as_str().unwrap().to_string();
    assert!(reply_ts > ts, "ts increases: {reply_ts} after {ts}");

    let updated = post_json(
        &fake,
        "chat.update",
        json!({"channel": CHANNEL, "ts": ts, "text": "1/2 approved by @alice", "blocks": []}),
        None,
    )
    .await;
    assert_eq!(updated.body["ok"], json!(true), "{}", updated.body);
    assert_eq!(updated.body["text"], json!("1/2 approved by @alice"));
    assert!(spec.check_response("chat.update", &updated.body).is_empty());

    let ephemeral = post_json(
        &fake,
        "chat.postEphemeral",
        json!({"channel": CHANNEL, "user": "U0BOB0001", "text": "You may not approve this"}),
        None,
    )
    .await;
    assert_eq!(ephemeral.body["ok"], json!(true), "{}", ephemeral.body);
    assert!(ephemeral.body["message_ts"].as_str().is_some());

    // users.info as described (GET, query string) and as clients do it (POST, form).
    let alice = send(
        reqwest::Client::new().get(format!("{}users.info?user=U0ALICE01", fake.api_url())),
        &format!("Bearer {TOKEN}"),
    )
    .await;
    assert_eq!(alice.body["ok"], json!(true), "{}", alice.body);
    assert_eq!(alice.body["user"]["name"], json!("alice"));
    assert_eq!(
        alice.body["user"]["profile"]["email"],
        json!("alice@example.com")
    );
    let bob = post_form(&fake, "users.info", &[("user", "U0BOB0001")]).await;
    assert_eq!(bob.body["user"]["id"], json!("U0BOB0001"));
    assert!(bob.body["user"]["profile"].get("email").is_none());
    let nobody = post_form(&fake, "users.info", &[("user", "U0NOBODY1")]).await;
    assert_eq!(nobody.body, json!({"ok": false, "error": "user_not_found"}));

    let messages = fake.messages(CHANNEL);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["text"], json!("1/2 approved by @alice"));
    assert_eq!(
        messages[0]["blocks"],
        json!([]),
        "the update removed the buttons"
    );
    assert_eq!(messages[1]["thread_ts"], json!(ts));
    assert_eq!(messages[1]["blocks"][0]["type"], json!("section"));
    let ephemerals = fake.ephemerals();
    assert_eq!(ephemerals.len(), 1);
    assert_eq!(ephemerals[0]["user"], json!("U0BOB0001"));
    assert_eq!(ephemerals[0]["text"], json!("You may not approve this"));

    let requests = fake.requests();
    assert_eq!(requests.len(), 7);
    assert_eq!(requests[0].method.as_deref(), Some("chat.postMessage"));
    assert_eq!(requests[0].args["channel"], json!(CHANNEL));
    assert_eq!(fake.calls("users.info"), 3);
    assert!(requests
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}"))));
    fake.assert_clean();
}

#[tokio::test]
async fn channel_names_resolve_and_unknown_ones_are_refused() {
    let fake = FakeSlack::start(TOKEN).await;
    fake.add_channel(CHANNEL, "#approvals");
    let posted = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "#approvals", "text": "hi"}),
        None,
    )
    .await;
    assert_eq!(posted.body["channel"], json!(CHANNEL), "{}", posted.body);
    let unknown = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "#nowhere", "text": "hi"}),
        None,
    )
    .await;
    assert_eq!(
        unknown.body,
        json!({"ok": false, "error": "channel_not_found"})
    );
    let no_text = post_json(&fake, "chat.postMessage", json!({"channel": CHANNEL}), None).await;
    assert_eq!(no_text.body, json!({"ok": false, "error": "no_text"}));
    fake.assert_clean();
}

#[tokio::test]
async fn updating_an_unknown_message_is_message_not_found() {
    let fake = FakeSlack::start(TOKEN).await;
    let call = post_json(
        &fake,
        "chat.update",
        json!({"channel": CHANNEL, "ts": "1700000000.999999", "text": "x"}),
        None,
    )
    .await;
    assert_eq!(call.status, 200);
    assert_eq!(
        call.body,
        json!({"ok": false, "error": "message_not_found"})
    );
    fake.assert_clean();
}

#[tokio::test]
async fn a_token_in_the_body_or_the_query_string_is_a_violation() {
    let fake = FakeSlack::start(TOKEN).await;
    let call = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHANNEL, "text": "hi", "token": TOKEN}),
        None,
    )
    .await;
    assert_eq!(
        call.body["error"],
        json!("invalid_arguments"),
        "{}",
        call.body
    );
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("sent as an argument"),
        "{violations:?}"
    );

    let form = post_form(
        &fake,
        "chat.postMessage",
        &[("channel", CHANNEL), ("text", "hi"), ("token", TOKEN)],
    )
    .await;
    assert_eq!(form.body["error"], json!("invalid_arguments"));

    let query = send(
        reqwest::Client::new().get(format!(
            "{}users.info?user=U0ALICE01&token={TOKEN}",
            fake.api_url()
        )),
        &format!("Bearer {TOKEN}"),
    )
    .await;
    assert_eq!(query.body["error"], json!("invalid_arguments"));
    let violations = fake.violations();
    assert_eq!(violations.len(), 3, "{violations:?}");
    assert!(violations[2].contains("query string"), "{violations:?}");
    assert!(fake.messages(CHANNEL).is_empty(), "nothing was posted");
}

#[tokio::test]
async fn a_missing_bearer_is_a_violation_and_a_wrong_token_is_invalid_auth() {
    let fake = FakeSlack::start(TOKEN).await;
    let none = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHANNEL, "text": "hi"}),
        Some(""),
    )
    .await;
    assert_eq!(none.body, json!({"ok": false, "error": "not_authed"}));
    assert_eq!(fake.violations().len(), 1);
    assert!(fake.violations()[0].contains("no Authorization header"));

    let basic = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHANNEL, "text": "hi"}),
        Some(&format!("Basic {TOKEN}")),
    )
    .await;
    assert_eq!(basic.body, json!({"ok": false, "error": "invalid_auth"}));
    assert_eq!(fake.violations().len(), 2);

    // A well-formed but wrong token is the server's answer, not a contract break.
    let wrong = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHANNEL, "text": "hi"}),
        Some("Bearer xoxb-someone-else"),
    )
    .await;
    assert_eq!(wrong.body, json!({"ok": false, "error": "invalid_auth"}));
    assert_eq!(fake.violations().len(), 2);
    assert!(fake.messages(CHANNEL).is_empty());
}

#[tokio::test]
async fn missing_required_wrong_types_and_unknown_arguments_are_violations() {
    let fake = FakeSlack::start(TOKEN).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "chat.postMessage",
            json!({"text": "no channel"}),
            "missing required argument `channel`",
        ),
        (
            "chat.update",
            json!({"channel": CHANNEL, "text": "x"}),
            "missing required argument `ts`",
        ),
        (
            "chat.postEphemeral",
            json!({"channel": CHANNEL, "text": "x"}),
            "missing required argument `user`",
        ),
        (
            "chat.update",
            json!({"channel": CHANNEL, "ts": 1_700_000_000.000_1, "text": "x"}),
            "argument `ts` should be string",
        ),
        (
            "chat.postMessage",
            json!({"channel": CHANNEL, "text": "x", "unfurl_links": "false"}),
            "argument `unfurl_links` should be boolean",
        ),
        (
            "chat.postMessage",
            json!({"channel": CHANNEL, "text": "x", "blocks": {"type": "section"}}),
            "argument `blocks` should be string",
        ),
        (
            "chat.postMessage",
            json!({"channel": CHANNEL, "text": "x", "reply_to": "1"}),
            "unknown argument `reply_to`",
        ),
    ];
    for (i, (method, body, expected)) in cases.iter().enumerate() {
        let call = post_json(&fake, method, body.clone(), None).await;
        assert_eq!(
            call.body["error"],
            json!("invalid_arguments"),
            "{method} {body}"
        );
        let messages = call.body["response_metadata"]["messages"].to_string();
        assert!(messages.contains(expected), "{messages}");
        let violations = fake.violations();
        assert_eq!(violations.len(), i + 1, "{violations:?}");
        assert!(violations[i].contains(expected), "{violations:?}");
    }

    // Form bodies: values must parse as the declared type; a JSON-array argument must hold one.
    let before = fake.violations().len();
    let form = post_form(
        &fake,
        "chat.postMessage",
        &[
            ("channel", CHANNEL),
            ("text", "x"),
            ("link_names", "yes"),
            ("blocks", "not json"),
        ],
    )
    .await;
    assert_eq!(form.body["error"], json!("invalid_arguments"));
    let violations = fake.violations()[before..].to_vec();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations
            .iter()
            .any(|v| v.contains("`link_names` should be boolean")),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains("should hold a JSON array")),
        "{violations:?}"
    );

    // users.info consumes only form bodies: a JSON one is refused.
    let before = fake.violations().len();
    let json_users = post_json(&fake, "users.info", json!({"user": "U0ALICE01"}), None).await;
    assert_eq!(json_users.body["error"], json!("invalid_arguments"));
    let violations = fake.violations()[before..].to_vec();
    assert!(
        violations.iter().any(|v| v.contains("not accepted")),
        "{violations:?}"
    );

    // An unknown method or verb.
    let before = fake.violations().len();
    let unknown = post_json(&fake, "chat.delete", json!({}), None).await;
    assert_eq!(unknown.status, 404);
    let get = send(
        reqwest::Client::new().get(format!("{}chat.postMessage", fake.api_url())),
        &format!("Bearer {TOKEN}"),
    )
    .await;
    assert_eq!(get.body["error"], json!("invalid_arguments"));
    assert_eq!(
        fake.violations().len(),
        before + 3,
        "{:?}",
        fake.violations()
    );
    assert!(fake.messages(CHANNEL).is_empty());
}

#[tokio::test]
async fn scripted_rate_limits_and_errors() {
    let fake = FakeSlack::start(TOKEN).await;
    fake.rate_limit_next("chat.postMessage", 1);
    fake.fail_next("chat.postMessage", "channel_not_found");
    let body = json!({"channel": CHANNEL, "text": "hi"});

    let limited = post_json(&fake, "chat.postMessage", body.clone(), None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    assert_eq!(limited.body, json!({"ok": false, "error": "ratelimited"}));

    let failed = post_json(&fake, "chat.postMessage", body.clone(), None).await;
    assert_eq!(failed.status, 200);
    assert_eq!(
        failed.body,
        json!({"ok": false, "error": "channel_not_found"})
    );

    let fine = post_json(&fake, "chat.postMessage", body.clone(), None).await;
    assert_eq!(fine.body["ok"], json!(true));
    // Scripts are per method.
    let update = post_json(
        &fake,
        "chat.update",
        json!({"channel": CHANNEL, "ts": fine.body["ts"], "text": "edited"}),
        None,
    )
    .await;
    assert_eq!(update.body["ok"], json!(true), "{}", update.body);
    assert_eq!(fake.messages(CHANNEL).len(), 1);
    fake.assert_clean();

    // A scripted error the description does not list for the method is the fake drifting.
    fake.fail_next("users.info", "channel_not_found");
    let drift = post_form(&fake, "users.info", &[("user", "U0ALICE01")]).await;
    assert_eq!(drift.status, 500);
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("users.info default response"),
        "{violations:?}"
    );
}

#[test]
fn the_signature_reproduces_slack_sdks_fixed_vector() {
    // python slack-sdk's signature verifier test (Slack's documented
    // example request).
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let timestamp = "1531420618";
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        sign(secret, timestamp, body),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
    assert_ne!(
        sign(secret, "1531420619", body),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[tokio::test]
async fn a_click_is_a_signed_block_actions_payload_as_slack_sends_it() {
    let fake = FakeSlack::start(TOKEN).await;
    fake.add_user("U0ALICE01", "alice", None);
    fake.add_channel(CHANNEL, "approvals");
    let posted = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHANNEL, "text": "Upgrade serde", "blocks": approval_blocks()}),
        None,
    )
    .await;
    let ts = posted.body["ts"].as_str().unwrap();

    let click = fake.click(CHANNEL, ts, "U0ALICE01", "approve");
    let payload = click.payload();
    let keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "user",
            "api_app_id",
            "token",
            "container",
            "trigger_id",
            "team",
            "enterprise",
            "is_enterprise_install",
            "channel",
            "message",
            "state",
            "response_url",
            "actions"
        ]
    );
    assert_eq!(payload["type"], json!("block_actions"));
    assert_eq!(
        payload["user"],
        json!({"id": "U0ALICE01", "username": "alice", "name": "alice", "team_id": TEAM_ID})
    );
    assert_eq!(
        payload["container"],
        json!({"type": "message", "message_ts": ts, "channel_id": CHANNEL, "is_ephemeral": false})
    );
    assert_eq!(payload["team"]["id"], json!(TEAM_ID));
    assert_eq!(payload["enterprise"], Value::Null);
    assert_eq!(payload["is_enterprise_install"], json!(false));
    assert_eq!(
        payload["channel"],
        json!({"id": CHANNEL, "name": "approvals"})
    );
    assert_eq!(payload["message"], fake.message(CHANNEL, ts).unwrap());
    assert_eq!(payload["state"], json!({"values": {}}));
    let action = &payload["actions"][0];
    assert_eq!(
        action,
        &json!({"action_id": "approve", "block_id": "decide",
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "value": "gate-1", "style": "primary", "type": "button",
                "action_ts": click.action_ts})
    );

    // Form-encoded as `payload=<urlencoded JSON>` and signed over the exact body.
    let (body, headers) = click.signed("shh-signing-secret", 1_700_000_123);
    assert!(body.starts_with("payload=%7B%22type%22%3A%22block_actions%22"));
    let decoded: Vec<(String, String)> = url_decode(&body);
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].0, "payload");
    assert_eq!(
        serde_json::from_str::<Value>(&decoded[0].1).unwrap(),
        payload
    );
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(header("content-type"), "application/x-www-form-urlencoded");
    assert_eq!(header("x-slack-request-timestamp"), "1700000123");
    assert_eq!(
        header("x-slack-signature"),
        sign("shh-signing-secret", "1700000123", &body)
    );

    // Hostile variants are a field away; the signature covers them.
    let mut forged = click.clone();
    forged.user_id = "U0MALLORY".into();
    assert_ne!(
        forged.signed("shh-signing-secret", 1_700_000_123).1,
        headers
    );

    // Built without the fake too.
    let direct = BlockActions::new(
        "U0BOB0001",
        CHANNEL,
        json!({"type": "message", "ts": "1700000000.000100", "text": "",
               "blocks": [{"type": "section", "block_id": "s",
                           "text": {"type": "mrkdwn", "text": "t"},
                           "accessory": {"type": "button", "action_id": "deny",
                                         "text": {"type": "plain_text", "text": "Deny"}}}]}),
        "deny",
    );
    let direct = direct.payload();
    assert_eq!(direct["actions"][0]["block_id"], json!("s"));
    assert!(direct["actions"][0].get("value").is_none());
    assert!(direct["actions"][0].get("style").is_none());
    fake.assert_clean();
}

fn url_decode(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
