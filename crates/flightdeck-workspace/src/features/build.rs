//! The build context of the image with the features installed, for Docker's classic builder
//! (no BuildKit: no `RUN --mount`, no `COPY --from` of another image), laid out as the
//! reference's `getFeaturesBuildOptions` / `getFeatureLayers` /
//! `getFeatureInstallWrapperScript` do:
//!
//! ```text
//! FROM <base image>
//! USER root
//! COPY devcontainer-features.builtin.env /tmp/dev-container-features/   (_CONTAINER_USER, _REMOTE_USER)
//! RUN echo "_CONTAINER_USER_HOME=…" >> … && echo "_REMOTE_USER_HOME=…" >> …   (getent, in the image)
//! ENV <the feature's containerEnv>                                      (before its layer, as the reference)
//! COPY --chown=root:root <id>_<n> /tmp/dev-container-features/<id>_<n>
//! RUN chmod -R 0755 … && cd … && chmod +x ./devcontainer-features-install.sh && ./devcontainer-features-install.sh
//! …one per feature, in install order…
//! USER <the base image's user>
//! ```
//!
//! Each feature folder gets `devcontainer-features.env` (its options) and the reference's
//! wrapper `devcontainer-features-install.sh`, which sources both env files with `set -a` and
//! runs `install.sh`.
//!
//! *Differs on purpose:*
//! - values are single-quoted ([`shell_quote`]) in both env files, so `$(…)`, backticks and
//!   quotes in an option are literal text; the reference writes `NAME="value"` (and the users
//!   unquoted), which the shell would expand while sourcing;
//! - the env file's lines are sorted by variable name (the reference: option order);
//! - the `/etc/passwd` fallback for a user's home matches the whole name (`^name:`; the
//!   reference's `^name` also matches longer names);
//! - one stage, the base image named directly (the reference builds a
//!   `dev_container_feature_content_temp` image to `COPY --from`), and no `devcontainer.metadata`
//!   label: flightdeck keeps what the features ask for itself;
//! - a containerEnv name that is not a variable name, or a value with a newline, is refused
//!   (it would break the Dockerfile).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::resolve::ResolvedFeature;
use super::{FeatureError, FeatureSource};

/// Bumped whenever what this module writes changes, so cached images are rebuilt.
pub const FORMAT_VERSION: &str = "flightdeck-features-build/1";
/// Where features are copied in the image (`FEATURES_CONTAINER_TEMP_DEST_FOLDER`).
pub const FEATURES_DIR: &str = "/tmp/dev-container-features";
pub const BUILTIN_ENV_FILE: &str = "devcontainer-features.builtin.env";
pub const FEATURE_ENV_FILE: &str = "devcontainer-features.env";
pub const WRAPPER_FILE: &str = "devcontainer-features-install.sh";

/// Who the features install for (the reference's `findContainerUsers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsers {
    pub container_user: String,
    pub remote_user: String,
    /// `None`: found in the image with `getent passwd` (or `/etc/passwd`), as the reference does.
    pub container_user_home: Option<String>,
    pub remote_user_home: Option<String>,
    /// The base image's `USER` (empty means root), restored after the features.
    pub image_user: String,
}

/// What [`write_context`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    /// sha256 hex over [`FORMAT_VERSION`], the base image's id, the users, and every feature's
    /// integrity, options and containerEnv in order: equal keys build equal images.
    pub cache_key: String,
}

