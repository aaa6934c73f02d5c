//! The git side of a worktree with the real git: a lock left by a killed git is recovered, a
//! lock a running git holds is reported, a restore leaves nothing unrecorded behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flightdeck_workspace::redact::Secrets;
use flightdeck_workspace::{GitError, SnapshotStore, Worktree};

const SECRET: &str = "tok_9f8e7d6c5b4a3210";

/// The lock git takes on the index snapshots are made with.
fn index_lock(wt: &Worktree) -> PathBuf {
    let mut lock = wt.index_path().into_os_string();
    lock.push(".lock");
    PathBuf::from(lock)
}

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap()
}

/// A repository with one commit, a worktree of it, and the worktree's admin dir.
fn worktree(tmp: &Path) -> (Worktree, PathBuf) {
    let repo = tmp.join("repo");
    std::fs::create_dir(&repo).unwrap();
    assert!(git(&repo, &["init", "--quiet"]).status.success());
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    assert!(git(&repo, &["add", "a.txt"]).status.success());
    assert!(git(&repo, &["commit", "--quiet", "-m", "a"])
        .status
        .success());
    let base = flightdeck_workspace::resolve_commit(&repo, "HEAD").unwrap();
    let store = SnapshotStore {
        objects: tmp.join("objects/m"),
        read_also: Vec::new(),
        secrets: Secrets::new([("API_TOKEN".to_string(), SECRET.to_string())]),
    };
    let wt = Worktree::create(&repo, &tmp.join("wt"), &base, store).unwrap();
    let admins: Vec<PathBuf> = std::fs::read_dir(repo.join(".git/worktrees"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(admins.len(), 1);
    (wt, admins[0].clone())
}

/// A process that looks like a git working on the worktree to anyone reading `/proc`: `sh`
/// under the name `git`, with `args` after its script, started in `cwd`; it waits until
/// killed.
fn fake_git(args: &[String], cwd: &Path) -> Child {
    let child = Command::new("sh")
        .arg0("git")
        // A builtin waiting on a pipe the test holds: no child process (a forked one would
        // show the same arguments until it execs), and it ends when killed.
        .args(["-c", "read -r _", "git"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // `spawn` returns once the exec has begun; the kernel shows the new arguments in
    // `/proc/<pid>/cmdline` a little later (it reads empty until then).
    let cmdline = format!("/proc/{}/cmdline", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read(&cmdline).unwrap().starts_with(b"git\0") {
        assert!(
            Instant::now() < deadline,
            "{cmdline} never showed the arguments"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn a_stale_index_lock_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path().canonicalize().unwrap();
    let (wt, admin) = worktree(&tmp);
    let lock = index_lock(&wt);
    std::fs::write(wt.path().join("b.txt"), "b\n").unwrap();
    // What a git killed during `git add` leaves.
    std::fs::write(&lock, "").unwrap();
    let git_dir = format!("--git-dir={}", admin.display());
    let plain = Command::new("git")
        .arg("-C")
        .arg(wt.path())
        .args([&git_dir, "add", "--all"])
        .env("GIT_INDEX_FILE", wt.index_path())
        .env("GIT_OBJECT_DIRECTORY", tmp.join("objects/m"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains(".lock"),
        "git alone should fail on the lock: {plain:?}"
    );

    let tree = wt.snapshot().unwrap();
    assert!(!lock.exists());
    let files = Command::new("git")
        .arg("-C")
        .arg(wt.path())
        .args([&git_dir, "ls-tree", "--name-only", &tree])
        .env("GIT_OBJECT_DIRECTORY", tmp.join("objects/m"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&files.stdout), "a.txt\nb.txt\n");
}

/// Whether a lock is taken as held depends on who is running: a git naming the worktree's
/// admin dir or work tree (by argument or current directory) holds it; a git elsewhere or a
/// non-git process naming it does not.
#[test]
fn an_orphan_git_of_a_killed_flightdeck_is_waited_for_then_its_lock_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path().canonicalize().unwrap();
    let (wt, admin) = worktree(&tmp);
    let lock = index_lock(&wt);
    std::fs::write(&lock, "").unwrap();
    let admin_arg = format!("--git-dir={}", admin.display());
    let mut orphan = fake_git(&[admin_arg, "add".to_string(), "--all".to_string()], &tmp);
    // It ends a moment later, as a killed flightdeck's git does.
    let ending = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        orphan.kill().unwrap();
        orphan.wait().unwrap();
    });
    let started = Instant::now();
    wt.snapshot().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited for the orphan"
    );
    assert!(!lock.exists());
    ending.join().unwrap();
}

#[test]
fn a_live_git_on_the_worktree_keeps_its_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path().canonicalize().unwrap();
    let (wt, admin) = worktree(&tmp);
    let lock = index_lock(&wt);
    let work_tree = wt.path().to_path_buf();
    let args = |items: &[&str]| -> Vec<String> { items.iter().map(|s| s.to_string()).collect() };
    let admin_arg = format!("--git-dir={}", admin.display());
    let work_tree_arg = format!("--work-tree={}", work_tree.display());
    let other = tmp.join("repo");
    // (argv after the script, current directory, holds the lock)
    let table: Vec<(Vec<String>, &Path, bool)> = vec![
        (args(&[&admin_arg, "add", "--all"]), &tmp, true),
        (args(&[&work_tree_arg, "add"]), &tmp, true),
        (
            args(&["-C", &work_tree.display().to_string(), "add"]),
            &tmp,
            true,
        ),
        (args(&["add", "."]), &work_tree, true),
        (args(&["-C", "wt", "status"]), &tmp, true),
        (
            args(&["-C", &other.display().to_string(), "status"]),
            &tmp,
            false,
        ),
        (args(&["status"]), &other, false),
    ];
    for (argv, cwd, holds) in &table {
        std::fs::write(&lock, "").unwrap();
        let mut holder = fake_git(argv, cwd);
        let result = wt.snapshot();
        let pid = holder.id();
        holder.kill().unwrap();
        holder.wait().unwrap();
        match (holds, result) {
            (true, Err(e)) => {
                let GitError::IndexLocked {
                    lock: named,
                    pid: holder_pid,
                    ..
                } = &e
                else {
                    panic!("{argv:?}: {e}");
                };
                assert_eq!(Path::new(named), lock, "{argv:?}");
                assert_eq!(*holder_pid, pid, "{argv:?}");
                let message = e.to_string();
                assert!(
                    message.contains(&lock.display().to_string())
                        && message.contains(&pid.to_string())
                        && message.contains("\nhint: "),
                    "{message}"
                );
                assert!(lock.exists(), "{argv:?}: a held lock must stay");
                // Its holder gone, the lock is stale.
                wt.snapshot().unwrap();
                assert!(!lock.exists(), "{argv:?}");
            }
            (false, Ok(_)) => assert!(!lock.exists(), "{argv:?}"),
            (_, result) => panic!("{argv:?} in {}: {result:?}", cwd.display()),
        }
    }
}

/// Restoring a snapshot throws away everything unrecorded, nested repositories included: a
/// plain `git clean -fdx` skips a directory that holds a `.git` (a repository, or a `.git`
/// file pointing at one), so what an agent or a killed command dropped there before the
/// mission parked would survive into the steps that follow.
#[test]
fn restore_removes_nested_repositories_of_every_form() {
    type Plant = fn(&Path);
    let forms: &[(&str, Plant)] = &[
        ("git init", |wt| {
            let nested = wt.join("sub/nested");
            std::fs::create_dir_all(&nested).unwrap();
            assert!(git(&nested, &["init", "--quiet"]).status.success());
            std::fs::write(nested.join("payload.sh"), "echo planted\n").unwrap();
        }),
        ("repository with a commit", |wt| {
            let nested = wt.join("deep/er/nested");
            std::fs::create_dir_all(&nested).unwrap();
            assert!(git(&nested, &["init", "--quiet"]).status.success());
            std::fs::write(nested.join("payload.sh"), "echo planted\n").unwrap();
            assert!(git(&nested, &["add", "."]).status.success());
            assert!(git(&nested, &["commit", "--quiet", "-m", "x"])
                .status
                .success());
        }),
        (".git file pointing elsewhere", |wt| {
            let nested = wt.join("linked");
            std::fs::create_dir_all(&nested).unwrap();
            let elsewhere = wt.join("linked-git");
            std::fs::create_dir_all(&elsewhere).unwrap();
            assert!(git(&elsewhere, &["init", "--quiet", "--bare"])
                .status
                .success());
            std::fs::write(
                nested.join(".git"),
                format!("gitdir: {}\n", elsewhere.display()),
            )
            .unwrap();
            std::fs::write(nested.join("payload.sh"), "echo planted\n").unwrap();
        }),
    ];
    let mut failures = Vec::new();
    for (form, plant) in forms {
        for to_snapshot in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let (wt, _) = worktree(tmp.path());
            let tree = wt.snapshot().unwrap();
            plant(wt.path());
            wt.restore(to_snapshot.then_some(tree.as_str())).unwrap();
            let mut left: Vec<String> = std::fs::read_dir(wt.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".git")
                .collect();
            left.sort();
            if left != ["a.txt"] {
                failures.push(format!(
                    "{form} (restore to snapshot: {to_snapshot}): left {left:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An empty repository: `cat-file` needs one, and reads the objects it is pointed at.
fn probe_repo() -> &'static Path {
    static PROBE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new("git")
                .args(["init", "--quiet", "--bare"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            dir
        })
        .path()
}

/// Every object in the object directory `objects` itself (not its alternates).
fn objects_in(objects: &Path) -> Vec<String> {
    // Alternates are read from `info/alternates`: moved aside while listing.
    let _ = std::fs::rename(objects.join("info/alternates"), objects.join("info/a"));
    let own = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch-check"])
        .current_dir(objects.parent().unwrap())
        .env("GIT_DIR", probe_repo())
        .env("GIT_OBJECT_DIRECTORY", objects)
        .output()
        .unwrap();
    let _ = std::fs::rename(objects.join("info/a"), objects.join("info/alternates"));
    assert!(own.status.success(), "{own:?}");
    String::from_utf8_lossy(&own.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Snapshots are written to the mission's object directory, never the repository's; a file
/// holding a secret (in any form redaction knows) stops the snapshot before anything is
/// added anywhere; publishing copies the commit into the repository.
#[test]
fn snapshots_go_to_the_mission_objects_and_a_secret_stops_them() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path().canonicalize().unwrap();
    let (wt, _) = worktree(&tmp);
    let repo_objects = tmp.join("repo/.git/objects");
    let mission_objects = tmp.join("objects/m");
    let repo_before = objects_in(&repo_objects);

    std::fs::write(wt.path().join("b.txt"), "b\n").unwrap();
    let tree = wt.snapshot().unwrap();
    assert_eq!(objects_in(&repo_objects), repo_before);
    let mission_before = objects_in(&mission_objects);
    assert!(mission_before.iter().any(|o| o.starts_with(&tree)));

    let hex: String = SECRET.bytes().map(|b| format!("{b:02X}")).collect();
    for (file, content) in [
        ("raw.txt", SECRET.to_string()),
        ("nested/hex.txt", format!("key = {hex}\n")),
        ("reversed.txt", SECRET.chars().rev().collect()),
        (SECRET, "a name that is the secret".to_string()),
    ] {
        let path = wt.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(wt.path().join("harmless.txt"), "new\n").unwrap();
        std::fs::write(&path, content).unwrap();
        match wt.snapshot() {
            Err(GitError::SecretInWorktree {
                path: named,
                secret,
            }) => {
                // A name that is the secret is shown masked.
                assert_eq!(named, file.replace(SECRET, "[REDACTED:API_TOKEN]"));
                assert_eq!(secret, "API_TOKEN");
            }
            other => panic!("{file}: {other:?}"),
        }
        assert_eq!(objects_in(&mission_objects), mission_before, "{file}");
        assert_eq!(objects_in(&repo_objects), repo_before, "{file}");
        std::fs::remove_file(&path).unwrap();
    }

    let commit = wt
        .commit_to_branch(&tree, "fd/m", "m", 1_700_000_000)
        .unwrap();
    let shown = git(&tmp.join("repo"), &["show", "fd/m:b.txt"]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout), "b\n");
    assert!(objects_in(&repo_objects)
        .iter()
        .any(|o| o.starts_with(&commit)));
    let secret_message = wt.commit_to_branch(&tree, "fd/n", &format!("m {SECRET}"), 1_700_000_000);
    assert!(
        matches!(secret_message, Err(GitError::SecretInWorktree { .. })),
        "{secret_message:?}"
    );
}
