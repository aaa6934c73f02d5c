//! The container runtime's side of provisioning: what a repository's devcontainer.json asks
//! for, turned into a container that flightdeck controls (labelled, never pulled, network as
//! the template says) and the setup commands it runs once.

use std::path::Path;

use flightdeck_core::template::{Network, WorkspaceSpec};
use flightdeck_workspace::caches::Cache;
use flightdeck_workspace::devcontainer::{self, CommandForm, LifecycleCommand};
use flightdeck_workspace::docker::{ContainerSpec, ImageSource, Mount, MountKind};
use flightdeck_workspace::{
    shell_words, Limits, Workspace, DEFAULT_MAX_PROCESSES, DEFAULT_MEMORY_MB,
};

use crate::EngineError;

/// Label naming the mission (or debugging workspace) a container belongs to.
pub const MISSION_LABEL: &str = "dev.flightdeck.mission";
/// Label naming the installation (a digest of its data directory), so `workspace gc` leaves
/// other installations' containers alone.
pub const INSTALLATION_LABEL: &str = "dev.flightdeck.installation";

/// Where caches appear in a container.
const CACHE_ROOT: &str = "/var/cache/flightdeck";

/// The container of workspace `id`.
pub fn container_name(id: &str) -> String {
    format!("flightdeck-{id}")
}

/// A setup command: its lifecycle name (`postCreateCommand`, `postCreateCommand.deps` for
/// one of an object's commands) and the shell line.
pub struct SetupCommand {
    pub name: String,
    pub line: String,
}

/// What to create for workspace `id`, named `name`: the definition is read from `root` (a
/// checkout of the base commit), the container gets `worktree`.
pub struct ContainerPlan {
    pub spec: ContainerSpec,
    pub setup: Vec<SetupCommand>,
    /// `image` or the tag of the build, for the timeline.
    pub image: String,
    /// Shell run before every command (`export`s of remoteEnv values that name the
    /// container's own variables); empty when none.
    pub prelude: String,
    /// The definition's keys flightdeck does not apply, and why (recorded in
    /// `workspace.provisioned.ignored`).
    pub ignored: std::collections::BTreeMap<String, String>,
}

/// `value` as the inside of a double-quoted shell word: `${containerEnv:X}` becomes `${X}`
/// (`${containerEnv:X:default}` becomes `${X:-default}`), everything else literal.
fn container_env_to_shell(value: &str) -> String {
    let escape = |text: &str| {
        text.chars()
            .flat_map(|c| match c {
                '"' | '\\' | '$' | '`' => vec!['\\', c],
                c => vec![c],
            })
            .collect::<String>()
    };
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${containerEnv:") {
        out.push_str(&escape(&rest[..start]));
        let after = &rest[start + "${containerEnv:".len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&escape(&rest[start..]));
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            match default {
                Some(default) => out.push_str(&format!("${{{name}:-{}}}", escape(default))),
                None => out.push_str(&format!("${{{name}}}")),
            }
        } else {
            out.push_str(&escape(
                &rest[start..start + "${containerEnv:".len() + end + 1],
            ));
        }
        rest = &after[end + 1..];
    }
    out.push_str(&escape(rest));
    out
}

/// A workspace whose commands run after a shell prelude.
pub(crate) struct WithPrelude {
    pub inner: std::sync::Arc<dyn Workspace>,
    pub prelude: String,
}

#[async_trait::async_trait]
impl Workspace for WithPrelude {
    fn root(&self) -> &Path {
        self.inner.root()
    }
    fn runtime(&self) -> &'static str {
        self.inner.runtime()
    }
    fn sandbox(&self) -> &'static str {
        self.inner.sandbox()
    }
    async fn exec(
        &self,
        spec: &flightdeck_workspace::CommandSpec,
    ) -> Result<flightdeck_workspace::CommandOutcome, flightdeck_workspace::WorkspaceError> {
        let mut spec = spec.clone();
        spec.command = format!("{}{}", self.prelude, spec.command);
        self.inner.exec(&spec).await
    }
}

