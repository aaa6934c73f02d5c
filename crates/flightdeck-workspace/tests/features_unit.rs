//! Unit tables for dev container features: references, metadata and option values, install
//! order, the lock file, the build context, and the resolve walk over a fake fetcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flightdeck_workspace::features::build::{self, ImageUsers};
use flightdeck_workspace::features::lock::{self, LockedFeature, Lockfile};
use flightdeck_workspace::features::metadata::{self, safe_id};
use flightdeck_workspace::features::order::{self, locale_compare, OrderNode};
use flightdeck_workspace::features::reference::{self, canonical_id};
use flightdeck_workspace::features::resolve::{self, ResolvedFeature};
use flightdeck_workspace::features::{
    FeatureError, FeatureSource, Fetch, FetchedFeature, OciRef, OciVersion,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn oci(registry: &str, repository: &str, version: OciVersion) -> FeatureSource {
    FeatureSource::Oci(OciRef {
        registry: registry.into(),
        repository: repository.into(),
        version,
    })
}
fn tag(t: &str) -> OciVersion {
    OciVersion::Tag(t.into())
}
const D64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------- reference.rs

#[test]
fn references_that_parse() {
    let dir = Path::new("/repo/.devcontainer");
    let cases: Vec<(&str, FeatureSource)> = vec![
        (
            "ghcr.io/devcontainers/features/node:1",
            oci("ghcr.io", "devcontainers/features/node", tag("1")),
        ),
        (
            "ghcr.io/devcontainers/features/node",
            oci("ghcr.io", "devcontainers/features/node", tag("latest")),
        ),
        (
            "GHCR.io/DevContainers/Features/Node:1.0.0-RC",
            oci("ghcr.io", "devcontainers/features/node", tag("1.0.0-rc")),
        ),
        (
            &*Box::leak(format!("ghcr.io/a/b/c@sha256:{D64}").into_boxed_str()),
            oci(
                "ghcr.io",
                "a/b/c",
                OciVersion::Digest(format!("sha256:{D64}")),
            ),
        ),
        (
            "localhost:5000/ns/feat:2",
            oci("localhost:5000", "ns/feat", tag("2")),
        ),
        (
            "localhost:5000/ns/feat",
            oci("localhost:5000", "ns/feat", tag("latest")),
        ),
        (
            "registry.example.com:8443/a/b/c-d.e_f:v1",
            oci("registry.example.com:8443", "a/b/c-d.e_f", tag("v1")),
        ),
        (
            "ghcr.io/devcontainers-contrib/features/pnpm:2",
            oci("ghcr.io", "devcontainers-extra/features/pnpm", tag("2")),
        ),
        (
            "./my-feature",
            FeatureSource::Local(PathBuf::from("/repo/.devcontainer/my-feature")),
        ),
        (
            "./features/x/../y",
            FeatureSource::Local(PathBuf::from("/repo/.devcontainer/features/y")),
        ),
        (
            "https://example.com/releases/devcontainer-feature-go.tgz",
            FeatureSource::Tarball(
                "https://example.com/releases/devcontainer-feature-go.tgz".into(),
            ),
        ),
        (
            "http://127.0.0.1:8080/devcontainer-feature-a.tgz",
            FeatureSource::Tarball("http://127.0.0.1:8080/devcontainer-feature-a.tgz".into()),
        ),
    ];
    for (written, want) in cases {
        let got = reference::parse(written, dir).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(got, want, "{written}");
    }
    // A config in a subfolder may reach `.devcontainer`'s other folders, as in the reference.
    assert_eq!(
        reference::parse("../shared", Path::new("/repo/.devcontainer/python")).unwrap(),
        FeatureSource::Local(PathBuf::from("/repo/.devcontainer/shared"))
    );
    // `.devcontainer.json` at the top: local features live in `.devcontainer/`.
    assert_eq!(
        reference::parse("./.devcontainer/f", Path::new("/repo")).unwrap(),
        FeatureSource::Local(PathBuf::from("/repo/.devcontainer/f"))
    );
}

#[test]
fn references_that_are_refused() {
    let dir = Path::new("/repo/.devcontainer");
    let cases: &[(&str, &str)] = &[
        ("node", "ghcr.io/devcontainers/features/node:1"),
        ("golang", "ghcr.io/devcontainers/features/go:1"),
        ("common", "ghcr.io/devcontainers/features/common-utils:1"),
        ("maven", "\"installMaven\": true"),
        ("fish", "ghcr.io/devcontainers/features/fish:1"),
        (
            "owner/repo/feature@1.2.3",
            "ghcr.io/owner/repo/feature:1.2.3",
        ),
        ("owner/repo/feature", "ghcr.io/owner/repo/feature"),
        ("/abs/feature", "absolute"),
        ("../outside", "inside"),
        ("./a/../../outside", "inside"),
        ("./", "inside"),
        ("http://example.com/devcontainer-feature-a.tgz", "https"),
        (
            "https://example.com/feature.tgz",
            "devcontainer-feature-<id>.tgz",
        ),
        (
            "https://example.com/devcontainer-feature-a b.tgz",
            "devcontainer-feature-<id>.tgz",
        ),
        ("ghcr.io/a/b:bad tag", "tag"),
        ("ghcr.io/a/b:-x", "tag"),
        ("ghcr.io/a/b@sha256:abc", "64 hex"),
        ("ghcr.io/a/b@md5:abc", "sha256"),
        ("ghcr.io/feature", "namespace"),
        ("ghcr.io/a//b", "repository path"),
        ("ghcr.io/a/b__/c", "repository path"),
        ("bad_host.io/a/b", "registry"),
        ("ghcr.io:port/a/b", "registry"),
        (".ghcr.io/a/b", "start with"),
        ("", "empty"),
    ];
    for (written, needle) in cases {
        match reference::parse(written, dir) {
            Err(e @ FeatureError::Invalid { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("`{written}`")), "{text}");
                assert!(text.contains(needle), "{written}: {text} lacks {needle}");
            }
            other => panic!("{written}: {other:?}"),
        }
    }
}

