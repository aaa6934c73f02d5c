//! A validator for the JSON Schema subset an OpenAPI 3.x description uses, so fakes can hold
//! every request and response to the provider's own published description.
//!
//! Understood: `$ref` (local pointers, with sibling keywords applied too), `type` (one or a
//! list; `integer` is a number without a fraction), OpenAPI's `nullable`, `enum`, `const`,
//! `properties`, `required`, `additionalProperties` (bool or schema), `items`, `minItems`,
//! `maxItems`, `minLength`, `maxLength`, `pattern`, `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `allOf`, `anyOf`, `oneOf` (exactly one), `not`. Annotations (`format`,
//! `description`, `discriminator`, `default`, `x-*`, …) are ignored. [`OpenApi::unknown_keywords`]
//! lists any other keyword reachable from a schema, so a test can prove nothing that matters
//! is skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// Keywords the validator checks.
const CHECKED: &[&str] = &[
    "$ref",
    "type",
    "nullable",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "example",
    "examples",
    "deprecated",
    "format",
    "discriminator",
    "readOnly",
    "writeOnly",
    "externalDocs",
    "$schema",
    "$id",
    "$comment",
];

/// A loaded OpenAPI description.
pub struct OpenApi {
    root: Value,
}

/// The path of the OpenAI description kept in this crate (`specs/openai-openapi.yaml`, MIT;
/// see `specs/README.md`).
pub fn openai_spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/openai-openapi.yaml")
}

impl OpenApi {
    /// Loads a YAML (or JSON) OpenAPI file.
    pub fn load(path: &Path) -> OpenApi {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        // The YAML parser cannot hold integers beyond 64 bits (the description has
        // `minimum: -9223372036854776000`); such bounds are read as floats instead.
        let wide = regex::Regex::new(r"(?m)^(\s*[A-Za-z_]+:\s*)(-?\d{19,})\s*$").unwrap();
        let text = wide.replace_all(&text, "${1}${2}.0");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        OpenApi {
            root: yaml_to_json(yaml),
        }
    }

    /// A description already parsed into JSON (e.g. a Swagger 2.0 document read with
    /// `serde_json`, whose schemas live under `definitions` and are validated with
    /// [`OpenApi::validate_schema`]).
    pub fn from_value(root: Value) -> OpenApi {
        OpenApi { root }
    }

    /// The whole document.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Validates `instance` against an inline `schema` (one taken from the document, e.g. a
    /// Swagger response schema); `$ref`s resolve against the whole document.
    pub fn validate_schema(&self, schema: &Value, instance: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.check(schema, instance, "", &mut errors, 0);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// [`OpenApi::unknown_keywords`] for an inline schema.
    pub fn unknown_keywords_in(&self, schema: &Value) -> BTreeSet<String> {
        let mut unknown = BTreeSet::new();
        let mut seen = BTreeSet::new();
        self.walk(schema, &mut seen, &mut unknown);
        unknown
    }

    /// The OpenAI description (`specs/openai-openapi.yaml`), loaded once per process.
    pub fn openai() -> &'static OpenApi {
        static SPEC: OnceLock<OpenApi> = OnceLock::new();
        SPEC.get_or_init(|| OpenApi::load(&openai_spec_path()))
    }