pub(crate) fn plan(
    name: &str,
    id: &str,
    root: &Path,
    worktree: &Path,
    installation: &str,
    workspace: &WorkspaceSpec,
    caches: &[Cache],
) -> Result<ContainerPlan, EngineError> {
    let bad = EngineError::WorkspaceDefinition;
    let config = devcontainer::find(root).ok_or_else(|| {
        bad("workspace.runtime = \"docker\" needs .devcontainer/devcontainer.json (or .devcontainer.json) in the repository; hint: add one with an `image` or a `build`".into())
    })?;
    // The host's environment is not the workspace's: `${localEnv:…}` takes its default.
    let dc = devcontainer::load(root, &config, &|_| None).map_err(|e| bad(e.to_string()))?;
    if let Some(network) = dc.run_args.network.as_deref() {
        if network != "none" && network != "bridge" && network != "default" {
            return Err(bad(format!(
                "{}: runArgs `--network {network}` would leave the container's network namespace; flightdeck decides the network from the template's [workspace] network (none, setup, on); hint: remove the flag",
                dc.config_file.display()
            )));
        }
    }
    if dc.initialize_command.is_some() {
        return Err(bad(format!(
            "{}: `initializeCommand` runs on the host, outside any sandbox; flightdeck does not run it; hint: move it to `onCreateCommand`",
            dc.config_file.display()
        )));
    }
    let image = match &dc.source {
        devcontainer::ImageSource::Image(image) => ImageSource::Existing(image.clone()),
        devcontainer::ImageSource::Build(build) => ImageSource::Build {
            context: build.context.clone(),
            dockerfile: build.dockerfile.clone(),
            args: build.args.clone(),
            target: build.target.clone(),
            tag: format!("flightdeck-build/{id}:latest"),
        },
    };
    let image_name = match &image {
        ImageSource::Existing(name) => name.clone(),
        ImageSource::Build { tag, .. } => tag.clone(),
    };
    let mut env: Vec<(String, String)> = dc
        .container_env
        .iter()
        .chain(dc.run_args.env.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut mounts = Vec::new();
    for m in &dc.mounts {
        let mut m = mount(m);
        if m.kind == MountKind::Volume && !m.source.is_empty() {
            // A named volume outlives the mission and may be anyone's on this engine.
            return Err(bad(format!(
                "{}: mount of the named volume `{}`: named volumes are shared beyond the mission (and may hold other applications' data); hint: use an anonymous volume (no `source`) or a tmpfs",
                dc.config_file.display(),
                m.source
            )));
        }
        // Binds inside the repository point into the mission's worktree.
        if let Ok(inside) = Path::new(&m.source).strip_prefix(root) {
            if m.kind == MountKind::Bind {
                m.source = worktree.join(inside).display().to_string();
            }
        }
        mounts.push(m);
    }
    for cache in caches {
        let target = format!("{CACHE_ROOT}/{}", cache.ecosystem);
        let (mount_at, variable) = match cache.ecosystem.as_str() {
            "cargo" => (format!("{target}/registry"), "CARGO_HOME"),
            "npm" => (target.clone(), "npm_config_cache"),
            _ => (target.clone(), "PIP_CACHE_DIR"),
        };
        mounts.push(Mount {
            kind: MountKind::Bind,
            source: cache.host_dir.display().to_string(),
            target: mount_at,
            read_only: false,
        });
        if !env.iter().any(|(k, _)| k == variable) {
            env.push((variable.to_string(), target));
        }
    }
    // `${containerEnv:VAR}` is the container's own value (`PATH` from the image, say): only a
    // shell in the container knows it, so such variables are exported before each command.
    let mut remote_env = Vec::new();
    let mut prelude = String::new();
    for (key, value) in &dc.remote_env {
        let Some(value) = value else { continue };
        if value.contains("${containerEnv:") {
            prelude.push_str(&format!(
                "export {key}=\"{}\"; ",
                container_env_to_shell(value)
            ));
        } else {
            remote_env.push((key.clone(), value.clone()));
        }
    }
    let mut setup = Vec::new();
    for (name, command) in [
        ("onCreateCommand", &dc.on_create_command),
        ("updateContentCommand", &dc.update_content_command),
        ("postCreateCommand", &dc.post_create_command),
        ("postStartCommand", &dc.post_start_command),
        ("postAttachCommand", &dc.post_attach_command),
    ] {
        match command {
            None => {}
            Some(LifecycleCommand::Shell(line)) => setup.push(SetupCommand {
                name: name.into(),
                line: line.clone(),
            }),
            Some(LifecycleCommand::Exec(argv)) => setup.push(SetupCommand {
                name: name.into(),
                line: shell_words(argv),
            }),
            // The reference runs these in parallel; one after another (in name order) gives
            // the same result for independent commands, and a reproducible log.
            Some(LifecycleCommand::Parallel(commands)) => {
                for (key, form) in commands {
                    let line = match form {
                        CommandForm::Shell(line) => line.clone(),
                        CommandForm::Exec(argv) => shell_words(argv),
                    };
                    setup.push(SetupCommand {
                        name: format!("{name}.{key}"),
                        line,
                    });
                }
            }
        }
    }
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(MISSION_LABEL.to_string(), id.to_string());
    labels.insert(INSTALLATION_LABEL.to_string(), installation.to_string());
    let spec = ContainerSpec {
        image,
        name: name.to_string(),
        labels,
        env,
        user: dc.run_args.user.clone().or(dc.container_user.clone()),
        remote_user: dc.remote_user.clone(),
        remote_env,
        workspace_folder: dc.workspace_folder.clone(),
        worktree: worktree.to_path_buf(),
        mounts,
        network: workspace.network == Network::On
            || (workspace.network == Network::Setup && !setup.is_empty()),
        limits: Limits {
            memory_mb: workspace.memory_mb.or(Some(DEFAULT_MEMORY_MB)),
            max_processes: workspace.max_processes.or(Some(DEFAULT_MAX_PROCESSES)),
        },
    };
    Ok(ContainerPlan {
        spec,
        setup,
        image: image_name,
        prelude,
        ignored: dc
            .ignored
            .iter()
            .map(|k| (k.key.clone(), k.why.clone()))
            .collect(),
    })
}

fn mount(m: &devcontainer::Mount) -> Mount {
    match m {
        devcontainer::Mount::Bind {
            source,
            target,
            readonly,
        } => Mount {
            kind: MountKind::Bind,
            source: source.display().to_string(),
            target: target.clone(),
            read_only: *readonly,
        },
        devcontainer::Mount::Volume {
            source,
            target,
            readonly,
        } => Mount {
            kind: MountKind::Volume,
            source: source.clone().unwrap_or_default(),
            target: target.clone(),
            read_only: *readonly,
        },
        devcontainer::Mount::Tmpfs {
            target, readonly, ..
        } => Mount {
            kind: MountKind::Tmpfs,
            source: String::new(),
            target: target.clone(),
            read_only: *readonly,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_env_references_become_shell_expansions() {
        for (value, shell) in [
            ("${containerEnv:PATH}:/opt/bin", "${PATH}:/opt/bin"),
            ("${containerEnv:HOME:/root}/x", "${HOME:-/root}/x"),
            (
                "a \"quoted\" $literal `tick`",
                "a \\\"quoted\\\" \\$literal \\`tick\\`",
            ),
            ("${containerEnv:bad name}", "\\${containerEnv:bad name}"),
            ("${containerEnv:OPEN", "\\${containerEnv:OPEN"),
        ] {
            assert_eq!(container_env_to_shell(value), shell, "{value}");
        }
    }
}
