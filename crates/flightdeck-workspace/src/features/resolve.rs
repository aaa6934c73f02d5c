//! The whole walk, as the reference's `generateFeaturesConfig` /
//! `computeDependsOnInstallationOrder` do it: the features of devcontainer.json in order, then
//! (breadth first) what their `dependsOn` name, each parsed, pinned by the lock file, fetched,
//! its metadata read, equal ones kept once; then ordered ([`super::order`]).
//!
//! Two features are the same node when they are of one kind, name one canonical id, resolve
//! to one digest and have equal options (the reference's `equals`); the first seen is kept (a
//! feature from devcontainer.json before one only depended on).
//!
//! *Differs on purpose:*
//! - a feature asking for `privileged`, `capAdd`, `securityOpt` or a bind mount is refused:
//!   flightdeck does not run privileged containers nor mount host paths for a feature;
//! - for a feature the lock file pins, a fetched digest other than the pin is an error (the
//!   reference fetches the manifest by the pinned digest too, and a tarball must match; the
//!   same here, plus the check after the fact);
//! - `installsAfter` targets are not fetched (see [`super::order`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::lock::{LockedFeature, Lockfile};
use super::metadata::{self, FeatureMetadata};
use super::order::{self, OrderNode};
use super::{reference, FeatureError, FeatureSource, FetchedFeature, OciVersion};
use crate::devcontainer::Mount;

/// A feature ready to install.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedFeature {
    /// The id as written in devcontainer.json, or in the `dependsOn` that brought it.
    pub written: String,
    /// Where it was fetched from (an OCI tag replaced by the lock file's digest when pinned).
    pub source: FeatureSource,
    pub canonical_id: String,
    pub fetched: FetchedFeature,
    pub metadata: FeatureMetadata,
    /// Install-time variables (`getSafeId` of the option → value).
    pub options: BTreeMap<String, String>,
    /// The value given in devcontainer.json (or the `dependsOn`).
    pub user_options: Value,
    /// Brought in by another feature's `dependsOn`, not named in devcontainer.json.
    pub auto_added: bool,
    /// What was passed through that a person may want to know (see
    /// [`metadata::option_values_noted`]).
    pub notes: Vec<String>,
}

impl ResolvedFeature {
    /// The manifest digest (OCI: from `registry/repository@sha256:…`) or the integrity: what
    /// the lock file records as `integrity`, as the reference's `computedDigest`.
    pub fn pin_digest(&self) -> String {
        match &self.source {
            FeatureSource::Oci(_) => self
                .fetched
                .resolved
                .rsplit_once('@')
                .map(|(_, digest)| digest.to_string())
                .filter(|d| super::lock::is_sha256_digest(d))
                .unwrap_or_else(|| self.fetched.integrity.clone()),
            _ => self.fetched.integrity.clone(),
        }
    }
}

struct Pending {
    written: String,
    value: Value,
    auto_added: bool,
    /// The node (index into `nodes`) whose `dependsOn` named this one.
    parent: Option<usize>,
}

