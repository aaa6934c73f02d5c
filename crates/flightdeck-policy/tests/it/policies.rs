//! Policies shared by the tests.

use flightdeck_policy::{ChangeStatus, ChangedFile, Policy, BUILTIN_POLICY_TOML};

/// A policy exercising every condition: class extensions and new classes, combined
/// approve rules, deny precedence, paths with `**`, command allow lists.
pub const TEST_POLICY: &str = r#"
allow_self_approval = false

[classes]
docs = ["guides/**"]
generated = ["**/*.pb.go", "gen/"]
secrets = ["**/.env", "**/*.pem", "secrets/"]

[defaults]
command = "approve"
write = "allow"
publish = "approve"
merge = "deny"

[[rule]]
id = "docs-auto"
action = "publish"
changes_only = ["docs", "tests"]
decision = "allow"

[[rule]]
id = "generated-auto"
action = "publish"
changes_only = ["generated"]
decision = "allow"

[[rule]]
id = "deps"
action = "publish"
changes_any = ["dependencies"]
decision = "approve"
approvals = 1
approvers = ["codeowners", "@acme/platform"]
expires_after = "7d"

[[rule]]
id = "infra"
action = "publish"
changes_any = ["infra", "migrations"]
decision = "approve"
approvals = 2
approvers = ["@acme/sre", "codeowners"]
expires_after = "24h"
tier = "high"

[[rule]]
id = "huge"
action = "publish"
files_changed_over = 5
decision = "approve"
approvals = 3
approvers = ["@cto"]
tier = "high"

[[rule]]
id = "no-secrets"
action = "publish"
changes_any = ["secrets"]
decision = "deny"
tier = "critical"

[[rule]]
id = "vendored"
action = "publish"
paths = ["vendor/**", "third_party/"]
decision = "deny"

[[rule]]
id = "deep-config"
action = "publish"
paths = ["**/config/**/*.yaml"]
decision = "approve"
approvers = ["someone@example.com"]

[[rule]]
id = "merge-docs"
action = "merge"
changes_only = ["docs"]
decision = "allow"

[[rule]]
id = "merge-source"
action = "merge"
changes_any = ["source"]
decision = "approve"
approvals = 2

[[rule]]
id = "safe-commands"
action = "command"
command_matches = ["cargo test*", "cargo build*", "ls*", "git status", "git diff*", "echo *", "make*", "cat *", "grep *"]
decision = "allow"

[[rule]]
id = "pipe-to-shell"
action = "command"
command_matches = ["curl * | sh*", "wget * | sh*", "* | bash*"]
decision = "deny"
tier = "critical"

[[rule]]
id = "push"
action = "command"
command_matches = ["git push*"]
decision = "approve"
approvers = ["@lead"]

[[rule]]
id = "force-push"
action = "command"
command_matches = ["git push --force*", "git push -f*"]
decision = "approve"
approvals = 2
approvers = ["@acme/sre"]
tier = "high"

[[rule]]
id = "rm-root"
action = "command"
command_matches = ["rm -rf /", "rm -rf ~*"]
decision = "deny"

[[rule]]
id = "write-anything"
action = "write"
paths = ["**"]
decision = "allow"

[[rule]]
id = "write-workflows"
action = "write"
paths = [".github/workflows/**"]
decision = "approve"
tier = "high"

[[rule]]
id = "write-secrets"
action = "write"
changes_any = ["secrets"]
decision = "deny"

[[rule]]
id = "write-lockfiles"
action = "write"
paths = ["Cargo.lock", "*.lock"]
decision = "deny"
tier = "medium"
"#;

/// Deny by default: only `cargo` commands run; merges need two approvals from anyone
/// the code owners name.
pub const STRICT_POLICY: &str = r#"
[defaults]
command = "deny"
write = "approve"
publish = "deny"

[[rule]]
id = "cargo"
action = "command"
command_matches = ["cargo *"]
decision = "allow"

[[rule]]
id = "merge-all"
action = "merge"
decision = "approve"
approvals = 2
expires_after = "30m"

[[rule]]
id = "src-writes"
action = "write"
changes_only = ["source"]
decision = "allow"
"#;

/// Looks up a policy by the name used in the tables.
pub fn policy(name: &str) -> Policy {
    let source = match name {
        "builtin" => BUILTIN_POLICY_TOML,
        "test" => TEST_POLICY,
        "strict" => STRICT_POLICY,
        "empty" => "",
        other => panic!("unknown policy {other}"),
    };
    Policy::parse(source, &format!("{name}.toml")).unwrap_or_else(|error| panic!("{error}"))
}

/// `a.rs` is a modification, `old => new` a rename.
pub fn changes(paths: &[&str]) -> Vec<ChangedFile> {
    paths
        .iter()
        .map(|spec| match spec.split_once(" => ") {
            Some((from, to)) => ChangedFile::new(
                to,
                ChangeStatus::Renamed {
                    from: from.to_owned(),
                },
            ),
            None => ChangedFile::modified(*spec),
        })
        .collect()
}
