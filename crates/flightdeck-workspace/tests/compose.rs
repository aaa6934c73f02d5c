//! Docker Compose devcontainers: the checks of the compose files (no engine needed), and
//! projects brought up and down on a real engine with the compose CLI. The engine tests fail,
//! not skip, without an engine: run `scripts/container-engine start` and export the
//! DOCKER_HOST it prints (as for `tests/docker.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flightdeck_workspace::compose::{self, ComposeCli, ComposeError, ComposeUp};
use flightdeck_workspace::docker::{
    DockerEngine, DockerWorkspace, COMPOSE_PROJECT_LABEL, REMOTE_USER_LABEL,
};
use flightdeck_workspace::{CommandOutcome, CommandSpec, Workspace};

const BASE_IMAGE: &str = "flightdeck-test/busybox:1";
const LABEL: &str = "flightdeck.test";
const FOLDER: &str = "/workspaces/project";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose")
}

// ---- check: no engine ----

#[test]
fn hostile_compose_files_are_refused_naming_the_key() {
    let root = fixtures();
    let table: &[(&str, &str, &str)] = &[
        ("docker-socket", "volumes", "socket"),
        ("host-path", "volumes", "outside the repository"),
        ("home-path", "volumes", "home directory"),
        ("interpolated-path", "volumes", "outside the repository"),
        ("privileged", "privileged", "every capability"),
        ("merge-key-privileged", "privileged", "every capability"),
        ("cap-add", "cap_add", "capabilities"),
        ("security-opt", "security_opt", "confinement"),
        ("devices", "devices", "devices"),
        ("network-host", "network_mode", "host"),
        ("network-container", "network_mode", "container:other"),
        ("pid-host", "pid", "host"),
        ("ipc-host", "ipc", "host"),
        ("userns-host", "userns_mode", "host"),
        ("build-outside", "build.context", "outside the repository"),
        ("env-file-outside", "env_file", "outside the repository"),
        ("extends-outside", "extends.file", "outside the repository"),
        ("undeclared-volume", "volumes", "does not declare"),
        (
            "external-network",
            "networks.outside.external",
            "outside the project",
        ),
        (
            "external-volume",
            "volumes.data.external",
            "outside the project",
        ),
        (
            "volume-bind-device",
            "volumes.data.driver_opts",
            "host directory",
        ),
        ("named-volume", "volumes.data.name", "another project's"),
        (
            "named-network",
            "networks.default.name",
            "another project's",
        ),
        ("logging-syslog", "logging", "log driver"),
        ("deploy-resources", "deploy", "resources"),
    ];
    for (name, key, why) in table {
        let file = root.join(format!("hostile/{name}.yml"));
        let error = compose::check(std::slice::from_ref(&file), &root)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        let text = error.to_string();
        assert!(
            matches!(error, ComposeError::Refused { .. }),
            "{name}: {text}"
        );
        assert!(text.contains(&format!("`{key}`")), "{name}: {text}");
        assert!(text.contains(why), "{name}: {text}");
        assert!(text.contains(&file.display().to_string()), "{name}: {text}");
        assert!(text.contains("\nhint: "), "{name}: {text}");
        if !name.starts_with("external")
            && !name.starts_with("volume-bind")
            && !name.starts_with("named-")
        {
            assert!(text.contains("service `app`"), "{name}: {text}");
        }
    }
}

#[test]
fn a_file_inside_the_repository_is_read_and_merged() {
    let root = fixtures().join("inside");
    let file = root.join("docker-compose.yml");
    let model = compose::check(std::slice::from_ref(&file), &root).unwrap();
    assert_eq!(model.files, vec![file.clone()]);
    assert_eq!(model.project_dir, root);
    let app = &model.services["app"];
    let build = app.build.as_ref().unwrap();
    assert_eq!(build.context, root.join("sub"));
    assert_eq!(build.args["V"], "1");
    assert_eq!(app.depends_on.iter().collect::<Vec<_>>(), vec!["db"]);
    assert_eq!(app.user.as_deref(), Some("1000"));
    assert_eq!(app.working_dir.as_deref(), Some("/w"));
    assert_eq!(app.environment["A"], "1");
    assert!(app.networks.contains("back"));
    assert_eq!(
        model.services["db"].image.as_deref(),
        Some("flightdeck-test/busybox:1")
    );
    assert!(model.volumes.contains("data"));
    assert!(model.networks.contains("back"));
    assert!(
        model.ignored["services.db.ports"].contains("host's network"),
        "{:?}",
        model.ignored
    );
}

#[test]
fn the_same_file_outside_the_given_repository_is_refused() {
    // `inside` is fine within its folder; with the root narrowed below it, its binds and
    // build context are outside.
    let root = fixtures().join("inside/sub");
    let file = fixtures().join("inside/docker-compose.yml");
    let error = compose::check(std::slice::from_ref(&file), &root).unwrap_err();
    assert!(
        error.to_string().contains("outside the repository"),
        "{error}"
    );
}

