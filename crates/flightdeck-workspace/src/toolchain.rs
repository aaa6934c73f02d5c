//! Toolchain pins: which tool versions a repository asks for, which versions a workspace
//! actually has, and whether they agree.
//!
//! [`read_pins`] reads the pin files at a repository root. The engine runs [`probe_script`]
//! inside the sandbox or container (where the mission's commands will run, not on the host),
//! hands its output to [`parse_probe`], and records [`check`]'s statuses in
//! `workspace.provisioned`, emitting `workspace.drift` for each status that is not `ok`.
//!
//! # Precedence
//!
//! When several files pin the same tool, the more specific file wins. From strongest to
//! weakest:
//!
//! 1. `rust-toolchain.toml`, then the legacy `rust-toolchain` (rustup's own files);
//! 2. `.nvmrc`, then `.node-version`;
//! 3. `.python-version`;
//! 4. `go.mod` (its `toolchain` line over its `go` line);
//! 5. `package.json` `packageManager` (corepack's exact pin);
//! 6. `.mise.toml`, then `mise.toml` (mise's own order: the dotted file overrides);
//! 7. `.tool-versions` (mise reads it too, below its own files);
//! 8. `package.json` `engines` (ranges, the loosest statement).
//!
//! Within one file the first mention of a tool wins. Output is sorted by tool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One tool version a repository asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Our tool name: `rust`, `node`, `python`, `go`, `npm`, `pnpm`, `yarn`, or as written.
    pub tool: String,
    /// The version, channel or range as written (a leading `v` dropped from node versions).
    pub pinned: String,
    /// The file it came from, relative to the repository root.
    pub source: String,
}

/// A pin next to the version the workspace has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolStatus {
    pub tool: String,
    pub pinned: String,
    /// `None` when the tool is missing or its version could not be read.
    pub found: Option<String>,
    pub source: String,
    pub ok: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolchainError {
    #[error("{file}: {detail}")]
    Invalid { file: String, detail: String },
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(file: &str, detail: impl Into<String>) -> ToolchainError {
    ToolchainError::Invalid {
        file: file.to_owned(),
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading pins
// ---------------------------------------------------------------------------------------------

/// Reads every pin file at `root`. A missing file pins nothing; a malformed one is an error.
pub fn read_pins(root: &Path) -> Result<Vec<Pin>, ToolchainError> {
    // Sources in precedence order, strongest first; the first pin of a tool wins.
    let mut found: Vec<Pin> = Vec::new();
    if let Some(text) = read_optional(root, "rust-toolchain.toml")? {
        found.extend(rust_toolchain_toml("rust-toolchain.toml", &text)?);
    }
    if let Some(text) = read_optional(root, "rust-toolchain")? {
        found.extend(rust_toolchain_legacy(&text)?);
    }
    for file in [".nvmrc", ".node-version"] {
        if let Some(text) = read_optional(root, file)? {
            found.push(node_version_file(file, &text)?);
        }
    }
    if let Some(text) = read_optional(root, ".python-version")? {
        found.push(python_version_file(&text)?);
    }
    if let Some(text) = read_optional(root, "go.mod")? {
        found.extend(go_mod(&text)?);
    }
    let package = match read_optional(root, "package.json")? {
        Some(text) => Some(package_json(&text)?),
        None => None,
    };
    if let Some((_, manager)) = &package {
        found.extend(manager.iter().cloned());
    }
    for file in [".mise.toml", "mise.toml"] {
        if let Some(text) = read_optional(root, file)? {
            found.extend(mise_toml(file, &text)?);
        }
    }
    if let Some(text) = read_optional(root, ".tool-versions")? {
        found.extend(tool_versions(&text)?);
    }
    if let Some((engines, _)) = package {
        found.extend(engines);
    }

    let mut winners: BTreeMap<String, Pin> = BTreeMap::new();
    for pin in found {
        winners.entry(pin.tool.clone()).or_insert(pin);
    }
    Ok(winners.into_values().collect())
}

fn read_optional(root: &Path, file: &str) -> Result<Option<String>, ToolchainError> {
    match crate::read_repo_file(&root.join(file), 1024 * 1024) {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| invalid(file, "not valid UTF-8")),
        Ok(None) => Ok(None),
        Err(source) => Err(ToolchainError::Io {
            file: file.to_owned(),
            source,
        }),
    }
}

fn pin(tool: &str, pinned: &str, source: &str) -> Pin {
    Pin {
        tool: tool.to_owned(),
        pinned: pinned.to_owned(),
        source: source.to_owned(),
    }
}

/// asdf plugin names (also accepted by mise) to our tool names.
fn tool_name(name: &str) -> &str {
    match name {
        "nodejs" => "node",
        "golang" => "go",
        other => other,
    }
}

/// Lines with `#` comments and surrounding blanks removed, keeping 1-based line numbers.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.split('#').next().unwrap_or("").trim();
        (!line.is_empty()).then_some((i + 1, line))
    })
}

