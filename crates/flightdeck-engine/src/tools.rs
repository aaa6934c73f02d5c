//! The built-in agent tools (CONTRACT.md): their JSON Schemas, the checking of a model's
//! arguments, and how a recorded result is shown to the model.
//!
//! What the model sees of a result is a pure function of what the timeline records (the
//! tool, `tool.completed` and its output artifact), so a resumed or replayed agent rebuilds
//! exactly the conversation it had.

use flightdeck_core::event::ToolCompleted;
use flightdeck_core::template::AgentRole;
use flightdeck_models::ToolDefinition;
use serde_json::{json, Value};

/// The most of a tool's output shown to the model; the rest is cut from the middle (the full
/// output stays in the artifact store).
const SHOWN_OUTPUT: usize = 16 * 1024;
/// `read_file` shows more: an agent must see a file whole to edit it.
const SHOWN_FILE: usize = 64 * 1024;

/// What a model may ask for, its arguments checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolInvocation {
    ReadFile {
        path: String,
    },
    WriteFile {
        path: String,
        content: String,
    },
    EditFile {
        path: String,
        old: String,
        new: String,
    },
    ListFiles {
        path: String,
    },
    Search {
        pattern: String,
        path: String,
    },
    Run {
        command: String,
    },
    Finish {
        summary: String,
    },
    ReadOutput {
        call_id: String,
        offset: u64,
    },
    Review {
        approve: bool,
        comments: Vec<String>,
    },
}

impl ToolInvocation {
    /// Checks a call against the role's tools and the tool's schema. The error is what the
    /// model is told.
    pub(crate) fn parse(
        role: AgentRole,
        name: &str,
        args: &Value,
    ) -> Result<ToolInvocation, String> {
        if !tools_of(role).contains(&name) {
            return Err(format!(
                "unknown tool `{name}` for the {} (its tools: {})",
                role.as_str(),
                tools_of(role).join(", ")
            ));
        }
        let object = args
            .as_object()
            .ok_or_else(|| format!("the arguments of `{name}` must be a JSON object"))?;
        let text = |field: &str| -> Result<String, String> {
            match object.get(field) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("`{name}`: `{field}` must be a string")),
                None => Err(format!("`{name}`: `{field}` is required")),
            }
        };
        let optional_path = || -> Result<String, String> {
            match object.get("path") {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("`{name}`: `path` must be a string")),
            }
        };
        Ok(match name {
            "read_file" => ToolInvocation::ReadFile {
                path: text("path")?,
            },
            "write_file" => ToolInvocation::WriteFile {
                path: text("path")?,
                content: text("content")?,
            },
            "edit_file" => ToolInvocation::EditFile {
                path: text("path")?,
                old: text("old")?,
                new: text("new")?,
            },
            "list_files" => ToolInvocation::ListFiles {
                path: optional_path()?,
            },
            "search" => ToolInvocation::Search {
                pattern: text("pattern")?,
                path: optional_path()?,
            },
            "run" => ToolInvocation::Run {
                command: text("command")?,
            },
            "finish" => ToolInvocation::Finish {
                summary: text("summary")?,
            },
            "read_output" => ToolInvocation::ReadOutput {
                call_id: text("call_id")?,
                offset: match object.get("offset") {
                    None | Some(Value::Null) => 0,
                    Some(v) => v.as_u64().ok_or_else(|| {
                        "`read_output`: `offset` must be a whole number".to_string()
                    })?,
                },
            },
            "review" => {
                let approve = match text("verdict")?.as_str() {
                    "approve" => true,
                    "request_changes" => false,
                    other => {
                        return Err(format!(
                            "`review`: verdict must be \"approve\" or \"request_changes\", not {other:?}"
                        ))
                    }
                };
                let comments = match object.get("comments") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|c| c.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| "`review`: comments must be strings".to_string())?,
                    Some(_) => return Err("`review`: comments must be an array".to_string()),
                };
                ToolInvocation::Review { approve, comments }
            }
            other => return Err(format!("unknown tool `{other}`")),
        })
    }

    /// Whether the call may change the worktree (its tree is recorded after it).
    pub(crate) fn may_write(&self) -> bool {
        matches!(
            self,
            ToolInvocation::WriteFile { .. }
                | ToolInvocation::EditFile { .. }
                | ToolInvocation::Run { .. }
        )
    }
}

