#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

//! Toolchain pins: reading pin files, precedence between them, probing versions (for real,
//! with `sh`, on this machine) and comparing pinned with found versions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use flightdeck_workspace::toolchain::{
    check, parse_probe, probe_script, read_pins, satisfies, Pin, ToolStatus,
};

/// Writes `files` into a fresh directory and reads its pins.
fn pins_of(files: &[(&str, &str)]) -> Result<Vec<Pin>, String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    read_pins(dir.path()).map_err(|e| e.to_string())
}

/// `tool=pinned@source`, space separated, in output order.
fn render(pins: &[Pin]) -> String {
    pins.iter()
        .map(|p| format!("{}={}@{}", p.tool, p.pinned, p.source))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Files to write: (name, contents).
type Files = &'static [(&'static str, &'static str)];

/// (case, files, expected pins)
const PIN_CASES: &[(&str, Files, &str)] = &[
    ("no files", &[], ""),
    (
        "rust-toolchain.toml channel",
        &[(
            "rust-toolchain.toml",
            "[toolchain]\nchannel = \"1.78.0\"\ncomponents = [\"clippy\"]\n",
        )],
        "rust=1.78.0@rust-toolchain.toml",
    ),
    (
        "rust-toolchain.toml dated nightly",
        &[(
            "rust-toolchain.toml",
            "[toolchain]\nchannel = \"nightly-2024-05-01\"\n",
        )],
        "rust=nightly-2024-05-01@rust-toolchain.toml",
    ),
    (
        "rust-toolchain.toml custom path toolchain pins nothing",
        &[("rust-toolchain.toml", "[toolchain]\npath = \"/opt/rust\"\n")],
        "",
    ),
    (
        "legacy rust-toolchain bare channel",
        &[("rust-toolchain", "stable\n")],
        "rust=stable@rust-toolchain",
    ),
    (
        "legacy rust-toolchain as TOML",
        &[("rust-toolchain", "[toolchain]\nchannel = \"1.77\"\n")],
        "rust=1.77@rust-toolchain",
    ),
    (
        ".tool-versions with asdf names, comments, fallbacks",
        &[(
            ".tool-versions",
            "# runtimes\nnodejs 20.11.0\npython 3.12.1 3.11.7   # newest first\n\n\
             golang 1.22.0\nrust 1.78.0\nruby 3.3.0\n",
        )],
        "go=1.22.0@.tool-versions node=20.11.0@.tool-versions python=3.12.1@.tool-versions \
         ruby=3.3.0@.tool-versions rust=1.78.0@.tool-versions",
    ),
    (
        ".tool-versions repeated tool: first wins",
        &[(".tool-versions", "nodejs 20.11.0\nnodejs 18.19.0\n")],
        "node=20.11.0@.tool-versions",
    ),
    (
        "mise.toml string, list, table, alias",
        &[(
            "mise.toml",
            "[env]\nFOO = \"1\"\n\n[tools]\nnode = \"20\"\npython = [\"3.12\", \"3.11\"]\n\
             golang = { version = \"1.22\", os = [\"linux\"] }\n\"npm:prettier\" = \"3\"\n",
        )],
        "go=1.22@mise.toml node=20@mise.toml npm:prettier=3@mise.toml python=3.12@mise.toml",
    ),
    (
        "mise.toml without [tools]",
        &[("mise.toml", "[tasks.build]\nrun = \"make\"\n")],
        "",
    ),
    (
        ".mise.toml beats mise.toml",
        &[
            ("mise.toml", "[tools]\nnode = \"18\"\nruby = \"3\"\n"),
            (".mise.toml", "[tools]\nnode = \"20\"\n"),
        ],
        "node=20@.mise.toml ruby=3@mise.toml",
    ),
    (
        ".nvmrc strips v",
        &[(".nvmrc", "v20.11.0\n")],
        "node=20.11.0@.nvmrc",
    ),
    (
        ".nvmrc lts alias kept",
        &[(".nvmrc", "lts/*\n")],
        "node=lts/*@.nvmrc",
    ),
    (
        ".nvmrc named lts with comment",
        &[(".nvmrc", "# team default\nlts/iron\n")],
        "node=lts/iron@.nvmrc",
    ),
    (
        ".node-version",
        &[(".node-version", "20.11.0")],
        "node=20.11.0@.node-version",
    ),
    (
        ".nvmrc beats .node-version",
        &[(".nvmrc", "20\n"), (".node-version", "18\n")],
        "node=20@.nvmrc",
    ),
    (
        ".python-version first line",
        &[(".python-version", "# pyenv\n3.12.1\n3.11.7\n")],
        "python=3.12.1@.python-version",
    ),
    (
        ".python-version several on one line",
        &[(".python-version", "3.12.1 3.11.7\n")],
        "python=3.12.1@.python-version",
    ),
    (
        "package.json engines and packageManager",
        &[(
            "package.json",
            r#"{"name":"x","engines":{"node":">=18 <21","npm":"^10","yarn":"1.x","vscode":"^1.80"},
                "packageManager":"pnpm@9.1.0+sha512.abcdef0123"}"#,
        )],
        "node=>=18 <21@package.json npm=^10@package.json pnpm=9.1.0@package.json \
         yarn=1.x@package.json",
    ),
    (
        "packageManager beats engines for the same tool",
        &[(
            "package.json",
            r#"{"engines":{"pnpm":">=8"},"packageManager":"pnpm@9.1.0"}"#,
        )],
        "pnpm=9.1.0@package.json",
    ),
    (
        "package.json without pins",
        &[("package.json", r#"{"name":"x","version":"1.0.0"}"#)],
        "",
    ),
    (
        "go.mod go line",
        &[(
            "go.mod",
            "module example.com/x\n\ngo 1.22\n\nrequire (\n\tgolang.org/x/mod v0.17.0\n)\n",
        )],
        "go=1.22@go.mod",
    ),
    (
        "go.mod toolchain line wins over go line",
        &[(
            "go.mod",
            "module example.com/x\n\ngo 1.22.1 // minimum\n\ntoolchain go1.22.3\n",
        )],
        "go=1.22.3@go.mod",
    ),
    (
        "go.mod toolchain default",
        &[("go.mod", "module m\ngo 1.21.0\ntoolchain default\n")],
        "go=1.21.0@go.mod",
    ),
    (
        "rust-toolchain.toml > rust-toolchain > mise > .tool-versions",
        &[
            ("rust-toolchain.toml", "[toolchain]\nchannel = \"1.78.0\"\n"),
            ("rust-toolchain", "1.70.0\n"),
            ("mise.toml", "[tools]\nrust = \"1.75\"\n"),
            (".tool-versions", "rust 1.74.0\n"),
        ],
        "rust=1.78.0@rust-toolchain.toml",
    ),
    (
        ".nvmrc > mise > .tool-versions > engines",
        &[
            (".nvmrc", "20.11.0\n"),
            ("mise.toml", "[tools]\nnode = \"19\"\n"),
            (".tool-versions", "nodejs 18.19.0\n"),
            ("package.json", r#"{"engines":{"node":">=16"}}"#),
        ],
        "node=20.11.0@.nvmrc",
    ),
    (
        ".tool-versions > engines",
        &[
            (".tool-versions", "nodejs 18.19.0\n"),
            ("package.json", r#"{"engines":{"node":">=16"}}"#),
        ],
        "node=18.19.0@.tool-versions",
    ),
    (
        "mise > .tool-versions",
        &[
            ("mise.toml", "[tools]\npython = \"3.12\"\n"),
            (".tool-versions", "python 3.11.7\n"),
        ],
        "python=3.12@mise.toml",
    ),
    (
        ".python-version > .tool-versions; go.mod > .tool-versions",
        &[
            (".python-version", "3.12.1\n"),
            ("go.mod", "module m\ngo 1.22\n"),
            (
                ".tool-versions",
                "python 3.11.7\ngolang 1.21.0\nnodejs 20.1.0\n",
            ),
        ],
        "go=1.22@go.mod node=20.1.0@.tool-versions python=3.12.1@.python-version",
    ),
];

#[test]
fn toolchain_pins_table() {
    let mut failures = Vec::new();
    let mut table = String::new();
    for (case, files, expected) in PIN_CASES {
        let got = match pins_of(files) {
            Ok(pins) => render(&pins),
            Err(e) => format!("error: {e}"),
        };
        let expected = expected.split_whitespace().collect::<Vec<_>>().join(" ");
        // Pins like `>=18 <21` contain a space; compare on the same normalisation.
        let got_norm = got.split_whitespace().collect::<Vec<_>>().join(" ");
        if got_norm != expected {
            failures.push(format!("{case}:\n  expected {expected}\n  got      {got}"));
        }
        writeln!(table, "{case}\n  {got}").unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    insta::assert_snapshot!("pins", table);
}

/// (case, files, expected error message)
const ERROR_CASES: &[(&str, Files, &str)] = &[
    (
        "rust-toolchain.toml not TOML",
        &[("rust-toolchain.toml", "[toolchain\nchannel = 1")],
        "rust-toolchain.toml: invalid TOML at line 1, column 11: ",
    ),
    (
        "rust-toolchain.toml no [toolchain]",
        &[("rust-toolchain.toml", "channel = \"stable\"\n")],
        "rust-toolchain.toml: missing the `[toolchain]` table",
    ),
    (
        "rust-toolchain.toml channel not a string",
        &[("rust-toolchain.toml", "[toolchain]\nchannel = 1.78\n")],
        "rust-toolchain.toml: `toolchain.channel` must be a string",
    ),
    (
        "rust-toolchain.toml no channel",
        &[("rust-toolchain.toml", "[toolchain]\ncomponents = []\n")],
        "rust-toolchain.toml: `toolchain.channel` is missing (and no `toolchain.path`)",
    ),
    (
        "legacy rust-toolchain empty",
        &[("rust-toolchain", "\n\n")],
        "rust-toolchain: no channel (the file is empty)",
    ),
    (
        "legacy rust-toolchain two lines",
        &[("rust-toolchain", "stable\nnightly\n")],
        "rust-toolchain: line 2: a bare channel file holds one line",
    ),
    (
        ".tool-versions tool without version",
        &[(".tool-versions", "nodejs 20.11.0\npython\n")],
        ".tool-versions: line 2: `python` has no version",
    ),
    (
        "mise.toml number version",
        &[("mise.toml", "[tools]\nnode = 20\n")],
        "mise.toml: `tools.node` must be a version string, a non-empty list of them, \
         or a table with a `version` string",
    ),
    (
        ".mise.toml empty list",
        &[(".mise.toml", "[tools]\npython = []\n")],
        ".mise.toml: `tools.python` must be a version string",
    ),
    (
        "mise.toml table without version",
        &[("mise.toml", "[tools]\ngo = { os = [\"linux\"] }\n")],
        "mise.toml: `tools.go` must be",
    ),
    (
        "mise.toml tools not a table",
        &[("mise.toml", "tools = \"node\"\n")],
        "mise.toml: `tools` must be a table",
    ),
    (
        ".nvmrc empty",
        &[(".nvmrc", "\n# nothing\n")],
        ".nvmrc: no version (the file is empty)",
    ),
    (
        ".nvmrc with spaces",
        &[(".nvmrc", "20.11.0 18\n")],
        ".nvmrc: line 1: version `20.11.0 18` contains spaces",
    ),
    (
        ".python-version empty",
        &[(".python-version", "# none yet\n")],
        ".python-version: no version (the file is empty)",
    ),
    (
        "mise.toml not TOML",
        &[("mise.toml", "[tools]\nnode = \n")],
        "mise.toml: invalid TOML at line 2, column 8: ",
    ),
    (
        // toml itself gives no message when the file ends where a value should be.
        "mise.toml ends at a key",
        &[("mise.toml", "[tools]\nnode =")],
        "mise.toml: invalid TOML at line 2, column 7: the file ends where a value is expected",
    ),
    (
        "package.json not JSON",
        &[("package.json", "{\"engines\": ")],
        "package.json: invalid JSON: ",
    ),
    (
        "package.json engines not an object",
        &[("package.json", r#"{"engines": ["node"]}"#)],
        "package.json: `engines` must be an object",
    ),
    (
        "package.json engines.node not a string",
        &[("package.json", r#"{"engines": {"node": 20}}"#)],
        "package.json: `engines.node` must be a non-empty string",
    ),
    (
        "package.json packageManager without version",
        &[("package.json", r#"{"packageManager": "pnpm"}"#)],
        "package.json: `packageManager` must look like `pnpm@9.1.0`, not `pnpm`",
    ),
    (
        "package.json packageManager not a string",
        &[("package.json", r#"{"packageManager": {"name": "pnpm"}}"#)],
        "package.json: `packageManager` must be a string",
    ),
    (
        "go.mod go line without version",
        &[("go.mod", "module m\n\ngo\n")],
        "go.mod: line 3: `go` directive needs one version like `1.22` or `1.22.1`",
    ),
    (
        "go.mod go line bad version",
        &[("go.mod", "module m\ngo one.two\n")],
        "go.mod: line 2: `go` directive needs one version",
    ),
    (
        "go.mod toolchain without go prefix",
        &[("go.mod", "module m\ngo 1.22\ntoolchain 1.22.3\n")],
        "go.mod: line 3: `toolchain` directive needs a name like `go1.22.3`",
    ),
];

#[test]
fn toolchain_malformed_files() {
    let mut failures = Vec::new();
    let mut table = String::new();
    for (case, files, expected) in ERROR_CASES {
        let got = match pins_of(files) {
            Ok(pins) => format!("ok: {}", render(&pins)),
            Err(e) => e,
        };
        if !got.starts_with(expected) {
            failures.push(format!("{case}:\n  expected {expected}…\n  got      {got}"));
        }
        writeln!(table, "{case}\n  {got}").unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    insta::assert_snapshot!("errors", table);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".nvmrc"), [0xff, 0xfe, b'2', b'0']).unwrap();
    let err = read_pins(dir.path()).unwrap_err().to_string();
    assert_eq!(err, ".nvmrc: not valid UTF-8");

    // A pin file that cannot be read (here: a directory) is an I/O error naming it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".python-version")).unwrap();
    let err = read_pins(dir.path()).unwrap_err().to_string();
    assert!(err.starts_with("cannot read .python-version: "), "{err}");
}

/// (tool, pinned, found, satisfied)
const SATISFIES: &[(&str, &str, &str, bool)] = &[
    // Exact versions: prefix on component boundaries.
    ("rust", "1.78", "1.78.0", true),
    ("rust", "1.78", "1.78.2", true),
    ("rust", "1.78", "1.780.0", false),
    ("rust", "1.78.0", "1.78.0", true),
    ("rust", "1.78.0", "1.78.1", false),
    ("rust", "1.78.0", "1.78", false),
    ("rust", "1.78.0", "1.78.0-nightly", false),
    ("node", "20", "20.11.0", true),
    ("node", "20", "2.0.0", false),
    ("node", "v20.11.0", "20.11.0", true),
    ("node", "20.11.0", "v20.11.0", true),
    ("python", "3.12", "3.12.1", true),
    ("python", "3.12.1", "3.11.7", false),
    ("python", "3.13.0rc1", "3.13.0rc1", true),
    ("go", "1.22rc1", "1.22rc1", true),
    ("go", "1.22", "1.22.3", true),
    // Rust channels.
    ("rust", "stable", "1.78.0", true),
    ("rust", "stable-x86_64-unknown-linux-gnu", "1.78.0", true),
    ("rust", "beta", "1.79.0-beta.1", true),
    ("rust", "beta", "1.78.0", false),
    ("rust", "nightly", "1.80.0-nightly", true),
    ("rust", "nightly-2024-05-01", "1.80.0-nightly", true),
    (
        "rust",
        "nightly-2024-05-01-x86_64-unknown-linux-gnu",
        "1.80.0-nightly",
        true,
    ),
    ("rust", "nightly", "1.78.0", false),
    ("rust", "nightly", "1.79.0-beta.1", false),
    // Aliases that accept anything.
    ("node", "lts/*", "20.11.0", true),
    ("node", "lts/iron", "18.0.0", true),
    ("node", "node", "21.0.0", true),
    ("node", "latest", "22.1.0", true),
    ("python", "system", "3.9.0", true),
    // npm ranges.
    ("node", ">=18", "20.11.0", true),
    ("node", ">=18", "16.20.2", false),
    ("node", ">= 18", "18.0.0", true),
    ("node", ">18", "18.0.0", false),
    ("node", ">18", "19.0.0", true),
    ("node", ">18.1.2", "18.1.3", true),
    ("node", ">18.1.2", "18.1.2", false),
    ("node", "<18", "17.9.9", true),
    ("node", "<18", "18.0.0", false),
    ("node", "<=18", "18.9.9", true),
    ("node", "<=18", "19.0.0", false),
    ("node", "<=18.2.0", "18.2.0", true),
    ("node", "^20.1", "20.1.0", true),
    ("node", "^20.1", "20.9.3", true),
    ("node", "^20.1", "20.0.9", false),
    ("node", "^20.1", "21.0.0", false),
    ("npm", "^0.2.3", "0.2.9", true),
    ("npm", "^0.2.3", "0.3.0", false),
    ("npm", "^0.0.3", "0.0.4", false),
    ("npm", "~1.2.3", "1.2.9", true),
    ("npm", "~1.2.3", "1.3.0", false),
    ("npm", "~1.2.3", "1.2.2", false),
    ("npm", "~1", "1.9.0", true),
    ("yarn", "18.x", "18.19.0", true),
    ("yarn", "18.x", "19.0.0", false),
    ("yarn", "1.22.x", "1.22.19", true),
    ("yarn", "1.x", "2.0.0", false),
    ("node", "*", "0.1.0", true),
    ("node", "x", "20.0.0", true),
    ("node", ">=18 <21", "20.11.0", true),
    ("node", ">=18 <21", "21.0.0", false),
    ("node", ">=18 <21", "17.0.0", false),
    ("node", "^18.17 || >=20.5", "18.19.0", true),
    ("node", "^18.17 || >=20.5", "19.0.0", false),
    ("node", "^18.17 || >=20.5", "22.0.0", true),
    ("node", "16 || 18 || 20", "18.1.0", true),
    ("node", "16 || 18 || 20", "19.1.0", false),
    ("node", "18 - 20", "20.11.0", true),
    ("node", "18 - 20", "21.0.0", false),
    ("node", "18.1.2 - 18.3", "18.3.9", true),
    ("node", "18.1.2 - 18.3", "18.1.1", false),
    ("node", "=20.11.0", "20.11.0", true),
    ("node", ">=18", "20.11.0-pre", true),
    // Nonsense never matches; nothing found never matches.
    ("node", ">=banana", "20.0.0", false),
    ("node", ">=18", "unknown", false),
    ("node", "20", "", false),
];

#[test]
fn toolchain_satisfies_table() {
    let failures: Vec<String> = SATISFIES
        .iter()
        .filter(|(tool, pinned, found, want)| satisfies(tool, pinned, found) != *want)
        .map(|(tool, pinned, found, want)| {
            format!("satisfies({tool:?}, {pinned:?}, {found:?}) should be {want}")
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Expected tool → version.
type Versions = &'static [(&'static str, Option<&'static str>)];

/// (probe output, expected tool → version)
const PROBE_OUTPUTS: &[(&str, Versions)] = &[
    (
        "@@flightdeck-probe found rust\nrustc 1.78.0 (9b00956e5 2024-04-29)\n",
        &[("rust", Some("1.78.0"))],
    ),
    (
        "@@flightdeck-probe found rust\nrustc 1.80.0-nightly (72d0ce3a1 2024-05-01)\n",
        &[("rust", Some("1.80.0-nightly"))],
    ),
    (
        "@@flightdeck-probe found rust\nrustc 1.79.0-beta.1 (deadbeef 2024-05-02)\n",
        &[("rust", Some("1.79.0-beta.1"))],
    ),
    (
        // rustup's chatter before rustc speaks.
        "@@flightdeck-probe found rust\ninfo: syncing channel updates for '1.70.0-x86_64'\n\
         rustc 1.78.0 (9b00956e5 2024-04-29)\n",
        &[("rust", Some("1.78.0"))],
    ),
    (
        "@@flightdeck-probe found node\nv20.11.0\n@@flightdeck-probe found npm\n10.2.4\n",
        &[("node", Some("20.11.0")), ("npm", Some("10.2.4"))],
    ),
    (
        "@@flightdeck-probe found python\nPython 3.12.1\n",
        &[("python", Some("3.12.1"))],
    ),
    (
        "@@flightdeck-probe found python\nPython 3.13.0rc1\n",
        &[("python", Some("3.13.0rc1"))],
    ),
    (
        // A pyenv shim with no interpreter behind it: its list of versions is not a version.
        "@@flightdeck-probe found python\npyenv: python3: command not found\n\n\
         The `python3' command exists in these Python versions:\n  3.10.4\n",
        &[("python", None)],
    ),
    (
        "@@flightdeck-probe found go\ngo version go1.22.3 linux/amd64\n",
        &[("go", Some("1.22.3"))],
    ),
    (
        "@@flightdeck-probe found go\ngo version go1.23rc1 darwin/arm64\n",
        &[("go", Some("1.23rc1"))],
    ),
    (
        "@@flightdeck-probe missing go\n@@flightdeck-probe found pnpm\n9.1.0\r\n\
         @@flightdeck-probe found yarn\n1.22.19\n",
        &[("go", None), ("pnpm", Some("9.1.0")), ("yarn", Some("1.22.19"))],
    ),
    (
        "@@flightdeck-probe found terraform\nTerraform v1.8.2\non linux_amd64\n",
        &[("terraform", Some("1.8.2"))],
    ),
    (
        "@@flightdeck-probe found ruby\nruby 3.3.0 (2023-12-25 revision 5124f9ac75) [x86_64-linux]\n",
        &[("ruby", Some("3.3.0"))],
    ),
    (
        "@@flightdeck-probe found node\nnode: error while loading shared libraries\n",
        &[("node", None)],
    ),
    ("noise before any marker\n1.2.3\n", &[]),
    ("", &[]),
];

#[test]
fn toolchain_parse_probe_table() {
    for (output, expected) in PROBE_OUTPUTS {
        let want: BTreeMap<String, Option<String>> = expected
            .iter()
            .map(|(t, v)| (t.to_string(), v.map(str::to_owned)))
            .collect();
        assert_eq!(parse_probe(output), want, "output:\n{output}");
    }
}

#[test]
fn toolchain_check_marks_drift() {
    let pins = vec![
        pin("go", "1.22", "go.mod"),
        pin("node", "20", ".nvmrc"),
        pin("python", "3.12", ".python-version"),
        pin("rust", "1.78", "rust-toolchain.toml"),
        pin("yarn", "1.x", "package.json"),
    ];
    let found: BTreeMap<String, Option<String>> = [
        ("go", Some("1.23.0")), // go.mod's version is a minimum
        ("node", Some("18.19.0")),
        ("python", None),
        ("rust", Some("1.78.2")),
    ]
    .into_iter()
    .map(|(t, v)| (t.to_owned(), v.map(str::to_owned)))
    .collect();
    let statuses = check(&pins, &found);
    let got: Vec<(&str, Option<&str>, bool)> = statuses
        .iter()
        .map(|s| (s.tool.as_str(), s.found.as_deref(), s.ok))
        .collect();
    assert_eq!(
        got,
        vec![
            ("go", Some("1.23.0"), true),
            ("node", Some("18.19.0"), false),
            ("python", None, false),
            ("rust", Some("1.78.2"), true),
            ("yarn", None, false),
        ]
    );
    assert_eq!(
        statuses[1],
        ToolStatus {
            tool: "node".into(),
            pinned: "20".into(),
            found: Some("18.19.0".into()),
            source: ".nvmrc".into(),
            ok: false,
        }
    );
}

fn pin(tool: &str, pinned: &str, source: &str) -> Pin {
    Pin {
        tool: tool.into(),
        pinned: pinned.into(),
        source: source.into(),
    }
}

fn run_sh(script: &str, dir: &std::path::Path) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The probe for real: rustc, python3 and node exist here; the made-up tool does not.
#[test]
fn toolchain_probe_runs_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let tools = [
        "rust",
        "python",
        "node",
        "go",
        "pnpm",
        "no-such-tool-4821",
        "it's",
    ];
    let script = probe_script(&tools);
    let (ok, output) = run_sh(&script, dir.path());
    assert!(ok, "the probe must not fail:\n{output}");
    let found = parse_probe(&output);
    assert_eq!(
        found.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut sorted = tools.to_vec();
            sorted.sort_unstable();
            sorted
        },
        "every tool reported:\n{output}"
    );

    let (_, rustc) = run_sh("rustc --version", dir.path());
    let expected = rustc
        .split_whitespace()
        .nth(1)
        .expect("rustc prints its version");
    assert_eq!(found["rust"].as_deref(), Some(expected), "{output}");
    assert!(found["python"].is_some(), "{output}");
    assert!(found["node"].is_some(), "{output}");
    assert_eq!(found["no-such-tool-4821"], None, "{output}");
    assert_eq!(found["it's"], None, "{output}");
    assert!(
        output.contains("@@flightdeck-probe missing no-such-tool-4821"),
        "{output}"
    );

    // The versions found satisfy pins that name them exactly.
    let rust = found["rust"].clone().unwrap();
    assert!(satisfies("rust", &rust, &rust));
    assert!(satisfies("rust", "stable", &rust));
}

/// A pin file that is a symlink could lead out of the worktree (to a credential, a FIFO):
/// it is refused, naming the file, and what it points at is never read.
#[test]
fn symlinked_pin_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("outside.txt");
    std::fs::write(&secret, "token-that-must-not-be-read\n").unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::os::unix::fs::symlink(&secret, repo.join(".nvmrc")).unwrap();
    let error = flightdeck_workspace::toolchain::read_pins(&repo)
        .unwrap_err()
        .to_string();
    assert!(error.contains(".nvmrc"), "{error}");
    assert!(error.contains("symlink"), "{error}");
    assert!(!error.contains("token-that-must-not-be-read"), "{error}");
}
