//! `flightdeck workspace up|exec|down|gc`: a repository's workspace by hand, made exactly as a
//! mission's is (the engine's `provision`), for debugging a template's environment; and the
//! garbage collector for workspaces whose mission ended or vanished.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck_core::template::{Template, WorkspaceSpec};
use flightdeck_engine::Silent;
use flightdeck_workspace::CommandSpec;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::context::Context;
use crate::error::{exit, CliError};

/// What `up` leaves beside the workspace, so `exec` and `down` find it again.
#[derive(Debug, Serialize, Deserialize)]
struct DebugWorkspace {
    id: String,
    repo: PathBuf,
    base_commit: String,
    template: Option<String>,
    spec: WorkspaceSpec,
}

fn repo_of(repo: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let dir = repo.unwrap_or_else(|| PathBuf::from("."));
    flightdeck_workspace::repo_root(&dir).map_err(|_| {
        CliError::bad_input(
            format!("{} is not inside a git repository", dir.display()),
            Some("pass --repo with a directory inside a git repository".into()),
        )
    })
}

/// One debugging workspace per repository and installation: `ws-` and a digest of both
/// paths (container names are shared by every installation on an engine).
fn debug_id(ctx: &Context, repo: &Path) -> String {
    let data_dir = std::fs::canonicalize(ctx.data_dir()).unwrap_or_else(|_| ctx.data_dir_buf());
    let digest = Sha256::digest(format!("{}\0{}", repo.display(), data_dir.display()).as_bytes());
    format!("ws-{}", &hex::encode(digest)[..12])
}

fn record_path(ctx: &Context, id: &str) -> PathBuf {
    ctx.data_dir().join("workspaces").join(format!("{id}.json"))
}

fn read_record(ctx: &Context, repo: &Path) -> Result<DebugWorkspace, CliError> {
    let id = debug_id(ctx, repo);
    let path = record_path(ctx, &id);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        CliError::bad_input(
            format!(
                "no workspace for {} (looked for {})",
                repo.display(),
                path.display()
            ),
            Some(format!(
                "make one with `flightdeck workspace up --repo {}`",
                repo.display()
            )),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::bad_input(
            format!("{}: {e}", path.display()),
            Some("remove it with `flightdeck workspace down`, then `up` again".into()),
        )
    })
}

