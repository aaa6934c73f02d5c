//! People, not strings: identities resolved to persons, and approvals decided between
//! persons.

use std::collections::BTreeMap;

use flightdeck_policy::{
    ApprovalContext, ApprovalRequirement, ApproverRefusal, Codeowners, IdentityChannel, People,
    PeopleError, Person, Teams,
};

use IdentityChannel::{Cli, Github, Slack, SlackEmail, Token, Web};

const CODEOWNERS: &str = "\
* @alice
/infra/ @acme/sre
/docs/ erin@acme.com
/billing/ carol@acme.com @dave
/vendor/
/legacy/ zed@outside.com
";

fn person(
    key: &str,
    handle: &str,
    emails: &[&str],
    github: Option<&str>,
    slack: Option<&str>,
) -> Person {
    Person {
        key: key.to_owned(),
        handle: handle.to_owned(),
        emails: emails.iter().map(|e| (*e).to_owned()).collect(),
        github: github.map(str::to_owned),
        slack: slack.map(str::to_owned),
        oidc: None,
    }
}

fn directory() -> People {
    People::new(vec![
        person(
            "alice",
            "@alice",
            &["alice@acme.com"],
            Some("alice-gh"),
            Some("U0123ABCD"),
        ),
        person(
            "bob",
            "bob",
            &["Bob@Acme.com", "robert@acme.com"],
            Some("@Bobby"),
            None,
        ),
        person(
            "carol",
            "@Carol",
            &["carol@acme.com"],
            None,
            Some("U0CAROL"),
        ),
        person("dave", "@dave", &["dave@acme.com"], None, None),
        person("erin", "@erin", &["erin@acme.com"], None, None),
    ])
    .unwrap()
}

fn teams() -> Teams {
    Teams::new(BTreeMap::from([
        (
            "@acme/platform".to_owned(),
            vec!["@alice".to_owned(), "dave@acme.com".to_owned()],
        ),
        ("@acme/sre".to_owned(), vec!["bob@acme.com".to_owned()]),
    ]))
}

#[derive(Clone, Copy)]
enum Directory {
    Configured,
    Empty,
}

struct Row {
    approver: &'static str,
    channel: IdentityChannel,
    requester: &'static str,
    approvers: &'static [&'static str],
    paths: &'static [&'static str],
    already: &'static [&'static str],
    allow_self_approval: bool,
    allow_unknown_approvers: bool,
    directory: Directory,
    /// Allowed: the handle recorded and how the approver was resolved.
    expected: Result<(&'static str, &'static str), ApproverRefusal>,
}

/// `approver` on `channel` approves a change to `paths` owned per CODEOWNERS, for a
/// mission `@requester` asked for.
const fn row(
    approver: &'static str,
    channel: IdentityChannel,
    paths: &'static [&'static str],
    expected: Result<(&'static str, &'static str), ApproverRefusal>,
) -> Row {
    Row {
        approver,
        channel,
        requester: "@requester",
        approvers: &["codeowners"],
        paths,
        already: &[],
        allow_self_approval: false,
        allow_unknown_approvers: false,
        directory: Directory::Configured,
        expected,
    }
}

fn not_eligible(eligible: &[&str]) -> Result<(&'static str, &'static str), ApproverRefusal> {
    Err(ApproverRefusal::NotEligible {
        eligible: eligible.iter().map(|e| (*e).to_owned()).collect(),
    })
}

fn unknown(identity: &str) -> Result<(&'static str, &'static str), ApproverRefusal> {
    Err(ApproverRefusal::UnknownApprover {
        identity: identity.to_owned(),
    })
}

const SELF: Result<(&str, &str), ApproverRefusal> = Err(ApproverRefusal::SelfApproval);
const ALREADY: Result<(&str, &str), ApproverRefusal> = Err(ApproverRefusal::AlreadyDecided);

const SRC: &[&str] = &["src/a.rs"];
const INFRA: &[&str] = &["infra/main.tf"];
const DOCS: &[&str] = &["docs/guide.md"];
const BILLING: &[&str] = &["billing/invoice.rs"];
const VENDOR: &[&str] = &["vendor/lib.c"];
const LEGACY: &[&str] = &["legacy/old.c"];

