//! A fake GitHub over real HTTP on 127.0.0.1, held to GitHub's own descriptions: the REST
//! description (npm `@octokit/openapi` [`REST_SPEC_VERSION`], `generated/api.github.com.json`,
//! OpenAPI 3.0.3) for every request a client sends and every answer the fake gives, and the
//! webhook description (npm `@octokit/openapi-webhooks` [`WEBHOOKS_SPEC_VERSION`],
//! `generated/api.github.com.json`, OpenAPI 3.1: `webhooks.<event>-<action>.post.requestBody`)
//! for every delivery it sends. Both come from `$FLIGHTDECK_GITHUB_SPECS`, which
//! `scripts/github-specs` (run by `scripts/test`) installs and prints; they are parsed once
//! per process ([`GitHubSpecs::get`]). Without them the fake panics: a test never skips.
//!
//! - **Requests** (every REST call): the operation is found in the description by method and
//!   path template (the most literal template wins; `{path}` of the contents API may span
//!   segments). Path parameters must parse as their schema (else 404), query parameters must
//!   be declared by the operation and fit their schema (type, enum, `date-time`; else 422),
//!   the JSON body must fit the operation's request schema and name no property the schema
//!   does not declare (GitHub would silently ignore a misspelt one; else 422, or 400 when the
//!   body is not JSON), plus the rules the description states in prose: `title` unless
//!   `issue` (`pulls/create`), `conclusion` with `status: completed` (`checks/create`).
//!   Every request must carry `User-Agent` (else 403, as GitHub answers),
//!   `Accept: application/vnd.github+json` (or another GitHub JSON media type) and
//!   `X-GitHub-Api-Version: 2022-11-28` (another version is answered 400). Each breach is a
//!   violation ([`FakeGitHub::violations`]). A path the description lacks, or one the fake
//!   does not serve, is a violation answered 404.
//! - **Answers**: each is validated, before it is sent, against the operation's response
//!   schema for its status (`application/json`); an error status the operation does not
//!   declare (401, a 403 rate limit, a scripted 5xx) against `basic-error`. A mismatch is a
//!   violation answered 500, so the fake cannot drift from GitHub.
//! - **Auth** (GitHub App): `POST /app/installations/{id}/access_tokens` and
//!   `GET /app/installations` want `Authorization: Bearer <JWT>`, RS256 signed with the app's
//!   key, `iss` the app id, `iat` not after now + 60 s, `exp` after now and at most 600 s after
//!   `iat`; anything else is a 401 (a legitimate answer, not a violation). Installation tokens
//!   are random `ghs_…` of varying length (the 1st, 3rd, … have 36 characters after `ghs_`, the
//!   2nd, 4th, … 37 to 292, so a client cannot assume a length), expire an hour after issue on
//!   the fake clock
//!   ([`FakeGitHub::set_now`], [`FakeGitHub::advance`]), may be narrowed to repositories and
//!   permissions (a wider request is 422), and are wanted as `Authorization: Bearer|token` on
//!   every repository call (missing, unknown or expired: 401; a repository of another
//!   installation: 404; a permission the token lacks: 403 "Resource not accessible by
//!   integration").
//! - **State**: installations, repositories, branches, files per ref, issues and pull requests
//!   (one number space, and `GET …/issues` lists pull requests too, as GitHub does), comments,
//!   who labelled an issue (its `labeled` events, `GET …/issues/{n}/events`), reviews and
//!   their inline comments, check runs, collaborators' permissions. A pull
//!   request's head branch the test did not declare ([`FakeGitHub::set_branch`]) gets a sha
//!   derived from its name, unless the repository is hosted (below).
//! - **Git** ([`FakeGitHub::host_git`]): a repository can be backed by a bare git repository,
//!   served over smart HTTP at `{url}/git/{owner}/{name}.git` (its `clone_url` in every answer
//!   and payload) by the real `git http-backend`, one run per request, off the async threads
//!   ([`crate::git_http`]). Authentication is GitHub's: HTTP Basic with an installation token
//!   the fake issued as the password (`x-access-token:<token>`), live, of the repository's
//!   installation (and among the repositories it was narrowed to); no credentials is 401 with
//!   `WWW-Authenticate: Basic realm="GitHub"`, a bad or expired token 401, another
//!   installation's repository 404, and a token without `contents: read` (fetch) or
//!   `contents: write` (push) 403. Reads are authenticated too (the repositories are
//!   private). Pushes are recorded ([`FakeGitHub::pushes`]). A hosted repository's branches
//!   *are* the bare repository's (`refs/heads/*`, read again whenever the fake is asked): the
//!   head and base shas of its open pull requests, [`FakeGitHub::branch_sha`], a new pull
//!   request's head and base (a head the bare repository lacks is 422, as is one with no
//!   commits over the base), check runs (a `head_sha` that is no commit there is 422) and
//!   `GET …/git/commits/{sha}` (from `git cat-file`) all follow it.
//! - **Scripting**: the next call under a path prefix answers a secondary rate limit (403,
//!   `retry-after`), an exhausted primary limit (403, `x-ratelimit-remaining: 0`,
//!   `x-ratelimit-reset`) or an error status; a retry under that prefix before the wait is
//!   over is a violation (the wait counts real time and the fake clock moved on since, so a
//!   client whose injected sleeper advances the fake clock has waited).
//! - **GraphQL**: `POST /graphql` serves only the `markPullRequestReadyForReview` mutation. It
//!   is not in the REST description; its shape is checked by hand against GitHub's GraphQL
//!   reference: a JSON body of `query` (+ `variables`, `operationName`), a `mutation`
//!   naming `markPullRequestReadyForReview(input: {pullRequestId: …})`, and a `pullRequest`
//!   selection of fields the fake knows (`id number isDraft state title url headRefOid
//!   __typename`); anything else is a violation answered with a GraphQL `errors` array. It
//!   wants `User-Agent` and an installation token with `pull_requests: write`, not the REST
//!   `Accept` and `X-GitHub-Api-Version` headers; its answer is shaped by hand (no schema).
//! - **Webhooks**: [`FakeGitHub::deliver`] POSTs a payload as GitHub's hookshot does (headers,
//!   `X-Hub-Signature-256` and the legacy `X-Hub-Signature`), after validating it against the
//!   webhook description for its event and action (a mismatch panics: the fake must not
//!   send what GitHub would not); [`FakeGitHub::redeliver`] resends the same id and body.
//!   Headers: `X-GitHub-Event`, `X-GitHub-Delivery` (a v4 UUID), `X-GitHub-Hook-ID`
//!   ([`HOOK_ID`]), `X-GitHub-Hook-Installation-Target-Type: integration` and `-ID` (the app
//!   id), `User-Agent: GitHub-Hookshot/…`, `Content-Type: application/json`; no signature
//!   headers when the secret is empty.
//!   The payload builders ([`FakeGitHub::issues_labeled`], …) make them from the fake's state.
//!
//! The REST description is read as it is but for one slip of its generator (see
//! `normalize_installation_account`).
//!
//! Not checked: response headers against the description, `format`s other than `date-time`
//! of query parameters, GraphQL beyond the one mutation, pagination beyond `per_page`/`page`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::git_http;
use crate::openapi::OpenApi;

/// The environment variable naming the directory `scripts/github-specs` installs into.
pub const SPECS_ENV: &str = "FLIGHTDECK_GITHUB_SPECS";
/// The `@octokit/openapi` version the fake is held to.
pub const REST_SPEC_VERSION: &str = "23.0.2";
/// The `@octokit/openapi-webhooks` version the fake is held to.
pub const WEBHOOKS_SPEC_VERSION: &str = "12.1.0";
/// The REST description, under the specs directory.
pub const REST_SPEC_FILE: &str = "node_modules/@octokit/openapi/generated/api.github.com.json";
/// The webhook description, under the specs directory.
pub const WEBHOOKS_SPEC_FILE: &str =
    "node_modules/@octokit/openapi-webhooks/generated/api.github.com.json";
/// The REST API version the description describes (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";
/// The fake app's slug; its bot user is `flightdeck-fake[bot]`.
pub const APP_SLUG: &str = "flightdeck-fake";
/// The app's name.
pub const APP_NAME: &str = "Flightdeck (fake)";
/// The id of the app's webhook (`X-GitHub-Hook-ID`).
pub const HOOK_ID: u64 = 460_000_001;
/// The hookshot's user agent.
pub const HOOKSHOT_USER_AGENT: &str = "GitHub-Hookshot/8f1c2e4";
/// Where the `html_url`s point.
pub const WEB_URL: &str = "https://github.com";

/// The REST operations the fake serves: `(method, path template)` as in the description.
pub const SERVED: &[(&str, &str)] = &[
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/app/installations"),
    ("GET", "/installation/repositories"),
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
    ("GET", "/repos/{owner}/{repo}/issues"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
    (
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments",
    ),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/events"),
    ("GET", "/repos/{owner}/{repo}/issues/comments"),
];

/// The webhook events the payload builders make, as `event.action`.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "issues.labeled",
    "issue_comment.created",
    "pull_request.synchronize",
    "pull_request.closed",
    "pull_request_review.submitted",
    "pull_request_review.dismissed",
    "check_run.requested_action",
    "check_run.rerequested",
    "installation.created",
    "ping",
];

// ---------------------------------------------------------------------------------------------
// The descriptions

/// GitHub's REST and webhook descriptions, loaded once per process.
pub struct GitHubSpecs {
    rest: OpenApi,
    webhooks: OpenApi,
    templates: Vec<Template>,
    load_time: Duration,
}

struct Template {
    template: String,
    segments: Vec<Segment>,
}

enum Segment {
    Literal(String),
    Param(String),
}

/// An operation of the REST description that a request matched.
#[derive(Debug, Clone)]
pub struct Operation<'a> {
    /// `GET`, `POST`, …
    pub method: String,
    pub template: &'a str,
    pub operation: &'a Value,
    /// The path parameters, percent-decoded.
    pub params: BTreeMap<String, String>,
}

impl Operation<'_> {
    /// `GET /repos/{owner}/{repo}/issues`
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// `operationId` (`issues/list-for-repo`).
    pub fn id(&self) -> &str {
        self.operation
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }
}

/// What is wrong with a request, by where (each decides the status GitHub answers).
#[derive(Debug, Default)]
pub struct RequestProblems {
    /// A path parameter that does not parse (404).
    pub path: Vec<String>,
    /// A body that is not JSON (400).
    pub parse: Vec<String>,
    /// Query parameters and the body against their schemas (422).
    pub invalid: Vec<String>,
    /// The body, when it parsed.
    pub body: Option<Value>,
}

impl RequestProblems {
    pub fn all(&self) -> Vec<String> {
        self.path
            .iter()
            .chain(&self.parse)
            .chain(&self.invalid)
            .cloned()
            .collect()
    }
}

impl GitHubSpecs {
    /// `$FLIGHTDECK_GITHUB_SPECS`; panics, saying how to get it, when unset or incomplete.
    pub fn dir() -> PathBuf {
        let hint = "run `scripts/github-specs` (scripts/test does) and export the \
                    FLIGHTDECK_GITHUB_SPECS=… line it prints";
        let Some(dir) = std::env::var_os(SPECS_ENV).filter(|d| !d.is_empty()) else {
            panic!(
                "{SPECS_ENV} is not set: the fake GitHub needs GitHub's API descriptions; {hint}"
            );
        };
        let dir = PathBuf::from(dir);
        for file in [REST_SPEC_FILE, WEBHOOKS_SPEC_FILE] {
            assert!(
                dir.join(file).is_file(),
                "{SPECS_ENV}={} has no {file}; {hint}",
                dir.display()
            );
        }
        dir
    }

    /// Both descriptions from [`GitHubSpecs::dir`], parsed once per process.
    pub fn get() -> &'static GitHubSpecs {
        static SPECS: OnceLock<GitHubSpecs> = OnceLock::new();
        SPECS.get_or_init(|| GitHubSpecs::load(&GitHubSpecs::dir()))
    }

    /// Loads both descriptions from `dir`, checking their versions.
    pub fn load(dir: &std::path::Path) -> GitHubSpecs {
        let started = Instant::now();
        let read = |file: &str, version: &str| -> Value {
            let path = dir.join(file);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let root: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let found = root.pointer("/info/version").and_then(Value::as_str);
            assert_eq!(
                found,
                Some(version),
                "{} is version {found:?}, the fake is held to {version}: run `scripts/github-specs`",
                path.display()
            );
            root
        };
        let (mut rest, webhooks) = std::thread::scope(|scope| {
            let webhooks = scope.spawn(|| read(WEBHOOKS_SPEC_FILE, WEBHOOKS_SPEC_VERSION));
            let rest = read(REST_SPEC_FILE, REST_SPEC_VERSION);
            (
                rest,
                webhooks.join().expect("parse the webhook description"),
            )
        });
        normalize_installation_account(&mut rest);
        let templates = rest
            .get("paths")
            .and_then(Value::as_object)
            .map(|paths| {
                paths
                    .keys()
                    .map(|template| Template {
                        template: template.clone(),
                        segments: template
                            .trim_start_matches('/')
                            .split('/')
                            .map(
                                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                                    Some(name) => Segment::Param(name.to_string()),
                                    None => Segment::Literal(s.to_string()),
                                },
                            )
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        GitHubSpecs {
            rest: OpenApi::from_value(rest),
            webhooks: OpenApi::from_value(webhooks),
            templates,
            load_time: started.elapsed(),
        }
    }

    /// The REST description.
    pub fn rest(&self) -> &OpenApi {
        &self.rest
    }

    /// The webhook description.
    pub fn webhooks(&self) -> &OpenApi {
        &self.webhooks
    }

    /// How long reading and parsing both took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The operation `method path` names (path without the query), if any.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let verb = method.to_ascii_lowercase();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let paths = self.rest.root().get("paths")?;
        let mut best: Option<(Vec<bool>, Operation<'_>)> = None;
        for template in &self.templates {
            let Some(operation) = paths.get(&template.template).and_then(|p| p.get(&verb)) else {
                continue;
            };
            let Some((mask, params)) = match_template(&template.segments, &segments) else {
                continue;
            };
            if best.as_ref().is_none_or(|(best_mask, _)| mask > *best_mask) {
                best = Some((
                    mask,
                    Operation {
                        method: method.to_ascii_uppercase(),
                        template: &template.template,
                        operation,
                        params,
                    },
                ));
            }
        }
        best.map(|(_, op)| op)
    }

    /// Whether any method of the description has a template matching `path`.
    pub fn has_path(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.templates
            .iter()
            .any(|t| match_template(&t.segments, &segments).is_some())
    }

    fn resolve<'a>(&'a self, api: &'a OpenApi, mut value: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                break;
            };
            match reference
                .strip_prefix('#')
                .and_then(|p| api.root().pointer(p))
            {
                Some(target) => value = target,
                None => break,
            }
        }
        value
    }

    /// The operation's parameters (path-level ones included), resolved.
    pub fn parameters<'a>(&'a self, op: &Operation<'a>) -> Vec<&'a Value> {
        let path_level = self
            .rest
            .root()
            .pointer(&format!(
                "/paths/{}/parameters",
                op.template.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_array);
        path_level
            .into_iter()
            .flatten()
            .chain(
                op.operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            )
            .map(|p| self.resolve(&self.rest, p))
            .collect()
    }

    /// The JSON request body schema, if the operation takes a body.
    pub fn request_schema<'a>(&'a self, op: &Operation<'a>) -> Option<(&'a Value, bool)> {
        let body = self.resolve(&self.rest, op.operation.get("requestBody")?);
        let required = body.get("required") == Some(&Value::Bool(true));
        let schema = body
            .get("content")?
            .get("application/json")?
            .get("schema")?;
        Some((schema, required))
    }

    /// Checks the path parameters, the query string and the body of a request.
    pub fn check_request(
        &self,
        op: &Operation<'_>,
        query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> RequestProblems {
        let mut problems = RequestProblems::default();
        let key = op.key();
        let parameters = self.parameters(op);
        let query_pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for parameter in &parameters {
            let name = parameter.get("name").and_then(Value::as_str).unwrap_or("?");
            let place = parameter.get("in").and_then(Value::as_str).unwrap_or("?");
            let schema = parameter.get("schema").unwrap_or(&Value::Bool(true));
            let required = parameter.get("required") == Some(&Value::Bool(true));
            let given: Vec<&String> = match place {
                "path" => op.params.get(name).into_iter().collect(),
                "query" => query_pairs
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .collect(),
                _ => continue,
            };
            let sink = if place == "path" {
                &mut problems.path
            } else {
                &mut problems.invalid
            };
            if given.is_empty() && required {
                sink.push(format!(
                    "{key}: missing required {place} parameter `{name}`"
                ));
            }
            if given.len() > 1 {
                sink.push(format!(
                    "{key}: {place} parameter `{name}` given {} times",
                    given.len()
                ));
            }
            for text in given {
                let schema = self.resolve(&self.rest, schema);
                if let Some(problem) = self.check_parameter_text(schema, text) {
                    sink.push(format!(
                        "{key}: {place} parameter `{name}`={text:?}: {problem}"
                    ));
                }
            }
        }
        for (name, _) in &query_pairs {
            let declared = parameters.iter().any(|p| {
                p.get("in").and_then(Value::as_str) == Some("query")
                    && p.get("name").and_then(Value::as_str) == Some(name.as_str())
            });
            if !declared {
                problems.invalid.push(format!(
                    "{key}: `{name}` is not a query parameter of the operation"
                ));
            }
        }
        let schema = self.request_schema(op);
        if body.iter().all(u8::is_ascii_whitespace) {
            if let Some((_, true)) = schema {
                problems.invalid.push(format!(
                    "{key}: the operation requires a JSON body; none was sent"
                ));
            }
            return problems;
        }
        let Some((schema, _)) = schema else {
            problems.invalid.push(format!(
                "{key}: the operation takes no body; {} bytes were sent",
                body.len()
            ));
            return problems;
        };
        if let Some(content_type) = content_type {
            let media = content_type.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/json") {
                problems.invalid.push(format!(
                    "{key}: the body is sent as {content_type:?}, not application/json"
                ));
            }
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(e) => {
                problems
                    .parse
                    .push(format!("{key}: the body is not JSON: {e}"));
                return problems;
            }
        };
        if let Err(errors) = self.rest.validate_schema(schema, &value) {
            problems
                .invalid
                .extend(errors.into_iter().map(|e| format!("{key} body: {e}")));
        }
        let known = self.property_names(&self.rest, schema);
        if let Some(object) = value.as_object() {
            for name in object.keys() {
                if !known.contains(name) {
                    problems.invalid.push(format!(
                        "{key} body: `{name}` is not a property of the request (GitHub ignores it)"
                    ));
                }
            }
        }
        problems.body = Some(value);
        problems
    }

    fn check_parameter_text(&self, schema: &Value, text: &str) -> Option<String> {
        let kind = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        let value = match kind {
            "integer" => match text.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => return Some("not an integer".to_string()),
            },
            "number" => match text.parse::<f64>() {
                Ok(n) => json!(n),
                Err(_) => return Some("not a number".to_string()),
            },
            "boolean" => match text {
                "true" => json!(true),
                "false" => json!(false),
                _ => return Some("not true or false".to_string()),
            },
            "array" => json!(text.split(',').collect::<Vec<_>>()),
            _ => json!(text),
        };
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && parse_timestamp(text).is_none()
        {
            return Some("not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SSZ)".to_string());
        }
        self.rest
            .validate_schema(schema, &value)
            .err()
            .map(|errors| errors.join("; "))
    }

    /// The property names a schema declares, through `$ref`, `allOf`, `anyOf` and `oneOf`.
    fn property_names(&self, api: &OpenApi, schema: &Value) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let schema = self.resolve(api, schema);
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            names.extend(properties.keys().cloned());
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for branch in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                names.extend(self.property_names(api, branch));
            }
        }
        names
    }

    /// The schema of the operation's `status` answer (`application/json`): `None` when the
    /// answer has no body; an undeclared error status falls back to `basic-error`.
    pub fn response_schema<'a>(
        &'a self,
        op: &Operation<'a>,
        status: u16,
    ) -> Result<Option<&'a Value>, String> {
        let declared = op
            .operation
            .get("responses")
            .and_then(|r| r.get(status.to_string()));
        match declared {
            Some(response) => {
                let response = self.resolve(&self.rest, response);
                Ok(response
                    .get("content")
                    .and_then(|c| c.get("application/json"))
                    .and_then(|c| c.get("schema")))
            }
            None if status >= 400 => Ok(self.rest.schema("basic-error")),
            None => Err(format!(
                "{}: the description declares no {status} answer",
                op.key()
            )),
        }
    }

    /// Validates an answer of the operation; returns the problems.
    pub fn check_response(
        &self,
        op: &Operation<'_>,
        status: u16,
        body: Option<&Value>,
    ) -> Vec<String> {
        let schema = match self.response_schema(op, status) {
            Ok(schema) => schema,
            Err(problem) => return vec![problem],
        };
        match (schema, body) {
            (Some(schema), Some(body)) => match self.rest.validate_schema(schema, body) {
                Ok(()) => Vec::new(),
                Err(errors) => errors
                    .into_iter()
                    .map(|e| format!("{} {status} answer: {e}", op.key()))
                    .collect(),
            },
            (Some(_), None) => vec![format!("{} {status} answer: a body is expected", op.key())],
            (None, Some(_)) => vec![format!(
                "{} {status} answer: the description declares no body",
                op.key()
            )],
            (None, None) => Vec::new(),
        }
    }

    /// `webhooks.<event>-<action>` (or `webhooks.<event>`): its key and payload schema.
    pub fn webhook_schema(&self, event: &str, action: Option<&str>) -> Option<(String, &Value)> {
        let webhooks = self.webhooks.root().get("webhooks")?;
        let mut keys = Vec::new();
        if let Some(action) = action {
            keys.push(format!("{event}-{action}").replace('_', "-"));
        }
        keys.push(event.replace('_', "-"));
        keys.into_iter().find_map(|key| {
            let schema = webhooks
                .get(&key)?
                .pointer("/post/requestBody/content/application~1json/schema")?;
            Some((key, schema))
        })
    }

    /// Validates a webhook payload for `event` (its action read from the payload).
    pub fn check_webhook(&self, event: &str, payload: &Value) -> Result<String, Vec<String>> {
        let action = payload.get("action").and_then(Value::as_str);
        let Some((key, schema)) = self.webhook_schema(event, action) else {
            return Err(vec![format!(
                "the webhook description has no event {event} (action {action:?})"
            )]);
        };
        match self.webhooks.validate_schema(schema, payload) {
            Ok(()) => Ok(key),
            Err(errors) => Err(errors.into_iter().map(|e| format!("{key}: {e}")).collect()),
        }
    }
}

