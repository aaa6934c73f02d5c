//! The documentation stays true to the repository and to the build:
//!
//! - every relative link in the repository's Markdown resolves to a file (and, for a link to a
//!   heading, to a heading) inside the repository, so a clone with nothing beside it has all
//!   its docs;
//! - every command and flag the binary has is documented in `docs/reference/commands.md`, and
//!   every command documented there as available exists;
//! - every event type of `flightdeck-core`'s `EventKind`, with each of its data fields, is
//!   documented in `docs/reference/events.md`, and every event documented as recorded exists.
//!
//! A section whose level-2 heading starts with "Planned" describes what this build does not do
//! yet: commands and events named there must not exist (when they arrive, the doc must move
//! them out of the plan).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Markdown: lines outside code, headings, links
// ---------------------------------------------------------------------------------------------

/// The lines of `text` that are not inside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push((i + 1, line)),
            _ => {}
        }
    }
    lines
}

/// `line` with inline code spans removed (links inside them are text, not links).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A heading line's level and text (`## Foo` → `(2, "Foo")`).
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let text = line[level..].strip_prefix(' ')?;
    Some((level, text.trim()))
}

/// A heading's text as it reads: code ticks and link targets dropped.
fn heading_text(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        let close = rest[start..]
            .find(')')
            .map_or(rest.len(), |c| start + c + 1);
        out.push_str(&rest[..start]);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out.replace(['`', '['], "")
}

/// GitHub's anchor for a heading: lowercase, only letters, digits, `-`, `_` and spaces kept,
/// spaces made `-`.
fn slug(text: &str) -> String {
    heading_text(text)
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file has (duplicates numbered as GitHub numbers them).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some((_, text)) = heading(line) else {
            continue;
        };
        let base = slug(text);
        let count = seen.entry(base.clone()).or_insert(0);
        out.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    out
}

/// The destinations of the inline links, images and reference definitions of a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let trimmed = line.trim_start();
    // `[label]: destination`
    if trimmed.starts_with('[') {
        if let Some(end) = trimmed.find("]:") {
            if let Some(dest) = trimmed[end + 2..].split_whitespace().next() {
                targets.push(dest.trim_matches(['<', '>']).to_string());
            }
        }
    }
    let mut rest = line.as_str();
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inside = after[..end].trim();
        let dest = match inside.strip_prefix('<') {
            Some(angled) => angled.split('>').next().unwrap_or(""),
            None => inside.split_whitespace().next().unwrap_or(""),
        };
        targets.push(dest.to_string());
        rest = &after[end.min(after.len())..];
    }
    targets
}