#[test]
fn approvals_between_people() {
    let rows = vec![
        // Every name of a person is that person, on its channel.
        row("@alice", Cli, SRC, Ok(("@alice", "people.handle"))),
        row(" Alice ", Web, SRC, Ok(("@alice", "people.handle"))),
        row("ALICE@acme.com", Cli, SRC, Ok(("@alice", "people.email"))),
        row("U0123ABCD", Slack, SRC, Ok(("@alice", "people.slack"))),
        row("Alice-GH", Github, SRC, Ok(("@alice", "people.github"))),
        row("@alice-gh", Github, SRC, Ok(("@alice", "people.github"))),
        row("github:alice-gh", Cli, SRC, Ok(("@alice", "people.github"))),
        row(
            "slack:U0123ABCD",
            Token,
            SRC,
            Ok(("@alice", "people.slack")),
        ),
        // An address Slack vouched for names a person by their emails, case-insensitively;
        // never a handle, a login or a Slack id.
        row(
            "Alice@ACME.com",
            SlackEmail,
            SRC,
            Ok(("@alice", "slack.email")),
        ),
        row("@alice", SlackEmail, SRC, unknown("@alice")),
        row("U0123ABCD", SlackEmail, SRC, unknown("U0123ABCD")),
        Row {
            requester: "@carol",
            ..row("carol@acme.com", SlackEmail, BILLING, SELF)
        },
        // Slack ids compare exactly; a GitHub login is not a handle.
        row("u0123abcd", Slack, SRC, unknown("u0123abcd")),
        row("alice-gh", Cli, SRC, unknown("alice-gh")),
        row("@alice", Slack, SRC, unknown("@alice")),
        // One person cannot approve their own mission under another of their names.
        Row {
            requester: "carol@acme.com",
            ..row("@carol", Cli, BILLING, SELF)
        },
        Row {
            requester: "@carol",
            ..row("U0CAROL", Slack, BILLING, SELF)
        },
        Row {
            requester: "github:alice-gh",
            ..row("alice@acme.com", Web, SRC, SELF)
        },
        Row {
            requester: "carol@acme.com",
            allow_self_approval: true,
            ..row("@carol", Cli, BILLING, Ok(("@carol", "people.handle")))
        },
        // An unknown identity may request, but approves nothing unless the policy says so.
        Row {
            requester: "zed@outside.com",
            ..row("@alice", Cli, SRC, Ok(("@alice", "people.handle")))
        },
        row("@mallory", Cli, VENDOR, unknown("@mallory")),
        row("zed@outside.com", Cli, LEGACY, unknown("zed@outside.com")),
        Row {
            allow_unknown_approvers: true,
            ..row("@mallory", Cli, VENDOR, Ok(("@mallory", "unknown")))
        },
        Row {
            allow_unknown_approvers: true,
            ..row("@mallory", Cli, DOCS, not_eligible(&["erin@acme.com"]))
        },
        Row {
            allow_unknown_approvers: true,
            ..row(
                "ZED@outside.com",
                Cli,
                LEGACY,
                Ok(("zed@outside.com", "unknown")),
            )
        },
        Row {
            allow_unknown_approvers: true,
            ..row("U999", Slack, VENDOR, Ok(("@u999", "unknown")))
        },
        Row {
            allow_unknown_approvers: true,
            requester: "@mallory",
            ..row("@Mallory", Cli, VENDOR, SELF)
        },
        // Teams in terms of people: a member listed by email is the person.
        row("@bob", Cli, INFRA, Ok(("@bob", "people.handle"))),
        row("robert@acme.com", Cli, INFRA, Ok(("@bob", "people.email"))),
        row("bobby", Github, INFRA, Ok(("@bob", "people.github"))),
        row("@alice", Cli, INFRA, not_eligible(&["@acme/sre"])),
        Row {
            approvers: &["@acme/platform"],
            ..row("@dave", Cli, SRC, Ok(("@dave", "people.handle")))
        },
        Row {
            approvers: &["@acme/platform"],
            ..row("@erin", Cli, SRC, not_eligible(&["@acme/platform"]))
        },
        // A CODEOWNERS owner named by email is the person with that email.
        row("@erin", Cli, DOCS, Ok(("@erin", "people.handle"))),
        row("U0CAROL", Slack, DOCS, not_eligible(&["erin@acme.com"])),
        row("@carol", Cli, BILLING, Ok(("@carol", "people.handle"))),
        row("dave@acme.com", Cli, BILLING, Ok(("@dave", "people.email"))),
        // Approvers listed in the policy, by any name.
        Row {
            approvers: &["@alice"],
            ..row("alice@acme.com", Cli, SRC, Ok(("@alice", "people.email")))
        },
        Row {
            approvers: &["bob@acme.com"],
            ..row("@bob", Cli, SRC, Ok(("@bob", "people.handle")))
        },
        // Approvals come from distinct people, whatever names they used.
        Row {
            already: &["bob@acme.com"],
            ..row("@bob", Cli, INFRA, ALREADY)
        },
        Row {
            already: &["@bob"],
            ..row("bobby", Github, INFRA, ALREADY)
        },
        Row {
            already: &["@alice"],
            ..row("@bob", Cli, INFRA, Ok(("@bob", "people.handle")))
        },
        // Only people approve.
        row(
            "@acme/sre",
            Cli,
            INFRA,
            Err(ApproverRefusal::TeamIdentity {
                identity: "@acme/sre".to_owned(),
            }),
        ),
        row("", Cli, VENDOR, not_eligible(&["anyone but the requester"])),
        // No [people]: every identity is its own person, as before, and none is unknown.
        Row {
            directory: Directory::Empty,
            ..row("@mallory", Cli, VENDOR, Ok(("@mallory", "identity")))
        },
        Row {
            directory: Directory::Empty,
            requester: "carol@acme.com",
            ..row("@carol", Cli, VENDOR, Ok(("@carol", "identity")))
        },
        Row {
            directory: Directory::Empty,
            requester: "carol@acme.com",
            ..row("Carol@Acme.com", Cli, VENDOR, SELF)
        },
        Row {
            directory: Directory::Empty,
            ..row("bob@acme.com", Cli, INFRA, Ok(("bob@acme.com", "identity")))
        },
        Row {
            directory: Directory::Empty,
            ..row("@bob", Cli, INFRA, not_eligible(&["@acme/sre"]))
        },
        Row {
            directory: Directory::Empty,
            ..row("U0123ABCD", Slack, VENDOR, Ok(("@u0123abcd", "identity")))
        },
    ];
    assert!(rows.len() >= 30);

    let configured = directory();
    let empty = People::default();
    let codeowners = Codeowners::parse(CODEOWNERS);
    assert!(
        codeowners.warnings().is_empty(),
        "{:?}",
        codeowners.warnings()
    );
    let teams = teams();
    let mut failures = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let people = match row.directory {
            Directory::Configured => &configured,
            Directory::Empty => &empty,
        };
        let already: Vec<String> = row.already.iter().map(|a| (*a).to_owned()).collect();
        let ctx = ApprovalContext {
            requester: row.requester,
            allow_self_approval: row.allow_self_approval,
            codeowners: Some(&codeowners),
            teams: &teams,
            already_approved_by: &already,
        };
        let requirement = ApprovalRequirement {
            approvers: row.approvers.iter().map(|a| (*a).to_owned()).collect(),
            changed_paths: row.paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        let actual = people.check_approver(
            row.approver,
            row.channel,
            &requirement,
            &ctx,
            row.allow_unknown_approvers,
        );
        let actual_short = actual
            .as_ref()
            .map(|resolved| (resolved.handle.as_str(), resolved.resolved_by))
            .map_err(Clone::clone);
        if actual_short != row.expected {
            failures.push(format!(
                "row {index}: {:?} on {:?} for {:?} on {:?}: expected {:?}, got {actual_short:?}",
                row.approver, row.channel, row.approvers, row.paths, row.expected
            ));
        }
        if let Ok(resolved) = &actual {
            assert_eq!(resolved.channel_user, row.approver.trim(), "row {index}");
        }
        // With no people configured this is exactly the string-based check.
        if matches!(row.directory, Directory::Empty) {
            assert_eq!(
                flightdeck_policy::check_approver(row.approver, &requirement, &ctx),
                actual.map(|_| ()),
                "row {index}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn resolution_records_the_channel_user_and_how() {
    let people = directory();
    let resolved = people.resolve(" U0123ABCD ", Slack);
    assert_eq!(resolved.handle, "@alice");
    assert_eq!(resolved.resolved_by, "people.slack");
    assert_eq!(resolved.channel_user, "U0123ABCD");
    assert_eq!(
        resolved.person.as_ref().map(|p| p.key.as_str()),
        Some("alice")
    );
    assert!(!resolved.is_unknown());
    assert!(resolved.is_same_person(&people.resolve("alice@ACME.com", Cli)));
    assert!(!resolved.is_same_person(&people.resolve("@bob", Cli)));

    let stranger = people.resolve("Mallory", Cli);
    assert_eq!(
        (
            stranger.handle.as_str(),
            stranger.resolved_by,
            stranger.channel_user.as_str()
        ),
        ("@mallory", "unknown", "Mallory")
    );
    assert!(stranger.is_unknown() && stranger.person.is_none());
    // An unknown identity is never a configured person, even if it is spelled like one.
    assert!(!people
        .resolve("@alice", Slack)
        .is_same_person(&people.resolve("@alice", Cli)));

    let nobody = People::default().resolve("Alice@Acme.com", Token);
    assert_eq!(
        (nobody.handle.as_str(), nobody.resolved_by),
        ("alice@acme.com", "identity")
    );
    assert!(!nobody.is_unknown());
}

#[test]
fn names_are_normalised() {
    let people = directory();
    let bob = people.persons().get(1).unwrap();
    assert_eq!(bob.handle, "@bob");
    assert_eq!(bob.emails, ["bob@acme.com", "robert@acme.com"]);
    assert_eq!(bob.github.as_deref(), Some("bobby"));
    assert_eq!(people.persons().get(2).unwrap().handle, "@carol");
    assert!(!people.is_empty());
    assert!(People::new(Vec::new()).unwrap().is_empty());
}

#[test]
fn people_config_deserialises_per_person() {
    let person: Person = toml::from_str(
        "handle = \"@alice\"\nemails = [\"alice@acme.com\"]\ngithub = \"alice-gh\"\nslack = \"U0123ABCD\"\n",
    )
    .unwrap();
    assert_eq!(person.key, "");
    assert_eq!(person.github.as_deref(), Some("alice-gh"));
    let typo = toml::from_str::<Person>("handle = \"@a\"\nemail = \"a@b.c\"\n");
    assert!(typo.is_err());
}

#[test]
fn directories_that_are_refused() {
    let alice = || {
        person(
            "alice",
            "@alice",
            &["alice@acme.com"],
            Some("alice-gh"),
            Some("U1"),
        )
    };
    let rows: Vec<(Vec<Person>, PeopleError, &str)> = vec![
        (
            vec![person(" ", "@x", &[], None, None)],
            PeopleError::MissingKey { position: 1 },
            "people: person #1 has no key",
        ),
        (
            vec![alice(), person("alice", "@other", &[], None, None)],
            PeopleError::DuplicateKey {
                key: "alice".to_owned(),
            },
            "people.alice: the key is used by two persons",
        ),
        (
            vec![alice(), person("al", "@Alice", &[], None, None)],
            PeopleError::Duplicate {
                field: "handle",
                value: "@alice".to_owned(),
                first: "alice".to_owned(),
                second: "al".to_owned(),
            },
            "people.al.handle: `@alice` already belongs to people.alice; one name must name one person",
        ),
        (
            vec![alice(), person("al", "@al", &["ALICE@acme.com"], None, None)],
            PeopleError::Duplicate {
                field: "emails",
                value: "alice@acme.com".to_owned(),
                first: "alice".to_owned(),
                second: "al".to_owned(),
            },
            "people.al.emails: `alice@acme.com` already belongs to people.alice; one name must name one person",
        ),
        (
            vec![alice(), person("al", "@al", &[], Some("Alice-GH"), None)],
            PeopleError::Duplicate {
                field: "github",
                value: "alice-gh".to_owned(),
                first: "alice".to_owned(),
                second: "al".to_owned(),
            },
            "people.al.github: `alice-gh` already belongs to people.alice; one name must name one person",
        ),
        (
            vec![alice(), person("al", "@al", &[], None, Some("U1"))],
            PeopleError::Duplicate {
                field: "slack",
                value: "U1".to_owned(),
                first: "alice".to_owned(),
                second: "al".to_owned(),
            },
            "people.al.slack: `U1` already belongs to people.alice; one name must name one person",
        ),
        (
            vec![person("x", "", &[], None, None)],
            invalid("x", "handle", "", "is not a handle (expected @name, as in \"@alice\")"),
            "people.x.handle: `` is not a handle (expected @name, as in \"@alice\")",
        ),
        (
            vec![person("x", "@acme/team", &[], None, None)],
            invalid("x", "handle", "@acme/team", "is not a handle (expected @name, as in \"@alice\")"),
            "people.x.handle: `@acme/team` is not a handle (expected @name, as in \"@alice\")",
        ),
        (
            vec![person("x", "x@acme.com", &[], None, None)],
            invalid("x", "handle", "x@acme.com", "is not a handle (expected @name, as in \"@alice\")"),
            "people.x.handle: `x@acme.com` is not a handle (expected @name, as in \"@alice\")",
        ),
        (
            vec![person("x", "@a b", &[], None, None)],
            invalid("x", "handle", "@a b", "is not a handle (expected @name, as in \"@alice\")"),
            "people.x.handle: `@a b` is not a handle (expected @name, as in \"@alice\")",
        ),
        (
            vec![person("x", "@x", &["x.acme.com"], None, None)],
            invalid("x", "emails", "x.acme.com", "is not an email (expected name@domain)"),
            "people.x.emails: `x.acme.com` is not an email (expected name@domain)",
        ),
        (
            vec![person("x", "@x", &["x@"], None, None)],
            invalid("x", "emails", "x@", "is not an email (expected name@domain)"),
            "people.x.emails: `x@` is not an email (expected name@domain)",
        ),
        (
            vec![person("x", "@x", &["a@b@c"], None, None)],
            invalid("x", "emails", "a@b@c", "is not an email (expected name@domain)"),
            "people.x.emails: `a@b@c` is not an email (expected name@domain)",
        ),
        (
            vec![person("x", "@x", &[], Some("a b"), None)],
            invalid("x", "github", "a b", "is not a GitHub login (letters, digits, `-` and `_`)"),
            "people.x.github: `a b` is not a GitHub login (letters, digits, `-` and `_`)",
        ),
        (
            vec![person("x", "@x", &[], Some(""), None)],
            invalid("x", "github", "", "is not a GitHub login (letters, digits, `-` and `_`)"),
            "people.x.github: `` is not a GitHub login (letters, digits, `-` and `_`)",
        ),
        (
            vec![person("x", "@x", &[], None, Some("U-1"))],
            invalid("x", "slack", "U-1", "is not a Slack user id (letters and digits, as in \"U0123ABCD\")"),
            "people.x.slack: `U-1` is not a Slack user id (letters and digits, as in \"U0123ABCD\")",
        ),
    ];
    let mut failures = Vec::new();
    for (persons, expected, message) in rows {
        match People::new(persons) {
            Err(actual) if actual == expected && actual.to_string() == message => {}
            other => failures.push(format!("expected {expected:?} ({message}), got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // One address listed twice on one person is not a conflict.
    assert!(People::new(vec![person("x", "@x", &["x@a.b", "X@a.b"], None, None)]).is_ok());
}

fn invalid(key: &str, field: &'static str, value: &str, reason: &'static str) -> PeopleError {
    PeopleError::Invalid {
        key: key.to_owned(),
        field,
        value: value.to_owned(),
        reason,
    }
}

#[test]
fn unknown_approvers_are_told_what_to_do() {
    assert_eq!(
        ApproverRefusal::UnknownApprover {
            identity: "U999".to_owned()
        }
        .to_string(),
        "`U999` is not one of the people configured for this installation, and the policy does not let unknown identities approve (allow_unknown_approvers = false); add them under [people] in the installation config, with this name as their handle, email, github or slack"
    );
}

/// A mission's requester (as recorded: a handle) is in the teams that list any of their
/// names; with no people configured, names compare as canonical identities.
#[test]
fn the_teams_of_a_requester_are_found_by_any_of_their_names() {
    let teams = teams();
    let people = directory();
    assert_eq!(people.teams_of(&teams, "@alice"), ["@acme/platform"]);
    assert_eq!(people.teams_of(&teams, "@dave"), ["@acme/platform"]);
    assert_eq!(people.teams_of(&teams, "robert@acme.com"), ["@acme/sre"]);
    assert!(people.teams_of(&teams, "@carol").is_empty());
    assert!(people.teams_of(&teams, "@nobody").is_empty());
    let nobody = People::default();
    assert_eq!(nobody.teams_of(&teams, "Alice"), ["@acme/platform"]);
    assert_eq!(nobody.teams_of(&teams, "DAVE@acme.com"), ["@acme/platform"]);
    assert!(nobody.teams_of(&teams, "@dave").is_empty());
}