/// The one normalization of the REST description: `GET /app/installations` declares the
/// installation's `account` as `allOf: [Simple User, Enterprise]`, which no account can be (a
/// user has no `slug`, an enterprise no `login`); the `installation` schema of the same
/// description says `anyOf: [simple-user, enterprise]`, so it is read as that `anyOf`.
fn normalize_installation_account(rest: &mut Value) {
    let pointer = "/paths/~1app~1installations/get/responses/200/content/application~1json/schema/items/properties/account";
    let Some(Value::Object(account)) = rest.pointer_mut(pointer) else {
        return;
    };
    let titles: Vec<&str> = account
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("title").and_then(Value::as_str))
        .collect();
    if titles == ["Simple User", "Enterprise"] {
        if let Some(branches) = account.remove("allOf") {
            account.insert("anyOf".to_string(), branches);
        }
    }
}

/// Matches path segments to a template: the literal mask (for "most literal wins") and the
/// path parameters. A trailing `{path}` takes the rest of the path.
fn match_template(
    template: &[Segment],
    segments: &[&str],
) -> Option<(Vec<bool>, BTreeMap<String, String>)> {
    let mut mask = Vec::new();
    let mut params = BTreeMap::new();
    for (i, part) in template.iter().enumerate() {
        let last = i + 1 == template.len();
        match part {
            Segment::Literal(literal) => {
                if segments.get(i) != Some(&literal.as_str()) {
                    return None;
                }
                mask.push(true);
            }
            Segment::Param(name) if last && name == "path" => {
                let rest = segments.get(i..)?;
                if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
                    return None;
                }
                let decoded: Vec<String> = rest.iter().map(|s| percent_decode(s)).collect();
                params.insert(name.clone(), decoded.join("/"));
                mask.push(false);
                return Some((mask, params));
            }
            Segment::Param(name) => {
                let segment = segments.get(i).filter(|s| !s.is_empty())?;
                params.insert(name.clone(), percent_decode(segment));
                mask.push(false);
            }
        }
    }
    (segments.len() == template.len()).then_some((mask, params))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let byte = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = byte {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Time

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn timestamp(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Unix time of an ISO 8601 timestamp (`Z` or `±HH:MM`, fractions ignored).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$",
        )
        .unwrap()
    });
    let c = re.captures(text)?;
    let n = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<i64>().ok());
    let (y, mo, d, h, mi, s) = (n(1)?, n(2)?, n(3)?, n(4)?, n(5)?, n(6)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let zone = c.get(7)?.as_str();
    let offset = if zone == "Z" {
        0
    } else {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let hours: i64 = zone[1..3].parse().ok()?;
        let minutes: i64 = zone[4..6].parse().ok()?;
        sign * (hours * 3600 + minutes * 60)
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Signatures and keys

/// `sha256=` + hex HMAC-SHA256 of the body with the webhook secret: `X-Hub-Signature-256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// `sha1=` + hex HMAC-SHA1: the legacy `X-Hub-Signature` GitHub still sends.
pub fn sign_sha1(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    format!(
        "sha1={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// The PKCS#1 `RSAPublicKey` DER of a key given as PEM (`RSA PUBLIC KEY`, `PUBLIC KEY`,
/// `RSA PRIVATE KEY`, `PRIVATE KEY`) or DER (PKCS#1 public key or SubjectPublicKeyInfo).
pub fn rsa_public_key_der(key: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(key);
    if let Some(start) = text.find("-----BEGIN ") {
        let label_end = text[start + 11..]
            .find("-----")
            .map(|i| start + 11 + i)
            .unwrap_or_else(|| panic!("a PEM key without a closed BEGIN line"));
        let label = text[start + 11..label_end].to_string();
        let body_start = label_end + 5;
        let end = text[body_start..]
            .find("-----END")
            .map(|i| body_start + i)
            .unwrap_or_else(|| panic!("a PEM key without an END line"));
        let b64: String = text[body_start..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|e| panic!("the PEM key is not base64: {e}"));
        return match label.as_str() {
            "RSA PUBLIC KEY" => der,
            "PUBLIC KEY" => spki_to_pkcs1(&der).unwrap_or_else(|| panic!("not an RSA public key")),
            "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(&der)
                .unwrap_or_else(|e| panic!("not an RSA private key: {e}"))
                .public()
                .as_ref()
                .to_vec(),
            "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(&der)
                .unwrap_or_else(|e| panic!("not an RSA private key: {e}"))
                .public()
                .as_ref()
                .to_vec(),
            other => panic!("a PEM {other:?} is not an RSA key"),
        };
    }
    spki_to_pkcs1(key).unwrap_or_else(|| key.to_vec())
}

/// One DER TLV: `(tag, contents, rest)`.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut length = 0usize;
        for byte in input.get(2..2 + n)? {
            length = (length << 8) | *byte as usize;
        }
        (length, 2 + n)
    };
    let contents = input.get(header..header + length)?;
    Some((tag, contents, &input[header + length..]))
}

/// SubjectPublicKeyInfo → the PKCS#1 key inside its BIT STRING.
fn spki_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (0x30, spki, _) = der_tlv(der)? else {
        return None;
    };
    let (0x30, _algorithm, rest) = der_tlv(spki)? else {
        return None;
    };
    let (0x03, bits, _) = der_tlv(rest)? else {
        return None;
    };
    let (0, key) = bits.split_first()? else {
        return None;
    };
    Some(key.to_vec())
}

fn random_bytes(n: usize) -> Vec<u8> {
    use ring::rand::SecureRandom as _;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("random bytes");
    bytes
}

fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(n)
        .into_iter()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A random version-4 UUID, as `X-GitHub-Delivery` carries.
pub fn uuid_v4() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The git blob id of `content` (`sha1("blob <len>\0" + content)`).
pub fn git_blob_sha(content: &[u8]) -> String {
    let mut data = format!("blob {}\0", content.len()).into_bytes();
    data.extend_from_slice(content);
    hex::encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data).as_ref())
}

/// A sha derived from a name (for branches the test did not set).
fn derived_sha(name: &str) -> String {
    hex::encode(
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, name.as_bytes()).as_ref(),
    )
}

/// A stable id for a login (FNV-1a).
fn user_id(login: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in login.to_ascii_lowercase().bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    10_000_000 + hash % 90_000_000
}

/// An installation's (legacy-format) node id, as webhooks carry it.
fn installation_node_id(id: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("023:IntegrationInstallation{id}"))
}

fn node_id(prefix: &str, id: u64) -> String {
    let packed = base64::engine::general_purpose::STANDARD_NO_PAD.encode(id.to_be_bytes());
    format!("{prefix}_kwDO{}", packed.replace(['+', '/'], "A"))
}

// ---------------------------------------------------------------------------------------------
// State

/// One request the fake received, with the answer's status.
#[derive(Debug, Clone)]
pub struct GitHubRequest {
    pub method: String,
    pub path: String,
    /// The raw query string (empty when none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `POST /repos/{owner}/{repo}/pulls`, when the description has the operation.
    pub operation: Option<String>,
    /// The status the fake answered.
    pub status: u16,
}

impl GitHubRequest {
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

/// One delivery attempt of a webhook.
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// The receiver's status, `None` when it could not be reached.
    pub status: Option<u16>,
    /// The receiver's answer body.
    pub body: String,
    /// Why there is no status.
    pub error: Option<String>,
    /// The headers sent.
    pub headers: Vec<(String, String)>,
    /// The body sent.
    pub payload: Vec<u8>,
    pub redelivery: bool,
}

impl DeliveryResult {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct SentDelivery {
    id: String,
    url: String,
    secret: String,
    event: String,
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Scripted {
    Secondary(u64),
    Exhausted(u64),
    Fail(u16),
}

struct Wait {
    prefix: String,
    until: Instant,
    /// The fake clock's offset when the wait began: moving the clock on since counts as
    /// waiting (a client whose sleeper advances the fake clock has waited).
    clock_offset: i64,
    why: String,
}

impl Wait {
    /// What is left of the wait at `now` with the fake clock's offset at `clock_offset`.
    fn left(&self, now: Instant, clock_offset: i64) -> Duration {
        let moved = u64::try_from(clock_offset - self.clock_offset).unwrap_or(0);
        self.until
            .saturating_duration_since(now + Duration::from_secs(moved))
    }
}

struct Installation {
    id: u64,
    account: String,
    created_at: i64,
    permissions: BTreeMap<String, String>,
}

struct Token {
    installation: u64,
    expires_at: i64,
    permissions: BTreeMap<String, String>,
    /// Lower-case full names, when narrowed.
    repositories: Option<Vec<String>>,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    installation: u64,
    default_branch: String,
    created_at: i64,
    branches: BTreeMap<String, String>,
    files: BTreeMap<(String, String), Vec<u8>>,
    permissions: BTreeMap<String, String>,
    labels: BTreeMap<String, u64>,
    issues: Vec<Issue>,
    comments: Vec<Comment>,
    /// The issues' `labeled` events, oldest first.
    issue_events: Vec<LabelEvent>,
    reviews: Vec<Review>,
    review_comments: Vec<ReviewComment>,
    check_runs: Vec<CheckRun>,
    /// The bare repository behind it ([`FakeGitHub::host_git`]).
    hosted: Option<PathBuf>,
}

impl Repo {
    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn issue(&self, number: u64) -> Option<&Issue> {
        self.issues.iter().find(|i| i.number == number)
    }

    fn issue_mut(&mut self, number: u64) -> Option<&mut Issue> {
        self.issues.iter_mut().find(|i| i.number == number)
    }

    /// The sha of `branch`: a hosted repository's (panics when it has no such branch: the
    /// REST paths check first), else the one set, else one derived from the name.
    fn branch_sha(&mut self, branch: &str) -> String {
        let full = self.full_name();
        if let Some(dir) = &self.hosted {
            return self.branches.get(branch).cloned().unwrap_or_else(|| {
                panic!(
                    "{full} is hosted at {} and has no branch {branch:?}: push it first",
                    dir.display()
                )
            });
        }
        self.branches
            .entry(branch.to_string())
            .or_insert_with(|| derived_sha(&format!("{full}:{branch}")))
            .clone()
    }

    /// A hosted repository's branches read again from the bare repository, and the heads
    /// and bases of its open pull requests moved with them.
    fn refresh(&mut self) {
        let Some(dir) = &self.hosted else {
            return;
        };
        self.branches = git_http::branches(dir);
        let branches = &self.branches;
        for issue in self.issues.iter_mut().filter(|i| i.state == "open") {
            if let Some(pull) = issue.pull.as_mut() {
                if let Some(sha) = branches.get(&pull.head_ref) {
                    pull.head_sha = sha.clone();
                }
                if let Some(sha) = branches.get(&pull.base_ref) {
                    pull.base_sha = sha.clone();
                }
            }
        }
    }
}

struct Issue {
    id: u64,
    number: u64,
    title: String,
    body: Option<String>,
    author: String,
    state: String,
    state_reason: Option<String>,
    labels: Vec<String>,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
    pull: Option<Pull>,
}

struct Pull {
    id: u64,
    head_ref: String,
    head_sha: String,
    /// The head the last `pull_request.synchronize` (or the opening) announced: the next
    /// one's `before`.
    announced_sha: String,
    base_ref: String,
    base_sha: String,
    draft: bool,
    merged: bool,
    merged_at: Option<i64>,
    merged_by: Option<String>,
    merge_commit_sha: Option<String>,
    maintainer_can_modify: bool,
}

struct Comment {
    id: u64,
    issue: u64,
    body: String,
    author: String,
    via_app: bool,
    created_at: i64,
    updated_at: i64,
}

/// A label added to an issue, and by whom (what `GET …/issues/{n}/events` shows).
struct LabelEvent {
    id: u64,
    issue: u64,
    label: String,
    actor: String,
    created_at: i64,
}

struct Review {
    id: u64,
    pull: u64,
    login: String,
    state: String,
    body: String,
    commit_id: String,
    submitted_at: i64,
}

/// An inline comment of a review.
struct ReviewComment {
    id: u64,
    review: u64,
    pull: u64,
    login: String,
    path: String,
    line: u64,
    body: String,
    commit_id: String,
    created_at: i64,
}

struct CheckRun {
    id: u64,
    suite_id: u64,
    head_sha: String,
    name: String,
    status: String,
    conclusion: Option<String>,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    external_id: String,
    details_url: Option<String>,
    output: Map<String, Value>,
    actions: Vec<Value>,
}

struct Inner {
    addr: SocketAddr,
    app_id: u64,
    public_key: Vec<u8>,
    clock_offset: i64,
    installations: BTreeMap<u64, Installation>,
    repos: BTreeMap<String, Repo>,
    users: BTreeSet<String>,
    tokens: HashMap<String, Token>,
    tokens_issued: u64,
    next_id: u64,
    scripted: Vec<(String, Scripted)>,
    waits: Vec<Wait>,
    requests: Vec<GitHubRequest>,
    violations: Vec<String>,
    deliveries: Vec<SentDelivery>,
    rate_used: u64,
    /// `(owner/name, ref, new sha)` of each ref a push over HTTP changed.
    pushes: Vec<(String, String, String)>,
    /// The git smart HTTP requests.
    git_requests: Vec<GitHubRequest>,
    /// Held through a push, so that the refs it changed are told apart from another's.
    push_lock: Arc<Mutex<()>>,
}

impl Inner {
    fn now(&self) -> i64 {
        system_now() + self.clock_offset
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Every hosted repository's branches read again ([`Repo::refresh`]).
    fn refresh_hosted(&mut self) {
        for repo in self.repos.values_mut() {
            repo.refresh();
        }
    }

    /// Where a repository's git is served (hosted or not).
    fn git_url(&self, repo: &Repo) -> String {
        format!("{}/git/{}/{}.git", self.base(), repo.owner, repo.name)
    }

    fn know(&mut self, login: &str) {
        self.users.insert(login.to_ascii_lowercase());
    }

    fn repo(&self, full_name: &str) -> &Repo {
        self.repos
            .get(&full_name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("the fake has no repository {full_name}"))
    }

    fn repo_mut(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&full_name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("the fake has no repository {full_name}"))
    }

