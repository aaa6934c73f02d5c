//! A feature's id as written in devcontainer.json, parsed into where it comes from, the way the
//! reference (`getFeatureIdType`, `processFeatureIdentifier`, `getRef` in `@devcontainers/cli`)
//! tells the forms apart:
//!
//! - no `/` at all: a legacy id (`node`) → refused, with the `ghcr.io/devcontainers/features/…`
//!   form as the hint. *Differs on purpose:* the reference maps some of them silently
//!   (`getBackwardCompatibleFeatureId`) to `…/features/<id>:1`; flightdeck wants the pin written.
//! - `https://…/devcontainer-feature-<id>.tgz`: a tarball. `http://` only to `localhost` /
//!   `127.0.0.1` / `[::1]` (*differs on purpose*, for local test servers; the reference would
//!   try it as an OCI ref and fail).
//! - `./…` or `../…`: a folder that must stay inside the `.devcontainer` folder; `/…` refused.
//! - otherwise `registry/namespace/name[:tag|@sha256:…]` (the whole id lowercased first, tag
//!   included, as `getRef` does; tag defaults to `latest`). A first segment that is not a host
//!   (no `.`, not `localhost…`) is the deprecated GitHub-release shorthand
//!   `owner/repo/feature[@version]` → refused with a hint.

use std::path::{Component, Path, PathBuf};

use super::{FeatureError, FeatureSource, OciRef, OciVersion};

/// The namespace of the features that replaced the legacy ids.
pub const DEFAULT_NAMESPACE: &str = "ghcr.io/devcontainers/features";

/// Legacy ids the reference maps onto `ghcr.io/devcontainers/features/<to>:1`
/// (`getBackwardCompatibleFeatureId`): the migrated ones, and the renamed ones.
const MIGRATED: &[&str] = &[
    "aws-cli",
    "azure-cli",
    "desktop-lite",
    "docker-in-docker",
    "docker-from-docker",
    "dotnet",
    "git",
    "git-lfs",
    "github-cli",
    "java",
    "kubectl-helm-minikube",
    "node",
    "powershell",
    "python",
    "ruby",
    "rust",
    "sshd",
    "terraform",
];
const RENAMED: &[(&str, &str)] = &[("golang", "go"), ("common", "common-utils")];
/// `updateDeprecatedFeaturesIntoOptions`: legacy ids that became an option of another feature.
const INTO_OPTIONS: &[(&str, &str, &str)] = &[
    ("gradle", "java", "installGradle"),
    ("maven", "java", "installMaven"),
    ("jupyterlab", "python", "installJupyterlab"),
];

