//! Unpacking a feature's tar (gzip or not) and copying a local feature's folder, refusing
//! anything that would reach outside the folder they go into: absolute paths, `..`, links that
//! point out (or through another link and back up), device files, and more bytes or entries
//! than the limits.
//!
//! Symbolic links are made last, so nothing is ever written through one; hard links are made
//! as copies of the file they name, which must have come earlier in the archive.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::super::FeatureError;

pub(super) struct Limits {
    /// The most one file may weigh.
    pub max_file_bytes: u64,
    /// The most all files together may weigh.
    pub max_total_bytes: u64,
    pub max_entries: usize,
}

/// Entries left out, as the reference leaves them out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Skip {
    /// An OCI layer: everything is unpacked.
    Nothing,
    /// A tarball: top-level dot files and `devcontainer-features.tgz` are not.
    TarballExtras,
}

fn refused(feature: &str, message: String) -> FeatureError {
    FeatureError::Refused {
        feature: feature.to_string(),
        message,
    }
}

fn io_error(context: String, source: io::Error) -> FeatureError {
    FeatureError::Io { context, source }
}

/// `raw` as a path below the root, or `None` when it is absolute or has `..` in it. `.`
/// components are dropped (`./` itself becomes the empty path).
fn below_root(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether the link at `link` (below the root) pointing to `target` stays below the root:
/// relative, never above the root, and no `..` after passing through another link (which
/// would climb from wherever that link really is).
fn link_stays_inside(link: &Path, target: &Path, links: &BTreeSet<PathBuf>) -> bool {
    if target.as_os_str().is_empty() {
        return false;
    }
    let mut stack: Vec<OsString> = match link.parent() {
        Some(parent) => parent
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect(),
        None => Vec::new(),
    };
    let mut through_link = false;
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) => {
                stack.push(name.to_os_string());
                let so_far: PathBuf = stack.iter().collect();
                if links.contains(&so_far) {
                    through_link = true;
                }
            }
            Component::ParentDir => {
                if through_link || stack.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Makes `rel` (below `root`) a real directory, component by component, refusing to go
/// through anything that is not one (a link, a file).
fn real_dirs(feature: &str, root: &Path, rel: &Path) -> Result<(), FeatureError> {
    let mut path = root.to_path_buf();
    for component in rel.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    feature,
                    format!(
                        "`{}` is needed as a folder but is something else",
                        rel.display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path)
                    .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| io_error(format!("setting the mode of {}", path.display()), e))?;
            }
            Err(e) => return Err(io_error(format!("reading {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Where a file at `rel` goes: its folder made, and nothing but a regular file (an earlier
/// copy) in its place.
fn file_destination(feature: &str, root: &Path, rel: &Path) -> Result<PathBuf, FeatureError> {
    if let Some(parent) = rel.parent() {
        real_dirs(feature, root, parent)?;
    }
    let dest = root.join(rel);
    match fs::symlink_metadata(&dest) {
        Ok(meta) if meta.file_type().is_file() => Ok(dest),
        Ok(_) => Err(refused(
            feature,
            format!("`{}` appears twice, as different kinds", rel.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(dest),
        Err(e) => Err(io_error(format!("reading {}", dest.display()), e)),
    }
}

/// `0755` when any execute bit is set, `0644` otherwise (what git keeps, too).
fn normal_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Copies at most `size` bytes from `from` into a new file at `dest`; returns the sha256 (hex)
/// of what it wrote. Refuses when `from` has more than `size`.
fn write_file(
    feature: &str,
    from: &mut dyn Read,
    dest: &Path,
    size: u64,
    mode: u32,
) -> Result<String, FeatureError> {
    let mut file =
        fs::File::create(dest).map_err(|e| io_error(format!("creating {}", dest.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| io_error(format!("reading what goes to {}", dest.display()), e))?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(n as u64);
        if total > size {
            return Err(refused(
                feature,
                format!("`{}` grew past {size} bytes while copied", dest.display()),
            ));
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        file.write_all(chunk)
            .map_err(|e| io_error(format!("writing {}", dest.display()), e))?;
    }
    file.set_permissions(fs::Permissions::from_mode(normal_mode(mode)))
        .map_err(|e| io_error(format!("setting the mode of {}", dest.display()), e))?;
    Ok(hex::encode(hasher.finalize()))
}

struct Budget<'a> {
    feature: &'a str,
    limits: &'a Limits,
    entries: usize,
    bytes: u64,
}

impl Budget<'_> {
    fn entry(&mut self) -> Result<(), FeatureError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(refused(
                self.feature,
                format!("more than {} files and folders", self.limits.max_entries),
            ));
        }
        Ok(())
    }

    fn file(&mut self, rel: &Path, size: u64) -> Result<(), FeatureError> {
        if size > self.limits.max_file_bytes {
            return Err(refused(
                self.feature,
                format!(
                    "`{}` is {size} bytes, over the limit of {} bytes",
                    rel.display(),
                    self.limits.max_file_bytes
                ),
            ));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_total_bytes {
            return Err(refused(
                self.feature,
                format!(
                    "its files come to more than the limit of {} bytes",
                    self.limits.max_total_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Unpacks `bytes` (a tar, gzip-compressed or not) into `into`.
pub(super) fn extract(
    feature: &str,
    bytes: &[u8],
    into: &Path,
    limits: &Limits,
    skip: Skip,
) -> Result<(), FeatureError> {
    let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let bad = |e: io::Error| FeatureError::Fetch {
        feature: feature.to_string(),
        message: format!("the feature's archive cannot be read: {e}"),
    };
    let mut archive = tar::Archive::new(reader);
    let mut budget = Budget {
        feature,
        limits,
        entries: 0,
        bytes: 0,
    };
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut hardlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let entry_type = entry.header().entry_type();
        if entry_type == tar::EntryType::XGlobalHeader {
            continue;
        }
        budget.entry()?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = below_root(&raw) else {
            return Err(refused(
                feature,
                format!(
                    "its archive holds `{}`, a path outside the feature's folder",
                    raw.display()
                ),
            ));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if skip == Skip::TarballExtras && skipped_in_tarball(&rel) {
            continue;
        }
        match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                budget.file(&rel, size)?;
                let mode = entry.header().mode().map_err(bad)?;
                let dest = file_destination(feature, into, &rel)?;
                write_file(feature, &mut entry, &dest, size, mode)?;
            }
            tar::EntryType::Directory => real_dirs(feature, into, &rel)?,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                symlinks.push((rel, target));
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let Some(target_rel) = below_root(&target).filter(|t| !t.as_os_str().is_empty())
                else {
                    return Err(refused(
                        feature,
                        format!(
                            "its archive holds `{}`, a hard link to `{}`, outside the \
                             feature's folder",
                            rel.display(),
                            target.display()
                        ),
                    ));
                };
                hardlinks.push((rel, target_rel));
            }
            other => {
                return Err(refused(
                    feature,
                    format!(
                        "its archive holds `{}`, a {other:?} entry (device, fifo or other \
                         special file), which a feature may not carry",
                        rel.display()
                    ),
                ))
            }
        }
    }
    for (rel, target) in hardlinks {
        let source = into.join(&target);
        let meta = fs::symlink_metadata(&source).ok().filter(|m| m.is_file());
        let Some(meta) = meta else {
            return Err(refused(
                feature,
                format!(
                    "its archive holds `{}`, a hard link to `{}`, which is not a file that \
                     came before it",
                    rel.display(),
                    target.display()
                ),
            ));
        };
        budget.file(&rel, meta.len())?;
        let dest = file_destination(feature, into, &rel)?;
        if dest != source {
            let mut from = fs::File::open(&source)
                .map_err(|e| io_error(format!("opening {}", source.display()), e))?;
            write_file(
                feature,
                &mut from,
                &dest,
                meta.len(),
                meta.permissions().mode(),
            )?;
        }
    }
    let link_set: BTreeSet<PathBuf> = symlinks.iter().map(|(rel, _)| rel.clone()).collect();
    for (rel, target) in &symlinks {
        if !link_stays_inside(rel, target, &link_set) {
            return Err(refused(
                feature,
                format!(
                    "its archive holds `{}`, a symbolic link to `{}`, outside the feature's \
                     folder",
                    rel.display(),
                    target.display()
                ),
            ));
        }
    }
    for (rel, target) in symlinks {
        if let Some(parent) = rel.parent() {
            real_dirs(feature, into, parent)?;
        }
        let dest = into.join(&rel);
        match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            _ => {
                return Err(refused(
                    feature,
                    format!("`{}` appears twice, as different kinds", rel.display()),
                ))
            }
        }
        std::os::unix::fs::symlink(&target, &dest)
            .map_err(|e| io_error(format!("creating the link {}", dest.display()), e))?;
    }
    Ok(())
}

/// What the reference's tarball filter leaves out: `./.…` and `./devcontainer-features.tgz`.
fn skipped_in_tarball(rel: &Path) -> bool {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.starts_with('.') || rel == Path::new("devcontainer-features.tgz")
}

enum LocalEntry {
    File { mode: u32, size: u64 },
    Dir,
    Link(PathBuf),
}

/// Copies the folder `from` into `into`; returns its integrity: `sha256:` of, for each file and
/// link in path order (component by component), `kind NUL path NUL mode NUL sha256 NUL` where
/// kind is `f` or `l`, mode `755` or `644` for a file (`0` for a link) and the digest is of the
/// file's contents or the link's target.
pub(super) fn copy_local(
    feature: &str,
    from: &Path,
    into: &Path,
    limits: &Limits,
) -> Result<String, FeatureError> {
    let meta = fs::symlink_metadata(from).map_err(|e| {
        io_error(
            format!("feature `{feature}`: reading {}", from.display()),
            e,
        )
    })?;
    if meta.file_type().is_symlink() {
        return Err(refused(
            feature,
            format!(
                "{} is a symbolic link; a local feature must be a folder",
                from.display()
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(FeatureError::Invalid {
            feature: feature.to_string(),
            message: format!("{} is not a folder", from.display()),
        });
    }
    let root = fs::canonicalize(from).map_err(|e| {
        io_error(
            format!("feature `{feature}`: reading {}", from.display()),
            e,
        )
    })?;
    let mut budget = Budget {
        feature,
        limits,
        entries: 0,
        bytes: 0,
    };
    let mut entries: Vec<(PathBuf, LocalEntry)> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let full = from.join(&dir);
        let listing = fs::read_dir(&full).map_err(|e| {
            io_error(
                format!("feature `{feature}`: listing {}", full.display()),
                e,
            )
        })?;
        for item in listing {
            let item = item.map_err(|e| {
                io_error(
                    format!("feature `{feature}`: listing {}", full.display()),
                    e,
                )
            })?;
            budget.entry()?;
            let rel = dir.join(item.file_name());
            let path = from.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(|e| {
                io_error(
                    format!("feature `{feature}`: reading {}", path.display()),
                    e,
                )
            })?;
            let kind = meta.file_type();
            if kind.is_dir() {
                pending.push(rel.clone());
                entries.push((rel, LocalEntry::Dir));
            } else if kind.is_file() {
                budget.file(&rel, meta.len())?;
                entries.push((
                    rel,
                    LocalEntry::File {
                        mode: meta.permissions().mode(),
                        size: meta.len(),
                    },
                ));
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| {
                    io_error(
                        format!("feature `{feature}`: reading {}", path.display()),
                        e,
                    )
                })?;
                entries.push((rel, LocalEntry::Link(target)));
            } else {
                return Err(refused(
                    feature,
                    format!(
                        "{} is a device, fifo or socket, which a feature may not carry",
                        path.display()
                    ),
                ));
            }
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let link_set: BTreeSet<PathBuf> = entries
        .iter()
        .filter(|(_, e)| matches!(e, LocalEntry::Link(_)))
        .map(|(rel, _)| rel.clone())
        .collect();
    // Every link checked before anything is copied.
    for (rel, entry) in &entries {
        let LocalEntry::Link(target) = entry else {
            continue;
        };
        let escapes = !link_stays_inside(rel, target, &link_set)
            || match fs::canonicalize(from.join(rel)) {
                Ok(real) => !real.starts_with(&root),
                // Dangling: where it points (checked above) is all there is.
                Err(_) => false,
            };
        if escapes {
            return Err(refused(
                feature,
                format!(
                    "`{}` is a symbolic link to `{}`, outside the feature's folder",
                    rel.display(),
                    target.display()
                ),
            ));
        }
    }
    let mut hasher = Sha256::new();
    let mut links = Vec::new();
    for (rel, entry) in &entries {
        match entry {
            LocalEntry::Dir => real_dirs(feature, into, rel)?,
            LocalEntry::File { mode, size } => {
                let source = from.join(rel);
                let mut file = fs::File::open(&source).map_err(|e| {
                    io_error(
                        format!("feature `{feature}`: opening {}", source.display()),
                        e,
                    )
                })?;
                let dest = file_destination(feature, into, rel)?;
                let digest = write_file(feature, &mut file, &dest, *size, *mode)?;
                let mode = format!("{:o}", normal_mode(*mode));
                hash_entry(&mut hasher, b'f', rel, mode.as_bytes(), &digest);
            }
            LocalEntry::Link(target) => {
                let digest = hex::encode(Sha256::digest(target.as_os_str().as_encoded_bytes()));
                hash_entry(&mut hasher, b'l', rel, b"0", &digest);
                links.push((rel.clone(), target.clone()));
            }
        }
    }
    for (rel, target) in links {
        if let Some(parent) = rel.parent() {
            real_dirs(feature, into, parent)?;
        }
        let dest = into.join(&rel);
        std::os::unix::fs::symlink(&target, &dest)
            .map_err(|e| io_error(format!("creating the link {}", dest.display()), e))?;
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn hash_entry(hasher: &mut Sha256, kind: u8, rel: &Path, mode: &[u8], digest: &str) {
    hasher.update([kind, 0]);
    hasher.update(rel.as_os_str().as_encoded_bytes());
    hasher.update([0]);
    hasher.update(mode);
    hasher.update([0]);
    hasher.update(digest.as_bytes());
    hasher.update([0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_through_links_cannot_climb_out() {
        let links: BTreeSet<PathBuf> = [PathBuf::from("d/sub"), PathBuf::from("x")]
            .into_iter()
            .collect();
        assert!(link_stays_inside(
            Path::new("d/sub"),
            Path::new(".."),
            &links
        ));
        assert!(!link_stays_inside(
            Path::new("x"),
            Path::new("d/sub/.."),
            &links
        ));
        assert!(link_stays_inside(
            Path::new("x"),
            Path::new("d/sub/y"),
            &links
        ));
        assert!(!link_stays_inside(Path::new("a"), Path::new(".."), &links));
        assert!(!link_stays_inside(
            Path::new("a"),
            Path::new("/etc/passwd"),
            &links
        ));
    }

    #[test]
    fn paths_below_root() {
        assert_eq!(below_root(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(below_root(Path::new("./")), Some(PathBuf::new()));
        assert_eq!(below_root(Path::new("a/../b")), None);
        assert_eq!(below_root(Path::new("/etc")), None);
    }
}