    fn bot_login() -> String {
        format!("{APP_SLUG}[bot]")
    }

    fn account_is_org(&self, login: &str) -> bool {
        self.installations
            .values()
            .any(|i| i.account.eq_ignore_ascii_case(login))
    }

    // --- renderings ---------------------------------------------------------------------------

    fn user(&self, login: &str) -> Value {
        let base = self.base();
        let id = user_id(login);
        let bot = login.ends_with("[bot]");
        let kind = if bot {
            "Bot"
        } else if self.account_is_org(login) {
            "Organization"
        } else {
            "User"
        };
        let html = if bot {
            format!("{WEB_URL}/apps/{}", login.trim_end_matches("[bot]"))
        } else {
            format!("{WEB_URL}/{login}")
        };
        let url = format!(
            "{base}/users/{}",
            login.replace('[', "%5B").replace(']', "%5D")
        );
        json!({
            "login": login,
            "id": id,
            "node_id": node_id(if bot { "BOT" } else if kind == "Organization" { "O" } else { "U" }, id),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
            "gravatar_id": "",
            "url": url,
            "html_url": html,
            "followers_url": format!("{url}/followers"),
            "following_url": format!("{url}/following{{/other_user}}"),
            "gists_url": format!("{url}/gists{{/gist_id}}"),
            "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{url}/subscriptions"),
            "organizations_url": format!("{url}/orgs"),
            "repos_url": format!("{url}/repos"),
            "events_url": format!("{url}/events{{/privacy}}"),
            "received_events_url": format!("{url}/received_events"),
            "type": kind,
            "user_view_type": "public",
            "site_admin": false,
        })
    }

    fn organization(&self, login: &str) -> Value {
        let base = self.base();
        let id = user_id(login);
        let url = format!("{base}/orgs/{login}");
        json!({
            "login": login,
            "id": id,
            "node_id": node_id("O", id),
            "url": url,
            "repos_url": format!("{url}/repos"),
            "events_url": format!("{url}/events"),
            "hooks_url": format!("{url}/hooks"),
            "issues_url": format!("{url}/issues"),
            "members_url": format!("{url}/members{{/member}}"),
            "public_members_url": format!("{url}/public_members{{/member}}"),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
            "description": null,
        })
    }

    fn app(&self) -> Value {
        json!({
            "id": self.app_id,
            "client_id": format!("Iv23li{:014}", self.app_id),
            "slug": APP_SLUG,
            "node_id": node_id("A", self.app_id),
            "owner": self.user("flightdeck-dev"),
            "name": APP_NAME,
            "description": "A fake GitHub App for flightdeck's tests",
            "external_url": "https://flightdeck.example.invalid",
            "html_url": format!("{WEB_URL}/apps/{APP_SLUG}"),
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "permissions": default_permissions(),
            "events": ["check_run", "issue_comment", "issues", "pull_request", "pull_request_review"],
        })
    }

    fn repository(&self, repo: &Repo) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let url = format!("{base}/repos/{full}");
        let open = repo.issues.iter().filter(|i| i.state == "open").count();
        let pushed = repo.created_at;
        let mut value = json!({
            "id": repo.id,
            "node_id": node_id("R", repo.id),
            "name": repo.name,
            "full_name": full,
            "private": true,
            "owner": self.user(&repo.owner),
            "html_url": format!("{WEB_URL}/{full}"),
            "description": null,
            "fork": false,
            "url": url,
        });
        for (name, suffix) in [
            ("forks_url", "/forks"),
            ("keys_url", "/keys{/key_id}"),
            ("collaborators_url", "/collaborators{/collaborator}"),
            ("teams_url", "/teams"),
            ("hooks_url", "/hooks"),
            ("issue_events_url", "/issues/events{/number}"),
            ("events_url", "/events"),
            ("assignees_url", "/assignees{/user}"),
            ("branches_url", "/branches{/branch}"),
            ("tags_url", "/tags"),
            ("blobs_url", "/git/blobs{/sha}"),
            ("git_tags_url", "/git/tags{/sha}"),
            ("git_refs_url", "/git/refs{/sha}"),
            ("trees_url", "/git/trees{/sha}"),
            ("statuses_url", "/statuses/{sha}"),
            ("languages_url", "/languages"),
            ("stargazers_url", "/stargazers"),
            ("contributors_url", "/contributors"),
            ("subscribers_url", "/subscribers"),
            ("subscription_url", "/subscription"),
            ("commits_url", "/commits{/sha}"),
            ("git_commits_url", "/git/commits{/sha}"),
            ("comments_url", "/comments{/number}"),
            ("issue_comment_url", "/issues/comments{/number}"),
            ("contents_url", "/contents/{+path}"),
            ("compare_url", "/compare/{base}...{head}"),
            ("merges_url", "/merges"),
            ("archive_url", "/{archive_format}{/ref}"),
            ("downloads_url", "/downloads"),
            ("issues_url", "/issues{/number}"),
            ("pulls_url", "/pulls{/number}"),
            ("milestones_url", "/milestones{/number}"),
            (
                "notifications_url",
                "/notifications{?since,all,participating}",
            ),
            ("labels_url", "/labels{/name}"),
            ("releases_url", "/releases{/id}"),
            ("deployments_url", "/deployments"),
        ] {
            value[name] = json!(format!("{url}{suffix}"));
        }
        let more = json!({
            "created_at": timestamp(repo.created_at),
            "updated_at": timestamp(repo.created_at),
            "pushed_at": timestamp(pushed),
            "git_url": format!("git://github.com/{full}.git"),
            "ssh_url": format!("git@github.com:{full}.git"),
            "clone_url": if repo.hosted.is_some() { self.git_url(repo) } else { format!("{WEB_URL}/{full}.git") },
            "svn_url": format!("{WEB_URL}/{full}"),
            "homepage": null,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": null,
            "has_issues": true,
            "has_projects": true,
            "has_downloads": true,
            "has_wiki": false,
            "has_pages": false,
            "has_discussions": false,
            "forks_count": 0,
            "mirror_url": null,
            "archived": false,
            "disabled": false,
            "open_issues_count": open,
            "license": null,
            "allow_forking": false,
            "is_template": false,
            "web_commit_signoff_required": false,
            "topics": [],
            "visibility": "private",
            "forks": 0,
            "open_issues": open,
            "watchers": 0,
            "default_branch": repo.default_branch,
        });
        if let (Value::Object(value), Value::Object(more)) = (&mut value, more) {
            value.extend(more);
        }
        value
    }

    fn label(&self, repo: &Repo, name: &str) -> Value {
        let id = repo.labels.get(name).copied().unwrap_or(0);
        json!({
            "id": id,
            "node_id": node_id("LA", id),
            "url": format!("{}/repos/{}/labels/{}", self.base(), repo.full_name(),
                url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()),
            "name": name,
            "color": "ededed",
            "default": false,
            "description": null,
        })
    }

    fn author_association(&self, repo: &Repo, login: &str) -> &'static str {
        if login.eq_ignore_ascii_case(&repo.owner) {
            "OWNER"
        } else if login.ends_with("[bot]") {
            "NONE"
        } else if repo
            .permissions
            .get(&login.to_ascii_lowercase())
            .is_some_and(|p| p != "none")
        {
            if self.account_is_org(&repo.owner) {
                "MEMBER"
            } else {
                "COLLABORATOR"
            }
        } else {
            "NONE"
        }
    }

    fn reactions(url: &str) -> Value {
        json!({
            "url": format!("{url}/reactions"),
            "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
            "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
        })
    }

    fn issue_json(&self, repo: &Repo, issue: &Issue) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let url = format!("{base}/repos/{full}/issues/{}", issue.number);
        let kind = if issue.pull.is_some() {
            "pull"
        } else {
            "issues"
        };
        let comments = repo
            .comments
            .iter()
            .filter(|c| c.issue == issue.number)
            .count();
        let mut value = json!({
            "url": url,
            "repository_url": format!("{base}/repos/{full}"),
            "labels_url": format!("{url}/labels{{/name}}"),
            "comments_url": format!("{url}/comments"),
            "events_url": format!("{url}/events"),
            "html_url": format!("{WEB_URL}/{full}/{kind}/{}", issue.number),
            "id": issue.id,
            "node_id": node_id(if issue.pull.is_some() { "PR" } else { "I" }, issue.id),
            "number": issue.number,
            "title": issue.title,
            "user": self.user(&issue.author),
            "labels": issue.labels.iter().map(|l| self.label(repo, l)).collect::<Vec<_>>(),
            "state": issue.state,
            "locked": false,
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "comments": comments,
            "created_at": timestamp(issue.created_at),
            "updated_at": timestamp(issue.updated_at),
            "closed_at": issue.closed_at.map(timestamp),
            "author_association": self.author_association(repo, &issue.author),
            "type": null,
            "active_lock_reason": null,
            "body": issue.body,
            "reactions": Inner::reactions(&url),
            "timeline_url": format!("{url}/timeline"),
            "performed_via_github_app": null,
            "state_reason": issue.state_reason,
        });
        if let Some(pull) = &issue.pull {
            value["draft"] = json!(pull.draft);
            value["pull_request"] = json!({
                "url": format!("{base}/repos/{full}/pulls/{}", issue.number),
                "html_url": format!("{WEB_URL}/{full}/pull/{}", issue.number),
                "diff_url": format!("{WEB_URL}/{full}/pull/{}.diff", issue.number),
                "patch_url": format!("{WEB_URL}/{full}/pull/{}.patch", issue.number),
                "merged_at": pull.merged_at.map(timestamp),
            });
        }
        value
    }

    fn comment_json(&self, repo: &Repo, comment: &Comment) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let url = format!("{base}/repos/{full}/issues/comments/{}", comment.id);
        let kind = match repo.issue(comment.issue) {
            Some(issue) if issue.pull.is_some() => "pull",
            _ => "issues",
        };
        json!({
            "url": url,
            "html_url": format!("{WEB_URL}/{full}/{kind}/{}#issuecomment-{}", comment.issue, comment.id),
            "issue_url": format!("{base}/repos/{full}/issues/{}", comment.issue),
            "id": comment.id,
            "node_id": node_id("IC", comment.id),
            "user": self.user(&comment.author),
            "created_at": timestamp(comment.created_at),
            "updated_at": timestamp(comment.updated_at),
            "author_association": self.author_association(repo, &comment.author),
            "body": comment.body,
            "reactions": Inner::reactions(&url),
            "performed_via_github_app": if comment.via_app { self.app() } else { Value::Null },
        })
    }

    fn branch_json(&self, repo: &Repo, branch: &str, sha: &str) -> Value {
        json!({
            "label": format!("{}:{branch}", repo.owner),
            "ref": branch,
            "sha": sha,
            "user": self.user(&repo.owner),
            "repo": self.repository(repo),
        })
    }

    fn pull_json(&self, repo: &Repo, issue: &Issue) -> Value {
        let Some(pull) = &issue.pull else {
            return Value::Null;
        };
        let base = self.base();
        let full = repo.full_name();
        let n = issue.number;
        let url = format!("{base}/repos/{full}/pulls/{n}");
        let issue_url = format!("{base}/repos/{full}/issues/{n}");
        let html = format!("{WEB_URL}/{full}/pull/{n}");
        let comments = repo.comments.iter().filter(|c| c.issue == n).count();
        let review_comments = repo.review_comments.iter().filter(|c| c.pull == n).count();
        let link = |href: String| json!({"href": href});
        let links = json!({
                "self": link(url.clone()),
                "html": link(html.clone()),
                "issue": link(issue_url.clone()),
                "comments": link(format!("{issue_url}/comments")),
                "review_comments": link(format!("{url}/comments")),
                "review_comment": link(format!("{base}/repos/{full}/pulls/comments{{/number}}")),
                "commits": link(format!("{url}/commits")),
                "statuses": link(format!("{base}/repos/{full}/statuses/{}", pull.head_sha)),
        });
        let first = json!({
            "url": url,
            "id": pull.id,
            "node_id": node_id("PR", issue.id),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": issue_url,
            "number": n,
            "state": issue.state,
            "locked": false,
            "title": issue.title,
            "user": self.user(&issue.author),
            "body": issue.body,
            "created_at": timestamp(issue.created_at),
            "updated_at": timestamp(issue.updated_at),
            "closed_at": issue.closed_at.map(timestamp),
            "merged_at": pull.merged_at.map(timestamp),
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": null,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": issue.labels.iter().map(|l| self.label(repo, l)).collect::<Vec<_>>(),
            "milestone": null,
            "draft": pull.draft,
        });
        let second = json!({
            "commits_url": format!("{url}/commits"),
            "review_comments_url": format!("{url}/comments"),
            "review_comment_url": format!("{base}/repos/{full}/pulls/comments{{/number}}"),
            "comments_url": format!("{issue_url}/comments"),
            "statuses_url": format!("{base}/repos/{full}/statuses/{}", pull.head_sha),
            "head": self.branch_json(repo, &pull.head_ref, &pull.head_sha),
            "base": self.branch_json(repo, &pull.base_ref, &pull.base_sha),
            "_links": links,
            "author_association": self.author_association(repo, &issue.author),
            "auto_merge": null,
            "active_lock_reason": null,
            "merged": pull.merged,
            "mergeable": if issue.state == "open" { json!(true) } else { Value::Null },
            "rebaseable": if issue.state == "open" { json!(true) } else { Value::Null },
            "mergeable_state": if pull.draft { "draft" } else if issue.state == "open" { "clean" } else { "unknown" },
            "merged_by": pull.merged_by.as_deref().map(|l| self.user(l)),
            "comments": comments,
            "review_comments": review_comments,
            "maintainer_can_modify": pull.maintainer_can_modify,
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
        });
        merge(first, second)
    }

    /// A pull request as review payloads carry it ("Simple Pull Request": no merge state or
    /// counts).
    fn simple_pull_json(&self, repo: &Repo, issue: &Issue) -> Value {
        let mut value = self.pull_json(repo, issue);
        if let Some(object) = value.as_object_mut() {
            for key in [
                "merged",
                "mergeable",
                "rebaseable",
                "mergeable_state",
                "merged_by",
                "comments",
                "review_comments",
                "maintainer_can_modify",
                "commits",
                "additions",
                "deletions",
                "changed_files",
            ] {
                object.remove(key);
            }
        }
        value
    }

    /// A pull request as webhook payloads carry it.
    fn pull_webhook_json(&self, repo: &Repo, issue: &Issue) -> Value {
        self.pull_json(repo, issue)
    }

    fn review_json(&self, repo: &Repo, review: &Review, webhook: bool) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let html = format!(
            "{WEB_URL}/{full}/pull/{}#pullrequestreview-{}",
            review.pull, review.id
        );
        let pull_url = format!("{base}/repos/{full}/pulls/{}", review.pull);
        let state = if webhook {
            review.state.to_ascii_lowercase()
        } else {
            review.state.clone()
        };
        json!({
            "id": review.id,
            "node_id": node_id("PRR", review.id),
            "user": self.user(&review.login),
            "body": review.body,
            "state": state,
            "html_url": html,
            "pull_request_url": pull_url,
            "author_association": self.author_association(repo, &review.login),
            "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
            "submitted_at": timestamp(review.submitted_at),
            "commit_id": review.commit_id,
        })
    }

    fn review_comment_json(&self, repo: &Repo, comment: &ReviewComment) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let url = format!("{base}/repos/{full}/pulls/comments/{}", comment.id);
        let html = format!(
            "{WEB_URL}/{full}/pull/{}#discussion_r{}",
            comment.pull, comment.id
        );
        let pull_url = format!("{base}/repos/{full}/pulls/{}", comment.pull);
        let line = comment.line;
        json!({
            "url": url,
            "pull_request_review_id": comment.review,
            "id": comment.id,
            "node_id": node_id("PRRC", comment.id),
            // A one-line hunk ending at the line, so `position` 1 is that line.
            "diff_hunk": format!("@@ -{line},1 +{line},1 @@"),
            "path": comment.path,
            "position": 1,
            "original_position": 1,
            "commit_id": comment.commit_id,
            "original_commit_id": comment.commit_id,
            "user": self.user(&comment.login),
            "body": comment.body,
            "created_at": timestamp(comment.created_at),
            "updated_at": timestamp(comment.created_at),
            "html_url": html,
            "pull_request_url": pull_url,
            "author_association": self.author_association(repo, &comment.login),
            "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull_url}},
            "reactions": Inner::reactions(&url),
            "start_line": null,
            "original_start_line": null,
            "start_side": null,
            "line": line,
            "original_line": line,
            "side": "RIGHT",
            "subject_type": "line",
        })
    }

    fn git_commit_json(&self, repo: &Repo, commit: &git_http::Commit) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let person = |ident: &git_http::Ident| json!({"name": ident.name, "email": ident.email, "date": timestamp(ident.time)});
        let commit_url = |sha: &str| format!("{base}/repos/{full}/git/commits/{sha}");
        let html_url = |sha: &str| format!("{WEB_URL}/{full}/commit/{sha}");
        let node = base64::engine::general_purpose::STANDARD
            .encode(format!("06:Commit{}:{}", repo.id, commit.sha));
        json!({
            "sha": commit.sha,
            "node_id": node,
            "url": commit_url(&commit.sha),
            "html_url": html_url(&commit.sha),
            "author": person(&commit.author),
            "committer": person(&commit.committer),
            "message": commit.message,
            "tree": {"sha": commit.tree, "url": format!("{base}/repos/{full}/git/trees/{}", commit.tree)},
            "parents": commit.parents.iter().map(|p| json!({
                "sha": p, "url": commit_url(p), "html_url": html_url(p),
            })).collect::<Vec<_>>(),
            "verification": {
                "verified": false,
                "reason": if commit.signed { "unknown_key" } else { "unsigned" },
                "signature": null,
                "payload": null,
                "verified_at": null,
            },
        })
    }

    fn minimal_pulls_for(&self, repo: &Repo, sha: &str) -> Vec<Value> {
        let base = self.base();
        let full = repo.full_name();
        let repo_ref = json!({
            "id": repo.id,
            "url": format!("{base}/repos/{full}"),
            "name": repo.name,
        });
        repo.issues
            .iter()
            .filter_map(|issue| {
                let pull = issue.pull.as_ref()?;
                (issue.state == "open" && pull.head_sha == sha).then(|| {
                    json!({
                        "id": pull.id,
                        "number": issue.number,
                        "url": format!("{base}/repos/{full}/pulls/{}", issue.number),
                        "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": repo_ref},
                        "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": repo_ref},
                    })
                })
            })
            .collect()
    }

    fn check_run_json(&self, repo: &Repo, run: &CheckRun, webhook: bool) -> Value {
        let base = self.base();
        let full = repo.full_name();
        let url = format!("{base}/repos/{full}/check-runs/{}", run.id);
        let mut output = json!({
            "title": null,
            "summary": null,
            "text": null,
            "annotations_count": run.output.get("annotations").and_then(Value::as_array).map(Vec::len).unwrap_or(0),
            "annotations_url": format!("{url}/annotations"),
        });
        for key in ["title", "summary", "text"] {
            if let Some(value) = run.output.get(key) {
                output[key] = value.clone();
            }
        }
        let pulls = self.minimal_pulls_for(repo, &run.head_sha);
        let check_suite = if webhook {
            let head_branch = repo
                .issues
                .iter()
                .filter_map(|i| i.pull.as_ref())
                .find(|p| p.head_sha == run.head_sha)
                .map(|p| p.head_ref.clone());
            json!({
                "id": run.suite_id,
                "node_id": node_id("CS", run.suite_id),
                "head_branch": head_branch,
                "head_sha": run.head_sha,
                "status": run.status,
                "conclusion": run.conclusion,
                "url": format!("{base}/repos/{full}/check-suites/{}", run.suite_id),
                "before": derived_sha(&format!("before:{}", run.head_sha)),
                "after": run.head_sha,
                "pull_requests": pulls,
                "app": self.app(),
                "created_at": timestamp(run.started_at.unwrap_or(repo.created_at)),
                "updated_at": timestamp(run.completed_at.or(run.started_at).unwrap_or(repo.created_at)),
            })
        } else {
            json!({"id": run.suite_id})
        };
        json!({
            "id": run.id,
            "name": run.name,
            "node_id": node_id("CR", run.id),
            "head_sha": run.head_sha,
            "external_id": run.external_id,
            "url": url,
            "html_url": format!("{WEB_URL}/{full}/runs/{}", run.id),
            "details_url": run.details_url.clone().unwrap_or_else(|| "https://flightdeck.example.invalid".to_string()),
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at.map(timestamp),
            "completed_at": run.completed_at.map(timestamp),
            "output": output,
            "check_suite": check_suite,
            "app": self.app(),
            "pull_requests": pulls,
        })
    }

    fn installation_json(&self, installation: &Installation) -> Value {
        let base = self.base();
        let account = self.user(&installation.account);
        let repositories = self
            .repos
            .values()
            .filter(|r| r.installation == installation.id)
            .count();
        json!({
            "id": installation.id,
            "client_id": format!("Iv23li{:014}", self.app_id),
            "account": account,
            "repository_selection": if repositories == 0 { "all" } else { "selected" },
            "access_tokens_url": format!("{base}/app/installations/{}/access_tokens", installation.id),
            "repositories_url": format!("{base}/installation/repositories"),
            "html_url": format!("{WEB_URL}/organizations/{}/settings/installations/{}", installation.account, installation.id),
            "app_id": self.app_id,
            "app_slug": APP_SLUG,
            "target_id": user_id(&installation.account),
            "target_type": account["type"],
            "permissions": installation.permissions,
            "events": ["check_run", "issue_comment", "issues", "pull_request", "pull_request_review"],
            "created_at": timestamp(installation.created_at),
            "updated_at": timestamp(installation.created_at),
            "single_file_name": null,
            "has_multiple_single_files": false,
            "single_file_paths": [],
            "suspended_by": null,
            "suspended_at": null,
        })
    }
}