/// `regexForVersionOrDigest` in the reference.
fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    tag.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `regexForPath`: `[a-z0-9]+([._-][a-z0-9]+)*` components joined by `/`.
fn valid_path(path: &str) -> bool {
    path.split('/').all(|component| {
        !component.is_empty()
            && component.split(['.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    })
}

/// A registry host as the distribution spec has it: DNS labels, or `localhost`, with an
/// optional port.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn invalid(written: &str, message: impl Into<String>) -> FeatureError {
    FeatureError::Invalid {
        feature: written.to_string(),
        message: message.into(),
    }
}

/// What a legacy id is now, as the reference maps it: the full id to write instead.
pub fn legacy_replacement(id: &str) -> Option<String> {
    if MIGRATED.contains(&id) {
        return Some(format!("{DEFAULT_NAMESPACE}/{id}:1"));
    }
    RENAMED
        .iter()
        .find(|(old, _)| *old == id)
        .map(|(_, new)| format!("{DEFAULT_NAMESPACE}/{new}:1"))
}

/// Parses a feature id as written; `config_dir` is the folder holding the devcontainer.json.
pub fn parse(written: &str, config_dir: &Path) -> Result<FeatureSource, FeatureError> {
    if written.trim().is_empty() {
        return Err(invalid(written, "the feature id is empty"));
    }
    if !written.contains('/') && !written.contains('\\') {
        return Err(legacy(written));
    }
    if written.starts_with("https://") {
        return tarball(written);
    }
    if written.starts_with("http://") {
        return match reqwest::Url::parse(written) {
            Ok(url)
                if matches!(
                    url.host_str(),
                    Some("localhost") | Some("127.0.0.1") | Some("[::1]")
                ) =>
            {
                tarball(written)
            }
            _ => Err(invalid(
                written,
                "a feature tarball must be fetched over https; hint: write the `https://` URL",
            )),
        };
    }
    if written.starts_with("./") || written.starts_with("../") {
        return local(written, config_dir);
    }
    if written.starts_with('/') || Path::new(written).is_absolute() {
        return Err(invalid(
            written,
            "an absolute path to a local feature is not allowed (the reference refuses it too); \
             hint: put the feature in a folder inside `.devcontainer` and write `./<folder>`",
        ));
    }
    oci(written)
}

fn legacy(written: &str) -> FeatureError {
    let hint = if let Some(full) = legacy_replacement(written) {
        format!("hint: write \"{full}\" (what the reference maps `{written}` to)")
    } else if let Some((_, into, option)) = INTO_OPTIONS.iter().find(|(old, _, _)| *old == written)
    {
        format!(
            "hint: `{written}` is now an option of another feature: write \
             \"{DEFAULT_NAMESPACE}/{into}:1\": {{ \"{option}\": true }}"
        )
    } else {
        format!(
            "hint: find its replacement at https://containers.dev/features and write its full id \
             (such as \"{DEFAULT_NAMESPACE}/{written}:1\"), or write \"./{written}\" for a folder \
             inside `.devcontainer`"
        )
    };
    invalid(
        written,
        format!("legacy feature ids without a registry are not supported; {hint}"),
    )
}

/// `processFeatureIdentifier`'s direct-tarball branch: the last path segment must match
/// `devcontainer-feature-(.*).tgz` (unanchored, as the reference's regex) with an id of
/// `[a-zA-Z0-9_-]+`.
fn tarball(written: &str) -> Result<FeatureSource, FeatureError> {
    let url =
        reqwest::Url::parse(written).map_err(|e| invalid(written, format!("not a URL: {e}")))?;
    let name = url.path().rsplit('/').next().unwrap_or("");
    if tarball_id(name).is_none() {
        return Err(invalid(
            written,
            format!(
                "a feature tarball must be named `devcontainer-feature-<id>.tgz` with an id of \
                 letters, digits, `-` and `_`; got `{name}`"
            ),
        ));
    }
    Ok(FeatureSource::Tarball(url.to_string()))
}

/// The id in a tarball's file name, as the reference's `devcontainer-feature-(.*).tgz` finds it.
pub fn tarball_id(name: &str) -> Option<&str> {
    let start = name.find("devcontainer-feature-")? + "devcontainer-feature-".len();
    let rest = &name[start..];
    // Greedy `(.*)` then any one character then `tgz`: the last `tgz` with a character before.
    let end = rest
        .rmatch_indices("tgz")
        .map(|(i, _)| i)
        .find(|&i| i >= 1)?;
    let id = rest.get(..end - 1)?;
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(id)
}

/// The `.devcontainer` folder local features must live in: the reference checks against
/// `<workspace>/.devcontainer` whatever the config's own folder is.
fn devcontainer_folder(config_dir: &Path) -> PathBuf {
    let config_dir = normalize(config_dir);
    for ancestor in config_dir.ancestors() {
        if ancestor.file_name().is_some_and(|n| n == ".devcontainer") {
            return ancestor.to_path_buf();
        }
    }
    config_dir.join(".devcontainer")
}

fn local(written: &str, config_dir: &Path) -> Result<FeatureSource, FeatureError> {
    let folder = normalize(&config_dir.join(written));
    let parent = devcontainer_folder(config_dir);
    let inside = folder
        .strip_prefix(&parent)
        .ok()
        .filter(|relative| !relative.as_os_str().is_empty());
    // The reference refuses any relative path holding `..`, even inside a name.
    match inside {
        Some(relative) if !relative.to_string_lossy().contains("..") => {
            Ok(FeatureSource::Local(folder))
        }
        _ => Err(invalid(
            written,
            format!(
                "a local feature must be a folder inside `{}`; `{written}` resolves to `{}`; hint: \
                 move the feature into a subfolder of `.devcontainer` and write `./<folder>`",
                parent.display(),
                folder.display()
            ),
        )),
    }
}

/// Lexical normalization (no symlinks followed: the fetcher checks those).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `getRef`, plus the reference's rule that only a host-like first segment is a registry.
fn oci(written: &str) -> Result<FeatureSource, FeatureError> {
    let input = written.to_lowercase();
    if input.starts_with('.') {
        return Err(invalid(written, "an OCI reference cannot start with `.`"));
    }
    let (resource, version) = if let Some(at) = input.rfind('@') {
        let digest = &input[at + 1..];
        let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
            github_shorthand(written).unwrap_or_else(|| {
                invalid(
                    written,
                    format!("`@{digest}`: a digest must be `sha256:<64 hex digits>`"),
                )
            })
        })?;
        // The reference only logs a malformed digest; a registry would refuse it anyway.
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                written,
                format!("`@{digest}`: a digest must be `sha256:<64 hex digits>`"),
            ));
        }
        (&input[..at], OciVersion::Digest(digest.to_string()))
    } else {
        match input.rfind(':') {
            Some(colon) if colon > input.rfind('/').unwrap_or(0) => {
                let tag = &input[colon + 1..];
                if !valid_tag(tag) {
                    return Err(invalid(
                        written,
                        format!(
                            "tag `{tag}` is not a valid OCI tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}`)"
                        ),
                    ));
                }
                (&input[..colon], OciVersion::Tag(tag.to_string()))
            }
            _ => (input.as_str(), OciVersion::Tag("latest".to_string())),
        }
    };
    let mut segments: Vec<&str> = resource.split('/').collect();
    let registry = segments.first().copied().unwrap_or("");
    if !registry.contains('.') && !registry.starts_with("localhost") {
        return Err(github_shorthand(written).unwrap_or_else(|| {
            invalid(
                written,
                format!(
                    "`{registry}` is not a registry host; hint: write \
                     `registry/namespace/name[:version]`, such as \"{DEFAULT_NAMESPACE}/node:1\""
                ),
            )
        }));
    }
    if !valid_registry(registry) {
        return Err(invalid(
            written,
            format!("`{registry}` is not a valid registry host[:port]"),
        ));
    }
    if segments.len() < 3 {
        return Err(invalid(
            written,
            "an OCI feature id needs a namespace: `registry/namespace/name`; hint: such as \
             \"ghcr.io/devcontainers/features/node:1\"",
        ));
    }
    // The reference redirects the retired namespace to its successor (`getRef`).
    if segments[1] == "devcontainers-contrib" {
        segments[1] = "devcontainers-extra";
    }
    let repository = segments[1..].join("/");
    if !valid_path(&repository) {
        return Err(invalid(
            written,
            format!(
                "`{repository}` is not a valid OCI repository path (lowercase letters, digits, \
                 and `.`, `_`, `-` between them)"
            ),
        ));
    }
    Ok(FeatureSource::Oci(OciRef {
        registry: registry.to_string(),
        repository,
        version,
    }))
}

