//! One error kind for everything the application refuses or fails at, mapped once to the
//! CLI's exit codes and (next) the API's HTTP statuses. Messages name the file, field, id
//! or URL at fault; a hint says what to do.

use flightdeck_core::template::TemplateError;
use flightdeck_engine::EngineError;
use flightdeck_store::{ArtifactError, StoreError};
use flightdeck_workspace::{GitError, WorkspaceError};

/// Exit codes of the command line (the public contract).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const AWAITING_APPROVAL: i32 = 3;
    pub const BLOCKED: i32 = 4;
    pub const CANCELLED: i32 = 5;
    /// Stopped by SIGINT (128 + 2), as shells report it.
    pub const INTERRUPTED: i32 = 130;
    /// Stopped by SIGTERM (128 + 15).
    pub const TERMINATED: i32 = 143;
}

/// What went wrong, as far as the caller is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is wrong: a bad flag, file, field or value. Nothing was changed.
    BadInput,
    /// An id, digest or file that does not exist.
    NotFound,
    /// The caller may not do this (not an eligible approver, say). Nothing was recorded.
    Forbidden,
    /// The target is not in a state that allows it (already decided, already finished, being
    /// driven by another process). Nothing was changed.
    Conflict,
    /// No or bad credentials (the server's; the CLI never has this).
    Unauthenticated,
    /// The process was asked to stop (SIGINT, SIGTERM); the interruption is recorded.
    Interrupted { signal: i32 },
    /// Something failed while doing what was asked (git, the store, a container engine).
    Failed,
}

impl ErrorKind {
    /// The CLI's exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadInput
            | ErrorKind::NotFound
            | ErrorKind::Forbidden
            | ErrorKind::Conflict
            | ErrorKind::Unauthenticated => exit::BAD_INPUT,
            ErrorKind::Interrupted { signal } => 128 + signal,
            ErrorKind::Failed => exit::FAILED,
        }
    }

    /// The API's HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadInput => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Interrupted { .. } => 503,
            ErrorKind::Failed => 500,
        }
    }

    /// The `kind` of the API's error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Interrupted { .. } => "interrupted",
            ErrorKind::Failed => "failed",
        }
    }
}

