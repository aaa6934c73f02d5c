//! Dev container features: what a devcontainer.json's `features` name, fetched, verified,
//! ordered and installed into a layered image the way the specification (and its reference,
//! `@devcontainers/cli`) does.
//!
//! - `reference.rs`: a feature's id as written, parsed into where it comes from.
//! - `fetch.rs`: getting a feature's files: the OCI distribution API (manifest, blob, bearer
//!   token challenge), a tarball URL, or a local folder; every byte checked against its digest.
//! - `metadata.rs`: `devcontainer-feature.json` (options with types and defaults,
//!   `containerEnv`, `mounts`, `init`, `privileged`, `capAdd`, `entrypoint`, lifecycle commands,
//!   `installsAfter`, `dependsOn`) and the option values turned into install-time variables.
//! - `order.rs`: the install order (`dependsOn`, `installsAfter`, `overrideFeatureInstallOrder`).
//! - `lock.rs`: `devcontainer-lock.json`, read and written.
//! - `build.rs`: the build context of the layered image (one layer per feature).
//! - `image.rs`: the layered image built (or found in the cache) for a base image.
//! - `resolve.rs`: the whole walk: every feature and what it depends on, fetched (pinned by the
//!   lock file when there is one), read, ordered.

pub mod build;
pub mod fetch;
pub mod image;
pub mod lock;
pub mod metadata;
pub mod order;
pub mod reference;
pub mod resolve;

use std::path::PathBuf;

use serde::Serialize;

/// Where a feature comes from, as its id in devcontainer.json says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureSource {
    /// `registry/path/name[:tag|@sha256:…]`; the tag defaults to `latest`.
    Oci(OciRef),
    /// `./name`: a folder inside the `.devcontainer` folder (absolute, resolved).
    Local(PathBuf),
    /// `https://…/devcontainer-feature-NAME.tgz`.
    Tarball(String),
}

/// An OCI reference: `registry` (`ghcr.io`, `localhost:5000`), `repository`
/// (`devcontainers/features/node`) and a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OciRef {
    pub registry: String,
    pub repository: String,
    pub version: OciVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OciVersion {
    Tag(String),
    /// `sha256:<64 hex>`.
    Digest(String),
}

/// A feature's files, fetched and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchedFeature {
    /// The folder holding `devcontainer-feature.json` and `install.sh` (inside the caller's
    /// scratch directory; a local feature is copied there too, so nothing reads the repository
    /// after this).
    pub dir: PathBuf,
    /// What it resolved to, to pin it: `registry/repository@sha256:<manifest>` for OCI, the URL
    /// for a tarball, the path relative to the `.devcontainer` folder for a local folder.
    pub resolved: String,
    /// `sha256:…` of the bytes fetched: the layer blob (OCI), the tarball, or for a local folder
    /// the digest of its files (paths, modes and contents in path order).
    pub integrity: String,
}

/// What went wrong with a feature; every message names the feature as written.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The id or the value given for it in devcontainer.json is not usable.
    #[error("feature `{feature}`: {message}")]
    Invalid { feature: String, message: String },
    /// Fetching failed (network, status, auth, size).
    #[error("feature `{feature}`: {message}")]
    Fetch { feature: String, message: String },
    /// Bytes did not match their digest, or the lock file's pin.
    #[error("feature `{feature}`: {message}")]
    Integrity { feature: String, message: String },
    /// The feature asks for what flightdeck refuses (`privileged`, `capAdd`, host mounts…).
    #[error("feature `{feature}`: {message}")]
    Refused { feature: String, message: String },
    /// `dependsOn` cycles, or an order that cannot be satisfied.
    #[error("features: {0}")]
    Order(String),
    /// Reading or writing local files.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Gets a feature's files into `into` (a fresh, empty folder the caller owns), checked. The
/// live implementation is [`fetch::RegistryFetcher`]; tests may fake it.
#[async_trait::async_trait]
pub trait Fetch: Send + Sync {
    /// `feature` is the id as written in devcontainer.json (for messages).
    async fn fetch(
        &self,
        feature: &str,
        source: &FeatureSource,
        into: &std::path::Path,
    ) -> Result<FetchedFeature, FeatureError>;
}
