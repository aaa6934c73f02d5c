//! GitHub webhooks: the signature and the events.
//!
//! [`verify_signature`] checks `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw
//! body keyed by the webhook secret, in constant time (`ring::hmac::verify`). Call it on the
//! bytes exactly as received, before anything parses them, and refuse bodies over
//! [`MAX_BODY_BYTES`] before reading further. The older `X-Hub-Signature` (`sha1=`) is not
//! accepted. Errors never show the secret or the expected signature.
//!
//! [`parse_event`] turns `X-GitHub-Event` and the (verified) JSON body into a
//! [`WebhookEvent`]: the events flightdeck takes, with the fields it uses, and
//! [`WebhookEvent::Other`] for every other event or action (never an error). A taken event
//! whose payload lacks what flightdeck needs is [`WebhookError::Malformed`]. The delivery id
//! (`X-GitHub-Delivery`, for deduplicating redeliveries) is the caller's to read.

use ring::hmac;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::types::{CheckRun, Comment, Installation, Issue, PullRequest, Repository, Review, User};

/// The largest payload GitHub sends (it caps them at 25 MB); anything larger is not from
/// GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// The header naming the event.
pub const EVENT_HEADER: &str = "X-GitHub-Event";
/// The header with the delivery's id (the same on a redelivery).
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no webhook secret is configured, so no delivery can be verified")]
    NoSecret,
    #[error("the X-Hub-Signature-256 header is missing or empty")]
    Missing,
    #[error("the X-Hub-Signature-256 header does not start with `sha256=`")]
    UnknownAlgorithm,
    #[error("the X-Hub-Signature-256 header is not 64 hexadecimal digits after `sha256=`")]
    Malformed,
    #[error("the delivery's signature does not match its body")]
    Mismatch,
}

/// Verifies a delivery: `header` is the value of `X-Hub-Signature-256` (empty if there was
/// none), `raw_body` the bytes exactly as received.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    raw_body: &[u8],
) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let digits = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::UnknownAlgorithm)?;
    let tag = decode_hex(digits).ok_or(SignatureError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, raw_body, &tag).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value GitHub would send (for tests and fakes).
pub fn sign(secret: &[u8], raw_body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, raw_body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

/// 64 hex digits (either case) → 32 bytes.
fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    let bytes = digits.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// Why a delivery could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the delivery is {bytes} bytes; GitHub sends at most {MAX_BODY_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the X-GitHub-Event header is missing or empty")]
    MissingEvent,
    #[error("the `{event}` delivery is not JSON: {message}")]
    NotJson { event: String, message: String },
    #[error("the `{event}` delivery lacks what flightdeck needs: {message}")]
    Malformed { event: String, message: String },
}

/// Where a repository event happened and who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The app installation the delivery is for (`None` for a repository webhook that is
    /// not the app's).
    pub installation_id: Option<u64>,
    pub repository: Repository,
    pub sender: User,
}

