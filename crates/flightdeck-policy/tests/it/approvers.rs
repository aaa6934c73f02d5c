//! Who may approve a gate.

use std::collections::BTreeMap;

use flightdeck_policy::{
    check_approver, eligible_approvers, ApprovalContext, ApprovalRequirement, ApproverRefusal,
    Codeowners, Teams, ANYONE_BUT_REQUESTER,
};

const CODEOWNERS: &str = "\
* @alice
/infra/ @acme/sre bob@example.com
/docs/
";

fn teams() -> Teams {
    Teams::new(BTreeMap::from([(
        "@acme/sre".to_owned(),
        vec!["@carol".to_owned(), "dave@example.com".to_owned()],
    )]))
}

fn requirement(approvers: &[&str], paths: &[&str]) -> ApprovalRequirement {
    ApprovalRequirement {
        approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
        changed_paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

struct Row {
    identity: &'static str,
    approvers: &'static [&'static str],
    paths: &'static [&'static str],
    requester: &'static str,
    allow_self_approval: bool,
    already: &'static [&'static str],
    with_codeowners: bool,
    expected: Result<(), ApproverRefusal>,
}

const fn row(
    identity: &'static str,
    approvers: &'static [&'static str],
    paths: &'static [&'static str],
    expected: Result<(), ApproverRefusal>,
) -> Row {
    Row {
        identity,
        approvers,
        paths,
        requester: "@requester",
        allow_self_approval: false,
        already: &[],
        with_codeowners: true,
        expected,
    }
}

fn not_eligible(eligible: &[&str]) -> Result<(), ApproverRefusal> {
    Err(ApproverRefusal::NotEligible {
        eligible: eligible.iter().map(|e| (*e).to_owned()).collect(),
    })
}