/// The tools each role has.
pub(crate) fn tools_of(role: AgentRole) -> &'static [&'static str] {
    match role {
        AgentRole::Planner => &["read_file", "list_files", "search", "read_output", "finish"],
        AgentRole::Coder => &[
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "search",
            "run",
            "read_output",
            "finish",
        ],
        AgentRole::Reviewer => &["read_file", "list_files", "search", "read_output", "review"],
    }
}

/// The definitions sent to the model for `role`.
pub(crate) fn definitions(role: AgentRole) -> Vec<ToolDefinition> {
    tools_of(role)
        .iter()
        .filter_map(|name| definition(name))
        .collect()
}

fn definition(name: &str) -> Option<ToolDefinition> {
    let (description, parameters) = match name {
        "read_file" => (
            "Read a file of the repository (a path relative to the repository root).",
            json!({"type": "object", "properties": {"path": {"type": "string", "description": "Repository-relative path"}}, "required": ["path"], "additionalProperties": false}),
        ),
        "write_file" => (
            "Create or replace a file with the given content; missing directories are created.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"], "additionalProperties": false}),
        ),
        "edit_file" => (
            "Replace one exact piece of text of a file with another. `old` must occur exactly once.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["path", "old", "new"], "additionalProperties": false}),
        ),
        "list_files" => (
            "List the files under a directory, recursively (honours .gitignore). An empty path is the repository root.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false}),
        ),
        "search" => (
            "Search file contents under a directory for a regular expression; answers path:line: text.",
            json!({"type": "object", "properties": {"pattern": {"type": "string", "description": "A regular expression (Rust regex syntax)"}, "path": {"type": "string"}}, "required": ["pattern", "path"], "additionalProperties": false}),
        ),
        "run" => (
            "Run a shell command in the repository root, in the sandbox. Answers the exit code and the output.",
            json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"], "additionalProperties": false}),
        ),
        "read_output" => (
            "Read more of an earlier tool call's output that was cut short (or dropped to save context), from a byte offset.",
            json!({"type": "object", "properties": {"call_id": {"type": "string", "description": "The call id the cut note names"}, "offset": {"type": "integer", "minimum": 0}}, "required": ["call_id", "offset"], "additionalProperties": false}),
        ),
        "finish" => (
            "End your work with a short, factual summary.",
            json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}),
        ),
        "review" => (
            "End the review with a verdict, and comments the coder can act on.",
            json!({"type": "object", "properties": {"verdict": {"type": "string", "enum": ["approve", "request_changes"]}, "comments": {"type": "array", "items": {"type": "string"}}}, "required": ["verdict", "comments"], "additionalProperties": false}),
        ),
        _ => return None,
    };
    Some(ToolDefinition {
        name: name.to_string(),
        description: description.to_string(),
        parameters,
    })
}

/// What the model is told of a completed call: a function of the recorded result only.
pub(crate) fn result_text(tool: &str, completed: &ToolCompleted, output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let limit = if tool == "read_file" && completed.ok {
        SHOWN_FILE
    } else {
        SHOWN_OUTPUT
    };
    let note = |omitted: usize, resume_at: usize| {
        format!(
            "[… {omitted} bytes left out; read_output {{\"call_id\": \"{}\", \"offset\": {resume_at}}} shows them …]",
            completed.call_id
        )
    };
    let shown = cut_middle(&text, limit, note);
    if tool == "run" {
        let status = match (completed.exit_code, completed.timed_out) {
            (_, true) => "timed out and was killed".to_string(),
            (Some(code), false) => format!("exit code {code}"),
            (None, false) => "killed by a signal".to_string(),
        };
        return format!("{status}\n{shown}");
    }
    if completed.ok {
        shown
    } else {
        format!("error: {shown}")
    }
}

