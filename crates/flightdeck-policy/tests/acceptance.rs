#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Acceptance checks on a diff: `diff_lines` on `git diff --no-renames --binary` text as
//! git 2.47 writes it, and `Policy::check_diff` on a table of changes.

use std::collections::BTreeMap;

use flightdeck_policy::{
    diff_lines, is_test_path, ChangeStatus, ChangedFile, DiffFileLines, DiffRules, Policy,
    Violation, ViolationKind,
};

// ---------------------------------------------------------------------------------------
// diff_lines
// ---------------------------------------------------------------------------------------

/// One file's expected lines: (path, added, removed).
type Expected = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

fn lines(patch: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    diff_lines(patch)
        .into_iter()
        .map(|(path, (added, removed))| (path, added, removed))
        .collect()
}

fn expected(files: &[Expected]) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut map = BTreeMap::new();
    for (path, added, removed) in files {
        map.insert(
            (*path).to_owned(),
            (
                added.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(),
                removed.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(),
            ),
        );
    }
    map.into_iter().map(|(p, (a, r))| (p, a, r)).collect()
}

#[test]
fn diff_lines_table() {
    let cases: &[(&str, &str, &[Expected])] = &[
        (
            "modified file with context and two hunks",
            "diff --git a/src/lib.rs b/src/lib.rs\n\
             index 3cd843e..bc0df8b 100644\n\
             --- a/src/lib.rs\n\
             +++ b/src/lib.rs\n\
             @@ -1,3 +1,3 @@ fn main() {\n \
             keep\n\
             -old\n\
             +new\n \
             keep\n\
             @@ -10,2 +10,3 @@\n \
             ten\n\
             +eleven\n \
             twelve\n",
            &[("src/lib.rs", &["new", "eleven"], &["old"])],
        ),
        (
            "content that looks like headers is content inside a hunk",
            "diff --git a/a.txt b/a.txt\n\
             index 1..2 100644\n\
             --- a/a.txt\n\
             +++ b/a.txt\n\
             @@ -1,2 +1,2 @@\n\
             --- a/not-a-header\n\
             -diff\n\
             +++ b/not-a-header\n\
             +@@ -1 +1 @@\n",
            &[(
                "a.txt",
                &["++ b/not-a-header", "@@ -1 +1 @@"],
                &["-- a/not-a-header", "diff"],
            )],
        ),
        (
            "new file",
            "diff --git a/src/new.rs b/src/new.rs\n\
             new file mode 100644\n\
             index 0000000..3e75765\n\
             --- /dev/null\n\
             +++ b/src/new.rs\n\
             @@ -0,0 +1,2 @@\n\
             +fn new() {}\n\
             +\n",
            &[("src/new.rs", &["fn new() {}", ""], &[])],
        ),
        (
            "deleted file is keyed by its a/ side",
            "diff --git a/tests/gone.rs b/tests/gone.rs\n\
             deleted file mode 100644\n\
             index abaddc0..0000000\n\
             --- a/tests/gone.rs\n\
             +++ /dev/null\n\
             @@ -1,2 +0,0 @@\n\
             -#[test]\n\
             -fn gone() {}\n",
            &[("tests/gone.rs", &[], &["#[test]", "fn gone() {}"])],
        ),
        (
            "no newline at end of file",
            "diff --git a/src/n.rs b/src/n.rs\n\
             index 117827f..07aad1e 100644\n\
             --- a/src/n.rs\n\
             +++ b/src/n.rs\n\
             @@ -1 +1 @@\n\
             -noeol\n\
             \\ No newline at end of file\n\
             +noeol2\n\
             \\ No newline at end of file\n",
            &[("src/n.rs", &["noeol2"], &["noeol"])],
        ),
        (
            "a path with a space: unquoted, with git's trailing tab",
            "diff --git a/sp ace.txt b/sp ace.txt\n\
             index 587be6b..e5f0473 100644\n\
             --- a/sp ace.txt\t\n\
             +++ b/sp ace.txt\t\n\
             @@ -1 +1,2 @@\n \
             x\n\
             ++y\n",
            &[("sp ace.txt", &["+y"], &[])],
        ),
        (
            "quoted paths: a space, a tab, octal UTF-8",
            "diff --git \"a/sp ace\" \"b/sp ace\"\n\
             index 1..2 100644\n\
             --- \"a/sp ace\"\n\
             +++ \"b/sp ace\"\n\
             @@ -1 +1 @@\n\
             -a\n\
             +b\n\
             diff --git \"a/tab\\tx.rs\" \"b/tab\\tx.rs\"\n\
             index 975fbec..1a78173 100644\n\
             --- \"a/tab\\tx.rs\"\n\
             +++ \"b/tab\\tx.rs\"\n\
             @@ -1 +1 @@\n\
             -y\n\
             +y2\n\
             diff --git \"a/\\303\\251.rs\" \"b/\\303\\251.rs\"\n\
             index c600332..1fb82ec 100644\n\
             --- \"a/\\303\\251.rs\"\n\
             +++ \"b/\\303\\251.rs\"\n\
             @@ -1 +1 @@\n\
             -\u{e9}\n\
             +\u{e9}2\n",
            &[
                ("sp ace", &["b"], &["a"]),
                ("tab\tx.rs", &["y2"], &["y"]),
                ("\u{e9}.rs", &["\u{e9}2"], &["\u{e9}"]),
            ],
        ),
        (
            "binary patches, binary without --binary, mode change, empty new file: no lines",
            "diff --git a/bin.dat b/bin.dat\n\
             index 8352675..ef2caff 100644\n\
             GIT binary patch\n\
             literal 4\n\
             LcmZQzWM%;X01*HQ\n\
             \n\
             literal 3\n\
             KcmZQzWC8#H2LJ>B\n\
             \n\
             diff --git a/new bin.bin b/new bin.bin\n\
             new file mode 100644\n\
             index 0000000..ba01f6b\n\
             GIT binary patch\n\
             literal 2\n\
             JcmZSh4*&rH0RR91\n\
             \n\
             literal 0\n\
             HcmV?d00001\n\
             \n\
             diff --git a/img.png b/img.png\n\
             index ef2caff..d0c3599 100644\n\
             Binary files a/img.png and b/img.png differ\n\
             diff --git a/mode.sh b/mode.sh\n\
             old mode 100644\n\
             new mode 100755\n\
             diff --git a/empty.rs b/empty.rs\n\
             new file mode 100644\n\
             index 0000000..e69de29\n\
             diff --git a/src/after.rs b/src/after.rs\n\
             index 1..2 100644\n\
             --- a/src/after.rs\n\
             +++ b/src/after.rs\n\
             @@ -1 +1 @@\n\
             -before\n\
             +after\n",
            &[
                ("bin.dat", &[], &[]),
                ("empty.rs", &[], &[]),
                ("img.png", &[], &[]),
                ("mode.sh", &[], &[]),
                ("new bin.bin", &[], &[]),
                ("src/after.rs", &["after"], &["before"]),
            ],
        ),
        (
            "deleted binary and deleted empty file: keyed from the header",
            "diff --git a/old.bin b/old.bin\n\
             deleted file mode 100644\n\
             index ba01f6b..0000000\n\
             GIT binary patch\n\
             literal 0\n\
             HcmV?d00001\n\
             \n\
             literal 2\n\
             JcmZSh4*&rH0RR91\n\
             \n\
             diff --git a/dir b/x.rs b/dir b/x.rs\n\
             deleted file mode 100644\n\
             index e69de29..0000000\n",
            &[("dir b/x.rs", &[], &[]), ("old.bin", &[], &[])],
        ),
        (
            "a mail preamble is ignored and CRLF line ends are tolerated",
            "From 1234 Mon Sep 17 00:00:00 2001\r\n\
             Subject: [PATCH] x\r\n\
             \r\n\
             +not a line of any file\r\n\
             ---\r\n \
             a.rs | 2 +-\r\n\
             \r\n\
             diff --git a/a.rs b/a.rs\r\n\
             index 1..2 100644\r\n\
             --- a/a.rs\r\n\
             +++ b/a.rs\r\n\
             @@ -1 +1 @@\r\n\
             -x\r\n\
             +y\r\n\
             -- \r\n\
             2.47.3\r\n",
            &[("a.rs", &["y"], &["x"])],
        ),
        (
            "a hunk header without counts still reads its lines",
            "diff --git a/a.rs b/a.rs\n\
             --- a/a.rs\n\
             +++ b/a.rs\n\
             @@ garbled @@\n\
             -x\n\
             +y\n",
            &[("a.rs", &["y"], &["x"])],
        ),
        ("empty input", "", &[]),
    ];
    for (name, patch, files) in cases {
        assert_eq!(lines(patch), expected(files), "{name}");
    }
}

