//! Policy files that must be refused, and how the refusal reads.

use flightdeck_policy::{Policy, PolicyError, PolicyErrorKind};

fn error(source: &str) -> PolicyError {
    match Policy::parse(source, ".flightdeck/policy.toml") {
        Ok(_) => panic!("expected an error for:\n{source}"),
        Err(error) => error,
    }
}

const RULE: &str = "[[rule]]\nid = \"r\"\naction = \"publish\"\n";

/// (source, key, line, column, message) for every refusal.
#[test]
fn errors_name_origin_line_column_and_key() {
    let rows: &[(&str, Option<&str>, usize, usize, &str)] = &[
        (
            "allow_self_approval = false\nfrobnicate = 1\n",
            Some("frobnicate"),
            2,
            1,
            ".flightdeck/policy.toml:2:1: unknown key `frobnicate` in the top level (expected one of: allow_self_approval, allow_unknown_approvers, allow_unsandboxed, classes, defaults, rule)",
        ),
        (
            "allow_unknown_approvers = \"yes\"\n",
            Some("allow_unknown_approvers"),
            1,
            27,
            ".flightdeck/policy.toml:1:27: invalid value for `allow_unknown_approvers` in the top level: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[defaults]\ncommand = \"allow\"\n  publsh = \"approve\"\n",
            Some("publsh"),
            3,
            3,
            ".flightdeck/policy.toml:3:3: unknown key `publsh` in [defaults] (expected one of: command, write, publish, merge)",
        ),
        (
            "[[rule]]\nid = \"docs\"\naction = \"publish\"\ndecision = \"allow\"\nchanges_onyl = [\"docs\"]\n",
            Some("changes_onyl"),
            5,
            1,
            ".flightdeck/policy.toml:5:1: unknown key `changes_onyl` in rule `docs` (expected one of: id, action, decision, tier, approvals, approvers, expires_after, changes_only, changes_any, paths, command_matches, files_changed_over)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"publish\"\ndecision = \"maybe\"\n",
            Some("decision"),
            4,
            12,
            ".flightdeck/policy.toml:4:12: invalid value for `decision` in rule `r`: `maybe` is not a decision (expected allow, approve or deny)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"publish\"\ndecision = \"allow\"\nchanges_any = [\"docs\", \"frontend\"]\n",
            Some("changes_any"),
            5,
            24,
            ".flightdeck/policy.toml:5:24: unknown class `frontend` in `changes_any` of rule `r` (known classes: docs, tests, dependencies, migrations, infra, ci, source)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"publish\"\ndecision = \"approve\"\napprovals = \"two\"\n",
            Some("approvals"),
            5,
            13,
            ".flightdeck/policy.toml:5:13: invalid value for `approvals` in rule `r`: invalid type: string \"two\", expected an integer",
        ),
        (
            "\n[[rule]]\naction = \"publish\"\ndecision = \"approve\"\n",
            Some("id"),
            2,
            1,
            ".flightdeck/policy.toml:2:1: missing key `id` in rule #1 (line 2)",
        ),
        (
            "[[rule]]\nid = \"r\"\ndecision = \"approve\"\n",
            Some("action"),
            1,
            1,
            ".flightdeck/policy.toml:1:1: missing key `action` in rule `r`",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"publish\"\ndecision = \"deny\"\ncommand_matches = [\"rm *\"]\n",
            Some("command_matches"),
            5,
            19,
            ".flightdeck/policy.toml:5:19: `command_matches` cannot be used in rule `r` with action = \"publish\" (it applies to command rules)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"command\"\ndecision = \"deny\"\npaths = [\"a/**\"]\n",
            Some("paths"),
            5,
            9,
            ".flightdeck/policy.toml:5:9: `paths` cannot be used in rule `r` with action = \"command\" (it applies to write, publish and merge rules)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"write\"\ndecision = \"deny\"\nfiles_changed_over = 3\n",
            Some("files_changed_over"),
            5,
            22,
            ".flightdeck/policy.toml:5:22: `files_changed_over` cannot be used in rule `r` with action = \"write\" (it applies to publish and merge rules)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"allow\"\n\n[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"deny\"\n",
            Some("id"),
            7,
            6,
            ".flightdeck/policy.toml:7:6: duplicate rule id `r` (first used on line 2)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"allow\"\napprovals = 2\n",
            Some("approvals"),
            5,
            13,
            ".flightdeck/policy.toml:5:13: invalid value for `approvals` in rule `r`: `approvals` only applies to rules with decision = \"approve\"",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"approve\"\napprovals = 0\n",
            Some("approvals"),
            5,
            13,
            ".flightdeck/policy.toml:5:13: invalid value for `approvals` in rule `r`: 0 is not a positive number of approvals",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"approve\"\napprovers = [\"alice\"]\n",
            Some("approvers"),
            5,
            14,
            ".flightdeck/policy.toml:5:14: invalid value for `approvers` in rule `r`: `alice` is not an approver (expected \"codeowners\", \"@user\", \"@org/team\" or an email)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"approve\"\nexpires_after = \"1 day\"\n",
            Some("expires_after"),
            5,
            17,
            ".flightdeck/policy.toml:5:17: invalid value for `expires_after` in rule `r`: `1 day` is not a duration (expected a number and a unit: s, m, h, d or w, as in \"24h\")",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"deploy\"\ndecision = \"approve\"\n",
            Some("action"),
            3,
            10,
            ".flightdeck/policy.toml:3:10: invalid value for `action` in rule `r`: `deploy` is not an action (expected command, write, publish or merge)",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"deny\"\ntier = \"severe\"\n",
            Some("tier"),
            5,
            8,
            ".flightdeck/policy.toml:5:8: invalid value for `tier` in rule `r`: `severe` is not a tier (expected low, medium, high or critical)",
        ),
        (
            "[[rule]]\nid = \"builtin:x\"\naction = \"merge\"\ndecision = \"deny\"\n",
            Some("id"),
            2,
            6,
            ".flightdeck/policy.toml:2:6: invalid value for `id` in rule #1 (line 1): ids starting with `builtin:` are reserved for built-in checks",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"deny\"\npaths = []\n",
            Some("paths"),
            5,
            9,
            ".flightdeck/policy.toml:5:9: invalid value for `paths` in rule `r`: the list must not be empty",
        ),
        (
            "[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"deny\"\npaths = [\"!vendor/\"]\n",
            Some("paths"),
            5,
            10,
            ".flightdeck/policy.toml:5:10: invalid glob `!vendor/` in `paths` of rule `r`: negated patterns (`!`) are not supported",
        ),
        (
            "[classes]\nweb = [\"web/**\", \"a***\"]\n",
            Some("web"),
            2,
            18,
            ".flightdeck/policy.toml:2:18: invalid glob `a***` in `web` of [classes]: `***` is not a valid wildcard",
        ),
        (
            "[defaults]\npublish = \"sometimes\"\n",
            Some("publish"),
            2,
            11,
            ".flightdeck/policy.toml:2:11: invalid value for `publish` in [defaults]: `sometimes` is not a decision (expected allow, approve or deny)",
        ),
        (
            "[defaults]\nmerge = 3\n",
            Some("merge"),
            2,
            9,
            ".flightdeck/policy.toml:2:9: invalid value for `merge` in [defaults]: invalid type: integer `3`, expected a string",
        ),
        (
            "allow_self_approval = false\nx = [\n",
            None,
            3,
            1,
            ".flightdeck/policy.toml:3:1: invalid toml: invalid array; expected `]`",
        ),
    ];
    let mut failures = Vec::new();
    for (source, key, line, column, message) in rows {
        let error = error(source);
        let location = error.location();
        let actual = (
            error.key(),
            location.line,
            location.column,
            error.to_string(),
        );
        let expected = (*key, *line, *column, (*message).to_owned());
        if actual != expected {
            failures.push(format!(
                "{source}\n  expected {expected:?}\n  actual   {actual:?}"
            ));
        }
        assert_eq!(location.origin, ".flightdeck/policy.toml");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_variants_carry_structured_fields() {
    match error("[[rule]]\nid = \"r\"\naction = \"publish\"\ndecision = \"allow\"\nchanges_only = [\"nope\"]\n").kind() {
        PolicyErrorKind::UnknownClass { class, known, .. } => {
            assert_eq!(class, "nope");
            assert!(known.iter().any(|k| k == "source"));
        }
        other => panic!("unexpected {other:?}"),
    }
    match error(&format!("{RULE}decision = \"maybe\"\n")).kind() {
        PolicyErrorKind::InvalidValue { key, table, .. } => {
            assert_eq!(key, "decision");
            assert_eq!(table, "rule `r`");
        }
        other => panic!("unexpected {other:?}"),
    }
    match error("zzz = 1\n").kind() {
        PolicyErrorKind::UnknownKey { key, expected, .. } => {
            assert_eq!(key, "zzz");
            assert!(expected.contains(&"rule".to_owned()));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The boxed error displays exactly as its kind.
    let boxed = error("zzz = 1\n");
    assert_eq!(boxed.to_string(), boxed.kind().to_string());
    match error("[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"deny\"\n[[rule]]\nid = \"r\"\naction = \"merge\"\ndecision = \"deny\"\n").kind() {
        PolicyErrorKind::DuplicateRuleId { id, first_line, .. } => {
            assert_eq!((id.as_str(), *first_line), ("r", 2));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn classes_defined_in_the_policy_can_be_used_by_rules() {
    let policy = Policy::parse(
        "[classes]\nfrontend = [\"web/\"]\n\n[[rule]]\nid = \"r\"\naction = \"publish\"\ndecision = \"allow\"\nchanges_only = [\"frontend\"]\n",
        "p",
    );
    assert!(policy.is_ok(), "{:?}", policy.err());
}

#[test]
fn allow_unknown_approvers_defaults_to_false() {
    let rows: &[(&str, bool)] = &[
        ("", false),
        ("allow_unknown_approvers = false\n", false),
        ("allow_unknown_approvers = true\n", true),
        (flightdeck_policy::BUILTIN_POLICY_TOML, false),
    ];
    for (source, expected) in rows {
        let policy = Policy::parse(source, "p").unwrap();
        assert_eq!(policy.allow_unknown_approvers(), *expected, "{source}");
    }
    assert!(!Policy::builtin().allow_unknown_approvers());
}
