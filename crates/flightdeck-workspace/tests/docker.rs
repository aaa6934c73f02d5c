//! The container runtime against a real engine. These tests fail, not skip, without one:
//! run `scripts/container-engine start` and export the DOCKER_HOST it prints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck_workspace::docker::{
    ContainerSpec, DockerEngine, DockerError, DockerWorkspace, ImageSource, Mount, MountKind,
};
use flightdeck_workspace::{CommandOutcome, CommandSpec, Workspace};

const BASE_IMAGE: &str = "flightdeck-test/busybox:1";
const LABEL: &str = "flightdeck.test";
const FOLDER: &str = "/workspaces/project";

async fn engine() -> DockerEngine {
    let engine = match DockerEngine::connect().await {
        Ok(engine) => engine,
        Err(e) => panic!(
            "no container engine for the docker tests ({e}).\nRun `scripts/container-engine \
             start` and export the DOCKER_HOST=… line it prints."
        ),
    };
    if let Err(e) = engine.local_image(BASE_IMAGE).await {
        panic!("{e}\nRun `scripts/container-engine start`: it builds {BASE_IMAGE}.");
    }
    engine
}

fn unique(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "fd-test-{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes what a test made, even when it panics.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut self.containers);
        let images = std::mem::take(&mut self.images);
        // Drop cannot await; a thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(engine) = DockerEngine::connect().await else {
                    return;
                };
                for container in &containers {
                    let _ = engine.remove_container(container).await;
                }
                for image in &images {
                    let _ = engine.remove_image(image).await;
                }
            });
        })
        .join();
    }
}

/// A worktree the container's `dev` user (uid 1000) can write to.
fn worktree() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn spec(name: &str, worktree: &Path, image: ImageSource) -> ContainerSpec {
    ContainerSpec {
        image,
        name: name.to_string(),
        labels: BTreeMap::from([(LABEL.to_string(), name.to_string())]),
        env: vec![("CONTAINER_VAR".into(), "from-container".into())],
        user: None,
        remote_user: Some("dev".into()),
        remote_env: vec![
            ("REMOTE_VAR".into(), "from-remote".into()),
            ("OVERRIDDEN".into(), "remote".into()),
        ],
        workspace_folder: FOLDER.into(),
        worktree: worktree.to_path_buf(),
        mounts: vec![Mount {
            kind: MountKind::Tmpfs,
            source: String::new(),
            target: "/scratch".into(),
            read_only: false,
        }],
        network: false,
        limits: flightdeck_workspace::Limits::default(),
        entrypoints: Vec::new(),
    }
}

fn existing() -> ImageSource {
    ImageSource::Existing(BASE_IMAGE.into())
}

fn command(command: &str) -> CommandSpec {
    CommandSpec {
        command: command.into(),
        timeout: Duration::from_secs(60),
        env: Vec::new(),
        network: false,
        trusted: false,
        private_home: false,
    }
}

async fn run(workspace: &DockerWorkspace, cmd: &str) -> CommandOutcome {
    workspace.exec(&command(cmd)).await.unwrap()
}

fn text(outcome: &CommandOutcome) -> String {
    String::from_utf8_lossy(&outcome.output).into_owned()
}

/// Interfaces in `/proc/net/dev`.
async fn interfaces(workspace: &DockerWorkspace) -> Vec<String> {
    let outcome = run(workspace, "cat /proc/net/dev").await;
    assert!(outcome.success(), "{}", text(&outcome));
    text(&outcome)
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_string())
        .collect()
}