/// A TOML syntax error as `invalid TOML at line L, column C: message`, on one line.
fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> ToolchainError {
    let message = error.message().lines().collect::<Vec<_>>().join("; ");
    // toml 0.8 gives no message when the text ends where a value should be.
    let message = if message.trim().is_empty() {
        "the file ends where a value is expected (a `key =` with nothing after it?)".to_string()
    } else {
        message
    };
    let Some(span) = error.span() else {
        return invalid(file, format!("invalid TOML: {message}"));
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    invalid(
        file,
        format!("invalid TOML at line {line}, column {column}: {message}"),
    )
}

fn rust_toolchain_toml(file: &str, text: &str) -> Result<Option<Pin>, ToolchainError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let Some(section) = doc.get("toolchain") else {
        return Err(invalid(file, "missing the `[toolchain]` table"));
    };
    let Some(section) = section.as_table() else {
        return Err(invalid(file, "`toolchain` must be a table"));
    };
    match section.get("channel") {
        Some(toml::Value::String(channel)) if !channel.trim().is_empty() => {
            Ok(Some(pin("rust", channel.trim(), file)))
        }
        Some(toml::Value::String(_)) => Err(invalid(file, "`toolchain.channel` is empty")),
        Some(_) => Err(invalid(file, "`toolchain.channel` must be a string")),
        // A custom toolchain by path names no version we could compare.
        None if section.contains_key("path") => Ok(None),
        None => Err(invalid(
            file,
            "`toolchain.channel` is missing (and no `toolchain.path`)",
        )),
    }
}

fn rust_toolchain_legacy(text: &str) -> Result<Option<Pin>, ToolchainError> {
    const FILE: &str = "rust-toolchain";
    // rustup reads the legacy file as TOML when it has a table, else as one bare channel.
    if text.lines().any(|l| l.trim_start().starts_with('[')) {
        return rust_toolchain_toml(FILE, text);
    }
    let mut lines = content_lines(text);
    let Some((_, channel)) = lines.next() else {
        return Err(invalid(FILE, "no channel (the file is empty)"));
    };
    if let Some((line, _)) = lines.next() {
        return Err(invalid(
            FILE,
            format!("line {line}: a bare channel file holds one line"),
        ));
    }
    if channel.contains(char::is_whitespace) {
        return Err(invalid(
            FILE,
            format!("channel `{channel}` contains spaces"),
        ));
    }
    Ok(Some(pin("rust", channel, FILE)))
}

/// `.nvmrc` / `.node-version`: the first non-comment line, `v` dropped before a digit.
fn node_version_file(file: &str, text: &str) -> Result<Pin, ToolchainError> {
    let Some((line, version)) = content_lines(text).next() else {
        return Err(invalid(file, "no version (the file is empty)"));
    };
    if version.contains(char::is_whitespace) {
        return Err(invalid(
            file,
            format!("line {line}: version `{version}` contains spaces"),
        ));
    }
    Ok(pin("node", strip_v(version), file))
}

fn strip_v(version: &str) -> &str {
    match version.strip_prefix(['v', 'V']) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => version,
    }
}

