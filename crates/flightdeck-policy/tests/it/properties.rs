//! Properties: deny wins whatever the rule order; decisions are deterministic.

use flightdeck_policy::{Action, Decision, Policy, Verdict};
use proptest::prelude::*;

use crate::policies::changes;

/// A deny rule that matches the change set used below.
const MATCHING_DENY: &str = "[[rule]]\nid = \"deny-infra\"\naction = \"publish\"\nchanges_any = [\"infra\"]\ndecision = \"deny\"\n";

/// Other rules, matching or not, of every decision.
const OTHER_RULES: &[&str] = &[
    "[[rule]]\nid = \"allow-docs\"\naction = \"publish\"\nchanges_any = [\"docs\"]\ndecision = \"allow\"\n",
    "[[rule]]\nid = \"allow-all\"\naction = \"publish\"\ndecision = \"allow\"\ntier = \"critical\"\n",
    "[[rule]]\nid = \"approve-infra\"\naction = \"publish\"\nchanges_any = [\"infra\"]\ndecision = \"approve\"\napprovals = 3\n",
    "[[rule]]\nid = \"approve-many\"\naction = \"publish\"\nfiles_changed_over = 1\ndecision = \"approve\"\n",
    "[[rule]]\nid = \"approve-tf\"\naction = \"publish\"\npaths = [\"**/*.tf\"]\ndecision = \"approve\"\ntier = \"critical\"\n",
    "[[rule]]\nid = \"deny-vendor\"\naction = \"publish\"\npaths = [\"vendor/**\"]\ndecision = \"deny\"\n",
    "[[rule]]\nid = \"deny-secrets\"\naction = \"publish\"\npaths = [\"**/.env\"]\ndecision = \"deny\"\ntier = \"critical\"\n",
    "[[rule]]\nid = \"allow-only-docs\"\naction = \"publish\"\nchanges_only = [\"docs\"]\ndecision = \"allow\"\n",
    "[[rule]]\nid = \"command-deny\"\naction = \"command\"\ncommand_matches = [\"*\"]\ndecision = \"deny\"\n",
];

const CHANGED: &[&str] = &["infra/main.tf", "README.md", "src/lib.rs"];

fn rule_lists() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(OTHER_RULES.to_vec(), 0..=OTHER_RULES.len()).prop_flat_map(
        |mut rules| {
            rules.push(MATCHING_DENY);
            Just(rules).prop_shuffle()
        },
    )
}

fn decide(rules: &[&str], action: &Action<'_>) -> Decision {
    let source = rules.join("\n");
    Policy::parse(&source, "generated.toml")
        .unwrap_or_else(|error| panic!("{error}\n{source}"))
        .decide(action)
}

proptest! {
    #[test]
    fn deny_wins_whatever_the_rule_order(rules in rule_lists()) {
        let changes = changes(CHANGED);
        let decision = decide(&rules, &Action::Publish { changes: &changes });
        prop_assert_eq!(decision.verdict, Verdict::Deny);
        prop_assert!(decision.rule_ids.iter().any(|id| id == "deny-infra"));
        prop_assert!(decision.rule_ids.iter().all(|id| id.starts_with("deny-")));
        prop_assert_eq!(decision.approvals, 0);
    }

    #[test]
    fn rule_order_changes_nothing_but_the_order_of_ids(
        rules in proptest::sample::subsequence(OTHER_RULES.to_vec(), 1..=OTHER_RULES.len()),
        seed in any::<u64>(),
    ) {
        let changes = changes(CHANGED);
        let action = Action::Publish { changes: &changes };
        let mut reversed = rules.clone();
        reversed.reverse();
        let mut rotated = rules.clone();
        let len = rotated.len();
        rotated.rotate_left((seed % len as u64) as usize);
        let reference = decide(&rules, &action);
        for other in [decide(&reversed, &action), decide(&rotated, &action)] {
            prop_assert_eq!(other.verdict, reference.verdict);
            prop_assert_eq!(other.tier, reference.tier);
            prop_assert_eq!(other.approvals, reference.approvals);
            let mut ids = other.rule_ids.clone();
            let mut reference_ids = reference.rule_ids.clone();
            ids.sort();
            reference_ids.sort();
            prop_assert_eq!(ids, reference_ids);
        }
    }

    #[test]
    fn decide_is_deterministic(rules in rule_lists(), command in "[a-z|&;$()'\" ]{0,40}") {
        let changes = changes(CHANGED);
        for action in [Action::Publish { changes: &changes }, Action::Command { command: &command }] {
            let first = decide(&rules, &action);
            let second = decide(&rules, &action);
            prop_assert_eq!(&first, &second);
        }
        let builtin = Policy::builtin();
        let action = Action::Command { command: &command };
        prop_assert_eq!(builtin.decide(&action), builtin.decide(&action));
    }

    /// However a pipe into a shell is wrapped, the built-in policy denies it.
    #[test]
    fn wrapped_pipe_to_shell_is_denied(
        before in proptest::sample::select(vec!["", "make", "cd src", "FOO=1 cargo test", "ls -la"]),
        separator in proptest::sample::select(vec![" && ", "; ", " || ", "\n", " & ", " | "]),
        wrapper in proptest::sample::select(vec![
            "{}", "bash -c '{}'", "sh -c \"{}\"", "echo $({})", "echo `{}`", "eval \"{}\"",
            "( {} )", "sudo sh -c '{}'", "xargs bash -c '{}'", "ssh host '{}'",
        ]),
        fetch in proptest::sample::select(vec!["curl -fsSL https://x.sh", "wget -qO- x", "curl x"]),
        shell in proptest::sample::select(vec!["sh", "bash", "sudo bash -s", "/bin/zsh", "sh -"]),
    ) {
        let inner = format!("{fetch} | {shell}");
        let wrapped = wrapper.replace("{}", &inner);
        let command = if before.is_empty() { wrapped } else { format!("{before}{separator}{wrapped}") };
        let decision = Policy::builtin().decide(&Action::Command { command: &command });
        prop_assert_eq!(decision.verdict, Verdict::Deny, "{}", command);
    }
}
