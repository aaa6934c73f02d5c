//! Interactivity payloads (HTTP mode `POST /slack/actions`, and the `payload` of a Socket Mode
//! `interactive` envelope): an `application/x-www-form-urlencoded` body with one field,
//! `payload`, holding JSON of type `block_actions`. [`parse_approval_click`] turns a click on
//! the approval message's Approve / Deny button into an [`ApprovalClick`] and refuses
//! anything else. Pure; check the request's signature ([`crate::signature::verify`]) before
//! calling it.

use serde::Deserialize;

use crate::blocks::{APPROVE_ACTION_ID, DENY_ACTION_ID};

/// The largest body accepted (Slack's payloads for our message are a few KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A click on Approve or Deny, as Slack reported it. `user_id` is only as trustworthy as the
/// request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalClick {
    /// The button's `value`: the approval id.
    pub approval_id: String,
    /// Approve (true) or Deny (false).
    pub approve: bool,
    /// Slack user id of who clicked (`U…` / `W…`).
    pub user_id: String,
    /// The workspace the click came from.
    pub team_id: String,
    pub channel_id: String,
    /// The `ts` of the message the buttons are on (to update it in place).
    pub message_ts: String,
    /// Where Slack accepts a reply to this click (valid 30 minutes, 5 uses).
    pub response_url: String,
    /// When Slack says the click happened (`1548426417.840180`).
    pub action_ts: String,
}

/// Why a body is not a click on our buttons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InteractivityError {
    #[error("the body is {len} bytes; at most {max} are accepted", max = MAX_BODY_BYTES)]
    Oversize { len: usize },
    #[error("the body has no `payload` field (expected application/x-www-form-urlencoded with `payload=<json>`)")]
    MissingPayload,
    #[error("the body has more than one `payload` field")]
    DuplicatePayload,
    #[error("the payload is not valid JSON of the expected shape: {0}")]
    BadJson(String),
    #[error("the payload is of type `{0}`, not `block_actions`")]
    NotBlockActions(String),
    #[error("the payload has no `{0}`")]
    MissingField(&'static str),
    #[error("the payload has {0} actions; exactly one is expected")]
    ActionCount(usize),
    #[error("the action `{0}` is not one of flightdeck's buttons")]
    UnknownAction(String),
    #[error("the action is a `{0}`, not a button")]
    NotAButton(String),
}

/// Parses an interactivity request body into the click it reports.
pub fn parse_approval_click(body: &[u8]) -> Result<ApprovalClick, InteractivityError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(InteractivityError::Oversize { len: body.len() });
    }
    let mut payload = None;
    for (key, value) in url::form_urlencoded::parse(body) {
        if key == "payload" {
            if payload.is_some() {
                return Err(InteractivityError::DuplicatePayload);
            }
            payload = Some(value.into_owned());
        }
    }
    let payload = payload.ok_or(InteractivityError::MissingPayload)?;
    parse_payload_json(payload.as_bytes())
}

/// Parses the JSON of a `block_actions` payload (what a Socket Mode envelope carries as its
/// `payload` object, serialized).
pub fn parse_payload_json(json: &[u8]) -> Result<ApprovalClick, InteractivityError> {
    if json.len() > MAX_BODY_BYTES {
        return Err(InteractivityError::Oversize { len: json.len() });
    }
    let payload: Payload = serde_json::from_slice(json)
        .map_err(|e| InteractivityError::BadJson(shorten_to(&e.to_string(), 200)))?;
    let kind = payload
        .kind
        .ok_or(InteractivityError::MissingField("type"))?;
    if kind != "block_actions" {
        return Err(InteractivityError::NotBlockActions(shorten(&kind)));
    }
    let user = payload
        .user
        .ok_or(InteractivityError::MissingField("user"))?;
    let user_id = present(user.id).ok_or(InteractivityError::MissingField("user.id"))?;
    let team_id = payload
        .team
        .and_then(|t| present(t.id))
        .or_else(|| present(user.team_id))
        .ok_or(InteractivityError::MissingField("team.id"))?;
    let container = payload.container.unwrap_or_default();
    let channel_id = payload
        .channel
        .and_then(|c| present(c.id))
        .or_else(|| present(container.channel_id))
        .ok_or(InteractivityError::MissingField("channel.id"))?;
    let message_ts = present(container.message_ts)
        .or_else(|| payload.message.and_then(|m| present(m.ts)))
        .ok_or(InteractivityError::MissingField("container.message_ts"))?;
    let response_url =
        present(payload.response_url).ok_or(InteractivityError::MissingField("response_url"))?;
    let mut actions = payload
        .actions
        .ok_or(InteractivityError::MissingField("actions"))?;
    if actions.len() != 1 {
        return Err(InteractivityError::ActionCount(actions.len()));
    }
    let action = actions.remove(0);
    let action_id = present(action.action_id)
        .ok_or(InteractivityError::MissingField("actions[0].action_id"))?;
    let approve = match action_id.as_str() {
        APPROVE_ACTION_ID => true,
        DENY_ACTION_ID => false,
        other => return Err(InteractivityError::UnknownAction(shorten(other))),
    };
    let button_kind =
        present(action.kind).ok_or(InteractivityError::MissingField("actions[0].type"))?;
    if button_kind != "button" {
        return Err(InteractivityError::NotAButton(shorten(&button_kind)));
    }
    let approval_id =
        present(action.value).ok_or(InteractivityError::MissingField("actions[0].value"))?;
    let action_ts = present(action.action_ts)
        .ok_or(InteractivityError::MissingField("actions[0].action_ts"))?;
    Ok(ApprovalClick {
        approval_id,
        approve,
        user_id,
        team_id,
        channel_id,
        message_ts,
        response_url,
        action_ts,
    })
}

fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// What a sender chose, cut short and printable, for an error message.
fn shorten(text: &str) -> String {
    shorten_to(text, 64)
}

fn shorten_to(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    user: Option<User>,
    team: Option<Team>,
    channel: Option<Channel>,
    message: Option<Message>,
    container: Option<Container>,
    response_url: Option<String>,
    actions: Option<Vec<Action>>,
}

#[derive(Deserialize)]
struct User {
    id: Option<String>,
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct Team {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Channel {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    ts: Option<String>,
}

#[derive(Deserialize, Default)]
struct Container {
    message_ts: Option<String>,
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: Option<String>,
    value: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    action_ts: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A `block_actions` payload shaped as Slack sends it for a click on a message button.
    fn slack_payload(action_id: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": { "id": "U0123ABCD", "username": "alice", "name": "alice", "team_id": "T0TEAM" },
            "api_app_id": "A0APP",
            "token": "verification-token-deprecated",
            "container": {
                "type": "message",
                "message_ts": "1548426417.840180",
                "channel_id": "C0123ABCD",
                "is_ephemeral": false
            },
            "trigger_id": "12466734323.1395872398.88c8e2c2f8f0a5f7e1fa28c3a1d5b4a3",
            "team": { "id": "T0TEAM", "domain": "acme" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": "C0123ABCD", "name": "approvals" },
            "message": {
                "type": "message",
                "subtype": "bot_message",
                "text": "Approval needed: Fix the login redirect",
                "ts": "1548426417.840180",
                "bot_id": "B0BOT",
                "blocks": []
            },
            "state": { "values": {} },
            "response_url": "https://hooks.slack.com/actions/T0TEAM/123/abc",
            "actions": [{
                "action_id": action_id,
                "block_id": "flightdeck_approval",
                "text": { "type": "plain_text", "text": "Approve", "emoji": true },
                "value": "apr_01",
                "style": "primary",
                "type": "button",
                "action_ts": "1548426425.102142"
            }]
        })
    }

    fn form(payload: &Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn expected(approve: bool) -> ApprovalClick {
        ApprovalClick {
            approval_id: "apr_01".into(),
            approve,
            user_id: "U0123ABCD".into(),
            team_id: "T0TEAM".into(),
            channel_id: "C0123ABCD".into(),
            message_ts: "1548426417.840180".into(),
            response_url: "https://hooks.slack.com/actions/T0TEAM/123/abc".into(),
            action_ts: "1548426425.102142".into(),
        }
    }

    #[test]
    fn approve_and_deny_clicks_parse() {
        assert_eq!(
            parse_approval_click(&form(&slack_payload(APPROVE_ACTION_ID))),
            Ok(expected(true))
        );
        assert_eq!(
            parse_approval_click(&form(&slack_payload(DENY_ACTION_ID))),
            Ok(expected(false))
        );
        let json = slack_payload(APPROVE_ACTION_ID).to_string();
        assert_eq!(parse_payload_json(json.as_bytes()), Ok(expected(true)));
    }

    #[test]
    fn fallbacks_for_fields_slack_may_leave_out() {
        // Org-wide installs may send `team: null`; the user's team is used. Without `channel`,
        // the container's channel; without `container.message_ts`, the message's `ts`.
        let mut p = slack_payload(APPROVE_ACTION_ID);
        p["team"] = Value::Null;
        p.as_object_mut().map(|m| m.remove("channel"));
        p["container"]
            .as_object_mut()
            .map(|m| m.remove("message_ts"));
        assert_eq!(parse_approval_click(&form(&p)), Ok(expected(true)));
    }

    #[test]
    fn everything_else_is_refused() {
        type Edit = fn(&mut Value);
        let cases: Vec<(&str, Edit, InteractivityError)> = vec![
            (
                "view_submission",
                |p| p["type"] = json!("view_submission"),
                InteractivityError::NotBlockActions("view_submission".into()),
            ),
            (
                "no type",
                |p| {
                    p.as_object_mut().map(|m| m.remove("type"));
                },
                InteractivityError::MissingField("type"),
            ),
            (
                "unknown action",
                |p| p["actions"][0]["action_id"] = json!("flightdeck_delete_all"),
                InteractivityError::UnknownAction("flightdeck_delete_all".into()),
            ),
            (
                "not a button",
                |p| p["actions"][0]["type"] = json!("static_select"),
                InteractivityError::NotAButton("static_select".into()),
            ),
            (
                "no user",
                |p| {
                    p.as_object_mut().map(|m| m.remove("user"));
                },
                InteractivityError::MissingField("user"),
            ),
            (
                "empty user id",
                |p| p["user"]["id"] = json!(""),
                InteractivityError::MissingField("user.id"),
            ),
            (
                "no team anywhere",
                |p| {
                    p["team"] = Value::Null;
                    p["user"].as_object_mut().map(|m| m.remove("team_id"));
                },
                InteractivityError::MissingField("team.id"),
            ),
            (
                "no channel anywhere",
                |p| {
                    p.as_object_mut().map(|m| m.remove("channel"));
                    p.as_object_mut().map(|m| m.remove("container"));
                },
                InteractivityError::MissingField("channel.id"),
            ),
            (
                "no message ts",
                |p| {
                    p["container"]
                        .as_object_mut()
                        .map(|m| m.remove("message_ts"));
                    p.as_object_mut().map(|m| m.remove("message"));
                },
                InteractivityError::MissingField("container.message_ts"),
            ),
            (
                "no response_url",
                |p| {
                    p.as_object_mut().map(|m| m.remove("response_url"));
                },
                InteractivityError::MissingField("response_url"),
            ),
            (
                "no actions",
                |p| {
                    p.as_object_mut().map(|m| m.remove("actions"));
                },
                InteractivityError::MissingField("actions"),
            ),
            (
                "zero actions",
                |p| p["actions"] = json!([]),
                InteractivityError::ActionCount(0),
            ),
            (
                "two actions",
                |p| {
                    let a = p["actions"][0].clone();
                    p["actions"] = json!([a.clone(), a]);
                },
                InteractivityError::ActionCount(2),
            ),
            (
                "no value",
                |p| {
                    p["actions"][0].as_object_mut().map(|m| m.remove("value"));
                },
                InteractivityError::MissingField("actions[0].value"),
            ),
            (
                "no action_ts",
                |p| {
                    p["actions"][0]
                        .as_object_mut()
                        .map(|m| m.remove("action_ts"));
                },
                InteractivityError::MissingField("actions[0].action_ts"),
            ),
            (
                "user id a number",
                |p| p["user"]["id"] = json!(42),
                InteractivityError::BadJson(String::new()),
            ),
        ];
        for (name, edit, expected) in cases {
            let mut payload = slack_payload(APPROVE_ACTION_ID);
            edit(&mut payload);
            let got = parse_approval_click(&form(&payload));
            match (&got, &expected) {
                (Err(InteractivityError::BadJson(_)), InteractivityError::BadJson(_)) => {}
                _ => assert_eq!(got, Err(expected), "{name}"),
            }
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(
            parse_approval_click(b""),
            Err(InteractivityError::MissingPayload)
        );
        assert_eq!(
            parse_approval_click(b"token=x&text=hi"),
            Err(InteractivityError::MissingPayload)
        );
        assert_eq!(
            parse_approval_click(b"payload={}&payload={}"),
            Err(InteractivityError::DuplicatePayload)
        );
        assert!(matches!(
            parse_approval_click(b"payload=not-json"),
            Err(InteractivityError::BadJson(_))
        ));
        assert!(matches!(
            parse_approval_click(b"{\"type\":\"block_actions\"}"),
            Err(InteractivityError::MissingPayload)
        ));
        assert_eq!(
            parse_approval_click(b"payload=%7B%7D"),
            Err(InteractivityError::MissingField("type"))
        );
    }

    #[test]
    fn oversize_bodies_are_refused_before_parsing() {
        let mut payload = slack_payload(APPROVE_ACTION_ID);
        payload["message"]["text"] = json!("x".repeat(MAX_BODY_BYTES));
        let body = form(&payload);
        assert_eq!(
            parse_approval_click(&body),
            Err(InteractivityError::Oversize { len: body.len() })
        );
        let exactly = vec![b'a'; MAX_BODY_BYTES];
        assert_eq!(
            parse_approval_click(&exactly),
            Err(InteractivityError::MissingPayload)
        );
    }

    #[test]
    fn echoed_sender_text_is_short_and_printable() {
        let mut payload = slack_payload(APPROVE_ACTION_ID);
        payload["actions"][0]["action_id"] = json!(format!("evil\n{}", "x".repeat(500)));
        let Err(InteractivityError::UnknownAction(id)) = parse_approval_click(&form(&payload))
        else {
            panic!("expected UnknownAction");
        };
        assert_eq!(id.chars().count(), 64);
        assert!(id.starts_with("evil?"));
    }
}
