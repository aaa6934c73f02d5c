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
pub(crate) enum ToolInvocation {
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
        AgentRole::Planner => &["read_file", "list_files", "search", "finish"],
        AgentRole::Coder => &[
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "search",
            "run",
            "finish",
        ],
        AgentRole::Reviewer => &["read_file", "list_files", "search", "review"],
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
    let shown = cut_middle(&text, limit, &completed.output.to_string());
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

/// `text` whole if it fits in `limit` bytes, else its head and tail around a note naming
/// how much was left out and where the whole of it is.
pub(crate) fn cut_middle(text: &str, limit: usize, artifact: &str) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let half = limit / 2;
    let head_end = floor_char_boundary(text, half);
    let tail_start = ceil_char_boundary(text, text.len() - half);
    let omitted = tail_start - head_end;
    format!(
        "{}\n[… {omitted} bytes left out; the whole output is artifact {artifact} …]\n{}",
        &text[..head_end],
        &text[tail_start..]
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
            (AgentRole::Planner, "write_file", json!({"path": "a", "content": ""}), "unknown tool `write_file` for the planner (its tools: read_file, list_files, search, finish)"),
            (AgentRole::Reviewer, "review", json!({"verdict": "maybe"}), "`review`: verdict must be \"approve\" or \"request_changes\", not \"maybe\""),
            (AgentRole::Reviewer, "review", json!({"verdict": "approve"}), "ok"),
            (AgentRole::Coder, "list_files", json!({}), "ok"),
            (AgentRole::Coder, "nope", json!({}), "unknown tool `nope` for the coder (its tools: read_file, write_file, edit_file, list_files, search, run, finish)"),
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
        let cut = cut_middle(&text, 51, "sha256:x");
        assert!(cut.starts_with("éééé"));
        assert!(cut.ends_with("éééé"));
        assert!(cut.contains("bytes left out; the whole output is artifact sha256:x"));
        assert_eq!(cut_middle("short", 10, "x"), "short");
    }
}
