//! `devcontainer-lock.json`, read and written as the reference does (`lockfile.ts`:
//! `getLockfilePath`, `readLockfile`, `generateLockfile`, `writeLockfile`).
//!
//! The file sits next to the config: `devcontainer-lock.json`, or `.devcontainer-lock.json`
//! for a config whose name starts with `.` (`.devcontainer.json`). It pins OCI and tarball
//! features (never local folders), keyed by the id as written: `version` (the metadata's, left
//! out when it has none), `resolved` (`registry/repository@sha256:<manifest>` or the URL),
//! `integrity` (the manifest digest for OCI, the tarball's sha256 otherwise) and `dependsOn`
//! (the ids the feature's metadata depends on, when any). Written as `JSON.stringify(lock,
//! null, 2) + "\n"` with the ids sorted by `localeCompare`.
//!
//! *Differs on purpose:* a symlink or a file over [`MAX_LOCK_BYTES`] is refused; entries of the
//! wrong shape are errors (the reference would fail later, or not at all).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::FeatureError;

/// Far more than any real lock file.
pub const MAX_LOCK_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Lockfile {
    /// Id as written → its pin.
    pub features: BTreeMap<String, LockedFeature>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockedFeature {
    pub version: Option<String>,
    pub resolved: String,
    pub integrity: String,
    pub depends_on: Option<Vec<String>>,
}

/// `getLockfilePath`: the lock file for the config file at `config_file`.
pub fn path_for(config_file: &Path) -> PathBuf {
    let dotted = config_file
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let name = if dotted {
        ".devcontainer-lock.json"
    } else {
        "devcontainer-lock.json"
    };
    config_file
        .parent()
        .map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

fn invalid(path: &Path, message: impl Into<String>) -> FeatureError {
    FeatureError::Invalid {
        feature: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads the lock file at `path`. `None` when there is none, or when it is empty (the
/// reference's marker for "write one after the build", which it does anyway).
pub fn read(path: &Path) -> Result<Option<Lockfile>, FeatureError> {
    let io = |source: std::io::Error| FeatureError::Io {
        context: format!("reading {}", path.display()),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if !meta.file_type().is_file() {
        return Err(invalid(
            path,
            "the lock file is not a regular file (symlinks are refused); hint: replace it with \
             the file itself",
        ));
    }
    if meta.len() > MAX_LOCK_BYTES {
        return Err(invalid(
            path,
            format!(
                "the lock file is {} bytes, more than the {MAX_LOCK_BYTES} allowed",
                meta.len()
            ),
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_LOCK_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse(&text, path).map(Some)
}

/// Parses a lock file's text (`JSON.parse`: plain JSON, no comments).
pub fn parse(text: &str, path: &Path) -> Result<Lockfile, FeatureError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        invalid(
            path,
            format!("not JSON: {e}; hint: delete the lock file to have it written again"),
        )
    })?;
    let features = match value.get("features") {
        Some(Value::Object(features)) => features,
        None => return Ok(Lockfile::default()),
        Some(_) => return Err(invalid(path, "`features` must be an object")),
    };
    let mut lock = Lockfile::default();
    for (id, entry) in features {
        let Value::Object(entry) = entry else {
            return Err(invalid(path, format!("`features.{id}` must be an object")));
        };
        let text = |key: &str| -> Result<Option<String>, FeatureError> {
            match entry.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(
                    path,
                    format!("`features.{id}.{key}` must be a string"),
                )),
            }
        };
        let required = |key: &str| -> Result<String, FeatureError> {
            text(key)?.ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "`features.{id}.{key}` is missing; hint: delete the entry to have it \
                         written again"
                    ),
                )
            })
        };
        let depends_on = match entry.get("dependsOn") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(invalid(
                            path,
                            format!("`features.{id}.dependsOn` must be an array of strings"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => {
                return Err(invalid(
                    path,
                    format!("`features.{id}.dependsOn` must be an array of strings"),
                ))
            }
        };
        let integrity = required("integrity")?;
        if !is_sha256_digest(&integrity) {
            return Err(invalid(
                path,
                format!("`features.{id}.integrity` must be `sha256:<64 hex digits>`"),
            ));
        }
        lock.features.insert(
            id.clone(),
            LockedFeature {
                version: text("version")?,
                resolved: required("resolved")?,
                integrity,
                depends_on,
            },
        );
    }
    Ok(lock)
}

/// `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The file's text, byte for byte what the reference writes: ids sorted by `localeCompare`,
/// keys `version`, `resolved`, `integrity`, `dependsOn`, two-space indent, a final newline.
pub fn to_json_string(lock: &Lockfile) -> String {
    let mut ids: Vec<&String> = lock.features.keys().collect();
    ids.sort_by(|a, b| super::order::locale_compare(a, b));
    let mut features = Map::new();
    for id in ids {
        let Some(entry) = lock.features.get(id) else {
            continue;
        };
        let mut object = Map::new();
        if let Some(version) = &entry.version {
            object.insert("version".into(), Value::String(version.clone()));
        }
        object.insert("resolved".into(), Value::String(entry.resolved.clone()));
        object.insert("integrity".into(), Value::String(entry.integrity.clone()));
        if let Some(deps) = entry.depends_on.as_ref().filter(|d| !d.is_empty()) {
            object.insert(
                "dependsOn".into(),
                Value::Array(deps.iter().cloned().map(Value::String).collect()),
            );
        }
        features.insert(id.clone(), Value::Object(object));
    }
    let mut root = Map::new();
    root.insert("features".into(), Value::Object(features));
    // serde_json's pretty printer is JSON.stringify(_, null, 2) for strings, objects and arrays.
    let mut out = serde_json::to_string_pretty(&Value::Object(root)).unwrap_or_default();
    out.push('\n');
    out
}
