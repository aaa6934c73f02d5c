//! The backends the conformance suite runs every check against, each a fresh, empty database
//! of its own: SQLite in a temporary directory, and PostgreSQL in a database created for the
//! check on the server `FLIGHTDECK_TEST_DATABASE_URL` names (a superuser on a throwaway
//! cluster: `scripts/postgres start` makes one and prints the variable).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use flightdeck_store::{ArtifactStore, EventStore};

/// The server the PostgreSQL backend makes its databases on.
pub const DATABASE_URL_VAR: &str = "FLIGHTDECK_TEST_DATABASE_URL";

/// Which kind of database a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Every backend the suite checks. Each call makes fresh, empty databases.
pub async fn backends() -> Vec<Backend> {
    let mut all = Vec::new();
    for kind in [Kind::Sqlite, Kind::Postgres] {
        all.push(Backend::new(kind).await);
    }
    all
}

/// One backend for one check: a URL that `flightdeck_store::open` takes, naming an empty
/// database nothing else uses, and a directory for its artifact files. Open it as often as
/// the check needs (each open is another store on the same database, as another process
/// would have); the database goes when the backend is dropped.
pub struct Backend {
    pub kind: Kind,
    pub url: String,
    pub artifacts_dir: PathBuf,
    /// Holds the SQLite database and the artifact files; removed on drop.
    _dir: tempfile::TempDir,
    /// The PostgreSQL database made for this backend, dropped (best effort) with it.
    postgres: Option<Database>,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        })
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self} ({})", self.url)
    }
}

impl Backend {
    /// A backend of `kind` with a new, empty database.
    pub async fn new(kind: Kind) -> Backend {
        let dir = tempfile::tempdir().expect("cannot make a temporary directory");
        let artifacts_dir = dir.path().join("artifacts");
        let (url, postgres) = match kind {
            Kind::Sqlite => (
                format!("sqlite://{}", dir.path().join("flightdeck.db").display()),
                None,
            ),
            Kind::Postgres => {
                let database = Database::create(&server_url()).await;
                (database.url.clone(), Some(database))
            }
        };
        Backend {
            kind,
            url,
            artifacts_dir,
            _dir: dir,
            postgres,
        }
    }

    /// Another backend of the same kind, with a database of its own.
    pub async fn another(&self) -> Backend {
        Backend::new(self.kind).await
    }

    /// A store on this backend's database (another one at each call).
    pub async fn open(&self) -> Arc<dyn EventStore> {
        flightdeck_store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("{self}: cannot open {}: {e}", self.url))
    }

    /// A store and the artifact store that goes with it.
    pub async fn open_with_artifacts(&self) -> (Arc<dyn EventStore>, Arc<dyn ArtifactStore>) {
        flightdeck_store::open_with_artifacts(&self.url, &self.artifacts_dir)
            .await
            .unwrap_or_else(|e| panic!("{self}: cannot open {}: {e}", self.url))
    }
}

impl Backend {
    /// The body of GitHub delivery `id` as stored (`None`: no such row), read from the
    /// database itself: what the store's API no longer shows once a delivery is handled (its
    /// body dropped to save space).
    pub async fn stored_delivery_body(&self, id: &str) -> Option<Vec<u8>> {
        match self.kind {
            Kind::Sqlite => {
                let path = self._dir.path().join("flightdeck.db");
                let conn = rusqlite::Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap_or_else(|e| panic!("{self}: cannot open {}: {e}", path.display()));
                let mut stmt = conn
                    .prepare("SELECT body FROM github_deliveries WHERE id = ?1")
                    .unwrap_or_else(|e| panic!("{self}: {e}"));
                let mut rows = stmt.query([id]).unwrap_or_else(|e| panic!("{self}: {e}"));
                rows.next()
                    .unwrap_or_else(|e| panic!("{self}: {e}"))
                    .map(|row| row.get(0).unwrap_or_else(|e| panic!("{self}: {e}")))
            }
            Kind::Postgres => {
                use sqlx::Connection;
                let mut conn = sqlx::postgres::PgConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("{self}: cannot connect to {}: {e}", self.url));
                let body: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT body FROM github_deliveries WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{self}: {e}"));
                let _ = conn.close().await;
                body
            }
        }
    }
}

/// The PostgreSQL server to make databases on. Not set is a failure, never a skip: a suite
/// that passes without PostgreSQL would say nothing about it.
fn server_url() -> String {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{DATABASE_URL_VAR} is not set: the conformance suite runs against PostgreSQL too: \
             run scripts/test, or `scripts/postgres start` and export the variable it prints \
             (e.g. `export \"$(scripts/postgres start)\"`)"
        ),
    }
}

/// A database made on the test server for one backend.
struct Database {
    /// The server's URL, as given (its database is where `CREATE DATABASE` runs).
    server: String,
    name: String,
    /// `server` with `name` as its database.
    url: String,
}

impl Database {
    async fn create(server: &str) -> Database {
        use sqlx::Connection;
        let name = format!("fd_test_{}", random_hex());
        let mut conn = sqlx::postgres::PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| {
                panic!("postgres: cannot connect to {server} ({DATABASE_URL_VAR}): {e}")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("postgres: cannot create database {name} on {server}: {e}"));
        let _ = conn.close().await;
        Database {
            server: server.to_string(),
            url: with_database(server, &name),
            name,
        }
    }
}

impl Drop for Database {
    /// Best effort (the cluster is thrown away anyway), on a thread of its own so that it
    /// works inside and outside a runtime alike; `WITH (FORCE)` ends the sessions of stores
    /// still open.
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&sql).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropping.join();
    }
}

/// `url` with its database (the path) replaced by `name`; the query, if any, kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_at..].find('/') {
        Some(slash) => &base[..authority_at + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// 64 random bits in hex: a name no other test run picks (the standard library's hasher
/// keys are seeded from the OS's randomness; the clock, the process and a counter are mixed
/// in as well).
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

/// Runs `check` against every backend, each in a task of its own, one after the other; a
/// failure on one backend does not keep the others from being checked. Fails naming each
/// backend that failed and how.
pub async fn run<F, Fut>(check: F)
where
    F: Fn(Backend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    for backend in backends().await {
        let name = backend.to_string();
        if let Err(e) = tokio::spawn(check(backend)).await {
            let reason = match e.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "(a panic without a message)".into()),
                Err(e) => e.to_string(),
            };
            failures.push(format!("{name}: {reason}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failed on {} backend(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