#[test]
fn check_approver_cases() {
    let codeowners = Codeowners::parse(CODEOWNERS);
    let teams = teams();
    let infra: &[&str] = &["infra/main.tf"];
    let rows = vec![
        // A code owner of the changed file may approve; others may not.
        row("@alice", &["codeowners"], &["src/a.rs"], Ok(())),
        row("@ALICE", &["codeowners"], &["src/a.rs"], Ok(())),
        row("alice", &["codeowners"], &["src/a.rs"], Ok(())),
        row(
            "@mallory",
            &["codeowners"],
            &["src/a.rs"],
            not_eligible(&["@alice"]),
        ),
        row(
            "@mallory",
            &["codeowners"],
            infra,
            not_eligible(&["@acme/sre", "bob@example.com"]),
        ),
        // An email owner, case-insensitively.
        row("Bob@Example.com", &["codeowners"], infra, Ok(())),
        // A team owner is satisfied by its members, handles or emails.
        row("@carol", &["codeowners"], infra, Ok(())),
        row("DAVE@example.com", &["codeowners"], infra, Ok(())),
        row(
            "@alice",
            &["codeowners"],
            infra,
            not_eligible(&["@acme/sre", "bob@example.com"]),
        ),
        // Listed teams and users.
        row("@carol", &["@acme/sre"], &["src/a.rs"], Ok(())),
        row("@lead", &["codeowners", "@lead"], &["src/a.rs"], Ok(())),
        row(
            "@bob",
            &["codeowners", "@lead"],
            &["src/a.rs"],
            not_eligible(&["@alice", "@lead"]),
        ),
        // The union of the owners of all changed files.
        row(
            "@alice",
            &["codeowners"],
            &["infra/x.tf", "src/a.rs"],
            Ok(()),
        ),
        // No changed file has an owner: anyone but the requester.
        row("@mallory", &["codeowners"], &["docs/x.md"], Ok(())),
        Row {
            requester: "@mallory",
            ..row(
                "@Mallory",
                &["codeowners"],
                &["docs/x.md"],
                Err(ApproverRefusal::SelfApproval),
            )
        },
        Row {
            with_codeowners: false,
            ..row("@anyone", &["codeowners"], &["src/a.rs"], Ok(()))
        },
        // The requester may not approve their own mission unless the policy allows it.
        Row {
            requester: "@alice",
            ..row(
                "@alice",
                &["codeowners"],
                &["src/a.rs"],
                Err(ApproverRefusal::SelfApproval),
            )
        },
        Row {
            requester: "@alice",
            allow_self_approval: true,
            ..row("@alice", &["codeowners"], &["src/a.rs"], Ok(()))
        },
        // Approvals come from distinct people.
        Row {
            already: &["@carol"],
            ..row(
                "@CAROL",
                &["codeowners"],
                infra,
                Err(ApproverRefusal::AlreadyDecided),
            )
        },
        Row {
            already: &["@carol"],
            ..row("bob@example.com", &["codeowners"], infra, Ok(()))
        },
        // Only people approve: a team handle (listed, configured or merely team-shaped) is
        // refused, so nobody counts twice as themselves and as their team.
        row(
            "@acme/sre",
            &["codeowners"],
            infra,
            Err(ApproverRefusal::TeamIdentity {
                identity: "@acme/sre".into(),
            }),
        ),
        row(
            " ACME/SRE ",
            &["@acme/sre"],
            &["src/a.rs"],
            Err(ApproverRefusal::TeamIdentity {
                identity: "ACME/SRE".into(),
            }),
        ),
        row(
            "@other/team",
            &["codeowners"],
            &["docs/x.md"],
            Err(ApproverRefusal::TeamIdentity {
                identity: "@other/team".into(),
            }),
        ),
        // A requirement naming nobody cannot be met.
        row("@alice", &[], &["src/a.rs"], not_eligible(&[])),
        row(
            "",
            &["codeowners"],
            &["docs/x.md"],
            not_eligible(&[ANYONE_BUT_REQUESTER]),
        ),
    ];
    let mut failures = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let already: Vec<String> = row.already.iter().map(|a| (*a).to_owned()).collect();
        let ctx = ApprovalContext {
            requester: row.requester,
            allow_self_approval: row.allow_self_approval,
            codeowners: row.with_codeowners.then_some(&codeowners),
            teams: &teams,
            already_approved_by: &already,
        };
        let actual = check_approver(row.identity, &requirement(row.approvers, row.paths), &ctx);
        if actual != row.expected {
            failures.push(format!(
                "row {index}: {} for {:?} on {:?}: expected {:?}, got {actual:?}",
                row.identity, row.approvers, row.paths, row.expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn eligible_approvers_for_display() {
    let codeowners = Codeowners::parse(CODEOWNERS);
    let rows: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["codeowners"],
            &["src/a.rs", "infra/x.tf"],
            &["@alice", "@acme/sre", "bob@example.com"],
        ),
        (
            &["codeowners", "@acme/sre", "@ACME/sre"],
            &["infra/x.tf"],
            &["@acme/sre", "bob@example.com"],
        ),
        (&["codeowners"], &["docs/a.md"], &[ANYONE_BUT_REQUESTER]),
        (
            &["@lead", "codeowners"],
            &[],
            &["@lead", ANYONE_BUT_REQUESTER],
        ),
    ];
    for (approvers, paths, expected) in rows {
        assert_eq!(
            eligible_approvers(&requirement(approvers, paths), Some(&codeowners)),
            *expected,
            "{approvers:?} on {paths:?}"
        );
    }
    assert_eq!(
        eligible_approvers(&requirement(&["codeowners"], &["src/a.rs"]), None),
        [ANYONE_BUT_REQUESTER]
    );
}

#[test]
fn refusals_read_well() {
    assert_eq!(
        ApproverRefusal::SelfApproval.to_string(),
        "the requester may not approve their own mission (the policy sets allow_self_approval = false)"
    );
    assert_eq!(
        ApproverRefusal::AlreadyDecided.to_string(),
        "this identity has already approved this gate; approvals must come from distinct people"
    );
    assert_eq!(
        ApproverRefusal::NotEligible {
            eligible: vec!["@alice".to_owned(), "@acme/sre".to_owned()]
        }
        .to_string(),
        "not an eligible approver for this gate; eligible: @alice, @acme/sre"
    );
}

#[test]
fn requirements_come_from_decisions() {
    let policy = flightdeck_policy::Policy::builtin();
    let changes = [flightdeck_policy::ChangedFile::modified("infra/main.tf")];
    let decision = policy.decide(&flightdeck_policy::Action::Publish { changes: &changes });
    let requirement =
        ApprovalRequirement::from_decision(&decision, vec!["infra/main.tf".to_owned()]);
    assert_eq!(requirement.approvers, ["codeowners"]);
    let codeowners = Codeowners::parse(CODEOWNERS);
    assert_eq!(
        eligible_approvers(&requirement, Some(&codeowners)),
        ["@acme/sre", "bob@example.com"]
    );
}