/// `text` whole if it fits in `limit` bytes, else its head and tail around `note(bytes left
/// out, offset where they start)`.
pub(crate) fn cut_middle(
    text: &str,
    limit: usize,
    note: impl Fn(usize, usize) -> String,
) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let half = limit / 2;
    let head_end = floor_char_boundary(text, half);
    let tail_start = ceil_char_boundary(text, text.len() - half);
    let omitted = tail_start - head_end;
    format!(
        "{}\n{}\n{}",
        &text[..head_end],
        note(omitted, head_end),
        &text[tail_start..]
    )
}

/// The bytes of `output` from `offset`, at most [`SHOWN_OUTPUT`], on char boundaries, with a
/// line saying which part this is.
pub(crate) fn output_page(call_id: &str, output: &[u8], offset: u64) -> String {
    let text = String::from_utf8_lossy(output);
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let start = ceil_char_boundary(&text, from);
    let end = floor_char_boundary(&text, start.saturating_add(SHOWN_OUTPUT).min(text.len()));
    let more = if end < text.len() {
        format!("; read_output {{\"call_id\": \"{call_id}\", \"offset\": {end}}} shows more")
    } else {
        String::new()
    };
    format!(
        "[bytes {start}–{end} of {} of {call_id}'s output{more}]\n{}",
        text.len(),
        &text[start..end]
    )
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// The most of a file `read_file` records.
pub(crate) const MAX_READ: usize = 1024 * 1024;
pub(crate) const MAX_LISTED: usize = 2000;
pub(crate) const MAX_MATCHES: usize = 200;

/// Runs a file tool; the text is what is recorded (and, cut, what the model sees).
pub(crate) fn file_tool(
    fs: &flightdeck_workspace::ConfinedFs,
    invocation: &ToolInvocation,
) -> (bool, String) {
    let result = match invocation {
        ToolInvocation::ReadFile { path } => fs.read_file(path, MAX_READ).map(|read| {
            let mut text = String::from_utf8_lossy(&read.bytes).into_owned();
            if read.truncated {
                text.push_str(&format!(
                    "\n[… the file has {} bytes; only the first {} are shown]",
                    read.size,
                    read.bytes.len()
                ));
            }
            text
        }),
        ToolInvocation::WriteFile { path, content } => fs.write_file(path, content).map(|w| {
            let how = if w.created { "created" } else { "replaced" };
            format!("{how} {} ({} bytes)", w.path, w.bytes)
        }),
        ToolInvocation::EditFile { path, old, new } => fs
            .edit_file(path, old, new)
            .map(|w| format!("edited {}", w.path)),
        ToolInvocation::ListFiles { path } => fs.list_files(path, MAX_LISTED).map(|listing| {
            let mut lines: Vec<String> = listing
                .entries
                .iter()
                .map(|e| match e.kind {
                    flightdeck_workspace::EntryKind::Dir => format!("{}/", e.path),
                    flightdeck_workspace::EntryKind::Symlink => format!("{} (symlink)", e.path),
                    flightdeck_workspace::EntryKind::File => e.path.clone(),
                })
                .collect();
            if listing.truncated {
                lines.push(format!(
                    "[… more than {MAX_LISTED} entries; list a subdirectory]"
                ));
            }
            lines.join("\n")
        }),
        ToolInvocation::Search { pattern, path } => {
            fs.search(pattern, path, MAX_MATCHES).map(|found| {
                let mut lines: Vec<String> = found
                    .matches
                    .iter()
                    .map(|m| format!("{}:{}: {}", m.path, m.line, m.text))
                    .collect();
                if found.matches.is_empty() {
                    lines.push(format!("no match in {} files", found.files_searched));
                }
                if found.truncated {
                    lines.push(format!(
                        "[… more than {MAX_MATCHES} matches; narrow the search]"
                    ));
                }
                lines.join("\n")
            })
        }
        ToolInvocation::Finish { summary } => Ok(summary.clone()),
        ToolInvocation::Review { approve, comments } => {
            let verdict = if *approve {
                "approve"
            } else {
                "request_changes"
            };
            Ok(serde_json::json!({"verdict": verdict, "comments": comments}).to_string())
        }
        ToolInvocation::Run { .. } | ToolInvocation::ReadOutput { .. } => Ok(String::new()),
    };
    match result {
        Ok(text) => (true, text),
        Err(e) => (false, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn argument_checks() {
        let cases: &[(AgentRole, &str, Value, &str)] = &[
            (AgentRole::Coder, "read_file", json!({"path": "a"}), "ok"),
            (AgentRole::Coder, "read_file", json!({}), "`read_file`: `path` is required"),
            (AgentRole::Coder, "read_file", json!({"path": 3}), "`read_file`: `path` must be a string"),
            (AgentRole::Coder, "read_file", json!("a"), "the arguments of `read_file` must be a JSON object"),
            (AgentRole::Planner, "write_file", json!({"path": "a", "content": ""}), "unknown tool `write_file` for the planner (its tools: read_file, list_files, search, read_output, finish)"),
            (AgentRole::Coder, "read_output", json!({"call_id": "x", "offset": -1}), "`read_output`: `offset` must be a whole number"),
            (AgentRole::Reviewer, "review", json!({"verdict": "maybe"}), "`review`: verdict must be \"approve\" or \"request_changes\", not \"maybe\""),
            (AgentRole::Reviewer, "review", json!({"verdict": "approve"}), "ok"),
            (AgentRole::Coder, "list_files", json!({}), "ok"),
            (AgentRole::Coder, "nope", json!({}), "unknown tool `nope` for the coder (its tools: read_file, write_file, edit_file, list_files, search, run, read_output, finish)"),
        ];
        for (role, name, args, expected) in cases {
            let got = match ToolInvocation::parse(*role, name, args) {
                Ok(_) => "ok".to_string(),
                Err(e) => e,
            };
            assert_eq!(&got, expected, "{name} {args}");
        }
    }

    #[test]
    fn every_role_tool_has_a_definition() {
        for role in [AgentRole::Planner, AgentRole::Coder, AgentRole::Reviewer] {
            assert_eq!(definitions(role).len(), tools_of(role).len());
        }
    }

    #[test]
    fn cutting_keeps_head_and_tail_on_char_boundaries() {
        let text = "é".repeat(100);
        let cut = cut_middle(&text, 51, |n, at| format!("[{n} from {at}]"));
        assert!(cut.starts_with("éééé"));
        assert!(cut.ends_with("éééé"));
        assert!(cut.contains("[152 from 24]"), "{cut}");
        assert_eq!(cut_middle("short", 10, |_, _| String::new()), "short");
    }

    #[test]
    fn pages_of_an_output() {
        let output = "a".repeat(SHOWN_OUTPUT + 10);
        let first = output_page("c1", output.as_bytes(), 0);
        let head = format!("[bytes 0–{SHOWN_OUTPUT} of {} of c1's output; read_output {{\"call_id\": \"c1\", \"offset\": {SHOWN_OUTPUT}}} shows more]", SHOWN_OUTPUT + 10);
        assert!(first.starts_with(&head), "{}", &first[..120]);
        let last = output_page("c1", output.as_bytes(), SHOWN_OUTPUT as u64);
        assert_eq!(
            last,
            format!(
                "[bytes {SHOWN_OUTPUT}–{} of {} of c1's output]\naaaaaaaaaa",
                SHOWN_OUTPUT + 10,
                SHOWN_OUTPUT + 10
            )
        );
        assert!(output_page("c1", b"abc", 99).starts_with("[bytes 3–3 of 3"));
    }
}