/// `.python-version`: pyenv allows several versions (separated by lines or spaces); the first
/// is the one `python` runs.
fn python_version_file(text: &str) -> Result<Pin, ToolchainError> {
    const FILE: &str = ".python-version";
    let first = content_lines(text).find_map(|(_, line)| line.split_whitespace().next());
    let Some(version) = first else {
        return Err(invalid(FILE, "no version (the file is empty)"));
    };
    Ok(pin("python", version, FILE))
}

/// A pattern written in this file; the tests exercise every one, so it cannot fail at run time.
#[allow(clippy::expect_used)]
fn constant_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant pattern")
}

static GO_VERSION: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"^1(\.\d+){0,2}((rc|beta)\d+)?$"));

/// `go.mod`: the `toolchain` line, else the `go` line.
fn go_mod(text: &str) -> Result<Option<Pin>, ToolchainError> {
    const FILE: &str = "go.mod";
    let mut go = None;
    let mut toolchain = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let directive = words.next();
        let value = words.next();
        let extra = words.next();
        match directive {
            Some("go") => {
                let Some(version) = value.filter(|v| GO_VERSION.is_match(v) && extra.is_none())
                else {
                    return Err(invalid(
                        FILE,
                        format!(
                            "line {}: `go` directive needs one version like `1.22` or `1.22.1`",
                            i + 1
                        ),
                    ));
                };
                go.get_or_insert(version);
            }
            Some("toolchain") => {
                let name = value.filter(|_| extra.is_none());
                // `default` means "whatever go runs", which pins nothing beyond the go line.
                if name == Some("default") {
                    continue;
                }
                let Some(version) = name
                    .and_then(|n| n.strip_prefix("go"))
                    .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                else {
                    return Err(invalid(
                        FILE,
                        format!(
                            "line {}: `toolchain` directive needs a name like `go1.22.3`",
                            i + 1
                        ),
                    ));
                };
                toolchain.get_or_insert(version);
            }
            _ => {}
        }
    }
    Ok(toolchain.or(go).map(|v| pin("go", v, FILE)))
}

/// `package.json`: the `packageManager` pin and the `engines` pins, kept apart because they
/// sit at different precedence levels.
fn package_json(text: &str) -> Result<(Vec<Pin>, Option<Pin>), ToolchainError> {
    const FILE: &str = "package.json";
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(FILE, format!("invalid JSON: {e}")))?;
    let Some(doc) = doc.as_object() else {
        return Err(invalid(FILE, "the top level must be an object"));
    };

    let mut engines = Vec::new();
    match doc.get("engines") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for tool in ["node", "npm", "pnpm", "yarn"] {
                match map.get(tool) {
                    None => {}
                    Some(serde_json::Value::String(range)) if !range.trim().is_empty() => {
                        engines.push(pin(tool, range.trim(), FILE));
                    }
                    Some(_) => {
                        return Err(invalid(
                            FILE,
                            format!("`engines.{tool}` must be a non-empty string"),
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(invalid(FILE, "`engines` must be an object")),
    }

    let manager = match doc.get("packageManager") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(spec)) => {
            // `pnpm@9.1.0+sha512.abc`: the hash after `+` is corepack's integrity check.
            let parsed = spec.split_once('@').and_then(|(name, rest)| {
                let version = rest.split('+').next().unwrap_or("");
                (!name.is_empty() && !version.is_empty()).then_some((name, version))
            });
            let Some((name, version)) = parsed else {
                return Err(invalid(
                    FILE,
                    format!("`packageManager` must look like `pnpm@9.1.0`, not `{spec}`"),
                ));
            };
            Some(pin(name, version, FILE))
        }
        Some(_) => return Err(invalid(FILE, "`packageManager` must be a string")),
    };
    Ok((engines, manager))
}

/// `mise.toml` / `.mise.toml` `[tools]`: a string, a list (first wins), or `{ version = … }`.
fn mise_toml(file: &str, text: &str) -> Result<Vec<Pin>, ToolchainError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let Some(tools) = doc.get("tools") else {
        // A mise file may hold only env vars or tasks.
        return Ok(Vec::new());
    };
    let Some(tools) = tools.as_table() else {
        return Err(invalid(file, "`tools` must be a table"));
    };
    let mut pins = Vec::new();
    for (name, value) in tools {
        let first = match value {
            toml::Value::Array(items) => items.first(),
            other => Some(other),
        };
        let version = match first {
            Some(toml::Value::String(v)) => Some(v.as_str()),
            Some(toml::Value::Table(t)) => t.get("version").and_then(toml::Value::as_str),
            _ => None,
        };
        match version.map(str::trim) {
            Some(v) if !v.is_empty() => pins.push(pin(tool_name(name), v, file)),
            _ => {
                return Err(invalid(
                    file,
                    format!(
                        "`tools.{name}` must be a version string, a non-empty list of them, \
                         or a table with a `version` string"
                    ),
                ))
            }
        }
    }
    Ok(pins)
}

