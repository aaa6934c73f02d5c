//! The agent's file tools (`read_file`, `write_file`, `edit_file`, `list_files`, `search`),
//! confined to one worktree.
//!
//! The invariant: every path the agent names is checked here; nothing outside the worktree or
//! in `.git` is read or written. A path is refused when it is absolute, has a `..` or `.git`
//! component, or resolves outside the root: each existing component is looked at with
//! `symlink_metadata`, and a symbolic link is followed with `canonicalize` and must land
//! inside the root (and not in `.git`). Writes never go through a symbolic link at all: the
//! last component must be a plain file (or not exist), and the new content is written to a
//! temporary file in the same directory and renamed over it, so a hard link to a file
//! elsewhere is replaced, never written through.
//!
//! Walks (`list_files`, `search`) never follow symbolic links, skip `.git` at any depth and
//! honour `.gitignore` files, read by this module with the same care as any other file (a
//! `.gitignore` that is a symbolic link is not read, nothing above the root is read). A path
//! named explicitly is listed or searched even when it is ignored, as ripgrep does.
//! Unreadable entries below the named directory are skipped.
//!
//! What this does not close: a process changing the tree between the check and the access
//! (file tools and commands are not expected to run at the same time), and reading a hard
//! link whose other name is outside the worktree.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, Permissions};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

/// Files larger than this are not searched.
pub const MAX_SEARCH_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// A NUL byte in this many leading bytes makes a file binary (not searched).
pub const BINARY_PROBE_BYTES: usize = 8 * 1024;
/// Matched lines longer than this many characters are cut, ending in `…`.
pub const MAX_LINE_CHARS: usize = 500;
/// Files larger than this are not edited (an edit reads the whole file).
pub const MAX_EDIT_BYTES: u64 = 16 * 1024 * 1024;
/// `.gitignore` files larger than this are not read.
const MAX_GITIGNORE_BYTES: u64 = 1024 * 1024;

/// Why a file tool refused or failed. Paths are shown as the agent gave them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileToolError {
    #[error("{path:?} is an absolute path; paths are relative to the worktree root")]
    Absolute { path: String },
    #[error("{path:?} has a `..` component; paths may not climb out of the worktree")]
    ParentDir { path: String },
    #[error("{path:?} is in git metadata (`.git`), which file tools never touch")]
    GitMetadata { path: String },
    #[error("{path:?} resolves outside the worktree")]
    Outside { path: String },
    #[error("{path:?} contains a NUL byte")]
    NulByte { path: String },
    #[error("the path is empty; name a file relative to the worktree root")]
    EmptyPath,
    #[error("{path:?} is a symbolic link; write to the file it points to instead")]
    SymlinkWrite { path: String },
    #[error("{path:?} goes through a symbolic link that does not resolve")]
    BrokenSymlink { path: String },
    #[error("{path:?} does not exist")]
    NotFound { path: String },
    #[error("{path:?} is a directory")]
    IsADirectory { path: String },
    #[error("{path:?} has a parent that is not a directory")]
    NotADirectory { path: String },
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    #[error("{path:?} is not UTF-8 text")]
    NotText { path: String },
    #[error("{path:?} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("the text to replace in {path:?} is empty")]
    EmptyOld { path: String },
    #[error("the text to replace does not occur in {path:?}")]
    NoMatch { path: String },
    #[error("the text to replace occurs {count} times in {path:?}; it must occur exactly once")]
    NotUnique { path: String, count: usize },
    #[error("invalid regex {pattern:?}: {message}")]
    InvalidPattern { pattern: String, message: String },
    #[error("io error on {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl FileToolError {
    /// Whether this is a refusal to leave the worktree or to touch `.git` (a policy denial,
    /// as opposed to a mistake the agent can correct).
    pub fn is_confinement(&self) -> bool {
        matches!(
            self,
            Self::Absolute { .. }
                | Self::ParentDir { .. }
                | Self::GitMetadata { .. }
                | Self::Outside { .. }
        )
    }
}