fn is_image_id(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn provision_records_the_digest_labels_the_container_and_remove_removes_it() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("provision");
    cleanup.containers.push(name.clone());
    let tree = worktree();

    let (workspace, image) = engine
        .provision(spec(&name, tree.path(), existing()))
        .await
        .unwrap();
    assert_eq!(image.image, BASE_IMAGE);
    assert!(is_image_id(&image.digest), "{}", image.digest);
    // Imported locally, never pushed: dockerd records no registry digest; Podman makes one
    // up under `localhost/`.
    if let Some(repo_digest) = &image.repo_digest {
        let (_, digest) = repo_digest.split_once('@').unwrap();
        assert!(is_image_id(digest), "{repo_digest}");
    }
    assert_eq!(workspace.runtime(), "docker");
    assert_eq!(workspace.sandbox(), "container");
    assert_eq!(workspace.root(), tree.path());
    assert_eq!(workspace.name(), name);

    let listed = engine.list_labelled(LABEL).await.unwrap();
    let found = listed
        .iter()
        .find(|c| c.name == name)
        .expect("the container is listed by its label");
    assert_eq!(found.labels.get(LABEL), Some(&name));
    assert_eq!(found.id, workspace.id());
    assert!(found.running);

    // The mount table of the spec.
    let outcome = run(
        &workspace,
        "touch /scratch/x && grep ' /scratch ' /proc/mounts",
    )
    .await;
    assert!(outcome.success(), "{}", text(&outcome));
    assert!(text(&outcome).contains("tmpfs"), "{}", text(&outcome));

    // A second container of the same name is refused, clearly.
    let again = engine.provision(spec(&name, tree.path(), existing())).await;
    assert!(matches!(again, Err(DockerError::NameInUse(_))), "{again:?}");

    workspace.remove().await.unwrap();
    let listed = engine.list_labelled(LABEL).await.unwrap();
    assert!(listed.iter().all(|c| c.name != name));
    assert!(matches!(
        engine.attach(&name).await,
        Err(DockerError::ContainerMissing(_))
    ));
    // Removing twice is fine.
    workspace.remove().await.unwrap();
}