/// An error as a person (or a script) sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, hint: Option<String>) -> AppError {
        AppError {
            kind,
            message: message.into(),
            hint,
        }
    }

    pub fn bad_input(message: impl Into<String>, hint: impl Into<Option<String>>) -> AppError {
        AppError::new(ErrorKind::BadInput, message, hint.into())
    }

    pub fn not_found(message: impl Into<String>, hint: impl Into<Option<String>>) -> AppError {
        AppError::new(ErrorKind::NotFound, message, hint.into())
    }

    pub fn failed(message: impl Into<String>) -> AppError {
        AppError::new(ErrorKind::Failed, message, None)
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

fn hint(text: &str) -> Option<String> {
    Some(text.to_string())
}

impl From<TemplateError> for AppError {
    fn from(e: TemplateError) -> AppError {
        let h = match &e {
            TemplateError::MissingParam { param, .. } => {
                Some(format!("pass it with `-p {param}=VALUE`"))
            }
            TemplateError::UnknownParam { .. } => {
                hint("only the params the template declares under [params.NAME] may be given")
            }
            TemplateError::UnknownPlaceholder { .. } => {
                hint("declare the param under [params.NAME], or use {{mission}} for the mission id")
            }
            _ => {
                hint("the template format is described in flightdeck's docs/reference/templates.md")
            }
        };
        AppError::bad_input(e.to_string(), h)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match &e {
            StoreError::NotFlightdeck { .. } => AppError::bad_input(
                e.to_string(),
                hint("point --data-dir or --database-url at a flightdeck database (a new path creates one)"),
            ),
            StoreError::TooNew { .. } => {
                AppError::bad_input(e.to_string(), hint("upgrade flightdeck to read this database"))
            }
            StoreError::UnsupportedUrl(_) => AppError::bad_input(
                e.to_string(),
                hint("use sqlite://PATH (add ?mode=ro to only read) or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"),
            ),
            StoreError::Unreachable { .. } => AppError::bad_input(
                e.to_string(),
                hint("check the URL's host, port, user and database, and that the server runs and lets this user in (FLIGHTDECK_DATABASE_URL or --database-url)"),
            ),
            StoreError::UnsupportedUrlParameter { .. } => AppError::bad_input(
                e.to_string(),
                hint("the only parameter is mode: ?mode=ro opens the database read-only"),
            ),
            StoreError::Missing { .. } => AppError::new(
                ErrorKind::NotFound,
                e.to_string(),
                hint("check --data-dir / --database-url; a command that records something creates the database"),
            ),
            StoreError::Unmigrated { .. } => AppError::bad_input(
                e.to_string(),
                hint("run a command that records something (flightdeck run …) without ?mode=ro first"),
            ),
            StoreError::ReadOnly => AppError::bad_input(
                e.to_string(),
                hint("this command records events: drop ?mode=ro from --database-url, or use a writable data directory"),
            ),
            StoreError::UnknownMission { mission } => AppError::new(
                ErrorKind::NotFound,
                e.to_string(),
                Some(format!("`flightdeck missions` lists the missions; {mission} is not one of them")),
            ),
            StoreError::Conflict { .. } => AppError::new(ErrorKind::Conflict, e.to_string(), None),
            _ => AppError::failed(e.to_string()),
        }
    }
}

impl From<flightdeck_store::AnchorError> for AppError {
    fn from(e: flightdeck_store::AnchorError) -> AppError {
        use flightdeck_store::AnchorError;
        match &e {
            AnchorError::KeyUnreadable { .. } | AnchorError::KeyInvalid { .. } => {
                AppError::bad_input(
                    e.to_string(),
                    hint("[audit] signing_key is a path (relative to the data directory) to a key made with `openssl genpkey -algorithm ed25519 -out signing.pem`"),
                )
            }
            AnchorError::Broken { .. } => AppError::new(
                ErrorKind::Failed,
                e.to_string(),
                hint("the anchor file was changed outside flightdeck; `flightdeck audit verify --all` says where, and nothing more is anchored until it is restored"),
            ),
            _ => AppError::failed(e.to_string()),
        }
    }
}

impl From<ArtifactError> for AppError {
    fn from(e: ArtifactError) -> AppError {
        match &e {
            ArtifactError::NotFound(_) => AppError::not_found(
                e.to_string(),
                hint("digests appear in `flightdeck show` and `flightdeck timeline`"),
            ),
            _ => AppError::failed(e.to_string()),
        }
    }
}

impl From<GitError> for AppError {
    fn from(e: GitError) -> AppError {
        match &e {
            GitError::UnknownRef { .. } => AppError::bad_input(
                e.to_string(),
                hint("--base takes a branch, tag or commit id"),
            ),
            GitError::NotARepo(_) => AppError::bad_input(
                e.to_string(),
                hint("pass --repo with a directory inside a git repository"),
            ),
            _ => AppError::failed(e.to_string()),
        }
    }
}

impl From<WorkspaceError> for AppError {
    fn from(e: WorkspaceError) -> AppError {
        match e {
            WorkspaceError::SandboxMissing => AppError::bad_input(
                e.to_string(),
                hint("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`), or set `runtime = \"local-unsandboxed\"` under [workspace] in the template (recorded in the timeline)"),
            ),
            WorkspaceError::Git(g) => g.into(),
            other => AppError::failed(other.to_string()),
        }
    }
}

impl From<flightdeck_policy::PolicyError> for AppError {
    fn from(e: flightdeck_policy::PolicyError) -> AppError {
        AppError::bad_input(
            e.to_string(),
            hint("the policy format is described in flightdeck's docs/reference/policy.md; `flightdeck init` writes a commented default"),
        )
    }
}

impl From<flightdeck_github::GitHubError> for AppError {
    /// GitHub refusing or failing a call: the call (never a credential) and what to check.
    fn from(e: flightdeck_github::GitHubError) -> AppError {
        use flightdeck_github::GitHubError;
        let h = match &e {
            GitHubError::Key(_) => hint("[github] private_key_file is the `.pem` GitHub generated for the App"),
            GitHubError::InvalidApiUrl => hint("[github] api_url is \"https://api.github.com\", or \"https://HOST/api/v3\" for GitHub Enterprise Server"),
            GitHubError::Api { status: 401, .. } => hint("GitHub refused the App's credentials: check [github] app_id and that private_key_file is a current key of that App"),
            GitHubError::Api { status: 403 | 404, .. } => hint("the App may not be installed on the repository, or lacks a permission (contents, pull requests, issues, checks: read and write)"),
            GitHubError::RateLimited { .. } => hint("GitHub rate-limits the App per hour; it is tried again later"),
            GitHubError::Timeout { .. } | GitHubError::Connection { .. } => hint("check that this machine reaches [github] api_url"),
            _ => None,
        };
        AppError::new(ErrorKind::Failed, e.to_string(), h)
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> AppError {
        AppError::failed(e.to_string())
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> AppError {
        match e {
            EngineError::Template(t) => t.into(),
            EngineError::Store(s) => s.into(),
            EngineError::Anchor(a) => a.into(),
            EngineError::Artifact(a) => a.into(),
            EngineError::Git(g) => g.into(),
            EngineError::Workspace(w) => w.into(),
            EngineError::Policy(p) => p.into(),
            EngineError::UnknownMission(_) | EngineError::AmbiguousMission { .. } => {
                AppError::not_found(
                    e.to_string(),
                    hint(
                        "`flightdeck missions` lists missions; a unique prefix of an id is enough",
                    ),
                )
            }
            EngineError::AlreadyFinished { .. } => AppError::new(
                ErrorKind::Conflict,
                e.to_string(),
                hint("a finished mission never changes; start a new one with `flightdeck run`"),
            ),
            EngineError::Busy { ref id, .. } => {
                let h = format!("wait for that process to finish, or stop the mission with `flightdeck cancel {id}`");
                AppError::new(ErrorKind::Conflict, e.to_string(), Some(h))
            }
            EngineError::NotARepo(_) => AppError::bad_input(
                e.to_string(),
                hint("pass --repo with a directory inside a git repository (`git init` makes one)"),
            ),
            EngineError::RepoNotHere { .. } => AppError::new(
                ErrorKind::Failed,
                e.to_string(),
                hint("run a worker where the repository is, or start missions for the fleet from a URL (`run --remote URL`, `[repos.NAME]`) that every worker can fetch"),
            ),
            EngineError::Unsupported(_) => AppError::bad_input(e.to_string(), None),
            EngineError::SecretMissing { ref name, .. } => {
                let h = format!("nothing ran; give it a value in the installation config: [secrets.{name}] with `env = \"VAR\"` (a variable of the flightdeck process) or `file = \"/path\"`, at least 8 characters");
                AppError::bad_input(e.to_string(), Some(h))
            }
            EngineError::Forge(_) => AppError::new(
                ErrorKind::Failed,
                e.to_string(),
                hint("every worker and server that drives missions from GitHub needs [github] in its config and a way to reach GitHub; `flightdeck resume MISSION` tries again"),
            ),
            EngineError::BadFork(_) => AppError::bad_input(
                e.to_string(),
                hint("`flightdeck timeline MISSION` lists the seqs to fork at"),
            ),
            EngineError::ModelConfig { message, hint } => AppError::bad_input(message, hint),
            EngineError::BadBudget { ref id, .. } => {
                let h = format!("nothing was recorded; write DIM=AMOUNT (usd, tokens, tool_calls, model_calls, wall_seconds), e.g. `flightdeck budget {id} --add usd=1.5`; `flightdeck show {id}` shows the limits");
                AppError::bad_input(e.to_string(), Some(h))
            }
            EngineError::UnknownApproval(_) => AppError::not_found(
                e.to_string(),
                hint("`flightdeck approvals` lists approval ids (a-<mission ulid>-<n>)"),
            ),
            EngineError::ApprovalRefused { ref id, .. } => {
                let h = format!("nothing was recorded; `flightdeck approvals --pending` shows who may decide {id}, `flightdeck people` who is who, and --as says who you are");
                AppError::new(ErrorKind::Forbidden, e.to_string(), Some(h))
            }
            EngineError::ApprovalClosed { ref mission, .. } => {
                let h = format!("`flightdeck show {mission}` shows who decided what");
                AppError::new(ErrorKind::Conflict, e.to_string(), Some(h))
            }
            EngineError::Interrupted { ref id, ref reason } => {
                let signal = if reason.contains("SIGINT") { 2 } else { 15 };
                let h = format!(
                    "the interruption is recorded; continue it with `flightdeck resume {id}`"
                );
                AppError::new(ErrorKind::Interrupted { signal }, e.to_string(), Some(h))
            }
            EngineError::Refused(_) => AppError::new(ErrorKind::Conflict, e.to_string(), None),
            other => AppError::failed(other.to_string()),
        }
    }
}