#[test]
fn canonical_ids_and_versions() {
    let dir = Path::new("/r/.devcontainer");
    let id = |w: &str| canonical_id(&reference::parse(w, dir).unwrap());
    assert_eq!(
        id("ghcr.io/devcontainers/features/node:1"),
        "ghcr.io/devcontainers/features/node"
    );
    assert_eq!(
        id("ghcr.io/devcontainers/features/node"),
        "ghcr.io/devcontainers/features/node"
    );
    assert_eq!(
        id(&format!("ghcr.io/devcontainers/features/node@sha256:{D64}")),
        "ghcr.io/devcontainers/features/node"
    );
    assert_eq!(id("./x"), "/r/.devcontainer/x");
    for (written, want) in [
        ("ghcr.io/a/b:1", "ghcr.io/a/b"),
        ("ghcr.io/a/b@sha256:ff", "ghcr.io/a/b"),
        ("localhost:5000/a/b", "localhost:5000/a/b"),
        ("localhost:5000/a/b:2", "localhost:5000/a/b"),
        ("./local", "./local"),
    ] {
        assert_eq!(reference::id_without_version(written), want);
    }
    for (name, want) in [
        ("devcontainer-feature-go.tgz", Some("go")),
        ("devcontainer-feature-a_b-c.tgz", Some("a_b-c")),
        ("x-devcontainer-feature-go.tgz.bak", Some("go")),
        ("devcontainer-feature-.tgz", None),
        ("feature-go.tgz", None),
    ] {
        assert_eq!(reference::tarball_id(name), want, "{name}");
    }
}

// ---------------------------------------------------------------- metadata.rs

#[test]
fn safe_ids_as_the_reference() {
    // The reference's own cases (featureHelpers.test.ts), and a few more.
    for (name, want) in [
        ("option-name", "OPTION_NAME"),
        ("option1-name-with_dashes-", "OPTION1_NAME_WITH_DASHES_"),
        ("myOptionName", "MYOPTIONNAME"),
        ("1name", "_NAME"),
        ("12345_option-name", "_OPTION_NAME"),
        ("_x", "_X"),
        ("__x", "_X"),
        ("-x", "_X"),
        ("version", "VERSION"),
        ("a.b c", "A_B_C"),
        ("é", "_"),
        ("😀x", "_X"),
        ("x😀", "X__"),
    ] {
        assert_eq!(safe_id(name), want, "{name}");
    }
}

const NODE_META: &str = r#"{
    // JSONC, as the reference reads it
    "id": "node",
    "version": "1.6.1",
    "name": "Node.js",
    "documentationURL": "https://example.com/node",
    "options": {
        "version": { "type": "string", "proposals": ["lts", "18"], "default": "lts" },
        "nodeGypDependencies": { "type": "boolean", "default": true },
        "installYarnUsingApt": { "type": "boolean", "default": false, "x-extra": 1 },
        "arch": { "type": "string", "enum": ["amd64", "arm64"], "default": "amd64" },
        "nvmInstallPath": { "type": "string" },
    },
    "containerEnv": { "NVM_DIR": "/usr/local/share/nvm", "PATH": "/usr/local/share/nvm/current/bin:${PATH}" },
    "mounts": [ { "type": "volume", "source": "node-${devcontainerId}", "target": "/cache" } ],
    "init": true,
    "entrypoint": "/usr/local/share/node-init.sh",
    "postCreateCommand": ["node", "--version"],
    "postStartCommand": { "a": "echo a", "b": ["echo", "b"] },
    "onCreateCommand": "",
    "installsAfter": ["ghcr.io/devcontainers/features/common-utils"],
    "dependsOn": { "ghcr.io/devcontainers/features/git:1": { "version": "latest" } },
    "legacyIds": ["nodejs"],
    "customizations": { "vscode": { "extensions": ["dbaeumer.vscode-eslint"] } },
    "keywords": ["node"],
    "somethingNew": 1
}"#;

#[test]
fn metadata_is_read_and_nothing_dropped_silently() {
    let meta = metadata::parse(NODE_META, "ghcr.io/x/y/node:1", "f.json").unwrap();
    assert_eq!(meta.id, "node");
    assert_eq!(meta.version.as_deref(), Some("1.6.1"));
    assert_eq!(
        meta.option_order,
        [
            "version",
            "nodeGypDependencies",
            "installYarnUsingApt",
            "arch",
            "nvmInstallPath"
        ]
    );
    assert_eq!(
        meta.options["arch"].enum_values.as_deref(),
        Some(&["amd64".to_string(), "arm64".to_string()][..])
    );
    assert_eq!(meta.container_env["NVM_DIR"], "/usr/local/share/nvm");
    assert_eq!(meta.mounts.len(), 1);
    assert_eq!(meta.init, Some(true));
    assert!(meta.on_create_command.is_none());
    assert!(meta.post_create_command.is_some());
    assert!(meta.post_start_command.is_some());
    assert_eq!(
        meta.installs_after,
        ["ghcr.io/devcontainers/features/common-utils"]
    );
    assert_eq!(meta.depends_on.len(), 1);
    assert_eq!(meta.legacy_ids, ["nodejs"]);
    let ignored: Vec<&str> = meta.ignored.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        ignored,
        [
            "options.installYarnUsingApt.x-extra",
            "customizations",
            "somethingNew"
        ]
    );
}