#[tokio::test]
async fn builds_from_a_dockerfile_with_an_arg_a_run_and_a_dockerignore() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("build");
    let tag = format!("flightdeck-test/{name}:1");
    cleanup.containers.push(name.clone());
    cleanup.images.push(tag.clone());

    let context = tempfile::tempdir().unwrap();
    let dir = context.path();
    std::fs::create_dir_all(dir.join(".devcontainer")).unwrap();
    std::fs::write(
        dir.join(".devcontainer/Dockerfile"),
        format!(
            "FROM {BASE_IMAGE}\nARG GREETING=unset\nRUN echo \"$GREETING\" > /greeting && \
             mkdir -p /ctx\nCOPY . /ctx/\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(".dockerignore"), "secret.txt\ntarget\n").unwrap();
    std::fs::write(dir.join("secret.txt"), "do not send").unwrap();
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(dir.join("target/debug/big"), "build output").unwrap();
    std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
    // Over tar's 100-byte name field.
    let deep = "d".repeat(60);
    let long_dir = dir.join(&deep).join(&deep);
    std::fs::create_dir_all(&long_dir).unwrap();
    std::fs::write(long_dir.join("long-name.txt"), "deep\n").unwrap();
    std::os::unix::fs::symlink("hello.txt", dir.join("link.txt")).unwrap();

    let source = ImageSource::Build {
        context: dir.to_path_buf(),
        dockerfile: PathBuf::from(".devcontainer/Dockerfile"),
        args: BTreeMap::from([("GREETING".to_string(), "hello-from-arg".to_string())]),
        target: None,
        tag: tag.clone(),
    };
    let tree = worktree();
    let (workspace, image) = engine
        .provision(spec(&name, tree.path(), source))
        .await
        .unwrap();
    assert_eq!(image.image, tag);
    assert!(is_image_id(&image.digest), "{}", image.digest);
    assert_eq!(engine.local_image(&tag).await.unwrap().digest, image.digest);

    let outcome = run(&workspace, "cat /greeting").await;
    assert_eq!(text(&outcome), "hello-from-arg\n");
    let outcome = run(
        &workspace,
        &format!(
            "cat /ctx/hello.txt /ctx/{deep}/{deep}/long-name.txt; readlink /ctx/link.txt; \
             ls -a /ctx"
        ),
    )
    .await;
    assert!(outcome.success(), "{}", text(&outcome));
    let listing = text(&outcome);
    assert!(listing.starts_with("hello\ndeep\nhello.txt\n"), "{listing}");
    assert!(!listing.contains("secret.txt"), "{listing}");
    assert!(!listing.contains("target"), "{listing}");
    assert!(listing.contains(".devcontainer"), "{listing}");

    // A base image that is not here is an error before any build (which would pull it).
    std::fs::write(
        dir.join(".devcontainer/Dockerfile"),
        "ARG BASE=flightdeck-test/not-here:0\nFROM ${BASE}\nRUN true\n",
    )
    .unwrap();
    let missing = engine
        .build_image(
            dir,
            Path::new(".devcontainer/Dockerfile"),
            &BTreeMap::new(),
            None,
            &format!("{tag}-missing"),
            &BTreeMap::new(),
        )
        .await;
    match missing {
        Err(DockerError::ImageMissing(image)) => assert_eq!(image, "flightdeck-test/not-here:0"),
        other => panic!("expected a missing image, got {other:?}"),
    }

    // A failing RUN is a build error with the build's output.
    std::fs::write(
        dir.join(".devcontainer/Dockerfile"),
        format!("FROM {BASE_IMAGE}\nRUN echo about-to-fail && exit 7\n"),
    )
    .unwrap();
    let failed = engine
        .build_image(
            dir,
            Path::new(".devcontainer/Dockerfile"),
            &BTreeMap::new(),
            None,
            &format!("{tag}-failing"),
            &BTreeMap::new(),
        )
        .await;
    match failed {
        Err(e @ DockerError::Build { .. }) => {
            let message = e.to_string();
            assert!(message.contains("about-to-fail"), "{message}");
        }
        other => panic!("expected a build error, got {other:?}"),
    }
    workspace.remove().await.unwrap();
}

#[tokio::test]
async fn exec_gives_output_in_order_exit_codes_env_user_and_working_directory() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("exec");
    cleanup.containers.push(name.clone());
    let tree = worktree();
    let (workspace, _) = engine
        .provision(spec(&name, tree.path(), existing()))
        .await
        .unwrap();

    let outcome = run(
        &workspace,
        "echo out; echo err >&2; echo out2; echo err2 >&2",
    )
    .await;
    assert_eq!(text(&outcome), "out\nerr\nout2\nerr2\n");
    assert_eq!(outcome.exit_code, Some(0));
    assert!(outcome.success());
    assert!(!outcome.timed_out);

    let outcome = run(&workspace, "echo failing; exit 3").await;
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(text(&outcome), "failing\n");

    // `sh -c` semantics: $0 is sh, no positional parameters.
    let outcome = run(&workspace, "echo \"$0 $#\"").await;
    assert_eq!(text(&outcome), "sh 0\n");

    let mut with_env = command("echo \"$CONTAINER_VAR $REMOTE_VAR $SPEC_VAR $OVERRIDDEN\"");
    with_env.env = vec![
        ("SPEC_VAR".into(), "from-spec".into()),
        ("OVERRIDDEN".into(), "spec".into()),
    ];
    let outcome = workspace.exec(&with_env).await.unwrap();
    assert_eq!(
        text(&outcome),
        "from-container from-remote from-spec spec\n"
    );

    let outcome = run(&workspace, "id -u; id -un").await;
    assert_eq!(text(&outcome), "1000\ndev\n");

    let outcome = run(&workspace, "pwd; echo written-inside > inside.txt").await;
    assert_eq!(text(&outcome), format!("{FOLDER}\n"));
    assert_eq!(
        std::fs::read_to_string(tree.path().join("inside.txt")).unwrap(),
        "written-inside\n"
    );
    std::fs::write(tree.path().join("from-host.txt"), "host\n").unwrap();
    let outcome = run(&workspace, "cat from-host.txt").await;
    assert_eq!(text(&outcome), "host\n");

    // No stdin: a command reading it sees end of file instead of hanging.
    let started = Instant::now();
    let outcome = run(&workspace, "cat; echo done").await;
    assert_eq!(text(&outcome), "done\n");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Binary output, and more than one frame of it.
    let outcome = run(&workspace, "head -c 300000 /dev/zero; printf '\\001end'").await;
    assert_eq!(outcome.output.len(), 300_004);
    assert!(outcome.output.ends_with(b"\x01end"));

    // A setuid or setgid file made in the container does not stay one on the host (it
    // would run as the container's user there, root for a root container).
    let outcome = run(
        &workspace,
        "mkdir -p bin && cp /bin/sh bin/suid && chmod 4755 bin/suid && cp /bin/sh sgid && chmod 2755 sgid && stat -c %a bin/suid sgid",
    )
    .await;
    assert_eq!(
        text(&outcome),
        "4755\n2755\n",
        "the container could set the bits"
    );
    for file in ["bin/suid", "sgid"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tree.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "{file}: {mode:o}");
    }

    workspace.remove().await.unwrap();
}