/// What a path is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Also refuses a last component that is a symbolic link, and the root itself.
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    /// Repo-relative, normalized.
    pub path: String,
    /// At most `max_bytes` of the file.
    pub bytes: Vec<u8>,
    /// The file's full size.
    pub size: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWritten {
    /// Repo-relative, normalized.
    pub path: String,
    /// Whether the file did not exist before.
    pub created: bool,
    /// Bytes written.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (or another non-directory that is not a symbolic link).
    File,
    Dir,
    /// Listed, never followed.
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Repo-relative, where the entry really is.
    pub path: String,
    pub kind: EntryKind,
    /// Bytes for files, 0 otherwise.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// In path order (component by component, so a directory comes right before its contents).
    pub entries: Vec<ListEntry>,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchMatch {
    /// Repo-relative.
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// The line, cut to [`MAX_LINE_CHARS`] characters.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    pub matches: Vec<SearchMatch>,
    pub truncated: bool,
    /// Files read and searched (binary and oversized files not counted).
    pub files_searched: usize,
}

/// File access confined to one worktree.
#[derive(Debug, Clone)]
pub struct ConfinedFs {
    root: PathBuf,
    /// Who gets the files and directories the tools make (see [`crate::Workspace::file_owner`]).
    owner: Option<crate::Owner>,
}

/// A checked path: where it really is, and how much of it exists.
struct Resolved {
    /// As the agent gave it, for errors.
    given: String,
    /// Normalized repo-relative form of the name given (`.` for the root).
    rel: String,
    /// The real location: the canonical deepest existing ancestor plus the missing names.
    abs: PathBuf,
    /// `symlink_metadata` of `abs` when it exists (never a symbolic link).
    meta: Option<Metadata>,
    /// The deepest existing directory and the names below it that do not exist yet.
    existing: PathBuf,
    missing: Vec<OsString>,
}

impl ConfinedFs {
    /// Confines file tools to `root`, which must be an existing directory.
    pub fn new(root: &Path) -> Result<ConfinedFs, FileToolError> {
        let shown = root.display().to_string();
        let root = root.canonicalize().map_err(|source| FileToolError::Io {
            path: shown.clone(),
            source,
        })?;
        let meta = fs::metadata(&root).map_err(|source| FileToolError::Io {
            path: shown.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(FileToolError::NotADirectory { path: shown });
        }
        Ok(ConfinedFs { root, owner: None })
    }

    /// Files and directories the tools write are given to `owner`, so that the workspace's
    /// commands (which run as that user) can change them.
    pub fn with_owner(mut self, owner: Option<crate::Owner>) -> ConfinedFs {
        self.owner = owner;
        self
    }

    /// Gives what a write made (the file, replaced by rename, and new parents) to the owner.
    fn give_written(&self, resolved: &Resolved) -> Result<(), FileToolError> {
        let Some(owner) = self.owner else {
            return Ok(());
        };
        let mut made = resolved.existing.clone();
        for name in &resolved.missing {
            made.push(name);
            std::os::unix::fs::lchown(&made, Some(owner.uid), Some(owner.gid))
                .map_err(|e| resolved.io(e))?;
        }
        std::os::unix::fs::lchown(&resolved.abs, Some(owner.uid), Some(owner.gid))
            .map_err(|e| resolved.io(e))
    }

    /// The canonical worktree root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks a model-given relative path without touching anything beyond reading metadata;
    /// returns the repo-relative path where it really is, every symbolic link among its
    /// components resolved (`docs/link/x` with `docs/link -> ../src` is `src/x`; `.` for the
    /// root, which `""` and `"."` both name). This is what write rules judge: a name is not
    /// where a write lands.
    pub fn check(&self, path: &str, access: Access) -> Result<String, FileToolError> {
        let resolved = self.resolve(path, access)?;
        Ok(self.relative(&resolved.abs))
    }

    /// Reads at most `max_bytes` of a regular file.
    pub fn read_file(&self, path: &str, max_bytes: usize) -> Result<FileRead, FileToolError> {
        if path.is_empty() {
            return Err(FileToolError::EmptyPath);
        }
        let resolved = self.resolve(path, Access::Read)?;
        let (file, size) = resolved.open_regular()?;
        let mut bytes = Vec::new();
        file.take(u64::try_from(max_bytes).unwrap_or(u64::MAX))
            .read_to_end(&mut bytes)
            .map_err(|e| resolved.io(e))?;
        let truncated = (bytes.len() as u64) < size;
        Ok(FileRead {
            path: resolved.rel,
            bytes,
            size,
            truncated,
        })
    }

    /// Writes `content` to a file, creating missing parent directories. The file is replaced
    /// by rename, keeping an existing file's permissions.
    pub fn write_file(&self, path: &str, content: &str) -> Result<FileWritten, FileToolError> {
        let resolved = self.resolve(path, Access::Write)?;
        let permissions = match &resolved.meta {
            Some(meta) => Some(resolved.writable_permissions(meta)?),
            None => {
                resolved.create_parents()?;
                None
            }
        };
        resolved.replace(content.as_bytes(), permissions.as_ref())?;
        self.give_written(&resolved)?;
        Ok(FileWritten {
            path: resolved.rel,
            created: permissions.is_none(),
            bytes: content.len() as u64,
        })
    }

    /// Replaces the one occurrence of `old` in a UTF-8 file with `new`.
    pub fn edit_file(
        &self,
        path: &str,
        old: &str,
        new: &str,
    ) -> Result<FileWritten, FileToolError> {
        let resolved = self.resolve(path, Access::Write)?;
        if old.is_empty() {
            return Err(FileToolError::EmptyOld {
                path: resolved.given,
            });
        }
        let Some(meta) = &resolved.meta else {
            return Err(FileToolError::NotFound {
                path: resolved.given,
            });
        };
        let permissions = resolved.writable_permissions(meta)?;
        let (file, size) = resolved.open_regular()?;
        let mut bytes = Vec::new();
        if size <= MAX_EDIT_BYTES {
            file.take(MAX_EDIT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| resolved.io(e))?;
        }
        // Checked after reading too: a file that grew meanwhile must not be cut short.
        let size = size.max(bytes.len() as u64);
        if size > MAX_EDIT_BYTES {
            return Err(FileToolError::TooLarge {
                path: resolved.given,
                size,
                limit: MAX_EDIT_BYTES,
            });
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return Err(FileToolError::NotText {
                path: resolved.given,
            });
        };
        match count_occurrences(&text, old) {
            0 => {
                return Err(FileToolError::NoMatch {
                    path: resolved.given,
                })
            }
            1 => {}
            count => {
                return Err(FileToolError::NotUnique {
                    path: resolved.given,
                    count,
                })
            }
        }
        let edited = text.replacen(old, new, 1);
        resolved.replace(edited.as_bytes(), Some(&permissions))?;
        self.give_written(&resolved)?;
        Ok(FileWritten {
            path: resolved.rel,
            created: false,
            bytes: edited.len() as u64,
        })
    }

    /// Lists a directory recursively (or one file), at most `max_entries` entries.
    pub fn list_files(&self, path: &str, max_entries: usize) -> Result<Listing, FileToolError> {
        let resolved = self.resolve(path, Access::Read)?;
        let mut entries = Vec::new();
        let mut truncated = false;
        self.walk(&resolved, |abs, meta| {
            if entries.len() == max_entries {
                truncated = true;
                return ControlFlow::Break(());
            }
            let kind = entry_kind(meta);
            entries.push(ListEntry {
                path: self.relative(abs),
                kind,
                size: if kind == EntryKind::File {
                    meta.len()
                } else {
                    0
                },
            });
            ControlFlow::Continue(())
        })?;
        Ok(Listing { entries, truncated })
    }

    /// Searches text files under `path` for lines matching the regex `pattern`, at most
    /// `max_matches` matches.
    pub fn search(
        &self,
        pattern: &str,
        path: &str,
        max_matches: usize,
    ) -> Result<SearchResult, FileToolError> {
        let regex = regex::Regex::new(pattern).map_err(|e| FileToolError::InvalidPattern {
            pattern: pattern.to_string(),
            message: e.to_string(),
        })?;
        let resolved = self.resolve(path, Access::Read)?;
        let mut result = SearchResult {
            matches: Vec::new(),
            truncated: false,
            files_searched: 0,
        };
        self.walk(&resolved, |abs, meta| {
            if !meta.is_file() || meta.len() > MAX_SEARCH_FILE_BYTES {
                return ControlFlow::Continue(());
            }
            // A file that cannot be read is skipped like an unreadable directory.
            let Some(text) = read_text(abs) else {
                return ControlFlow::Continue(());
            };
            result.files_searched += 1;
            for (index, line) in text.lines().enumerate() {
                if !regex.is_match(line) {
                    continue;
                }
                if result.matches.len() == max_matches {
                    result.truncated = true;
                    return ControlFlow::Break(());
                }
                result.matches.push(SearchMatch {
                    path: self.relative(abs),
                    line: index + 1,
                    text: cut_line(line),
                });
            }
            ControlFlow::Continue(())
        })?;
        Ok(result)
    }

    /// The heart of confinement: lexical checks, then each existing component in turn.
    fn resolve(&self, given: &str, access: Access) -> Result<Resolved, FileToolError> {
        let refuse = |make: fn(String) -> FileToolError| Err(make(given.to_string()));
        if given.contains('\0') {
            return refuse(|path| FileToolError::NulByte { path });
        }
        let mut names: Vec<&OsStr> = Vec::new();
        for component in Path::new(given).components() {
            match component {
                Component::Prefix(_) | Component::RootDir => {
                    return refuse(|path| FileToolError::Absolute { path })
                }
                Component::ParentDir => return refuse(|path| FileToolError::ParentDir { path }),
                Component::CurDir => {}
                Component::Normal(name) if is_git_name(name) => {
                    return refuse(|path| FileToolError::GitMetadata { path })
                }
                Component::Normal(name) => names.push(name),
            }
        }
        if access == Access::Write && given.is_empty() {
            return Err(FileToolError::EmptyPath);
        }
        let rel = if names.is_empty() {
            ".".to_string()
        } else {
            names
                .iter()
                .map(|name| name.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        };
        let io = |source| FileToolError::Io {
            path: given.to_string(),
            source,
        };

        let mut current = self.root.clone();
        let mut meta = fs::symlink_metadata(&current).map_err(io)?;
        let mut missing = Vec::new();
        for (index, name) in names.iter().enumerate() {
            if !meta.is_dir() {
                return refuse(|path| FileToolError::NotADirectory { path });
            }
            let next = current.join(name);
            let next_meta = match fs::symlink_metadata(&next) {
                Ok(next_meta) => next_meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = names[index..].iter().map(|n| n.to_os_string()).collect();
                    break;
                }
                Err(e) => return Err(io(e)),
            };
            if next_meta.file_type().is_symlink() {
                // A write would replace the link itself, not land where it points; still, a
                // link out of the worktree or into `.git` is refused as such.
                let last_write = access == Access::Write && index == names.len() - 1;
                let target = match next.canonicalize() {
                    Ok(target) => target,
                    Err(_) if last_write => {
                        return refuse(|path| FileToolError::SymlinkWrite { path })
                    }
                    Err(_) => return refuse(|path| FileToolError::BrokenSymlink { path }),
                };
                let Ok(real) = target.strip_prefix(&self.root) else {
                    return refuse(|path| FileToolError::Outside { path });
                };
                if real.iter().any(is_git_name) {
                    return refuse(|path| FileToolError::GitMetadata { path });
                }
                if last_write {
                    return refuse(|path| FileToolError::SymlinkWrite { path });
                }
                meta = fs::symlink_metadata(&target).map_err(io)?;
                current = target;
            } else {
                meta = next_meta;
                current = next;
            }
        }
        let abs = missing
            .iter()
            .fold(current.clone(), |abs, name| abs.join(name));
        Ok(Resolved {
            given: given.to_string(),
            rel,
            abs,
            meta: missing.is_empty().then_some(meta),
            existing: current,
            missing,
        })
    }

    fn relative(&self, abs: &Path) -> String {
        let rel = abs.strip_prefix(&self.root).unwrap_or(abs);
        if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel.to_string_lossy().into_owned()
        }
    }

    /// Visits `resolved` (a file) or every entry below it (a directory) in path order, never
    /// following symbolic links, skipping `.git` and what `.gitignore` files ignore.
    fn walk(
        &self,
        resolved: &Resolved,
        mut visit: impl FnMut(&Path, &Metadata) -> ControlFlow<()>,
    ) -> Result<(), FileToolError> {
        let Some(meta) = &resolved.meta else {
            return Err(FileToolError::NotFound {
                path: resolved.given.clone(),
            });
        };
        if !meta.is_dir() {
            let _ = visit(&resolved.abs, meta);
            return Ok(());
        }
        // The rules of the named directory's ancestors apply below it too.
        let mut ignores = vec![read_gitignore(&self.root)];
        let mut dir = self.root.clone();
        for name in resolved
            .abs
            .strip_prefix(&self.root)
            .unwrap_or(Path::new(""))
        {
            dir.push(name);
            ignores.push(read_gitignore(&dir));
        }
        let entries = read_dir_sorted(&resolved.abs).map_err(|e| resolved.io(e))?;
        let _ = walk_entries(entries, &mut ignores, &mut visit);
        Ok(())
    }
}

impl Resolved {
    fn io(&self, source: io::Error) -> FileToolError {
        FileToolError::Io {
            path: self.given.clone(),
            source,
        }
    }

    /// Opens the existing regular file without following a link swapped in since the check
    /// and without blocking on a FIFO; returns it with its size.
    fn open_regular(&self) -> Result<(File, u64), FileToolError> {
        let path = self.given.clone();
        match &self.meta {
            None => return Err(FileToolError::NotFound { path }),
            Some(meta) if meta.is_dir() => return Err(FileToolError::IsADirectory { path }),
            Some(meta) if !meta.is_file() => return Err(FileToolError::NotAFile { path }),
            Some(_) => {}
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&self.abs)
            .map_err(|e| self.io(e))?;
        let meta = file.metadata().map_err(|e| self.io(e))?;
        if !meta.is_file() {
            return Err(FileToolError::NotAFile { path });
        }
        Ok((file, meta.len()))
    }

    /// The permissions of the existing file about to be replaced, which must be a regular file.
    fn writable_permissions(&self, meta: &Metadata) -> Result<Permissions, FileToolError> {
        let path = self.given.clone();
        if meta.is_dir() {
            Err(FileToolError::IsADirectory { path })
        } else if !meta.is_file() {
            Err(FileToolError::NotAFile { path })
        } else {
            Ok(meta.permissions())
        }
    }

    /// Creates the missing parent directories one by one, each a plain name under the last.
    fn create_parents(&self) -> Result<(), FileToolError> {
        let Some((_, parents)) = self.missing.split_last() else {
            return Ok(());
        };
        let mut dir = self.existing.clone();
        for name in parents {
            dir.push(name);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Created meanwhile: only a real directory will do.
                    let meta = fs::symlink_metadata(&dir).map_err(|e| self.io(e))?;
                    if !meta.is_dir() {
                        return Err(FileToolError::NotADirectory {
                            path: self.given.clone(),
                        });
                    }
                }
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// Writes `content` to a temporary file next to the target and renames it over the target.
    /// `permissions` are the replaced file's; a new file gets 0o666 less the umask.
    fn replace(
        &self,
        content: &[u8],
        permissions: Option<&Permissions>,
    ) -> Result<(), FileToolError> {
        let dir = self.abs.parent().unwrap_or(&self.existing);
        let mut temp = tempfile::Builder::new()
            .prefix(".flightdeck-write-")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| self.io(e))?;
        if let Some(permissions) = permissions {
            temp.as_file()
                .set_permissions(permissions.clone())
                .map_err(|e| self.io(e))?;
        }
        temp.write_all(content).map_err(|e| self.io(e))?;
        temp.as_file().sync_all().map_err(|e| self.io(e))?;
        temp.persist(&self.abs).map_err(|e| self.io(e.error))?;
        Ok(())
    }
}

/// `.git` in any case: case-insensitive file systems treat `.GIT` as the same directory.
fn is_git_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().eq_ignore_ascii_case(b".git")
}

