//! Command bypasses × policies: what the judge cannot see through gets the strictest
//! decision any command rule of the policy could give, never `allow`; wrappers are seen
//! through to the command they run.

use flightdeck_policy::{Action, Decision, Policy, Verdict, UNSEEN_COMMAND_RULE};

use crate::policies::policy;

/// Allows every command by default; one rule asks two people.
const GATED_POLICY: &str = r#"
[defaults]
command = "allow"

[[rule]]
id = "push"
action = "command"
command_matches = ["git push*"]
decision = "approve"
approvals = 2
approvers = ["@sre"]
expires_after = "1h"
tier = "high"
"#;

/// Allows only the listed programs.
const ALLOW_LIST_POLICY: &str = r#"
[defaults]
command = "deny"

[[rule]]
id = "tools"
action = "command"
command_matches = ["cargo *", "find *", "ls*", "echo *", "cat *", "base64 *", "sh *", "bash *"]
decision = "allow"
"#;

fn named(name: &str) -> Policy {
    match name {
        "gated" => Policy::parse(GATED_POLICY, "gated.toml").unwrap(),
        "allow-list" => Policy::parse(ALLOW_LIST_POLICY, "allow-list.toml").unwrap(),
        other => policy(other),
    }
}

fn decide(policy: &str, command: &str) -> Decision {
    named(policy).decide(&Action::Command { command })
}

