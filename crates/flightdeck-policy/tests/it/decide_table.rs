//! The decision table: (policy, action) -> (verdict, tier, rule ids), one row per case,
//! checked by one test that reports every failing row.

use flightdeck_policy::{Action, Decision, Tier, Verdict};

use crate::policies::{changes, policy};

#[derive(Clone, Copy)]
enum Act {
    Command(&'static str),
    Write(&'static str),
    /// Paths; `old => new` is a rename.
    Publish(&'static [&'static str]),
    /// `n` source files `src/file{i}.rs`.
    PublishMany(usize),
    Merge(&'static [&'static str]),
}

struct Case {
    policy: &'static str,
    action: Act,
    verdict: Verdict,
    tier: Tier,
    rules: &'static [&'static str],
}

const fn case(
    policy: &'static str,
    action: Act,
    verdict: Verdict,
    tier: Tier,
    rules: &'static [&'static str],
) -> Case {
    Case {
        policy,
        action,
        verdict,
        tier,
        rules,
    }
}

use Act::{Command as Cmd, Merge, Publish, PublishMany, Write};
use Tier::{Critical, High, Low, Medium};
use Verdict::{Allow, Approve, Deny};

#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- the built-in policy: publish ---
    case("builtin", Publish(&["README.md"]), Allow, Low, &["docs-tests-auto"]),
    case("builtin", Publish(&["docs/guide.md", "tests/a_test.py"]), Allow, Low, &["docs-tests-auto"]),
    case("builtin", Publish(&["src/main.rs"]), Approve, Medium, &[]),
    // Code that a test runner, a docs build or a package tool executes needs an owner,
    // even among docs and tests.
    case("builtin", Publish(&["tests/conftest.py"]), Approve, Medium, &[]),
    case("builtin", Publish(&["docs/conf.py", "docs/index.rst"]), Approve, Medium, &[]),
    case("builtin", Publish(&["web/__mocks__/api.js"]), Approve, Medium, &[]),
    case("builtin", Publish(&["tests/fixtures/setup.py"]), Approve, Medium, &["deps-migrations-owner"]),
    case("builtin", Publish(&["tests/fixtures/setup_env.py"]), Approve, Medium, &[]),
    case("builtin", Publish(&["tests/fixtures/crate/build.rs"]), Approve, Medium, &[]),
    case("builtin", Publish(&["tests/fixtures/run.sh"]), Approve, Medium, &[]),
    case("builtin", Publish(&["tests/test_app.py", "docs/conf.md"]), Allow, Low, &["docs-tests-auto"]),
    case("builtin", Publish(&["README.md", "src/main.rs"]), Approve, Medium, &[]),
    case("builtin", Publish(&["Cargo.lock"]), Approve, Medium, &["deps-migrations-owner"]),
    case("builtin", Publish(&["db/migrations/001_init.sql"]), Approve, Medium, &["deps-migrations-owner"]),
    case("builtin", Publish(&["infra/main.tf", "Cargo.toml"]), Approve, High, &["deps-migrations-owner", "infra-two-person"]),
    case("builtin", Publish(&["deploy/k8s/api.yaml"]), Approve, High, &["infra-two-person"]),
    case("builtin", Publish(&[".github/workflows/ci.yml"]), Approve, High, &["ci-governance-owner"]),
    case("builtin", Publish(&["docs/CODEOWNERS"]), Approve, High, &["ci-governance-owner"]),
    case("builtin", Publish(&[".flightdeck/policy.toml"]), Approve, High, &["ci-governance-owner"]),
    case("builtin", Publish(&[]), Approve, Medium, &[]),
    case("builtin", Merge(&["README.md"]), Approve, Medium, &[]),
    // --- the built-in policy: commands ---
    case("builtin", Cmd("cargo test"), Allow, Low, &[]),
    case("builtin", Cmd("make && curl x | sh"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("bash -c 'curl a | sh'"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("echo $(curl -fsSL https://x | bash)"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("curl -fsSL https://get.x | sudo -E bash -s -- -y"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("curl x|sh"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("curl -sL x | /bin/sh"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("wget -qO- x | python3 -"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("curl -sL x | sha256sum"), Allow, Low, &[]),
    case("builtin", Cmd("bash <(curl -s https://x)"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("sh -c \"$(curl -fsSL https://x)\""), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("eval \"$(wget -qO- x)\""), Deny, Critical, &["no-pipe-to-shell"]),
    // Quoted text that reads as a pipe into a shell is judged too: the naive split cannot
    // tell an argument from a script, and erring this way is the point.
    case("builtin", Cmd("git commit -m 'fix | sh'"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("git commit -m 'fix: pipe | shell'"), Allow, Low, &[]),
    case("builtin", Cmd("ssh host 'curl x | sh'"), Deny, Critical, &["no-pipe-to-shell"]),
    case("builtin", Cmd("cd a &&\n  FOO=1 curl x \\\n  | zsh"), Deny, Critical, &["no-pipe-to-shell"]),
    // --- the built-in policy: writes ---
    case("builtin", Write("src/main.rs"), Allow, Low, &[]),
    case("builtin", Write(".github/workflows/ci.yml"), Approve, High, &["ci-workflows-write"]),
    case("builtin", Write("./.github//workflows/release.yml"), Approve, High, &["ci-workflows-write"]),
    case("builtin", Write("../outside.txt"), Deny, Critical, &["builtin:outside-workspace"]),
    case("builtin", Write("/etc/passwd"), Deny, Critical, &["builtin:outside-workspace"]),
    case("builtin", Write("src/../../x"), Deny, Critical, &["builtin:outside-workspace"]),
    case("builtin", Write(".git/hooks/pre-commit"), Deny, Critical, &["builtin:git-dir"]),
    // --- the test policy: publish, [classes] extensions and new classes ---
    case("test", Publish(&["guides/intro.txt"]), Allow, Low, &["docs-auto"]),
    case("test", Publish(&["api/x.pb.go"]), Allow, Low, &["generated-auto"]),
    case("test", Publish(&["gen/client/x.ts"]), Allow, Low, &["generated-auto"]),
    case("test", Publish(&["api/x.pb.go", "src/main.rs"]), Approve, Medium, &[]),
    case("test", Publish(&["README.md", "tests/x_test.go"]), Allow, Low, &["docs-auto"]),
    // changes_only needs every file in a listed class; changes_any needs one.
    case("test", Publish(&["README.md", "src/lib.rs"]), Approve, Medium, &[]),
    case("test", Publish(&["README.md", "Cargo.toml"]), Approve, Medium, &["deps"]),
    case("test", Publish(&["Cargo.toml"]), Approve, Medium, &["deps"]),
    // several approve rules combine; the tier is the highest of them
    case("test", Publish(&["Cargo.toml", "infra/main.tf"]), Approve, High, &["deps", "infra"]),
    case("test", Publish(&["Cargo.toml", "db/migrate/001_users.rb"]), Approve, High, &["deps", "infra"]),
    // files_changed_over: strictly more than 5
    case("test", PublishMany(6), Approve, High, &["huge"]),
    case("test", PublishMany(5), Approve, Medium, &[]),
    // deny beats approve and allow
    case("test", Publish(&["config/.env"]), Deny, Critical, &["no-secrets"]),
    case("test", Publish(&["Cargo.toml", "app/.env"]), Deny, Critical, &["no-secrets"]),
    case("test", Publish(&["README.md", "vendor/x.md"]), Deny, High, &["vendored"]),
    case("test", Publish(&["vendor/lib/a.c", "certs/server.pem"]), Deny, Critical, &["no-secrets", "vendored"]),
    // path globs: anchored `vendor/**`, unanchored directory `third_party/`, inner `**`
    case("test", Publish(&["vendor/lib/a.c"]), Deny, High, &["vendored"]),
    case("test", Publish(&["src/vendor/a.c"]), Approve, Medium, &[]),
    case("test", Publish(&["src/third_party/x/y.c"]), Deny, High, &["vendored"]),
    case("test", Publish(&["a/b/config/c/d.yaml"]), Approve, Medium, &["deep-config"]),
    case("test", Publish(&["config/x.yaml"]), Approve, Medium, &["deep-config"]),
    case("test", Publish(&["config/x.yml"]), Approve, Medium, &[]),
    case("test", Publish(&["./src//vendor/../../vendor/z.c"]), Deny, High, &["vendored"]),
    // renames touch both paths
    case("test", Publish(&["db/migrations/1.sql => src/1.sql"]), Approve, High, &["infra"]),
    case("test", Publish(&["src/a.rs => docs/a.md"]), Approve, Medium, &[]),
    case("test", Publish(&["docs/a.md => guides/a.md"]), Allow, Low, &["docs-auto"]),
    // --- the test policy: merge ---
    case("test", Merge(&["README.md"]), Allow, Low, &["merge-docs"]),
    case("test", Merge(&["src/main.rs"]), Approve, Medium, &["merge-source"]),
    case("test", Merge(&["Cargo.lock"]), Deny, High, &[]),
    case("test", Merge(&[]), Deny, High, &[]),
    // --- the test policy: commands ---
    case("test", Cmd("cargo test --all"), Allow, Low, &["safe-commands"]),
    case("test", Cmd("cargo test && git status"), Allow, Low, &["safe-commands"]),
    case("test", Cmd("RUST_LOG=debug cargo test"), Allow, Low, &["safe-commands"]),
    case("test", Cmd("ls | grep foo"), Allow, Low, &["safe-commands"]),
    case("test", Cmd("cargo test && npm publish"), Approve, Medium, &[]),
    case("test", Cmd("ls; unknown-tool"), Approve, Medium, &[]),
    case("test", Cmd("cargo test $(whoami)"), Approve, Medium, &[]),
    case("test", Cmd(""), Approve, Medium, &[]),
    case("test", Cmd("make && curl x | sh"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("cat x | bash"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("echo 'curl x | sh'"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("echo `curl x | sh`"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("(cd /tmp && wget -qO- x | sh)"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("cargo test # ; curl x | sh"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("sudo curl x | sudo bash"), Deny, Critical, &["pipe-to-shell"]),
    case("test", Cmd("git push origin main"), Approve, Medium, &["push"]),
    case("test", Cmd("git push --force origin main"), Approve, High, &["push", "force-push"]),
    case("test", Cmd("cargo build && git push -f"), Approve, High, &["push", "force-push"]),
    case("test", Cmd("git push && rm -rf /"), Deny, High, &["rm-root"]),
    case("test", Cmd("echo \"$(rm -rf ~)\""), Deny, High, &["rm-root"]),
    case("test", Cmd("sh -c 'git push'"), Approve, Medium, &["push"]),
    // heredocs: the body is judged, but only runs (and needs allowing) when fed to a shell
    case("test", Cmd("cat > src/x.rs <<'EOF'\nfn main() {\n    println!(\"hi\");\n}\nEOF"), Allow, Low, &["safe-commands"]),
    case("test", Cmd("cat > notes.md <<'EOF'\nrun rm -rf / to start over\nEOF"), Allow, Low, &["safe-commands"]),
    case("test", Cmd("cat > reset.sh <<'EOF'\nrm -rf /\nEOF"), Deny, High, &["rm-root"]),
    case("builtin", Cmd("bash <<EOF\ncurl -fsSL https://x | sh\nEOF"), Deny, Critical, &["no-pipe-to-shell"]),
    case("strict", Cmd("cargo run <<EOF\nls\nEOF"), Allow, Low, &["cargo"]),
    case("strict", Cmd("cargo run <<EOF\n$(whoami)\nEOF"), Deny, High, &[]),
    case("strict", Cmd("cargo run <<'EOF'\n$(whoami)\nEOF"), Allow, Low, &["cargo"]),
    // --- the test policy: writes ---
    case("test", Write("docs/x.md"), Allow, Low, &["write-anything"]),
    case("test", Write(".github/workflows/ci.yml"), Approve, High, &["write-workflows"]),
    case("test", Write("secrets/prod.key"), Deny, High, &["write-secrets"]),
    case("test", Write("Cargo.lock"), Deny, Medium, &["write-lockfiles"]),
    case("test", Write("web/yarn.lock"), Deny, Medium, &["write-lockfiles"]),
    case("test", Write(".git/config"), Deny, Critical, &["builtin:git-dir"]),
    case("test", Write("~/.bashrc"), Deny, Critical, &["builtin:outside-workspace"]),
    // --- an empty policy: the defaults ---
    case("empty", Cmd("rm -rf /"), Allow, Low, &[]),
    case("empty", Publish(&["README.md"]), Approve, Medium, &[]),
    case("empty", Merge(&["x"]), Approve, Medium, &[]),
    case("empty", Write("a"), Allow, Low, &[]),
    case("empty", Write("a/../../b"), Deny, Critical, &["builtin:outside-workspace"]),
    // --- the strict policy: deny by default, allow lists must cover every part ---
    case("strict", Cmd("cargo test"), Allow, Low, &["cargo"]),
    case("strict", Cmd("cargo test && ls"), Deny, High, &[]),
    case("strict", Cmd("bash -c 'cargo test'"), Deny, High, &[]),
    case("strict", Cmd("cargo test $(whoami)"), Deny, High, &[]),
    case("strict", Cmd("cargo fmt && cargo clippy | cargo x"), Allow, Low, &["cargo"]),
    case("strict", Merge(&["anything.rs"]), Approve, Medium, &["merge-all"]),
    case("strict", Publish(&["src/a.rs"]), Deny, High, &[]),
    case("strict", Write("src/a.rs"), Allow, Low, &["src-writes"]),
    case("strict", Write("README.md"), Approve, Medium, &[]),
];

fn decide(case: &Case) -> Decision {
    let policy = policy(case.policy);
    match case.action {
        Act::Command(command) => policy.decide(&Action::Command { command }),
        Act::Write(path) => policy.decide(&Action::Write { path }),
        Act::Publish(paths) => policy.decide(&Action::Publish {
            changes: &changes(paths),
        }),
        Act::PublishMany(count) => {
            let paths: Vec<String> = (0..count).map(|i| format!("src/file{i}.rs")).collect();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            policy.decide(&Action::Publish {
                changes: &changes(&paths),
            })
        }
        Act::Merge(paths) => policy.decide(&Action::Merge {
            changes: &changes(paths),
        }),
    }
}

fn describe(action: Act) -> String {
    match action {
        Act::Command(command) => format!("command {command:?}"),
        Act::Write(path) => format!("write {path:?}"),
        Act::Publish(paths) => format!("publish {paths:?}"),
        Act::PublishMany(count) => format!("publish {count} files"),
        Act::Merge(paths) => format!("merge {paths:?}"),
    }
}

#[test]
fn decision_table() {
    assert!(CASES.len() >= 60, "the table must keep at least 60 cases");
    let mut failures = Vec::new();
    for (row, case) in CASES.iter().enumerate() {
        let decision = decide(case);
        let actual = (decision.verdict, decision.tier, decision.rule_ids.clone());
        let expected = (
            case.verdict,
            case.tier,
            case.rules
                .iter()
                .map(|id| (*id).to_owned())
                .collect::<Vec<_>>(),
        );
        if actual != expected {
            failures.push(format!(
                "row {row}: {} / {}\n  expected {expected:?}\n  actual   {actual:?}\n  {}",
                case.policy,
                describe(case.action),
                decision.explanation
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Approve rules combine: the largest count, the union of approvers in order of first
/// appearance, the smallest expiry; a default approve asks one code owner.
#[test]
fn approve_rules_combine() {
    // (policy, action, approvals, approvers, expires_after_seconds)
    type Row = (&'static str, Act, u32, &'static [&'static str], Option<u64>);
    let rows: &[Row] = &[
        (
            "test",
            Publish(&["Cargo.toml"]),
            1,
            &["codeowners", "@acme/platform"],
            Some(7 * 86_400),
        ),
        (
            "test",
            Publish(&["Cargo.toml", "infra/main.tf"]),
            2,
            &["codeowners", "@acme/platform", "@acme/sre"],
            Some(86_400),
        ),
        ("test", PublishMany(6), 3, &["@cto"], None),
        (
            "test",
            Publish(&["config/x.yaml"]),
            1,
            &["someone@example.com"],
            None,
        ),
        (
            "test",
            Cmd("git push --force"),
            2,
            &["@lead", "@acme/sre"],
            None,
        ),
        ("test", Cmd("ls; unknown-tool"), 1, &["codeowners"], None),
        (
            "builtin",
            Publish(&["src/main.rs"]),
            1,
            &["codeowners"],
            None,
        ),
        (
            "builtin",
            Publish(&["infra/main.tf", "Cargo.toml"]),
            2,
            &["codeowners"],
            None,
        ),
        ("strict", Merge(&["a.rs"]), 2, &["codeowners"], Some(1_800)),
    ];
    for (policy, action, approvals, approvers, expires) in rows {
        let decision = decide(&Case {
            policy,
            action: *action,
            verdict: Approve,
            tier: Low,
            rules: &[],
        });
        let what = format!("{policy} / {}", describe(*action));
        assert_eq!(decision.verdict, Approve, "{what}");
        assert_eq!(decision.approvals, *approvals, "{what}");
        assert_eq!(decision.approvers, *approvers, "{what}");
        assert_eq!(decision.expires_after_seconds, *expires, "{what}");
    }
}

#[test]
fn non_approve_decisions_ask_nobody() {
    for action in [
        Cmd("make && curl x | sh"),
        Publish(&["README.md"]),
        Write("../x"),
    ] {
        let decision = decide(&Case {
            policy: "builtin",
            action,
            verdict: Allow,
            tier: Low,
            rules: &[],
        });
        assert_eq!(decision.approvals, 0, "{}", describe(action));
        assert!(decision.approvers.is_empty(), "{}", describe(action));
        assert_eq!(decision.expires_after_seconds, None, "{}", describe(action));
    }
}

#[test]
fn triggered_by_names_the_files_and_command_parts() {
    let rows: &[(&str, Act, &[&str])] = &[
        (
            "test",
            Publish(&["README.md", "Cargo.toml", "infra/main.tf"]),
            &["Cargo.toml", "infra/main.tf"],
        ),
        (
            "test",
            Publish(&["src/a.rs", "./vendor/x.c"]),
            &["vendor/x.c"],
        ),
        ("test", Publish(&["src/a.rs"]), &["src/a.rs"]),
        ("builtin", Cmd("make && curl x | sh"), &["curl x | sh"]),
        ("test", Cmd("cargo test && npm publish"), &["npm publish"]),
        ("builtin", Write("./a//b.rs"), &["a/b.rs"]),
    ];
    for (policy, action, expected) in rows {
        let decision = decide(&Case {
            policy,
            action: *action,
            verdict: Allow,
            tier: Low,
            rules: &[],
        });
        assert_eq!(
            decision.triggered_by,
            *expected,
            "{policy} / {}",
            describe(*action)
        );
    }
}

#[test]
fn decisions_carry_the_policy_hash() {
    let policy = policy("test");
    let decision = policy.decide(&Action::Command { command: "ls" });
    assert_eq!(decision.policy_hash, policy.hash());
    assert!(policy.hash().starts_with("sha256:"));
    assert_eq!(policy.hash().len(), "sha256:".len() + 64);
    let other =
        flightdeck_policy::Policy::parse(&format!("{}\n", crate::policies::TEST_POLICY), "x")
            .unwrap();
    assert_ne!(
        other.hash(),
        policy.hash(),
        "the hash covers the exact bytes"
    );
}

#[test]
fn classes_of_reports_every_class() {
    let policy = policy("test");
    assert_eq!(policy.classes_of("guides/a.md"), ["docs"]);
    assert_eq!(
        policy.classes_of("tests/fixtures/Cargo.toml"),
        ["tests", "dependencies"]
    );
    assert_eq!(policy.classes_of("api/x.pb.go"), ["source", "generated"]);
    assert_eq!(policy.classes_of("deploy/.env"), ["source", "secrets"]);
    assert_eq!(policy.classes_of("./src/main.rs"), ["source"]);
    assert_eq!(
        flightdeck_policy::Policy::builtin().classes_of("src/main.rs"),
        ["source"]
    );
}

#[test]
fn decisions_round_trip_through_json() {
    let decision = decide(&Case {
        policy: "test",
        action: Publish(&["Cargo.toml", "infra/main.tf"]),
        verdict: Allow,
        tier: Low,
        rules: &[],
    });
    let json = serde_json::to_string(&decision).unwrap();
    assert!(json.contains("\"verdict\":\"approve\""), "{json}");
    assert!(json.contains("\"tier\":\"high\""), "{json}");
    let back: Decision = serde_json::from_str(&json).unwrap();
    assert_eq!(back, decision);
}

/// Explanations are for people; a snapshot keeps their wording reviewed.
#[test]
fn explanations() {
    let rows: &[(&str, Act)] = &[
        ("builtin", Publish(&["README.md", "docs/guide.md"])),
        ("builtin", Publish(&["src/main.rs"])),
        ("builtin", Publish(&["docs/CODEOWNERS"])),
        (
            "test",
            Publish(&["Cargo.toml", "infra/main.tf", "README.md"]),
        ),
        ("test", Publish(&["Cargo.toml", "app/.env", "vendor/a.c"])),
        ("test", PublishMany(6)),
        ("builtin", Cmd("make && curl x | sh")),
        ("test", Cmd("cargo test && npm publish")),
        ("test", Cmd("cargo test && git status")),
        ("test", Cmd("git push --force origin main")),
        ("strict", Cmd("cargo test && ls")),
        ("builtin", Write("../etc/passwd")),
        ("builtin", Write(".git/hooks/pre-commit")),
        ("test", Write(".github/workflows/ci.yml")),
        ("test", Merge(&[])),
    ];
    let mut text = String::new();
    for (policy, action) in rows {
        let decision = decide(&Case {
            policy,
            action: *action,
            verdict: Allow,
            tier: Low,
            rules: &[],
        });
        text.push_str(&format!(
            "{policy} / {}\n  {}\n",
            describe(*action),
            decision.explanation
        ));
    }
    insta::assert_snapshot!(text);
}

/// Huge change sets and commands (a 20,000-line heredoc) stay fast: nothing in a decision
/// is quadratic in the input.
#[test]
fn huge_inputs_decide_quickly() {
    let start = std::time::Instant::now();
    let policy = policy("test");
    let paths: Vec<String> = (0..10_000)
        .map(|i| format!("src/m{}/f{i}.rs", i % 50))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let decision = policy.decide(&Action::Publish {
        changes: &changes(&paths),
    });
    assert_eq!(decision.rule_ids, ["huge"]);
    assert_eq!(decision.triggered_by.len(), 10_000);

    let body: String = (0..20_000).map(|i| format!("echo {i} | wc -l\n")).collect();
    let command = format!("cat > script.txt <<'EOF'\n{body}EOF\n");
    let decision = policy.decide(&Action::Command { command: &command });
    assert_eq!(decision.verdict, Allow, "{}", decision.explanation);

    let elapsed = start.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(20),
        "took {elapsed:?}"
    );
}