fn entry_kind(meta: &Metadata) -> EntryKind {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        EntryKind::Symlink
    } else if file_type.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

/// A directory's entries with their `symlink_metadata`, sorted by name, `.git` left out.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<(PathBuf, Metadata)>> {
    let mut entries: Vec<(PathBuf, Metadata)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| !is_git_name(&entry.file_name()))
        .filter_map(|entry| {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).ok()?;
            Some((path, meta))
        })
        .collect();
    entries.sort_by(|(a, _), (b, _)| a.file_name().cmp(&b.file_name()));
    Ok(entries)
}

fn walk_entries(
    entries: Vec<(PathBuf, Metadata)>,
    ignores: &mut Vec<Gitignore>,
    visit: &mut impl FnMut(&Path, &Metadata) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for (path, meta) in entries {
        let is_dir = meta.is_dir();
        if is_ignored(ignores, &path, is_dir) {
            continue;
        }
        visit(&path, &meta)?;
        if is_dir {
            let Ok(children) = read_dir_sorted(&path) else {
                continue;
            };
            ignores.push(read_gitignore(&path));
            let flow = walk_entries(children, ignores, visit);
            ignores.pop();
            flow?;
        }
    }
    ControlFlow::Continue(())
}

/// The deepest `.gitignore` with an opinion decides, as in git.
fn is_ignored(ignores: &[Gitignore], path: &Path, is_dir: bool) -> bool {
    for gitignore in ignores.iter().rev() {
        match gitignore.matched(path, is_dir) {
            Match::None => {}
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
        }
    }
    false
}