#[test]
fn metadata_errors_name_feature_and_file() {
    for (text, needle) in [
        ("{", "not JSON"),
        ("[]", "object"),
        (r#"{"version": "1"}"#, "`id` is missing"),
        (r#"{"id": "x", "capAdd": "SYS_ADMIN"}"#, "capAdd"),
        (
            r#"{"id": "x", "options": {"a": {"type": "string", "default": []}}}"#,
            "options.a.default",
        ),
        (
            r#"{"id": "x", "mounts": [{"type": "tmpfs", "target": "/t"}]}"#,
            "mounts[0].type",
        ),
        (
            r#"{"id": "x", "dependsOn": {"a/b/c": 3}}"#,
            "dependsOn.a/b/c",
        ),
    ] {
        let e = metadata::parse(text, "ghcr.io/a/b/x", "/s/devcontainer-feature.json").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("`ghcr.io/a/b/x`"), "{s}");
        assert!(s.contains(needle), "{s} lacks {needle}");
    }
}

#[test]
fn metadata_file_symlinks_and_size_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("devcontainer-feature.json"), r#"{"id": "a"}"#).unwrap();
    assert_eq!(metadata::read(&real, "./a").unwrap().id, "a");
    let linked = tmp.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(
        real.join("devcontainer-feature.json"),
        linked.join("devcontainer-feature.json"),
    )
    .unwrap();
    let e = metadata::read(&linked, "./a").unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(
        big.join("devcontainer-feature.json"),
        " ".repeat(2 * 1024 * 1024),
    )
    .unwrap();
    let e = metadata::read(&big, "./a").unwrap_err().to_string();
    assert!(e.contains("bytes"), "{e}");
    let e = metadata::read(&tmp.path().join("none"), "./a")
        .unwrap_err()
        .to_string();
    assert!(e.contains("./a"), "{e}");
}

#[test]
fn option_values_table() {
    let meta = metadata::parse(NODE_META, "n", "f").unwrap();
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let defaults = [
        ("VERSION", "lts"),
        ("NODEGYPDEPENDENCIES", "true"),
        ("INSTALLYARNUSINGAPT", "false"),
        ("ARCH", "amd64"),
    ];
    let cases: Vec<(Value, BTreeMap<String, String>, usize)> = vec![
        (json!({}), env(&defaults), 0),
        (json!(true), env(&defaults), 0),
        (Value::Null, env(&defaults), 0),
        (
            json!("18"),
            env(&[
                ("VERSION", "18"),
                ("NODEGYPDEPENDENCIES", "true"),
                ("INSTALLYARNUSINGAPT", "false"),
                ("ARCH", "amd64"),
            ]),
            0,
        ),
        (
            json!(20),
            env(&[
                ("VERSION", "20"),
                ("NODEGYPDEPENDENCIES", "true"),
                ("INSTALLYARNUSINGAPT", "false"),
                ("ARCH", "amd64"),
            ]),
            1,
        ),
        (
            json!({"nodeGypDependencies": "false", "nvmInstallPath": "/opt/$(id)", "extra-thing": "x"}),
            env(&[
                ("VERSION", "lts"),
                ("NODEGYPDEPENDENCIES", "false"),
                ("INSTALLYARNUSINGAPT", "false"),
                ("ARCH", "amd64"),
                ("NVMINSTALLPATH", "/opt/$(id)"),
                ("EXTRA_THING", "x"),
            ]),
            1,
        ),
        (
            json!({"version": 18.0}),
            env(&[
                ("VERSION", "18"),
                ("NODEGYPDEPENDENCIES", "true"),
                ("INSTALLYARNUSINGAPT", "false"),
                ("ARCH", "amd64"),
            ]),
            1,
        ),
        (
            json!({"arch": "arm64", "installYarnUsingApt": true}),
            env(&[
                ("VERSION", "lts"),
                ("NODEGYPDEPENDENCIES", "true"),
                ("INSTALLYARNUSINGAPT", "true"),
                ("ARCH", "arm64"),
            ]),
            0,
        ),
    ];
    for (user, want, notes) in cases {
        let got = metadata::option_values_noted(&meta, "n", &user).unwrap();
        assert_eq!(got.env, want, "{user}");
        assert_eq!(got.notes.len(), notes, "{user}: {:?}", got.notes);
        assert_eq!(metadata::option_values(&meta, "n", &user).unwrap(), want);
    }
    for (user, needle) in [
        (json!(false), "remove the entry"),
        (json!(["a"]), "object of options"),
        (json!({"nodeGypDependencies": "yes"}), "boolean"),
        (json!({"arch": "sparc"}), "\"amd64\", \"arm64\""),
        (json!({"version": {"a": 1}}), "not a string"),
        (json!({"version": null}), "not a string"),
    ] {
        let e = metadata::option_values(&meta, "ghcr.io/x/node", &user)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`ghcr.io/x/node`") && e.contains(needle),
            "{user}: {e}"
        );
    }
    // A string for a feature without a `version` option is dropped, as in the reference.
    let plain = metadata::parse(
        r#"{"id": "p", "options": {"a": {"type": "string", "default": "x"}}}"#,
        "p",
        "f",
    )
    .unwrap();
    let got = metadata::option_values_noted(&plain, "p", &json!("1.2")).unwrap();
    assert_eq!(got.env, env(&[("A", "x")]));
    assert_eq!(got.notes.len(), 1);
    // Two options with one variable: the later wins, reported.
    let clash = metadata::parse(r#"{"id": "c", "options": {"my-opt": {"type": "string", "default": "1"}, "my_opt": {"type": "string", "default": "2"}}}"#, "c", "f").unwrap();
    let got = metadata::option_values_noted(&clash, "c", &json!({})).unwrap();
    assert_eq!(got.env, env(&[("MY_OPT", "2")]));
    assert_eq!(got.ordered, vec![("MY_OPT".to_string(), "2".to_string())]);
    assert_eq!(got.notes.len(), 1);
}

// ---------------------------------------------------------------- order.rs