/// Commands whose program, or script, is only known when the shell runs them.
fn unseen_forms() -> Vec<String> {
    let deep_substitution = format!("echo {}ls{}", "$(".repeat(20), ")".repeat(20));
    let deep_subshell = format!("{}ls{}", "(".repeat(20), ")".repeat(20));
    [
        // an expansion in command position
        "$CMD x",
        "${CMD} x",
        "\"$tool\" --version",
        "$(echo curl) -o x https://example.com",
        "`echo rm` -rf build",
        "FOO=1 $x",
        "/usr/bin/c?rl -o x https://example.com",
        "{curl,-o,x,https://example.com}",
        "$'\\x63url' x",
        // eval of an expansion
        "eval \"$payload\"",
        "eval $(echo ls)",
        "eval `cat f`",
        // a decoder (or anything) piped into a shell or interpreter
        "echo Y3VybCB4IHwgc2g= | base64 -d | sh",
        "base64 -d payload.txt | bash",
        "xxd -r -p hex.txt | sh -s -- -y",
        "openssl base64 -d < f | python3",
        "cat payload | perl",
        "base64 -d f | sudo -u root bash",
        // a shell's script made by an expansion
        "sh -c \"$script\"",
        "bash -c \"$(cat f)\"",
        "bash -lc \"$x\"",
        "bash <<< \"$payload\"",
        "bash <<<$(base64 -d f)",
        "bash <(base64 -d f)",
        "source <(base64 -d f)",
        // wrappers running an expansion
        "timeout 5 $CMD",
        "sudo -u bob $x",
        "nice -n 10 \"$x\"",
        "ls | xargs -n 1 $x",
        "find . -exec $x {} ;",
        "watch \"$x\"",
        "env -S \"$x\"",
        "flock /tmp/lock -c \"$x\"",
        "busybox $x",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([deep_substitution, deep_subshell])
    .collect()
}

/// (policy, the verdict every unseen form gets, approvals, approvers)
const UNSEEN_OUTCOMES: &[(&str, Verdict, u32, &[&str])] = &[
    // a deny rule exists: everything unseen is denied
    ("builtin", Verdict::Deny, 0, &[]),
    ("test", Verdict::Deny, 0, &[]),
    // the default denies
    ("strict", Verdict::Deny, 0, &[]),
    ("allow-list", Verdict::Deny, 0, &[]),
    // only an approve rule: its approvals
    ("gated", Verdict::Approve, 2, &["@sre"]),
    // nothing can deny or ask: still not allowed unseen
    ("empty", Verdict::Approve, 1, &["codeowners"]),
];

#[test]
fn unseen_commands_get_the_strictest_decision_any_rule_could_give() {
    let mut failures = Vec::new();
    let forms = unseen_forms();
    for (policy, verdict, approvals, approvers) in UNSEEN_OUTCOMES {
        for command in &forms {
            let decision = decide(policy, command);
            let ok = decision.verdict == *verdict
                && decision.approvals == *approvals
                && decision.approvers == *approvers
                // under a deny rule the rule's own reason may decide; otherwise the
                // unseen part does
                && (decision.verdict == Verdict::Deny
                    || decision.rule_ids.iter().any(|id| id == UNSEEN_COMMAND_RULE));
            if !ok {
                failures.push(format!(
                    "{policy} / {command:?}: expected {verdict} {approvals} {approvers:?}, got {} {} {:?} {:?}\n  {}",
                    decision.verdict,
                    decision.approvals,
                    decision.approvers,
                    decision.rule_ids,
                    decision.explanation
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unseen_decisions_say_why_and_what() {
    let decision = decide("gated", "FOO=1 $x --flag");
    assert_eq!(decision.verdict, Verdict::Approve);
    assert_eq!(decision.rule_ids, [UNSEEN_COMMAND_RULE, "push"]);
    assert_eq!(decision.expires_after_seconds, Some(3600));
    assert_eq!(decision.triggered_by, ["FOO=1 $x --flag"]);
    assert!(
        decision
            .explanation
            .contains("the program it runs is named by an expansion"),
        "{}",
        decision.explanation
    );
    assert!(
        decision.explanation.contains("the sandbox is the boundary"),
        "{}",
        decision.explanation
    );
    // An approve decision of the rules combines with the unseen one.
    let decision = decide("test", "git push && $x");
    assert_eq!(decision.verdict, Verdict::Deny);
    let decision = decide("gated", "git push --force && \"$x\"");
    assert_eq!(decision.verdict, Verdict::Approve);
    assert_eq!(decision.rule_ids, [UNSEEN_COMMAND_RULE, "push"]);
}

/// What the judge does see through stays as it was: expansions as arguments, quoted
/// `-c` scripts, a pipe into a program that is not reading a script, `[`.
#[test]
fn seen_commands_are_not_unseen() {
    let cases: &[(&str, &str, Verdict)] = &[
        ("empty", "echo $HOME", Verdict::Allow),
        ("empty", "cargo test $(whoami)", Verdict::Allow),
        ("empty", "sh -c 'echo $1' _ x", Verdict::Allow),
        ("empty", "[ -f x ] && ls", Verdict::Allow),
        ("empty", "[[ -n \"$x\" ]] && ls", Verdict::Allow),
        ("empty", "curl -sL x | sha256sum", Verdict::Allow),
        (
            "empty",
            "cat data.json | python3 -m json.tool",
            Verdict::Allow,
        ),
        ("empty", "cat data | python3 tools/parse.py", Verdict::Allow),
        ("empty", "echo x | bash scripts/ci.sh", Verdict::Allow),
        ("empty", "eval 'ls -la'", Verdict::Allow),
        (
            "empty",
            "for f in *.rs; do wc -l \"$f\"; done",
            Verdict::Allow,
        ),
        ("empty", "cat > x.sh <<'EOF'\n$CMD\nEOF", Verdict::Allow),
        ("empty", "'$not-expanded' x", Verdict::Allow),
        ("builtin", "cargo test", Verdict::Allow),
        ("builtin", "git commit -m \"fix $thing\"", Verdict::Allow),
        ("allow-list", "cargo build --release", Verdict::Allow),
    ];
    let mut failures = Vec::new();
    for (policy, command, verdict) in cases {
        let decision = decide(policy, command);
        if decision.verdict != *verdict {
            failures.push(format!(
                "{policy} / {command:?}: expected {verdict}, got {}: {}",
                decision.verdict, decision.explanation
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Wrappers are seen through: the command they run is what the rules judge.
#[test]
fn wrappers_are_judged_by_the_command_they_run() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, Verdict)] = &[
        // a deny rule (`rm -rf /`, anchored) sees the wrapped command
        ("test", "timeout 5 rm -rf /", Verdict::Deny),
        ("test", "timeout -s KILL --kill-after 10 5 rm -rf /", Verdict::Deny),
        ("test", "nice -n 10 rm -rf /", Verdict::Deny),
        ("test", "ionice -c 3 rm -rf /", Verdict::Deny),
        ("test", "stdbuf -o L rm -rf /", Verdict::Deny),
        ("test", "sudo -u root rm -rf /", Verdict::Deny),
        ("test", "env -u HOME rm -rf /", Verdict::Deny),
        ("test", "env -S 'rm -rf /'", Verdict::Deny),
        ("test", "echo / | xargs -n 1 rm -rf /", Verdict::Deny),
        ("test", "watch -n 1 rm -rf /", Verdict::Deny),
        ("test", "watch 'ls && rm -rf /'", Verdict::Deny),
        ("test", "busybox rm -rf /", Verdict::Deny),
        ("test", "find . -exec rm -rf / \\;", Verdict::Deny),
        ("test", "find . -name x -execdir rm -rf / +", Verdict::Deny),
        ("test", "flock /tmp/lock rm -rf /", Verdict::Deny),
        ("test", "flock -w 5 /tmp/lock -c 'rm -rf /'", Verdict::Deny),
        ("test", "timeout 5 git push", Verdict::Approve),
        // an allow list must cover the wrapped command too
        ("strict", "timeout 60 cargo test", Verdict::Allow),
        ("strict", "nice -n 5 cargo build", Verdict::Allow),
        ("strict", "timeout 60 curl x", Verdict::Deny),
        ("allow-list", "find . -name '*.rs' -exec cat {} \\;", Verdict::Allow),
        ("allow-list", "find . -exec curl -o x https://example.com \\;", Verdict::Deny),
        ("allow-list", "ls | xargs cat -n", Verdict::Allow),
        ("allow-list", "ls | xargs -I {} curl {}", Verdict::Deny),
        ("allow-list", "watch -n 1 curl x", Verdict::Deny),
        ("allow-list", "flock /tmp/l -c 'curl x'", Verdict::Deny),
        ("allow-list", "env -S 'curl x'", Verdict::Deny),
    ];
    let mut failures = Vec::new();
    for (policy, command, verdict) in cases {
        let decision = decide(policy, command);
        if decision.verdict != *verdict {
            failures.push(format!(
                "{policy} / {command:?}: expected {verdict}, got {}: {}",
                decision.verdict, decision.explanation
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