#[test]
fn later_files_override_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yml");
    let b = dir.path().join("b.yml");
    std::fs::write(
        &a,
        "services:\n  app:\n    image: one\n    depends_on: [db]\n  db:\n    image: x\n",
    )
    .unwrap();
    std::fs::write(&b, "services:\n  app:\n    image: two\n    user: dev\n").unwrap();
    let model = compose::check(&[a.clone(), b.clone()], dir.path()).unwrap();
    assert_eq!(model.files, vec![a, b]);
    assert_eq!(model.services["app"].image.as_deref(), Some("two"));
    assert_eq!(model.services["app"].user.as_deref(), Some("dev"));
    assert!(model.services["app"].depends_on.contains("db"));
}

#[test]
fn a_second_file_cannot_smuggle_what_the_first_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yml");
    let b = dir.path().join("b.yml");
    std::fs::write(&a, "services:\n  app:\n    image: one\n").unwrap();
    std::fs::write(&b, "services:\n  app:\n    cap_add: [NET_ADMIN]\n").unwrap();
    let error = compose::check(&[a, b.clone()], dir.path()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("`cap_add`"), "{text}");
    assert!(text.contains(&b.display().to_string()), "{text}");
}

// ---- the engine ----

async fn engine() -> DockerEngine {
    let engine = match DockerEngine::connect().await {
        Ok(engine) => engine,
        Err(e) => panic!(
            "no container engine for the compose tests ({e}).\nRun `scripts/container-engine \
             start` and export the DOCKER_HOST=… line it prints."
        ),
    };
    if let Err(e) = engine.local_image(BASE_IMAGE).await {
        panic!("{e}\nRun `scripts/container-engine start`: it builds {BASE_IMAGE}.");
    }
    engine
}

async fn cli() -> ComposeCli {
    match compose::detect().await {
        Ok(cli) => cli,
        Err(e) => panic!("{e}"),
    }
}

fn unique(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    compose::project_name(&format!(
        "flightdeck-t-{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes a project, even when the test panics.
struct Project(String);

impl Drop for Project {
    fn drop(&mut self) {
        let project = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(engine) = DockerEngine::connect().await {
                    let _ = compose::sweep(&engine, &project).await;
                }
            });
        })
        .join();
    }
}

/// A repository (worktree) holding the fixture's compose files, writable by any user.
fn repository(fixture: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let devcontainer = dir.path().join(".devcontainer");
    std::fs::create_dir(&devcontainer).unwrap();
    for entry in std::fs::read_dir(fixtures().join(fixture)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), devcontainer.join(entry.file_name())).unwrap();
    }
    dir
}

fn request(project: &str, repo: &Path, file: &str) -> ComposeUp {
    let devcontainer = repo.join(".devcontainer");
    ComposeUp {
        project: project.to_string(),
        files: vec![devcontainer.join(file)],
        project_dir: devcontainer,
        service: "app".into(),
        run_services: None,
        worktree: repo.to_path_buf(),
        workspace_folder: FOLDER.into(),
        labels: BTreeMap::from([(LABEL.to_string(), project.to_string())]),
        env: vec![("CONTAINER_VAR".into(), "from-flightdeck $HOME".into())],
        user: None,
        remote_user: Some("dev".into()),
        remote_env: vec![("REMOTE_VAR".into(), "from-remote".into())],
        image: None,
        network_open: false,
        limits: flightdeck_workspace::Limits {
            memory_mb: Some(256),
            max_processes: Some(200),
        },
        extra_mounts: Vec::new(),
        entrypoints: Vec::new(),
    }
}

fn command(command: &str) -> CommandSpec {
    CommandSpec {
        command: command.into(),
        timeout: Duration::from_secs(30),
        env: Vec::new(),
        network: false,
        trusted: false,
        private_home: false,
    }
}

async fn run(workspace: &DockerWorkspace, line: &str) -> CommandOutcome {
    workspace.exec(&command(line)).await.unwrap()
}

fn text(outcome: &CommandOutcome) -> String {
    String::from_utf8_lossy(&outcome.output).into_owned()
}

