//! Errors as the user sees them: a message naming the culprit, a `hint:` where one helps,
//! and the contract's exit code.

use flightdeck_core::template::TemplateError;
use flightdeck_engine::EngineError;
use flightdeck_store::{ArtifactError, StoreError};
use flightdeck_workspace::{GitError, WorkspaceError};

/// Exit codes (CONTRACT.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const AWAITING_APPROVAL: i32 = 3;
    pub const BLOCKED: i32 = 4;
    pub const CANCELLED: i32 = 5;
}

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    pub code: i32,
}

impl CliError {
    pub fn bad_input(message: impl Into<String>, hint: impl Into<Option<String>>) -> CliError {
        CliError {
            message: message.into(),
            hint: hint.into(),
            code: exit::BAD_INPUT,
        }
    }

    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            code: exit::FAILED,
        }
    }
}

fn hint(text: &str) -> Option<String> {
    Some(text.to_string())
}

impl From<TemplateError> for CliError {
    fn from(e: TemplateError) -> CliError {
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
        CliError::bad_input(e.to_string(), h)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        match &e {
            StoreError::NotFlightdeck { .. } => CliError::bad_input(
                e.to_string(),
                hint("point --data-dir or --database-url at a flightdeck database (a new path creates one)"),
            ),
            StoreError::TooNew { .. } => CliError::bad_input(e.to_string(), hint("upgrade flightdeck to read this database")),
            StoreError::UnsupportedUrl(_) => CliError::bad_input(
                e.to_string(),
                hint("use sqlite://PATH; the PostgreSQL backend is not in this build yet"),
            ),
            _ => CliError::failed(e.to_string()),
        }
    }
}

impl From<ArtifactError> for CliError {
    fn from(e: ArtifactError) -> CliError {
        match &e {
            ArtifactError::NotFound(_) => CliError::bad_input(
                e.to_string(),
                hint("digests appear in `flightdeck show` and `flightdeck timeline`"),
            ),
            _ => CliError::failed(e.to_string()),
        }
    }
}

impl From<GitError> for CliError {
    fn from(e: GitError) -> CliError {
        match &e {
            GitError::UnknownRef { .. } => CliError::bad_input(
                e.to_string(),
                hint("--base takes a branch, tag or commit id"),
            ),
            GitError::NotARepo(_) => CliError::bad_input(
                e.to_string(),
                hint("pass --repo with a directory inside a git repository"),
            ),
            _ => CliError::failed(e.to_string()),
        }
    }
}

impl From<WorkspaceError> for CliError {
    fn from(e: WorkspaceError) -> CliError {
        match e {
            WorkspaceError::SandboxMissing => CliError::bad_input(
                e.to_string(),
                hint("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`), or set `runtime = \"local-unsandboxed\"` under [workspace] in the template (recorded in the timeline)"),
            ),
            WorkspaceError::Git(g) => g.into(),
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> CliError {
        match e {
            EngineError::Template(t) => t.into(),
            EngineError::Store(s) => s.into(),
            EngineError::Artifact(a) => a.into(),
            EngineError::Git(g) => g.into(),
            EngineError::Workspace(w) => w.into(),
            EngineError::UnknownMission(_) | EngineError::AmbiguousMission { .. } => {
                CliError::bad_input(
                    e.to_string(),
                    hint(
                        "`flightdeck missions` lists missions; a unique prefix of an id is enough",
                    ),
                )
            }
            EngineError::AlreadyFinished { .. } => CliError::bad_input(
                e.to_string(),
                hint("a finished mission never changes; start a new one with `flightdeck run`"),
            ),
            EngineError::Busy { ref id, .. } => {
                let h = format!("wait for that process to finish, or stop the mission with `flightdeck cancel {id}`");
                CliError::bad_input(e.to_string(), Some(h))
            }
            EngineError::NotARepo(_) => CliError::bad_input(
                e.to_string(),
                hint("pass --repo with a directory inside a git repository (`git init` makes one)"),
            ),
            EngineError::Unsupported(_) => CliError::bad_input(e.to_string(), None),
            EngineError::SecretMissing { ref name, .. } => {
                let h = format!("nothing ran; give it a value in the installation config: [secrets.{name}] with `env = \"VAR\"` (a variable of the flightdeck process) or `file = \"/path\"`, at least 8 characters");
                CliError::bad_input(e.to_string(), Some(h))
            }
            EngineError::BadFork(_) => CliError::bad_input(
                e.to_string(),
                Some("`flightdeck timeline MISSION` lists the seqs to fork at".to_string()),
            ),
            EngineError::ModelConfig { message, hint } => CliError::bad_input(message, hint),
            EngineError::BadBudget { ref id, .. } => {
                let h = format!("nothing was recorded; write DIM=AMOUNT (usd, tokens, tool_calls, model_calls, wall_seconds), e.g. `flightdeck budget {id} --add usd=1.5`; `flightdeck show {id}` shows the limits");
                CliError::bad_input(e.to_string(), Some(h))
            }
            EngineError::Policy(p) => p.into(),
            EngineError::UnknownApproval(_) => CliError::bad_input(
                e.to_string(),
                hint("`flightdeck approvals` lists approval ids (a-<mission ulid>-<n>)"),
            ),
            EngineError::ApprovalRefused { ref id, .. } => {
                let h = format!("nothing was recorded; `flightdeck approvals --pending` shows who may decide {id}, and --as says who you are");
                CliError::bad_input(e.to_string(), Some(h))
            }
            EngineError::ApprovalClosed { ref mission, .. } => {
                let h = format!("`flightdeck show {mission}` shows who decided what");
                CliError::bad_input(e.to_string(), Some(h))
            }
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<flightdeck_policy::PolicyError> for CliError {
    fn from(e: flightdeck_policy::PolicyError) -> CliError {
        CliError::bad_input(
            e.to_string(),
            hint("the policy format is described in flightdeck's docs/reference/policy.md; `flightdeck init` writes a commented default"),
        )
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::failed(e.to_string())
    }
}