fn is_external(target: &str) -> bool {
    let scheme = target.split(':').next().unwrap_or("");
    target.contains(':')
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Every Markdown file of the repository outside build output and hidden directories.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else if name.ends_with(".md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn relative_links_resolve_inside_the_repository() {
    let root = repo_root();
    let files = markdown_files(&root);
    for required in [
        "README.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "docs/reference/README.md",
    ] {
        assert!(
            files.contains(&root.join(required)),
            "{required} is missing"
        );
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                checked += 1;
                let at = format!("{shown}:{number}: `{target}`");
                let (path_part, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let path_part = path_part.split('?').next().unwrap_or("");
                let resolved = if path_part.is_empty() {
                    file.clone()
                } else if let Some(from_root) = path_part.strip_prefix('/') {
                    root.join(from_root)
                } else {
                    file.parent().unwrap().join(path_part)
                };
                let Ok(resolved) = resolved.canonicalize() else {
                    problems.push(format!("{at}: no such file"));
                    continue;
                };
                if !resolved.starts_with(&root) {
                    problems.push(format!(
                        "{at}: points outside the repository ({}); a clone does not have it",
                        resolved.display()
                    ));
                    continue;
                }
                let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                    continue;
                };
                if resolved.is_file() && resolved.extension().is_some_and(|e| e == "md") {
                    let known = anchors(&read(&resolved));
                    if !known.contains(anchor) {
                        problems.push(format!("{at}: no heading with anchor `#{anchor}`"));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Reference pages: sections and the "Planned" part
// ---------------------------------------------------------------------------------------------

/// One heading of a reference page and the text under it (up to the next heading of the same
/// or a higher level).
struct Section {
    title: String,
    body: String,
    /// Under a level-2 heading that starts with "Planned".
    planned: bool,
}

fn sections(text: &str) -> Vec<Section> {
    let lines: Vec<&str> = text.lines().collect();
    let mut in_fence = false;
    let mut headings = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if !in_fence {
            if let Some((level, title)) = heading(line) {
                headings.push((i, level, title.to_string()));
            }
        }
    }
    let mut planned = false;
    let mut out = Vec::new();
    for (n, (i, level, title)) in headings.iter().enumerate() {
        if *level <= 2 {
            planned = *level == 2 && title.starts_with("Planned");
        }
        let end = headings[n + 1..]
            .iter()
            .find(|(_, l, _)| l <= level)
            .map_or(lines.len(), |(j, _, _)| *j);
        out.push(Section {
            title: heading_text(title).trim().to_string(),
            body: lines[*i + 1..end].join("\n"),
            planned,
        });
    }
    out
}

fn reference(page: &str) -> String {
    read(&repo_root().join("docs/reference").join(page))
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

fn help(path: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(path)
        .arg("--help")
        .env_remove("FLIGHTDECK_DATA_DIR")
        .env_remove("FLIGHTDECK_CONFIG")
        .env_remove("FLIGHTDECK_DATABASE_URL")
        .env_remove("FLIGHTDECK_USER")
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "flightdeck {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The entries of a `--help` section (`Commands:`, `Options:`): each entry's first line (the
/// section ends at the next line that is not indented; descriptions are indented deeper).
fn help_section<'a>(help: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = help.lines().skip_while(|l| l.trim() != name);
    lines.next();
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| {
            let indent = l.len() - l.trim_start().len();
            indent == 2 || (l.trim_start().starts_with("--") && indent <= 6)
        })
        .collect()
}

/// The subcommands a help text lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help_section(help, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags a help text lists (without `--help` and `--version`).
fn long_flags(help: &str) -> BTreeSet<String> {
    help_section(help, "Options:")
        .iter()
        .filter_map(|l| {
            l.split(|c: char| c.is_whitespace() || c == ',')
                .find(|w| w.starts_with("--"))
        })
        .map(|w| w.split(['=', '<', '[']).next().unwrap_or(w).to_string())
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// Every runnable command (`["audit", "verify"]`, …) and its help text.
fn commands() -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut queue: Vec<Vec<String>> = subcommands(&help(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let children = subcommands(&text);
        if children.is_empty() {
            found.push((path, text));
        } else {
            for child in children {
                let mut longer = path.clone();
                longer.push(child);
                queue.push(longer);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_command_and_flag_is_in_the_command_reference() {
    let page = reference("commands.md");
    let sections = sections(&page);
    let top = help(&[]);
    let global = long_flags(&top);
    assert!(
        global.contains("--json"),
        "no global flags parsed from:\n{top}"
    );
    let commands = commands();
    assert!(
        commands.len() > 15,
        "only {} commands parsed",
        commands.len()
    );
    let mut problems = Vec::new();

    // Global flags and their environment variables, in the "Global flags" section.
    let global_section = sections
        .iter()
        .find(|s| s.title == "Global flags")
        .map_or("", |s| s.body.as_str());
    if global_section.is_empty() {
        problems.push("commands.md has no \"Global flags\" section".to_string());
    }
    for flag in &global {
        if !global_section.contains(&format!("`{flag}")) {
            problems.push(format!("global flag {flag} is not in \"Global flags\""));
        }
    }
    for env in top.split("[env: ").skip(1) {
        let name = env.split(['=', ']']).next().unwrap_or("");
        if !global_section.contains(name) {
            problems.push(format!(
                "environment variable {name} is not in \"Global flags\""
            ));
        }
    }

    // Each command: a section titled `flightdeck <command>`, naming each of its flags.
    let names: BTreeSet<String> = commands
        .iter()
        .map(|(path, _)| format!("flightdeck {}", path.join(" ")))
        .collect();
    for (path, text) in &commands {
        let title = format!("flightdeck {}", path.join(" "));
        let Some(section) = sections.iter().find(|s| s.title == title && !s.planned) else {
            problems.push(format!("`{title}` has no section in commands.md"));
            continue;
        };
        for flag in long_flags(text).difference(&global) {
            if !section.body.contains(&format!("`{flag}")) {
                problems.push(format!("`{title}`: flag {flag} is not documented"));
            }
        }
    }
    // Each section about a command: the command exists, unless it is a plan, and then it
    // must not.
    for section in sections
        .iter()
        .filter(|s| s.title.starts_with("flightdeck "))
    {
        let exists = names.contains(&section.title);
        if section.planned && exists {
            problems.push(format!(
                "`{}` is documented as planned, but this build has it",
                section.title
            ));
        }
        if !section.planned && !exists {
            problems.push(format!(
                "`{}` is documented, but this build has no such command",
                section.title
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/reference/commands.md:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// `EventKind`'s wire names and, for each, the fields of its payload struct, read from
/// `crates/flightdeck-core/src/event.rs`.
fn event_types() -> BTreeMap<String, Vec<String>> {
    let source = read(&repo_root().join("crates/flightdeck-core/src/event.rs"));
    let body = source
        .split("pub enum EventKind {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("event.rs has no `pub enum EventKind`");
    let mut types = BTreeMap::new();
    let mut pending: Option<String> = None;
    for line in body.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("#[serde(rename = \"")
            .and_then(|r| r.split('"').next())
        {
            pending = Some(name.to_string());
        } else if let (Some(name), Some(open)) = (pending.take(), line.find('(')) {
            let payload = line[open + 1..].trim_end_matches([')', ',']);
            types.insert(name, struct_fields(&source, payload));
        }
    }
    types
}

/// The field names of `pub struct NAME { … }` in `source`.
fn struct_fields(source: &str, name: &str) -> Vec<String> {
    let body = source
        .split(&format!("pub struct {name} {{"))
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_else(|| panic!("event.rs has no `pub struct {name}`"));
    // A field's wire name: its own, or the `#[serde(rename = "…")]` just above it.
    let mut fields = Vec::new();
    let mut renamed: Option<String> = None;
    for line in body.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#[serde(rename = \"") {
            renamed = rest.split('"').next().map(str::to_string);
        } else if let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split(':').next()) {
            fields.push(renamed.take().unwrap_or_else(|| field.to_string()));
        }
    }
    fields
}

#[test]
fn every_event_type_and_field_is_in_the_event_reference() {
    let types = event_types();
    assert!(
        types.len() > 20 && types.contains_key("mission.created"),
        "event types not parsed: {types:?}"
    );
    let page = reference("events.md");
    let sections = sections(&page);
    let mut problems = Vec::new();
    for (name, fields) in &types {
        let Some(section) = sections.iter().find(|s| &s.title == name && !s.planned) else {
            problems.push(format!("`{name}` has no section in events.md"));
            continue;
        };
        for field in fields {
            if !section.body.contains(&format!("`{field}`")) {
                problems.push(format!("`{name}`: data field `{field}` is not documented"));
            }
        }
    }
    let looks_like_type = |t: &str| {
        t.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
        })
    };
    for section in sections.iter().filter(|s| looks_like_type(&s.title)) {
        let exists = types.contains_key(&section.title);
        if section.planned && exists {
            problems.push(format!(
                "`{}` is documented as planned, but this build records it",
                section.title
            ));
        }
        if !section.planned && !exists {
            problems.push(format!(
                "`{}` is documented, but this build has no such event",
                section.title
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/reference/events.md:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The checks themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn the_markdown_helpers_read_what_github_renders() {
    assert_eq!(
        link_targets("see [a](x.md#b \"t\"), ![i](<img 1.png>) and `[c](not-a-link)`"),
        ["x.md#b", "img 1.png"]
    );
    assert_eq!(link_targets("[ref]: ../y.md"), ["../y.md"]);
    assert_eq!(
        slug("`[pricing.\"PROVIDER:MODEL\"]`"),
        "pricingprovidermodel"
    );
    assert_eq!(
        slug("Planned (wave 2): not in this build yet"),
        "planned-wave-2-not-in-this-build-yet"
    );
    assert_eq!(slug("`flightdeck audit verify`"), "flightdeck-audit-verify");
    assert!(is_external("https://example.com") && !is_external("docs/x.md"));
    let page = "# T\n## `flightdeck a`\nbody `--x`\n```\n## not a heading\n```\n## Planned (wave 2)\n### `flightdeck b`\n";
    let found = sections(page);
    let titles: Vec<(&str, bool)> = found
        .iter()
        .map(|s| (s.title.as_str(), s.planned))
        .collect();
    assert_eq!(
        titles,
        [
            ("T", false),
            ("flightdeck a", false),
            ("Planned (wave 2)", true),
            ("flightdeck b", true)
        ]
    );
    assert!(found[1].body.contains("`--x`") && found[1].body.contains("not a heading"));
    let help = "Usage: x\n\nCommands:\n  run   Run it\n          more\n  help  Print\n\nOptions:\n      --repo <DIR>\n          The repo --not-a-flag\n\n  -p, --param <KEY=VALUE>\n  -h, --help\nMore:\n  --after\n";
    assert_eq!(subcommands(help), ["run"]);
    assert_eq!(
        long_flags(help).into_iter().collect::<Vec<_>>(),
        ["--param", "--repo"]
    );
}