/// asdf `.tool-versions`: `<plugin> <version> [<fallback>…]` per line.
fn tool_versions(text: &str) -> Result<Vec<Pin>, ToolchainError> {
    const FILE: &str = ".tool-versions";
    let mut pins = Vec::new();
    for (line, content) in content_lines(text) {
        let mut words = content.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            return Err(invalid(
                FILE,
                format!("line {line}: `{content}` has no version"),
            ));
        };
        pins.push(pin(tool_name(name), version, FILE));
    }
    Ok(pins)
}

// ---------------------------------------------------------------------------------------------
// Probing
// ---------------------------------------------------------------------------------------------

/// The first word of a marker line the probe prints before each tool's output.
const MARKER: &str = "@@flightdeck-probe";

/// The commands that print a tool's version, in fallback order: (program, full command).
fn probe_commands(tool: &str) -> Vec<(String, String)> {
    let fixed = |program: &str, command: &str| (program.to_owned(), command.to_owned());
    match tool {
        "rust" => vec![fixed("rustc", "rustc --version")],
        "node" => vec![fixed("node", "node --version")],
        "python" => vec![
            fixed("python3", "python3 --version"),
            fixed("python", "python --version"),
        ],
        // `local`: report the installed go; never download the go.mod toolchain while probing.
        "go" => vec![fixed("go", "GOTOOLCHAIN=local go version")],
        other => {
            let program = sh_quote(other);
            let command = format!("{program} --version");
            vec![(program, command)]
        }
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A POSIX `sh` script printing, per tool, `@@flightdeck-probe found <tool>` and its version
/// output, or `@@flightdeck-probe missing <tool>`. It always exits 0.
pub fn probe_script(tools: &[&str]) -> String {
    let mut script = String::from(
        "#!/bin/sh\n\
         # flightdeck toolchain probe: never fails, a missing tool is reported, not an error.\n\
         # Corepack would otherwise prompt before downloading a package manager.\n\
         COREPACK_ENABLE_DOWNLOAD_PROMPT=0\n\
         export COREPACK_ENABLE_DOWNLOAD_PROMPT\n",
    );
    for tool in tools {
        let found = sh_quote(&format!("{MARKER} found {tool}"));
        let missing = sh_quote(&format!("{MARKER} missing {tool}"));
        let mut keyword = "if";
        for (program, command) in probe_commands(tool) {
            script.push_str(&format!(
                "{keyword} command -v {program} >/dev/null 2>&1; then\n  \
                 printf '%s\\n' {found}\n  \
                 {command} </dev/null 2>&1 || true\n"
            ));
            keyword = "elif";
        }
        script.push_str(&format!("else\n  printf '%s\\n' {missing}\nfi\n"));
    }
    script.push_str("exit 0\n");
    script
}

const VERSION: &str = r"\d+(?:\.\d+)+(?:[-+][0-9A-Za-z][0-9A-Za-z.+-]*|[a-z]+\d*)?";

/// Per tool, the line that carries its version: anchored so that noise (rustup's `info:`
/// lines, pyenv's "command not found" list of versions) is not mistaken for it.
static PROBE_LINES: LazyLock<[(&str, Regex); 3]> = LazyLock::new(|| {
    [
        ("rust", constant_regex(&format!(r"^rustc ({VERSION})"))),
        ("python", constant_regex(&format!(r"^Python ({VERSION})"))),
        ("go", constant_regex(&format!(r"^go version go({VERSION})"))),
    ]
});
/// Tools that print just the version (`v20.11.0`, `10.2.4`).
static BARE_LINE: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(&format!(r"^[vV]?({VERSION})$")));
/// Anything else: the first version-looking word.
static ANY_VERSION: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(&format!(r"(?:^|[^0-9A-Za-z.])[vV]?({VERSION})")));

