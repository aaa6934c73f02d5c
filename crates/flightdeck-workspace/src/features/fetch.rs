//! Getting a feature's files, the way the reference (`@devcontainers/cli`) does, with every host
//! checked against what the installation allows and every byte against its digest.
//!
//! - OCI (`FeatureSource::Oci`): `GET /v2/<repository>/manifests/<tag|digest>` (Accept
//!   `application/vnd.oci.image.manifest.v1+json`), the manifest's config must be
//!   `application/vnd.devcontainers`, its first layer is the feature's tar (`GET
//!   /v2/<repository>/blobs/<digest>`). A `401`/`403` is answered once: a `Bearer` challenge by
//!   a token from its realm (with the registry's credentials when there are some, anonymously
//!   otherwise or when they are refused), a `Basic` one with the credentials. The reference's
//!   `fetchOCIManifestIfExists` / `getManifest`, `getBlob`, `requestEnsureAuthenticated`,
//!   `fetchRegistryBearerToken`.
//! - Tarball (`FeatureSource::Tarball`): one `GET`, gzip or plain tar; the reference's
//!   `fetchContentsAtTarballUri` (it leaves out top-level dot files and
//!   `devcontainer-features.tgz`, so do we).
//! - Local (`FeatureSource::Local`): the folder copied, so nothing reads the repository after.
//!
//! Redirects are followed here, not by the HTTP client: each hop's host must be allowed, and an
//! `Authorization` header only ever goes to the origin it was made for.

mod archive;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{FeatureError, FeatureSource, Fetch, FetchedFeature, OciRef, OciVersion};

/// The most a blob or a tarball may weigh, unless the settings say otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// What the manifest request asks for (the reference asks for this one only).
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// A feature's manifest's config media type; the reference refuses any other.
pub const FEATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.devcontainers";
/// A feature's layer media type, as `devcontainer features publish` writes it. The reference
/// takes the first layer whatever its media type, and so do we.
pub const FEATURE_LAYER_MEDIA_TYPE: &str = "application/vnd.devcontainers.layer.v1+tar";

/// A manifest larger than this is not one (the distribution spec's registries cap them at 4 MiB).
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// A token response larger than this is not one.
const MAX_TOKEN_BYTES: u64 = 1024 * 1024;
const MAX_REDIRECTS: usize = 10;
/// Entries an archive (or a local folder) may hold.
const MAX_ENTRIES: usize = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const USER_AGENT: &str = concat!("flightdeck/", env!("CARGO_PKG_VERSION"), " (devcontainer)");

/// A registry's credentials (from flightdeck's secrets, never from the repository).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Hosts a registry of this machine is named by: spoken to over plain HTTP, as the reference
/// does for `localhost` (put them in [`FetchSettings::plain_http`]).
pub const LOCAL_REGISTRY_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// What a [`RegistryFetcher`] may reach and with what.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// Registry, token and tarball hosts that may be reached: `host` (any port), `host:port`,
    /// `*.example.com` (any host below it). Anything else is refused before it is asked.
    pub allowed_hosts: Vec<String>,
    /// Credentials by registry host (`ghcr.io`, `localhost:5000`), as the feature id names it.
    pub credentials: BTreeMap<String, RegistryCredential>,
    /// Hosts spoken to over `http://` (loopback test registries), same patterns as
    /// `allowed_hosts`; every other host over `https://`.
    pub plain_http: Vec<String>,
    /// The most a blob or a tarball may weigh; what an archive unpacks to may be four times it.
    pub max_bytes: u64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            allowed_hosts: Vec::new(),
            credentials: BTreeMap::new(),
            plain_http: Vec::new(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Whether `host` (and `port`, when the URL has one or its scheme implies one) matches
/// `pattern`: `host` (any port), `host:port`, `[v6]`, `[v6]:port`, `*.example.com` (any host
/// below `example.com`, any port; `*.example.com:443` that port only). Case-insensitive.
pub fn host_matches(pattern: &str, host: &str, port: Option<u16>) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let (name, wanted_port) = split_host_port(&pattern);
    if let Some(wanted) = wanted_port {
        if Some(wanted) != port {
            return false;
        }
    }
    match name.strip_prefix("*.") {
        Some(suffix) => {
            !suffix.is_empty()
                && host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => !name.is_empty() && name == host,
    }
}

/// `host[:port]` or `[v6][:port]` into the name (brackets removed) and the port, if any.
fn split_host_port(pattern: &str) -> (&str, Option<u16>) {
    if let Some(rest) = pattern.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (name, port);
        }
        return (pattern, None);
    }
    match pattern.rsplit_once(':') {
        // One colon and digits after it: a port. More colons: a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            match port.parse() {
                Ok(port) => (name, Some(port)),
                Err(_) => (pattern, None),
            }
        }
        _ => (pattern, None),
    }
}