/// The whole output of one real `git diff --cached --no-renames --binary`, in git's order.
const REAL_PATCH: &str = "\
diff --git a/bin.dat b/bin.dat
index 8352675d67aed6625ece79af41c27fdb4ee2e867..ef2caffcda6e1bd757164a29c6f81be03d172fd5 100644
GIT binary patch
literal 4
LcmZQzWM%;X01*HQ

literal 3
KcmZQzWC8#H2LJ>B

diff --git a/mode.sh b/mode.sh
old mode 100644
new mode 100755
diff --git a/sp ace.txt b/sp ace.txt
index 587be6b..e5f0473 100644
--- a/sp ace.txt\t
+++ b/sp ace.txt\t
@@ -1 +1,2 @@
 x
++y
diff --git a/src/gone.rs b/src/gone.rs
deleted file mode 100644
index abaddc0..0000000
--- a/src/gone.rs
+++ /dev/null
@@ -1 +0,0 @@
-del
diff --git \"a/tab\\tx.rs\" \"b/tab\\tx.rs\"
index 975fbec..1a78173 100644
--- \"a/tab\\tx.rs\"
+++ \"b/tab\\tx.rs\"
@@ -1 +1 @@
-y
+y2
diff --git a/tests/foo.rs b/tests/foo.rs
index 3cd843e..bc0df8b 100644
--- a/tests/foo.rs
+++ b/tests/foo.rs
@@ -1,3 +1,4 @@
 fn a() {}
