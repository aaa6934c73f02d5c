#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

//! The agent's file tools: every way out of the worktree or into `.git` is refused, and the
//! tools themselves (atomic writes, exact edits, listing and search under `.gitignore`) work.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use flightdeck_workspace::{Access, ConfinedFs, EntryKind, FileToolError};

/// A worktree `root` next to a directory `outside` holding `secret.txt`; the root has a
/// `.git/config` of its own.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/config"), "[core]\n").unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "secret").unwrap();
        Sandbox {
            _dir: dir,
            root,
            outside,
        }
    }

    fn fs(&self) -> ConfinedFs {
        ConfinedFs::new(&self.root).unwrap()
    }

    fn file(&self, path: &str, content: impl AsRef<[u8]>) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// `target` may start with `{root}` or `{outside}` for an absolute path.
    fn link(&self, link: &str, target: &str) {
        let target = target
            .replace("{root}", self.root.to_str().unwrap())
            .replace("{outside}", self.outside.to_str().unwrap());
        let link = self.root.join(link);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(target, link).unwrap();
    }

    /// Nothing outside the root or in `.git` changed.
    fn assert_untouched(&self, case: &str) {
        let outside: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["secret.txt"], "{case}: files appeared outside");
        let secret = fs::read_to_string(self.outside.join("secret.txt")).unwrap();
        assert_eq!(secret, "secret", "{case}: outside file changed");
        let git: Vec<_> = fs::read_dir(self.root.join(".git"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(git, ["config"], "{case}: .git changed");
        let config = fs::read_to_string(self.root.join(".git/config")).unwrap();
        assert_eq!(config, "[core]\n", "{case}: .git/config changed");
    }
}

