//! Dev container features fetched from a fake OCI registry (real HTTP on 127.0.0.1), a tarball
//! URL and a local folder: digests checked, hosts refused before anything is asked, bearer
//! challenges answered, archives that reach outside their folder refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use flightdeck_workspace::features::fetch::{
    host_matches, FetchSettings, RegistryCredential, RegistryFetcher, FEATURE_CONFIG_MEDIA_TYPE,
    FEATURE_LAYER_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
};
use flightdeck_workspace::features::{FeatureError, FeatureSource, Fetch, OciRef, OciVersion};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// A fake registry / file server.

#[derive(Clone, Default)]
struct Route {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The exact `Authorization` it wants; anything else gets a 401 with `challenge`.
    require: Option<String>,
    challenge: Option<String>,
}

#[derive(Clone, Debug)]
struct Logged {
    path: String,
    query: String,
    authorization: Option<String>,
    accept: Option<String>,
}

#[derive(Default)]
struct Fake {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Logged>>,
}

struct Server {
    addr: SocketAddr,
    fake: Arc<Fake>,
}

impl Server {
    async fn start() -> Server {
        let fake = Arc::new(Fake::default());
        let app = Router::new().fallback(handle).with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, fake }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn route(&self, path: &str, route: Route) {
        self.fake
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), route);
    }

    fn ok(&self, path: &str, body: Vec<u8>) {
        self.route(
            path,
            Route {
                status: 200,
                body,
                ..Route::default()
            },
        );
    }

    fn log(&self) -> Vec<Logged> {
        self.fake.log.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.log().into_iter().map(|l| l.path).collect()
    }
}

async fn handle(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let header = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    };
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let authorization = header(request.headers(), "authorization");
    fake.log.lock().unwrap().push(Logged {
        path: path.clone(),
        query,
        authorization: authorization.clone(),
        accept: header(request.headers(), "accept"),
    });
    let route = fake.routes.lock().unwrap().get(&path).cloned();
    let Some(route) = route else {
        return Response::builder()
            .status(404)
            .body(Body::from("not found"))
            .unwrap();
    };
    if let Some(wanted) = &route.require {
        if authorization.as_deref() != Some(wanted.as_str()) {
            let mut builder = Response::builder().status(401);
            if let Some(challenge) = &route.challenge {
                builder = builder.header("www-authenticate", challenge);
            }
            return builder.body(Body::from("unauthorized")).unwrap();
        }
    }
    let mut builder = Response::builder().status(StatusCode::from_u16(route.status).unwrap());
    for (k, v) in &route.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(route.body)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Features built in the test.

const FEATURE_JSON: &str = r#"{ "id": "hello", "version": "1.0.0", "name": "Hello" }"#;
const INSTALL_SH: &str = "#!/bin/sh\necho hello\n";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A plain tar of `devcontainer-feature.json` and `install.sh` (0755), as `devcontainer
/// features publish` makes it (entries under `./`).
fn feature_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body, mode) in [
        ("./devcontainer-feature.json", FEATURE_JSON, 0o644),
        ("./install.sh", INSTALL_SH, 0o755),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, body.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// One raw entry, its name and link name written as given (the `tar` crate's own setters
/// refuse `..` and absolute paths, which is what these tests need).
fn raw_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

fn tar_with(extra: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    raw_entry(
        &mut builder,
        "devcontainer-feature.json",
        tar::EntryType::Regular,
        "",
        FEATURE_JSON.as_bytes(),
    );
    for (name, kind, link, data) in extra {
        raw_entry(&mut builder, name, *kind, link, data);
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn manifest_for(layer: &[u8], size: Option<u64>) -> Vec<u8> {
    let config = b"{}";
    serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": FEATURE_CONFIG_MEDIA_TYPE,
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": FEATURE_LAYER_MEDIA_TYPE,
            "digest": sha256(layer),
            "size": size.unwrap_or(layer.len() as u64),
            "annotations": { "org.opencontainers.image.title": "devcontainer-feature-hello.tgz" },
        }],
        "annotations": { "dev.containers.metadata": FEATURE_JSON },
    }))
    .unwrap()
}