/// Resolves `features` (devcontainer.json's, in its order) and all they depend on, fetching
/// each into `scratch/<n>`; returns them in install order.
pub async fn resolve(
    features: &[(String, Value)],
    config_dir: &Path,
    lock: Option<&Lockfile>,
    override_order: &[String],
    fetcher: &dyn super::Fetch,
    scratch: &Path,
) -> Result<Vec<ResolvedFeature>, FeatureError> {
    let mut queue: std::collections::VecDeque<Pending> = features
        .iter()
        .map(|(written, value)| Pending {
            written: written.clone(),
            value: value.clone(),
            auto_added: false,
            parent: None,
        })
        .collect();
    let mut nodes: Vec<ResolvedFeature> = Vec::new();
    let mut hard: Vec<Vec<usize>> = Vec::new();
    // Fetched once per source, whatever options it is used with.
    let mut fetched: Vec<(FeatureSource, FetchedFeature, FeatureMetadata)> = Vec::new();

    while let Some(item) = queue.pop_front() {
        let shown = match (&item.parent, item.auto_added) {
            (Some(p), true) => format!("{} (dependsOn of `{}`)", item.written, nodes[*p].written),
            _ => item.written.clone(),
        };
        if nodes.len() + fetched.len() >= 2 * MAX_FEATURES {
            return Err(FeatureError::Refused {
                feature: shown,
                message: format!(
                    "more than {MAX_FEATURES} features (with what they depend on)\nhint: a definition needs far fewer; look for a `dependsOn` chain that never ends"
                ),
            });
        }
        let parsed = reference::parse(&item.written, config_dir).map_err(|e| rename(e, &shown))?;
        if let FeatureSource::Local(path) = &parsed {
            confine_local(path, config_dir, &shown)?;
        }
        let pinned = lock.and_then(|l| lookup(l, &item.written, &parsed));
        let source = pin(&parsed, pinned, &shown)?;
        let existing = fetched.iter().position(|(s, _, _)| *s == source);
        let (got, meta) = match existing {
            Some(i) => (fetched[i].1.clone(), fetched[i].2.clone()),
            None => {
                let into = scratch.join(fetched.len().to_string());
                std::fs::create_dir_all(&into).map_err(|source| FeatureError::Io {
                    context: format!("feature `{shown}`: creating {}", into.display()),
                    source,
                })?;
                let got = match fetcher.fetch(&shown, &source, &into).await {
                    // A digest the lock file pins and the registry does not have: the lock
                    // file is what to look at.
                    Err(FeatureError::Fetch { feature, message })
                        if pinned.is_some() && message.contains("HTTP 404") =>
                    {
                        return Err(FeatureError::Integrity {
                            feature,
                            message: format!(
                                "devcontainer-lock.json pins {}, which the registry does not have ({message})\nhint: if the change is expected, delete the feature's entry from the lock file (or run `flightdeck workspace lock`)",
                                pinned.map_or("", |p| p.integrity.as_str())
                            ),
                        });
                    }
                    other => other?,
                };
                let meta = metadata::read(&got.dir, &shown)?;
                refuse_unsafe(&meta, &shown)?;
                fetched.push((source.clone(), got.clone(), meta.clone()));
                (got, meta)
            }
        };
        let candidate = ResolvedFeature {
            written: item.written.clone(),
            canonical_id: reference::canonical_id(&parsed),
            source: source.clone(),
            fetched: got,
            metadata: meta,
            options: BTreeMap::new(),
            user_options: item.value.clone(),
            auto_added: item.auto_added,
            notes: Vec::new(),
        };
        if let Some(pin) = pinned {
            let digest = candidate.pin_digest();
            if digest != pin.integrity {
                return Err(FeatureError::Integrity {
                    feature: shown,
                    message: format!(
                        "fetched {digest}, but devcontainer-lock.json pins {}; hint: if the \
                         change is expected, delete the feature's entry from the lock file",
                        pin.integrity
                    ),
                });
            }
        }
        let kind = std::mem::discriminant(&candidate.source);
        let same = nodes.iter().position(|n| {
            std::mem::discriminant(&n.source) == kind
                && n.canonical_id == candidate.canonical_id
                && n.pin_digest() == candidate.pin_digest()
                && order::options_cmp(&n.user_options, &candidate.user_options)
                    == std::cmp::Ordering::Equal
        });
        let index = match same {
            Some(i) => i,
            None => {
                let values =
                    metadata::option_values_noted(&candidate.metadata, &shown, &item.value)?;
                let mut candidate = candidate;
                candidate.options = values.env;
                candidate.notes = values.notes;
                for (dep, options) in &candidate.metadata.depends_on {
                    queue.push_back(Pending {
                        written: dep.clone(),
                        value: options.clone(),
                        auto_added: true,
                        parent: Some(nodes.len()),
                    });
                }
                nodes.push(candidate);
                hard.push(Vec::new());
                nodes.len() - 1
            }
        };
        if let Some(parent) = item.parent {
            if parent != index && !hard[parent].contains(&index) {
                hard[parent].push(index);
            } else if parent == index {
                return Err(FeatureError::Order(format!(
                    "`{}` depends on itself",
                    nodes[parent].written
                )));
            }
        }
    }

    let mut overrides = Vec::new();
    for written in override_order {
        let source = reference::parse(written, config_dir)
            .map_err(|e| rename(e, &format!("{written} (in overrideFeatureInstallOrder)")))?;
        overrides.push(reference::canonical_id(&source));
    }
    let order_nodes: Vec<OrderNode> = nodes
        .iter()
        .zip(&hard)
        .map(|(n, deps)| OrderNode {
            written: n.written.clone(),
            source: reference::parse(&n.written, config_dir).unwrap_or_else(|_| n.source.clone()),
            digest: n.pin_digest(),
            options: n.user_options.clone(),
            aliases: std::iter::once(n.metadata.id.clone())
                .chain(n.metadata.legacy_ids.iter().cloned())
                .collect(),
            depends_on: deps.clone(),
            installs_after: n
                .metadata
                .installs_after
                .iter()
                .filter_map(|id| soft_target(id, config_dir))
                .collect(),
        })
        .collect();
    let order = order::install_order(&order_nodes, &overrides)?;
    let mut slots: Vec<Option<ResolvedFeature>> = nodes.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect())
}

/// An `installsAfter` entry as a canonical id; a legacy id as what the reference maps it to;
/// one that names nothing parseable cannot match a member, so it is dropped.
fn soft_target(id: &str, config_dir: &Path) -> Option<String> {
    match reference::parse(id, config_dir) {
        Ok(source) => Some(reference::canonical_id(&source)),
        Err(_) => reference::legacy_replacement(id)
            .and_then(|full| reference::parse(&full, config_dir).ok())
            .map(|source| reference::canonical_id(&source)),
    }
}