enum Setup {
    File(&'static str, &'static str),
    Bytes(&'static str, &'static [u8]),
    Dir(&'static str),
    Link(&'static str, &'static str),
}

enum Op {
    Check(&'static str, Access),
    Read(&'static str),
    ReadMax(&'static str, usize),
    Write(&'static str, &'static str),
    Edit(&'static str, &'static str, &'static str),
    List(&'static str),
    Search(&'static str, &'static str),
}

use Op::*;
use Setup::{Bytes, Dir, File, Link};

/// The variant's name, from its `Debug` form.
fn variant(error: &FileToolError) -> String {
    format!("{error:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect()
}

fn run(sandbox: &Sandbox, op: &Op) -> Result<String, FileToolError> {
    let fs = sandbox.fs();
    let on_disk = |path: &str| {
        String::from_utf8_lossy(&fs::read(sandbox.root.join(path)).unwrap()).into_owned()
    };
    Ok(match *op {
        Check(path, access) => fs.check(path, access)?,
        Read(path) | ReadMax(path, _) => {
            let max = if let ReadMax(_, max) = *op {
                max
            } else {
                1 << 20
            };
            let read = fs.read_file(path, max)?;
            let mut out = String::from_utf8_lossy(&read.bytes).into_owned();
            if read.truncated {
                out += &format!(" [truncated, {} bytes]", read.size);
            }
            out
        }
        Write(path, content) => {
            let written = fs.write_file(path, content)?;
            assert_eq!(written.bytes, content.len() as u64);
            let how = if written.created {
                "created"
            } else {
                "replaced"
            };
            format!("{how}:{}", on_disk(&written.path))
        }
        Edit(path, old, new) => on_disk(&fs.edit_file(path, old, new)?.path),
        List(path) => {
            let listing = fs.list_files(path, 100)?;
            let mut names: Vec<String> = listing
                .entries
                .iter()
                .map(|e| match e.kind {
                    EntryKind::File => e.path.clone(),
                    EntryKind::Dir => format!("{}/", e.path),
                    EntryKind::Symlink => format!("{}@", e.path),
                })
                .collect();
            if listing.truncated {
                names.push("…".into());
            }
            names.join(",")
        }
        Search(pattern, path) => {
            let found = fs.search(pattern, path, 100)?;
            found
                .matches
                .iter()
                .map(|m| format!("{}:{}:{}", m.path, m.line, m.text))
                .collect::<Vec<_>>()
                .join(";")
        }
    })
}

#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Vec<Setup>, Op, &'static str)> {
    vec![
        // Lexical refusals.
        ("absolute path", vec![], Read("/etc/passwd"), "err:Absolute"),
        ("absolute path for a write", vec![], Write("/tmp/x", "x"), "err:Absolute"),
        ("parent dir", vec![], Read("../outside/secret.txt"), "err:ParentDir"),
        ("parent dir for a write", vec![], Write("../outside/new.txt", "x"), "err:ParentDir"),
        ("climbs out after a step in", vec![Dir("a")], Read("a/../../outside/secret.txt"), "err:ParentDir"),
        ("any `..` at all", vec![File("b", "b")], Read("a/../b"), "err:ParentDir"),
        ("`..` after a symlink", vec![Link("link", "{outside}"), File("x", "x")], Read("link/../x"), "err:ParentDir"),
        ("NUL byte", vec![], Read("a\0b"), "err:NulByte"),
        ("empty path read", vec![], Read(""), "err:EmptyPath"),
        ("empty path write", vec![], Write("", "x"), "err:EmptyPath"),
        ("empty path edit", vec![], Edit("", "a", "b"), "err:EmptyPath"),
        ("empty path checked for a write", vec![], Check("", Access::Write), "err:EmptyPath"),
        // Normalization.
        ("`.` components dropped", vec![File("a/b", "hi")], Read("a/./b"), "ok:hi"),
        ("normalized form", vec![], Check("./a//b/", Access::Read), "ok:a/b"),
        ("empty names the root", vec![], Check("", Access::Read), "ok:."),
        ("dot names the root", vec![], Check(".", Access::Read), "ok:."),
        ("nonexistent path checks", vec![], Check("new/file.rs", Access::Write), "ok:new/file.rs"),
        // What is checked (and what write rules judge) is where a path really is: every
        // symbolic link among its components resolved.
        ("a linked directory resolves", vec![Dir("src"), Link("docs/link", "../src")], Check("docs/link/x.rs", Access::Write), "ok:src/x.rs"),
        ("a linked directory resolves for an existing file", vec![File("src/lib.rs", "x"), Link("docs/link", "../src")], Check("docs/link/lib.rs", Access::Write), "ok:src/lib.rs"),
        ("links resolve at every depth", vec![Dir(".github/workflows"), Link("a", "b"), Link("b", ".github")], Check("a/workflows/ci.yml", Access::Write), "ok:.github/workflows/ci.yml"),
        ("an absolute link inside resolves", vec![Dir("infra"), Link("docs/infra", "{root}/infra")], Check("docs/infra/main.tf", Access::Write), "ok:infra/main.tf"),
        ("a linked file read resolves", vec![File("src/lib.rs", "x"), Link("README.md", "src/lib.rs")], Check("README.md", Access::Read), "ok:src/lib.rs"),
        // Git metadata.
        (".git/config read", vec![], Read(".git/config"), "err:GitMetadata"),
        (".git/config write", vec![], Write(".git/config", "x"), "err:GitMetadata"),
        (".git/hooks created", vec![], Write(".git/hooks/pre-commit", "x"), "err:GitMetadata"),
        (".GIT in any case", vec![], Read(".GIT/config"), "err:GitMetadata"),
        (".git itself listed", vec![], List(".git"), "err:GitMetadata"),
        (".git searched", vec![], Search("core", ".git"), "err:GitMetadata"),
        (".git as a file name", vec![], Write(".git", "gitdir: /tmp/evil"), "err:GitMetadata"),
        ("nested .git read", vec![File("sub/.git/x", "x")], Read("sub/.git/x"), "err:GitMetadata"),
        ("nested .git write", vec![Dir("sub")], Write("sub/.Git/config", "x"), "err:GitMetadata"),
        ("symlink to .git", vec![Link("g", ".git")], Read("g/config"), "err:GitMetadata"),
        ("symlink to .git/config", vec![Link("gc", ".git/config")], Read("gc"), "err:GitMetadata"),
        ("symlink to .git/config by absolute path", vec![Link("gc", "{root}/.git/config")], Read("gc"), "err:GitMetadata"),
        (".github is not .git", vec![], Write(".github/ci.yml", "on: push"), "ok:created:on: push"),
        (".gitignore is not .git", vec![File(".gitignore", "target/")], Read(".gitignore"), "ok:target/"),
        // Symbolic links out.
        ("symlink to /etc/passwd", vec![Link("passwd", "/etc/passwd")], Read("passwd"), "err:Outside"),
        ("dir symlink to /etc", vec![Link("etc", "/etc")], Read("etc/passwd"), "err:Outside"),
        ("write through a dir symlink out", vec![Link("out", "../outside")], Write("out/new.txt", "x"), "err:Outside"),
        ("write over a file through a dir symlink out", vec![Link("out", "{outside}")], Write("out/secret.txt", "x"), "err:Outside"),
        ("edit through a dir symlink out", vec![Link("out", "{outside}")], Edit("out/secret.txt", "secret", "x"), "err:Outside"),
        ("list through a symlink out", vec![Link("out", "{outside}")], List("out"), "err:Outside"),
        ("search through a symlink out", vec![Link("out", "{outside}")], Search("secret", "out"), "err:Outside"),
        ("symlink out, written", vec![Link("s", "{outside}/secret.txt")], Write("s", "x"), "err:Outside"),
        ("symlink to .git, written", vec![Link("s", ".git/config")], Write("s", "x"), "err:GitMetadata"),
        ("symlink chain out", vec![Link("l1", "l2"), Link("l2", "d/l3"), Link("d/l3", "{outside}/secret.txt")], Read("l1"), "err:Outside"),
        ("symlink to the root's parent", vec![Link("up", "..")], Read("up/outside/secret.txt"), "err:Outside"),
        // Symbolic links within.
        ("symlink chain within", vec![File("a.txt", "hello"), Link("l1", "l2"), Link("l2", "a.txt")], Read("l1"), "ok:hello"),
        ("absolute symlink within", vec![File("a.txt", "hello"), Link("abs", "{root}/a.txt")], Read("abs"), "ok:hello"),
        ("symlink within read", vec![File("a.txt", "hello"), Link("link", "a.txt")], Read("link"), "ok:hello"),
        ("symlink within write", vec![File("a.txt", "hello"), Link("link", "a.txt")], Write("link", "x"), "err:SymlinkWrite"),
        ("symlink within edit", vec![File("a.txt", "hello"), Link("link", "a.txt")], Edit("link", "hello", "x"), "err:SymlinkWrite"),
        ("write through a dir symlink within", vec![Dir("dir"), Link("alias", "dir")], Write("alias/n.txt", "n"), "ok:created:n"),
        ("out and back in", vec![File("a.txt", "hello"), Link("round", "{outside}/../root/a.txt")], Read("round"), "ok:hello"),
        ("dangling symlink read", vec![Link("dangling", "nowhere.txt")], Read("dangling"), "err:BrokenSymlink"),
        ("dangling symlink write", vec![Link("dangling", "nowhere.txt")], Write("dangling", "x"), "err:SymlinkWrite"),
        ("dangling symlink out, written", vec![Link("dangling", "{outside}/new.txt")], Write("dangling", "x"), "err:SymlinkWrite"),
        ("dangling dir symlink out, written under", vec![Link("ddir", "{outside}/newdir")], Write("ddir/x.txt", "x"), "err:BrokenSymlink"),
        ("symlink loop", vec![Link("loop", "loop")], Read("loop"), "err:BrokenSymlink"),
        // Reading.
        ("read", vec![File("src/lib.rs", "fn main() {}")], Read("src/lib.rs"), "ok:fn main() {}"),
        ("read truncated", vec![File("big.txt", "0123456789")], ReadMax("big.txt", 4), "ok:0123 [truncated, 10 bytes]"),
        ("read exactly the size", vec![File("big.txt", "0123456789")], ReadMax("big.txt", 10), "ok:0123456789"),
        ("read missing", vec![], Read("missing.txt"), "err:NotFound"),
        ("read a directory", vec![Dir("d")], Read("d"), "err:IsADirectory"),
        ("read the root", vec![], Read("."), "err:IsADirectory"),
        ("read under a file", vec![File("a.txt", "a")], Read("a.txt/x"), "err:NotADirectory"),
        // Writing.
        ("write creating nested dirs", vec![], Write("new/deep/file.txt", "x"), "ok:created:x"),
        ("write replacing", vec![File("a.txt", "hello")], Write("a.txt", "bye"), "ok:replaced:bye"),
        ("write empty content", vec![File("a.txt", "hello")], Write("a.txt", ""), "ok:replaced:"),
        ("write over a directory", vec![Dir("d")], Write("d", "x"), "err:IsADirectory"),
        ("write over the root", vec![], Write(".", "x"), "err:IsADirectory"),
        ("write under a file", vec![File("a.txt", "a")], Write("a.txt/x", "y"), "err:NotADirectory"),
        // Editing.
        ("edit", vec![File("a.rs", "let x = 1;\nlet y = 2;\n")], Edit("a.rs", "x = 1", "x = 3"), "ok:let x = 3;\nlet y = 2;\n"),
        ("edit to nothing", vec![File("a.rs", "abc")], Edit("a.rs", "b", ""), "ok:ac"),
        ("edit no match", vec![File("a.rs", "abc")], Edit("a.rs", "xyz", "q"), "err:NoMatch"),
        ("edit not unique", vec![File("a.rs", "a x a")], Edit("a.rs", "a", "b"), "err:NotUnique"),
        ("edit overlapping matches", vec![File("a.rs", "aaa")], Edit("a.rs", "aa", "b"), "err:NotUnique"),
        ("edit empty old", vec![File("a.rs", "abc")], Edit("a.rs", "", "b"), "err:EmptyOld"),
        ("edit missing", vec![], Edit("a.rs", "a", "b"), "err:NotFound"),
        ("edit a directory", vec![Dir("d")], Edit("d", "a", "b"), "err:IsADirectory"),
        ("edit binary", vec![Bytes("a.bin", b"\xff\xfe a")], Edit("a.bin", "a", "b"), "err:NotText"),
        // Listing.
        ("list with gitignore", vec![File(".gitignore", "*.log\n"), File("a.txt", "a"), File("b.log", "b"), File("d/c.txt", "c"), Link("l", "a.txt")], List(""), "ok:.gitignore,a.txt,d/,d/c.txt,l@"),
        ("list a subdirectory", vec![File("d/c.txt", "c"), File("d/e/f.txt", "f"), File("g.txt", "g")], List("d"), "ok:d/c.txt,d/e/,d/e/f.txt"),
        ("list a file", vec![File("d/c.txt", "c")], List("d/c.txt"), "ok:d/c.txt"),
        ("list missing", vec![], List("nope"), "err:NotFound"),
        ("list skips nested .git", vec![File("sub/.git/x", "x"), File("sub/y", "y")], List("sub"), "ok:sub/y"),
        // Searching.
        ("search", vec![File("a.txt", "one\ntwo needle\nthree"), File("d/b.txt", "needle")], Search("need+le", ""), "ok:a.txt:2:two needle;d/b.txt:1:needle"),
        ("search invalid regex", vec![], Search("(unclosed", ""), "err:InvalidPattern"),
        ("search skips binary", vec![Bytes("bin.dat", b"needle\0\x01"), File("t.txt", "needle")], Search("needle", ""), "ok:t.txt:1:needle"),
        ("search skips .git", vec![], Search("core", ""), "ok:"),
        ("search one file", vec![File("a.txt", "x1\nx2"), File("b.txt", "x3")], Search("x", "a.txt"), "ok:a.txt:1:x1;a.txt:2:x2"),
    ]
}

#[test]
fn file_tool_cases() {
    let mut failures = Vec::new();
    let cases = cases();
    for (description, setup, op, expected) in &cases {
        let sandbox = Sandbox::new();
        for step in setup {
            match *step {
                File(path, content) => sandbox.file(path, content),
                Bytes(path, content) => sandbox.file(path, content),
                Dir(path) => fs::create_dir_all(sandbox.root.join(path)).unwrap(),
                Link(link, target) => sandbox.link(link, target),
            }
        }
        let outcome = match run(&sandbox, op) {
            Ok(out) => format!("ok:{out}"),
            Err(e) => format!("err:{}", variant(&e)),
        };
        if outcome != *expected {
            failures.push(format!(
                "{description}: expected {expected:?}, got {outcome:?}"
            ));
        }
        sandbox.assert_untouched(description);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn refusals_name_the_path_and_confinement_is_a_policy_denial() {
    let sandbox = Sandbox::new();
    sandbox.link("out", "{outside}");
    let fs = sandbox.fs();
    for (path, confinement) in [
        ("/etc/passwd", true),
        ("../x", true),
        (".git/config", true),
        ("out/secret.txt", true),
        ("missing.txt", false),
    ] {
        let error = fs.read_file(path, 10).unwrap_err();
        assert_eq!(error.is_confinement(), confinement, "{path}: {error}");
        let message = error.to_string();
        assert!(message.contains(&format!("{path:?}")), "{message}");
        assert!(
            message.starts_with(|c: char| !c.is_uppercase()),
            "{message}"
        );
        assert!(!message.ends_with('.'), "{message}");
    }
    assert!(!fs.edit_file("nope", "a", "b").unwrap_err().is_confinement());
    assert!(fs.write_file("out", "x").unwrap_err().is_confinement());
    sandbox.file("a.txt", "a");
    sandbox.link("in", "a.txt");
    let error = fs.write_file("in", "x").unwrap_err();
    assert!(matches!(error, FileToolError::SymlinkWrite { .. }));
    assert!(!error.is_confinement());
}

#[test]
fn the_root_is_canonical_and_must_be_a_directory() {
    let sandbox = Sandbox::new();
    let alias = sandbox.outside.join("alias");
    symlink(&sandbox.root, &alias).unwrap();
    assert_eq!(ConfinedFs::new(&alias).unwrap().root(), sandbox.root);
    assert!(matches!(
        ConfinedFs::new(&sandbox.root.join("missing")),
        Err(FileToolError::Io { .. })
    ));
    fs::write(sandbox.root.join("f"), "").unwrap();
    assert!(matches!(
        ConfinedFs::new(&sandbox.root.join("f")),
        Err(FileToolError::NotADirectory { .. })
    ));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn writes_replace_atomically_and_keep_permissions() {
    let sandbox = Sandbox::new();
    let fs = sandbox.fs();
    let script = sandbox.root.join("run.sh");
    fs::write(&script, "#!/bin/sh\necho old\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).unwrap();
    let old = std::fs::File::open(&script).unwrap();

    let written = fs.write_file("run.sh", "#!/bin/sh\necho new\n").unwrap();
    assert!(!written.created);
    assert_eq!(mode(&script), 0o750, "an executable stays executable");
    assert_eq!(
        fs::read_to_string(&script).unwrap(),
        "#!/bin/sh\necho new\n"
    );
    // Renamed over, not rewritten in place: the old file is intact behind an open handle.
    assert_eq!(
        std::io::read_to_string(old).unwrap(),
        "#!/bin/sh\necho old\n"
    );

    fs.edit_file("run.sh", "new", "edited").unwrap();
    let huge = std::fs::File::create(sandbox.root.join("huge.txt")).unwrap();
    huge.set_len(flightdeck_workspace::MAX_EDIT_BYTES + 1)
        .unwrap();
    assert!(matches!(
        fs.edit_file("huge.txt", "a", "b"),
        Err(FileToolError::TooLarge { .. })
    ));
    assert_eq!(mode(&script), 0o750, "edits keep permissions too");

    let readonly = sandbox.root.join("ro.txt");
    fs::write(&readonly, "ro").unwrap();
    fs::set_permissions(&readonly, fs::Permissions::from_mode(0o444)).unwrap();
    fs.write_file("ro.txt", "rw").unwrap();
    assert_eq!(mode(&readonly), 0o444);

    let created = fs.write_file("src/new.rs", "fn f() {}").unwrap();
    assert!(created.created);
    assert_eq!(created.path, "src/new.rs");
    let new_mode = mode(&sandbox.root.join("src/new.rs"));
    assert_eq!(new_mode & 0o600, 0o600, "{new_mode:o}");
    assert_eq!(new_mode & 0o111, 0, "{new_mode:o}");

    let leftovers: Vec<_> = walk(&sandbox.root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".flightdeck-write-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

#[test]
fn a_hard_link_to_a_file_outside_is_replaced_not_written_through() {
    let sandbox = Sandbox::new();
    fs::hard_link(sandbox.outside.join("secret.txt"), sandbox.root.join("h")).unwrap();
    let fs = sandbox.fs();
    fs.write_file("h", "overwritten").unwrap();
    sandbox.assert_untouched("write");
    fs::remove_file(sandbox.root.join("h")).unwrap();
    fs::hard_link(sandbox.outside.join("secret.txt"), sandbox.root.join("h")).unwrap();
    fs.edit_file("h", "secret", "edited").unwrap();
    sandbox.assert_untouched("edit");
    assert_eq!(
        fs::read_to_string(sandbox.root.join("h")).unwrap(),
        "edited"
    );
}

#[test]
fn reading_a_fifo_is_refused_without_blocking() {
    let sandbox = Sandbox::new();
    let status = std::process::Command::new("mkfifo")
        .arg(sandbox.root.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let fs = sandbox.fs();
    assert!(matches!(
        fs.read_file("pipe", 10),
        Err(FileToolError::NotAFile { .. })
    ));
    assert!(matches!(
        fs.write_file("pipe", "x"),
        Err(FileToolError::NotAFile { .. })
    ));
    // Walks list it and search passes it by.
    let listing = fs.list_files("", 10).unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(fs.search("x", "", 10).unwrap().files_searched, 0);
}

#[test]
fn listing_honours_gitignore_and_never_follows_links() {
    let sandbox = Sandbox::new();
    sandbox.file(".gitignore", "target/\n*.log\n!keep.log\n/only-top.txt\n");
    sandbox.file(".env", "SECRET=1");
    sandbox.file("keep.log", "kept");
    sandbox.file("drop.log", "dropped");
    sandbox.file("only-top.txt", "ignored at the top");
    sandbox.file("target/debug/app", "binary");
    sandbox.file("src/lib.rs", "pub fn f() {}");
    sandbox.file("src/only-top.txt", "not ignored here");
    sandbox.file("src/gen/.gitignore", "*.rs\n");
    sandbox.file("src/gen/out.rs", "generated");
    sandbox.file("src/gen/debug.log", "ignored from the root");
    sandbox.file("vendor/dep/.git/HEAD", "ref: refs/heads/main");
    sandbox.file("vendor/dep/lib.c", "int x;");
    sandbox.link("src-link", "src");
    // A symlinked .gitignore is not read (its target here is outside): `sub/a.txt` stays listed.
    fs::write(sandbox.outside.join("rules"), "*.txt\n").unwrap();
    sandbox.file("sub/a.txt", "a");
    sandbox.link("sub/.gitignore", "{outside}/rules");
    let fs = sandbox.fs();

    let listing = fs.list_files("", 100).unwrap();
    assert!(!listing.truncated);
    let paths: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".env",
            ".gitignore",
            "keep.log",
            "src",
            "src/gen",
            "src/gen/.gitignore",
            "src/lib.rs",
            "src/only-top.txt",
            "src-link",
            "sub",
            "sub/.gitignore",
            "sub/a.txt",
            "vendor",
            "vendor/dep",
            "vendor/dep/lib.c",
        ]
    );
    let kind = |path: &str| {
        let entry = listing.entries.iter().find(|e| e.path == path).unwrap();
        (entry.kind, entry.size)
    };
    assert_eq!(kind("src"), (EntryKind::Dir, 0));
    assert_eq!(kind("src/lib.rs"), (EntryKind::File, 13));
    assert_eq!(kind("src-link"), (EntryKind::Symlink, 0));
    assert_eq!(kind("sub/.gitignore"), (EntryKind::Symlink, 0));

    // Listing a subdirectory applies the root's rules too.
    let gen: Vec<_> = fs.list_files("src/gen", 100).unwrap().entries;
    assert_eq!(gen.len(), 1, "{gen:?}");
    assert_eq!(gen[0].path, "src/gen/.gitignore");

    // A directory named explicitly is listed even though ignored.
    let target = fs.list_files("target", 100).unwrap();
    let target: Vec<_> = target.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(target, ["target/debug", "target/debug/app"]);

    // A symlink to a directory within, named explicitly, lists where the files really are.
    let through = fs.list_files("src-link", 100).unwrap();
    assert_eq!(through.entries[0].path, "src/gen");

    let capped = fs.list_files("", 3).unwrap();
    assert!(capped.truncated);
    assert_eq!(capped.entries.len(), 3);
    assert_eq!(capped.entries[2].path, "keep.log");
    let exact = fs.list_files("src", 4).unwrap();
    assert_eq!(exact.entries.len(), 4);
    assert!(!exact.truncated, "exactly max_entries is not truncated");
}

#[test]
fn search_reports_lines_and_skips_what_it_should() {
    let sandbox = Sandbox::new();
    sandbox.file(".gitignore", "ignored/\n");
    sandbox.file("a.rs", "fn alpha() {}\nfn beta() {}\n// fn gamma\n");
    sandbox.file("b.rs", "fn delta() {}\r\n");
    sandbox.file("ignored/c.rs", "fn ignored() {}");
    sandbox.file("long.txt", format!("fn {}", "x".repeat(1000)));
    let mut big = "fn big() {}\n".repeat(1 + 4 * 1024 * 1024 / 12);
    big.truncate(4 * 1024 * 1024 + 1);
    sandbox.file("big.txt", big);
    let mut binary = b"fn bin() {}\n".to_vec();
    binary.extend(vec![b'a'; 8000]);
    binary.push(0);
    sandbox.file("nul-in-probe.bin", binary);
    sandbox.file("latin1.txt", b"fn caf\xe9() {}");
    sandbox.link("link.rs", "a.rs");
    let fs = sandbox.fs();

    let found = fs.search(r"^fn \w", "", 100).unwrap();
    let lines: Vec<String> = found
        .matches
        .iter()
        .map(|m| format!("{}:{}", m.path, m.line))
        .collect();
    assert_eq!(
        lines,
        ["a.rs:1", "a.rs:2", "b.rs:1", "latin1.txt:1", "long.txt:1"]
    );
    assert!(!found.truncated);
    // .gitignore, a.rs, b.rs, latin1.txt, long.txt: not big.txt, nul-in-probe.bin, link.rs, ignored/.
    assert_eq!(found.files_searched, 5);
    assert_eq!(found.matches[2].text, "fn delta() {}", "no trailing CR");
    assert_eq!(found.matches[3].text, "fn caf\u{fffd}() {}");
    let long = &found.matches[4].text;
    assert_eq!(long.chars().count(), 501);
    assert!(long.ends_with("x…"));

    let capped = fs.search("fn", "", 2).unwrap();
    assert!(capped.truncated);
    assert_eq!(capped.matches.len(), 2);

    let explicit = fs.search("ignored", "ignored", 10).unwrap();
    assert_eq!(
        explicit.matches.len(),
        1,
        "a path named explicitly is searched"
    );

    let error = fs.search("a{", "", 10).unwrap_err();
    assert!(matches!(error, FileToolError::InvalidPattern { .. }));
    assert!(error.to_string().contains("\"a{\""), "{error}");
    assert!(!error.is_confinement());
}