const REPO: &str = "features/hello";

struct Published {
    manifest: Vec<u8>,
    manifest_digest: String,
    layer_digest: String,
}

/// Serves `layer` as `features/hello:1` (and by the manifest's digest).
fn publish(server: &Server, layer: &[u8]) -> Published {
    let manifest = manifest_for(layer, None);
    let manifest_digest = sha256(&manifest);
    let layer_digest = sha256(layer);
    server.ok(&format!("/v2/{REPO}/manifests/1"), manifest.clone());
    server.ok(
        &format!("/v2/{REPO}/manifests/{manifest_digest}"),
        manifest.clone(),
    );
    server.ok(&format!("/v2/{REPO}/blobs/{layer_digest}"), layer.to_vec());
    Published {
        manifest,
        manifest_digest,
        layer_digest,
    }
}

fn settings_for(hosts: &[&str]) -> FetchSettings {
    FetchSettings {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        plain_http: vec!["127.0.0.1".to_string()],
        ..FetchSettings::default()
    }
}

fn fetcher(settings: FetchSettings) -> RegistryFetcher {
    RegistryFetcher::new(settings).unwrap()
}

fn oci(server: &Server, version: OciVersion) -> FeatureSource {
    FeatureSource::Oci(OciRef {
        registry: server.host(),
        repository: REPO.to_string(),
        version,
    })
}

fn tag(t: &str) -> OciVersion {
    OciVersion::Tag(t.to_string())
}

/// A scratch folder and, inside it, the empty `into` folder.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("feature");
    std::fs::create_dir(&into).unwrap();
    (dir, into)
}

fn assert_feature_files(dir: &Path) {
    assert_eq!(
        std::fs::read_to_string(dir.join("devcontainer-feature.json")).unwrap(),
        FEATURE_JSON
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("install.sh")).unwrap(),
        INSTALL_SH
    );
    let mode = std::fs::metadata(dir.join("install.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---------------------------------------------------------------------------------------------
// OCI.

#[tokio::test]
async fn oci_feature_by_tag_is_fetched_checked_and_pinned() {
    let server = Server::start().await;
    let published = publish(&server, &feature_tar());
    let (_tmp, into) = scratch();
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let id = format!("{}/{REPO}:1", server.host());
    let got = f.fetch(&id, &oci(&server, tag("1")), &into).await.unwrap();

    assert_eq!(got.dir, into);
    assert_eq!(got.integrity, published.layer_digest);
    assert_eq!(
        got.resolved,
        format!("{}/{REPO}@{}", server.host(), published.manifest_digest)
    );
    assert_feature_files(&into);

    let log = server.log();
    assert_eq!(
        log.iter().map(|l| l.path.clone()).collect::<Vec<_>>(),
        vec![
            format!("/v2/{REPO}/manifests/1"),
            format!("/v2/{REPO}/blobs/{}", published.layer_digest),
        ]
    );
    assert_eq!(log[0].accept.as_deref(), Some(OCI_MANIFEST_MEDIA_TYPE));
    assert!(log.iter().all(|l| l.authorization.is_none()));
}

#[tokio::test]
async fn oci_feature_pinned_by_digest_is_fetched_by_digest() {
    let server = Server::start().await;
    let published = publish(&server, &gzip(&feature_tar()));
    let (_tmp, into) = scratch();
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let version = OciVersion::Digest(published.manifest_digest.clone());
    let got = f
        .fetch("pinned", &oci(&server, version), &into)
        .await
        .unwrap();
    assert_eq!(
        got.resolved,
        format!("{}/{REPO}@{}", server.host(), published.manifest_digest)
    );
    assert_eq!(got.integrity, published.layer_digest);
    assert_feature_files(&into);
    assert_eq!(
        server.paths()[0],
        format!("/v2/{REPO}/manifests/{}", published.manifest_digest)
    );
}

#[tokio::test]
async fn pinned_digest_that_does_not_match_the_manifest_is_an_integrity_error() {
    let server = Server::start().await;
    let published = publish(&server, &feature_tar());
    let wrong = sha256(b"another manifest");
    // The registry answers the wrong digest with the manifest it has.
    server.ok(
        &format!("/v2/{REPO}/manifests/{wrong}"),
        published.manifest.clone(),
    );
    let (_tmp, into) = scratch();
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let err = f
        .fetch(
            "pinned",
            &oci(&server, OciVersion::Digest(wrong.clone())),
            &into,
        )
        .await
        .unwrap_err();
    let FeatureError::Integrity { message, .. } = &err else {
        panic!("expected an integrity error, got {err:?}");
    };
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&published.manifest_digest), "{message}");
    // Nothing fetched after the manifest, nothing unpacked.
    assert_eq!(server.log().len(), 1);
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0);
}