+#[ignore]
 #[test]
 fn t() {}
";

#[test]
fn a_real_patch_splits_and_checks() {
    let split = diff_lines(REAL_PATCH);
    assert_eq!(
        split.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "bin.dat",
            "mode.sh",
            "sp ace.txt",
            "src/gone.rs",
            "tab\tx.rs",
            "tests/foo.rs"
        ]
    );

    let statuses = [
        ("bin.dat", ChangeStatus::Modified),
        ("mode.sh", ChangeStatus::Modified),
        ("sp ace.txt", ChangeStatus::Modified),
        ("src/gone.rs", ChangeStatus::Deleted),
        ("tab\tx.rs", ChangeStatus::Modified),
        ("tests/foo.rs", ChangeStatus::Modified),
    ];
    let files: Vec<DiffFileLines> = statuses
        .iter()
        .map(|(path, status)| {
            let (added, removed) = split.get(*path).cloned().unwrap_or_default();
            DiffFileLines {
                file: ChangedFile {
                    path: (*path).to_owned(),
                    added: added.len() as u64,
                    removed: removed.len() as u64,
                    status: status.clone(),
                },
                added_lines: added,
                removed_lines: removed,
            }
        })
        .collect();
    let rules = DiffRules {
        max_changed_files: Some(6),
        paths: &[],
        forbid_test_deletion: true,
    };
    let violations = Policy::builtin().check_diff(&rules, &files);
    assert_eq!(
        violations,
        [Violation {
            kind: ViolationKind::SkipMarkerAdded,
            path: Some("tests/foo.rs".to_owned()),
            message: "`tests/foo.rs`: an added line skips tests with `#[ignore]`, which \
                      acceptance.forbid_test_deletion does not allow: #[ignore]"
                .to_owned(),
        }]
    );
}

// ---------------------------------------------------------------------------------------
// check_diff
// ---------------------------------------------------------------------------------------