#[test]
fn locale_compare_matches_node() {
    // `[...xs].sort((a, b) => a.localeCompare(b))` in Node 20 (ICU, en-US).
    let sorted = [
        "1.0.0",
        "10",
        "2",
        "a",
        "A",
        "a_1",
        "a-1",
        "a1",
        "ab",
        "aB",
        "Ab",
        "b",
        "B",
        "common_utils",
        "common-utils",
        "docker-in-docker",
        "docker-outside-of-docker",
        "ghcr.io/devcontainers-extra/features",
        "ghcr.io/devcontainers/features",
        "ghcr.io/devcontainers/features2",
        "go",
        "Go",
        "latest",
        "localhost:5000/x",
        "node",
        "Node",
        "node_js",
        "node-js",
        "node.js",
        "nodejs",
    ];
    let mut shuffled: Vec<&str> = sorted.iter().rev().copied().collect();
    shuffled.rotate_left(7);
    shuffled.sort_by(|a, b| locale_compare(a, b));
    assert_eq!(shuffled, sorted);
}

fn node(written: &str, deps: &[usize], after: &[&str]) -> OrderNode {
    let source = reference::parse(written, Path::new("/r/.devcontainer")).unwrap();
    OrderNode {
        written: written.into(),
        digest: format!("sha256:{:x}", Sha256::digest(written.as_bytes())),
        source,
        options: json!({}),
        aliases: Vec::new(),
        depends_on: deps.to_vec(),
        installs_after: after.iter().map(|s| s.to_string()).collect(),
    }
}

fn order_of(nodes: &[OrderNode], overrides: &[&str]) -> Vec<String> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    order::install_order(nodes, &overrides)
        .unwrap()
        .into_iter()
        .map(|i| nodes[i].written.clone())
        .collect()
}

const F: &str = "ghcr.io/devcontainers/features";

#[test]
fn install_order_table() {
    let n = |id: &str| format!("{F}/{id}:1");
    let c = |id: &str| format!("{F}/{id}");
    // No edges: one round, sorted by id.
    let nodes = vec![
        node(&n("python"), &[], &[]),
        node(&n("go"), &[], &[]),
        node(&n("node"), &[], &[]),
    ];
    assert_eq!(order_of(&nodes, &[]), [n("go"), n("node"), n("python")]);
    // installsAfter present: waits; absent: ignored.
    let nodes = vec![
        node(&n("aaa"), &[], &[&c("common-utils")]),
        node(&n("common-utils"), &[], &[]),
        node(&n("bbb"), &[], &[&c("not-there")]),
    ];
    assert_eq!(
        order_of(&nodes, &[]),
        [n("bbb"), n("common-utils"), n("aaa")]
    );
    // dependsOn: hard, transitively.
    let nodes = vec![
        node(&n("a"), &[1], &[]),
        node(&n("b"), &[2], &[]),
        node(&n("c"), &[], &[]),
    ];
    assert_eq!(order_of(&nodes, &[]), [n("c"), n("b"), n("a")]);
    // overrideFeatureInstallOrder: priority rounds, first entry first; others after.
    let nodes = vec![
        node(&n("a"), &[], &[]),
        node(&n("b"), &[], &[]),
        node(&n("c"), &[], &[]),
        node(&n("d"), &[], &[]),
    ];
    assert_eq!(
        order_of(&nodes, &[&c("c"), &c("b")]),
        [n("c"), n("b"), n("a"), n("d")]
    );
    // …but never before what it depends on.
    let nodes = vec![node(&n("a"), &[], &[]), node(&n("z"), &[0], &[])];
    assert_eq!(order_of(&nodes, &[&c("z")]), [n("a"), n("z")]);
    // Registry/namespace first, then id.
    let nodes = vec![
        node("ghcr.io/devcontainers/features/a:1", &[], &[]),
        node("ghcr.io/devcontainers-extra/features/z:1", &[], &[]),
    ];
    assert_eq!(
        order_of(&nodes, &[]),
        [
            "ghcr.io/devcontainers-extra/features/z:1",
            "ghcr.io/devcontainers/features/a:1"
        ]
    );
    // Same feature, two tags: by tag.
    let nodes = vec![
        node(&format!("{F}/go:2"), &[], &[]),
        node(&format!("{F}/go:1.2"), &[], &[]),
    ];
    assert_eq!(
        order_of(&nodes, &[]),
        [format!("{F}/go:1.2"), format!("{F}/go:2")]
    );
    // Different kinds: by the id as written.
    let nodes = vec![node(&n("zz"), &[], &[]), node("./local", &[], &[])];
    assert_eq!(order_of(&nodes, &[]), ["./local".to_string(), n("zz")]);
    // A soft edge to a renamed feature matches the member's legacy ids.
    let mut renamed = node(&n("node"), &[], &[]);
    renamed.aliases = vec!["node".into(), "nodejs".into()];
    let nodes = vec![node(&n("aaa"), &[], &[&c("nodejs")]), renamed];
    assert_eq!(order_of(&nodes, &[]), [n("node"), n("aaa")]);
}

#[test]
fn install_order_options_break_ties() {
    let mut a = node(&format!("{F}/go:1"), &[], &[]);
    let mut b = a.clone();
    a.options = json!({"version": "1.22"});
    b.options = json!({"version": "1.21"});
    b.digest = "sha256:00".into();
    let nodes = vec![a, b];
    let got = order::install_order(&nodes, &[]).unwrap();
    assert_eq!(got, [1, 0]);
    assert_eq!(
        order::options_cmp(&json!({"a": "x"}), &json!({"a": "x", "b": "y"})),
        std::cmp::Ordering::Less
    );
    assert_eq!(
        order::options_cmp(&json!("a"), &json!({})),
        std::cmp::Ordering::Greater
    );
    assert_eq!(
        order::options_cmp(&json!({"a": true}), &json!({"a": "x"})),
        std::cmp::Ordering::Equal
    );
    assert_eq!(
        order::options_cmp(&json!(false), &json!(true)),
        std::cmp::Ordering::Less
    );
}

