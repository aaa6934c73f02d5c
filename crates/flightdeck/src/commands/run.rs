//! `init` and `run`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flightdeck_core::MissionId;
use flightdeck_engine::{CreateMission, Engine, RepoFile};

use super::{print_summary, progress};
use crate::context::Context;
use crate::error::{exit, CliError};

/// The mission template `flightdeck init` writes: it runs offline and shows the loop.
pub const EXAMPLE_TEMPLATE: &str = r#"# An example mission template. Copy it to start your own: every key is described in
# flightdeck's docs/reference/templates.md.
description = "Add a line to NOTES.md"
owner = "@you"
goal = "Record \"{{note}}\" in NOTES.md."

[params.note]
default = "flightdeck was here"
description = "The line to add"

[workspace]
runtime = "local"       # commands run in a bubblewrap sandbox in a git worktree
network = "none"

[[steps]]
run = 'printf "%s\n" "{{note}}" >> NOTES.md'

[[steps]]
run = "grep -c . NOTES.md"

[publish]
title = "docs: add a note to NOTES.md"
"#;

pub fn init(ctx: &Context, repo: Option<PathBuf>) -> Result<i32, CliError> {
    let dir = repo.unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(CliError::bad_input(
            format!("{} is not a directory", dir.display()),
            Some("pass --repo with the repository's directory".to_string()),
        ));
    }
    let root = flightdeck_workspace::repo_root(&dir).unwrap_or(dir);
    let files = [
        (
            root.join(".flightdeck/policy.toml"),
            flightdeck_policy::BUILTIN_POLICY_TOML,
        ),
        (
            root.join(".flightdeck/missions/example.toml"),
            EXAMPLE_TEMPLATE,
        ),
    ];
    let mut report = Vec::new();
    for (path, contents) in files {
        let written = if path.exists() {
            false
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, contents)?;
            true
        };
        report.push((path, written));
    }
    if ctx.json() {
        let files: Vec<_> = report
            .iter()
            .map(|(p, w)| serde_json::json!({"path": p.display().to_string(), "written": w}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"repo": root.display().to_string(), "files": files})
        );
    } else {
        for (path, written) in &report {
            let what = if *written { "wrote" } else { "kept existing" };
            println!("{what} {}", path.display());
        }
        println!("next: flightdeck run example --repo {}", root.display());
    }
    Ok(exit::OK)
}

/// Finds the template file `name` names: a path, or a name under the repo's missions dir.
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
    Err(CliError::bad_input(
        format!("no template {} (looked for {})", name, path.display()),
        Some(hint),
    ))
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut params = BTreeMap::new();
    for item in raw {
        let Some((key, value)) = item.split_once('=') else {
            return Err(CliError::bad_input(
                format!("-p {item}: a param is KEY=VALUE"),
                Some(format!("for example -p {item}=VALUE")),
            ));
        };
        if params
            .insert(key.trim().to_string(), value.to_string())
            .is_some()
        {
            return Err(CliError::bad_input(format!("-p {key}: given twice"), None));
        }
    }
    Ok(params)
}

pub async fn run(
    ctx: &Context,
    template: &str,
    repo: Option<PathBuf>,
    base: &str,
    params: &[String],
    detach: bool,
) -> Result<i32, CliError> {
    let repo_dir = repo.unwrap_or_else(|| PathBuf::from("."));
    if !repo_dir.is_dir() {
        return Err(CliError::bad_input(
            format!("--repo {}: no such directory", repo_dir.display()),
            Some("pass --repo with a directory inside a git repository".to_string()),
        ));
    }
    let repo_root = flightdeck_workspace::repo_root(&repo_dir).map_err(|_| {
        CliError::bad_input(
            format!("--repo {}: not a git repository", repo_dir.display()),
            Some(
                "pass --repo with a directory inside a git repository (`git init` makes one)"
                    .to_string(),
            ),
        )
    })?;
    let path = template_path(&repo_root, template)?;
    let source = std::fs::read_to_string(&path).map_err(|e| {
        CliError::bad_input(
            format!("cannot read template {}: {e}", path.display()),
            None,
        )
    })?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("template")
        .to_string();
    let (policy_path, policy_source) = read_policy(&repo_root)?;
    let ulid = ulid::Ulid::new();
    let request = CreateMission {
        id: MissionId::from_parts(ulid.timestamp_ms(), ulid.random()),
        template_name: name,
        template_file: path.display().to_string(),
        template_source: source,
        params: parse_params(params)?,
        repo: repo_root.clone(),
        base_ref: base.to_string(),
        requested_by: ctx.identity(Some(&repo_root))?,
        policy_file: policy_path.display().to_string(),
        policy_source,
        codeowners: read_codeowners(&repo_root)?,
        base_commit: None,
    };
    // Everything the request names is checked before the store is opened: bad input
    // leaves no trace.
    Engine::validate(&request, &ctx.models, &ctx.workspace)?;
    let engine = ctx.engine(progress(ctx)).await?;
    if detach {
        let state = engine.create(request).await?;
        spawn_detached(ctx, &state.id)?;
        if !ctx.json() {
            eprintln!("mission {} runs in the background; follow it with `flightdeck timeline {} --follow`", state.id, state.id);
        }
        print_summary(ctx, &state).await?;
        return Ok(exit::OK);
    }
    let state = engine.run(request).await?;
    print_summary(ctx, &state).await
}

/// The repository's CODEOWNERS: the first of GitHub's locations that exists.
pub fn read_codeowners(repo_root: &Path) -> Result<Option<RepoFile>, CliError> {
    for location in flightdeck_policy::CODEOWNERS_LOCATIONS {
        let path = repo_root.join(location);
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                return Ok(Some(RepoFile {
                    path: location.to_string(),
                    source,
                }))
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
    Ok(None)
}

/// The repository's policy file and its text (the built-in policy when there is none).
pub fn read_policy(repo_root: &Path) -> Result<(PathBuf, String), CliError> {
    let policy_path = repo_root.join(".flightdeck/policy.toml");
    match std::fs::read_to_string(&policy_path) {
        Ok(text) => Ok((policy_path, text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
            PathBuf::from(flightdeck_policy::BUILTIN_POLICY_ORIGIN),
            flightdeck_policy::BUILTIN_POLICY_TOML.to_string(),
        )),
        Err(e) => Err(CliError::bad_input(
            format!("cannot read {}: {e}", policy_path.display()),
            None,
        )),
    }
}

/// Starts `flightdeck __start MISSION` in its own session, logging to the data directory.
fn spawn_detached(ctx: &Context, mission: &str) -> Result<(), CliError> {
    let logs = ctx.data_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("{mission}.log")))?;
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(exe);
    command.arg("--data-dir").arg(&ctx.data_dir);
    if let Some(config) = &ctx.global.config {
        command.arg("--config").arg(config);
    }
    command
        .arg("--database-url")
        .arg(ctx.database_url())
        .args(["__start", mission])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn()?;
    Ok(())
}