/// `a` with the members of `b` added.
fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn default_permissions() -> BTreeMap<String, String> {
    [
        ("checks", "write"),
        // flightdeck pushes its branches.
        ("contents", "write"),
        ("issues", "write"),
        ("metadata", "read"),
        ("pull_requests", "write"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn level(permission: &str) -> u8 {
    match permission {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// The running fake; stops when dropped.
pub struct FakeGitHub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitHub {
    /// Serves on an ephemeral port of 127.0.0.1 as the GitHub App `app_id`, whose JWTs are
    /// verified with `public_key` (see [`rsa_public_key_der`] for the forms accepted; a
    /// private key is accepted too, its public half is used).
    pub async fn start(app_id: u64, public_key: &[u8]) -> FakeGitHub {
        let public_key = rsa_public_key_der(public_key);
        // Load (and fail) here rather than inside a request.
        let _ = GitHubSpecs::get();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let mut users = BTreeSet::new();
        users.insert(Inner::bot_login().to_ascii_lowercase());
        let inner = Arc::new(Mutex::new(Inner {
            addr,
            app_id,
            public_key,
            clock_offset: 0,
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            users,
            tokens: HashMap::new(),
            tokens_issued: 0,
            next_id: 2_000_000_000,
            scripted: Vec::new(),
            waits: Vec::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            deliveries: Vec::new(),
            rate_used: 0,
            pushes: Vec::new(),
            git_requests: Vec::new(),
            push_lock: Arc::new(Mutex::new(())),
        }));
        let app = axum::Router::new()
            .fallback(handle)
            // Git pushes packs.
            .layer(axum::extract::DefaultBodyLimit::max(512 * 1024 * 1024))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        FakeGitHub {
            addr,
            inner,
            task,
            client,
        }
    }

    /// The API base a client is configured with (`http://127.0.0.1:<port>`), like
    /// `https://api.github.com`; GraphQL is at `<url>/graphql`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn app_id(&self) -> u64 {
        self.lock().app_id
    }

    /// The app's bot user (`flightdeck-fake[bot]`), the author of what the app writes.
    pub fn bot_login(&self) -> String {
        Inner::bot_login()
    }

    /// The state, hosted repositories' branches read again first.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap();
        inner.refresh_hosted();
        inner
    }

    // --- the clock -----------------------------------------------------------------------------

    /// The fake's Unix time (the real time until [`FakeGitHub::set_now`] or
    /// [`FakeGitHub::advance`] moves it; it keeps running from there).
    pub fn now(&self) -> i64 {
        self.lock().now()
    }

    pub fn set_now(&self, unix: i64) {
        let mut inner = self.lock();
        inner.clock_offset = unix - system_now();
    }

    pub fn advance(&self, by: Duration) {
        self.lock().clock_offset += by.as_secs() as i64;
    }

    // --- setting up ----------------------------------------------------------------------------

    /// An installation of the app on the organization `account`.
    pub fn add_installation(&self, id: u64, account: &str) {
        let mut inner = self.lock();
        let created_at = inner.now();
        inner.know(account);
        inner.installations.insert(
            id,
            Installation {
                id,
                account: account.to_string(),
                created_at,
                permissions: default_permissions(),
            },
        );
    }

    /// Replaces the permissions granted to an installation (`{"issues": "write", …}`).
    pub fn set_installation_permissions(&self, id: u64, permissions: &[(&str, &str)]) {
        let mut inner = self.lock();
        let installation = inner
            .installations
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no installation {id}"));
        installation.permissions = permissions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// A repository `owner/name` the installation can reach, with its default branch.
    pub fn add_repo(&self, installation: u64, full_name: &str, default_branch: &str) {
        let (owner, name) = full_name
            .split_once('/')
            .unwrap_or_else(|| panic!("{full_name:?} is not owner/name"));
        let mut inner = self.lock();
        assert!(
            inner.installations.contains_key(&installation),
            "no installation {installation}: add_installation first"
        );
        let id = inner.next_id();
        let created_at = inner.now();
        inner.know(owner);
        let mut repo = Repo {
            id,
            owner: owner.to_string(),
            name: name.to_string(),
            installation,
            default_branch: default_branch.to_string(),
            created_at,
            branches: BTreeMap::new(),
            files: BTreeMap::new(),
            permissions: BTreeMap::new(),
            labels: BTreeMap::new(),
            issues: Vec::new(),
            comments: Vec::new(),
            issue_events: Vec::new(),
            reviews: Vec::new(),
            review_comments: Vec::new(),
            check_runs: Vec::new(),
            hosted: None,
        };
        repo.branch_sha(default_branch);
        inner.repos.insert(full_name.to_ascii_lowercase(), repo);
    }

    /// Points `branch` at `sha`; in a hosted repository with `git update-ref` (panics when
    /// `sha` is no commit there).
    pub fn set_branch(&self, repo: &str, branch: &str, sha: &str) {
        let mut inner = self.lock();
        let entry = inner.repo_mut(repo);
        match entry.hosted.clone() {
            Some(dir) => {
                git_http::set_branch(&dir, branch, sha);
                entry.refresh();
            }
            None => {
                entry.branches.insert(branch.to_string(), sha.to_string());
            }
        }
    }

    /// The sha `branch` points at: in a hosted repository `refs/heads/{branch}` of the bare
    /// repository (panics when there is none); else the one set, or one derived from its name
    /// when never set.
    pub fn branch_sha(&self, repo: &str, branch: &str) -> String {
        self.lock().repo_mut(repo).branch_sha(branch)
    }

    /// Backs `repo` (added with [`FakeGitHub::add_repo`]) with the bare git repository
    /// `bare_repo`, served over smart HTTP at [`FakeGitHub::clone_url`] by `git http-backend`
    /// (pushes enabled: `http.receivepack`). From now on the repository's branches are the
    /// bare repository's: push to it (over HTTP with an installation token, or straight to
    /// the path as a person would) to make one. Panics when `bare_repo` is not a git
    /// directory.
    ///
    /// Git run against the fake must not block the thread its server runs on: in a
    /// `#[tokio::test]` (one thread) run it with `tokio::process::Command`, not
    /// `std::process::Command`.
    pub fn host_git(&self, full_name: &str, bare_repo: &Path) {
        git_http::prepare_bare(bare_repo);
        let dir = bare_repo
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", bare_repo.display()));
        let mut inner = self.lock();
        let repo = inner.repo_mut(full_name);
        repo.hosted = Some(dir);
        repo.refresh();
    }

    /// The repository's `clone_url` when hosted: `{url}/git/{owner}/{name}.git`.
    pub fn clone_url(&self, repo: &str) -> String {
        let inner = self.lock();
        let repo = inner.repo(repo);
        assert!(
            repo.hosted.is_some(),
            "{} is not hosted: host_git first",
            repo.full_name()
        );
        inner.git_url(repo)
    }

    /// Registers a user (any login the fake sees is registered; an unknown one is 404 to the
    /// collaborator permission call).
    pub fn add_user(&self, login: &str) {
        self.lock().know(login);
    }

    /// The collaborator permission of `login`: `admin`, `maintain`, `write`, `triage`, `read`
    /// or `none`.
    pub fn set_permission(&self, repo: &str, login: &str, permission: &str) {
        assert!(
            ["admin", "maintain", "write", "triage", "read", "none"].contains(&permission),
            "not a repository role: {permission}"
        );
        let mut inner = self.lock();
        inner.know(login);
        inner
            .repo_mut(repo)
            .permissions
            .insert(login.to_ascii_lowercase(), permission.to_string());
    }

    /// A file at `path` on `git_ref` (a branch name or a sha).
    pub fn set_file(&self, repo: &str, git_ref: &str, path: &str, content: impl AsRef<[u8]>) {
        self.lock().repo_mut(repo).files.insert(
            (
                git_ref.to_string(),
                path.trim_start_matches('/').to_string(),
            ),
            content.as_ref().to_vec(),
        );
    }

    /// An open issue by `author`; returns its number.
    pub fn open_issue(&self, repo: &str, title: &str, body: &str, author: &str) -> u64 {
        let mut inner = self.lock();
        inner.know(author);
        let id = inner.next_id();
        let now = inner.now();
        let repo = inner.repo_mut(repo);
        let number = repo.issues.len() as u64 + 1;
        repo.issues.push(Issue {
            id,
            number,
            title: title.to_string(),
            body: Some(body.to_string()).filter(|b| !b.is_empty()),
            author: author.to_string(),
            state: "open".to_string(),
            state_reason: None,
            labels: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull: None,
        });
        number
    }

    /// An open pull request by `author` from `head` into `base` (as if opened on GitHub);
    /// returns its number.
    pub fn open_pull(&self, repo: &str, title: &str, head: &str, base: &str, author: &str) -> u64 {
        let mut inner = self.lock();
        inner.know(author);
        let issue_id = inner.next_id();
        let pull_id = inner.next_id();
        let now = inner.now();
        let repo = inner.repo_mut(repo);
        let head_sha = repo.branch_sha(head);
        let base_sha = repo.branch_sha(base);
        let number = repo.issues.len() as u64 + 1;
        repo.issues.push(Issue {
            id: issue_id,
            number,
            title: title.to_string(),
            body: None,
            author: author.to_string(),
            state: "open".to_string(),
            state_reason: None,
            labels: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull: Some(Pull {
                id: pull_id,
                head_ref: head.to_string(),
                announced_sha: head_sha.clone(),
                head_sha,
                base_ref: base.to_string(),
                base_sha,
                draft: false,
                merged: false,
                merged_at: None,
                merged_by: None,
                merge_commit_sha: None,
                maintainer_can_modify: false,
            }),
        });
        number
    }

    /// A review by `login` on pull request `pull`: `state` is `APPROVED`, `CHANGES_REQUESTED`
    /// or `COMMENTED`; returns the review id.
    pub fn submit_review(
        &self,
        repo: &str,
        pull: u64,
        login: &str,
        state: &str,
        commit_id: &str,
    ) -> u64 {
        assert!(
            ["APPROVED", "CHANGES_REQUESTED", "COMMENTED"].contains(&state),
            "not a review state: {state}"
        );
        let mut inner = self.lock();
        inner.know(login);
        let id = inner.next_id();
        let now = inner.now();
        let repo = inner.repo_mut(repo);
        assert!(
            repo.issue(pull).is_some_and(|i| i.pull.is_some()),
            "no pull request {pull}"
        );
        repo.reviews.push(Review {
            id,
            pull,
            login: login.to_string(),
            state: state.to_string(),
            body: String::new(),
            commit_id: commit_id.to_string(),
            submitted_at: now,
        });
        id
    }

    /// The body of a review made with [`FakeGitHub::submit_review`].
    pub fn set_review_body(&self, repo: &str, review_id: u64, body: &str) {
        let mut inner = self.lock();
        let review = inner
            .repo_mut(repo)
            .reviews
            .iter_mut()
            .find(|r| r.id == review_id)
            .unwrap_or_else(|| panic!("no review {review_id} in {repo}"));
        review.body = body.to_string();
    }

    /// An inline comment of a review made with [`FakeGitHub::submit_review`], by its author
    /// on its commit: `body` on `line` of `path` (the new side of the diff); returns the
    /// comment's id. `GET …/pulls/{n}/reviews/{review_id}/comments` lists them.
    pub fn add_review_comment(
        &self,
        repo: &str,
        review_id: u64,
        path: &str,
        line: u64,
        body: &str,
    ) -> u64 {
        assert!(line >= 1, "lines count from 1");
        let mut inner = self.lock();
        let id = inner.next_id();
        let now = inner.now();
        let r = inner.repo_mut(repo);
        let review = r
            .reviews
            .iter()
            .find(|x| x.id == review_id)
            .unwrap_or_else(|| panic!("no review {review_id} in {repo}"));
        let comment = ReviewComment {
            id,
            review: review_id,
            pull: review.pull,
            login: review.login.clone(),
            path: path.trim_start_matches('/').to_string(),
            line,
            body: body.to_string(),
            commit_id: review.commit_id.clone(),
            created_at: now,
        };
        r.review_comments.push(comment);
        id
    }
    // --- reading -------------------------------------------------------------------------------

    /// The comments on an issue or pull request, oldest first, as the REST API shows them.
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<Value> {
        let inner = self.lock();
        let repo = inner.repo(repo);
        repo.comments
            .iter()
            .filter(|c| c.issue == issue)
            .map(|c| inner.comment_json(repo, c))
            .collect()
    }

    /// The pull requests, by number, as the REST API shows them.
    pub fn pulls(&self, repo: &str) -> Vec<Value> {
        let inner = self.lock();
        let repo = inner.repo(repo);
        repo.issues
            .iter()
            .filter(|i| i.pull.is_some())
            .map(|i| inner.pull_json(repo, i))
            .collect()
    }

    /// The issues (pull requests included), by number, as the REST API shows them.
    pub fn issues(&self, repo: &str) -> Vec<Value> {
        let inner = self.lock();
        let repo = inner.repo(repo);
        repo.issues
            .iter()
            .map(|i| inner.issue_json(repo, i))
            .collect()
    }

    /// The check runs, oldest first, as the REST API shows them, plus the `actions` (buttons)
    /// the app set (which the API does not show).
    pub fn check_runs(&self, repo: &str) -> Vec<Value> {
        let inner = self.lock();
        let repo = inner.repo(repo);
        repo.check_runs
            .iter()
            .map(|r| {
                let mut value = inner.check_run_json(repo, r, false);
                value["actions"] = json!(r.actions);
                value
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<GitHubRequest> {
        self.lock().requests.clone()
    }

    /// The git smart HTTP requests (`/git/…`), oldest first, with the status answered (they
    /// are not in [`FakeGitHub::requests`]).
    pub fn git_requests(&self) -> Vec<GitHubRequest> {
        self.lock().git_requests.clone()
    }

    /// The refs pushes over HTTP changed, oldest first: `(owner/name, ref, new sha)`, the ref
    /// in full (`refs/heads/flightdeck/m1`), the new sha all zeros for a deleted ref.
    pub fn pushes(&self) -> Vec<(String, String, String)> {
        self.lock().pushes.clone()
    }

    /// How many requests with `method` had a path starting with `path_prefix`.
    pub fn calls(&self, method: &str, path_prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// How many installation tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        self.lock().tokens_issued
    }

    /// Every contract violation seen.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Panics with the violations, if any.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "GitHub contract violations:\n{}",
            violations.join("\n")
        );
    }

    // --- scripting -----------------------------------------------------------------------------

    /// The next request under `path_prefix` is refused by a secondary rate limit: 403 with
    /// `retry-after: <seconds>`.
    pub fn rate_limit_next(&self, path_prefix: &str, retry_after_seconds: u64) {
        self.script(path_prefix, Scripted::Secondary(retry_after_seconds));
    }

    /// The next request under `path_prefix` finds the primary rate limit exhausted: 403 with
    /// `x-ratelimit-remaining: 0` and `x-ratelimit-reset` `reset_in_seconds` ahead.
    pub fn exhaust_rate_limit_next(&self, path_prefix: &str, reset_in_seconds: u64) {
        self.script(path_prefix, Scripted::Exhausted(reset_in_seconds));
    }

    /// The next request under `path_prefix` answers `status` with GitHub's error body.
    pub fn fail_next(&self, path_prefix: &str, status: u16) {
        assert!(status >= 400, "fail_next wants an error status");
        self.script(path_prefix, Scripted::Fail(status));
    }

    fn script(&self, path_prefix: &str, scripted: Scripted) {
        self.lock()
            .scripted
            .push((path_prefix.to_string(), scripted));
    }

    // --- webhooks ------------------------------------------------------------------------------

    /// POSTs `payload` for `event` to `url` as GitHub's hookshot does, signed with `secret`
    /// (no signature headers when it is empty, as for a hook without a secret). Panics when
    /// the payload does not validate against the webhook description.
    pub async fn deliver(
        &self,
        url: &str,
        secret: &str,
        event: &str,
        payload: Value,
    ) -> DeliveryResult {
        if let Err(errors) = GitHubSpecs::get().check_webhook(event, &payload) {
            panic!(
                "the fake would send a {event} payload GitHub would not:\n{}",
                errors.join("\n")
            );
        }
        let delivery = SentDelivery {
            id: uuid_v4(),
            url: url.to_string(),
            secret: secret.to_string(),
            event: event.to_string(),
            body: payload.to_string().into_bytes(),
        };
        self.lock().deliveries.push(delivery.clone());
        self.send(&delivery, false).await
    }

    /// Sends the delivery `delivery_id` again: the same id, headers and body.
    pub async fn redeliver(&self, delivery_id: &str) -> DeliveryResult {
        let delivery = self
            .lock()
            .deliveries
            .iter()
            .find(|d| d.id == delivery_id)
            .cloned()
            .unwrap_or_else(|| panic!("the fake sent no delivery {delivery_id}"));
        self.send(&delivery, true).await
    }

    /// The ids of the deliveries sent, oldest first.
    pub fn deliveries(&self) -> Vec<String> {
        self.lock()
            .deliveries
            .iter()
            .map(|d| d.id.clone())
            .collect()
    }

    async fn send(&self, delivery: &SentDelivery, redelivery: bool) -> DeliveryResult {
        let app_id = self.app_id();
        let mut headers = vec![
            ("Accept".to_string(), "*/*".to_string()),
            ("Content-Type".to_string(), "application/json".to_string()),
            ("User-Agent".to_string(), HOOKSHOT_USER_AGENT.to_string()),
            ("X-GitHub-Delivery".to_string(), delivery.id.clone()),
            ("X-GitHub-Event".to_string(), delivery.event.clone()),
            ("X-GitHub-Hook-ID".to_string(), HOOK_ID.to_string()),
            (
                "X-GitHub-Hook-Installation-Target-ID".to_string(),
                app_id.to_string(),
            ),
            (
                "X-GitHub-Hook-Installation-Target-Type".to_string(),
                "integration".to_string(),
            ),
        ];
        if !delivery.secret.is_empty() {
            headers.push((
                "X-Hub-Signature".to_string(),
                sign_sha1(&delivery.secret, &delivery.body),
            ));
            headers.push((
                "X-Hub-Signature-256".to_string(),
                sign(&delivery.secret, &delivery.body),
            ));
        }
        let mut request = self.client.post(&delivery.url).body(delivery.body.clone());
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let mut result = DeliveryResult {
            delivery_id: delivery.id.clone(),
            status: None,
            body: String::new(),
            error: None,
            headers,
            payload: delivery.body.clone(),
            redelivery,
        };
        match request.send().await {
            Ok(response) => {
                result.status = Some(response.status().as_u16());
                result.body = response.text().await.unwrap_or_default();
            }
            Err(e) => result.error = Some(e.to_string()),
        }
        result
    }

    // --- payload builders ----------------------------------------------------------------------

    fn envelope(inner: &Inner, repo: &Repo, sender: &str) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("repository".into(), inner.repository(repo));
        if inner.account_is_org(&repo.owner) {
            map.insert("organization".into(), inner.organization(&repo.owner));
        }
        map.insert("sender".into(), inner.user(sender));
        map.insert(
            "installation".into(),
            json!({"id": repo.installation, "node_id": installation_node_id(repo.installation)}),
        );
        map
    }

    /// `sender` adds `label` to the issue, as on GitHub's page: the issue carries it (and is
    /// updated), and its events gain a `labeled` one by `sender`. Nothing is delivered
    /// (poll mode finds it); [`FakeGitHub::issues_labeled`] also makes the webhook payload.
    pub fn label_issue(&self, repo: &str, issue: u64, label: &str, sender: &str) {
        let mut inner = self.lock();
        FakeGitHub::add_label(&mut inner, repo, issue, label, sender);
    }

    fn add_label(inner: &mut Inner, repo: &str, issue: u64, label: &str, sender: &str) {
        inner.know(sender);
        let label_id = inner.next_id();
        let event_id = inner.next_id();
        let now = inner.now();
        let r = inner.repo_mut(repo);
        r.labels.entry(label.to_string()).or_insert(label_id);
        let entry = r
            .issue_mut(issue)
            .unwrap_or_else(|| panic!("no issue {issue} in {repo}"));
        if !entry.labels.iter().any(|l| l == label) {
            entry.labels.push(label.to_string());
        }
        entry.updated_at = now;
        r.issue_events.push(LabelEvent {
            id: event_id,
            issue,
            label: label.to_string(),
            actor: sender.to_string(),
            created_at: now,
        });
    }

    /// `issues.labeled`: `sender` adds `label` to the issue (kept in the fake's state, as
    /// [`FakeGitHub::label_issue`] does).
    pub fn issues_labeled(&self, repo: &str, issue: u64, label: &str, sender: &str) -> Value {
        let mut inner = self.lock();
        FakeGitHub::add_label(&mut inner, repo, issue, label, sender);
        let r = inner.repo(repo);
        let mut payload = Map::new();
        payload.insert("action".into(), json!("labeled"));
        payload.insert("issue".into(), inner.issue_json(r, r.issue(issue).unwrap()));
        payload.insert("label".into(), inner.label(r, label));
        payload.extend(FakeGitHub::envelope(&inner, r, sender));
        Value::Object(payload)
    }

    /// `issue_comment.created`: `author` comments `body` on an issue or pull request (kept in
    /// the fake's state, and listed by `GET …/issues/comments` whether delivered or not).
    pub fn issue_comment_created(&self, repo: &str, issue: u64, author: &str, body: &str) -> Value {
        let mut inner = self.lock();
        inner.know(author);
        let id = inner.next_id();
        let now = inner.now();
        {
            let r = inner.repo_mut(repo);
            let entry = r
                .issue_mut(issue)
                .unwrap_or_else(|| panic!("no issue {issue} in {repo}"));
            entry.updated_at = now;
            r.comments.push(Comment {
                id,
                issue,
                body: body.to_string(),
                author: author.to_string(),
                via_app: false,
                created_at: now,
                updated_at: now,
            });
        }
        let r = inner.repo(repo);
        let mut payload = Map::new();
        payload.insert("action".into(), json!("created"));
        payload.insert("issue".into(), inner.issue_json(r, r.issue(issue).unwrap()));
        payload.insert(
            "comment".into(),
            inner.comment_json(r, r.comments.last().unwrap()),
        );
        payload.extend(FakeGitHub::envelope(&inner, r, author));
        Value::Object(payload)
    }

    /// `pull_request.synchronize`: the head branch of `pull` moved to `after` (kept), from
    /// the head the previous synchronize (or the opening) announced. In a hosted repository
    /// the branch must already be at `after` there (pushed; else this panics): take it from
    /// [`FakeGitHub::branch_sha`].
    pub fn pull_request_synchronize(
        &self,
        repo: &str,
        pull: u64,
        after: &str,
        sender: &str,
    ) -> Value {
        let mut inner = self.lock();
        inner.know(sender);
        let now = inner.now();
        let before = {
            let r = inner.repo_mut(repo);
            let hosted = r.hosted.is_some();
            let entry = r
                .issue_mut(pull)
                .filter(|i| i.pull.is_some())
                .unwrap_or_else(|| panic!("no pull request {pull} in {repo}"));
            entry.updated_at = now;
            let p = entry.pull.as_mut().unwrap();
            if hosted {
                assert_eq!(
                    p.head_sha, after,
                    "{repo}'s hosted branch {} is at {}, not at {after}: push first",
                    p.head_ref, p.head_sha
                );
            }
            p.head_sha = after.to_string();
            let before = std::mem::replace(&mut p.announced_sha, after.to_string());
            let head = p.head_ref.clone();
            if !hosted {
                r.branches.insert(head, after.to_string());
            }
            before
        };
        let r = inner.repo(repo);
        let mut payload = Map::new();
        payload.insert("action".into(), json!("synchronize"));
        payload.insert("number".into(), json!(pull));
        payload.insert("before".into(), json!(before));
        payload.insert("after".into(), json!(after));
        payload.insert(
            "pull_request".into(),
            inner.pull_webhook_json(r, r.issue(pull).unwrap()),
        );
        payload.extend(FakeGitHub::envelope(&inner, r, sender));
        Value::Object(payload)
    }

    /// `pull_request.closed`: `sender` closes `pull`, merging it when `merged` (kept).
    pub fn pull_request_closed(&self, repo: &str, pull: u64, merged: bool, sender: &str) -> Value {
        let mut inner = self.lock();
        inner.know(sender);
        let now = inner.now();
        {
            let r = inner.repo_mut(repo);
            let full = r.full_name();
            let entry = r
                .issue_mut(pull)
                .filter(|i| i.pull.is_some())
                .unwrap_or_else(|| panic!("no pull request {pull} in {repo}"));
            entry.state = "closed".to_string();
            entry.closed_at = Some(now);
            entry.updated_at = now;
            let p = entry.pull.as_mut().unwrap();
            if merged {
                p.merged = true;
                p.merged_at = Some(now);
                p.merged_by = Some(sender.to_string());
                p.merge_commit_sha =
                    Some(derived_sha(&format!("merge:{full}:{pull}:{}", p.head_sha)));
            }
        }
        let r = inner.repo(repo);
        let mut payload = Map::new();
        payload.insert("action".into(), json!("closed"));
        payload.insert("number".into(), json!(pull));
        payload.insert(
            "pull_request".into(),
            inner.pull_webhook_json(r, r.issue(pull).unwrap()),
        );
        payload.extend(FakeGitHub::envelope(&inner, r, sender));
        Value::Object(payload)
    }

    /// `pull_request_review.submitted` for a review made with [`FakeGitHub::submit_review`].
    pub fn pull_request_review_submitted(&self, repo: &str, review_id: u64) -> Value {
        self.review_payload(repo, review_id, "submitted", None)
    }

    /// `pull_request_review.dismissed`: `sender` dismisses the review (kept).
    pub fn pull_request_review_dismissed(&self, repo: &str, review_id: u64, sender: &str) -> Value {
        self.review_payload(repo, review_id, "dismissed", Some(sender))
    }

    fn review_payload(
        &self,
        repo: &str,
        review_id: u64,
        action: &str,
        dismisser: Option<&str>,
    ) -> Value {
        let mut inner = self.lock();
        if let Some(sender) = dismisser {
            inner.know(sender);
            let review = inner
                .repo_mut(repo)
                .reviews
                .iter_mut()
                .find(|r| r.id == review_id)
                .unwrap_or_else(|| panic!("no review {review_id} in {repo}"));
            review.state = "DISMISSED".to_string();
        }
        let r = inner.repo(repo);
        let review = r
            .reviews
            .iter()
            .find(|x| x.id == review_id)
            .unwrap_or_else(|| panic!("no review {review_id} in {repo}"));
        let sender = dismisser.unwrap_or(&review.login).to_string();
        let mut payload = Map::new();
        payload.insert("action".into(), json!(action));
        payload.insert("review".into(), inner.review_json(r, review, true));
        payload.insert(
            "pull_request".into(),
            inner.simple_pull_json(r, r.issue(review.pull).unwrap()),
        );
        payload.extend(FakeGitHub::envelope(&inner, r, &sender));
        Value::Object(payload)
    }

    /// `check_run.requested_action`: `sender` pressed the check run's button `identifier`
    /// (one of the `actions` the app set; panics otherwise).
    pub fn check_run_requested_action(
        &self,
        repo: &str,
        check_run_id: u64,
        identifier: &str,
        sender: &str,
    ) -> Value {
        let mut inner = self.lock();
        inner.know(sender);
        let r = inner.repo(repo);
        let run = r
            .check_runs
            .iter()
            .find(|c| c.id == check_run_id)
            .unwrap_or_else(|| panic!("no check run {check_run_id} in {repo}"));
        assert!(
            run.actions
                .iter()
                .any(|a| a.get("identifier").and_then(Value::as_str) == Some(identifier)),
            "check run {check_run_id} has no action {identifier:?}: {:?}",
            run.actions
        );
        let mut payload = Map::new();
        payload.insert("action".into(), json!("requested_action"));
        payload.insert("check_run".into(), inner.check_run_json(r, run, true));
        payload.insert("requested_action".into(), json!({"identifier": identifier}));
        payload.extend(FakeGitHub::envelope(&inner, r, sender));
        Value::Object(payload)
    }

    /// `check_run.rerequested`: `sender` asked to re-run the check run.
    pub fn check_run_rerequested(&self, repo: &str, check_run_id: u64, sender: &str) -> Value {
        let mut inner = self.lock();
        inner.know(sender);
        let r = inner.repo(repo);
        let run = r
            .check_runs
            .iter()
            .find(|c| c.id == check_run_id)
            .unwrap_or_else(|| panic!("no check run {check_run_id} in {repo}"));
        let mut payload = Map::new();
        payload.insert("action".into(), json!("rerequested"));
        payload.insert("check_run".into(), inner.check_run_json(r, run, true));
        payload.extend(FakeGitHub::envelope(&inner, r, sender));
        Value::Object(payload)
    }

    /// `installation.created`: `sender` installed the app (installation `id`, with the
    /// repositories added to it so far).
    pub fn installation_created(&self, id: u64, sender: &str) -> Value {
        let mut inner = self.lock();
        inner.know(sender);
        let installation = inner
            .installations
            .get(&id)
            .unwrap_or_else(|| panic!("no installation {id}"));
        let repositories: Vec<Value> = inner
            .repos
            .values()
            .filter(|r| r.installation == id)
            .map(|r| {
                json!({
                    "id": r.id,
                    "node_id": node_id("R", r.id),
                    "name": r.name,
                    "full_name": r.full_name(),
                    "private": true,
                })
            })
            .collect();
        let mut payload = Map::new();
        payload.insert("action".into(), json!("created"));
        payload.insert("installation".into(), inner.installation_json(installation));
        payload.insert("repositories".into(), json!(repositories));
        payload.insert("requester".into(), Value::Null);
        payload.insert("sender".into(), inner.user(sender));
        Value::Object(payload)
    }

    /// `ping`: sent when the app's webhook is set to `url`.
    pub fn ping(&self, url: &str) -> Value {
        let inner = self.lock();
        let base = inner.base();
        json!({
            "zen": "Keep it logically awesome.",
            "hook_id": HOOK_ID,
            "hook": {
                "type": "App",
                "id": HOOK_ID,
                "name": "web",
                "active": true,
                "events": ["check_run", "issue_comment", "issues", "pull_request", "pull_request_review"],
                "config": {"content_type": "json", "insecure_ssl": "0", "url": url},
                "updated_at": "2026-01-01T00:00:00Z",
                "created_at": "2026-01-01T00:00:00Z",
                "app_id": inner.app_id,
                "deliveries_url": format!("{base}/app/hook/deliveries"),
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

/// What the handler answers.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
}

enum ReplyBody {
    Json(Value),
    Raw(Vec<u8>, String),
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(body),
        }
    }

    fn error(status: u16, message: &str, docs: &str) -> Reply {
        Reply::json(
            status,
            json!({"message": message, "documentation_url": docs, "status": status.to_string()}),
        )
    }

    fn not_found(docs: &str) -> Reply {
        Reply::error(404, "Not Found", docs)
    }

    fn validation(docs: &str, message: &str, errors: Value) -> Reply {
        Reply::json(
            422,
            json!({"message": message, "errors": errors, "documentation_url": docs, "status": "422"}),
        )
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

const DOCS: &str = "https://docs.github.com/rest";

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().starts_with("/git/") {
        return serve_git(inner, method, uri, headers, body).await;
    }
    let mut request = GitHubRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
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
        operation: None,
        status: 0,
    };
    // Off the async threads: a hosted repository is read with git.
    let reply = tokio::task::spawn_blocking(move || {
        let spec = GitHubSpecs::get();
        let mut inner = inner.lock().unwrap();
        inner.refresh_hosted();
        let mut reply = serve(&mut inner, spec, &mut request);
        inner.rate_used += 1;
        let reset = (inner.now() / 3600 + 1) * 3600;
        let used = inner.rate_used.min(5000);
        if !reply
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-ratelimit-remaining"))
        {
            reply = reply
                .header("x-ratelimit-limit", "5000")
                .header("x-ratelimit-remaining", (5000 - used).to_string())
                .header("x-ratelimit-reset", reset.to_string())
                .header("x-ratelimit-used", used.to_string())
                .header("x-ratelimit-resource", "core");
        }
        request.status = reply.status;
        inner.requests.push(request);
        reply
    })
    .await
    .unwrap_or_else(|e| Reply::error(500, &format!("fake: the handler failed: {e}"), DOCS));
    let (bytes, content_type) = match reply.body {
        ReplyBody::Json(value) => (
            value.to_string().into_bytes(),
            Some("application/json; charset=utf-8".to_string()),
        ),
        ReplyBody::Raw(bytes, content_type) => (bytes, Some(content_type)),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let out = response.headers_mut();
    if let Some(content_type) = content_type {
        if let Ok(value) = HeaderValue::from_str(&content_type) {
            out.insert("content-type", value);
        }
    }
    out.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static(API_VERSION),
    );
    out.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    if let Ok(value) = HeaderValue::from_str(&uuid_v4().to_ascii_uppercase()[..23]) {
        out.insert("x-github-request-id", value);
    }
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.append(name, value);
        }
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Git over smart HTTP

/// A git request allowed through, for the CGI.
struct GitAccess {
    full_name: String,
    dir: PathBuf,
    /// `POST …/git-receive-pack`: refs may change.
    receive: bool,
    push_lock: Arc<Mutex<()>>,
    cgi: git_http::CgiRequest,
}

/// What a git request is answered.
struct GitAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `(ref, new sha)` a push changed.
    pushed: Vec<(String, String)>,
    /// A violation to record.
    problem: Option<String>,
}

impl GitAnswer {
    fn text(status: u16, text: &str) -> GitAnswer {
        GitAnswer {
            status,
            headers: vec![(
                "Content-Type".to_string(),
                "text/plain; charset=utf-8".to_string(),
            )],
            body: text.as_bytes().to_vec(),
            pushed: Vec::new(),
            problem: None,
        }
    }

    /// 401 with GitHub's challenge, so that git asks for credentials.
    fn challenge(text: &str) -> GitAnswer {
        let mut answer = GitAnswer::text(401, text);
        answer.headers.push((
            "WWW-Authenticate".to_string(),
            "Basic realm=\"GitHub\"".to_string(),
        ));
        answer
    }
}

/// `/git/{owner}/{name}.git/{info/refs|git-upload-pack|git-receive-pack}`: authenticated as
/// GitHub does, then `git http-backend` on a blocking thread.
async fn serve_git(
    inner: Arc<Mutex<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = GitHubRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
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
        operation: None,
        status: 0,
    };
    let access = git_access(&inner.lock().unwrap(), &request);
    let answer = match access {
        Err(answer) => answer,
        Ok(access) => tokio::task::spawn_blocking(move || run_git(access))
            .await
            .unwrap_or_else(|e| {
                let mut answer = GitAnswer::text(500, "the fake's git failed");
                answer.problem = Some(format!("git http-backend: {e}"));
                answer
            }),
    };
    {
        let mut inner = inner.lock().unwrap();
        if let Some(problem) = &answer.problem {
            inner
                .violations
                .push(format!("{} {}: {problem}", request.method, request.path));
        }
        if !answer.pushed.is_empty() {
            let full_name = git_repo_name(&inner, &request.path);
            for (name, sha) in &answer.pushed {
                inner
                    .pushes
                    .push((full_name.clone(), name.clone(), sha.clone()));
            }
            inner.refresh_hosted();
        }
        request.status = answer.status;
        inner.git_requests.push(request);
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// `owner`, `name` and the CGI's `PATH_INFO` of a git path.
fn parse_git_path(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/git/")?;
    let (owner, rest) = rest.split_once('/')?;
    let (name, tail) = rest.split_once(".git/")?;
    let path_info = format!("/{tail}");
    (!owner.is_empty()
        && !name.is_empty()
        && !name.contains('/')
        && git_http::SMART_PATHS.contains(&path_info.as_str()))
    .then(|| (owner.to_string(), name.to_string(), path_info))
}

/// The repository's `owner/name` as the fake spells it.
fn git_repo_name(inner: &Inner, path: &str) -> String {
    parse_git_path(path)
        .and_then(|(owner, name, _)| {
            inner
                .repos
                .get(&format!("{owner}/{name}").to_ascii_lowercase())
                .map(Repo::full_name)
        })
        .unwrap_or_default()
}

/// GitHub's checks of a git request: a smart HTTP path, Basic credentials whose password is a
/// live installation token (else 401 with the challenge), a hosted repository that token
/// reaches (else 404) and `contents` permission for the service (else 403).
fn git_access(inner: &Inner, request: &GitHubRequest) -> Result<GitAccess, GitAnswer> {
    let Some((owner, name, path_info)) = parse_git_path(&request.path) else {
        return Err(GitAnswer::text(404, "Not Found\n"));
    };
    let service = if path_info == "/info/refs" {
        url::form_urlencoded::parse(request.query.as_bytes())
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    } else {
        path_info.trim_start_matches('/').to_string()
    };
    let push = match service.as_str() {
        "git-upload-pack" => false,
        "git-receive-pack" => true,
        _ => {
            return Err(GitAnswer::text(
                403,
                "Please upgrade your git client.\nGitHub.com no longer supports git over dumb-http: https://github.com/blog/809-git-dumb-http-transport-to-be-turned-off-in-90-days\n",
            ))
        }
    };
    let authorization = request.header("authorization").unwrap_or("");
    let (scheme, encoded) = authorization.split_once(' ').unwrap_or(("", ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(GitAnswer::challenge(""));
    }
    let credentials = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    let password = credentials.split_once(':').map(|(_, p)| p).unwrap_or("");
    let now = inner.now();
    let Some(token) = inner
        .tokens
        .get(password)
        .filter(|t| t.expires_at > now && !password.is_empty())
    else {
        return Err(GitAnswer::challenge(
            "Invalid username or token. Password authentication is not supported for Git operations.\n",
        ));
    };
    let key = format!("{owner}/{name}").to_ascii_lowercase();
    let Some(repo) = inner.repos.get(&key).filter(|r| {
        r.hosted.is_some()
            && r.installation == token.installation
            && token
                .repositories
                .as_ref()
                .is_none_or(|names| names.contains(&key))
    }) else {
        return Err(GitAnswer::text(404, "Repository not found.\n"));
    };
    let wanted = if push { "write" } else { "read" };
    if token
        .permissions
        .get("contents")
        .is_none_or(|have| level(have) < level(wanted))
    {
        return Err(GitAnswer::text(
            403,
            &format!(
                "Permission to {}.git denied to {}.\n",
                repo.full_name(),
                Inner::bot_login()
            ),
        ));
    }
    let header = |name: &str| request.header(name).map(str::to_string);
    Ok(GitAccess {
        full_name: repo.full_name(),
        dir: repo.hosted.clone().unwrap_or_default(),
        receive: push && request.method.eq_ignore_ascii_case("POST"),
        push_lock: inner.push_lock.clone(),
        cgi: git_http::CgiRequest {
            method: request.method.clone(),
            path_info,
            query: request.query.clone(),
            content_type: header("content-type"),
            content_encoding: header("content-encoding"),
            git_protocol: header("git-protocol"),
            remote_user: Inner::bot_login(),
            body: request.body.clone(),
        },
    })
}

/// Runs the CGI (blocking); for a push, the refs before and after tell what it changed.
fn run_git(access: GitAccess) -> GitAnswer {
    let _pushing = access
        .receive
        .then(|| access.push_lock.lock().unwrap_or_else(|e| e.into_inner()));
    let before = access.receive.then(|| git_http::refs(&access.dir));
    let result = git_http::http_backend(&access.dir, &access.cgi);
    let pushed = before
        .map(|before| git_http::changed_refs(&before, &git_http::refs(&access.dir)))
        .unwrap_or_default();
    match result {
        Ok(cgi) => {
            let problem = (!cgi.success || cgi.status >= 400).then(|| {
                format!(
                    "git http-backend answered {} for {}: {}",
                    cgi.status,
                    access.full_name,
                    cgi.stderr.trim()
                )
            });
            GitAnswer {
                status: cgi.status,
                headers: cgi.headers,
                body: cgi.body,
                pushed,
                problem,
            }
        }
        Err(e) => {
            let mut answer = GitAnswer::text(500, "the fake's git failed\n");
            answer.problem = Some(format!("cannot run git http-backend: {e}"));
            answer.pushed = pushed;
            answer
        }
    }
}

/// The media types GitHub answers with JSON, and the raw ones the contents API serves.
fn accept_problem(accept: Option<&str>) -> Option<String> {
    let Some(accept) = accept else {
        return Some(
            "no `Accept` header; GitHub wants `Accept: application/vnd.github+json`".to_string(),
        );
    };
    let fits = accept.split(',').any(|item| {
        let media = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media == "application/json"
            || (media.starts_with("application/vnd.github")
                && (media.ends_with("+json")
                    || media.ends_with(".raw")
                    || media.ends_with(".object")))
    });
    (!fits).then(|| {
        format!("`Accept: {accept}` is not a GitHub media type (want application/vnd.github+json)")
    })
}

fn wants_raw(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/vnd.github.raw"))
}

fn serve(inner: &mut Inner, spec: &GitHubSpecs, request: &mut GitHubRequest) -> Reply {
    let user_agent = request.header("user-agent").map(str::to_string);
    if user_agent.as_deref().is_none_or(|ua| ua.trim().is_empty()) {
        inner.violations.push(format!(
            "{} {}: no `User-Agent` header",
            request.method, request.path
        ));
        return Reply::error(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
            DOCS,
        );
    }
    if request.path == "/graphql" {
        return graphql(inner, request);
    }
    let accept = request.header("accept").map(str::to_string);
    if let Some(problem) = accept_problem(accept.as_deref()) {
        inner
            .violations
            .push(format!("{} {}: {problem}", request.method, request.path));
    }
    match request.header("x-github-api-version") {
        None => inner.violations.push(format!(
            "{} {}: no `X-GitHub-Api-Version` header (want {API_VERSION})",
            request.method, request.path
        )),
        Some(version) if version != API_VERSION => {
            inner.violations.push(format!(
                "{} {}: `X-GitHub-Api-Version: {version}`, the description is for {API_VERSION}",
                request.method, request.path
            ));
            return Reply::error(
                400,
                &format!("API version {version} is not supported."),
                "https://docs.github.com/rest/overview/api-versions",
            );
        }
        Some(_) => {}
    }
    let Some(op) = spec.operation(&request.method, &request.path) else {
        let why = if spec.has_path(&request.path) {
            "the description has no such method on this path"
        } else {
            "not in GitHub's REST description"
        };
        inner
            .violations
            .push(format!("{} {}: {why}", request.method, request.path));
        return Reply::not_found(DOCS);
    };
    request.operation = Some(op.key());
    let docs = op
        .operation
        .pointer("/externalDocs/url")
        .and_then(Value::as_str)
        .unwrap_or(DOCS)
        .to_string();
    let reply = serve_operation(inner, spec, request, &op, &docs, accept.as_deref());
    // Hold the answer to the description.
    let body = match &reply.body {
        ReplyBody::Json(value) => Some(value),
        ReplyBody::Raw(..) => return reply,
    };
    let problems = spec.check_response(&op, reply.status, body);
    if problems.is_empty() {
        return reply;
    }
    let message = format!(
        "fake: the answer to {} breaks the description: {}",
        op.key(),
        problems.join("; ")
    );
    inner.violations.push(message.clone());
    Reply::error(500, &message, DOCS)
}

fn serve_operation(
    inner: &mut Inner,
    spec: &GitHubSpecs,
    request: &GitHubRequest,
    op: &Operation<'_>,
    docs: &str,
    accept: Option<&str>,
) -> Reply {
    let served = SERVED
        .iter()
        .any(|(m, t)| *m == op.method && *t == op.template);
    let problems = spec.check_request(
        op,
        &request.query,
        request.header("content-type"),
        &request.body,
    );
    let all = problems.all();
    inner.violations.extend(all.iter().cloned());
    if !problems.path.is_empty() {
        return Reply::not_found(docs);
    }
    if !problems.parse.is_empty() {
        return Reply::error(400, "Problems parsing JSON", docs);
    }
    if !problems.invalid.is_empty() {
        return Reply::validation(docs, "Invalid request.", json!([]));
    }
    if !served {
        inner.violations.push(format!(
            "{}: in the description, but the fake does not serve it",
            op.key()
        ));
        return Reply::not_found(docs);
    }
    let body = problems.body.unwrap_or(Value::Null);
    check_early_retry(inner, request);
    let app_call = op.template.starts_with("/app/");
    // Authentication.
    let authorization = request.header("authorization").unwrap_or("").to_string();
    let (scheme, credential) = authorization
        .split_once(' ')
        .map(|(s, c)| (s.to_ascii_lowercase(), c.trim().to_string()))
        .unwrap_or_default();
    let token = if app_call {
        if scheme != "bearer" {
            return Reply::error(401, "A JSON web token could not be decoded", DOCS);
        }
        if let Err(message) = verify_jwt(inner, &credential) {
            return Reply::error(401, &message, DOCS);
        }
        None
    } else {
        if authorization.is_empty() {
            return Reply::error(401, "Requires authentication", docs);
        }
        let now = inner.now();
        match inner.tokens.get(&credential) {
            Some(token) if (scheme == "bearer" || scheme == "token") && token.expires_at > now => {
                Some(credential.clone())
            }
            _ => return Reply::error(401, "Bad credentials", DOCS),
        }
    };
    // Scripted answers.
    let installation = token
        .as_ref()
        .and_then(|t| inner.tokens.get(t))
        .map(|t| t.installation);
    if let Some(reply) = scripted_reply(inner, &request.path, installation, docs) {
        return reply;
    }
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(request.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match (op.method.as_str(), op.template) {
        ("POST", "/app/installations/{installation_id}/access_tokens") => {
            create_token(inner, op, &body, docs)
        }
        ("GET", "/app/installations") => list_installations(inner, request, &query),
        ("GET", "/installation/repositories") => {
            list_installation_repositories(inner, request, &token.unwrap_or_default(), &query)
        }
        _ => {
            let token = token.unwrap_or_default();
            let owner = op.params.get("owner").cloned().unwrap_or_default();
            let name = op.params.get("repo").cloned().unwrap_or_default();
            let key = format!("{owner}/{name}").to_ascii_lowercase();
            let Some(grant) = inner.tokens.get(&token) else {
                return Reply::error(401, "Bad credentials", DOCS);
            };
            let reachable = inner.repos.get(&key).is_some_and(|r| {
                r.installation == grant.installation
                    && grant
                        .repositories
                        .as_ref()
                        .is_none_or(|names| names.contains(&key))
            });
            if !reachable {
                return Reply::not_found(docs);
            }
            let permissions = grant.permissions.clone();
            repo_call(
                inner,
                op,
                &key,
                &body,
                &query,
                &permissions,
                docs,
                accept,
                request,
            )
        }
    }
}

/// The scripted answer for the next request under a prefix, if one is due.
fn scripted_reply(
    inner: &mut Inner,
    path: &str,
    installation: Option<u64>,
    docs: &str,
) -> Option<Reply> {
    let index = inner
        .scripted
        .iter()
        .position(|(prefix, _)| path.starts_with(prefix.as_str()))?;
    let (prefix, scripted) = inner.scripted.remove(index);
    let now_unix = inner.now();
    Some(match scripted {
        Scripted::Secondary(seconds) => {
            inner.waits.push(Wait {
                prefix,
                until: Instant::now() + Duration::from_secs(seconds),
                clock_offset: inner.clock_offset,
                why: format!("secondary rate limit's retry-after of {seconds} s"),
            });
            Reply::error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            )
            .header("retry-after", seconds.to_string())
        }
        Scripted::Exhausted(seconds) => {
            inner.waits.push(Wait {
                prefix,
                until: Instant::now() + Duration::from_secs(seconds),
                clock_offset: inner.clock_offset,
                why: format!("exhausted rate limit's reset in {seconds} s"),
            });
            let who = installation
                .map(|id| format!("installation ID {id}"))
                .unwrap_or_else(|| "this app".to_string());
            Reply::error(
                403,
                &format!("API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID."),
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
            )
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-used", "5000")
            .header("x-ratelimit-reset", (now_unix + seconds as i64).to_string())
            .header("x-ratelimit-resource", "core")
        }
        Scripted::Fail(status) => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            Reply::error(status, reason, docs)
        }
    })
}

/// A request under a prefix whose scripted wait is not over (on the real clock plus however
/// far the fake clock was moved on since) is a violation.
fn check_early_retry(inner: &mut Inner, request: &GitHubRequest) {
    let now = Instant::now();
    let offset = inner.clock_offset;
    inner.waits.retain(|w| !w.left(now, offset).is_zero());
    if let Some(wait) = inner
        .waits
        .iter()
        .find(|w| request.path.starts_with(&w.prefix))
    {
        let message = format!(
            "{} {}: retried {:?} before the {} was over",
            request.method,
            request.path,
            wait.left(now, offset),
            wait.why
        );
        inner.violations.push(message);
    }
}

fn verify_jwt(inner: &Inner, jwt: &str) -> Result<(), String> {
    const UNDECODABLE: &str = "A JSON web token could not be decoded";
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(UNDECODABLE.to_string());
    };
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| UNDECODABLE.to_string())
    };
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| UNDECODABLE.to_string())?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(UNDECODABLE.to_string());
    }
    let signed = format!("{}.{}", parts[0], parts[1]);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &inner.public_key,
    );
    key.verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| UNDECODABLE.to_string())?;
    let claims: Value =
        serde_json::from_slice(&decode(claims)?).map_err(|_| UNDECODABLE.to_string())?;
    let issuer = match claims.get("iss") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if issuer != inner.app_id.to_string() {
        return Err("'Issuer' claim ('iss') must be an Integer".to_string());
    }
    let now = inner.now();
    let Some(iat) = claims.get("iat").and_then(Value::as_i64) else {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
                .to_string(),
        );
    };
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string());
    };
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past"
                .to_string(),
        );
    }
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string());
    }
    if exp - iat > 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    Ok(())
}