#[test]
fn install_order_cycles_are_named() {
    let n = |id: &str| format!("{F}/{id}:1");
    let nodes = vec![
        node(&n("a"), &[1], &[]),
        node(&n("b"), &[2], &[]),
        node(&n("c"), &[0], &[]),
        node(&n("d"), &[], &[]),
    ];
    let e = order::install_order(&nodes, &[]).unwrap_err().to_string();
    assert!(e.contains("cycle"), "{e}");
    for id in ["a", "b", "c"] {
        assert!(e.contains(&format!("`{}`", n(id))), "{e}");
    }
    assert!(!e.contains(&n("d")), "{e}");
    // Soft edges can cycle too.
    let nodes = vec![
        node(&n("a"), &[], &[&format!("{F}/b")]),
        node(&n("b"), &[], &[&format!("{F}/a")]),
    ];
    let e = order::install_order(&nodes, &[]).unwrap_err().to_string();
    assert!(
        e.contains("cycle") && e.contains("overrideFeatureInstallOrder"),
        "{e}"
    );
    let nodes = vec![node(&n("a"), &[0], &[])];
    assert!(order::install_order(&nodes, &[])
        .unwrap_err()
        .to_string()
        .contains("itself"));
}

#[test]
fn install_order_is_a_topological_order() {
    // Every DAG over 6 nodes drawn from a fixed pseudo-random sequence.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let count = 6;
        let mut nodes: Vec<OrderNode> = (0..count)
            .map(|i| node(&format!("{F}/f{i}:1"), &[], &[]))
            .collect();
        for (i, n) in nodes.iter_mut().enumerate() {
            for j in 0..i {
                match next() % 4 {
                    0 => n.depends_on.push(j),
                    1 => n.installs_after.push(format!("{F}/f{j}")),
                    _ => {}
                }
            }
        }
        let overrides: Vec<String> = (0..count)
            .filter(|_| next() % 3 == 0)
            .map(|i| format!("{F}/f{i}"))
            .collect();
        let got = order::install_order(&nodes, &overrides).unwrap();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, (0..count).collect::<Vec<_>>());
        let pos = |i: usize| got.iter().position(|&g| g == i).unwrap();
        for (i, n) in nodes.iter().enumerate() {
            for &d in &n.depends_on {
                assert!(pos(d) < pos(i));
            }
            for t in &n.installs_after {
                let j: usize = t.rsplit('f').next().unwrap().parse().unwrap();
                assert!(pos(j) < pos(i));
            }
        }
    }
}

// ---------------------------------------------------------------- lock.rs

#[test]
fn lock_path_as_the_reference() {
    assert_eq!(
        lock::path_for(Path::new("/r/.devcontainer/devcontainer.json")),
        Path::new("/r/.devcontainer/devcontainer-lock.json")
    );
    assert_eq!(
        lock::path_for(Path::new("/r/.devcontainer.json")),
        Path::new("/r/.devcontainer-lock.json")
    );
    assert_eq!(
        lock::path_for(Path::new("/r/.devcontainer/py/devcontainer.json")),
        Path::new("/r/.devcontainer/py/devcontainer-lock.json")
    );
}

#[test]
fn lock_text_is_byte_identical_to_the_reference() {
    // What `JSON.stringify(lock, null, 2) + "\n"` gives in Node for these entries.
    let mut lock = Lockfile::default();
    lock.features.insert(
        "b".into(),
        LockedFeature {
            version: Some("1.0.0".into()),
            resolved: "ghcr.io/x/y/b@sha256:aa".into(),
            integrity: "sha256:aa".into(),
            depends_on: Some(vec!["ghcr.io/x/y/a:1".into()]),
        },
    );
    lock.features.insert(
        "a\u{1}\"é/".into(),
        LockedFeature {
            version: None,
            resolved: "https://x/devcontainer-feature-a.tgz".into(),
            integrity: "sha256:bb".into(),
            depends_on: Some(vec![]),
        },
    );
    let want = "{\n  \"features\": {\n    \"b\": {\n      \"version\": \"1.0.0\",\n      \"resolved\": \"ghcr.io/x/y/b@sha256:aa\",\n      \"integrity\": \"sha256:aa\",\n      \"dependsOn\": [\n        \"ghcr.io/x/y/a:1\"\n      ]\n    },\n    \"a\\u0001\\\"é/\": {\n      \"resolved\": \"https://x/devcontainer-feature-a.tgz\",\n      \"integrity\": \"sha256:bb\"\n    }\n  }\n}\n";
    // Node sorts "a\u0001…" after "b"? No: localeCompare ignores U+0001, so "a…" < "b"; the
    // object above was built in that order by the reference's sort too.
    let got = lock::to_json_string(&lock);
    let want_sorted = {
        let a = "    \"a\\u0001\\\"é/\": {\n      \"resolved\": \"https://x/devcontainer-feature-a.tgz\",\n      \"integrity\": \"sha256:bb\"\n    }";
        let b = "    \"b\": {\n      \"version\": \"1.0.0\",\n      \"resolved\": \"ghcr.io/x/y/b@sha256:aa\",\n      \"integrity\": \"sha256:aa\",\n      \"dependsOn\": [\n        \"ghcr.io/x/y/a:1\"\n      ]\n    }";
        format!("{{\n  \"features\": {{\n{a},\n{b}\n  }}\n}}\n")
    };
    assert_ne!(got, want, "entries are sorted by id");
    assert_eq!(got, want_sorted);
    assert_eq!(
        lock::to_json_string(&Lockfile::default()),
        "{\n  \"features\": {}\n}\n"
    );
}