/// A TCP server on all of the host's addresses, counting connections.
struct HostServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HostServer {
    async fn start() -> HostServer {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        HostServer {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateways of every network the container is on (the host's ends of the bridges):
/// from the routes, and from the engine (a bridge without a host address keeps its
/// gateway in the engine's records).
async fn gateways(engine: &DockerEngine, workspace: &DockerWorkspace) -> Vec<String> {
    let mut out = Vec::new();
    let inspect = engine
        .api()
        .inspect_container(workspace.id(), None)
        .await
        .unwrap();
    for (_, network) in inspect
        .network_settings
        .and_then(|s| s.networks)
        .unwrap_or_default()
    {
        if let Some(gateway) = network.gateway.filter(|g| !g.is_empty()) {
            out.push(gateway);
        }
    }
    let routes = run(workspace, "ip route | awk '/^default/ { print $3 }'").await;
    for line in text(&routes).lines() {
        let line = line.trim().to_string();
        if !line.is_empty() && !out.contains(&line) {
            out.push(line);
        }
    }
    assert!(!out.is_empty(), "no gateway at all");
    out
}

/// Whether the host server answers at any of the gateways.
async fn host_reachable(
    engine: &DockerEngine,
    workspace: &DockerWorkspace,
    server: &HostServer,
) -> bool {
    let mut reached = false;
    for gateway in gateways(engine, workspace).await {
        let outcome = run(
            workspace,
            &format!("nc -w 3 {gateway} {} </dev/null", server.port),
        )
        .await;
        reached |= outcome.success();
    }
    reached
}

const ASK_DB: &str = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 db 8080";

async fn project_networks(engine: &DockerEngine, project: &str) -> Vec<String> {
    use bollard::query_parameters::ListNetworksOptions;
    let filter = format!("{COMPOSE_PROJECT_LABEL}={project}");
    engine
        .api()
        .list_networks(Some(ListNetworksOptions {
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![filter],
            )])),
        }))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| n.name)
        .collect()
}

