//! `replay` (verify, re-execute) and `fork`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flightdeck_core::event::MissionCreated;
use flightdeck_core::MissionId;
use flightdeck_engine::{CreateMission, ForkMission, ReplayMode, RepoFile};

use super::{print_summary, progress};
use crate::context::Context;
use crate::error::{exit, CliError};

/// Where today's inputs come from: the repository (given, or the one recorded).
fn repo_of(created: &MissionCreated, given: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let dir = given.unwrap_or_else(|| PathBuf::from(&created.repo));
    flightdeck_workspace::repo_root(&dir).map_err(|_| {
        CliError::bad_input(
            format!("{}: not a git repository", dir.display()),
            Some(format!(
                "the mission ran in {}; pass --repo with a clone of that repository (it must \
                 hold the mission's base commit {})",
                created.repo, created.base_commit
            )),
        )
    })
}

/// Finds the template file `name` names in a working tree (replay and `workspace up` use
/// today's files, as they are now): a path, or a name under the repo's missions dir.
pub fn template_path(repo: &Path, name: &str) -> Result<PathBuf, CliError> {
    let as_path = Path::new(name);
    let path = if name.ends_with(".toml") || name.contains('/') {
        as_path.to_path_buf()
    } else {
        repo.join(".flightdeck/missions")
            .join(format!("{name}.toml"))
    };
    if path.is_file() {
        return Ok(path);
    }
    let missions = repo.join(".flightdeck/missions");
    let mut available: Vec<String> = std::fs::read_dir(&missions)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".toml"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    available.sort();
    let hint = if available.is_empty() {
        format!(
            "`flightdeck init --repo {}` writes an example template",
            repo.display()
        )
    } else {
        format!(
            "templates in {}: {}",
            missions.display(),
            available.join(", ")
        )
    };
    Err(CliError::not_found(
        format!("no template {} (looked for {})", name, path.display()),
        Some(hint),
    ))
}

/// Today's policy and CODEOWNERS in a working tree (the built-in policy when there is no
/// file): what a replay judges with.
fn policy_today(repo: &Path) -> Result<(String, String, Option<RepoFile>), CliError> {
    let policy_path = repo.join(".flightdeck/policy.toml");
    let (origin, source) = match std::fs::read_to_string(&policy_path) {
        Ok(text) => (policy_path.display().to_string(), text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            flightdeck_policy::BUILTIN_POLICY_ORIGIN.to_string(),
            flightdeck_policy::BUILTIN_POLICY_TOML.to_string(),
        ),
        Err(e) => {
            return Err(CliError::bad_input(
                format!("cannot read {}: {e}", policy_path.display()),
                None,
            ))
        }
    };
    let mut codeowners = None;
    for location in flightdeck_policy::CODEOWNERS_LOCATIONS {
        let path = repo.join(location);
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                codeowners = Some(RepoFile {
                    path: location.to_string(),
                    source,
                });
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CliError::bad_input(
                    format!("cannot read {}: {e}", path.display()),
                    None,
                ))
            }
        }
    }
    Ok((origin, source, codeowners))
}

/// A template file's text, or a clear error naming it.
fn read_template(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| {
        CliError::bad_input(
            format!("cannot read template {}: {e}", path.display()),
            None,
        )
    })
}