fn create_token(inner: &mut Inner, op: &Operation<'_>, body: &Value, docs: &str) -> Reply {
    let Some(id) = op
        .params
        .get("installation_id")
        .and_then(|i| i.parse::<u64>().ok())
    else {
        return Reply::not_found(docs);
    };
    let Some(installation) = inner.installations.get(&id) else {
        return Reply::not_found(docs);
    };
    let granted = installation.permissions.clone();
    let mut permissions = granted.clone();
    if let Some(asked) = body.get("permissions").and_then(Value::as_object) {
        permissions.clear();
        for (name, wanted) in asked {
            let wanted = wanted.as_str().unwrap_or("");
            if granted
                .get(name)
                .is_none_or(|have| level(have) < level(wanted))
            {
                return Reply::validation(
                    docs,
                    "The permissions requested are not granted to this installation.",
                    json!([]),
                );
            }
            permissions.insert(name.clone(), wanted.to_string());
        }
    }
    let mut repositories: Option<Vec<String>> = None;
    let names = body.get("repositories").and_then(Value::as_array);
    let ids = body.get("repository_ids").and_then(Value::as_array);
    if names.is_some() || ids.is_some() {
        let mut chosen = Vec::new();
        for name in names.into_iter().flatten().filter_map(Value::as_str) {
            let found = inner
                .repos
                .iter()
                .find(|(_, r)| r.installation == id && r.name.eq_ignore_ascii_case(name));
            match found {
                Some((key, _)) => chosen.push(key.clone()),
                None => {
                    return Reply::validation(
                        docs,
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                        json!([]),
                    )
                }
            }
        }
        for rid in ids.into_iter().flatten().filter_map(Value::as_u64) {
            let found = inner
                .repos
                .iter()
                .find(|(_, r)| r.installation == id && r.id == rid);
            match found {
                Some((key, _)) => chosen.push(key.clone()),
                None => {
                    return Reply::validation(
                        docs,
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                        json!([]),
                    )
                }
            }
        }
        repositories = Some(chosen);
    }
    inner.tokens_issued += 1;
    let extra = if inner.tokens_issued % 2 == 1 {
        0
    } else {
        1 + random_bytes(1)[0] as usize
    };
    let token = format!("ghs_{}", random_alnum(36 + extra));
    let expires_at = inner.now() + 3600;
    let any_repos = inner.repos.values().any(|r| r.installation == id);
    let mut answer = json!({
        "token": token,
        "expires_at": timestamp(expires_at),
        "permissions": permissions,
        "repository_selection": if any_repos { "selected" } else { "all" },
    });
    if let Some(chosen) = &repositories {
        answer["repositories"] = json!(chosen
            .iter()
            .filter_map(|key| inner.repos.get(key))
            .map(|r| inner.repository(r))
            .collect::<Vec<_>>());
    }
    inner.tokens.insert(
        token,
        Token {
            installation: id,
            expires_at,
            permissions,
            repositories,
        },
    );
    Reply::json(201, answer)
}

