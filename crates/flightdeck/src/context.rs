//! What a command needs from its flags: the installation (the application layer's [`App`]),
//! whether to print JSON, and the process's shutdown signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flightdeck_app::{App, AppOptions, Reader};
use flightdeck_engine::{Engine, Observer};
use flightdeck_store::ArtifactStore;

use crate::cli::Global;
use crate::error::CliError;

/// How long drivers get to record an interruption after SIGINT / SIGTERM before the
/// process exits anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Context {
    pub global: Global,
    pub app: App,
    /// Set when SIGINT or SIGTERM arrives (in commands that drive missions): drivers record
    /// the interruption and stop.
    pub shutdown: tokio::sync::watch::Receiver<Option<String>>,
    shutdown_sender: std::sync::Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Context {
    pub fn new(global: Global) -> Result<Context, CliError> {
        let (sender, shutdown) = tokio::sync::watch::channel(None);
        let app = App::open(AppOptions {
            data_dir: global.data_dir.clone(),
            config: global.config.clone(),
            database_url: global.database_url.clone(),
            identity: global.identity.clone(),
        })?;
        // An export that fails is said once, on stderr; the missions go on.
        #[allow(clippy::print_stderr)]
        app.telemetry
            .on_warning(std::sync::Arc::new(|message: &str| {
                eprintln!("warning: {message}")
            }));
        Ok(Context {
            global,
            app,
            shutdown,
            shutdown_sender: std::sync::Arc::new(sender),
        })
    }

    /// For commands that drive missions: SIGINT and SIGTERM stop them cleanly (the driver
    /// records the interruption and kills what it runs; the command then exits as a
    /// stopped process does, 130 or 143). A second signal, or the grace period running out,
    /// ends the process at once.
    pub fn stop_missions_on_signals(&self) {
        use tokio::signal::unix::{signal, SignalKind};
        let sender = self.shutdown_sender.clone();
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::spawn(async move {
            let (reason, code) = tokio::select! {
                _ = interrupt.recv() => ("SIGINT", crate::error::exit::INTERRUPTED),
                _ = terminate.recv() => ("SIGTERM", crate::error::exit::TERMINATED),
            };
            let _ = sender.send(Some(reason.to_string()));
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
            }
            std::process::exit(code);
        });
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    pub fn data_dir(&self) -> &Path {
        &self.app.data_dir
    }

    pub fn data_dir_buf(&self) -> PathBuf {
        self.app.data_dir.clone()
    }

    /// Who is acting (see [`App::identity`]).
    pub fn identity(&self, repo: Option<&Path>) -> Result<String, CliError> {
        self.app.identity(repo)
    }

    pub fn database_url(&self) -> String {
        self.app.database_url()
    }

    /// The store to read, or the error a read of `mission` gives when there is none. Opened
    /// read-only: reading never writes.
    pub async fn reader_for(&self, mission: &str) -> Result<Reader, CliError> {
        self.app.reader_for(mission).await
    }

    /// The artifacts, for reading.
    pub async fn artifacts(&self) -> Result<Arc<dyn ArtifactStore>, CliError> {
        self.app.artifacts().await
    }

    pub async fn engine(&self, observer: Arc<dyn Observer>) -> Result<Engine, CliError> {
        self.app.engine(observer, self.shutdown.clone()).await
    }

    /// An engine over an existing store, or the error a read of an unknown mission gives.
    pub async fn existing_engine(
        &self,
        mission: &str,
        observer: Arc<dyn Observer>,
    ) -> Result<Engine, CliError> {
        self.app
            .existing_engine(mission, observer, self.shutdown.clone())
            .await
    }
}