/// A delivery, as flightdeck takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// `ping`: sent when the webhook is created (`hook.app_id` for the app's webhook).
    Ping {
        hook_id: Option<u64>,
        app_id: Option<u64>,
        zen: Option<String>,
    },
    /// `issues.labeled`: `label` is the label just added; `issue.labels` all of them.
    IssueLabeled {
        context: Context,
        issue: Issue,
        label: String,
    },
    /// `issue_comment.created`, on an issue or a pull request (`issue.is_pull_request`).
    IssueCommentCreated {
        context: Context,
        issue: Issue,
        comment: Comment,
    },
    /// `pull_request.synchronize`: new commits on the head (`before` → `after`).
    PullRequestSynchronize {
        context: Context,
        pull_request: PullRequest,
        before: Option<String>,
        after: Option<String>,
    },
    /// `pull_request.closed`, merged or not (`pull_request.merged`).
    PullRequestClosed {
        context: Context,
        pull_request: PullRequest,
    },
    /// `pull_request_review.submitted`.
    PullRequestReviewSubmitted {
        context: Context,
        pull_request: PullRequest,
        review: Review,
    },
    /// `pull_request_review.dismissed` (the review's state reads `dismissed`).
    PullRequestReviewDismissed {
        context: Context,
        pull_request: PullRequest,
        review: Review,
    },
    /// `check_run.requested_action`: someone pressed one of the check run's buttons.
    CheckRunRequestedAction {
        context: Context,
        check_run: CheckRun,
        /// The `identifier` of the button.
        identifier: String,
    },
    /// `check_run.rerequested`: "Re-run" was pressed.
    CheckRunRerequested {
        context: Context,
        check_run: CheckRun,
    },
    /// `installation.*` (`created`, `deleted`, `suspend`, `unsuspend`,
    /// `new_permissions_accepted`); `repositories` are those it was given (for `created`).
    Installation {
        action: String,
        installation: Installation,
        repositories: Vec<Repository>,
        sender: User,
    },
    /// `installation_repositories.*` (`added`, `removed`).
    InstallationRepositories {
        action: String,
        installation: Installation,
        added: Vec<Repository>,
        removed: Vec<Repository>,
        sender: User,
    },
    /// `installation_target.*` (`renamed`): the account the app is installed on changed its
    /// login.
    InstallationTarget {
        action: String,
        installation_id: u64,
        account: Option<User>,
        previous_login: Option<String>,
    },
    /// Any other event or action: not an error, nothing to do.
    Other {
        event: String,
        action: Option<String>,
    },
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

#[derive(Deserialize)]
struct Envelope {
    installation: Option<IdOnly>,
    repository: Repository,
    sender: User,
}

impl From<Envelope> for Context {
    fn from(envelope: Envelope) -> Context {
        Context {
            installation_id: envelope.installation.map(|i| i.id),
            repository: envelope.repository,
            sender: envelope.sender,
        }
    }
}

#[derive(Deserialize)]
struct LabelName {
    name: String,
}

#[derive(Deserialize)]
struct IssuesLabeled {
    #[serde(flatten)]
    envelope: Envelope,
    issue: Issue,
    label: LabelName,
}

#[derive(Deserialize)]
struct IssueCommentCreated {
    #[serde(flatten)]
    envelope: Envelope,
    issue: Issue,
    comment: Comment,
}

#[derive(Deserialize)]
struct PullRequestEvent {
    #[serde(flatten)]
    envelope: Envelope,
    pull_request: PullRequest,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Deserialize)]
struct PullRequestReviewEvent {
    #[serde(flatten)]
    envelope: Envelope,
    pull_request: PullRequest,
    review: Review,
}

#[derive(Deserialize)]
struct RequestedAction {
    identifier: String,
}

#[derive(Deserialize)]
struct CheckRunEvent {
    #[serde(flatten)]
    envelope: Envelope,
    check_run: CheckRun,
    requested_action: Option<RequestedAction>,
}

#[derive(Deserialize)]
struct InstallationEvent {
    installation: Installation,
    #[serde(default)]
    repositories: Vec<Repository>,
    sender: User,
}

#[derive(Deserialize)]
struct InstallationRepositoriesEvent {
    installation: Installation,
    #[serde(default)]
    repositories_added: Vec<Repository>,
    #[serde(default)]
    repositories_removed: Vec<Repository>,
    sender: User,
}

#[derive(Deserialize)]
struct InstallationTargetEvent {
    installation: IdOnly,
    account: Option<Value>,
    changes: Option<TargetChanges>,
}

#[derive(Deserialize)]
struct TargetChanges {
    login: Option<ChangedFrom>,
}

#[derive(Deserialize)]
struct ChangedFrom {
    from: String,
}

#[derive(Deserialize)]
struct PingEvent {
    zen: Option<String>,
    hook_id: Option<u64>,
    hook: Option<PingHook>,
}