/// `owner/repo/feature[@version]`: the GitHub-release form the reference falls back to.
fn github_shorthand(written: &str) -> Option<FeatureError> {
    let (blob, version) = match written.split_once('@') {
        Some((blob, version)) => (blob, Some(version)),
        None => (written, None),
    };
    let parts: Vec<&str> = blob.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) || parts[0].contains('.') {
        return None;
    }
    let tag = version.map(|v| format!(":{v}")).unwrap_or_default();
    Some(invalid(
        written,
        format!(
            "features from GitHub releases (`owner/repo/feature@version`) are deprecated and not \
             supported; hint: features are published to OCI registries now: write \
             \"ghcr.io/{}/{}/{}{tag}\" if it is published there, or find its replacement at \
             https://containers.dev/features (such as \"{DEFAULT_NAMESPACE}/<name>:<major>\")",
            parts[0].to_lowercase(),
            parts[1].to_lowercase(),
            parts[2].to_lowercase()
        ),
    ))
}

/// The id without version used to match `installsAfter`, `dependsOn` and
/// `overrideFeatureInstallOrder` (the reference compares `featureRef.resource`, the resolved
/// file path, or the tarball URL): `registry/repository`, the folder's absolute path, the URL.
pub fn canonical_id(source: &FeatureSource) -> String {
    match source {
        FeatureSource::Oci(r) => format!("{}/{}", r.registry, r.repository),
        FeatureSource::Local(path) => path.display().to_string(),
        FeatureSource::Tarball(url) => url.clone(),
    }
}

/// The feature's short id as the reference derives it from the reference (`featureRef.id`, the
/// folder's base name, the tarball's `devcontainer-feature-<id>.tgz`): names its folder in the
/// build context (`<id>_<n>`).
pub fn short_id(source: &FeatureSource) -> String {
    match source {
        FeatureSource::Oci(r) => r.repository.rsplit('/').next().unwrap_or("").to_string(),
        FeatureSource::Local(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        FeatureSource::Tarball(url) => reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                let name = u.path().rsplit('/').next().unwrap_or("").to_string();
                tarball_id(&name).map(str::to_string)
            })
            .unwrap_or_default(),
    }
}

/// `getFeatureIdWithoutVersion`: the id as written without its `:tag` / `@digest`
/// (`/[:@][^/]*$/` removed).
pub fn id_without_version(written: &str) -> &str {
    for (i, c) in written.char_indices() {
        if (c == ':' || c == '@') && !written[i + 1..].contains('/') {
            return &written[..i];
        }
    }
    written
}