    /// `components.schemas.<name>`.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.root.pointer(&format!("/components/schemas/{name}"))
    }

    /// Validates `instance` against `components.schemas.<name>`; the errors name the JSON
    /// pointer of each violation.
    pub fn validate(&self, name: &str, instance: &Value) -> Result<(), Vec<String>> {
        let Some(schema) = self.schema(name) else {
            return Err(vec![format!("the description has no schema `{name}`")]);
        };
        let mut errors = Vec::new();
        self.check(schema, instance, "", &mut errors, 0);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Every keyword reachable from `components.schemas.<name>` that the validator neither
    /// checks nor knows to be an annotation (`x-*` extensions excluded).
    pub fn unknown_keywords(&self, name: &str) -> BTreeSet<String> {
        let mut unknown = BTreeSet::new();
        let mut seen = BTreeSet::new();
        if let Some(schema) = self.schema(name) {
            self.walk(schema, &mut seen, &mut unknown);
        }
        unknown
    }

    fn walk(&self, schema: &Value, seen: &mut BTreeSet<String>, unknown: &mut BTreeSet<String>) {
        let Value::Object(map) = schema else {
            return;
        };
        for (key, value) in map {
            if key.starts_with("x-") || ANNOTATIONS.contains(&key.as_str()) {
                continue;
            }
            if !CHECKED.contains(&key.as_str()) {
                unknown.insert(key.clone());
                continue;
            }
            match key.as_str() {
                "$ref" => {
                    if let Some(reference) = value.as_str() {
                        if seen.insert(reference.to_string()) {
                            if let Some(target) = self.resolve(reference) {
                                self.walk(target, seen, unknown);
                            }
                        }
                    }
                }
                "properties" => {
                    if let Value::Object(properties) = value {
                        for property in properties.values() {
                            self.walk(property, seen, unknown);
                        }
                    }
                }
                "items" | "not" | "additionalProperties" => self.walk(value, seen, unknown),
                "allOf" | "anyOf" | "oneOf" => {
                    for branch in value.as_array().into_iter().flatten() {
                        self.walk(branch, seen, unknown);
                    }
                }
                _ => {}
            }
        }
    }

    fn resolve(&self, reference: &str) -> Option<&Value> {
        self.root.pointer(reference.strip_prefix('#')?)
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        errors: &mut Vec<String>,
        depth: usize,
    ) {
        if depth > 64 {
            errors.push(format!("{path}: schema nesting too deep"));
            return;
        }
        let map = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                errors.push(format!("{}: no value is allowed here", at(path)));
                return;
            }
            Value::Object(map) => map,
            _ => return,
        };
        if value.is_null() && map.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            match self.resolve(reference) {
                Some(target) => self.check(target, value, path, errors, depth + 1),
                None => errors.push(format!("{}: unresolvable $ref {reference}", at(path))),
            }
        }
        if let Some(types) = map.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.iter().any(|t| has_type(value, t)) {
                errors.push(format!(
                    "{}: expected {}, found {}",
                    at(path),
                    allowed.join(" or "),
                    describe(value)
                ));
                return;
            }
        }
        if let Some(options) = map.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                errors.push(format!(
                    "{}: {} is not one of {}",
                    at(path),
                    value,
                    Value::Array(options.clone())
                ));
            }
        }
        if let Some(constant) = map.get("const") {
            if constant != value {
                errors.push(format!("{}: {value} is not {constant}", at(path)));
            }
        }
        match value {
            Value::Object(object) => self.check_object(map, object, path, errors, depth),
            Value::Array(items) => {
                if let Some(min) = map.get("minItems").and_then(Value::as_u64) {
                    if (items.len() as u64) < min {
                        errors.push(format!("{}: fewer than {min} items", at(path)));
                    }
                }
                if let Some(max) = map.get("maxItems").and_then(Value::as_u64) {
                    if (items.len() as u64) > max {
                        errors.push(format!("{}: more than {max} items", at(path)));
                    }
                }
                if let Some(item_schema) = map.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{path}/{i}"), errors, depth + 1);
                    }
                }
            }
            Value::String(text) => {
                let length = text.chars().count() as u64;
                if let Some(min) = map.get("minLength").and_then(Value::as_u64) {
                    if length < min {
                        errors.push(format!("{}: shorter than {min} characters", at(path)));
                    }
                }
                if let Some(max) = map.get("maxLength").and_then(Value::as_u64) {
                    if length > max {
                        errors.push(format!("{}: longer than {max} characters", at(path)));
                    }
                }
                if let Some(pattern) = map.get("pattern").and_then(Value::as_str) {
                    // ECMA-262 patterns the regex crate cannot compile are skipped.
                    if let Ok(re) = regex::Regex::new(pattern) {
                        if !re.is_match(text) {
                            errors
                                .push(format!("{}: {text:?} does not match /{pattern}/", at(path)));
                        }
                    }
                }
            }
            Value::Number(number) => {
                let n = number.as_f64().unwrap_or(f64::NAN);
                let bound = |key: &str| map.get(key).and_then(Value::as_f64);
                if bound("minimum").is_some_and(|min| n < min) {
                    errors.push(format!("{}: {n} is below the minimum", at(path)));
                }
                if bound("maximum").is_some_and(|max| n > max) {
                    errors.push(format!("{}: {n} is above the maximum", at(path)));
                }
                if bound("exclusiveMinimum").is_some_and(|min| n <= min) {
                    errors.push(format!(
                        "{}: {n} is not above the exclusive minimum",
                        at(path)
                    ));
                }
                if bound("exclusiveMaximum").is_some_and(|max| n >= max) {
                    errors.push(format!(
                        "{}: {n} is not below the exclusive maximum",
                        at(path)
                    ));
                }
            }
            _ => {}
        }
        if let Some(all) = map.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.check(branch, value, path, errors, depth + 1);
            }
        }
        if let Some(any) = map.get("anyOf").and_then(Value::as_array) {
            let failures: Vec<Vec<String>> = any
                .iter()
                .map(|branch| self.branch_errors(branch, value, path, depth))
                .collect();
            if !failures.iter().any(Vec::is_empty) {
                errors.push(format!(
                    "{}: matches none of anyOf: {}",
                    at(path),
                    summarize(&failures)
                ));
            }
        }
        if let Some(one) = map.get("oneOf").and_then(Value::as_array) {
            let failures: Vec<Vec<String>> = one
                .iter()
                .map(|branch| self.branch_errors(branch, value, path, depth))
                .collect();
            let matched = failures.iter().filter(|f| f.is_empty()).count();
            if matched == 0 {
                errors.push(format!(
                    "{}: matches none of oneOf: {}",
                    at(path),
                    summarize(&failures)
                ));
            } else if matched > 1 {
                errors.push(format!(
                    "{}: matches {matched} branches of oneOf, not exactly one",
                    at(path)
                ));
            }
        }
        if let Some(not) = map.get("not") {
            if self.branch_errors(not, value, path, depth).is_empty() {
                errors.push(format!(
                    "{}: matches a schema it must not (`not`)",
                    at(path)
                ));
            }
        }
    }

    fn branch_errors(
        &self,
        branch: &Value,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(branch, value, path, &mut errors, depth + 1);
        errors
    }

    fn check_object(
        &self,
        map: &Map<String, Value>,
        object: &Map<String, Value>,
        path: &str,
        errors: &mut Vec<String>,
        depth: usize,
    ) {
        let properties = map.get("properties").and_then(Value::as_object);
        for name in map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = name.as_str() {
                if !object.contains_key(name) {
                    errors.push(format!("{}: missing required property `{name}`", at(path)));
                }
            }
        }
        for (key, item) in object {
            let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
            match properties.and_then(|p| p.get(key)) {
                Some(property) => self.check(property, item, &here, errors, depth + 1),
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{}: property `{key}` is not allowed", at(path)))
                    }
                    Some(extra @ Value::Object(_)) => {
                        self.check(extra, item, &here, errors, depth + 1)
                    }
                    _ => {}
                },
            }
        }
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|n| n.is_finite() && n.fract() == 0.0)
        }
        _ => false,
    }
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let text = value.to_string();
    if text.len() > 80 {
        kind.to_string()
    } else {
        format!("{kind} {text}")
    }
}

fn summarize(failures: &[Vec<String>]) -> String {
    failures
        .iter()
        .enumerate()
        .map(|(i, errors)| {
            let first: Vec<&str> = errors.iter().take(2).map(String::as_str).collect();
            format!("[{i}] {}", first.join("; "))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn yaml_to_json(value: serde_yaml::Value) -> Value {
    match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect())
        }
        serde_yaml::Value::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    serde_yaml::Value::String(s) => s,
                    other => serde_yaml::to_string(&other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                out.insert(key, yaml_to_json(value));
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}