#[tokio::test]
async fn timeout_kills_the_command_and_what_it_started() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("timeout");
    cleanup.containers.push(name.clone());
    let tree = worktree();
    let (workspace, _) = engine
        .provision(spec(&name, tree.path(), existing()))
        .await
        .unwrap();

    let mut slow = command("sleep 300 & echo started; sleep 301");
    slow.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let outcome = workspace.exec(&slow).await.unwrap();
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_code, None);
    assert!(!outcome.success());
    assert!(text(&outcome).contains("started"), "{}", text(&outcome));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let outcome = run(&workspace, "ps -o args | grep -c '^sleep 30[01]$' || true").await;
    assert_eq!(text(&outcome), "0\n", "processes survived the timeout");

    // A command that ended leaving background jobs (one holding its output, one not): they
    // are killed at once, the command's own exit code kept.
    let started = Instant::now();
    let outcome = run(
        &workspace,
        "sleep 302 & sleep 303 >/dev/null 2>&1 & echo left; exit 4",
    )
    .await;
    assert_eq!(outcome.exit_code, Some(4));
    assert!(!outcome.timed_out);
    assert_eq!(text(&outcome), "left\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A service in its own session does not outlive its command either: it could read the
    // secrets of the commands after it. (Like a daemon's start script, the command waits
    // until the service has its session: before that, it is a job.)
    let outcome = run(
        &workspace,
        "setsid sleep 304 >/dev/null 2>&1 & sleep 1; echo ok",
    )
    .await;
    assert_eq!(text(&outcome), "ok\n");
    let outcome = run(&workspace, "ps -o args | grep -c '^sleep 30[234]$' || true").await;
    assert_eq!(text(&outcome), "0\n");

    workspace.remove().await.unwrap();
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

/// The container's default gateway (the host's end of the bridge).
async fn gateway(workspace: &DockerWorkspace) -> String {
    let outcome = run(workspace, "ip route | awk '/^default/ { print $3 }'").await;
    let gateway = text(&outcome).trim().to_string();
    assert!(!gateway.is_empty(), "no default route: {}", text(&outcome));
    gateway
}

#[tokio::test]
async fn network_is_off_by_default_and_set_network_switches_it() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("network");
    cleanup.containers.push(name.clone());
    let tree = worktree();
    let server = HostServer::start().await;

    let (workspace, _) = engine
        .provision(spec(&name, tree.path(), existing()))
        .await
        .unwrap();
    assert_eq!(interfaces(&workspace).await, vec!["lo".to_string()]);
    // Nothing but loopback: no address of the host is reachable.
    let outcome = run(
        &workspace,
        &format!("nc -w 3 172.17.0.1 {} </dev/null", server.port),
    )
    .await;
    assert!(!outcome.success(), "{}", text(&outcome));

    if engine.is_podman() {
        let error = workspace.set_network(true).await.unwrap_err();
        assert!(error.to_string().contains("Podman"), "{error}");
        assert_eq!(interfaces(&workspace).await, vec!["lo".to_string()]);
        workspace.remove().await.unwrap();
        return;
    }

    workspace.set_network(true).await.unwrap();
    let names = interfaces(&workspace).await;
    assert!(
        names.len() >= 2 && names.contains(&"lo".to_string()),
        "{names:?}"
    );
    // Idempotent.
    workspace.set_network(true).await.unwrap();
    let reach = format!(
        "nc -w 3 {} {} </dev/null",
        gateway(&workspace).await,
        server.port
    );
    let outcome = run(&workspace, &reach).await;
    assert!(
        outcome.success(),
        "host unreachable with network on: {}",
        text(&outcome)
    );
    let before = server.accepted();
    assert!(before >= 1);

    workspace.set_network(false).await.unwrap();
    assert_eq!(interfaces(&workspace).await, vec!["lo".to_string()]);
    let outcome = run(&workspace, &reach).await;
    assert!(
        !outcome.success(),
        "host reachable with network off: {}",
        text(&outcome)
    );
    assert_eq!(server.accepted(), before);
    workspace.set_network(false).await.unwrap();

    workspace.remove().await.unwrap();
}