fn extract_version(tool: &str, lines: &[&str]) -> Option<String> {
    let anchored = PROBE_LINES
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, re)| re);
    let pattern: &Regex = match (anchored, tool) {
        (Some(re), _) => re,
        (None, "node" | "npm" | "pnpm" | "yarn") => &BARE_LINE,
        (None, _) => &ANY_VERSION,
    };
    lines.iter().find_map(|line| {
        pattern
            .captures(line)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
    })
}

/// Reads [`probe_script`]'s output: tool → bare version, `None` when missing or unreadable.
pub fn parse_probe(output: &str) -> BTreeMap<String, Option<String>> {
    let mut result = BTreeMap::new();
    // (tool, present, lines since its marker)
    let mut current: Option<(&str, bool, Vec<&str>)> = None;
    let mut finish = |section: Option<(&str, bool, Vec<&str>)>| {
        if let Some((tool, present, lines)) = section {
            let version = present.then(|| extract_version(tool, &lines)).flatten();
            result.insert(tool.to_owned(), version);
        }
    };
    for line in output.lines() {
        let line = line.trim();
        let marker = line
            .strip_prefix(MARKER)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|rest| rest.split_once(' '));
        match marker {
            Some(("found", tool)) => finish(current.replace((tool, true, Vec::new()))),
            Some(("missing", tool)) => finish(current.replace((tool, false, Vec::new()))),
            _ => {
                if let Some((_, _, lines)) = current.as_mut() {
                    lines.push(line);
                }
            }
        }
    }
    finish(current);
    result
}

// ---------------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------------

/// A channel, an optional archive date, an optional host triple.
static RUST_CHANNEL: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(r"^(stable|beta|nightly)(-\d{4}-\d{2}-\d{2})?(-[A-Za-z0-9_]+)*$")
});

/// `1.78`, `3.12.1`, `1.80.0-nightly`, `1.22rc1`: no operators, no wildcards.
static PLAIN_VERSION: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"^\d+(\.\d+)*([-+][0-9A-Za-z.+-]*|[a-z]+\d*)?$"));

/// Whether `found` (a bare version from [`parse_probe`]) meets `pinned` for `tool`.
///
/// Exact versions match as a prefix on component boundaries (`1.78` ⊂ `1.78.2`); rust's
/// `stable` takes any version and `beta`/`nightly` need that pre-release; `lts/*`, `lts/<name>`,
/// `node`, `latest` and `system` take anything; npm ranges are evaluated on major.minor.patch.
pub fn satisfies(tool: &str, pinned: &str, found: &str) -> bool {
    let pinned = pinned.trim();
    let found = strip_v(found.trim());
    if found.is_empty() {
        return false;
    }
    if matches!(pinned, "latest" | "system" | "node" | "lts" | "lts/*")
        || pinned.starts_with("lts/")
    {
        return true;
    }
    if tool == "rust" {
        if let Some(c) = RUST_CHANNEL.captures(pinned) {
            return match c.get(1).map(|m| m.as_str()) {
                Some("beta") => found.contains("-beta"),
                Some("nightly") => found.contains("-nightly"),
                _ => true,
            };
        }
    }
    let exact = strip_v(pinned);
    if PLAIN_VERSION.is_match(exact) {
        let want: Vec<&str> = exact.split('.').collect();
        let have: Vec<&str> = found.split('.').collect();
        return have.len() >= want.len() && want.iter().zip(&have).all(|(w, h)| w == h);
    }
    range_satisfied(pinned, found)
}

/// Like [`satisfies`], but `go.mod` versions are minimums: since go 1.21 the `go` line is the
/// least version that builds the module, and a newer local go is used over `toolchain`.
fn pin_satisfied(pin: &Pin, found: &str) -> bool {
    if pin.source == "go.mod" {
        return match (triple(&pin.pinned), triple(found)) {
            (Some(want), Some(have)) => have >= want,
            _ => false,
        };
    }
    satisfies(&pin.tool, &pin.pinned, found)
}

