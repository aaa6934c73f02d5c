//! The container runtime's side of provisioning: what a repository's devcontainer.json asks
//! for, turned into a container that flightdeck controls (labelled, never pulled, network as
//! the template says) and the setup commands it runs once.

use std::path::{Path, PathBuf};

use flightdeck_core::event::FeaturePin;
use flightdeck_core::template::{Network, WorkspaceSpec};
use flightdeck_workspace::caches::Cache;
use flightdeck_workspace::devcontainer::{self, CommandForm, LifecycleCommand};
use flightdeck_workspace::docker::{ContainerSpec, DockerEngine, ImageSource, Mount, MountKind};
use flightdeck_workspace::features::fetch::{
    FetchSettings, RegistryCredential, RegistryFetcher, LOCAL_REGISTRY_HOSTS,
};
use flightdeck_workspace::features::image::{self, FeatureBuild, FeatureImage, FeatureImageError};
use flightdeck_workspace::features::resolve::ResolvedFeature;
use flightdeck_workspace::features::FeatureError;
use flightdeck_workspace::WorkspaceError;
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
#[derive(Debug, Clone)]
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
    /// Dev container features to install on top of the image; `None` without any.
    pub features: Option<FeaturesPlan>,
    /// The Compose project the container is a service of (`dockerComposeFile`).
    pub compose: Option<ComposePlan>,
}

/// `features` of a definition, to be fetched and built when the container is made.
pub struct FeaturesPlan {
    /// Id as written → options, in the file's order.
    pub features: serde_json::Map<String, serde_json::Value>,
    pub override_order: Vec<String>,
    /// The devcontainer.json in the worktree: local features (`./name`) are read from its
    /// folder, and the lock file beside it pins what is fetched.
    pub config_file: PathBuf,
    /// The template's `[workspace] egress`: the only registries features come from.
    pub egress: Vec<String>,
    pub container_user: Option<String>,
    pub remote_user: Option<String>,
    /// Whether the features' install scripts get the network (`network` is `setup` or `on`).
    pub network: bool,
}

/// `dockerComposeFile`: the project to bring up, in the worktree.
pub struct ComposePlan {
    /// The compose files, as paths in the worktree (relative paths in them resolve there).
    pub files: Vec<PathBuf>,
    pub service: String,
    pub run_services: Option<Vec<String>>,
    /// Named after the container (`flightdeck-<id>`): labelled, and what `remove` and
    /// `workspace gc` sweep.
    pub project: String,
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
    // The worktree holds the same files as `root` when a workspace is made afresh; paths the
    // container runtime reads later (local features, compose files) are taken from there,
    // since `root` may be a throwaway checkout.
    let in_worktree = |path: &Path| match path.strip_prefix(root) {
        Ok(inside) => worktree.join(inside),
        Err(_) => path.to_path_buf(),
    };
    let compose = match &dc.source {
        devcontainer::ImageSource::Compose(compose) => Some(ComposePlan {
            files: compose.files.iter().map(|f| in_worktree(f)).collect(),
            service: compose.service.clone(),
            run_services: compose.run_services.clone(),
            project: flightdeck_workspace::compose::project_name(name),
        }),
        _ => None,
    };
    let features = (!dc.features.is_empty()).then(|| FeaturesPlan {
        features: dc.features.clone(),
        override_order: dc.override_feature_install_order.clone(),
        config_file: in_worktree(&dc.config_file),
        egress: workspace.egress.clone(),
        container_user: dc.container_user.clone(),
        remote_user: dc.remote_user.clone(),
        network: workspace.network != Network::None,
    });
    let image = match &dc.source {
        // The service's image is the compose file's; the runtime brings the project up.
        devcontainer::ImageSource::Compose(compose) => {
            ImageSource::Existing(format!("compose:{}", compose.service))
        }
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
        if let Some(command) = command {
            setup.extend(lifecycle_commands(name, command));
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
        // Features' entrypoints are added once the features are resolved.
        entrypoints: Vec::new(),
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
        features,
        compose,
    })
}

