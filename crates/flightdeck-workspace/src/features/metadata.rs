//! `devcontainer-feature.json` read into [`FeatureMetadata`], and the option values given in
//! devcontainer.json turned into the install-time variables the reference writes into
//! `devcontainer-features.env` (`getFeatureValueObject`, `getFeatureEnvVariables`, `getSafeId`).
//!
//! The file is JSONC, as the reference reads it (`jsonc.parse`). Every key is either applied,
//! or kept in [`FeatureMetadata::ignored`] with why; documentation keys (`name`, `description`,
//! `documentationURL`, `licenseURL`, `keywords`, `$schema`) are the only silent ones.
//! Option values are data: they become file contents, never host-side shell.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::FeatureError;
use crate::devcontainer::{CommandForm, IgnoredKey, LifecycleCommand, Mount};

/// The metadata file's name in a feature's folder.
pub const FILE_NAME: &str = "devcontainer-feature.json";
/// Larger than any real feature's metadata by far; a bound on what a fetched file makes us parse.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// What `devcontainer-feature.json` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeatureMetadata {
    pub id: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub documentation_url: Option<String>,
    pub options: BTreeMap<String, OptionSpec>,
    /// The options' names in file order (the order the reference writes their variables in).
    pub option_order: Vec<String>,
    pub container_env: BTreeMap<String, String>,
    /// As written: a bind source here is a path on the host; `${devcontainerId}` and other
    /// variables are left for the caller to substitute.
    pub mounts: Vec<Mount>,
    pub init: Option<bool>,
    pub privileged: Option<bool>,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    pub entrypoint: Option<String>,
    pub on_create_command: Option<LifecycleCommand>,
    pub update_content_command: Option<LifecycleCommand>,
    pub post_create_command: Option<LifecycleCommand>,
    pub post_start_command: Option<LifecycleCommand>,
    pub post_attach_command: Option<LifecycleCommand>,
    pub installs_after: Vec<String>,
    /// Feature id as written → its options (an object, a string or `true`), in file order.
    pub depends_on: Map<String, Value>,
    pub legacy_ids: Vec<String>,
    pub deprecated: bool,
    /// Keys read past without being applied, with why.
    pub ignored: Vec<IgnoredKey>,
}

/// One entry of `options`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionSpec {
    pub kind: OptionKind,
    /// As in the file (a string or a boolean); `None` when the file has no `default`.
    pub default: Option<Value>,
    /// `enum`: the only values allowed.
    pub enum_values: Option<Vec<String>>,
    /// `proposals`: suggestions, any string is allowed.
    pub proposals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionKind {
    Boolean,
    String,
    /// A `type` the spec does not have (or none): values are passed through unchecked, as the
    /// reference does for every option.
    Other(String),
}

fn invalid(feature: &str, message: impl Into<String>) -> FeatureError {
    FeatureError::Invalid {
        feature: feature.to_string(),
        message: message.into(),
    }
}