/// `per_page` (1..=100, default 30) and `page` (default 1).
fn paging(query: &BTreeMap<String, String>) -> (usize, usize) {
    let per_page = query
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    (per_page, page)
}

/// One page of `items` and its `Link` header (when there is more than one page).
fn paginate(
    items: Vec<Value>,
    base: &str,
    path: &str,
    query: &BTreeMap<String, String>,
) -> (Vec<Value>, Option<String>) {
    let (per_page, page) = paging(query);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let shown: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    if last == 1 {
        return (shown, None);
    }
    let link = |n: usize, rel: &str| {
        let mut q = query.clone();
        q.insert("per_page".into(), per_page.to_string());
        q.insert("page".into(), n.to_string());
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        format!("<{base}{path}?{encoded}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    (shown, Some(links.join(", ")))
}

fn list_installations(
    inner: &mut Inner,
    request: &GitHubRequest,
    query: &BTreeMap<String, String>,
) -> Reply {
    let items: Vec<Value> = inner
        .installations
        .values()
        .map(|i| inner.installation_json(i))
        .collect();
    let (shown, link) = paginate(items, &inner.base(), &request.path, query);
    let reply = Reply::json(200, json!(shown));
    match link {
        Some(link) => reply.header("link", link),
        None => reply,
    }
}

/// `GET /installation/repositories`: the repositories the token's installation reaches (those
/// it was narrowed to, when it was).
fn list_installation_repositories(
    inner: &Inner,
    request: &GitHubRequest,
    token: &str,
    query: &BTreeMap<String, String>,
) -> Reply {
    let Some(grant) = inner.tokens.get(token) else {
        return Reply::error(401, "Bad credentials", DOCS);
    };
    let items: Vec<Value> = inner
        .repos
        .iter()
        .filter(|(key, r)| {
            r.installation == grant.installation
                && grant
                    .repositories
                    .as_ref()
                    .is_none_or(|names| names.contains(key))
        })
        .map(|(_, r)| inner.repository(r))
        .collect();
    let total = items.len();
    let (shown, link) = paginate(items, &inner.base(), &request.path, query);
    let reply = Reply::json(
        200,
        json!({
            "total_count": total,
            "repository_selection": if total == 0 { "all" } else { "selected" },
            "repositories": shown,
        }),
    );
    match link {
        Some(link) => reply.header("link", link),
        None => reply,
    }
}

#[allow(clippy::too_many_arguments)]
fn repo_call(
    inner: &mut Inner,
    op: &Operation<'_>,
    key: &str,
    body: &Value,
    query: &BTreeMap<String, String>,
    permissions: &BTreeMap<String, String>,
    docs: &str,
    accept: Option<&str>,
    request: &GitHubRequest,
) -> Reply {
    let may = |name: &str, wanted: &str| {
        permissions
            .get(name)
            .is_some_and(|have| level(have) >= level(wanted))
    };
    let forbidden = || Reply::error(403, "Resource not accessible by integration", docs);
    let number = |name: &str| op.params.get(name).and_then(|v| v.parse::<u64>().ok());
    let now = inner.now();
    match (op.method.as_str(), op.template) {
        ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission") => {
            if !may("metadata", "read") {
                return forbidden();
            }
            let username = op.params.get("username").cloned().unwrap_or_default();
            if !inner.users.contains(&username.to_ascii_lowercase()) {
                return Reply::not_found(docs);
            }
            let repo = &inner.repos[key];
            let role = repo
                .permissions
                .get(&username.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| "none".to_string());
            let legacy = match role.as_str() {
                "admin" => "admin",
                "maintain" | "write" => "write",
                "triage" | "read" => "read",
                _ => "none",
            };
            let mut user = inner.user(&username);
            user["permissions"] = json!({
                "admin": role == "admin",
                "maintain": level_of_role(&role) >= 4,
                "push": level_of_role(&role) >= 3,
                "triage": level_of_role(&role) >= 2,
                "pull": level_of_role(&role) >= 1,
            });
            user["role_name"] = json!(role);
            Reply::json(
                200,
                json!({"permission": legacy, "role_name": role, "user": user}),
            )
        }
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            let Some(n) = number("issue_number") else {
                return Reply::not_found(docs);
            };
            let Some(is_pull) = inner.repos[key].issue(n).map(|i| i.pull.is_some()) else {
                return Reply::not_found(docs);
            };
            if !(may("issues", "write") || (is_pull && may("pull_requests", "write"))) {
                return forbidden();
            }
            let id = inner.next_id();
            let text = body.get("body").and_then(Value::as_str).unwrap_or("");
            let repo = inner.repos.get_mut(key).unwrap();
            repo.comments.push(Comment {
                id,
                issue: n,
                body: text.to_string(),
                author: Inner::bot_login(),
                via_app: true,
                created_at: now,
                updated_at: now,
            });
            if let Some(issue) = repo.issue_mut(n) {
                issue.updated_at = now;
            }
            let repo = &inner.repos[key];
            let comment = inner.comment_json(repo, repo.comments.last().unwrap());
            let location = comment["url"].as_str().unwrap_or("").to_string();
            Reply::json(201, comment).header("location", location)
        }
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
            let Some(id) = number("comment_id") else {
                return Reply::not_found(docs);
            };
            let repo = inner.repos.get_mut(key).unwrap();
            let Some(index) = repo.comments.iter().position(|c| c.id == id) else {
                return Reply::not_found(docs);
            };
            let is_pull = repo
                .issue(repo.comments[index].issue)
                .is_some_and(|i| i.pull.is_some());
            if !(may("issues", "write") || (is_pull && may("pull_requests", "write"))) {
                return forbidden();
            }
            // An app edits only its own comments.
            if repo.comments[index].author != Inner::bot_login() {
                return forbidden();
            }
            let comment = &mut repo.comments[index];
            comment.body = body
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            comment.updated_at = now;
            let repo = &inner.repos[key];
            Reply::json(200, inner.comment_json(repo, &repo.comments[index]))
        }
        ("GET", "/repos/{owner}/{repo}/issues") => {
            if !may("issues", "read") {
                return forbidden();
            }
            let repo = &inner.repos[key];
            let state = query.get("state").map(String::as_str).unwrap_or("open");
            let labels: Vec<String> = query
                .get("labels")
                .map(|l| {
                    l.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let since = query.get("since").and_then(|s| parse_timestamp(s));
            let creator = query.get("creator").map(|c| c.to_ascii_lowercase());
            let mut chosen: Vec<&Issue> = repo
                .issues
                .iter()
                .filter(|i| state == "all" || i.state == state)
                .filter(|i| {
                    labels
                        .iter()
                        .all(|l| i.labels.iter().any(|have| have.to_ascii_lowercase() == *l))
                })
                .filter(|i| since.is_none_or(|s| i.updated_at >= s))
                .filter(|i| {
                    creator
                        .as_ref()
                        .is_none_or(|c| i.author.to_ascii_lowercase() == *c)
                })
                .collect();
            let sort = query.get("sort").map(String::as_str).unwrap_or("created");
            chosen.sort_by_key(|i| match sort {
                "updated" => (i.updated_at, i.number),
                "comments" => (
                    repo.comments.iter().filter(|c| c.issue == i.number).count() as i64,
                    i.number,
                ),
                _ => (i.created_at, i.number),
            });
            if query.get("direction").map(String::as_str) != Some("asc") {
                chosen.reverse();
            }
            let items: Vec<Value> = chosen.iter().map(|i| inner.issue_json(repo, i)).collect();
            let (shown, link) = paginate(items, &inner.base(), &request.path, query);
            let reply = Reply::json(200, json!(shown));
            match link {
                Some(link) => reply.header("link", link),
                None => reply,
            }
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}") => {
            let repo = &inner.repos[key];
            let Some(issue) = number("issue_number").and_then(|n| repo.issue(n)) else {
                return Reply::not_found(docs);
            };
            if !(may("issues", "read") || (issue.pull.is_some() && may("pull_requests", "read"))) {
                return forbidden();
            }
            Reply::json(200, inner.issue_json(repo, issue))
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/events") => {
            let repo = &inner.repos[key];
            let Some(issue) = number("issue_number").and_then(|n| repo.issue(n)) else {
                return Reply::not_found(docs);
            };
            if !(may("issues", "read") || (issue.pull.is_some() && may("pull_requests", "read"))) {
                return forbidden();
            }
            let base = inner.base();
            let full = repo.full_name();
            let items: Vec<Value> = repo
                .issue_events
                .iter()
                .filter(|e| e.issue == issue.number)
                .map(|e| {
                    json!({
                        "id": e.id,
                        "node_id": node_id("LE", e.id),
                        "url": format!("{base}/repos/{full}/issues/events/{}", e.id),
                        "actor": inner.user(&e.actor),
                        "event": "labeled",
                        "commit_id": null,
                        "commit_url": null,
                        "created_at": timestamp(e.created_at),
                        "performed_via_github_app": null,
                        "label": {"name": e.label, "color": "ededed"},
                    })
                })
                .collect();
            let (shown, link) = paginate(items, &base, &request.path, query);
            let reply = Reply::json(200, json!(shown));
            match link {
                Some(link) => reply.header("link", link),
                None => reply,
            }
        }
        ("GET", "/repos/{owner}/{repo}/issues/comments") => {
            if !(may("issues", "read") || may("pull_requests", "read")) {
                return forbidden();
            }
            let repo = &inner.repos[key];
            let since = query.get("since").and_then(|s| parse_timestamp(s));
            let mut chosen: Vec<&Comment> = repo
                .comments
                .iter()
                .filter(|c| since.is_none_or(|s| c.updated_at >= s))
                .collect();
            // GitHub: `created` by default; `direction` only with `sort`, `desc` unless told.
            let sort = query.get("sort").map(String::as_str);
            chosen.sort_by_key(|c| match sort {
                Some("updated") => (c.updated_at, c.id),
                _ => (c.created_at, c.id),
            });
            let descending =
                sort.is_some() && query.get("direction").map(String::as_str) != Some("asc");
            if descending {
                chosen.reverse();
            }
            let items: Vec<Value> = chosen.iter().map(|c| inner.comment_json(repo, c)).collect();
            let (shown, link) = paginate(items, &inner.base(), &request.path, query);
            let reply = Reply::json(200, json!(shown));
            match link {
                Some(link) => reply.header("link", link),
                None => reply,
            }
        }
        ("POST", "/repos/{owner}/{repo}/pulls") => {
            if !may("pull_requests", "write") {
                return forbidden();
            }
            create_pull(inner, key, body, docs)
        }
        ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            if !may("pull_requests", "write") {
                return forbidden();
            }
            let Some(n) = number("pull_number") else {
                return Reply::not_found(docs);
            };
            let repo = inner.repos.get_mut(key).unwrap();
            if let Some(base) = body.get("base").and_then(Value::as_str) {
                if !repo.branches.contains_key(base) {
                    return Reply::validation(
                        docs,
                        "Validation Failed",
                        json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
                    );
                }
            }
            let base_sha = body
                .get("base")
                .and_then(Value::as_str)
                .map(|b| repo.branch_sha(b));
            let Some(issue) = repo.issue_mut(n).filter(|i| i.pull.is_some()) else {
                return Reply::not_found(docs);
            };
            if let Some(title) = body.get("title").and_then(Value::as_str) {
                issue.title = title.to_string();
            }
            if let Some(text) = body.get("body").and_then(Value::as_str) {
                issue.body = Some(text.to_string());
            }
            let pull = issue.pull.as_mut().unwrap();
            if let Some(base) = body.get("base").and_then(Value::as_str) {
                pull.base_ref = base.to_string();
                pull.base_sha = base_sha.unwrap_or_default();
            }
            if let Some(modify) = body.get("maintainer_can_modify").and_then(Value::as_bool) {
                pull.maintainer_can_modify = modify;
            }
            match body.get("state").and_then(Value::as_str) {
                Some("closed") if issue.state == "open" => {
                    issue.state = "closed".to_string();
                    issue.closed_at = Some(now);
                }
                Some("open") if issue.state == "closed" && !pull.merged => {
                    issue.state = "open".to_string();
                    issue.closed_at = None;
                }
                _ => {}
            }
            issue.updated_at = now;
            let repo = &inner.repos[key];
            Reply::json(200, inner.pull_json(repo, repo.issue(n).unwrap()))
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            if !may("pull_requests", "read") {
                return forbidden();
            }
            let repo = &inner.repos[key];
            match number("pull_number")
                .and_then(|n| repo.issue(n))
                .filter(|i| i.pull.is_some())
            {
                Some(issue) => Reply::json(200, inner.pull_json(repo, issue)),
                None => Reply::not_found(docs),
            }
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews") => {
            if !may("pull_requests", "read") {
                return forbidden();
            }
            let repo = &inner.repos[key];
            let Some(n) =
                number("pull_number").filter(|n| repo.issue(*n).is_some_and(|i| i.pull.is_some()))
            else {
                return Reply::not_found(docs);
            };
            let items: Vec<Value> = repo
                .reviews
                .iter()
                .filter(|r| r.pull == n)
                .map(|r| inner.review_json(repo, r, false))
                .collect();
            let (shown, link) = paginate(items, &inner.base(), &request.path, query);
            let reply = Reply::json(200, json!(shown));
            match link {
                Some(link) => reply.header("link", link),
                None => reply,
            }
        }
        ("POST", "/repos/{owner}/{repo}/check-runs") => {
            if !may("checks", "write") {
                return forbidden();
            }
            create_check_run(inner, key, body, docs)
        }
        ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}") => {
            if !may("checks", "write") {
                return forbidden();
            }
            let Some(id) = number("check_run_id") else {
                return Reply::not_found(docs);
            };
            let repo = inner.repos.get_mut(key).unwrap();
            let Some(run) = repo.check_runs.iter_mut().find(|r| r.id == id) else {
                return Reply::not_found(docs);
            };
            apply_check_run(run, body, now);
            let repo = &inner.repos[key];
            let run = repo.check_runs.iter().find(|r| r.id == id).unwrap();
            Reply::json(200, inner.check_run_json(repo, run, false))
        }
        ("GET", "/repos/{owner}/{repo}/contents/{path}") => {
            if !may("contents", "read") {
                return forbidden();
            }
            get_content(inner, key, op, query, docs, accept)
        }
        ("GET", "/repos/{owner}/{repo}/pulls") => {
            if !may("pull_requests", "read") {
                return forbidden();
            }
            list_pulls(inner, key, query, request)
        }
        ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}") => {
            if !may("contents", "read") {
                return forbidden();
            }
            let repo = &inner.repos[key];
            let sha = op.params.get("commit_sha").cloned().unwrap_or_default();
            match repo
                .hosted
                .as_deref()
                .and_then(|dir| git_http::commit(dir, &sha.to_ascii_lowercase()))
            {
                Some(commit) => Reply::json(200, inner.git_commit_json(repo, &commit)),
                None => Reply::not_found(docs),
            }
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments") => {
            if !may("pull_requests", "read") {
                return forbidden();
            }
            let repo = &inner.repos[key];
            let (Some(n), Some(review_id)) = (number("pull_number"), number("review_id")) else {
                return Reply::not_found(docs);
            };
            if !repo
                .reviews
                .iter()
                .any(|r| r.id == review_id && r.pull == n)
            {
                return Reply::not_found(docs);
            }
            let items: Vec<Value> = repo
                .review_comments
                .iter()
                .filter(|c| c.review == review_id)
                .map(|c| inner.review_comment_json(repo, c))
                .collect();
            let (shown, link) = paginate(items, &inner.base(), &request.path, query);
            let reply = Reply::json(200, json!(shown));
            match link {
                Some(link) => reply.header("link", link),
                None => reply,
            }
        }
        _ => Reply::not_found(docs),
    }
}

