//! flightdeck's application layer: what the CLI (and next the server and the workers) call.
//!
//! - [`App`]: the installation (data directory, config, people, the store) and the one
//!   place an [`Engine`] is composed from it (its ports, its secrets, its directory).
//! - [`intake`]: a mission request made from a repository: the template, the policy and
//!   CODEOWNERS read at the base commit, never from uncommitted files.
//! - [`queries`]: missions, timelines and approvals as typed views; reading never writes.
//! - [`scheduler`]: continues missions by themselves when their approvals complete or their
//!   budget is raised, takes in inputs no driver is there to take, fires approval expiries.
//! - [`telemetry`]: OpenTelemetry traces of driven segments over OTLP/HTTP, fed by an engine
//!   observer (`[telemetry] otlp_endpoint`).
//! - [`github`]: `[github]`'s App (one client and token cache per process) and the forge
//!   missions from GitHub push and open their pull requests through.
//! - [`error`]: one error kind, mapped once to exit codes and HTTP statuses.
//!
//! Invariant: nothing here renders (no text for people, no terminal): the callers do.

pub mod config;
pub mod copy;
pub mod error;
pub mod github;
pub mod intake;
pub mod queries;
pub mod scheduler;
pub mod telemetry;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flightdeck_engine::{
    Engine, EngineConfig, LiveParts, ModelSettings, Observer, WorkspaceSettings,
};
pub use flightdeck_policy::People;
use flightdeck_store::{ArtifactStore, EventStore, FsArtifactStore};

pub use config::Config;
pub use error::{exit, AppError, ErrorKind};

/// Where the installation is and who acts: the global flags.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// `--data-dir` (default `$XDG_DATA_HOME/flightdeck`, else `~/.local/share/flightdeck`).
    pub data_dir: Option<PathBuf>,
    /// `--config` (default `<data-dir>/config.toml`, optional).
    pub config: Option<PathBuf>,
    /// `--database-url` (default `sqlite://<data-dir>/flightdeck.db`).
    pub database_url: Option<String>,
    /// `--as`.
    pub identity: Option<String>,
}

/// An installation, opened.
pub struct App {
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    /// `[providers]`, `[pricing]` and `[models]`, checked.
    pub models: ModelSettings,
    /// `[secrets]` read, and the files sandboxes hide.
    pub workspace: WorkspaceSettings,
    /// `[people]`, checked.
    pub people: People,
    /// `[quotas]`, checked (each a `[teams]` entry's).
    pub quotas: Vec<flightdeck_core::quota::TeamQuota>,
    /// How long a mission's lease lasts without renewal (`FLIGHTDECK_LEASE_SECONDS`).
    pub lease_ttl: std::time::Duration,
    /// `[telemetry]`: the trace exporter every live engine of this process feeds.
    pub telemetry: telemetry::Telemetry,
    /// `[github]`'s App, made once: every engine of this process and the server share its
    /// installation tokens.
    pub github: Option<Arc<github::GitHubApp>>,
    options: AppOptions,
}

/// `FLIGHTDECK_LEASE_SECONDS`: how long a worker may be silent before another takes its
/// missions over (3 to 3600; 30 by default).
fn lease_ttl() -> Result<std::time::Duration, AppError> {
    match std::env::var("FLIGHTDECK_LEASE_SECONDS") {
        Err(_) => Ok(flightdeck_engine::DEFAULT_LEASE_TTL),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(s) if (3..=3600).contains(&s) => Ok(std::time::Duration::from_secs(s)),
            _ => Err(AppError::bad_input(
                format!("FLIGHTDECK_LEASE_SECONDS={text}: not a number of seconds from 3 to 3600"),
                Some("how long a worker may be silent before another takes its missions over; 30 when unset".to_string()),
            )),
        },
    }
}

/// A store opened to read: nothing is created or written through it.
pub struct Reader {
    pub store: Arc<dyn EventStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
}

/// `--database-url`, else the SQLite file in the data directory.
fn database_url(options: &AppOptions, data_dir: &Path) -> String {
    options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("flightdeck.db").display()))
}

impl App {
    pub fn open(options: AppOptions) -> Result<App, AppError> {
        let data_dir = match &options.data_dir {
            Some(dir) => config::absolute(dir),
            None => default_data_dir()?,
        };
        let config_path = options
            .config
            .clone()
            .unwrap_or_else(|| data_dir.join("config.toml"));
        let config = Config::load(&config_path, options.config.is_none())?;
        let models = config::model_settings(&config, &config_path)?;
        let mut workspace = config::workspace_settings(&config, &config_path)?;
        let people = config.people(&config_path)?;
        let quotas = config::quotas(&config, &config_path)?;
        let telemetry =
            telemetry::Telemetry::new(config::telemetry_endpoint(&config, &config_path)?);
        let github = match &config.github {
            Some(section) => Some(Arc::new(github::GitHubApp::from_config(
                section,
                &config::config_dir(&config_path),
            )?)),
            None => None,
        };
        // What no command may read wherever it lives: the signing key, the store's files.
        if let Some(key) = &config.audit.signing_key {
            workspace.hidden_files.push(data_dir.join(key));
        }
        // The GitHub App's key, which can act on every repository the App is installed on.
        if let Some(app) = &github {
            workspace.hidden_files.push(app.key_path().to_path_buf());
        }
        if let Ok(url) = flightdeck_store::DatabaseUrl::parse(&database_url(&options, &data_dir)) {
            let db = config::absolute(&url.path);
            for suffix in ["", "-wal", "-shm", "-journal", "-inbox"] {
                let mut name = db.clone().into_os_string();
                name.push(suffix);
                workspace.hidden_files.push(PathBuf::from(name));
            }
        }
        Ok(App {
            lease_ttl: lease_ttl()?,
            data_dir,
            config_path,
            config,
            models,
            workspace,
            people,
            quotas,
            telemetry,
            github,
            options,
        })
    }