/// Reads `dir/devcontainer-feature.json`; `feature` is the id as written (for messages). The
/// file must be a regular file (not a symlink) of at most [`MAX_METADATA_BYTES`].
pub fn read(dir: &Path, feature: &str) -> Result<FeatureMetadata, FeatureError> {
    let path = dir.join(FILE_NAME);
    let io = |source: std::io::Error| FeatureError::Io {
        context: format!("feature `{feature}`: reading {}", path.display()),
        source,
    };
    let meta = std::fs::symlink_metadata(&path).map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(invalid(
            feature,
            format!(
                "{} is not a regular file (symlinks are refused)",
                path.display()
            ),
        ));
    }
    if meta.len() > MAX_METADATA_BYTES {
        return Err(invalid(
            feature,
            format!(
                "{} is {} bytes, more than the {MAX_METADATA_BYTES} allowed",
                path.display(),
                meta.len()
            ),
        ));
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .map_err(io)?
        .take(MAX_METADATA_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    parse(&text, feature, &path.display().to_string())
}

/// Parses the text of a `devcontainer-feature.json`; `file` names it in messages.
pub fn parse(text: &str, feature: &str, file: &str) -> Result<FeatureMetadata, FeatureError> {
    let stripped = crate::devcontainer::strip_jsonc(text)
        .map_err(|e| invalid(feature, format!("{file}: {e}")))?;
    let value: Value = serde_json::from_str(&stripped)
        .map_err(|e| invalid(feature, format!("{file}: not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid(feature, format!("{file}: expected a JSON object")));
    };
    let cx = Cx { feature, file };
    let mut meta = FeatureMetadata::default();
    for (key, value) in &map {
        match key.as_str() {
            "id" => meta.id = cx.string(key, value)?,
            "version" => meta.version = Some(cx.string(key, value)?),
            "name" => meta.name = Some(cx.string(key, value)?),
            "description" => meta.description = Some(cx.string(key, value)?),
            "documentationURL" => meta.documentation_url = Some(cx.string(key, value)?),
            "licenseURL" | "keywords" | "$schema" => {}
            "options" => read_options(&cx, value, &mut meta)?,
            "containerEnv" => meta.container_env = cx.string_map(key, value)?,
            "mounts" => meta.mounts = read_mounts(&cx, value)?,
            "init" => meta.init = cx.opt_bool(key, value)?,
            "privileged" => meta.privileged = cx.opt_bool(key, value)?,
            "capAdd" => meta.cap_add = cx.strings(key, value)?,
            "securityOpt" => meta.security_opt = cx.strings(key, value)?,
            "entrypoint" => meta.entrypoint = Some(cx.string(key, value)?),
            "onCreateCommand" => meta.on_create_command = cx.lifecycle(key, value)?,
            "updateContentCommand" => meta.update_content_command = cx.lifecycle(key, value)?,
            "postCreateCommand" => meta.post_create_command = cx.lifecycle(key, value)?,
            "postStartCommand" => meta.post_start_command = cx.lifecycle(key, value)?,
            "postAttachCommand" => meta.post_attach_command = cx.lifecycle(key, value)?,
            "installsAfter" => meta.installs_after = cx.strings(key, value)?,
            "dependsOn" => match value {
                Value::Object(deps) => {
                    for (id, options) in deps {
                        if !matches!(
                            options,
                            Value::Object(_) | Value::String(_) | Value::Bool(_)
                        ) {
                            return Err(cx.wrong(
                                &format!("dependsOn.{id}"),
                                "an object of options, a string or true",
                            ));
                        }
                    }
                    meta.depends_on = deps.clone();
                }
                Value::Null => {}
                _ => return Err(cx.wrong(key, "an object")),
            },
            "legacyIds" => meta.legacy_ids = cx.strings(key, value)?,
            "deprecated" => meta.deprecated = cx.opt_bool(key, value)?.unwrap_or(false),
            "customizations" => meta.ignored.push(IgnoredKey {
                key: key.clone(),
                why: "editor settings (VS Code extensions and the like); flightdeck runs no editor"
                    .to_string(),
            }),
            // Features v1 properties, read by the reference only for v1 features.
            "buildArg" | "include" | "exclude" | "extensions" | "settings" => {
                meta.ignored.push(IgnoredKey {
                    key: key.clone(),
                    why: "a property of the retired features v1 format; not applied".to_string(),
                })
            }
            _ => meta.ignored.push(IgnoredKey {
                key: key.clone(),
                why: "not a property of devcontainer-feature.json in the spec; not applied"
                    .to_string(),
            }),
        }
    }
    if meta.id.is_empty() {
        return Err(invalid(
            feature,
            format!("{file}: `id` is missing; hint: every feature's metadata names its id"),
        ));
    }
    Ok(meta)
}

struct Cx<'a> {
    feature: &'a str,
    file: &'a str,
}

impl Cx<'_> {
    fn wrong(&self, key: &str, expected: &str) -> FeatureError {
        invalid(
            self.feature,
            format!("{}: `{key}` must be {expected}", self.file),
        )
    }
    fn string(&self, key: &str, value: &Value) -> Result<String, FeatureError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.wrong(key, "a string")),
        }
    }
    fn opt_bool(&self, key: &str, value: &Value) -> Result<Option<bool>, FeatureError> {
        match value {
            Value::Bool(b) => Ok(Some(*b)),
            Value::Null => Ok(None),
            _ => Err(self.wrong(key, "true or false")),
        }
    }
    fn strings(&self, key: &str, value: &Value) -> Result<Vec<String>, FeatureError> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.wrong(key, "an array of strings")),
                })
                .collect(),
            _ => Err(self.wrong(key, "an array of strings")),
        }
    }
    fn string_map(
        &self,
        key: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, FeatureError> {
        match value {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(self.wrong(&format!("{key}.{k}"), "a string")),
                })
                .collect(),
            _ => Err(self.wrong(key, "an object of strings")),
        }
    }
    /// The three forms, as devcontainer.json's lifecycle commands; empty ones are nothing.
    fn lifecycle(
        &self,
        key: &str,
        value: &Value,
    ) -> Result<Option<LifecycleCommand>, FeatureError> {
        let exec = |field: &str, items: &[Value]| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.wrong(field, "an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match value {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(LifecycleCommand::Shell(s.clone())),
            Value::Array(items) if items.is_empty() => None,
            Value::Array(items) => Some(LifecycleCommand::Exec(exec(key, items)?)),
            Value::Object(map) if map.is_empty() => None,
            Value::Object(map) => {
                let mut named = BTreeMap::new();
                for (name, command) in map {
                    let entry = format!("{key}.{name}");
                    let form = match command {
                        Value::String(s) => CommandForm::Shell(s.clone()),
                        Value::Array(items) => CommandForm::Exec(exec(&entry, items)?),
                        _ => return Err(self.wrong(&entry, "a string or an array")),
                    };
                    named.insert(name.clone(), form);
                }
                Some(LifecycleCommand::Parallel(named))
            }
            _ => return Err(self.wrong(key, "a string, an array or an object")),
        })
    }
}