/// A file of a row: path, status, added lines, removed lines.
struct F {
    path: &'static str,
    status: ChangeStatus,
    added: &'static [&'static str],
    removed: &'static [&'static str],
}

fn m(path: &'static str, added: &'static [&'static str]) -> F {
    F {
        path,
        status: ChangeStatus::Modified,
        added,
        removed: &[],
    }
}

fn moved(
    path: &'static str,
    added: &'static [&'static str],
    removed: &'static [&'static str],
) -> F {
    F {
        path,
        status: ChangeStatus::Modified,
        added,
        removed,
    }
}

fn deleted(path: &'static str) -> F {
    F {
        path,
        status: ChangeStatus::Deleted,
        added: &[],
        removed: &["fn gone() {}"],
    }
}

fn renamed(from: &'static str, path: &'static str) -> F {
    F {
        path,
        status: ChangeStatus::Renamed {
            from: from.to_owned(),
        },
        added: &[],
        removed: &[],
    }
}

/// Which policy a row uses.
#[derive(Clone, Copy)]
enum P {
    Builtin,
    /// `[classes] tests = ["checks/**"]`.
    Custom,
}

struct Row {
    name: &'static str,
    policy: P,
    max: Option<u64>,
    paths: &'static [&'static str],
    forbid: bool,
    files: Vec<F>,
    /// (kind, path) in order.
    expected: &'static [(ViolationKind, Option<&'static str>)],
}

use ViolationKind::{OutsidePaths, SkipMarkerAdded, TestDeleted, TooManyFiles};

/// A row with `forbid_test_deletion` and no other rule.
fn forbid(
    name: &'static str,
    files: Vec<F>,
    expected: &'static [(ViolationKind, Option<&'static str>)],
) -> Row {
    Row {
        name,
        policy: P::Builtin,
        max: None,
        paths: &[],
        forbid: true,
        files,
        expected,
    }
}

fn custom_policy() -> Policy {
    Policy::parse("[classes]\ntests = [\"checks/**\"]\n", "custom.toml").unwrap()
}