/// Compares pins with probed versions, in pin order.
pub fn check(pins: &[Pin], found: &BTreeMap<String, Option<String>>) -> Vec<ToolStatus> {
    pins.iter()
        .map(|p| {
            let version = found.get(&p.tool).cloned().flatten();
            ToolStatus {
                ok: version.as_deref().is_some_and(|v| pin_satisfied(p, v)),
                tool: p.tool.clone(),
                pinned: p.pinned.clone(),
                found: version,
                source: p.source.clone(),
            }
        })
        .collect()
}

type Triple = (u64, u64, u64);

/// major.minor.patch of a version, missing parts 0, suffixes (`-nightly`, `rc1`) ignored.
fn triple(version: &str) -> Option<Triple> {
    let parts = partial(version)?;
    (!parts.is_empty()).then(|| fill(&parts))
}

/// The numeric components before the first wildcard: `1.2.x` → `[1, 2]`, `*` → `[]`.
/// `None` when a component is neither a number nor a wildcard.
fn partial(version: &str) -> Option<Vec<u64>> {
    let version = version.strip_prefix(['v', 'V', '=']).unwrap_or(version);
    // Build metadata and pre-release tags do not take part in major.minor.patch.
    let version = version.split(['+', '-']).next().unwrap_or("");
    let mut parts = Vec::new();
    for component in version.split('.').take(3) {
        if matches!(component, "x" | "X" | "*") {
            break;
        }
        let digits: String = component.chars().take_while(char::is_ascii_digit).collect();
        let rest = &component[digits.len()..];
        // `21rc1` is 21 with a pre-release; anything else is not a version.
        if digits.is_empty() || !(rest.is_empty() || rest.starts_with(char::is_alphabetic)) {
            return None;
        }
        parts.push(digits.parse().ok()?);
    }
    Some(parts)
}

fn fill(parts: &[u64]) -> Triple {
    let at = |i: usize| parts.get(i).copied().unwrap_or(0);
    (at(0), at(1), at(2))
}

/// The smallest version above everything matching `parts`: `[1, 2]` → `1.3.0`.
fn bump(parts: &[u64]) -> Triple {
    match parts {
        [] => (u64::MAX, 0, 0),
        [m] => (m.saturating_add(1), 0, 0),
        [m, n] => (*m, n.saturating_add(1), 0),
        [m, n, p, ..] => (*m, *n, p.saturating_add(1)),
    }
}

#[derive(Clone, Copy)]
enum Bound {
    Ge(Triple),
    Gt(Triple),
    Le(Triple),
    Lt(Triple),
    Never,
}

impl Bound {
    fn holds(self, v: Triple) -> bool {
        match self {
            Bound::Ge(b) => v >= b,
            Bound::Gt(b) => v > b,
            Bound::Le(b) => v <= b,
            Bound::Lt(b) => v < b,
            Bound::Never => false,
        }
    }
}

/// An npm range (`>=18 <21 || ^22.1`, `1.2 - 2`, `18.x`): any `||` alternative matching.
/// A range that does not parse matches nothing.
fn range_satisfied(range: &str, found: &str) -> bool {
    let Some(version) = triple(found) else {
        return false;
    };
    range.split("||").any(|alternative| {
        alternative_bounds(alternative)
            .is_some_and(|bounds| bounds.iter().all(|b| b.holds(version)))
    })
}

fn alternative_bounds(alternative: &str) -> Option<Vec<Bound>> {
    let words: Vec<&str> = alternative.split_whitespace().collect();
    // Hyphen range: `a - b`.
    if let [low, "-", high] = words.as_slice() {
        let mut bounds = comparator_bounds(">=", low)?;
        bounds.extend(comparator_bounds("<=", high)?);
        return Some(bounds);
    }
    let mut bounds = Vec::new();
    let mut pending_op: Option<&str> = None;
    for word in words {
        let split = word
            .find(|c: char| !matches!(c, '<' | '>' | '=' | '^' | '~'))
            .unwrap_or(word.len());
        let (op, version) = word.split_at(split);
        let op = match (pending_op.take(), op) {
            (Some(p), "") => p,
            (Some(_), _) => return None,
            (None, o) => o,
        };
        if version.is_empty() {
            // `>= 18`: npm accepts a space between operator and version.
            pending_op = Some(op);
            continue;
        }
        bounds.extend(comparator_bounds(op, version)?);
    }
    if pending_op.is_some() {
        return None;
    }
    Some(bounds)
}