/// `dir/.gitignore` when it is a regular file (git does not follow a symlinked `.gitignore`
/// either); an unreadable or absent one ignores nothing.
fn read_gitignore(dir: &Path) -> Gitignore {
    let path = dir.join(".gitignore");
    let text = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_GITIGNORE_BYTES => {
            read_nofollow(&path, MAX_GITIGNORE_BYTES)
        }
        _ => None,
    };
    let Some(text) = text else {
        return Gitignore::empty();
    };
    let text = String::from_utf8_lossy(&text);
    let mut builder = GitignoreBuilder::new(dir);
    for line in text.trim_start_matches('\u{feff}').lines() {
        // A malformed line is skipped, as git does.
        let _ = builder.add_line(Some(path.clone()), line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

/// Up to `limit` bytes of a regular file, not through a symbolic link.
fn read_nofollow(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The file as text, or `None` when it cannot be read or is binary.
fn read_text(path: &Path) -> Option<String> {
    let bytes = read_nofollow(path, MAX_SEARCH_FILE_BYTES)?;
    let probe = &bytes[..bytes.len().min(BINARY_PROBE_BYTES)];
    if probe.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn cut_line(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_string(),
    }
}

/// Occurrences of `needle` in `haystack`, overlapping ones included: `aa` is ambiguous in
/// `aaa`.
fn count_occurrences(haystack: &str, needle: &str) -> usize {
    let mut count = 0;
    let mut from = 0;
    while let Some(found) = haystack[from..].find(needle) {
        count += 1;
        let at = from + found;
        let step = haystack[at..].chars().next().map_or(1, char::len_utf8);
        from = at + step;
    }
    count
}