/// Fetches and builds `features` onto the spec's image (building that first when the
/// definition has a Dockerfile), logging in to registries with `logins` (registry →
/// (username, password)).
pub(crate) async fn install_features(
    engine: &DockerEngine,
    spec: &ContainerSpec,
    features: &FeaturesPlan,
    logins: &std::collections::BTreeMap<String, (String, String)>,
) -> Result<FeatureImage, EngineError> {
    let base = match &spec.image {
        ImageSource::Existing(name) => name.clone(),
        ImageSource::Build {
            context,
            dockerfile,
            args,
            target,
            tag,
        } => {
            engine
                .build_image(
                    context,
                    dockerfile,
                    args,
                    target.as_deref(),
                    tag,
                    &spec.labels,
                )
                .await
                .map_err(WorkspaceError::from)?;
            tag.clone()
        }
    };
    let settings = FetchSettings {
        allowed_hosts: features.egress.clone(),
        credentials: logins
            .iter()
            .map(|(registry, (username, password))| {
                let credential = RegistryCredential {
                    username: username.clone(),
                    password: password.clone(),
                };
                (registry.clone(), credential)
            })
            .collect(),
        plain_http: LOCAL_REGISTRY_HOSTS.iter().map(|h| h.to_string()).collect(),
        ..FetchSettings::default()
    };
    let fetcher = RegistryFetcher::new(settings).map_err(feature_error)?;
    let scratch = tempfile::tempdir().map_err(|source| WorkspaceError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let request = FeatureBuild {
        features: &features.features,
        override_order: &features.override_order,
        config_file: &features.config_file,
        container_user: features.container_user.as_deref(),
        remote_user: features.remote_user.as_deref(),
        labels: &spec.labels,
        network: features.network,
    };
    image::build(engine, &base, &request, &fetcher, scratch.path())
        .await
        .map_err(|e| match e {
            FeatureImageError::Feature(e) => feature_error(e),
            FeatureImageError::Docker(e) => WorkspaceError::from(e).into(),
        })
}

fn feature_error(e: FeatureError) -> EngineError {
    let message = e.to_string();
    // Most errors carry their own hint; the rest get the one that fits their kind.
    let hint = match &e {
        _ if message.contains("hint:") => "",
        FeatureError::Integrity { .. } => "\nhint: what the registry served is not what was pinned; check devcontainer-lock.json (regenerate it with `flightdeck workspace lock`) and the registry",
        FeatureError::Fetch { .. } => "\nhint: the registry must be in the template's [workspace] egress, and a private one needs a login in [secrets] (`registry`, `username`) that the template names",
        _ => "\nhint: fix the `features` of devcontainer.json",
    };
    EngineError::WorkspaceDefinition(format!("devcontainer.json features: {message}{hint}"))
}

/// What the installed features ask of the container: their mounts (volumes and tmpfs; a
/// named volume becomes the container's own, since it would be shared beyond the mission),
/// their entrypoints, and their lifecycle commands, which run before the definition's own of
/// the same stage, in install order (as in the reference).
pub(crate) fn apply_features(
    spec: &mut ContainerSpec,
    features: &[ResolvedFeature],
    definition_setup: &[SetupCommand],
    commands: &mut Vec<SetupCommand>,
) -> Result<(), EngineError> {
    for feature in features {
        let metadata = &feature.metadata;
        for m in &metadata.mounts {
            let mut m = mount(m);
            match m.kind {
                MountKind::Bind => {
                    return Err(EngineError::WorkspaceDefinition(format!(
                        "devcontainer.json features: feature `{}` binds {} from the host into the container: a workspace must not see the host\nhint: remove the feature, or install what it provides in a Dockerfile (`build`)",
                        feature.written, m.source
                    )))
                }
                MountKind::Volume => m.source = String::new(),
                MountKind::Tmpfs => {}
            }
            spec.mounts.push(m);
        }
        if let Some(entrypoint) = &metadata.entrypoint {
            spec.entrypoints.push(entrypoint.clone());
        }
    }
    for stage in LIFECYCLE_STAGES {
        for feature in features {
            let metadata = &feature.metadata;
            let command = match stage {
                "onCreateCommand" => &metadata.on_create_command,
                "updateContentCommand" => &metadata.update_content_command,
                "postCreateCommand" => &metadata.post_create_command,
                "postStartCommand" => &metadata.post_start_command,
                _ => &metadata.post_attach_command,
            };
            if let Some(command) = command {
                let name = format!("{stage} ({})", feature.written);
                commands.extend(lifecycle_commands(&name, command));
            }
        }
        commands.extend(
            definition_setup
                .iter()
                .filter(|c| c.name == stage || c.name.starts_with(&format!("{stage}.")))
                .cloned(),
        );
    }
    Ok(())
}

/// What is recorded of an installed feature.
pub(crate) fn pin_of(feature: &ResolvedFeature) -> FeaturePin {
    FeaturePin {
        id: feature.written.clone(),
        version: feature.metadata.version.clone().unwrap_or_default(),
        resolved: feature.fetched.resolved.clone(),
        integrity: feature.fetched.integrity.clone(),
    }
}

/// The lifecycle stages, in the order they run.
const LIFECYCLE_STAGES: [&str; 5] = [
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
];

/// One lifecycle command as setup commands: one, or one per entry of the object form (in
/// name order: the reference runs them in parallel; one after another gives the same result
/// for independent commands, and a reproducible log).
fn lifecycle_commands(name: &str, command: &LifecycleCommand) -> Vec<SetupCommand> {
    match command {
        LifecycleCommand::Shell(line) => vec![SetupCommand {
            name: name.into(),
            line: line.clone(),
        }],
        LifecycleCommand::Exec(argv) => vec![SetupCommand {
            name: name.into(),
            line: shell_words(argv),
        }],
        LifecycleCommand::Parallel(commands) => commands
            .iter()
            .map(|(key, form)| SetupCommand {
                name: format!("{name}.{key}"),
                line: match form {
                    CommandForm::Shell(line) => line.clone(),
                    CommandForm::Exec(argv) => shell_words(argv),
                },
            })
            .collect(),
    }
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