fn rows() -> Vec<Row> {
    const RS: Option<&str> = Some("tests/it.rs");
    const PY: Option<&str> = Some("tests/test_api.py");
    const TS: Option<&str> = Some("web/app.test.ts");
    const GO: Option<&str> = Some("pkg/api_test.go");
    const JAVA: Option<&str> = Some("src/test/java/ApiTest.java");
    vec![
        // Rust
        forbid(
            "rust #[ignore] added",
            vec![m("tests/it.rs", &["#[ignore]", "#[test]", "fn slow() {}"])],
            &[(SkipMarkerAdded, RS)],
        ),
        forbid(
            "rust #[ignore = reason] added, in a source file with unit tests",
            vec![m("src/lib.rs", &["    #[ignore = \"flaky on CI\"]"])],
            &[(SkipMarkerAdded, Some("src/lib.rs"))],
        ),
        forbid(
            "rust whitespace inside the attribute",
            vec![m("tests/it.rs", &["#[ ignore ]"])],
            &[(SkipMarkerAdded, RS)],
        ),
        forbid(
            "rust cfg_attr ignore",
            vec![m("tests/it.rs", &["#[cfg_attr(windows, ignore)]"])],
            &[(SkipMarkerAdded, RS)],
        ),
        forbid(
            "rust #[ignore] moved within the file: not new",
            vec![moved("tests/it.rs", &["#[ignore]"], &["#[ignore]"])],
            &[],
        ),
        forbid(
            "rust #[ignore] reworded: still one marker",
            vec![moved(
                "tests/it.rs",
                &["#[ignore = \"needs network\"]"],
                &["#[ignore]"],
            )],
            &[],
        ),
        forbid(
            "rust two #[ignore] added, one removed: one new",
            vec![moved(
                "tests/it.rs",
                &["#[ignore]", "fn a() {}", "#[ignore = \"slow\"]"],
                &["#[ignore]"],
            )],
            &[(SkipMarkerAdded, RS)],
        ),
        forbid(
            "a marker moved to another file counts there",
            vec![
                m("tests/a.rs", &["#[ignore]"]),
                F {
                    path: "tests/b.rs",
                    status: ChangeStatus::Modified,
                    added: &[],
                    removed: &["#[ignore]"],
                },
            ],
            &[(SkipMarkerAdded, Some("tests/a.rs"))],
        ),
        forbid(
            "rust prose and near misses: no marker",
            vec![m(
                "src/lib.rs",
                &[
                    "// we ignore errors here and skip the header",
                    "let rest: Vec<_> = it.skip(1).collect();",
                    "fn ignore(x: u8) {}",
                    "#[ignore_this]",
                    "process::exit(1);",
                    "let xit = 3;",
                ],
            )],
            &[],
        ),
        // Python
        forbid(
            "python @pytest.mark.skip",
            vec![m(
                "tests/test_api.py",
                &["@pytest.mark.skip(reason=\"later\")"],
            )],
            &[(SkipMarkerAdded, PY)],
        ),
        forbid(
            "python @pytest.mark.skipif",
            vec![m(
                "tests/test_api.py",
                &["@pytest.mark.skipif(sys.platform == \"win32\", reason=\"x\")"],
            )],
            &[(SkipMarkerAdded, PY)],
        ),
        forbid(
            "python @pytest.mark.xfail",
            vec![m("tests/test_api.py", &["@pytest.mark.xfail"])],
            &[(SkipMarkerAdded, PY)],
        ),
        forbid(
            "python @unittest.skip and @unittest.skipIf",
            vec![m(
                "tests/test_api.py",
                &[
                    "@unittest.skip(\"broken\")",
                    "@unittest.skipIf(True, \"x\")",
                ],
            )],
            &[(SkipMarkerAdded, PY), (SkipMarkerAdded, PY)],
        ),
        forbid(
            "python @skip decorator, bare and called",
            vec![m("tests/test_api.py", &["@skip", "    @skip(\"later\")"])],
            &[(SkipMarkerAdded, PY), (SkipMarkerAdded, PY)],
        ),
        forbid(
            "python pytest.skip() and self.skipTest() in a body",
            vec![m(
                "tests/test_api.py",
                &[
                    "    pytest.skip(\"no db\")",
                    "        self.skipTest(\"no db\")",
                ],
            )],
            &[(SkipMarkerAdded, PY), (SkipMarkerAdded, PY)],
        ),
        forbid(
            "python near misses: skip words, a @skip_if_slow helper, a comment",
            vec![m(
                "tests/test_api.py",
                &[
                    "# skip the header row",
                    "@skip_if_slow",
                    "rows = rows[1:]  # ignore the first",
                    "email = \"me@skip.example\"",
                ],
            )],
            &[],
        ),
        // JavaScript and TypeScript
        forbid(
            "js it.skip, describe.skip, test.skip",
            vec![m(
                "web/app.test.ts",
                &[
                    "it.skip('renders', () => {",
                    "describe.skip(\"suite\", () => {",
                    "  test.skip(`works`, async () => {",
                ],
            )],
            &[
                (SkipMarkerAdded, TS),
                (SkipMarkerAdded, TS),
                (SkipMarkerAdded, TS),
            ],
        ),
        forbid(
            "js xit, xdescribe, xtest",
            vec![m(
                "web/app.test.ts",
                &[
                    "xit('renders', () => {",
                    "xdescribe('suite', () => {",
                    "  xtest(\"works\", () => {",
                ],
            )],
            &[
                (SkipMarkerAdded, TS),
                (SkipMarkerAdded, TS),
                (SkipMarkerAdded, TS),
            ],
        ),
        forbid(
            "js it.only and fit focus, so skip the rest",
            vec![m(
                "web/app.test.ts",
                &["it.only('renders', () => {", "fit('works', () => {"],
            )],
            &[(SkipMarkerAdded, TS), (SkipMarkerAdded, TS)],
        ),
        forbid(
            "js it.todo is not a skip",
            vec![m("web/app.test.ts", &["it.todo('handles errors');"])],
            &[],
        ),
        forbid(
            "js near misses: exit(), a .skip() method, model.fit()",
            vec![m(
                "web/app.ts",
                &[
                    "process.exit(1);",
                    "cursor.skip(10);",
                    "model.fit(data);",
                    "const skip = true;",
                ],
            )],
            &[],
        ),
        // Go
        forbid(
            "go t.Skip, t.SkipNow, t.Skipf",
            vec![m(
                "pkg/api_test.go",
                &[
                    "\tt.Skip(\"flaky\")",
                    "\tt.SkipNow()",
                    "\tt.Skipf(\"no %s\", name)",
                ],
            )],
            &[
                (SkipMarkerAdded, GO),
                (SkipMarkerAdded, GO),
                (SkipMarkerAdded, GO),
            ],
        ),
        // JUnit
        forbid(
            "junit @Disabled and @Ignore",
            vec![m(
                "src/test/java/ApiTest.java",
                &["    @Disabled(\"flaky\")", "    @Ignore", "    @Test"],
            )],
            &[(SkipMarkerAdded, JAVA), (SkipMarkerAdded, JAVA)],
        ),
        forbid(
            "junit near miss: @JsonIgnore",
            vec![m("src/main/java/Dto.java", &["    @JsonIgnore"])],
            &[],
        ),
        // RSpec
        forbid(
            "rspec xit and xdescribe with a space",
            vec![m(
                "spec/models/user_spec.rb",
                &["  xit \"validates\" do", "xdescribe User do"],
            )],
            &[
                (SkipMarkerAdded, Some("spec/models/user_spec.rb")),
                (SkipMarkerAdded, Some("spec/models/user_spec.rb")),
            ],
        ),
        // Prose is not looked at
        forbid(
            "markers in markdown, docs and a test README: none",
            vec![
                m("README.md", &["Mark slow tests with `#[ignore]`."]),
                m("docs/testing.rst", &["Use ``@pytest.mark.skip``."]),
                m("tests/README.md", &["xit('example', () => {})"]),
                m("docs/notes.txt", &["t.Skip(\"x\")"]),
            ],
            &[],
        ),
        forbid(
            "markers in a docs/ source file: none; in a test under docs/: counted",
            vec![
                m("docs/conf.py", &["@pytest.mark.skip"]),
                m("docs/tests/test_build.py", &["@pytest.mark.skip"]),
            ],
            &[(SkipMarkerAdded, Some("docs/tests/test_build.py"))],
        ),
        // Deleted tests
        forbid(
            "deleted test file",
            vec![deleted("tests/foo.rs")],
            &[(TestDeleted, Some("tests/foo.rs"))],
        ),
        forbid(
            "deleted test files by name convention",
            vec![deleted("pkg/api_test.go"), deleted("web/a.spec.ts")],
            &[
                (TestDeleted, Some("pkg/api_test.go")),
                (TestDeleted, Some("web/a.spec.ts")),
            ],
        ),
        forbid(
            "deleted source file: fine",
            vec![deleted("src/old.rs")],
            &[],
        ),
        forbid(
            "a test renamed out of the tests",
            vec![renamed("tests/foo.rs", "attic/foo.rs")],
            &[(TestDeleted, Some("attic/foo.rs"))],
        ),
        forbid(
            "a test renamed within the tests: fine",
            vec![renamed("tests/foo.rs", "tests/bar/foo.rs")],
            &[],
        ),
        Row {
            name: "without forbid_test_deletion: deleted tests and markers are fine",
            policy: P::Builtin,
            max: None,
            paths: &[],
            forbid: false,
            files: vec![deleted("tests/foo.rs"), m("tests/it.rs", &["#[ignore]"])],
            expected: &[],
        },
        // The tests class is the policy's
        Row {
            name: "custom tests class: deleting checks/smoke.sh is deleting a test",
            policy: P::Custom,
            max: None,
            paths: &[],
            forbid: true,
            files: vec![deleted("checks/smoke.sh")],
            expected: &[(TestDeleted, Some("checks/smoke.sh"))],
        },
        forbid(
            "built-in policy: checks/smoke.sh is not a test",
            vec![deleted("checks/smoke.sh")],
            &[],
        ),
        // paths
        Row {
            name: "paths: one file outside",
            policy: P::Builtin,
            max: None,
            paths: &["src/**", "tests/"],
            forbid: false,
            files: vec![
                m("src/a/b.rs", &[]),
                m("docs/x.md", &[]),
                m("tests/t.rs", &[]),
                m("x/tests/t.rs", &[]),
            ],
            expected: &[(OutsidePaths, Some("docs/x.md"))],
        },
        Row {
            name: "paths: anchored and extension globs",
            policy: P::Builtin,
            max: None,
            paths: &["/Cargo.toml", "*.md"],
            forbid: false,
            files: vec![
                m("Cargo.toml", &[]),
                m("crates/a/Cargo.toml", &[]),
                m("docs/deep/x.md", &[]),
            ],
            expected: &[(OutsidePaths, Some("crates/a/Cargo.toml"))],
        },
        Row {
            name: "paths: a rename is judged on both sides",
            policy: P::Builtin,
            max: None,
            paths: &["src/"],
            forbid: false,
            files: vec![renamed("other/x.rs", "src/x.rs")],
            expected: &[(OutsidePaths, Some("src/x.rs"))],
        },
        Row {
            name: "paths: empty means anything",
            policy: P::Builtin,
            max: None,
            paths: &[],
            forbid: false,
            files: vec![m("anything/at/all", &[]), deleted("tests/x.rs")],
            expected: &[],
        },
        Row {
            name: "paths: a glob that does not compile matches nothing",
            policy: P::Builtin,
            max: None,
            paths: &["!src/"],
            forbid: false,
            files: vec![m("src/a.rs", &[])],
            expected: &[(OutsidePaths, Some("src/a.rs"))],
        },
        // max_changed_files
        Row {
            name: "max_changed_files: exactly the limit is fine",
            policy: P::Builtin,
            max: Some(3),
            paths: &[],
            forbid: false,
            files: vec![m("a", &[]), m("b", &[]), m("c", &[])],
            expected: &[],
        },
        Row {
            name: "max_changed_files: one more is too many",
            policy: P::Builtin,
            max: Some(3),
            paths: &[],
            forbid: false,
            files: vec![m("a", &[]), m("b", &[]), m("c", &[]), m("d", &[])],
            expected: &[(TooManyFiles, None)],
        },
        Row {
            name: "max_changed_files: zero allows no change",
            policy: P::Builtin,
            max: Some(0),
            paths: &[],
            forbid: false,
            files: vec![m("a", &[])],
            expected: &[(TooManyFiles, None)],
        },
        // Order
        Row {
            name: "order: too many first, then files by path, each file's kinds in order",
            policy: P::Builtin,
            max: Some(1),
            paths: &["src/"],
            forbid: true,
            files: vec![
                m("src/z.rs", &["#[ignore]"]),
                deleted("tests/old.rs"),
                m("src/a.rs", &["#[ignore]", "#[ignore]"]),
            ],
            expected: &[
                (TooManyFiles, None),
                (SkipMarkerAdded, Some("src/a.rs")),
                (SkipMarkerAdded, Some("src/a.rs")),
                (SkipMarkerAdded, Some("src/z.rs")),
                (OutsidePaths, Some("tests/old.rs")),
                (TestDeleted, Some("tests/old.rs")),
            ],
        },
    ]
}

