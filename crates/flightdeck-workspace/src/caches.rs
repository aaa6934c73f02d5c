//! Per-ecosystem package caches, shared between missions of one repository whose lockfiles are
//! the same: a cache lives at `<data-dir>/caches/<ecosystem>/<key>`, the key being the sha256
//! of the repository's identity and the ecosystem's lockfiles (name and bytes), so a change of
//! dependencies starts a fresh cache, two missions of one commit share theirs, and another
//! repository never reads them. Only trusted commands write a cache (see
//! [`crate::CommandSpec::trusted`]). Keys are recorded in `workspace.provisioned.caches`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// An ecosystem: its lockfiles, and where its tools keep their cache relative to `HOME`.
struct Ecosystem {
    name: &'static str,
    lockfiles: &'static [&'static str],
    /// The cache's place under HOME, and the variable that points a tool at it.
    home_dir: &'static str,
    variable: &'static str,
}

const ECOSYSTEMS: &[Ecosystem] = &[
    Ecosystem {
        name: "cargo",
        lockfiles: &["Cargo.lock"],
        home_dir: ".cargo/registry",
        // cargo has no variable for the registry alone; CARGO_HOME is set to `<home>/.cargo`.
        variable: "",
    },
    Ecosystem {
        name: "npm",
        lockfiles: &[
            "package-lock.json",
            "npm-shrinkwrap.json",
            "yarn.lock",
            "pnpm-lock.yaml",
        ],
        home_dir: ".npm",
        variable: "npm_config_cache",
    },
    Ecosystem {
        name: "pip",
        lockfiles: &[
            "requirements.txt",
            "requirements-dev.txt",
            "poetry.lock",
            "Pipfile.lock",
            "uv.lock",
        ],
        home_dir: ".cache/pip",
        variable: "PIP_CACHE_DIR",
    },
];

/// One cache given to a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cache {
    pub ecosystem: String,
    /// `sha256:` of the lockfiles.
    pub key: String,
    /// The lockfiles the key covers.
    pub lockfiles: Vec<String>,
    /// The directory on the host.
    #[serde(skip)]
    pub host_dir: PathBuf,
    /// Where it appears relative to the command's HOME.
    #[serde(skip)]
    pub home_dir: &'static str,
    /// The variable that points the ecosystem's tool at it (empty when HOME suffices).
    #[serde(skip)]
    pub variable: &'static str,
}

/// The caches for the ecosystems whose lockfiles the worktree `repo` has at its root, for the
/// repository `repository` (its canonical path or URL), created under `caches_root` if new.
/// Ecosystems without a lockfile get none (nothing to key it by).
pub fn for_repo(repo: &Path, repository: &str, caches_root: &Path) -> std::io::Result<Vec<Cache>> {
    let mut caches = Vec::new();
    for eco in ECOSYSTEMS {
        let mut hasher = Sha256::new();
        hasher.update(format!("repository\0{}\0{repository}\0", repository.len()));
        let mut found = Vec::new();
        for name in eco.lockfiles {
            match crate::read_repo_file(&repo.join(name), 256 * 1024 * 1024) {
                Ok(None) => {}
                Ok(Some(bytes)) => {
                    // Name and length first, so moving bytes between two files changes the key.
                    hasher.update(format!("{name}\0{}\0", bytes.len()));
                    hasher.update(&bytes);
                    found.push(name.to_string());
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", repo.join(name).display()),
                    ))
                }
            }
        }
        if found.is_empty() {
            continue;
        }
        let key = hex::encode(hasher.finalize());
        let host_dir = caches_root.join(eco.name).join(&key[..32]);
        std::fs::create_dir_all(&host_dir)?;
        caches.push(Cache {
            ecosystem: eco.name.to_string(),
            key: format!("sha256:{key}"),
            lockfiles: found,
            host_dir,
            home_dir: eco.home_dir,
            variable: eco.variable,
        });
    }
    Ok(caches)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_follow_the_lockfiles() {
        let repo = tempfile::tempdir().unwrap();
        let caches = tempfile::tempdir().unwrap();
        let one = "/srv/one";
        assert!(for_repo(repo.path(), one, caches.path())
            .unwrap()
            .is_empty());
        std::fs::write(repo.path().join("Cargo.lock"), "version = 3\n").unwrap();
        std::fs::write(repo.path().join("yarn.lock"), "# yarn\n").unwrap();
        let first = for_repo(repo.path(), one, caches.path()).unwrap();
        let names: Vec<&str> = first.iter().map(|c| c.ecosystem.as_str()).collect();
        assert_eq!(names, ["cargo", "npm"]);
        assert!(first[0].host_dir.is_dir());
        assert_eq!(first[1].lockfiles, ["yarn.lock"]);
        // Same lockfiles, same key and directory; a changed lockfile, a new one.
        assert_eq!(for_repo(repo.path(), one, caches.path()).unwrap(), first);
        std::fs::write(repo.path().join("Cargo.lock"), "version = 4\n").unwrap();
        let second = for_repo(repo.path(), one, caches.path()).unwrap();
        assert_ne!(second[0].key, first[0].key);
        assert_ne!(second[0].host_dir, first[0].host_dir);
        assert_eq!(second[1], first[1]);
        assert!(second[0].key.starts_with("sha256:"));
        // Another repository with the same lockfiles gets caches of its own.
        let other = for_repo(repo.path(), "/srv/other", caches.path()).unwrap();
        for (theirs, ours) in other.iter().zip(&second) {
            assert_ne!(theirs.key, ours.key);
            assert_ne!(theirs.host_dir, ours.host_dir);
        }
    }
}
