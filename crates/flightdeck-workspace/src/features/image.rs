//! The layered image: a base image with the resolved features installed on it, one layer
//! each, by the engine's classic builder; cached by the digests of everything that went in
//! (base image id, each feature's bytes and options), so a second workspace with the same
//! definition starts from the image the first one built.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::build::{self, ImageUsers};
use super::resolve::{self, ResolvedFeature};
use super::{lock, FeatureError, Fetch};
use crate::docker::{DockerEngine, DockerError, ImageInfo};

/// What to install, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct FeatureBuild<'a> {
    /// devcontainer.json's `features`: id as written → options, in the file's order.
    pub features: &'a Map<String, Value>,
    /// `overrideFeatureInstallOrder`.
    pub override_order: &'a [String],
    /// The devcontainer.json: local features are read from its folder, and the lock file
    /// beside it (`devcontainer-lock.json`), when there is one, pins what is fetched.
    pub config_file: &'a Path,
    /// `containerUser` / `remoteUser`, when the definition sets them.
    pub container_user: Option<&'a str>,
    pub remote_user: Option<&'a str>,
    /// Put on the built image (the mission's labels), so `workspace gc` can find it.
    pub labels: &'a BTreeMap<String, String>,
    /// Whether the install scripts may use the network (the template's `network` is `setup`
    /// or `on`); without it they run with none.
    pub network: bool,
}

/// The image built (or found in the cache), and the features in it, in install order.
#[derive(Debug, Clone)]
pub struct FeatureImage {
    pub image: ImageInfo,
    /// Whether an image with the same cache key was already there (nothing was built).
    pub cached: bool,
    pub features: Vec<ResolvedFeature>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureImageError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// The tag of the image whose cache key is `key`.
pub fn tag_of(cache_key: &str) -> String {
    let short: String = cache_key.chars().take(32).collect();
    format!("flightdeck-features:{short}")
}

/// Resolves the features (fetched into `scratch`, pinned by the lock file when present) and
/// builds them onto `base` (a local image: nothing is pulled).
pub async fn build(
    engine: &DockerEngine,
    base: &str,
    request: &FeatureBuild<'_>,
    fetcher: &dyn Fetch,
    scratch: &Path,
) -> Result<FeatureImage, FeatureImageError> {
    let base_info = engine.local_image(base).await?;
    let config_dir = request.config_file.parent().unwrap_or(Path::new("/"));
    let lock = lock::read(&lock::path_for(request.config_file))?;
    let written: Vec<(String, Value)> = request
        .features
        .iter()
        .map(|(id, options)| (id.clone(), options.clone()))
        .collect();
    let fetched_dir = scratch.join("fetched");
    let context_dir = scratch.join("context");
    for dir in [&fetched_dir, &context_dir] {
        std::fs::create_dir_all(dir).map_err(|source| FeatureError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let features = resolve::resolve(
        &written,
        config_dir,
        lock.as_ref(),
        request.override_order,
        fetcher,
        &fetched_dir,
    )
    .await?;
    let users = users_of(&base_info, request.container_user, request.remote_user);
    let context = build::write_context(base, &base_info.digest, &users, &features, &context_dir)?;
    let tag = tag_of(&context.cache_key);
    // Two workspaces of one definition at once build it once: the second waits and finds it.
    let key_lock = building(&tag);
    let _building = key_lock.lock().await;
    if let Ok(image) = engine.local_image(&tag).await {
        return Ok(FeatureImage {
            image,
            cached: true,
            features,
        });
    }
    let image = engine
        .build_image_on(
            &context.context,
            &context.dockerfile,
            &BTreeMap::new(),
            None,
            &tag,
            request.labels,
            request.network,
        )
        .await?;
    Ok(FeatureImage {
        image,
        cached: false,
        features,
    })
}

/// The lock held while the image tagged `tag` is looked for and built, in this process.
fn building(tag: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static BUILDS: std::sync::OnceLock<
        std::sync::Mutex<BTreeMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let builds = BUILDS.get_or_init(Default::default);
    let mut builds = match builds.lock() {
        Ok(guard) => guard,
        // A panic elsewhere while holding it leaves the map as it was: still usable.
        Err(poisoned) => poisoned.into_inner(),
    };
    // Entries nobody holds are dropped, so the map stays as small as what is being built.
    builds.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
    builds.entry(tag.to_string()).or_default().clone()
}

/// Who the features install for, as the reference decides it: the container user is
/// `containerUser`, else the image's `USER`, else root; the remote user is `remoteUser`, else
/// the container user. Their homes are looked up in the image while it builds.
pub fn users_of(
    base: &ImageInfo,
    container_user: Option<&str>,
    remote_user: Option<&str>,
) -> ImageUsers {
    let image_user = base.user.clone();
    let container_user = container_user
        .map(str::to_string)
        .or_else(|| (!image_user.is_empty()).then(|| image_user.clone()))
        .unwrap_or_else(|| "root".to_string());
    let remote_user = remote_user
        .map(str::to_string)
        .unwrap_or_else(|| container_user.clone());
    ImageUsers {
        container_user,
        remote_user,
        container_user_home: None,
        remote_user_home: None,
        image_user,
    }
}