/// `value` as one single-quoted shell word: every character literal (`'` becomes `'\''`).
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// The text of an env file sourced by `sh` (`NAME='value'` lines joined by newlines, no final
/// newline, as the reference joins them).
pub fn env_file<'a>(values: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    values
        .into_iter()
        .map(|(name, value)| format!("{name}={}", shell_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The reference's `escapeQuotesForShell`: for text printed inside single quotes.
fn escape_quotes(text: &str) -> String {
    text.replace('\'', "'\\''")
}

/// The reference's `escapeRegExCharacters`.
fn escape_regex(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if ".*+?^${}()|[]\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `getEntPasswdShellCommand`: the passwd line of a user name or uid, quoted safely.
fn passwd_lookup(user: &str) -> String {
    let re = escape_regex(user);
    format!(
        " (command -v getent >/dev/null 2>&1 && getent passwd {} || grep -E {} /etc/passwd || true)",
        shell_quote(user),
        shell_quote(&format!("^{re}:|^[^:]*:[^:]*:{re}:"))
    )
}

/// The reference's `getFeatureInstallWrapperScript`; `options` are the env file's lines.
pub fn install_wrapper(feature: &ResolvedFeature, options: &[String]) -> String {
    let meta = &feature.metadata;
    let id = match &feature.source {
        FeatureSource::Oci(_) => {
            escape_quotes(super::reference::id_without_version(&feature.written))
        }
        _ => "Unknown".to_string(),
    };
    let name = escape_quotes(meta.name.as_deref().unwrap_or("Unknown"));
    let description = escape_quotes(meta.description.as_deref().unwrap_or(""));
    let version = escape_quotes(meta.version.as_deref().unwrap_or(""));
    let documentation = escape_quotes(meta.documentation_url.as_deref().unwrap_or(""));
    let options_indented = escape_quotes(
        &options
            .iter()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let mut warning = String::new();
    if meta.deprecated {
        warning.push_str(&format!(
            "(!) WARNING: Using the deprecated Feature \"{}\". This Feature will no longer receive any further updates/support.\n",
            escape_quotes(&meta.id)
        ));
    }
    let echo_warning = if warning.is_empty() {
        String::new()
    } else {
        format!("echo '{warning}'")
    };
    let troubleshooting = if documentation.is_empty() {
        String::new()
    } else {
        format!(
            " Look at the documentation at {documentation} for help troubleshooting this error."
        )
    };
    format!(
        r#"#!/bin/sh
set -e

on_exit () {{
	[ $? -eq 0 ] && exit
	echo 'ERROR: Feature "{name}" ({id}) failed to install!{troubleshooting}'
}}

trap on_exit EXIT

echo ===========================================================================
{echo_warning}
echo 'Feature       : {name}'
echo 'Description   : {description}'
echo 'Id            : {id}'
echo 'Version       : {version}'
echo 'Documentation : {documentation}'
echo 'Options       :'
echo '{options_indented}'
echo ===========================================================================

set -a
. ../devcontainer-features.builtin.env
. ./devcontainer-features.env
set +a

chmod +x ./install.sh
./install.sh
"#
    )
}

/// One `ENV` line of a feature's containerEnv (`generateContainerEnvs`: `"` and `\` escaped,
/// `$` left for Docker to expand, as `PATH=…:${PATH}` needs).
pub fn env_instruction(feature: &str, name: &str, value: &str) -> Result<String, FeatureError> {
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(FeatureError::Invalid {
            feature: feature.to_string(),
            message: format!(
                "devcontainer-feature.json: containerEnv `{name}` is not a variable name"
            ),
        });
    }
    if value.contains(['\n', '\r']) {
        return Err(FeatureError::Invalid {
            feature: feature.to_string(),
            message: format!(
                "devcontainer-feature.json: containerEnv `{name}` holds a line break, which a \
                 Dockerfile cannot carry"
            ),
        });
    }
    let mut escaped = String::new();
    for c in value.chars() {
        if c == '"' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Ok(format!("ENV {name}=\"{escaped}\""))
}

/// A name safe as a folder in the context and a path in the Dockerfile.
fn folder_name(feature: &ResolvedFeature, n: usize) -> String {
    let id: String = super::reference::short_id(&feature.source)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = if id.is_empty() || id.starts_with('.') {
        format!("feature{id}")
    } else {
        id
    };
    format!("{id}_{n}")
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> FeatureError {
    move |source| FeatureError::Io { context, source }
}

/// Copies a fetched feature's folder: directories and regular files (modes kept), symlinks made
/// again as symlinks (never followed).
fn copy_tree(from: &Path, to: &Path) -> Result<(), FeatureError> {
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    let entries = std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("reading {}", from.display())))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(io(format!("reading {}", source.display())))?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_symlink() {
            let link =
                std::fs::read_link(&source).map_err(io(format!("reading {}", source.display())))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(io(format!("writing {}", target.display())))?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(io(format!("copying {}", source.display())))?;
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), FeatureError> {
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// Writes the build context into `dir` (which should be empty): the Dockerfile, the builtin
/// env file, and one folder per feature, in `features`' order (the install order).
pub fn write_context(
    base_image: &str,
    base_image_id: &str,
    users: &ImageUsers,
    features: &[ResolvedFeature],
    dir: &Path,
) -> Result<BuildContext, FeatureError> {
    if base_image.is_empty() || base_image.contains(char::is_whitespace) {
        return Err(FeatureError::Invalid {
            feature: features
                .first()
                .map(|f| f.written.clone())
                .unwrap_or_default(),
            message: format!("base image `{base_image}` cannot be named in a Dockerfile"),
        });
    }
    for user in [&users.container_user, &users.remote_user, &users.image_user] {
        if user.contains(['\n', '\r']) || user.contains(char::is_whitespace) {
            return Err(FeatureError::Invalid {
                feature: features
                    .first()
                    .map(|f| f.written.clone())
                    .unwrap_or_default(),
                message: format!("user `{user}` cannot be named in a Dockerfile"),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;

    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        // Length-prefixed, so no two sequences of fields hash alike.
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(FORMAT_VERSION.as_bytes());
    field(base_image_id.as_bytes());
    for user in [&users.container_user, &users.remote_user, &users.image_user] {
        field(user.as_bytes());
    }
    for home in [&users.container_user_home, &users.remote_user_home] {
        field(home.as_deref().unwrap_or("\0getent").as_bytes());
    }

    let mut builtin = format!(
        "_CONTAINER_USER={}\n_REMOTE_USER={}\n",
        shell_quote(&users.container_user),
        shell_quote(&users.remote_user)
    );
    let builtin_path = format!("{FEATURES_DIR}/{BUILTIN_ENV_FILE}");
    let mut home_lookups = Vec::new();
    for (var, user, home) in [
        (
            "_CONTAINER_USER_HOME",
            &users.container_user,
            &users.container_user_home,
        ),
        (
            "_REMOTE_USER_HOME",
            &users.remote_user,
            &users.remote_user_home,
        ),
    ] {
        match home {
            Some(home) => {
                let _ = writeln!(builtin, "{var}={}", shell_quote(home));
            }
            None => home_lookups.push(format!(
                "echo \"{var}=$({} | cut -d: -f6)\" >> {builtin_path}",
                passwd_lookup(user)
            )),
        }
    }
    write(&dir.join(BUILTIN_ENV_FILE), &builtin)?;

    let mut dockerfile = format!(
        "FROM {base_image}\n\nUSER root\n\nRUN mkdir -p {FEATURES_DIR}\nCOPY --chown=root:root {BUILTIN_ENV_FILE} {FEATURES_DIR}/\n"
    );
    if !home_lookups.is_empty() {
        let _ = writeln!(dockerfile, "RUN \\\n{}", home_lookups.join(" && \\\n"));
    }
    dockerfile.push('\n');

    for (n, feature) in features.iter().enumerate() {
        let folder = folder_name(feature, n);
        let target = dir.join(&folder);
        copy_tree(&feature.fetched.dir, &target)?;
        let lines: Vec<String> = feature
            .options
            .iter()
            .map(|(name, value)| format!("{name}={}", shell_quote(value)))
            .collect();
        write(
            &target.join(FEATURE_ENV_FILE),
            &env_file(feature.options.iter()),
        )?;
        write(
            &target.join(WRAPPER_FILE),
            &install_wrapper(feature, &lines),
        )?;

        field(feature.written.as_bytes());
        field(feature.fetched.integrity.as_bytes());
        for (name, value) in &feature.options {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        for (name, value) in &feature.metadata.container_env {
            let line = env_instruction(&feature.written, name, value)?;
            field(line.as_bytes());
            dockerfile.push_str(&line);
            dockerfile.push('\n');
        }
        let dest = format!("{FEATURES_DIR}/{folder}");
        let _ = write!(
            dockerfile,
            "\nCOPY --chown=root:root {folder} {dest}\nRUN chmod -R 0755 {dest} \\\n&& cd {dest} \\\n&& chmod +x ./{WRAPPER_FILE} \\\n&& ./{WRAPPER_FILE}\n\n"
        );
    }
    let image_user = if users.image_user.is_empty() {
        "root"
    } else {
        users.image_user.as_str()
    };
    let _ = writeln!(dockerfile, "USER {image_user}");
    let dockerfile_path = dir.join("Dockerfile");
    write(&dockerfile_path, &dockerfile)?;
    Ok(BuildContext {
        dockerfile: dockerfile_path,
        context: dir.to_path_buf(),
        cache_key: hex::encode(hasher.finalize()),
    })
}