    /// The same installation opened again (a long-lived owner, such as the server, keeps
    /// its own).
    pub fn reopen(&self) -> Result<App, AppError> {
        App::open(self.options.clone())
    }

    /// Who is acting: `--as`, `FLIGHTDECK_USER`, the config's default, git's user.email, or
    /// the login name.
    pub fn identity(&self, repo: Option<&Path>) -> Result<String, AppError> {
        if let Some(id) = self
            .options
            .identity
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            return Ok(id.to_string());
        }
        if let Some(id) = self
            .config
            .identity
            .default
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            return Ok(id.to_string());
        }
        let mut git = std::process::Command::new("git");
        if let Some(repo) = repo {
            git.arg("-C").arg(repo);
        }
        if let Ok(out) = git.args(["config", "user.email"]).output() {
            let email = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !email.is_empty() {
                return Ok(email);
            }
        }
        if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
            return Ok(user);
        }
        Err(AppError::bad_input(
            "cannot tell who you are",
            Some(
                "pass --as IDENTITY, set FLIGHTDECK_USER, or set [identity].default in config.toml"
                    .to_string(),
            ),
        ))
    }

    pub fn database_url(&self) -> String {
        database_url(&self.options, &self.data_dir)
    }

    /// The SQLite file the database URL names, if it names one.
    fn sqlite_path(&self) -> Option<PathBuf> {
        flightdeck_store::DatabaseUrl::parse(&self.database_url())
            .ok()
            .map(|url| url.path)
    }

    /// Whether there is a store to read yet (commands that only read do not create one).
    pub fn store_exists(&self) -> bool {
        self.sqlite_path().is_none_or(|p| p.exists())
    }

    /// The store, opened to read only (it works on a read-only database or a full disk);
    /// `None` when there is none yet.
    pub async fn reader(&self) -> Result<Option<Reader>, AppError> {
        if !self.store_exists() {
            return Ok(None);
        }
        let url = read_only_url(&self.database_url());
        match flightdeck_store::open_with_artifacts(&url, &self.data_dir.join("artifacts")).await {
            Ok((store, artifacts)) => Ok(Some(Reader { store, artifacts })),
            // A database another process is creating right now holds nothing yet.
            Err(
                flightdeck_store::StoreError::Unmigrated { .. }
                | flightdeck_store::StoreError::Missing { .. },
            ) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The store to read, or the error a read of mission `mission` gives when there is none.
    pub async fn reader_for(&self, mission: &str) -> Result<Reader, AppError> {
        match self.reader().await? {
            Some(reader) => Ok(reader),
            None => Err(AppError::not_found(
                format!(
                    "no mission `{mission}`: there are no missions in {} yet",
                    self.data_dir.display()
                ),
                Some("start one with `flightdeck run TEMPLATE`, or point --data-dir at another data directory".to_string()),
            )),
        }
    }

    /// The artifacts, for reading: the store's if there is one (which does not create it).
    pub async fn artifacts(&self) -> Result<Arc<dyn ArtifactStore>, AppError> {
        match self.reader().await? {
            Some(reader) => Ok(reader.artifacts),
            None => Ok(Arc::new(FsArtifactStore::new(
                self.data_dir.join("artifacts"),
            ))),
        }
    }

    /// The installation's store, opened to write (created if missing).
    pub async fn store(&self) -> Result<Arc<dyn EventStore>, AppError> {
        Ok(flightdeck_store::open(&self.database_url()).await?)
    }

    /// The engine over the installation's store (created if missing), composed with the
    /// live ports: the one place they are chosen.
    pub async fn engine(
        &self,
        observer: Arc<dyn Observer>,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
    ) -> Result<Engine, AppError> {
        // The data directory holds the anchors, workspaces and caches whatever the database
        // (a SQLite file there makes it; a PostgreSQL database does not).
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            AppError::failed(format!("cannot create {}: {e}", self.data_dir.display()))
        })?;
        let (store, artifacts) = flightdeck_store::open_with_artifacts(
            &self.database_url(),
            &self.data_dir.join("artifacts"),
        )
        .await?;
        let anchors = flightdeck_store::AnchorLog::new(self.anchor_path(), self.signing_key()?);
        // Traces of the segments this engine drives, when `[telemetry]` says where.
        let observer = self.telemetry.observer(store.clone(), observer);
        Ok(self.engine_over(
            store,
            artifacts,
            observer,
            shutdown,
            Some(Arc::new(anchors)),
        ))
    }

    /// The installation's anchor file: mission heads kept outside the store.
    pub fn anchor_path(&self) -> PathBuf {
        self.data_dir.join(flightdeck_store::anchors::ANCHOR_FILE)
    }

    /// The `[audit] signing_key`, read, if one is configured (a relative path is in the
    /// data directory).
    pub fn signing_key(&self) -> Result<Option<flightdeck_store::anchors::SigningKey>, AppError> {
        match &self.config.audit.signing_key {
            Some(path) => Ok(Some(flightdeck_store::anchors::read_signing_key(
                &self.data_dir.join(path),
            )?)),
            None => Ok(None),
        }
    }

    /// An engine over the store opened read-only (a replay reads the recording and writes
    /// nothing, so it works on a read-only database or a full disk).
    pub async fn read_only_engine(&self, mission: &str) -> Result<Engine, AppError> {
        let reader = self.reader_for(mission).await?;
        Ok(self.engine_over(
            reader.store,
            reader.artifacts,
            Arc::new(flightdeck_engine::Silent),
            flightdeck_engine::no_shutdown(),
            None,
        ))
    }

    /// The engine over `store` and `artifacts`, composed with the live ports: the one place
    /// they are chosen.
    fn engine_over(
        &self,
        store: Arc<dyn EventStore>,
        artifacts: Arc<dyn ArtifactStore>,
        observer: Arc<dyn Observer>,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
        anchors: Option<Arc<flightdeck_store::AnchorLog>>,
    ) -> Engine {
        let mut config = EngineConfig::live(LiveParts {
            store,
            artifacts,
            data_dir: self.data_dir.clone(),
            observer,
            models: self.models.clone(),
            secrets: self.secrets(),
            workspace: self.workspace.clone(),
            teams: flightdeck_policy::Teams::new(self.config.teams.clone()),
            people: flightdeck_engine::Directory::new(self.people.clone()),
            shutdown,
            anchors,
        });
        config.lease_ttl = self.lease_ttl;
        // A worker on another machine than the requester's fetches the repository.
        config.ports.repos = Arc::new(intake::FetchingRepos {
            data_dir: self.data_dir.clone(),
            repos: self.config.repos.clone(),
            github: self.github.clone(),
        });
        // Missions from GitHub propose their change there (else `NoForge` says why not).
        if let Some(app) = &self.github {
            config.ports.forge = Arc::new(
                github::GitHubForge::new(app.clone())
                    .with_pages(self.config.server.public_url.as_deref()),
            );
        }
        config.quotas = self.quotas.clone();
        Engine::new(config)
    }

    /// The engine over an existing store, or the error a read of an unknown mission gives.
    pub async fn existing_engine(
        &self,
        mission: &str,
        observer: Arc<dyn Observer>,
        shutdown: tokio::sync::watch::Receiver<Option<String>>,
    ) -> Result<Engine, AppError> {
        if !self.store_exists() {
            return Err(AppError::not_found(
                format!(
                    "no mission `{mission}`: there are no missions in {} yet",
                    self.data_dir.display()
                ),
                Some("start one with `flightdeck run TEMPLATE`, or point --data-dir at another data directory".to_string()),
            ));
        }
        self.engine(observer, shutdown).await
    }

    /// The API keys of every provider this installation knows (built in or configured), and
    /// the installation's `[secrets]`: masked wherever they might show up.
    pub fn secrets(&self) -> flightdeck_engine::Secrets {
        let mut vars: Vec<String> = ["openai", "anthropic"]
            .iter()
            .filter_map(|name| self.models.provider(name))
            .chain(self.models.providers.values().cloned())
            .filter_map(|p| p.api_key_env)
            .collect();
        vars.sort();
        vars.dedup();
        let configured = self
            .workspace
            .secret_values
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_ref().ok()?.clone())));
        flightdeck_engine::Secrets::new(
            vars.into_iter()
                .filter_map(|var| std::env::var(&var).ok().map(|value| (var, value)))
                .chain(configured),
        )
    }
}

/// `url` opened only to read (`?mode=ro`).
fn read_only_url(url: &str) -> String {
    // PostgreSQL's readers are plain connections: they never write (a role of the
    // database's own can make them read-only).
    if flightdeck_store::is_postgres(url) || url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=ro")
    }
}

fn default_data_dir() -> Result<PathBuf, AppError> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(config::absolute(&PathBuf::from(xdg).join("flightdeck")));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home).join(".local/share/flightdeck"));
    }
    Err(AppError::bad_input(
        "cannot find a data directory: neither XDG_DATA_HOME nor HOME is set",
        Some("pass --data-dir DIR or set FLIGHTDECK_DATA_DIR".to_string()),
    ))
}