fn level_of_role(role: &str) -> u8 {
    match role {
        "admin" => 5,
        "maintain" => 4,
        "write" => 3,
        "triage" => 2,
        "read" => 1,
        _ => 0,
    }
}

/// `GET /repos/{owner}/{repo}/pulls`: `state` (open), `head` (`owner:branch`; without the
/// owner GitHub ignores it, which is a violation here), `base`, `sort`, `direction`, paged.
fn list_pulls(
    inner: &mut Inner,
    key: &str,
    query: &BTreeMap<String, String>,
    request: &GitHubRequest,
) -> Reply {
    let head = match query.get("head") {
        Some(head) => match head.split_once(':') {
            Some((owner, branch)) => Some((owner.to_ascii_lowercase(), branch.to_string())),
            None => {
                inner.violations.push(format!(
                    "GET /repos/{{owner}}/{{repo}}/pulls: `head={head}` names no owner; GitHub \
                     wants `user:ref-name` or `organization:ref-name` and ignores the filter"
                ));
                None
            }
        },
        None => None,
    };
    let repo = &inner.repos[key];
    let state = query.get("state").map(String::as_str).unwrap_or("open");
    let base = query.get("base");
    let mut chosen: Vec<&Issue> = repo
        .issues
        .iter()
        .filter(|i| i.pull.is_some())
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| {
            let pull = i.pull.as_ref().unwrap();
            head.as_ref().is_none_or(|(owner, branch)| {
                *owner == repo.owner.to_ascii_lowercase() && pull.head_ref == *branch
            }) && base.is_none_or(|b| pull.base_ref == *b)
        })
        .collect();
    let sort = query.get("sort").map(String::as_str).unwrap_or("created");
    chosen.sort_by_key(|i| match sort {
        "updated" => (i.updated_at, i.number),
        _ => (i.created_at, i.number),
    });
    // Newest first for `created` (the default), else oldest first, unless told.
    let descending = match query.get("direction").map(String::as_str) {
        Some(direction) => direction == "desc",
        None => sort == "created",
    };
    if descending {
        chosen.reverse();
    }
    let items: Vec<Value> = chosen
        .iter()
        .map(|i| inner.simple_pull_json(repo, i))
        .collect();
    let (shown, link) = paginate(items, &inner.base(), &request.path, query);
    let reply = Reply::json(200, json!(shown));
    match link {
        Some(link) => reply.header("link", link),
        None => reply,
    }
}