pub async fn replay(
    ctx: &Context,
    given: &str,
    reexecute: bool,
    repo: Option<PathBuf>,
    template: Option<PathBuf>,
) -> Result<i32, CliError> {
    let engine = ctx.app.read_only_engine(given).await?;
    let id = engine.resolve_id(given).await?;
    let recorded = engine.config().store.events(&id, 0).await?;
    let created = match recorded.first().map(flightdeck_core::StoredEvent::kind) {
        Some(Ok(flightdeck_core::EventKind::MissionCreated(created))) => created,
        _ => {
            return Err(CliError::bad_input(
                format!("mission {id} does not start with mission.created"),
                Some(format!(
                    "`flightdeck audit verify {id}` checks its timeline"
                )),
            ))
        }
    };
    let repo_root = repo_of(&created, repo)?;
    // Today's template: the one given, else the repository's file of that name. A template
    // run from a path outside the repository is replayed from its pinned copy.
    let (template_file, template_source) = match template {
        Some(path) => (path.display().to_string(), read_template(&path)?),
        None => match template_path(&repo_root, &created.template) {
            Ok(path) => (path.display().to_string(), read_template(&path)?),
            Err(_) => {
                let pinned = engine
                    .config()
                    .artifacts
                    .get(&created.template_source)
                    .await?;
                if !ctx.json() {
                    eprintln!(
                        "note: no template `{}` in {}; replaying with the copy pinned at creation",
                        created.template,
                        repo_root.display()
                    );
                }
                (
                    format!("{} (pinned)", created.template),
                    String::from_utf8_lossy(&pinned).into_owned(),
                )
            }
        },
    };
    // A repository fetched by URL lives in a bare cache with no files to read today: its
    // policy and CODEOWNERS are read at the mission's base commit there.
    let (policy_path, policy_source, codeowners) = if created.remote.is_some()
        && !repo_root.join(".flightdeck").exists()
        && repo_root.join("HEAD").is_file()
    {
        let at = flightdeck_app::intake::policy_at(&repo_root, &created.base_commit)?;
        (at.origin, at.source, at.codeowners)
    } else {
        policy_today(&repo_root)?
    };
    let mission_id = MissionId::parse(&id).ok_or_else(|| {
        CliError::bad_input(format!("`{id}` is not a mission id flightdeck made"), None)
    })?;
    let request = CreateMission {
        id: mission_id,
        template_name: created.template.clone(),
        template_file,
        template_source,
        params: created.params.clone(),
        repo: repo_root.clone(),
        base_ref: created.base_ref.clone(),
        requested_by: created.requested_by.clone(),
        policy_file: policy_path,
        policy_source,
        codeowners,
        base_commit: Some(created.base_commit.clone()),
        remote: created.remote.clone(),
        origin: flightdeck_engine::MissionOrigin::of(&created),
    };
    let mode = if reexecute {
        ReplayMode::Reexecute
    } else {
        ReplayMode::Verify
    };
    let scratch = ctx
        .data_dir()
        .join("replays")
        .join(format!("{id}-{}", std::process::id()));
    let report = engine.replay(&id, recorded, request, mode, scratch).await?;
    if ctx.json() {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else if report.diverged {
        println!(
            "replay {} of {}: DIVERGED at seq {} ({}) after {} matching event(s)",
            report.mode,
            report.mission,
            report.at_seq.unwrap_or(0),
            report.event_type.as_deref().unwrap_or("?"),
            report.checked
        );
        if let Some(difference) = &report.difference {
            println!("difference {difference}");
        }
        println!("why: {}", report.explanation);
    } else {
        println!(
            "replay {} of {}: same ({} events checked)",
            report.mode, report.mission, report.checked
        );
    }
    Ok(if report.diverged {
        exit::FAILED
    } else {
        exit::OK
    })
}

pub async fn fork(
    ctx: &Context,
    given: &str,
    at: u64,
    model: Option<String>,
    template: Option<PathBuf>,
) -> Result<i32, CliError> {
    ctx.stop_missions_on_signals();
    let engine = ctx.existing_engine(given, progress(ctx)).await?;
    let origin = engine.resolve_id(given).await?;
    let state = engine.load(&origin).await?;
    let created = state.created.clone().ok_or_else(|| {
        CliError::bad_input(
            format!("mission {origin} has no mission.created event"),
            None,
        )
    })?;
    let repo_root = repo_of(&created, None)?;
    let template_source = match &template {
        Some(path) => Some(read_template(path)?),
        None => None,
    };
    // A new template may name secrets: the fork is judged as `run` judges a mission (the
    // pinned template was judged when the mission it came from was created).
    if let (Some(source), Some(path)) = (&template_source, &template) {
        let (remote_url, from_checkout) =
            flightdeck_app::intake::repository_origin(ctx.data_dir(), &repo_root);
        let file = path.display().to_string();
        flightdeck_app::intake::check_secret_scopes(
            flightdeck_app::intake::ScopeSubject {
                template_name: &created.template,
                template_file: &file,
                template_source: source,
                repo: &repo_root,
                remote_url: remote_url.as_deref(),
                from_checkout,
            },
            &ctx.app.config,
            &ctx.app.config_path,
        )?;
    }
    // A scripted model named by --model is pinned now, as `run` pins the template's.
    let mut model_scripts = BTreeMap::new();
    if let Some(model) = &model {
        if let Some(path) = model.strip_prefix("scripted:") {
            let bad_path = |message: String| {
                CliError::bad_input(
                    format!("--model {model}: {message}"),
                    Some(flightdeck_engine::SCRIPT_PATH_HINT.to_string()),
                )
            };
            let file = flightdeck_engine::resolve_script(&repo_root, path).map_err(bad_path)?;
            let source = std::fs::read_to_string(&file)
                .map_err(|e| bad_path(format!("cannot read {}: {e}", file.display())))?;
            flightdeck_models::Script::parse(&source, path)
                .map_err(|e| CliError::bad_input(format!("--model {model}: {e}"), None))?;
            model_scripts.insert(model.clone(), source);
        }
    }
    let ulid = ulid::Ulid::new();
    let request = ForkMission {
        id: MissionId::from_parts(ulid.timestamp_ms(), ulid.random()),
        origin,
        at_seq: at,
        by: ctx.identity(Some(&repo_root))?,
        model,
        template_source,
        template_file: template
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        model_scripts,
    };
    let state = engine.fork(request).await?;
    print_summary(ctx, &state).await
}