#[tokio::test]
async fn a_container_may_start_with_the_network() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("network-on");
    cleanup.containers.push(name.clone());
    let tree = worktree();
    let server = HostServer::start().await;

    let mut with_network = spec(&name, tree.path(), existing());
    with_network.network = true;
    let (workspace, _) = engine.provision(with_network).await.unwrap();
    let reach = format!(
        "nc -w 3 {} {} </dev/null",
        gateway(&workspace).await,
        server.port
    );
    let outcome = run(&workspace, &reach).await;
    assert!(outcome.success(), "host unreachable: {}", text(&outcome));
    assert!(server.accepted() >= 1);

    workspace.set_network(false).await.unwrap();
    assert_eq!(interfaces(&workspace).await, vec!["lo".to_string()]);
    workspace.remove().await.unwrap();
}

#[tokio::test]
async fn attach_restarts_a_stopped_container_and_keeps_the_exec_settings() {
    let engine = engine().await;
    let mut cleanup = Cleanup::default();
    let name = unique("attach");
    cleanup.containers.push(name.clone());
    let tree = worktree();
    let (workspace, _) = engine
        .provision(spec(&name, tree.path(), existing()))
        .await
        .unwrap();
    run(&workspace, "echo kept > kept.txt").await;

    // SIGTERM ends the init loop at once.
    let started = Instant::now();
    engine
        .stop_container(&name, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let listed = engine.list_labelled(LABEL).await.unwrap();
    assert!(listed.iter().any(|c| c.name == name && !c.running));

    let attached = DockerWorkspace::attach(&name).await.unwrap();
    assert_eq!(attached.id(), workspace.id());
    assert_eq!(attached.root(), tree.path());
    assert_eq!(attached.workspace_folder(), FOLDER);
    let outcome = run(
        &attached,
        "id -un; pwd; cat kept.txt; echo \"$REMOTE_VAR $CONTAINER_VAR\"",
    )
    .await;
    assert_eq!(
        text(&outcome),
        format!("dev\n{FOLDER}\nkept\nfrom-remote from-container\n")
    );
    // Attaching to a running container changes nothing.
    let again = engine.attach(&name).await.unwrap();
    assert_eq!(run(&again, "echo hi").await.output, b"hi\n");

    attached.remove().await.unwrap();
}

#[tokio::test]
async fn missing_images_and_engines_are_clear_errors() {
    let engine = engine().await;
    let tree = worktree();
    let name = unique("missing");
    let mut cleanup = Cleanup::default();
    cleanup.containers.push(name.clone());
    let missing = ImageSource::Existing("flightdeck-test/not-here:0".into());
    let error = engine
        .provision(spec(&name, tree.path(), missing))
        .await
        .unwrap_err();
    assert!(matches!(error, DockerError::ImageMissing(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("image flightdeck-test/not-here:0 is not present locally; build or load it"),
        "{error}"
    );

    let error = DockerEngine::connect_to("unix:///nonexistent/flightdeck.sock")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/flightdeck.sock"),
        "{message}"
    );
    assert!(message.contains("DOCKER_HOST"), "{message}");

    let error = DockerEngine::connect_to("tcp://127.0.0.1:2375")
        .await
        .unwrap_err();
    assert!(
        matches!(error, DockerError::UnsupportedHost(_)),
        "{error:?}"
    );
}