fn read_options(
    cx: &Cx<'_>,
    value: &Value,
    meta: &mut FeatureMetadata,
) -> Result<(), FeatureError> {
    let Value::Object(options) = value else {
        if value.is_null() {
            return Ok(());
        }
        return Err(cx.wrong("options", "an object"));
    };
    for (name, spec) in options {
        let field = format!("options.{name}");
        let Value::Object(spec) = spec else {
            return Err(cx.wrong(&field, "an object"));
        };
        let kind = match spec.get("type") {
            Some(Value::String(t)) if t == "boolean" => OptionKind::Boolean,
            Some(Value::String(t)) if t == "string" => OptionKind::String,
            Some(Value::String(t)) => OptionKind::Other(t.clone()),
            _ => OptionKind::Other(String::new()),
        };
        let default = match spec.get("default") {
            None | Some(Value::Null) => None,
            Some(v @ (Value::String(_) | Value::Bool(_) | Value::Number(_))) => Some(v.clone()),
            Some(_) => return Err(cx.wrong(&format!("{field}.default"), "a string or a boolean")),
        };
        let enum_values = match spec.get("enum") {
            None | Some(Value::Null) => None,
            Some(v) => Some(cx.strings(&format!("{field}.enum"), v)?),
        };
        let proposals = match spec.get("proposals") {
            None => Vec::new(),
            Some(v) => cx.strings(&format!("{field}.proposals"), v)?,
        };
        for key in spec.keys() {
            if !matches!(
                key.as_str(),
                "type" | "default" | "enum" | "proposals" | "description"
            ) {
                meta.ignored.push(IgnoredKey {
                    key: format!("{field}.{key}"),
                    why: "not a property of a feature option in the spec; not applied".to_string(),
                });
            }
        }
        meta.option_order.push(name.clone());
        meta.options.insert(
            name.clone(),
            OptionSpec {
                kind,
                default,
                enum_values,
                proposals,
            },
        );
    }
    Ok(())
}

/// Mounts in the object form the spec gives features (`type`, `source`, `target`), or the
/// string form.
fn read_mounts(cx: &Cx<'_>, value: &Value) -> Result<Vec<Mount>, FeatureError> {
    let Value::Array(items) = value else {
        if value.is_null() {
            return Ok(Vec::new());
        }
        return Err(cx.wrong("mounts", "an array"));
    };
    let mut mounts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let mount = match item {
            Value::String(s) => crate::devcontainer::parse_mount_string(s)
                .map_err(|e| invalid(cx.feature, format!("{}: `{field}`: {e}", cx.file)))?,
            Value::Object(map) => {
                let text = |key: &str| match map.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(cx.wrong(&format!("{field}.{key}"), "a string")),
                };
                let target =
                    text("target")?.ok_or_else(|| cx.wrong(&format!("{field}.target"), "given"))?;
                let source = text("source")?;
                match text("type")?.as_deref() {
                    Some("bind") => Mount::Bind {
                        source: source
                            .ok_or_else(|| cx.wrong(&format!("{field}.source"), "given"))?
                            .into(),
                        target,
                        readonly: false,
                    },
                    Some("volume") => Mount::Volume {
                        source,
                        target,
                        readonly: false,
                    },
                    _ => return Err(cx.wrong(&format!("{field}.type"), "\"bind\" or \"volume\"")),
                }
            }
            _ => return Err(cx.wrong(&field, "a mount object or string")),
        };
        mounts.push(mount);
    }
    Ok(mounts)
}

/// The reference's `getSafeId`: every character outside `[A-Za-z0-9_]` becomes `_`, a leading
/// run of digits and underscores becomes one `_`, then upper case. Works on UTF-16 code units
/// as JavaScript does (a character outside the BMP becomes `__`).
pub fn safe_id(name: &str) -> String {
    let mut replaced = String::new();
    for unit in name.encode_utf16() {
        match char::from_u32(u32::from(unit)) {
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => replaced.push(c),
            _ => replaced.push('_'),
        }
    }
    let rest = replaced.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    let out = if rest.len() == replaced.len() {
        replaced.clone()
    } else {
        format!("_{rest}")
    };
    out.to_ascii_uppercase()
}