fn to_lines(file: &F) -> DiffFileLines {
    let owned = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    DiffFileLines {
        file: ChangedFile {
            path: file.path.to_owned(),
            added: file.added.len() as u64,
            removed: file.removed.len() as u64,
            status: file.status.clone(),
        },
        added_lines: owned(file.added),
        removed_lines: owned(file.removed),
    }
}

#[test]
fn check_diff_table() {
    let builtin = Policy::builtin();
    let custom = custom_policy();
    let rows = rows();
    assert!(rows.len() >= 20);
    for row in &rows {
        let paths: Vec<String> = row.paths.iter().map(|p| (*p).to_owned()).collect();
        let rules = DiffRules {
            max_changed_files: row.max,
            paths: &paths,
            forbid_test_deletion: row.forbid,
        };
        let files: Vec<DiffFileLines> = row.files.iter().map(to_lines).collect();
        let policy = match row.policy {
            P::Builtin => &builtin,
            P::Custom => &custom,
        };
        let violations = policy.check_diff(&rules, &files);
        let got: Vec<(ViolationKind, Option<&str>)> = violations
            .iter()
            .map(|v| (v.kind, v.path.as_deref()))
            .collect();
        assert_eq!(got, row.expected, "{}: {violations:#?}", row.name);
        for violation in &violations {
            assert!(
                !violation.message.contains('\n') && !violation.message.is_empty(),
                "{}: {:?}",
                row.name,
                violation.message
            );
            if let Some(path) = &violation.path {
                assert!(
                    violation.message.contains(path.as_str()),
                    "{}: {:?} does not name {path}",
                    row.name,
                    violation.message
                );
            }
        }
    }
}