fn any_matches(patterns: &[String], url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let port = url.port_or_known_default();
    patterns.iter().any(|p| host_matches(p, host, port))
}

/// `host` or `host:port` as the URL says it (for messages and for the allow-list hint).
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// `scheme://host:port`: what an `Authorization` header is bound to.
fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("").to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// An `Authorization` header and the origin it may be sent to.
struct Authz {
    origin: String,
    header: String,
}

/// Fetches features from OCI registries, tarball URLs and local folders; see the module docs.
pub struct RegistryFetcher {
    settings: FetchSettings,
    client: reqwest::Client,
    /// `Authorization` headers that worked, by `registry/repository` (the reference keeps them
    /// by registry; tokens are scoped to a repository, so we keep them by repository).
    auth: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for RegistryFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryFetcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl RegistryFetcher {
    pub fn new(settings: FetchSettings) -> Result<Self, FeatureError> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| FeatureError::Io {
                context: "cannot make the HTTP client for features".to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(RegistryFetcher {
            settings,
            client,
            auth: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    fn limits(&self) -> archive::Limits {
        archive::Limits {
            max_file_bytes: self.settings.max_bytes,
            max_total_bytes: self.settings.max_bytes.saturating_mul(4),
            max_entries: MAX_ENTRIES,
        }
    }

    /// Refuses a URL flightdeck may not reach: a host not allowed, plain http to a host not
    /// in `plain_http`, credentials in the URL.
    fn check_url(&self, feature: &str, url: &Url) -> Result<(), FeatureError> {
        let refused = |message: String| FeatureError::Refused {
            feature: feature.to_string(),
            message,
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(refused(format!("`{url}` names no host")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused(
                "a URL with credentials in it is not fetched; give registry credentials to \
                 flightdeck as secrets instead"
                    .to_string(),
            ));
        }
        let host = authority(url);
        match url.scheme() {
            "https" => {}
            "http" if any_matches(&self.settings.plain_http, url) => {}
            "http" => {
                return Err(refused(format!(
                    "`{host}` would be reached over plain http ({url}); only hosts listed as \
                     plain http (loopback test registries) are"
                )))
            }
            other => {
                return Err(refused(format!(
                    "`{url}`: scheme `{other}` is not fetched (https only)"
                )))
            }
        }
        if !any_matches(&self.settings.allowed_hosts, url) {
            return Err(refused(format!(
                "host `{host}` may not be reached (fetching {url})\nhint: add `{host}` to the \
                 template's [workspace] egress"
            )));
        }
        Ok(())
    }

    /// One GET, following redirects by hand: every hop checked, `Authorization` sent only to
    /// its origin. Returns the response and the URL that gave it.
    async fn get(
        &self,
        feature: &str,
        url: Url,
        accept: Option<&str>,
        authz: Option<&Authz>,
    ) -> Result<(Response, Url), FeatureError> {
        let mut url = url;
        for _ in 0..=MAX_REDIRECTS {
            self.check_url(feature, &url)?;
            let mut request = self.client.get(url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authz) = authz {
                if origin(&url) == authz.origin {
                    let mut value =
                        HeaderValue::from_str(&authz.header).map_err(|_| FeatureError::Fetch {
                            feature: feature.to_string(),
                            message: format!(
                                "GET {url}: the authorization the registry gave cannot be sent \
                                 as a header"
                            ),
                        })?;
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
            }
            let response = request
                .send()
                .await
                .map_err(|e| send_error(feature, &url, &e))?;
            if response.status().is_redirection() {
                if let Some(location) = response.headers().get(LOCATION) {
                    let next = location
                        .to_str()
                        .ok()
                        .and_then(|l| url.join(l).ok())
                        .ok_or_else(|| FeatureError::Fetch {
                            feature: feature.to_string(),
                            message: format!(
                                "GET {url}: HTTP {} with a Location that is not a URL",
                                response.status()
                            ),
                        })?;
                    url = next;
                    continue;
                }
            }
            return Ok((response, url));
        }
        Err(FeatureError::Fetch {
            feature: feature.to_string(),
            message: format!("GET {url}: more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// A GET to a registry, answering one authentication challenge (the reference's
    /// `requestEnsureAuthenticated`).
    async fn registry_get(
        &self,
        feature: &str,
        oci: &OciRef,
        url: Url,
        accept: Option<&str>,
    ) -> Result<(Response, Url), FeatureError> {
        let registry_origin = origin(&url);
        let key = format!("{}/{}", oci.registry, oci.repository);
        let cached = self.cached_auth(&key).map(|header| Authz {
            origin: registry_origin.clone(),
            header,
        });
        let (response, final_url) = self
            .get(feature, url.clone(), accept, cached.as_ref())
            .await?;
        let status = response.status();
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
            return Ok((response, final_url));
        }
        if origin(&final_url) != registry_origin {
            // Only the registry's own challenge is answered (never one from a storage host it
            // redirected to).
            return Err(status_error(feature, &final_url, status, &oci.registry));
        }
        let Some(challenge) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return Err(status_error(feature, &final_url, status, &oci.registry));
        };
        let header = self
            .answer_challenge(feature, oci, &url, status, &challenge)
            .await?;
        let authz = Authz {
            origin: registry_origin,
            header,
        };
        let (response, final_url) = self.get(feature, url, accept, Some(&authz)).await?;
        if response.status().is_success() {
            self.remember_auth(key, authz.header);
        }
        Ok((response, final_url))
    }

    fn cached_auth(&self, key: &str) -> Option<String> {
        let map = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn remember_auth(&self, key: String, header: String) {
        let mut map = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, header);
    }

    fn basic(&self, registry: &str) -> Option<String> {
        self.settings.credentials.get(registry).map(|c| {
            let pair = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        })
    }

    /// The `Authorization` header that answers `challenge`.
    async fn answer_challenge(
        &self,
        feature: &str,
        oci: &OciRef,
        url: &Url,
        status: StatusCode,
        challenge: &str,
    ) -> Result<String, FeatureError> {
        let (scheme, params) = parse_challenge(challenge);
        let fail = |message: String| FeatureError::Fetch {
            feature: feature.to_string(),
            message: format!("GET {url}: HTTP {status}: {message}"),
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self.basic(&oci.registry).ok_or_else(|| {
                fail(format!(
                    "the registry wants credentials (Basic); configure credentials for `{}` \
                     in flightdeck's secrets",
                    oci.registry
                ))
            }),
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| fail("the Bearer challenge names no realm".to_string()))?;
                let mut realm = Url::parse(realm).map_err(|_| {
                    fail(format!(
                        "the Bearer challenge's realm `{realm}` is not a URL"
                    ))
                })?;
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", oci.repository));
                let kept: Vec<(String, String)> = realm
                    .query_pairs()
                    .filter(|(k, _)| k != "service" && k != "scope")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                {
                    let mut query = realm.query_pairs_mut();
                    query.clear();
                    query.extend_pairs(kept);
                    if let Some(service) = params.get("service") {
                        query.append_pair("service", service);
                    }
                    query.append_pair("scope", &scope);
                }
                let token = self.fetch_token(feature, oci, url, &realm).await?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(fail(format!("unsupported authentication scheme `{other}`"))),
        }
    }

    /// A bearer token from `realm` (the reference's `fetchRegistryBearerToken`): with the
    /// registry's credentials when there are some, again anonymously when they are refused.
    async fn fetch_token(
        &self,
        feature: &str,
        oci: &OciRef,
        registry_url: &Url,
        realm: &Url,
    ) -> Result<String, FeatureError> {
        // Credentials go to the realm when it is the registry's own host, or another allowed
        // host over https (Docker Hub's auth.docker.io); never over plain http elsewhere.
        let same_host = realm.host_str().map(str::to_ascii_lowercase)
            == registry_url.host_str().map(str::to_ascii_lowercase);
        let credentials = if same_host || realm.scheme() == "https" {
            self.basic(&oci.registry)
        } else {
            None
        };
        let mut attempt = credentials.map(|header| Authz {
            origin: origin(realm),
            header,
        });
        loop {
            let (response, final_url) = self
                .get(feature, realm.clone(), None, attempt.as_ref())
                .await?;
            let status = response.status();
            if attempt.is_some()
                && (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
            {
                attempt = None;
                continue;
            }
            if !status.is_success() {
                return Err(status_error(feature, &final_url, status, &oci.registry));
            }
            let (body, _) = read_limited(feature, &final_url, response, MAX_TOKEN_BYTES).await?;
            let parsed: TokenResponse =
                serde_json::from_slice(&body).map_err(|e| FeatureError::Fetch {
                    feature: feature.to_string(),
                    message: format!("GET {final_url}: the token response is not JSON: {e}"),
                })?;
            return parsed
                .token
                .filter(|t| !t.is_empty())
                .or(parsed.access_token.filter(|t| !t.is_empty()))
                .ok_or_else(|| FeatureError::Fetch {
                    feature: feature.to_string(),
                    message: format!(
                        "GET {final_url}: the token response has neither `token` nor \
                         `access_token`"
                    ),
                });
        }
    }

    fn registry_base(&self, feature: &str, oci: &OciRef) -> Result<Url, FeatureError> {
        let invalid = |message: String| FeatureError::Invalid {
            feature: feature.to_string(),
            message,
        };
        if !valid_repository(&oci.repository) {
            return Err(invalid(format!(
                "`{}` is not a valid OCI repository path",
                oci.repository
            )));
        }
        let https = Url::parse(&format!("https://{}/", oci.registry))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none() && u.username().is_empty())
            .ok_or_else(|| invalid(format!("`{}` is not a registry host", oci.registry)))?;
        if any_matches(&self.settings.plain_http, &https) {
            Url::parse(&format!("http://{}/", oci.registry))
                .map_err(|_| invalid(format!("`{}` is not a registry host", oci.registry)))
        } else {
            Ok(https)
        }
    }

    async fn fetch_oci(
        &self,
        feature: &str,
        oci: &OciRef,
        into: &Path,
    ) -> Result<FetchedFeature, FeatureError> {
        let invalid = |message: String| FeatureError::Invalid {
            feature: feature.to_string(),
            message,
        };
        let reference = match &oci.version {
            OciVersion::Tag(tag) if valid_tag(tag) => tag.clone(),
            OciVersion::Tag(tag) => return Err(invalid(format!("`{tag}` is not a valid tag"))),
            OciVersion::Digest(digest) if valid_digest(digest) => digest.clone(),
            OciVersion::Digest(digest) => {
                return Err(invalid(format!(
                    "`{digest}` is not a sha256 digest (sha256:<64 hex>)"
                )))
            }
        };
        let base = self.registry_base(feature, oci)?;
        let manifest_url = base
            .join(&format!("v2/{}/manifests/{reference}", oci.repository))
            .map_err(|e| invalid(format!("cannot make the manifest URL: {e}")))?;
        let (response, final_url) = self
            .registry_get(feature, oci, manifest_url, Some(OCI_MANIFEST_MEDIA_TYPE))
            .await?;
        if !response.status().is_success() {
            return Err(status_error(
                feature,
                &final_url,
                response.status(),
                &oci.registry,
            ));
        }
        let (manifest_bytes, manifest_hex) =
            read_limited(feature, &final_url, response, MAX_MANIFEST_BYTES).await?;
        let manifest_digest = format!("sha256:{manifest_hex}");
        if let OciVersion::Digest(pinned) = &oci.version {
            if *pinned != manifest_digest {
                return Err(FeatureError::Integrity {
                    feature: feature.to_string(),
                    message: format!(
                        "the manifest at {final_url} is {manifest_digest}, the reference pins \
                         {pinned}"
                    ),
                });
            }
        }
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| FeatureError::Fetch {
                feature: feature.to_string(),
                message: format!("GET {final_url}: not an OCI image manifest: {e}"),
            })?;
        if manifest.config.media_type != FEATURE_CONFIG_MEDIA_TYPE {
            return Err(FeatureError::Fetch {
                feature: feature.to_string(),
                message: format!(
                    "{final_url} is not a dev container feature: its config's media type is \
                     `{}`, not `{FEATURE_CONFIG_MEDIA_TYPE}`",
                    manifest.config.media_type
                ),
            });
        }
        let Some(layer) = manifest.layers.first() else {
            return Err(FeatureError::Fetch {
                feature: feature.to_string(),
                message: format!("the manifest at {final_url} has no layer"),
            });
        };
        if !valid_digest(&layer.digest) {
            return Err(FeatureError::Fetch {
                feature: feature.to_string(),
                message: format!(
                    "the manifest at {final_url} names its layer by `{}`, not a sha256 digest",
                    layer.digest
                ),
            });
        }
        if let Some(size) = layer.size {
            if size > self.settings.max_bytes {
                return Err(too_big(feature, &final_url, size, self.settings.max_bytes));
            }
        }
        let blob_url = base
            .join(&format!("v2/{}/blobs/{}", oci.repository, layer.digest))
            .map_err(|e| invalid(format!("cannot make the blob URL: {e}")))?;
        let (response, blob_final) = self.registry_get(feature, oci, blob_url, None).await?;
        if !response.status().is_success() {
            return Err(status_error(
                feature,
                &blob_final,
                response.status(),
                &oci.registry,
            ));
        }
        let (blob, blob_hex) =
            read_limited(feature, &blob_final, response, self.settings.max_bytes).await?;
        let blob_digest = format!("sha256:{blob_hex}");
        if blob_digest != layer.digest {
            return Err(FeatureError::Integrity {
                feature: feature.to_string(),
                message: format!(
                    "the layer fetched from {blob_final} is {blob_digest}, its manifest says {}",
                    layer.digest
                ),
            });
        }
        self.unpack(feature, blob, into, archive::Skip::Nothing)
            .await?;
        Ok(FetchedFeature {
            dir: into.to_path_buf(),
            resolved: format!("{}/{}@{manifest_digest}", oci.registry, oci.repository),
            integrity: layer.digest.clone(),
        })
    }

    async fn fetch_tarball(
        &self,
        feature: &str,
        url: &str,
        into: &Path,
    ) -> Result<FetchedFeature, FeatureError> {
        let parsed = Url::parse(url).map_err(|e| FeatureError::Invalid {
            feature: feature.to_string(),
            message: format!("`{url}` is not a URL: {e}"),
        })?;
        let (response, final_url) = self.get(feature, parsed, None, None).await?;
        if !response.status().is_success() {
            let host = authority(&final_url);
            return Err(status_error(feature, &final_url, response.status(), &host));
        }
        let (bytes, hex) =
            read_limited(feature, &final_url, response, self.settings.max_bytes).await?;
        self.unpack(feature, bytes, into, archive::Skip::TarballExtras)
            .await?;
        Ok(FetchedFeature {
            dir: into.to_path_buf(),
            resolved: url.to_string(),
            integrity: format!("sha256:{hex}"),
        })
    }

    async fn unpack(
        &self,
        feature: &str,
        bytes: Vec<u8>,
        into: &Path,
        skip: archive::Skip,
    ) -> Result<(), FeatureError> {
        let limits = self.limits();
        let feature_owned = feature.to_string();
        let into_owned = into.to_path_buf();
        tokio::task::spawn_blocking(move || {
            archive::extract(&feature_owned, &bytes, &into_owned, &limits, skip)
        })
        .await
        .map_err(|e| FeatureError::Io {
            context: format!("unpacking feature `{feature}`"),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    async fn fetch_local(
        &self,
        feature: &str,
        path: &Path,
        into: &Path,
    ) -> Result<FetchedFeature, FeatureError> {
        let limits = self.limits();
        let feature_owned = feature.to_string();
        let from: PathBuf = path.to_path_buf();
        let into_owned = into.to_path_buf();
        let integrity = tokio::task::spawn_blocking(move || {
            archive::copy_local(&feature_owned, &from, &into_owned, &limits)
        })
        .await
        .map_err(|e| FeatureError::Io {
            context: format!("copying feature `{feature}`"),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(FetchedFeature {
            dir: into.to_path_buf(),
            resolved: feature.to_string(),
            integrity,
        })
    }
}

#[async_trait::async_trait]
impl Fetch for RegistryFetcher {
    async fn fetch(
        &self,
        feature: &str,
        source: &FeatureSource,
        into: &Path,
    ) -> Result<FetchedFeature, FeatureError> {
        match source {
            FeatureSource::Oci(oci) => self.fetch_oci(feature, oci, into).await,
            FeatureSource::Tarball(url) => self.fetch_tarball(feature, url, into).await,
            FeatureSource::Local(path) => self.fetch_local(feature, path, into).await,
        }
    }
}

/// `Bearer realm="…",service="…"` into its scheme and parameters (quoted or not).
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if !key.is_empty() {
            params
                .entry(key)
                .or_insert_with(|| value.trim().to_string());
        }
        if chars.peek().is_none() {
            break;
        }
    }
    (scheme.to_string(), params)
}

/// The body, at most `limit` bytes, and its sha256 (hex).
async fn read_limited(
    feature: &str,
    url: &Url,
    mut response: Response,
    limit: u64,
) -> Result<(Vec<u8>, String), FeatureError> {
    if let Some(length) = response.content_length() {
        if length > limit {
            return Err(too_big(feature, url, length, limit));
        }
    }
    let mut hasher = Sha256::new();
    let mut body = Vec::new();
    let mut total: u64 = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| send_error(feature, url, &e))?
    {
        total = total.saturating_add(chunk.len() as u64);
        if total > limit {
            return Err(too_big(feature, url, total, limit));
        }
        hasher.update(&chunk);
        body.extend_from_slice(&chunk);
    }
    Ok((body, hex::encode(hasher.finalize())))
}

fn too_big(feature: &str, url: &Url, size: u64, limit: u64) -> FeatureError {
    FeatureError::Fetch {
        feature: feature.to_string(),
        message: format!(
            "GET {url}: {size} bytes or more, over the limit of {limit} bytes; refused"
        ),
    }
}

fn status_error(feature: &str, url: &Url, status: StatusCode, registry: &str) -> FeatureError {
    let hint = match status.as_u16() {
        401 | 403 => format!(
            "\nhint: the registry refused access: configure credentials for `{registry}` in \
             flightdeck's [secrets] (`registry`, `username`) and name it in the template's \
             [workspace] secrets (or check the one configured)"
        ),
        404 => "\nhint: not found: check the feature id and its tag or digest".to_string(),
        429 => "\nhint: rate limited: try again later, or configure credentials".to_string(),
        s if s >= 500 => "\nhint: the server failed: try again later".to_string(),
        _ => String::new(),
    };
    FeatureError::Fetch {
        feature: feature.to_string(),
        message: format!("GET {url}: HTTP {status}{hint}"),
    }
}

fn send_error(feature: &str, url: &Url, error: &reqwest::Error) -> FeatureError {
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    let host = authority(url);
    let hint = if error.is_connect() {
        format!(
            "\nhint: could not connect: is the registry running, and is `{host}` in the \
             template's [workspace] egress?"
        )
    } else if error.is_timeout() {
        "; timed out".to_string()
    } else {
        String::new()
    };
    let what = if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "the request failed"
    };
    FeatureError::Fetch {
        feature: feature.to_string(),
        message: format!("GET {url}: {what}{detail}{hint}"),
    }
}

/// The reference's path rule: `[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*`.
fn valid_repository(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|part| {
            let bytes = part.as_bytes();
            let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            let sep = |b: u8| b == b'.' || b == b'_' || b == b'-';
            !bytes.is_empty()
                && alnum(bytes[0])
                && alnum(bytes[bytes.len() - 1])
                && bytes.iter().all(|&b| alnum(b) || sep(b))
                && !bytes.windows(2).any(|w| sep(w[0]) && sep(w[1]))
        })
}

/// The reference's tag rule: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_quoted_and_bare_parameters() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://ghcr.io/token");
        assert_eq!(params["service"], "ghcr.io");
        assert_eq!(params["scope"], "repository:a/b:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm=registry, charset="UTF-8""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "registry");
        assert_eq!(params["charset"], "UTF-8");
    }

    #[test]
    fn names_follow_the_reference_rules() {
        assert!(valid_repository("devcontainers/features/node"));
        assert!(!valid_repository("devcontainers/../node"));
        assert!(!valid_repository("Dev/node"));
        assert!(valid_tag("1"));
        assert!(valid_tag("1.2.3-rc_1"));
        assert!(!valid_tag("../x"));
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!valid_digest(&format!("sha256:{}", "A".repeat(64))));
    }
}
