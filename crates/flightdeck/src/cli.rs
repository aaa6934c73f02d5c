//! The command line (CONTRACT.md, "Commands").

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "flightdeck",
    version,
    about = "A control plane for autonomous software engineers: missions, policy gates, sandboxed workspaces and a hash-chained timeline.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Where missions, artifacts and workspaces live
    #[arg(long, global = true, env = "FLIGHTDECK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Installation config (default: <data-dir>/config.toml, optional)
    #[arg(long, global = true, env = "FLIGHTDECK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Event store (default: sqlite://<data-dir>/flightdeck.db)
    #[arg(
        long,
        global = true,
        env = "FLIGHTDECK_DATABASE_URL",
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// Who is acting (default: config [identity].default, else git config user.email)
    #[arg(
        long = "as",
        global = true,
        env = "FLIGHTDECK_USER",
        value_name = "IDENTITY"
    )]
    pub identity: Option<String>,
    /// Machine output on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write .flightdeck/policy.toml and .flightdeck/missions/example.toml if absent
    Init {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// Create a mission from a template and run it until it ends or parks
    Run {
        /// A name under <repo>/.flightdeck/missions/NAME.toml, or a path to a .toml
        template: String,
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// Base commit (branch, tag or commit id)
        #[arg(long, default_value = "HEAD", value_name = "REF")]
        base: String,
        /// A template param
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Create the mission and run it in the background (on PostgreSQL: queue it for
        /// the workers)
        #[arg(long)]
        detach: bool,
        /// Create the mission and leave it queued for a worker (`flightdeck worker`,
        /// `flightdeck serve`) on any store; implies --detach
        #[arg(long)]
        queue: bool,
        /// A repository by URL (fetched into <data-dir>/repos); --base names its commit
        #[arg(long, value_name = "URL", conflicts_with = "repo")]
        remote: Option<String>,
    },
    /// List missions, newest first
    Missions {
        /// How many to list
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A mission's summary
    Show { mission: String },
    /// A mission's events
    Timeline {
        mission: String,
        /// Keep printing new events until the mission finishes
        #[arg(long)]
        follow: bool,
    },
    /// Print an artifact's bytes
    Artifact { digest: String },
    /// Approvals, with mission, gate, required count and who has approved
    Approvals {
        /// Only approvals still waiting for decisions
        #[arg(long)]
        pending: bool,
    },
    /// Approve a gate as the acting identity (--as)
    Approve {
        /// The approval id (a-…), as `flightdeck approvals` lists it
        approval: String,
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },
    /// Deny a gate as the acting identity (--as); the mission fails
    Deny {
        /// The approval id (a-…), as `flightdeck approvals` lists it
        approval: String,
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },
    /// A mission's workspace by hand, for debugging a template's environment
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Ask the repository's policy
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Continue a parked or interrupted mission
    Resume { mission: String },
    /// Raise a mission's budget (recorded with who did it); `resume` then continues it
    Budget {
        mission: String,
        /// DIM=AMOUNT to add: usd, tokens, tool_calls, model_calls or wall_seconds
        #[arg(long = "add", value_name = "DIM=AMOUNT", required = true)]
        add: Vec<String>,
    },
    /// Cancel a mission; its workspace is cleaned up
    Cancel { mission: String },
    /// Drive the engine again from a mission's timeline and report the first divergence
    /// (exit 0 same, 1 diverged). Verify serves recorded results; nothing executes
    Replay {
        mission: String,
        /// Run the tool calls for real in a fresh worktree and compare their results
        #[arg(long)]
        reexecute: bool,
        /// The repository to read today's template and policy from (default: the recorded one)
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// Today's template, when it is not the repository's file of the recorded name
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
    },
    /// A new mission from a mission's events 1..SEQ, then live (the original is untouched)
    Fork {
        mission: String,
        #[arg(long, value_name = "SEQ")]
        at: u64,
        /// A model ref that replaces the template's pin (its fallbacks are dropped)
        #[arg(long, value_name = "REF")]
        model: Option<String>,
        /// A template file that replaces the mission's
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
    },
    /// Check and export the tamper-evident record
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The people directory: each person's names per channel, and the teams
    People,
    /// Missions, success rate, median lead time (created → published), cost per mission,
    /// by template and by day
    Metrics {
        /// Only missions created in the last DAYS days
        #[arg(long, value_name = "DAYS")]
        since: Option<u32>,
        /// Only this template's missions
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
    },
    /// The HTTP API (and, with --workers, the scheduler that continues missions by themselves)
    Serve {
        /// Address to listen on; one other machines can reach needs `[server] auth = "required"`
        #[arg(long, default_value = "127.0.0.1:7777", value_name = "ADDR")]
        listen: String,
        /// Missions the in-process scheduler drives at once (0: no scheduler)
        #[arg(long, default_value_t = 2, value_name = "N")]
        workers: u32,
    },
    /// The store itself: copy an installation's timelines into another database
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// API tokens for `flightdeck serve` (shown once; only their hashes are stored)
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Continue missions by themselves: parked ones whose approvals are granted, blocked
    /// ones whose budget was raised; take in inputs no one else takes; fire expiries
    Worker {
        /// One pass, then exit (scripts, cron)
        #[arg(long)]
        once: bool,
        /// Missions driven at once
        #[arg(long, default_value_t = 1, value_name = "N")]
        concurrency: u32,
    },
    /// Drives a mission created with `run --detach` (started by flightdeck itself).
    #[command(name = "__start", hide = true)]
    Start { mission: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The decision the repository's policy gives an action, and why
    #[command(group(ArgGroup::new("action").required(true).args(["command", "write", "changed"])))]
    Explain {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// The commit whose policy and CODEOWNERS decide (a mission reads them at its base)
        #[arg(long, default_value = "HEAD", value_name = "REF")]
        base: String,
        /// A shell command line an agent or a step would run
        #[arg(long, value_name = "CMD")]
        command: Option<String>,
        /// A repo-relative path an agent would write
        #[arg(long, value_name = "PATH")]
        write: Option<String>,
        /// Repo-relative paths of a change to publish
        #[arg(long, value_name = "PATH", num_args = 1..)]
        changed: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Provision the repository's workspace as a mission would (worktree of HEAD, sandbox or
    /// container, caches, toolchain probe) and print what a mission would record
    Up {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// A template whose [workspace] applies (name under .flightdeck/missions or a path)
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
    },
    /// Run a command in the workspace `up` made; exits with the command's exit code
    Exec {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// Seconds before the command is killed
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// The command and its arguments (after `--`)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Resolve the devcontainer.json's features (fetched and checked, with what they depend
    /// on) and write the lock file beside it (devcontainer-lock.json), which pins every later
    /// workspace to these digests
    Lock {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// A template whose [workspace] egress and secrets apply (registries beyond the ones
        /// devcontainer.json names, and their logins)
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
    },
    /// Remove the workspace `up` made
    Down {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// Remove workspaces (worktrees, homes, containers) of missions that ended or are gone
    Gc {
        /// List what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every mission (events, artifacts, pending inputs) and the API tokens into the
    /// store at URL, every hash intact; a rerun skips what was copied
    Copy {
        /// The target, e.g. postgres://flightdeck@db.acme/flightdeck
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token acting as a person with a role; it is printed once
    Create {
        /// The person it acts as: a handle (@alice) or an email
        #[arg(long = "for", value_name = "HANDLE")]
        owner: String,
        /// viewer (reads), operator (starts, cancels, resumes, raises budgets), approver
        /// (decides approvals where the policy allows), admin (manages tokens)
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "operator", "approver", "admin"])]
        role: String,
        /// Days until it stops working (default: never)
        #[arg(long, value_name = "DAYS")]
        expires: Option<u32>,
    },
    /// Every token: id, owner, role, status, expiry, last use (never the token)
    List,
    /// Stop a token from working, for good
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash of one or all timelines; names the first bad seq
    Verify {
        mission: Option<String>,
        #[arg(long, conflicts_with = "mission")]
        all: bool,
    },
    /// Check a signed attestation (a DSSE envelope from `export --format intoto`)
    VerifyAttestation {
        /// The envelope's JSON file
        file: PathBuf,
        /// The signer's ed25519 public key (SPKI PEM)
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
    },
    /// Export a timeline
    Export {
        mission: String,
        #[arg(long, value_enum)]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One event per line, as `timeline --json`
    Jsonl,
    /// An in-toto Statement v1 with an SLSA Provenance v1 predicate (published missions)
    Intoto,
}