#[test]
fn lock_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("devcontainer-lock.json");
    assert_eq!(lock::read(&path).unwrap(), None);
    std::fs::write(&path, " \n").unwrap();
    assert_eq!(lock::read(&path).unwrap(), None);
    let text = format!(
        "{{\"features\": {{\"ghcr.io/a/b/c:1\": {{\"version\": \"1.2.0\", \"resolved\": \"ghcr.io/a/b/c@sha256:{D64}\", \"integrity\": \"sha256:{D64}\", \"dependsOn\": [\"ghcr.io/a/b/d\"]}}}}}}"
    );
    std::fs::write(&path, &text).unwrap();
    let lock = lock::read(&path).unwrap().unwrap();
    let entry = &lock.features["ghcr.io/a/b/c:1"];
    assert_eq!(entry.version.as_deref(), Some("1.2.0"));
    assert_eq!(
        entry.depends_on.as_deref(),
        Some(&["ghcr.io/a/b/d".to_string()][..])
    );
    // Round trip.
    std::fs::write(&path, lock::to_json_string(&lock)).unwrap();
    assert_eq!(lock::read(&path).unwrap().unwrap(), lock);
    for (bad, needle) in [
        ("{", "not JSON"),
        (r#"{"features": []}"#, "must be an object"),
        (
            r#"{"features": {"x": {"resolved": "r"}}}"#,
            "integrity` is missing",
        ),
        (
            r#"{"features": {"x": {"resolved": "r", "integrity": "md5:1"}}}"#,
            "sha256",
        ),
        (
            r#"{"features": {"x": {"resolved": 1, "integrity": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}}"#,
            "must be a string",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = lock::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("devcontainer-lock.json") && e.contains(needle),
            "{bad}: {e}"
        );
    }
    let link = tmp.path().join(".devcontainer-lock.json");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(lock::read(&link)
        .unwrap_err()
        .to_string()
        .contains("symlink"));
}

// ---------------------------------------------------------------- build.rs

#[test]
fn env_file_values_are_literal_in_sh() {
    let values = [
        "plain",
        "$(touch /tmp/pwned)",
        "`id`",
        "it's",
        "\"double\"",
        "a\nb\n",
        "$HOME ${PATH} \\n \\",
        "'';'\\''",
        "",
        "* ? [a] ~ # ; & | < >",
    ];
    let map: BTreeMap<String, String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("V{i}"), v.to_string()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.env");
    std::fs::write(&file, build::env_file(map.iter())).unwrap();
    for (name, value) in &map {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("set -a; . \"$0\"; set +a; printf %s \"${name}\""))
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), *value, "{name}");
    }
    assert!(!Path::new("/tmp/pwned").exists());
    assert_eq!(build::shell_quote("it's"), "'it'\\''s'");
}

#[test]
fn env_instructions_escape_as_the_reference() {
    assert_eq!(
        build::env_instruction("f", "PATH", "/x/bin:${PATH}").unwrap(),
        "ENV PATH=\"/x/bin:${PATH}\""
    );
    assert_eq!(
        build::env_instruction("f", "A", "say \"hi\" \\o/").unwrap(),
        "ENV A=\"say \\\"hi\\\" \\\\o/\""
    );
    assert!(build::env_instruction("f", "A B", "x").is_err());
    assert!(build::env_instruction("f", "1A", "x").is_err());
    assert!(build::env_instruction("f", "A", "x\ny")
        .unwrap_err()
        .to_string()
        .contains("line break"));
}