/// Option values as install-time variables, and what is worth telling about them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionValues {
    /// Variable name ([`safe_id`] of the option) → value.
    pub env: BTreeMap<String, String>,
    /// The same, in the order the reference writes them (defaults in the file's option order,
    /// then options only the user gave).
    pub ordered: Vec<(String, String)>,
    /// Things passed through that the spec would not expect (unknown option names, a string
    /// given to a feature without a `version` option…), said for a person.
    pub notes: Vec<String>,
}

/// [`option_values_noted`] without the notes.
pub fn option_values(
    meta: &FeatureMetadata,
    feature: &str,
    user: &Value,
) -> Result<BTreeMap<String, String>, FeatureError> {
    option_values_noted(meta, feature, user).map(|v| v.env)
}

/// The reference's `getFeatureValueObject` then `getFeatureEnvVariables`: the options'
/// defaults, overridden by what devcontainer.json gives (an object of options; a string, which
/// sets the `version` option; `true`, which takes the defaults).
///
/// Matched: a boolean given as `"true"`/`"false"` becomes the same text; options the feature
/// does not declare are passed through (reported in the notes); a string for a feature without
/// a `version` option is dropped (reported); numbers become their JavaScript text.
///
/// *Differs on purpose:* `true` with a `version` option means the defaults (the reference
/// would set `VERSION=true`); `false` is refused (the reference installs the feature anyway);
/// a value that is not a string, boolean or number, a boolean option given anything but a
/// boolean, and a value outside an option's `enum` are refused (the reference writes them
/// through unchecked).
pub fn option_values_noted(
    meta: &FeatureMetadata,
    feature: &str,
    user: &Value,
) -> Result<OptionValues, FeatureError> {
    // Defaults first, in the file's order; user values override in place or append (a JS
    // object spread).
    let mut values: Vec<(String, Value)> = Vec::new();
    let mut notes = Vec::new();
    for name in &meta.option_order {
        if let Some(default) = meta.options.get(name).and_then(|o| o.default.clone()) {
            values.push((name.clone(), default));
        }
    }
    let set = |values: &mut Vec<(String, Value)>, name: &str, value: Value| match values
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some(slot) => slot.1 = value,
        None => values.push((name.to_string(), value)),
    };
    match user {
        Value::Object(given) => {
            for (name, value) in given {
                set(&mut values, name, value.clone());
            }
        }
        Value::Null | Value::Bool(true) => {}
        Value::Bool(false) => {
            return Err(invalid(
                feature,
                "`false` does not leave a feature out (the reference installs it anyway); hint: \
                 remove the entry from `features`",
            ))
        }
        Value::String(_) | Value::Number(_) => {
            if meta.options.contains_key("version") {
                set(&mut values, "version", user.clone());
            } else {
                notes.push(format!(
                    "the value {user} is ignored: the feature has no `version` option (as in the \
                     reference)"
                ));
            }
        }
        Value::Array(_) => {
            return Err(invalid(
                feature,
                "the value must be an object of options, a version string or true; hint: write \
                 { \"option\": \"value\" }",
            ))
        }
    }
    let mut out = OptionValues::default();
    for (name, value) in values {
        let text = match &value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => js_number(n),
            other => {
                return Err(invalid(
                    feature,
                    format!(
                        "option `{name}`: {other} is not a string or a boolean; hint: write it as \
                         a string"
                    ),
                ))
            }
        };
        match meta.options.get(&name) {
            None => notes.push(format!(
                "option `{name}` is not declared by the feature; passed through as {} (as the \
                 reference does)",
                safe_id(&name)
            )),
            Some(spec) => {
                if spec.kind == OptionKind::Boolean && text != "true" && text != "false" {
                    return Err(invalid(
                        feature,
                        format!(
                            "option `{name}` is a boolean; got {value}; hint: write true or false"
                        ),
                    ));
                }
                if spec.kind == OptionKind::String && !value.is_string() {
                    notes.push(format!(
                        "option `{name}` is a string; {value} is passed as \"{text}\""
                    ));
                }
                if let Some(allowed) = &spec.enum_values {
                    if !allowed.contains(&text) {
                        return Err(invalid(
                            feature,
                            format!(
                                "option `{name}`: \"{text}\" is not one of its values; hint: use one \
                                 of {}",
                                allowed
                                    .iter()
                                    .map(|a| format!("\"{a}\""))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        let env = safe_id(&name);
        if let Some(previous) = out.ordered.iter().position(|(n, _)| *n == env) {
            // Both lines would be written; the shell keeps the later one.
            notes.push(format!(
                "option `{name}` is the variable {env} like an earlier option; the later one wins"
            ));
            out.ordered.remove(previous);
        }
        out.env.insert(env.clone(), text.clone());
        out.ordered.push((env, text));
    }
    out.notes = notes;
    Ok(out)
}

/// A JSON number as JavaScript's `String(n)` writes it (integers without `.0`).
fn js_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}