pub async fn up(
    ctx: &Context,
    repo: Option<PathBuf>,
    template: Option<String>,
) -> Result<i32, CliError> {
    let repo = repo_of(repo)?;
    let spec = match &template {
        Some(name) => {
            let path = super::replay::template_path(&repo, name)?;
            let source = std::fs::read_to_string(&path).map_err(|e| {
                CliError::bad_input(format!("cannot read {}: {e}", path.display()), None)
            })?;
            Template::parse(name, &path.display().to_string(), &source)?.workspace
        }
        None => WorkspaceSpec {
            max_processes: Some(flightdeck_core::template::DEFAULT_MAX_PROCESSES),
            ..WorkspaceSpec::default()
        },
    };
    let base_commit = flightdeck_workspace::resolve_commit(&repo, "HEAD")?;
    let id = debug_id(ctx, &repo);
    let engine = ctx.engine(std::sync::Arc::new(Silent)).await?;
    // `up` again starts afresh, at today's HEAD.
    if let Ok(previous) = read_record(ctx, &repo) {
        engine
            .remove_workspace(&previous.id, Some(&previous.repo))
            .await;
    }
    let started = std::time::Instant::now();
    let provisioned = match engine.provision(&id, &repo, &base_commit, &spec).await {
        Ok(provisioned) => provisioned,
        Err(e) => {
            // Nothing half-made is kept: the next `up` starts from the repository again.
            engine.remove_workspace(&id, Some(&repo)).await;
            return Err(e.into());
        }
    };
    let took = started.elapsed();
    let record = DebugWorkspace {
        id: id.clone(),
        repo: repo.clone(),
        base_commit,
        template,
        spec,
    };
    let path = record_path(ctx, &id);
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    std::fs::write(&path, text)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
    if ctx.json() {
        let out = json!({
            "id": id,
            "workspace": provisioned.event,
            "drift": provisioned.drift,
            "ready_ms": took.as_millis() as u64,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let e = &provisioned.event;
        println!("workspace {id} ready in {} ms", took.as_millis());
        println!("  path      {}", e.path);
        println!(
            "  runtime   {} (sandbox: {}, network: {})",
            e.runtime, e.sandbox, e.network
        );
        if let (Some(image), Some(digest)) = (&e.image, &e.image_digest) {
            println!("  image     {image} ({digest})");
        }
        if let Some(limits) = &e.limits {
            println!(
                "  limits    memory_mb={} max_processes={} ({})",
                limits.memory_mb.map_or("none".into(), |m| m.to_string()),
                limits
                    .max_processes
                    .map_or("none".into(), |m| m.to_string()),
                limits.enforced
            );
        }
        for (tool, entry) in &e.toolchain {
            println!(
                "  {tool:<9} pinned {} found {}{}",
                entry.pinned.as_deref().unwrap_or("-"),
                entry.found.as_deref().unwrap_or("(missing)"),
                if entry.ok { "" } else { "  DRIFT" }
            );
        }
        for (eco, cache) in &e.caches {
            println!("  cache     {eco} {}", cache.key);
        }
        println!(
            "next: flightdeck workspace exec --repo {} -- COMMAND",
            repo.display()
        );
    }
    Ok(exit::OK)
}

pub async fn exec(
    ctx: &Context,
    repo: Option<PathBuf>,
    timeout: u64,
    command: &[String],
) -> Result<i32, CliError> {
    let repo = repo_of(repo)?;
    let record = read_record(ctx, &repo)?;
    let engine = ctx.engine(std::sync::Arc::new(Silent)).await?;
    let provisioned = engine
        .attach(&record.id, &record.repo, &record.base_commit, &record.spec)
        .await?;
    let spec = CommandSpec {
        command: shell_join(command),
        timeout: Duration::from_secs(timeout),
        env: vec![("FLIGHTDECK_MISSION".into(), record.id.clone())],
        network: record.spec.network == flightdeck_core::template::Network::On,
        // The worktree may hold what an agent wrote.
        trusted: false,
        private_home: false,
    };
    let outcome = provisioned.workspace.exec(&spec).await?;
    if ctx.json() {
        let out = json!({
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
            "duration_ms": outcome.duration.as_millis() as u64,
            "limit_hit": outcome.limit_hit,
            "output": String::from_utf8_lossy(&outcome.output),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        use std::io::Write;
        let _ = std::io::stdout().write_all(&outcome.output);
        if outcome.timed_out {
            eprintln!("flightdeck: the command timed out after {timeout} s and was killed");
        }
    }
    // Killed (a timeout): what a shell reports for SIGKILL.
    Ok(outcome.exit_code.unwrap_or(128 + 9))
}

pub async fn down(ctx: &Context, repo: Option<PathBuf>) -> Result<i32, CliError> {
    let repo = repo_of(repo)?;
    let record = read_record(ctx, &repo)?;
    let engine = ctx.engine(std::sync::Arc::new(Silent)).await?;
    engine
        .remove_workspace(&record.id, Some(&record.repo))
        .await;
    let _ = std::fs::remove_file(record_path(ctx, &record.id));
    if ctx.json() {
        println!("{}", json!({ "id": record.id, "removed": true }));
    } else {
        println!("workspace {} removed", record.id);
    }
    Ok(exit::OK)
}

/// Removes the workspaces of missions that ended (succeeded, failed, cancelled) or are not
/// in the store, and debugging workspaces whose repository is gone.
pub async fn gc(ctx: &Context, dry_run: bool) -> Result<i32, CliError> {
    // The cgroups of flightdeck processes that were killed before they removed theirs.
    let cgroups_removed = if dry_run {
        0
    } else {
        flightdeck_workspace::Cgroups::detect().collect_leaked()
    };
    let dir = ctx.data_dir().join("workspaces");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        if ctx.json() {
            println!(
                "{}",
                json!({ "removed": [], "cgroups_removed": cgroups_removed, "dry_run": dry_run })
            );
        } else {
            if cgroups_removed > 0 {
                println!("removed {cgroups_removed} leftover cgroups");
            }
            println!("nothing to collect: {} does not exist", dir.display());
        }
        return Ok(exit::OK);
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            name.strip_suffix(".home")
                .or_else(|| name.strip_suffix(".json"))
                .unwrap_or(&name)
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    let engine = ctx.engine(std::sync::Arc::new(Silent)).await?;
    let store = engine.config().store.clone();
    let mut removed = Vec::new();
    for id in ids {
        let Some((reason, repo)) = orphan(ctx, &*store, &id).await? else {
            continue;
        };
        if !dry_run {
            engine.remove_workspace(&id, repo.as_deref()).await;
            let _ = std::fs::remove_file(record_path(ctx, &id));
        }
        removed.push(json!({ "id": id, "reason": reason }));
    }
    // Containers of this installation whose mission ended or vanished (a process that died
    // before cleaning up leaves them running).
    if let Ok(docker) = flightdeck_workspace::docker::DockerEngine::connect().await {
        let installation = engine.installation();
        let containers = docker
            .list_labelled(flightdeck_engine::MISSION_LABEL)
            .await
            .unwrap_or_default();
        for container in containers {
            if container.labels.get(flightdeck_engine::INSTALLATION_LABEL) != Some(&installation) {
                continue;
            }
            let Some(id) = container.labels.get(flightdeck_engine::MISSION_LABEL) else {
                continue;
            };
            let Some((reason, _)) = orphan(ctx, &*store, id).await? else {
                continue;
            };
            if !dry_run {
                let _ = docker.remove_container(&container.id).await;
                // A Compose service's project goes too: sidecars, networks, volumes.
                if let Some(project) = container
                    .labels
                    .get(flightdeck_workspace::docker::COMPOSE_PROJECT_LABEL)
                {
                    let _ = flightdeck_workspace::compose::sweep(&docker, project).await;
                }
            }
            removed.push(json!({ "id": id, "container": container.name, "reason": reason }));
        }
    }
    if ctx.json() {
        println!(
            "{}",
            json!({ "removed": removed, "cgroups_removed": cgroups_removed, "dry_run": dry_run })
        );
    } else if removed.is_empty() && cgroups_removed == 0 {
        println!("nothing to collect");
    } else {
        if cgroups_removed > 0 {
            println!("removed {cgroups_removed} leftover cgroups");
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        for r in &removed {
            let id = r["id"].as_str().unwrap_or("?");
            let what = match r["container"].as_str() {
                Some(name) => format!("container {name} of {id}"),
                None => format!("workspace {id}"),
            };
            println!("{verb} {what} ({})", r["reason"].as_str().unwrap_or(""));
        }
    }
    Ok(exit::OK)
}

/// Why workspace `id` is to be collected (and the repository its worktree belongs to), or
/// `None` when it is in use: a mission still running or parked, a debugging workspace whose
/// repository is there.
async fn orphan(
    ctx: &Context,
    store: &dyn flightdeck_store::EventStore,
    id: &str,
) -> Result<Option<(String, Option<PathBuf>)>, CliError> {
    if id.starts_with("ws-") {
        let record = std::fs::read_to_string(record_path(ctx, id))
            .ok()
            .and_then(|text| serde_json::from_str::<DebugWorkspace>(&text).ok());
        return Ok(match record {
            Some(record) if record.repo.is_dir() => None,
            Some(record) => Some(("its repository is gone".into(), Some(record.repo))),
            None => Some(("a debugging workspace without its record".into(), None)),
        });
    }
    Ok(match store.mission(id).await? {
        None => Some(("no such mission in the store".into(), None)),
        Some(row) if matches!(row.status.as_str(), "succeeded" | "failed" | "cancelled") => {
            let repo = row.summary["repo"].as_str().map(PathBuf::from);
            Some((format!("the mission {}", row.status), repo))
        }
        Some(_) => None,
    })
}

/// The argument vector as one `sh -c` line; one argument is taken as a shell line already
/// (`exec -- 'cargo test | tail'`).
fn shell_join(args: &[String]) -> String {
    match args {
        [only] => only.clone(),
        _ => flightdeck_workspace::shell_words(args),
    }
}

/// `flightdeck workspace lock`: the features resolved afresh (what they depend on too), and
/// their pins written to the lock file beside devcontainer.json.
pub async fn lock(
    ctx: &Context,
    repo: Option<PathBuf>,
    template: Option<String>,
) -> Result<i32, CliError> {
    use flightdeck_workspace::devcontainer;
    use flightdeck_workspace::features::fetch::{
        FetchSettings, RegistryCredential, RegistryFetcher, LOCAL_REGISTRY_HOSTS,
    };
    use flightdeck_workspace::features::{lock, reference, resolve, FeatureSource};

    let repo = repo_of(repo)?;
    let config = devcontainer::find(&repo).ok_or_else(|| {
        CliError::bad_input(
            format!(
                "{} has no .devcontainer/devcontainer.json (nor .devcontainer.json)",
                repo.display()
            ),
            Some("the lock file pins the `features` of a devcontainer.json".into()),
        )
    })?;
    let definition = devcontainer::load(&repo, &config, &|_| None)
        .map_err(|e| CliError::bad_input(e.to_string(), None))?;
    if definition.features.is_empty() {
        return Err(CliError::bad_input(
            format!("{} has no `features` to lock", config.display()),
            Some("add features, e.g. \"features\": { \"ghcr.io/devcontainers/features/node:1\": {} }".into()),
        ));
    }
    let spec = match &template {
        Some(name) => {
            let path = super::replay::template_path(&repo, name)?;
            let source = std::fs::read_to_string(&path).map_err(|e| {
                CliError::bad_input(format!("cannot read {}: {e}", path.display()), None)
            })?;
            Template::parse(name, &path.display().to_string(), &source)?.workspace
        }
        None => WorkspaceSpec::default(),
    };
    let config_dir = definition
        .config_file
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    // The registries devcontainer.json names are the ones asked for; a feature that depends
    // on one elsewhere needs it in the template's egress.
    let mut allowed = spec.egress.clone();
    for id in definition.features.keys() {
        match reference::parse(id, &config_dir) {
            Ok(FeatureSource::Oci(oci)) => allowed.push(oci.registry),
            Ok(FeatureSource::Tarball(url)) => {
                // `https://[user@]host[:port]/…`: the authority without the user.
                let authority = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next());
                if let Some(authority) = authority {
                    let host = authority
                        .rsplit_once('@')
                        .map_or(authority, |(_, host)| host);
                    allowed.push(host.to_string());
                }
            }
            _ => {}
        }
    }
    let settings = &ctx.app.workspace;
    let credentials = spec
        .secrets
        .iter()
        .filter_map(|name| {
            let login = settings.registry_logins.get(name)?;
            let password = settings.secret(name).ok()?;
            let credential = RegistryCredential {
                username: login.username.clone(),
                password: password.to_string(),
            };
            Some((login.registry.clone(), credential))
        })
        .collect();
    let fetcher = RegistryFetcher::new(FetchSettings {
        allowed_hosts: allowed,
        credentials,
        plain_http: LOCAL_REGISTRY_HOSTS.iter().map(|h| h.to_string()).collect(),
        ..FetchSettings::default()
    })
    .map_err(|e| CliError::failed(e.to_string()))?;
    let scratch = ScratchDir::new(
        ctx.data_dir()
            .join("workspaces")
            .join(format!(".lock-{}", std::process::id())),
    )?;
    let features: Vec<(String, serde_json::Value)> = definition
        .features
        .iter()
        .map(|(id, options)| (id.clone(), options.clone()))
        .collect();
    let resolved = resolve::resolve(
        &features,
        &config_dir,
        None,
        &definition.override_feature_install_order,
        &fetcher,
        scratch.path(),
    )
    .await
    .map_err(|e| {
        CliError::bad_input(
            format!("{}: {e}", config.display()),
            Some("a registry beyond the ones devcontainer.json names must be in the template's [workspace] egress (pass --template); a private one needs a login in [secrets] (`registry`, `username`) that the template names".into()),
        )
    })?;
    let lockfile = resolve::lockfile_of(&resolved);
    let path = lock::path_for(&definition.config_file);
    let text = lock::to_json_string(&lockfile);
    write_new_then_rename(&path, &text)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
    if ctx.json() {
        let features: Vec<_> = resolved
            .iter()
            .map(|f| {
                json!({
                    "id": f.written,
                    "version": f.metadata.version,
                    "resolved": f.fetched.resolved,
                    "integrity": f.fetched.integrity,
                    "depends_on_only": f.auto_added,
                })
            })
            .collect();
        let out = json!({ "lock_file": path.display().to_string(), "features": features });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!(
            "locked {} feature(s) in {}",
            lockfile.features.len(),
            path.display()
        );
        for feature in &resolved {
            println!(
                "  {}  {}  {}",
                feature.written,
                feature.metadata.version.as_deref().unwrap_or("?"),
                feature.fetched.resolved
            );
        }
    }
    Ok(exit::OK)
}

/// Writes `text` to `path` through a new file beside it, never through a link the repository
/// placed there (a committed `devcontainer-lock.json.tmp -> ~/.bashrc`).
fn write_new_then_rename(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other(
            "it is a symbolic link; flightdeck writes lock files only as plain files",
        ));
    }
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    // Removing a link removes the link, not what it points to.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// A directory removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(path: PathBuf) -> Result<ScratchDir, CliError> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| CliError::failed(format!("cannot make {}: {e}", path.display())))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