#[tokio::test]
async fn blob_that_does_not_match_its_digest_is_an_integrity_error() {
    let server = Server::start().await;
    let layer = feature_tar();
    let published = publish(&server, &layer);
    let mut tampered = layer.clone();
    tampered[600] ^= 1;
    server.ok(
        &format!("/v2/{REPO}/blobs/{}", published.layer_digest),
        tampered.clone(),
    );
    let (_tmp, into) = scratch();
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let err = f
        .fetch("x", &oci(&server, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Integrity { feature, message } = &err else {
        panic!("expected an integrity error, got {err:?}");
    };
    assert_eq!(feature, "x");
    assert!(message.contains(&published.layer_digest), "{message}");
    assert!(message.contains(&sha256(&tampered)), "{message}");
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0);
}

const TOKEN: &str = "tok-3f9a";

fn challenge(server: &Server) -> String {
    format!(
        r#"Bearer realm="http://{}/token",service="fake-registry",scope="repository:{REPO}:pull""#,
        server.host()
    )
}

/// Manifest and blob behind a bearer token the token endpoint hands out to `token_auth`
/// (`None`: to anyone).
fn publish_behind_token(server: &Server, token_auth: Option<String>) -> Published {
    let published = publish(server, &feature_tar());
    for path in [
        format!("/v2/{REPO}/manifests/1"),
        format!("/v2/{REPO}/blobs/{}", published.layer_digest),
    ] {
        let mut route = server
            .fake
            .routes
            .lock()
            .unwrap()
            .get(&path)
            .cloned()
            .unwrap();
        route.require = Some(format!("Bearer {TOKEN}"));
        route.challenge = Some(challenge(server));
        server.route(&path, route);
    }
    server.route(
        "/token",
        Route {
            status: 200,
            body: format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#).into_bytes(),
            require: token_auth,
            challenge: Some(r#"Basic realm="token""#.to_string()),
            ..Route::default()
        },
    );
    published
}

#[tokio::test]
async fn bearer_challenge_is_answered_with_a_token_got_with_the_credentials() {
    let server = Server::start().await;
    let creds = basic("robot", "s3cret");
    let published = publish_behind_token(&server, Some(creds.clone()));
    let mut settings = settings_for(&["127.0.0.1"]);
    settings.credentials = BTreeMap::from([(
        server.host(),
        RegistryCredential {
            username: "robot".to_string(),
            password: "s3cret".to_string(),
        },
    )]);
    let f = fetcher(settings);
    let (_tmp, into) = scratch();
    let got = f
        .fetch("auth", &oci(&server, tag("1")), &into)
        .await
        .unwrap();
    assert_eq!(got.integrity, published.layer_digest);
    assert_feature_files(&into);

    let log = server.log();
    let manifest = format!("/v2/{REPO}/manifests/1");
    let blob = format!("/v2/{REPO}/blobs/{}", published.layer_digest);
    assert_eq!(
        log.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
        vec![
            manifest.as_str(),
            "/token",
            manifest.as_str(),
            blob.as_str()
        ]
    );
    assert_eq!(log[0].authorization, None);
    // The token endpoint got the basic credentials, and the challenge's service and scope.
    assert_eq!(log[1].authorization.as_deref(), Some(creds.as_str()));
    assert_eq!(
        log[1].query,
        format!(
            "service=fake-registry&scope=repository%3A{}%3Apull",
            "features%2Fhello"
        )
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(log[2].authorization.as_deref(), Some(bearer.as_str()));
    // The blob request carried the token at once (no second challenge).
    assert_eq!(log[3].authorization.as_deref(), Some(bearer.as_str()));

    // A second fetch reuses the token.
    let (_tmp2, into2) = scratch();
    f.fetch("auth", &oci(&server, tag("1")), &into2)
        .await
        .unwrap();
    let log = server.log();
    assert_eq!(log.len(), 6);
    assert!(log[4..]
        .iter()
        .all(|l| l.authorization.as_deref() == Some(bearer.as_str())));
}

#[tokio::test]
async fn bearer_token_is_fetched_anonymously_without_credentials() {
    let server = Server::start().await;
    publish_behind_token(&server, None);
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let (_tmp, into) = scratch();
    f.fetch("anon", &oci(&server, tag("1")), &into)
        .await
        .unwrap();
    let log = server.log();
    assert_eq!(log[1].path, "/token");
    assert_eq!(log[1].authorization, None);
    assert_feature_files(&into);
}

#[tokio::test]
async fn refused_credentials_are_an_error_naming_the_registry_not_the_secret() {
    let server = Server::start().await;
    // The token endpoint wants other credentials than the ones configured.
    publish_behind_token(&server, Some(basic("robot", "right")));
    let mut settings = settings_for(&["127.0.0.1"]);
    settings.credentials = BTreeMap::from([(
        server.host(),
        RegistryCredential {
            username: "robot".to_string(),
            password: "wrong-password".to_string(),
        },
    )]);
    let f = fetcher(settings);
    let (_tmp, into) = scratch();
    let err = f
        .fetch("auth", &oci(&server, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Fetch { message, .. } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains("wrong-password"), "{message}");
    // Tried with the credentials, then anonymously (as the reference does).
    let tokens: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.path == "/token")
        .map(|l| l.authorization.is_some())
        .collect();
    assert_eq!(tokens, vec![true, false]);
}

#[tokio::test]
async fn host_not_allowed_is_refused_before_any_request() {
    let server = Server::start().await;
    publish(&server, &feature_tar());
    let f = fetcher(settings_for(&["ghcr.io", "*.example.com"]));
    let (_tmp, into) = scratch();
    let err = f
        .fetch("x", &oci(&server, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Refused { message, .. } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(message.contains(&server.host()), "{message}");
    assert!(message.contains("[workspace] egress"), "{message}");
    assert_eq!(server.log().len(), 0);

    // A tarball on a host not allowed, and plain http to a host not listed as plain http.
    let url = format!("http://{}/devcontainer-feature-hello.tgz", server.host());
    let err = f
        .fetch("t", &FeatureSource::Tarball(url.clone()), &into)
        .await
        .unwrap_err();
    assert!(matches!(err, FeatureError::Refused { .. }), "{err:?}");
    let mut settings = settings_for(&["127.0.0.1"]);
    settings.plain_http.clear();
    let err = fetcher(settings)
        .fetch("t", &FeatureSource::Tarball(url), &into)
        .await
        .unwrap_err();
    let FeatureError::Refused { message, .. } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(message.contains("plain http"), "{message}");
    assert_eq!(server.log().len(), 0);
}

#[tokio::test]
async fn missing_feature_is_a_fetch_error_with_a_hint() {
    let server = Server::start().await;
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let (_tmp, into) = scratch();
    let err = f
        .fetch("nope", &oci(&server, tag("2")), &into)
        .await
        .unwrap_err();
    let FeatureError::Fetch { feature, message } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert_eq!(feature, "nope");
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("check the feature id"), "{message}");
    assert!(
        message.contains(&format!("/v2/{REPO}/manifests/2")),
        "{message}"
    );
}

#[tokio::test]
async fn connection_refused_says_so() {
    // A port nobody listens on: bind, note it, drop.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let (_tmp, into) = scratch();
    let source = FeatureSource::Oci(OciRef {
        registry: format!("127.0.0.1:{port}"),
        repository: REPO.to_string(),
        version: tag("1"),
    });
    let err = f.fetch("down", &source, &into).await.unwrap_err();
    let FeatureError::Fetch { message, .. } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert!(message.contains("is the registry running"), "{message}");
}

#[tokio::test]
async fn manifest_that_is_not_a_feature_is_refused() {
    let server = Server::start().await;
    let published = publish(&server, &feature_tar());
    let manifest = String::from_utf8(published.manifest).unwrap().replace(
        FEATURE_CONFIG_MEDIA_TYPE,
        "application/vnd.oci.image.config.v1+json",
    );
    server.ok(&format!("/v2/{REPO}/manifests/1"), manifest.into_bytes());
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let (_tmp, into) = scratch();
    let err = f
        .fetch("img", &oci(&server, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Fetch { message, .. } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert!(message.contains("not a dev container feature"), "{message}");
    assert_eq!(server.log().len(), 1);
}

#[tokio::test]
async fn oversized_blob_is_refused() {
    let server = Server::start().await;
    let layer = feature_tar(); // 3 × 512-byte blocks and the end: a few KiB
    publish(&server, &layer);
    let mut settings = settings_for(&["127.0.0.1"]);
    settings.max_bytes = 1024;
    let f = fetcher(settings.clone());
    let (_tmp, into) = scratch();
    let err = f
        .fetch("big", &oci(&server, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Fetch { message, .. } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert!(
        message.contains("over the limit of 1024 bytes"),
        "{message}"
    );
    // The manifest said how big the layer is: the blob was not even asked for.
    assert_eq!(server.log().len(), 1);

    // A manifest that understates the size: the download itself is cut off.
    server.ok(
        &format!("/v2/{REPO}/manifests/1"),
        manifest_for(&layer, Some(100)),
    );
    let err = f
        .fetch("big", &oci(&server, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Fetch { message, .. } = &err else {
        panic!("expected a fetch error, got {err:?}");
    };
    assert!(
        message.contains("over the limit of 1024 bytes"),
        "{message}"
    );
    assert!(message.contains("/blobs/"), "{message}");
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0);
}

/// A second server, `other`, that the registry redirects the blob to.
async fn redirecting_registry() -> (Server, Server, Published) {
    let registry = Server::start().await;
    let storage = Server::start().await;
    let layer = feature_tar();
    let published = publish_behind_token(&registry, None);
    let blob_path = format!("/v2/{REPO}/blobs/{}", published.layer_digest);
    registry.route(
        &blob_path,
        Route {
            status: 307,
            headers: vec![(
                "location".to_string(),
                format!("http://{}/storage/blob?sig=abc", storage.host()),
            )],
            require: Some(format!("Bearer {TOKEN}")),
            challenge: Some(challenge(&registry)),
            ..Route::default()
        },
    );
    storage.ok("/storage/blob", layer);
    (registry, storage, published)
}

#[tokio::test]
async fn blob_redirected_to_a_host_not_allowed_is_refused() {
    let (registry, storage, _) = redirecting_registry().await;
    let f = fetcher(settings_for(&[&registry.host()]));
    let (_tmp, into) = scratch();
    let err = f
        .fetch("r", &oci(&registry, tag("1")), &into)
        .await
        .unwrap_err();
    let FeatureError::Refused { message, .. } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(message.contains(&storage.host()), "{message}");
    assert_eq!(storage.log().len(), 0);
}

#[tokio::test]
async fn blob_redirected_to_an_allowed_host_gets_no_authorization() {
    let (registry, storage, published) = redirecting_registry().await;
    let f = fetcher(settings_for(&[&registry.host(), &storage.host()]));
    let (_tmp, into) = scratch();
    let got = f
        .fetch("r", &oci(&registry, tag("1")), &into)
        .await
        .unwrap();
    assert_eq!(got.integrity, published.layer_digest);
    assert_feature_files(&into);
    let storage_log = storage.log();
    assert_eq!(storage_log.len(), 1);
    assert_eq!(storage_log[0].query, "sig=abc");
    assert_eq!(storage_log[0].authorization, None);
    // The registry did get the token for the blob request it redirected.
    let last = registry.log().pop().unwrap();
    assert_eq!(
        last.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// Archives that reach outside.

async fn fetch_layer(layer: Vec<u8>) -> (Result<(), FeatureError>, tempfile::TempDir, PathBuf) {
    let server = Server::start().await;
    publish(&server, &layer);
    let f = fetcher(settings_for(&["127.0.0.1"]));
    let (tmp, into) = scratch();
    let result = f
        .fetch("evil", &oci(&server, tag("1")), &into)
        .await
        .map(|_| ());
    (result, tmp, into)
}

fn assert_refused(result: &Result<(), FeatureError>, needle: &str) {
    match result {
        Err(FeatureError::Refused { feature, message }) => {
            assert_eq!(feature, "evil");
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn archive_entry_climbing_out_is_refused() {
    let layer = tar_with(&[("../escape", tar::EntryType::Regular, "", b"out")]);
    let (result, tmp, _into) = fetch_layer(layer).await;
    assert_refused(&result, "../escape");
    assert!(!tmp.path().join("escape").exists());
}

#[tokio::test]
async fn archive_entry_with_an_absolute_path_is_refused() {
    let layer = tar_with(&[("/tmp/flightdeck-abs", tar::EntryType::Regular, "", b"out")]);
    let (result, _tmp, _into) = fetch_layer(layer).await;
    assert_refused(&result, "/tmp/flightdeck-abs");
}

#[tokio::test]
async fn archive_absolute_symlink_is_refused() {
    let layer = tar_with(&[("passwd", tar::EntryType::Symlink, "/etc/passwd", b"")]);
    let (result, _tmp, into) = fetch_layer(layer).await;
    assert_refused(&result, "/etc/passwd");
    assert!(std::fs::symlink_metadata(into.join("passwd")).is_err());
}

#[tokio::test]
async fn archive_symlink_climbing_through_another_link_is_refused() {
    let layer = tar_with(&[
        ("d/", tar::EntryType::Directory, "", b""),
        ("d/up", tar::EntryType::Symlink, "..", b""),
        ("out", tar::EntryType::Symlink, "d/up/..", b""),
    ]);
    let (result, _tmp, _into) = fetch_layer(layer).await;
    assert_refused(&result, "d/up/..");
}

#[tokio::test]
async fn archive_links_inside_the_folder_are_kept() {
    let layer = tar_with(&[
        ("scripts/", tar::EntryType::Directory, "", b""),
        ("scripts/run.sh", tar::EntryType::Regular, "", b"echo run\n"),
        ("run", tar::EntryType::Symlink, "scripts/run.sh", b""),
        (
            "scripts/again.sh",
            tar::EntryType::Link,
            "scripts/run.sh",
            b"",
        ),
    ]);
    let (result, _tmp, into) = fetch_layer(layer).await;
    result.unwrap();
    assert_eq!(
        std::fs::read_link(into.join("run")).unwrap(),
        PathBuf::from("scripts/run.sh")
    );
    assert_eq!(
        std::fs::read_to_string(into.join("scripts/again.sh")).unwrap(),
        "echo run\n"
    );
}

#[tokio::test]
async fn archive_hard_link_out_and_device_files_are_refused() {
    let layer = tar_with(&[("h", tar::EntryType::Link, "../../etc/passwd", b"")]);
    let (result, _tmp, _into) = fetch_layer(layer).await;
    assert_refused(&result, "../../etc/passwd");

    let layer = tar_with(&[("null", tar::EntryType::Char, "", b"")]);
    let (result, _tmp, _into) = fetch_layer(layer).await;
    assert_refused(&result, "device");
}

// ---------------------------------------------------------------------------------------------
// Tarballs.

#[tokio::test]
async fn tarball_gzip_and_plain_are_fetched() {
    let server = Server::start().await;
    let plain = tar_with(&[
        (
            "install.sh",
            tar::EntryType::Regular,
            "",
            INSTALL_SH.as_bytes(),
        ),
        (".hidden", tar::EntryType::Regular, "", b"left out"),
        (
            "devcontainer-features.tgz",
            tar::EntryType::Regular,
            "",
            b"left out",
        ),
    ]);
    let gz = gzip(&plain);
    server.ok("/devcontainer-feature-hello.tgz", gz.clone());
    server.ok("/devcontainer-feature-plain.tgz", plain.clone());
    let f = fetcher(settings_for(&["127.0.0.1"]));

    for (path, bytes) in [
        ("/devcontainer-feature-hello.tgz", &gz),
        ("/devcontainer-feature-plain.tgz", &plain),
    ] {
        let url = format!("http://{}{path}", server.host());
        let (_tmp, into) = scratch();
        let got = f
            .fetch(&url, &FeatureSource::Tarball(url.clone()), &into)
            .await
            .unwrap();
        assert_eq!(got.resolved, url);
        assert_eq!(got.integrity, sha256(bytes));
        assert_eq!(
            std::fs::read_to_string(into.join("devcontainer-feature.json")).unwrap(),
            FEATURE_JSON
        );
        assert_eq!(
            std::fs::read_to_string(into.join("install.sh")).unwrap(),
            INSTALL_SH
        );
        assert!(!into.join(".hidden").exists());
        assert!(!into.join("devcontainer-features.tgz").exists());
    }
    assert_ne!(sha256(&gz), sha256(&plain));
}

#[tokio::test]
async fn tarball_that_unpacks_past_the_limit_is_refused() {
    let server = Server::start().await;
    let big = vec![0u8; 64 * 1024];
    let gz = gzip(&tar_with(&[("zeros", tar::EntryType::Regular, "", &big)]));
    server.ok("/devcontainer-feature-bomb.tgz", gz.clone());
    let mut settings = settings_for(&["127.0.0.1"]);
    settings.max_bytes = 8 * 1024;
    assert!((gz.len() as u64) < settings.max_bytes);
    let url = format!("http://{}/devcontainer-feature-bomb.tgz", server.host());
    let (_tmp, into) = scratch();
    let err = fetcher(settings)
        .fetch("bomb", &FeatureSource::Tarball(url), &into)
        .await
        .unwrap_err();
    let FeatureError::Refused { message, .. } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(message.contains("zeros"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Local folders.

fn local_feature(root: &Path) -> PathBuf {
    let dir = root.join(".devcontainer/my-feature");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("devcontainer-feature.json"), FEATURE_JSON).unwrap();
    std::fs::write(dir.join("install.sh"), INSTALL_SH).unwrap();
    std::fs::set_permissions(
        dir.join("install.sh"),
        std::fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    std::fs::write(dir.join("lib/common.sh"), "common\n").unwrap();
    std::os::unix::fs::symlink("lib/common.sh", dir.join("common")).unwrap();
    dir
}

#[tokio::test]
async fn local_feature_is_copied_with_a_stable_digest() {
    let repo = tempfile::tempdir().unwrap();
    let dir = local_feature(repo.path());
    let f = fetcher(FetchSettings::default());
    let (_tmp, into) = scratch();
    let source = FeatureSource::Local(dir.clone());
    let got = f.fetch("./my-feature", &source, &into).await.unwrap();
    assert_eq!(got.resolved, "./my-feature");
    assert_eq!(got.dir, into);
    assert_feature_files(&into);
    assert_eq!(
        std::fs::read_to_string(into.join("lib/common.sh")).unwrap(),
        "common\n"
    );
    assert_eq!(
        std::fs::read_link(into.join("common")).unwrap(),
        PathBuf::from("lib/common.sh")
    );

    // The digest, spelled out: entries in path order, `kind\0path\0mode\0sha256\0`.
    let mut expected = Sha256::new();
    let hex = |b: &[u8]| hex::encode(Sha256::digest(b));
    for (kind, path, mode, digest) in [
        ("l", "common", "0", hex(b"lib/common.sh")),
        (
            "f",
            "devcontainer-feature.json",
            "644",
            hex(FEATURE_JSON.as_bytes()),
        ),
        ("f", "install.sh", "755", hex(INSTALL_SH.as_bytes())),
        ("f", "lib/common.sh", "644", hex(b"common\n")),
    ] {
        for part in [kind, path, mode, digest.as_str()] {
            expected.update(part.as_bytes());
            expected.update([0]);
        }
    }
    assert_eq!(
        got.integrity,
        format!("sha256:{}", hex::encode(expected.finalize()))
    );

    // Same folder, same digest; one byte changed, another.
    let (_tmp2, into2) = scratch();
    let again = f.fetch("./my-feature", &source, &into2).await.unwrap();
    assert_eq!(again.integrity, got.integrity);
    std::fs::write(dir.join("lib/common.sh"), "common!\n").unwrap();
    let (_tmp3, into3) = scratch();
    let changed = f.fetch("./my-feature", &source, &into3).await.unwrap();
    assert_ne!(changed.integrity, got.integrity);
}

#[tokio::test]
async fn local_feature_with_an_escaping_symlink_is_refused() {
    let repo = tempfile::tempdir().unwrap();
    let dir = local_feature(repo.path());
    std::fs::write(repo.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink("../../secret.txt", dir.join("leak")).unwrap();
    let f = fetcher(FetchSettings::default());
    let (_tmp, into) = scratch();
    let err = f
        .fetch("./my-feature", &FeatureSource::Local(dir.clone()), &into)
        .await
        .unwrap_err();
    let FeatureError::Refused { feature, message } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert_eq!(feature, "./my-feature");
    assert!(message.contains("../../secret.txt"), "{message}");
    assert!(std::fs::symlink_metadata(into.join("leak")).is_err());

    // An absolute one, even to a file inside, is refused too.
    std::fs::remove_file(dir.join("leak")).unwrap();
    std::os::unix::fs::symlink(dir.join("install.sh"), dir.join("abs")).unwrap();
    let (_tmp2, into2) = scratch();
    let err = f
        .fetch("./my-feature", &FeatureSource::Local(dir), &into2)
        .await
        .unwrap_err();
    assert!(matches!(err, FeatureError::Refused { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Host patterns.

#[test]
fn host_patterns() {
    assert!(host_matches("ghcr.io", "ghcr.io", Some(443)));
    assert!(host_matches("GHCR.io", "ghcr.io", Some(443)));
    assert!(!host_matches("ghcr.io", "evil-ghcr.io", Some(443)));
    assert!(host_matches("localhost:5000", "localhost", Some(5000)));
    assert!(!host_matches("localhost:5000", "localhost", Some(5001)));
    assert!(host_matches("*.example.com", "a.b.example.com", Some(443)));
    assert!(!host_matches("*.example.com", "example.com", Some(443)));
    assert!(!host_matches("*.example.com", "badexample.com", Some(443)));
    assert!(host_matches("[::1]:5000", "[::1]", Some(5000)));
    assert!(host_matches("::1", "[::1]", Some(80)));
    assert!(!host_matches("", "ghcr.io", Some(443)));
}