#[test]
fn messages_name_the_file_the_marker_and_the_line() {
    let rules = DiffRules {
        max_changed_files: Some(1),
        paths: &["src/".to_owned()],
        forbid_test_deletion: true,
    };
    let files: Vec<DiffFileLines> = [
        m("src/a.rs", &["    #[ignore = \"flaky\"]"]),
        m("web/app.test.ts", &["  it.only('renders', () => {"]),
        deleted("tests/old.rs"),
        renamed("tests/x.rs", "src/x.rs"),
    ]
    .iter()
    .map(to_lines)
    .collect();
    let messages: Vec<String> = Policy::builtin()
        .check_diff(&rules, &files)
        .into_iter()
        .map(|v| format!("{}: {v}", v.kind))
        .collect();
    assert_eq!(
        messages,
        [
            "too_many_files: the change touches 4 files, more than the 1 that \
             acceptance.max_changed_files allows",
            "skip_marker_added: `src/a.rs`: an added line skips tests with `#[ignore]`, which \
             acceptance.forbid_test_deletion does not allow: #[ignore = \"flaky\"]",
            "outside_paths: `tests/x.rs` (renamed to `src/x.rs`) is outside the paths this \
             mission may change (acceptance.paths: src/)",
            "test_deleted: `tests/x.rs` is a test file and the change moves it out of the \
             tests to `src/x.rs`; acceptance.forbid_test_deletion does not allow that",
            "outside_paths: `tests/old.rs` is outside the paths this mission may change \
             (acceptance.paths: src/)",
            "test_deleted: `tests/old.rs` is a test file and the change deletes it; \
             acceptance.forbid_test_deletion does not allow that",
            "outside_paths: `web/app.test.ts` is outside the paths this mission may change \
             (acceptance.paths: src/)",
            "skip_marker_added: `web/app.test.ts`: an added line skips tests with `it.only(` \
             (it runs only the focused tests), which acceptance.forbid_test_deletion does \
             not allow: it.only('renders', () => {",
        ]
    );
}