/// The lock entry for a feature: by the id as written (the tarball URL for a tarball, as the
/// reference keys both).
fn lookup<'a>(
    lock: &'a Lockfile,
    written: &str,
    source: &FeatureSource,
) -> Option<&'a LockedFeature> {
    match source {
        FeatureSource::Local(_) => None,
        FeatureSource::Tarball(url) => lock
            .features
            .get(written)
            .or_else(|| lock.features.get(url)),
        FeatureSource::Oci(_) => lock.features.get(written),
    }
}

/// An OCI tag replaced by the pinned manifest digest (`fetchOCIFeatureManifestIfExistsFromUserIdentifier`
/// with the lock's integrity).
fn pin(
    source: &FeatureSource,
    pinned: Option<&LockedFeature>,
    shown: &str,
) -> Result<FeatureSource, FeatureError> {
    match (source, pinned) {
        (FeatureSource::Oci(r), Some(pin)) if matches!(r.version, OciVersion::Tag(_)) => {
            if !super::lock::is_sha256_digest(&pin.integrity) {
                return Err(FeatureError::Integrity {
                    feature: shown.to_string(),
                    message: format!(
                        "devcontainer-lock.json pins `{}`, not a sha256 digest",
                        pin.integrity
                    ),
                });
            }
            let mut r = r.clone();
            r.version = OciVersion::Digest(pin.integrity.clone());
            Ok(FeatureSource::Oci(r))
        }
        _ => Ok(source.clone()),
    }
}

fn refuse_unsafe(meta: &FeatureMetadata, shown: &str) -> Result<(), FeatureError> {
    let hint = "hint: flightdeck does not run privileged containers; use a feature that does not \
                need it, or install what you need in the image's Dockerfile";
    let refuse = |what: String| FeatureError::Refused {
        feature: shown.to_string(),
        message: format!("devcontainer-feature.json asks for {what}; {hint}"),
    };
    if meta.privileged == Some(true) {
        return Err(refuse("`privileged: true`".to_string()));
    }
    if !meta.cap_add.is_empty() {
        return Err(refuse(format!("`capAdd: {:?}`", meta.cap_add)));
    }
    if !meta.security_opt.is_empty() {
        return Err(refuse(format!("`securityOpt: {:?}`", meta.security_opt)));
    }
    if let Some(Mount::Bind { source, target, .. }) =
        meta.mounts.iter().find(|m| matches!(m, Mount::Bind { .. }))
    {
        return Err(FeatureError::Refused {
            feature: shown.to_string(),
            message: format!(
                "devcontainer-feature.json mounts the host's `{}` at `{target}`; hint: flightdeck \
                 does not give features host paths",
                source.display()
            ),
        });
    }
    Ok(())
}

/// The same error, naming the feature as `shown`.
fn rename(error: FeatureError, shown: &str) -> FeatureError {
    match error {
        FeatureError::Invalid { message, .. } => FeatureError::Invalid {
            feature: shown.to_string(),
            message,
        },
        other => other,
    }
}

/// The most features one definition installs, with everything they depend on.
pub const MAX_FEATURES: usize = 100;

/// A local feature's folder, symlinks resolved, must be inside the `.devcontainer` folder
/// (the id is checked lexically when parsed; a symlinked folder on its path could lead out).
fn confine_local(path: &Path, config_dir: &Path, shown: &str) -> Result<(), FeatureError> {
    let real = |p: &Path| {
        std::fs::canonicalize(p).map_err(|source| FeatureError::Io {
            context: format!("feature `{shown}`: resolving {}", p.display()),
            source,
        })
    };
    let (folder, dir) = (real(path)?, real(config_dir)?);
    if !folder.starts_with(&dir) {
        return Err(FeatureError::Refused {
            feature: shown.to_string(),
            message: format!(
                "{} resolves to {}, outside {}\nhint: keep a local feature's folder inside the .devcontainer folder, without symbolic links leading out",
                path.display(),
                folder.display(),
                dir.display()
            ),
        });
    }
    Ok(())
}

/// The lock file for `resolved` (`generateLockfile`): OCI and tarball features, keyed by the id
/// as written; when two share an id, the later in install order wins, as there.
pub fn lockfile_of(resolved: &[ResolvedFeature]) -> Lockfile {
    let mut lock = Lockfile::default();
    for feature in resolved {
        let resolved_text = match &feature.source {
            FeatureSource::Local(_) => continue,
            FeatureSource::Oci(r) => {
                format!("{}/{}@{}", r.registry, r.repository, feature.pin_digest())
            }
            FeatureSource::Tarball(url) => url.clone(),
        };
        let deps: Vec<String> = feature.metadata.depends_on.keys().cloned().collect();
        lock.features.insert(
            feature.written.clone(),
            LockedFeature {
                version: feature.metadata.version.clone(),
                resolved: resolved_text,
                integrity: feature.pin_digest(),
                depends_on: (!deps.is_empty()).then_some(deps),
            },
        );
    }
    lock
}