fn comparator_bounds(op: &str, version: &str) -> Option<Vec<Bound>> {
    let parts = partial(version)?;
    let full = parts.len() >= 3;
    let bounds = match op {
        "" | "=" => match parts.len() {
            0 => vec![],
            _ if full => vec![Bound::Ge(fill(&parts)), Bound::Le(fill(&parts))],
            _ => vec![Bound::Ge(fill(&parts)), Bound::Lt(bump(&parts))],
        },
        ">=" => vec![Bound::Ge(fill(&parts))],
        ">" if parts.is_empty() => vec![Bound::Never],
        ">" if full => vec![Bound::Gt(fill(&parts))],
        ">" => vec![Bound::Ge(bump(&parts))],
        "<" if parts.is_empty() => vec![Bound::Never],
        "<" => vec![Bound::Lt(fill(&parts))],
        "<=" if parts.is_empty() || !full => vec![Bound::Lt(bump(&parts))],
        "<=" => vec![Bound::Le(fill(&parts))],
        "~" | "~>" => match parts.len() {
            0 => vec![],
            1 => vec![Bound::Ge(fill(&parts)), Bound::Lt(bump(&parts))],
            _ => vec![Bound::Ge(fill(&parts)), Bound::Lt(bump(&parts[..2]))],
        },
        "^" => {
            if parts.is_empty() {
                vec![]
            } else {
                // Up to the first non-zero component stays fixed; all zero: all given fixed.
                let upper = match parts.iter().position(|&p| p != 0) {
                    Some(i) => bump(&parts[..=i]),
                    None => bump(&parts),
                };
                vec![Bound::Ge(fill(&parts)), Bound::Lt(upper)]
            }
        }
        _ => return None,
    };
    Some(bounds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn partial_versions() {
        assert_eq!(partial("1.2.x"), Some(vec![1, 2]));
        assert_eq!(partial("*"), Some(vec![]));
        assert_eq!(partial("v20"), Some(vec![20]));
        assert_eq!(partial("1.21rc1"), Some(vec![1, 21]));
        assert_eq!(partial("1.80.0-nightly"), Some(vec![1, 80, 0]));
        assert_eq!(partial("abc"), None);
        assert_eq!(partial("1.2.3.4"), Some(vec![1, 2, 3]));
    }

    #[test]
    fn caret_upper_bounds() {
        let upper = |v: &str| match comparator_bounds("^", v).unwrap().as_slice() {
            [_, Bound::Lt(u)] => *u,
            _ => panic!("no upper bound for ^{v}"),
        };
        assert_eq!(upper("1.2.3"), (2, 0, 0));
        assert_eq!(upper("0.2.3"), (0, 3, 0));
        assert_eq!(upper("0.0.3"), (0, 0, 4));
        assert_eq!(upper("0.0"), (0, 1, 0));
        assert_eq!(upper("0"), (1, 0, 0));
        assert_eq!(upper("0.0.0"), (0, 0, 1));
    }

    #[test]
    fn go_mod_pins_are_minimums() {
        let p = pin("go", "1.22", "go.mod");
        assert!(pin_satisfied(&p, "1.23.1"));
        assert!(pin_satisfied(&p, "1.22.0"));
        assert!(!pin_satisfied(&p, "1.21.9"));
        let t = pin("go", "1.22.3", "go.mod");
        assert!(!pin_satisfied(&t, "1.22.2"));
        // The same pin from .tool-versions is exact.
        assert!(!pin_satisfied(
            &pin("go", "1.22.3", ".tool-versions"),
            "1.22.4"
        ));
    }
}