#[test]
fn kinds_serialize_as_their_names() {
    for kind in [TooManyFiles, OutsidePaths, TestDeleted, SkipMarkerAdded] {
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::Value::String(kind.as_str().to_owned())
        );
    }
    assert_eq!(TooManyFiles.as_str(), "too_many_files");
    assert_eq!(OutsidePaths.as_str(), "outside_paths");
    assert_eq!(TestDeleted.as_str(), "test_deleted");
    assert_eq!(SkipMarkerAdded.as_str(), "skip_marker_added");
}

#[test]
fn test_paths_follow_the_policy() {
    let builtin = Policy::builtin();
    let custom = custom_policy();
    let cases: &[(&str, bool, bool)] = &[
        ("tests/foo.rs", true, true),
        ("crates/x/tests/it.rs", true, true),
        ("./tests/foo.rs", true, true),
        ("pkg/api_test.go", true, true),
        ("spec/models/user_spec.rb", true, true),
        ("checks/smoke.sh", false, true),
        ("src/lib.rs", false, false),
        ("README.md", false, false),
    ];
    for (path, in_builtin, in_custom) in cases {
        assert_eq!(is_test_path(&builtin, path), *in_builtin, "builtin {path}");
        assert_eq!(is_test_path(&custom, path), *in_custom, "custom {path}");
    }
}