#[derive(Deserialize)]
struct PingHook {
    app_id: Option<u64>,
}

/// The events flightdeck takes, by `X-GitHub-Event`.
const TAKEN: &[&str] = &[
    "ping",
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "check_run",
    "installation",
    "installation_repositories",
    "installation_target",
];

/// Reads a delivery: `event_header` is `X-GitHub-Event`, `raw_body` the JSON body (already
/// verified with [`verify_signature`]).
pub fn parse_event(event_header: &str, raw_body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    if raw_body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge {
            bytes: raw_body.len(),
        });
    }
    let event: String = event_header.trim().chars().take(100).collect();
    if event.is_empty() {
        return Err(WebhookError::MissingEvent);
    }
    let payload: Value = match serde_json::from_slice(raw_body) {
        Ok(payload) => payload,
        Err(e) if TAKEN.contains(&event.as_str()) => {
            return Err(WebhookError::NotJson {
                event,
                message: e.to_string(),
            })
        }
        Err(_) => {
            return Ok(WebhookEvent::Other {
                event,
                action: None,
            })
        }
    };
    let action = payload
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_string);
    let read = Reader {
        event: &event,
        action: action.as_deref(),
        payload: &payload,
    };
    let parsed = match (event.as_str(), action.as_deref()) {
        ("ping", _) => {
            let ping: PingEvent = read.as_()?;
            WebhookEvent::Ping {
                hook_id: ping.hook_id,
                app_id: ping.hook.and_then(|h| h.app_id),
                zen: ping.zen,
            }
        }
        ("issues", Some("labeled")) => {
            let e: IssuesLabeled = read.as_()?;
            WebhookEvent::IssueLabeled {
                context: e.envelope.into(),
                issue: e.issue,
                label: e.label.name,
            }
        }
        ("issue_comment", Some("created")) => {
            let e: IssueCommentCreated = read.as_()?;
            WebhookEvent::IssueCommentCreated {
                context: e.envelope.into(),
                issue: e.issue,
                comment: e.comment,
            }
        }
        ("pull_request", Some("synchronize")) => {
            let e: PullRequestEvent = read.as_()?;
            WebhookEvent::PullRequestSynchronize {
                context: e.envelope.into(),
                pull_request: e.pull_request,
                before: e.before,
                after: e.after,
            }
        }
        ("pull_request", Some("closed")) => {
            let e: PullRequestEvent = read.as_()?;
            WebhookEvent::PullRequestClosed {
                context: e.envelope.into(),
                pull_request: e.pull_request,
            }
        }
        ("pull_request_review", Some(action @ ("submitted" | "dismissed"))) => {
            let e: PullRequestReviewEvent = read.as_()?;
            let context = e.envelope.into();
            if action == "submitted" {
                WebhookEvent::PullRequestReviewSubmitted {
                    context,
                    pull_request: e.pull_request,
                    review: e.review,
                }
            } else {
                WebhookEvent::PullRequestReviewDismissed {
                    context,
                    pull_request: e.pull_request,
                    review: e.review,
                }
            }
        }
        ("check_run", Some("requested_action")) => {
            let e: CheckRunEvent = read.as_()?;
            let identifier = e
                .requested_action
                .map(|a| a.identifier)
                .ok_or_else(|| read.malformed("no `requested_action.identifier`".to_string()))?;
            WebhookEvent::CheckRunRequestedAction {
                context: e.envelope.into(),
                check_run: e.check_run,
                identifier,
            }
        }
        ("check_run", Some("rerequested")) => {
            let e: CheckRunEvent = read.as_()?;
            WebhookEvent::CheckRunRerequested {
                context: e.envelope.into(),
                check_run: e.check_run,
            }
        }
        ("installation", Some(action)) => {
            let e: InstallationEvent = read.as_()?;
            WebhookEvent::Installation {
                action: action.to_string(),
                installation: e.installation,
                repositories: e.repositories,
                sender: e.sender,
            }
        }
        ("installation_repositories", Some(action)) => {
            let e: InstallationRepositoriesEvent = read.as_()?;
            WebhookEvent::InstallationRepositories {
                action: action.to_string(),
                installation: e.installation,
                added: e.repositories_added,
                removed: e.repositories_removed,
                sender: e.sender,
            }
        }
        ("installation_target", Some(action)) => {
            let e: InstallationTargetEvent = read.as_()?;
            WebhookEvent::InstallationTarget {
                action: action.to_string(),
                installation_id: e.installation.id,
                account: e.account.and_then(|a| serde_json::from_value(a).ok()),
                previous_login: e.changes.and_then(|c| c.login).map(|l| l.from),
            }
        }
        _ => WebhookEvent::Other {
            event: event.clone(),
            action,
        },
    };
    Ok(parsed)
}