fn fake_resolved(tmp: &Path, written: &str, meta: &str, user: Value) -> ResolvedFeature {
    let dir = tmp.join(written.replace(['/', ':', '.'], "_"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("devcontainer-feature.json"), meta).unwrap();
    std::fs::write(dir.join("install.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let metadata = metadata::read(&dir, written).unwrap();
    let options = metadata::option_values(&metadata, written, &user).unwrap();
    let source = reference::parse(written, Path::new("/r/.devcontainer")).unwrap();
    ResolvedFeature {
        written: written.into(),
        canonical_id: canonical_id(&source),
        source,
        fetched: FetchedFeature {
            dir,
            resolved: format!("ghcr.io/x@sha256:{D64}"),
            integrity: format!("sha256:{D64}"),
        },
        metadata,
        options,
        user_options: user,
        auto_added: false,
        notes: Vec::new(),
    }
}

#[test]
fn build_context_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let features = vec![
        fake_resolved(
            tmp.path(),
            &format!("{F}/node:1"),
            NODE_META,
            json!({"nvmInstallPath": "/opt/$(id) 'q'"}),
        ),
        fake_resolved(
            tmp.path(),
            "./local-thing",
            r#"{"id": "local-thing", "name": "It's local", "deprecated": true}"#,
            json!(true),
        ),
    ];
    let users = ImageUsers {
        container_user: "root".into(),
        remote_user: "vscode".into(),
        container_user_home: None,
        remote_user_home: Some("/home/vscode".into()),
        image_user: "".into(),
    };
    let out = tmp.path().join("ctx");
    let ctx = build::write_context("debian:12", "sha256:base", &users, &features, &out).unwrap();
    assert_eq!(ctx.context, out);
    let dockerfile = std::fs::read_to_string(&ctx.dockerfile).unwrap();
    assert!(!dockerfile.contains("--mount") && !dockerfile.contains("--from"));
    insta::assert_snapshot!("features_dockerfile", dockerfile);
    insta::assert_snapshot!(
        "features_builtin_env",
        std::fs::read_to_string(out.join("devcontainer-features.builtin.env")).unwrap()
    );
    insta::assert_snapshot!(
        "features_node_env",
        std::fs::read_to_string(out.join("node_0/devcontainer-features.env")).unwrap()
    );
    insta::assert_snapshot!(
        "features_local_wrapper",
        std::fs::read_to_string(out.join("local-thing_1/devcontainer-features-install.sh"))
            .unwrap()
    );
    assert!(out.join("node_0/install.sh").is_file());
    // The key moves with what goes into the image, and only with that.
    let again = build::write_context(
        "debian:12",
        "sha256:base",
        &users,
        &features,
        &tmp.path().join("ctx2"),
    )
    .unwrap();
    assert_eq!(again.cache_key, ctx.cache_key);
    let other_base = build::write_context(
        "debian:12",
        "sha256:other",
        &users,
        &features,
        &tmp.path().join("ctx3"),
    )
    .unwrap();
    assert_ne!(other_base.cache_key, ctx.cache_key);
    let mut changed = features.clone();
    changed[1].options.insert("X".into(), "1".into());
    let other_opts = build::write_context(
        "debian:12",
        "sha256:base",
        &users,
        &changed,
        &tmp.path().join("ctx4"),
    )
    .unwrap();
    assert_ne!(other_opts.cache_key, ctx.cache_key);
    let mut swapped = features.clone();
    swapped.reverse();
    let other_order = build::write_context(
        "debian:12",
        "sha256:base",
        &users,
        &swapped,
        &tmp.path().join("ctx5"),
    )
    .unwrap();
    assert_ne!(other_order.cache_key, ctx.cache_key);
    assert_eq!(ctx.cache_key.len(), 64);
    assert!(build::write_context(
        "debian 12",
        "x",
        &users,
        &features,
        &tmp.path().join("ctx6")
    )
    .is_err());
}

#[test]
fn install_wrapper_runs_install_with_options() {
    // Runs the generated wrapper with sh, in a layout like the image's.
    let tmp = tempfile::tempdir().unwrap();
    let mut feature = fake_resolved(
        tmp.path(),
        "./f",
        r#"{"id": "f", "options": {"msg": {"type": "string", "default": "x"}}}"#,
        json!({"msg": "$(echo injected) `id` 'q'"}),
    );
    std::fs::write(feature.fetched.dir.join("install.sh"), "#!/bin/sh\nprintf '%s|%s|%s' \"$MSG\" \"$_REMOTE_USER\" \"$_REMOTE_USER_HOME\" > \"$OUT\"\n").unwrap();
    feature.metadata.name = Some("F's".into());
    let users = ImageUsers {
        container_user: "root".into(),
        remote_user: "dev user".replace(' ', "_"),
        container_user_home: Some("/root".into()),
        remote_user_home: Some("/home/dev".into()),
        image_user: "dev_user".into(),
    };
    let ctx =
        build::write_context("img", "id", &users, &[feature], &tmp.path().join("ctx")).unwrap();
    let out = tmp.path().join("out");
    let status = std::process::Command::new("sh")
        .arg("./devcontainer-features-install.sh")
        .current_dir(ctx.context.join("f_0"))
        .env("OUT", &out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "$(echo injected) `id` 'q'|dev_user|/home/dev"
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("Feature       : F's"), "{stdout}");
}

// ---------------------------------------------------------------- resolve.rs

/// A registry of folders: `canonical id` → (folder, manifest digest).
struct FakeFetch {
    root: PathBuf,
    known: BTreeMap<String, (String, String)>,
    asked: Mutex<Vec<FeatureSource>>,
}

#[async_trait::async_trait]
impl Fetch for FakeFetch {
    async fn fetch(
        &self,
        feature: &str,
        source: &FeatureSource,
        into: &Path,
    ) -> Result<FetchedFeature, FeatureError> {
        self.asked.lock().unwrap().push(source.clone());
        let id = canonical_id(source);
        let (folder, manifest) = self.known.get(&id).ok_or_else(|| FeatureError::Fetch {
            feature: feature.into(),
            message: "not found".into(),
        })?;
        let from = self.root.join(folder);
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
        }
        let json = std::fs::read(from.join("devcontainer-feature.json")).unwrap();
        let integrity = format!("sha256:{:x}", Sha256::digest(&json));
        Ok(match source {
            FeatureSource::Oci(r) => FetchedFeature {
                dir: into.to_path_buf(),
                resolved: format!("{}/{}@{manifest}", r.registry, r.repository),
                integrity,
            },
            FeatureSource::Tarball(url) => FetchedFeature {
                dir: into.to_path_buf(),
                resolved: url.clone(),
                integrity,
            },
            FeatureSource::Local(p) => FetchedFeature {
                dir: into.to_path_buf(),
                resolved: p.display().to_string(),
                integrity,
            },
        })
    }
}

fn registry(features: &[(&str, &str)]) -> (tempfile::TempDir, FakeFetch) {
    let tmp = tempfile::tempdir().unwrap();
    let mut known = BTreeMap::new();
    for (i, (id, meta)) in features.iter().enumerate() {
        let folder = format!("f{i}");
        std::fs::create_dir_all(tmp.path().join(&folder)).unwrap();
        std::fs::write(
            tmp.path().join(&folder).join("devcontainer-feature.json"),
            meta,
        )
        .unwrap();
        std::fs::write(tmp.path().join(&folder).join("install.sh"), "#!/bin/sh\n").unwrap();
        let manifest = format!("sha256:{:x}", Sha256::digest(format!("manifest {id}")));
        known.insert(id.to_string(), (folder, manifest));
    }
    let fetch = FakeFetch {
        root: tmp.path().to_path_buf(),
        known,
        asked: Mutex::new(Vec::new()),
    };
    (tmp, fetch)
}

fn user(features: &[(&str, Value)]) -> Vec<(String, Value)> {
    features
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
async fn resolve_orders_dedupes_and_adds_dependencies() {
    let (_reg, fetch) = registry(&[
        (
            &format!("{F}/node"),
            r#"{"id": "node", "version": "1.6.1", "options": {"version": {"type": "string", "default": "lts"}}, "dependsOn": {"ghcr.io/devcontainers/features/common-utils:2": {"username": "dev"}}, "installsAfter": ["ghcr.io/devcontainers/features/python"]}"#,
        ),
        (
            &format!("{F}/common-utils"),
            r#"{"id": "common-utils", "version": "2.5.0", "options": {"username": {"type": "string", "default": "automatic"}}}"#,
        ),
        (
            &format!("{F}/python"),
            r#"{"id": "python", "version": "1.0.0", "installsAfter": ["common"]}"#,
        ),
        (
            &format!("{F}/go"),
            r#"{"id": "go", "version": "1.3.0", "dependsOn": {"ghcr.io/devcontainers/features/common-utils:2": {"username": "dev"}}}"#,
        ),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let features = user(&[
        (&format!("{F}/node:1"), json!("18")),
        (&format!("{F}/go:1"), json!({})),
        (&format!("{F}/python:1"), json!({})),
    ]);
    let got = resolve::resolve(
        &features,
        Path::new("/r/.devcontainer"),
        None,
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap();
    let order: Vec<(&str, bool)> = got
        .iter()
        .map(|f| (f.written.as_str(), f.auto_added))
        .collect();
    assert_eq!(
        order,
        [
            ("ghcr.io/devcontainers/features/common-utils:2", true),
            ("ghcr.io/devcontainers/features/go:1", false),
            ("ghcr.io/devcontainers/features/python:1", false),
            ("ghcr.io/devcontainers/features/node:1", false),
        ]
    );
    assert_eq!(got[0].options["USERNAME"], "dev");
    assert_eq!(got[3].options["VERSION"], "18");
    // common-utils fetched once although two features depend on it.
    assert_eq!(fetch.asked.lock().unwrap().len(), 4);

    // The lock file of it, as the reference would write it.
    let lock = resolve::lockfile_of(&got);
    insta::assert_snapshot!("features_resolved_lock", lock::to_json_string(&lock));

    // overrideFeatureInstallOrder puts node first among what is ready.
    let scratch = tempfile::tempdir().unwrap();
    let got = resolve::resolve(
        &features,
        Path::new("/r/.devcontainer"),
        None,
        &[format!("{F}/go")],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap();
    let order: Vec<&str> = got.iter().map(|f| f.written.as_str()).collect();
    assert_eq!(order[0], "ghcr.io/devcontainers/features/common-utils:2");
    assert_eq!(order[1], "ghcr.io/devcontainers/features/go:1");

    // Different options are a different node (installed twice, as the reference does).
    let scratch = tempfile::tempdir().unwrap();
    let twice = user(&[
        (&format!("{F}/common-utils:2"), json!({"username": "other"})),
        (&format!("{F}/go:1"), json!({})),
    ]);
    let got = resolve::resolve(
        &twice,
        Path::new("/r/.devcontainer"),
        None,
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn resolve_pins_by_the_lock_file() {
    let (_reg, fetch) = registry(&[(&format!("{F}/go"), r#"{"id": "go", "version": "1.3.0"}"#)]);
    let manifest = fetch.known[&format!("{F}/go")].1.clone();
    let written = format!("{F}/go:1");
    let mut lock = Lockfile::default();
    lock.features.insert(
        written.clone(),
        LockedFeature {
            version: Some("1.3.0".into()),
            resolved: format!("{F}/go@{manifest}"),
            integrity: manifest.clone(),
            depends_on: None,
        },
    );
    let scratch = tempfile::tempdir().unwrap();
    let features = user(&[(&written, json!({}))]);
    let got = resolve::resolve(
        &features,
        Path::new("/r/.devcontainer"),
        Some(&lock),
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap();
    assert_eq!(
        got[0].source,
        oci(
            "ghcr.io",
            "devcontainers/features/go",
            OciVersion::Digest(manifest.clone())
        )
    );
    assert_eq!(resolve::lockfile_of(&got), lock);

    // A pin the fetched feature does not match.
    lock.features.get_mut(&written).unwrap().integrity = format!("sha256:{D64}");
    let scratch = tempfile::tempdir().unwrap();
    let e = resolve::resolve(
        &features,
        Path::new("/r/.devcontainer"),
        Some(&lock),
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FeatureError::Integrity { .. }), "{e}");
    assert!(e.to_string().contains(&written), "{e}");
}

#[tokio::test]
async fn resolve_refuses_what_flightdeck_does_not_run() {
    for (meta, needle) in [
        (r#"{"id": "d", "privileged": true}"#, "privileged"),
        (r#"{"id": "d", "capAdd": ["SYS_PTRACE"]}"#, "capAdd"),
        (
            r#"{"id": "d", "securityOpt": ["seccomp=unconfined"]}"#,
            "securityOpt",
        ),
        (
            r#"{"id": "d", "mounts": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/x"}]}"#,
            "host",
        ),
    ] {
        let (_reg, fetch) = registry(&[(&format!("{F}/dind"), meta)]);
        let scratch = tempfile::tempdir().unwrap();
        let features = user(&[(&format!("{F}/dind:2"), json!({}))]);
        let e = resolve::resolve(
            &features,
            Path::new("/r/.devcontainer"),
            None,
            &[],
            &fetch,
            scratch.path(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, FeatureError::Refused { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(needle) && text.contains("hint:") && text.contains("dind:2"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn resolve_errors_name_the_dependency_and_its_parent() {
    let (_reg, fetch) = registry(&[
        (
            &format!("{F}/a"),
            r#"{"id": "a", "dependsOn": {"node": {}}}"#,
        ),
        (
            &format!("{F}/b"),
            r#"{"id": "b", "dependsOn": {"ghcr.io/devcontainers/features/c:1": {}}}"#,
        ),
        (
            &format!("{F}/c"),
            r#"{"id": "c", "dependsOn": {"ghcr.io/devcontainers/features/b:1": {}}}"#,
        ),
        (&format!("{F}/e"), r#"{"id": "e"}"#),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let e = resolve::resolve(
        &user(&[(&format!("{F}/a:1"), json!({}))]),
        Path::new("/r/.devcontainer"),
        None,
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("node (dependsOn of `ghcr.io/devcontainers/features/a:1`)")
            && e.contains("hint:"),
        "{e}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let e = resolve::resolve(
        &user(&[(&format!("{F}/b:1"), json!({}))]),
        Path::new("/r/.devcontainer"),
        None,
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, FeatureError::Order(_)) && e.to_string().contains("cycle"),
        "{e}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let e = resolve::resolve(
        &user(&[(&format!("{F}/zzz:1"), json!({}))]),
        Path::new("/r/.devcontainer"),
        None,
        &[],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FeatureError::Fetch { .. }), "{e}");
    let scratch = tempfile::tempdir().unwrap();
    let e = resolve::resolve(
        &user(&[(&format!("{F}/e:1"), json!({}))]),
        Path::new("/r/.devcontainer"),
        None,
        &["nope".to_string()],
        &fetch,
        scratch.path(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("overrideFeatureInstallOrder"), "{e}");
}