fn create_pull(inner: &mut Inner, key: &str, body: &Value, docs: &str) -> Reply {
    let now = inner.now();
    let issue_id = inner.next_id();
    let pull_id = inner.next_id();
    let head = body.get("head").and_then(Value::as_str).unwrap_or("");
    let base = body.get("base").and_then(Value::as_str).unwrap_or("");
    let repo = inner.repos.get_mut(key).unwrap();
    let head_branch = match head.split_once(':') {
        Some((owner, branch)) if owner.eq_ignore_ascii_case(&repo.owner) => branch,
        Some(_) => {
            return Reply::validation(
                docs,
                "Validation Failed",
                json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
            )
        }
        None => head,
    }
    .to_string();
    let title = body.get("title").and_then(Value::as_str);
    let from_issue = body.get("issue").and_then(Value::as_u64);
    if title.is_none() && from_issue.is_none() {
        return Reply::validation(
            docs,
            "Validation Failed",
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        );
    }
    if !repo.branches.contains_key(base) {
        return Reply::validation(
            docs,
            "Validation Failed",
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        );
    }
    let no_commits = || {
        Reply::validation(
            docs,
            "Validation Failed",
            json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("No commits between {base} and {head_branch}")}]),
        )
    };
    if head_branch == base {
        return no_commits();
    }
    if let Some(dir) = &repo.hosted {
        let Some(head_sha) = repo.branches.get(&head_branch) else {
            return Reply::validation(
                docs,
                "Validation Failed",
                json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
            );
        };
        if git_http::is_ancestor(dir, head_sha, &repo.branches[base]) {
            return no_commits();
        }
    }
    let exists = repo.issues.iter().any(|i| {
        i.state == "open"
            && i.pull
                .as_ref()
                .is_some_and(|p| p.head_ref == head_branch && p.base_ref == base)
    });
    if exists {
        return Reply::validation(
            docs,
            "Validation Failed",
            json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("A pull request already exists for {}:{head_branch}.", repo.owner)}]),
        );
    }
    let head_sha = repo.branch_sha(&head_branch);
    let base_sha = repo.branch_sha(base);
    let pull = Pull {
        id: pull_id,
        head_ref: head_branch,
        announced_sha: head_sha.clone(),
        head_sha,
        base_ref: base.to_string(),
        base_sha,
        draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
        merged: false,
        merged_at: None,
        merged_by: None,
        merge_commit_sha: None,
        maintainer_can_modify: body
            .get("maintainer_can_modify")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let number = match from_issue {
        Some(n) => {
            let Some(issue) = repo.issue_mut(n).filter(|i| i.pull.is_none()) else {
                return Reply::validation(
                    docs,
                    "Validation Failed",
                    json!([{"resource": "PullRequest", "field": "issue", "code": "invalid"}]),
                );
            };
            issue.pull = Some(pull);
            issue.updated_at = now;
            n
        }
        None => {
            let number = repo.issues.len() as u64 + 1;
            repo.issues.push(Issue {
                id: issue_id,
                number,
                title: title.unwrap_or_default().to_string(),
                body: body.get("body").and_then(Value::as_str).map(str::to_string),
                author: Inner::bot_login(),
                state: "open".to_string(),
                state_reason: None,
                labels: Vec::new(),
                created_at: now,
                updated_at: now,
                closed_at: None,
                pull: Some(pull),
            });
            number
        }
    };
    let repo = &inner.repos[key];
    let value = inner.pull_json(repo, repo.issue(number).unwrap());
    let location = value["url"].as_str().unwrap_or("").to_string();
    Reply::json(201, value).header("location", location)
}

fn apply_check_run(run: &mut CheckRun, body: &Value, now: i64) {
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    if let Some(name) = text("name") {
        run.name = name;
    }
    if let Some(url) = text("details_url") {
        run.details_url = Some(url);
    }
    if let Some(id) = text("external_id") {
        run.external_id = id;
    }
    if let Some(at) = text("started_at").and_then(|t| parse_timestamp(&t)) {
        run.started_at = Some(at);
    }
    if let Some(status) = text("status") {
        run.status = status;
    }
    if let Some(conclusion) = text("conclusion") {
        run.conclusion = Some(conclusion);
        run.status = "completed".to_string();
    }
    if let Some(at) = text("completed_at").and_then(|t| parse_timestamp(&t)) {
        run.completed_at = Some(at);
    }
    if run.status == "completed" && run.completed_at.is_none() {
        run.completed_at = Some(now);
    }
    if let Some(output) = body.get("output").and_then(Value::as_object) {
        for (k, v) in output {
            run.output.insert(k.clone(), v.clone());
        }
    }
    if let Some(actions) = body.get("actions").and_then(Value::as_array) {
        run.actions = actions.clone();
    }
}

fn create_check_run(inner: &mut Inner, key: &str, body: &Value, docs: &str) -> Reply {
    let now = inner.now();
    let completed = body.get("status").and_then(Value::as_str) == Some("completed")
        || body.get("completed_at").is_some();
    if completed && body.get("conclusion").is_none() {
        inner.violations.push(
            "POST /repos/{owner}/{repo}/check-runs body: `conclusion` is required with `status: completed` or `completed_at`".to_string(),
        );
        return Reply::validation(
            docs,
            "Invalid request.\n\n\"conclusion\" wasn't supplied.",
            json!([]),
        );
    }
    let head_sha = body
        .get("head_sha")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let unknown_in_git = inner.repos[key]
        .hosted
        .as_deref()
        .is_some_and(|dir| !git_http::has_commit(dir, &head_sha));
    if head_sha.len() != 40 || !head_sha.chars().all(|c| c.is_ascii_hexdigit()) || unknown_in_git {
        return Reply::validation(
            docs,
            &format!("No commit found for SHA: {head_sha}"),
            json!([]),
        );
    }
    let id = inner.next_id();
    let suite_id = {
        let repo = &inner.repos[key];
        repo.check_runs
            .iter()
            .find(|r| r.head_sha == head_sha)
            .map(|r| r.suite_id)
    };
    let suite_id = match suite_id {
        Some(s) => s,
        None => inner.next_id(),
    };
    let mut run = CheckRun {
        id,
        suite_id,
        head_sha,
        name: String::new(),
        status: "queued".to_string(),
        conclusion: None,
        started_at: Some(now),
        completed_at: None,
        external_id: String::new(),
        details_url: None,
        output: Map::new(),
        actions: Vec::new(),
    };
    apply_check_run(&mut run, body, now);
    let repo = inner.repos.get_mut(key).unwrap();
    repo.check_runs.push(run);
    let repo = &inner.repos[key];
    Reply::json(
        201,
        inner.check_run_json(repo, repo.check_runs.last().unwrap(), false),
    )
}

fn get_content(
    inner: &Inner,
    key: &str,
    op: &Operation<'_>,
    query: &BTreeMap<String, String>,
    docs: &str,
    accept: Option<&str>,
) -> Reply {
    let repo = &inner.repos[key];
    let path = op
        .params
        .get("path")
        .cloned()
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let git_ref = query
        .get("ref")
        .cloned()
        .unwrap_or_else(|| repo.default_branch.clone());
    let base = inner.base();
    let full = repo.full_name();
    let entry = |path: &str, kind: &str, content: Option<&[u8]>| -> Value {
        let name = path.rsplit('/').next().unwrap_or(path);
        let sha = match content {
            Some(bytes) => git_blob_sha(bytes),
            None => derived_sha(&format!("tree:{git_ref}:{path}")),
        };
        let url = format!("{base}/repos/{full}/contents/{path}?ref={git_ref}");
        let html = format!(
            "{WEB_URL}/{full}/{}/{git_ref}/{path}",
            if kind == "dir" { "tree" } else { "blob" }
        );
        let git = format!(
            "{base}/repos/{full}/git/{}/{sha}",
            if kind == "dir" { "trees" } else { "blobs" }
        );
        json!({
            "type": kind,
            "size": content.map(<[u8]>::len).unwrap_or(0),
            "name": name,
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git,
            "html_url": html,
            "download_url": content.map(|_| format!("https://raw.githubusercontent.com/{full}/{git_ref}/{path}")),
            "_links": {"self": url, "git": git, "html": html},
        })
    };
    if let Some(bytes) = repo.files.get(&(git_ref.clone(), path.clone())) {
        if wants_raw(accept) {
            return Reply {
                status: 200,
                headers: Vec::new(),
                body: ReplyBody::Raw(bytes.clone(), "text/plain; charset=utf-8".to_string()),
            };
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut wrapped = String::new();
        for chunk in encoded.as_bytes().chunks(60) {
            wrapped.push_str(&String::from_utf8_lossy(chunk));
            wrapped.push('\n');
        }
        let mut value = entry(&path, "file", Some(bytes));
        value["content"] = json!(wrapped);
        value["encoding"] = json!("base64");
        return Reply::json(200, value);
    }
    let prefix = format!("{path}/");
    let mut children: BTreeMap<String, Option<&Vec<u8>>> = BTreeMap::new();
    for ((file_ref, file_path), bytes) in &repo.files {
        if *file_ref != git_ref {
            continue;
        }
        if let Some(rest) = file_path.strip_prefix(&prefix) {
            match rest.split_once('/') {
                Some((dir, _)) => {
                    children.insert(format!("{prefix}{dir}"), None);
                }
                None => {
                    children.insert(file_path.clone(), Some(bytes));
                }
            }
        }
    }
    if children.is_empty() {
        return Reply::not_found(docs);
    }
    let items: Vec<Value> = children
        .iter()
        .map(|(p, content)| match content {
            Some(bytes) => entry(p, "file", Some(bytes)),
            None => entry(p, "dir", None),
        })
        .collect();
    Reply::json(200, json!(items))
}

// ---------------------------------------------------------------------------------------------
// GraphQL (markPullRequestReadyForReview only)

const PULL_REQUEST_FIELDS: &[&str] = &[
    "id",
    "number",
    "isDraft",
    "state",
    "title",
    "url",
    "headRefOid",
    "__typename",
];

fn graphql_error(message: &str) -> Reply {
    Reply::json(200, json!({"errors": [{"message": message}]}))
}

fn graphql(inner: &mut Inner, request: &GitHubRequest) -> Reply {
    let problem = |inner: &mut Inner, message: String| {
        inner.violations.push(format!("POST /graphql: {message}"));
    };
    if request.method != "POST" {
        problem(
            inner,
            format!("GraphQL is POST only, not {}", request.method),
        );
        return Reply::error(404, "Not Found", "https://docs.github.com/graphql");
    }
    let authorization = request.header("authorization").unwrap_or("");
    let (scheme, credential) = authorization.split_once(' ').unwrap_or(("", ""));
    let now = inner.now();
    let Some(token) = inner
        .tokens
        .get(credential.trim())
        .filter(|t| {
            (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
                && t.expires_at > now
        })
        .map(|t| {
            (
                t.installation,
                t.permissions.clone(),
                t.repositories.clone(),
            )
        })
    else {
        return Reply::json(
            401,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"}),
        );
    };
    check_early_retry(inner, request);
    if let Some(reply) = scripted_reply(
        inner,
        &request.path,
        Some(token.0),
        "https://docs.github.com/graphql",
    ) {
        return reply;
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            problem(inner, "the body is not a JSON object".to_string());
            return Reply::json(
                400,
                json!({"message": "Problems parsing JSON", "documentation_url": "https://docs.github.com/graphql"}),
            );
        }
    };
    for key in body.as_object().into_iter().flat_map(|m| m.keys()) {
        if !["query", "variables", "operationName"].contains(&key.as_str()) {
            problem(inner, format!("`{key}` is not a GraphQL request member"));
        }
    }
    let Some(query) = body.get("query").and_then(Value::as_str) else {
        problem(inner, "no `query` string".to_string());
        return graphql_error("A query attribute must be specified and must be a string.");
    };
    let variables = body.get("variables").cloned().unwrap_or(json!({}));
    if !variables.is_object() {
        problem(inner, "`variables` is not an object".to_string());
    }
    let trimmed = query.trim_start();
    if !trimmed.starts_with("mutation") || !query.contains("markPullRequestReadyForReview") {
        problem(
            inner,
            "the fake serves only the markPullRequestReadyForReview mutation".to_string(),
        );
        return graphql_error("The fake serves only mutation markPullRequestReadyForReview");
    }
    let id_re = regex::Regex::new(r#"pullRequestId\s*:\s*(?:"([^"]*)"|\$(\w+))"#).unwrap();
    let pull_id = match id_re.captures(query) {
        Some(c) => match (c.get(1), c.get(2)) {
            (Some(literal), _) => Some(literal.as_str().to_string()),
            (None, Some(var)) => variables
                .get(var.as_str())
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        },
        None => None,
    };
    let Some(pull_id) = pull_id else {
        problem(
            inner,
            "markPullRequestReadyForReview without input.pullRequestId (a literal or a variable given in `variables`)".to_string(),
        );
        return graphql_error(
            "Argument 'pullRequestId' on InputObject 'MarkPullRequestReadyForReviewInput' is required. Expected type ID!",
        );
    };
    let selection_re = regex::Regex::new(r"pullRequest\s*\{([^{}]*)\}").unwrap();
    let fields: Vec<String> = selection_re
        .captures(query)
        .and_then(|c| c.get(1))
        .map(|m| {
            m.as_str()
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for field in &fields {
        if !PULL_REQUEST_FIELDS.contains(&field.as_str()) {
            problem(
                inner,
                format!("the fake does not know the PullRequest field `{field}`"),
            );
            return graphql_error(&format!(
                "Field '{field}' doesn't exist on type 'PullRequest'"
            ));
        }
    }
    let (installation, permissions, repositories) = token;
    let found = inner.repos.iter().find_map(|(key, repo)| {
        let issue = repo
            .issues
            .iter()
            .find(|i| i.pull.is_some() && node_id("PR", i.id) == pull_id)?;
        Some((key.clone(), issue.number))
    });
    let reachable = found.as_ref().is_some_and(|(key, _)| {
        inner.repos[key].installation == installation
            && repositories.as_ref().is_none_or(|r| r.contains(key))
    });
    let Some((key, number)) = found.filter(|_| reachable) else {
        return Reply::json(
            200,
            json!({
                "data": {"markPullRequestReadyForReview": null},
                "errors": [{
                    "type": "NOT_FOUND",
                    "path": ["markPullRequestReadyForReview"],
                    "locations": [{"line": 1, "column": 1}],
                    "message": format!("Could not resolve to a node with the global id of '{pull_id}'."),
                }],
            }),
        );
    };
    if permissions
        .get("pull_requests")
        .is_none_or(|p| level(p) < level("write"))
    {
        return Reply::json(
            200,
            json!({
                "data": {"markPullRequestReadyForReview": null},
                "errors": [{
                    "type": "FORBIDDEN",
                    "path": ["markPullRequestReadyForReview"],
                    "locations": [{"line": 1, "column": 1}],
                    "message": "Resource not accessible by integration",
                }],
            }),
        );
    }
    let repo = inner.repos.get_mut(&key).unwrap();
    let issue = repo.issue_mut(number).unwrap();
    if let Some(pull) = issue.pull.as_mut() {
        pull.draft = false;
    }
    issue.updated_at = now;
    let repo = &inner.repos[&key];
    let issue = repo.issue(number).unwrap();
    let pull = issue.pull.as_ref().unwrap();
    let mut shown = Map::new();
    for field in &fields {
        let value = match field.as_str() {
            "id" => json!(pull_id),
            "number" => json!(issue.number),
            "isDraft" => json!(pull.draft),
            "state" => json!(if pull.merged {
                "MERGED"
            } else if issue.state == "open" {
                "OPEN"
            } else {
                "CLOSED"
            }),
            "title" => json!(issue.title),
            "url" => json!(format!(
                "{WEB_URL}/{}/pull/{}",
                repo.full_name(),
                issue.number
            )),
            "headRefOid" => json!(pull.head_sha),
            _ => json!("PullRequest"),
        };
        shown.insert(field.clone(), value);
    }
    let mut payload = Map::new();
    if query.contains("clientMutationId") {
        payload.insert(
            "clientMutationId".into(),
            variables
                .pointer("/input/clientMutationId")
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    payload.insert("pullRequest".into(), Value::Object(shown));
    Reply::json(
        200,
        json!({"data": {"markPullRequestReadyForReview": payload}}),
    )
}