struct Reader<'a> {
    event: &'a str,
    action: Option<&'a str>,
    payload: &'a Value,
}

impl Reader<'_> {
    fn as_<T: DeserializeOwned>(&self) -> Result<T, WebhookError> {
        T::deserialize(self.payload).map_err(|e| self.malformed(e.to_string()))
    }

    fn malformed(&self, message: String) -> WebhookError {
        let event = match self.action {
            Some(action) => format!("{}.{action}", self.event),
            None => self.event.to_string(),
        };
        WebhookError::Malformed { event, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_documented_vector_verifies() {
        assert_eq!(verify_signature(SECRET, SIGNATURE, BODY), Ok(()));
        assert_eq!(sign(SECRET, BODY), SIGNATURE);
        let upper = format!("sha256={}", SIGNATURE[7..].to_ascii_uppercase());
        assert_eq!(verify_signature(SECRET, &upper, BODY), Ok(()));
    }

    #[test]
    fn bad_signatures_are_refused_with_the_reason() {
        let sha1 = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        let short = &SIGNATURE[..SIGNATURE.len() - 2];
        let non_hex = format!("sha256={}", "z".repeat(64));
        let zeros = format!("sha256={}", "0".repeat(64));
        /// name, secret, header, body, the refusal
        type Case<'a> = (&'a str, &'a [u8], &'a str, &'a [u8], SignatureError);
        let cases: Vec<Case> = vec![
            ("no secret", b"", SIGNATURE, BODY, SignatureError::NoSecret),
            ("missing", SECRET, "", BODY, SignatureError::Missing),
            ("blank", SECRET, "  ", BODY, SignatureError::Missing),
            ("sha1", SECRET, sha1, BODY, SignatureError::UnknownAlgorithm),
            (
                "bare hex",
                SECRET,
                &SIGNATURE[7..],
                BODY,
                SignatureError::UnknownAlgorithm,
            ),
            ("short", SECRET, short, BODY, SignatureError::Malformed),
            ("non-hex", SECRET, &non_hex, BODY, SignatureError::Malformed),
            ("zeros", SECRET, &zeros, BODY, SignatureError::Mismatch),
            (
                "other body",
                SECRET,
                SIGNATURE,
                b"Hello, World?",
                SignatureError::Mismatch,
            ),
            (
                "body with newline",
                SECRET,
                SIGNATURE,
                b"Hello, World!\n",
                SignatureError::Mismatch,
            ),
            (
                "other secret",
                b"It's a Secret to Everybody!",
                SIGNATURE,
                BODY,
                SignatureError::Mismatch,
            ),
        ];
        for (name, secret, header, body, expected) in cases {
            assert_eq!(
                verify_signature(secret, header, body),
                Err(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_secret_or_the_expected_signature() {
        let err = verify_signature(b"s3cr3t-value", &format!("sha256={}", "0".repeat(64)), BODY)
            .err()
            .map(|e| format!("{e} {e:?}"))
            .unwrap_or_default();
        assert!(err.contains("does not match"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(!err.contains(&sign(b"s3cr3t-value", BODY)[7..]), "{err}");
    }
}