async fn project_containers(engine: &DockerEngine, project: &str) -> BTreeMap<String, String> {
    engine
        .list_labelled(COMPOSE_PROJECT_LABEL)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.labels.get(COMPOSE_PROJECT_LABEL).map(String::as_str) == Some(project))
        .map(|c| {
            (
                c.labels
                    .get(compose::COMPOSE_SERVICE_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                c.id,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_closed_project_reaches_its_sidecar_and_not_the_host() {
    let engine = engine().await;
    let cli = cli().await;
    let project = unique("closed");
    let _cleanup = Project(project.clone());
    let repo = repository("sidecar");
    let scratch = tempfile::tempdir().unwrap();
    let server = HostServer::start().await;

    let up = request(&project, repo.path(), "docker-compose.yml");
    let started = compose::up_detailed(&cli, &up, scratch.path())
        .await
        .unwrap_or_else(|e| panic!("{} failed: {e}", cli.describe()));
    assert!(started.file.starts_with(scratch.path()));
    assert!(
        started.ignored.contains_key("services.db.ports"),
        "{:?}",
        started.ignored
    );
    // Nothing was written into the repository.
    let mut names: Vec<_> = std::fs::read_dir(repo.path().join(".devcontainer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["docker-compose.yml", "missing-image.yml"]);

    let workspace = engine.attach(&started.container).await.unwrap();
    assert_eq!(workspace.workspace_folder(), FOLDER);

    // The sidecar answers by its service name.
    let outcome = run(&workspace, ASK_DB).await;
    assert!(text(&outcome).contains("HTTP/1."), "{}", text(&outcome));

    // Commands run as the remote user, with the env, in the workspace folder, and the
    // worktree is bound there.
    let outcome = run(
        &workspace,
        "id -un; pwd; echo \"$CONTAINER_VAR|$REMOTE_VAR|$FROM_FILE\"; echo hi > from-container",
    )
    .await;
    assert!(outcome.success(), "{}", text(&outcome));
    assert_eq!(
        text(&outcome),
        format!("dev\n{FOLDER}\nfrom-flightdeck $HOME|from-remote|yes\n")
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("from-container")).unwrap(),
        "hi\n"
    );

    // The host is out of reach, at every gateway the container knows.
    assert!(!host_reachable(&engine, &workspace, &server).await);
    assert_eq!(server.accepted(), 0);

    // Labels on every service; the remote user on the workspace's.
    let containers = project_containers(&engine, &project).await;
    assert_eq!(
        containers.keys().cloned().collect::<Vec<_>>(),
        vec!["app", "db"]
    );
    let labelled = engine.list_labelled(LABEL).await.unwrap();
    for (service, id) in &containers {
        let found = labelled.iter().find(|c| &c.id == id).unwrap();
        assert_eq!(found.labels[LABEL], project, "{service}");
        assert_eq!(
            found.labels.get(REMOTE_USER_LABEL).map(String::as_str),
            (service == "app").then_some("dev"),
            "{service}"
        );
    }
    // Limits and confinement.
    let inspect = engine
        .api()
        .inspect_container(&started.container, None)
        .await
        .unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.pids_limit, Some(200));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(host.port_bindings.unwrap_or_default().is_empty());
    assert!(host
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o.starts_with("no-new-privileges")),);

    // The network switched on and off again; the sidecar stays reachable throughout.
    workspace.set_network(true).await.unwrap();
    assert!(host_reachable(&engine, &workspace, &server).await);
    assert!(server.accepted() >= 1);
    let outcome = run(&workspace, ASK_DB).await;
    assert!(text(&outcome).contains("HTTP/1."), "{}", text(&outcome));
    workspace.set_network(false).await.unwrap();
    let before = server.accepted();
    assert!(!host_reachable(&engine, &workspace, &server).await);
    assert_eq!(server.accepted(), before);
    let outcome = run(&workspace, ASK_DB).await;
    assert!(text(&outcome).contains("HTTP/1."), "{}", text(&outcome));

    // `down` from the name alone.
    assert!(!project_networks(&engine, &project).await.is_empty());
    let projects = compose::projects_with_label(&engine, LABEL, Some(&project))
        .await
        .unwrap();
    assert_eq!(
        projects.into_iter().collect::<Vec<_>>(),
        vec![project.clone()]
    );
    let elsewhere = tempfile::tempdir().unwrap();
    compose::down(&cli, &project, elsewhere.path())
        .await
        .unwrap();
    assert!(project_containers(&engine, &project).await.is_empty());
    assert!(project_networks(&engine, &project).await.is_empty());
    // Again: nothing left is not an error.
    compose::down(&cli, &project, elsewhere.path())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_open_project_reaches_the_host() {
    let engine = engine().await;
    let cli = cli().await;
    let project = unique("open");
    let _cleanup = Project(project.clone());
    let repo = repository("sidecar");
    let scratch = tempfile::tempdir().unwrap();
    let server = HostServer::start().await;

    let mut up = request(&project, repo.path(), "docker-compose.yml");
    up.network_open = true;
    let id = compose::up(&cli, &up, scratch.path()).await.unwrap();
    let workspace = engine.attach(&id).await.unwrap();
    // The same check as the closed project's, which it passes: the difference is the policy.
    assert!(host_reachable(&engine, &workspace, &server).await);
    assert!(server.accepted() >= 1);
    let outcome = run(&workspace, ASK_DB).await;
    assert!(text(&outcome).contains("HTTP/1."), "{}", text(&outcome));
    compose::down(&cli, &project, scratch.path()).await.unwrap();
}

#[tokio::test]
async fn run_services_brings_up_only_those() {
    let engine = engine().await;
    let cli = cli().await;
    let project = unique("run-services");
    let _cleanup = Project(project.clone());
    let repo = repository("sidecar");
    let scratch = tempfile::tempdir().unwrap();

    let mut up = request(&project, repo.path(), "docker-compose.yml");
    // `service` comes up even when runServices leaves it out.
    up.run_services = Some(Vec::new());
    let id = compose::up(&cli, &up, scratch.path()).await.unwrap();
    let containers = project_containers(&engine, &project).await;
    assert_eq!(containers.keys().cloned().collect::<Vec<_>>(), vec!["app"]);
    assert_eq!(containers["app"], id);
    let workspace = engine.attach(&id).await.unwrap();
    let outcome = run(&workspace, ASK_DB).await;
    assert!(!text(&outcome).contains("HTTP/1."), "{}", text(&outcome));
    compose::down(&cli, &project, scratch.path()).await.unwrap();
    assert!(project_containers(&engine, &project).await.is_empty());
}

#[tokio::test]
async fn a_missing_image_is_refused_before_anything_starts() {
    let engine = engine().await;
    let cli = cli().await;
    let project = unique("missing");
    let _cleanup = Project(project.clone());
    let repo = repository("sidecar");
    let scratch = tempfile::tempdir().unwrap();
    let up = request(&project, repo.path(), "missing-image.yml");
    let error = compose::up(&cli, &up, scratch.path()).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ComposeError::ImageMissing { .. }), "{text}");
    assert!(text.contains("flightdeck-test/never-present:1"), "{text}");
    assert!(text.contains("service `app`"), "{text}");
    assert!(text.contains("never pulls"), "{text}");
    assert!(project_containers(&engine, &project).await.is_empty());
}

#[tokio::test]
async fn an_unknown_service_is_refused() {
    let cli = cli().await;
    let project = unique("unknown");
    let repo = repository("sidecar");
    let scratch = tempfile::tempdir().unwrap();
    let mut up = request(&project, repo.path(), "docker-compose.yml");
    up.run_services = Some(vec!["cache".into()]);
    let error = compose::up(&cli, &up, scratch.path()).await.unwrap_err();
    assert!(error.to_string().contains("service `cache`"), "{error}");
}

#[tokio::test]
async fn detect_describes_the_cli() {
    let cli = cli().await;
    let described = cli.describe();
    assert!(
        described.starts_with("docker compose ") || described.starts_with("docker-compose "),
        "{described}"
    );
    assert!(
        cli.version.chars().next().unwrap().is_ascii_digit(),
        "{described}"
    );
}
