//! Git for the fake GitHub ([`crate::fake_github`]): the real `git http-backend` CGI run once
//! per smart HTTP request over a bare repository, and the few reads of a bare repository the
//! fake answers REST calls from (its branches, a commit). Everything here blocks (it runs
//! `git`): call it off the async threads.
//!
//! The CGI gets a clean environment: `PATH`, the CGI variables (`GIT_PROJECT_ROOT` is the bare
//! repository itself, `PATH_INFO` the part of the URL after `….git`), `GIT_HTTP_EXPORT_ALL`,
//! `GIT_PROTOCOL` from the `Git-Protocol` header (protocol v2 for fetches, as GitHub serves)
//! and no system or global git configuration. A gzip request body (git compresses a large
//! fetch negotiation) is passed on as it came with `HTTP_CONTENT_ENCODING=gzip`, which
//! `git http-backend` inflates itself, as it does behind Apache.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// The smart HTTP paths served after `/{owner}/{name}.git` (GitHub serves no dumb protocol).
pub const SMART_PATHS: &[&str] = &["/info/refs", "/git-upload-pack", "/git-receive-pack"];

/// The all-zero object id: a ref created (old) or deleted (new).
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// One request for the CGI.
#[derive(Debug, Clone, Default)]
pub struct CgiRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// `/info/refs`, `/git-upload-pack` or `/git-receive-pack`.
    pub path_info: String,
    /// The raw query string (`service=git-upload-pack`).
    pub query: String,
    pub content_type: Option<String>,
    /// `Content-Encoding` (`gzip`), passed on for the CGI to inflate.
    pub content_encoding: Option<String>,
    /// The `Git-Protocol` header (`version=2`).
    pub git_protocol: Option<String>,
    /// Who is pushing (the reflog's committer).
    pub remote_user: String,
    /// The body as it came (compressed when `content_encoding` says so).
    pub body: Vec<u8>,
}

/// What the CGI answered.
#[derive(Debug, Clone)]
pub struct CgiResponse {
    pub status: u16,
    /// Without `Status`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The CGI's stderr (its complaints, when it refused).
    pub stderr: String,
    /// Whether the CGI exited 0.
    pub success: bool,
}

/// Runs `git http-backend` over the bare repository `repo` for one request (blocking).
pub fn http_backend(repo: &Path, request: &CgiRequest) -> std::io::Result<CgiResponse> {
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", repo)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &request.path_info)
        .env("REQUEST_METHOD", &request.method)
        .env("QUERY_STRING", &request.query)
        .env("REMOTE_USER", &request.remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if request.method.eq_ignore_ascii_case("POST") || !request.body.is_empty() {
        command.env("CONTENT_LENGTH", request.body.len().to_string());
    }
    if let Some(content_type) = &request.content_type {
        command.env("CONTENT_TYPE", content_type);
    }
    if let Some(encoding) = &request.content_encoding {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = &request.git_protocol {
        command.env("GIT_PROTOCOL", protocol);
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take();
    let body = request.body.clone();
    // Fed from another thread: the CGI may answer before it has read everything.
    let feeder = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&body);
        }
        drop(stdin);
    });
    let output = child.wait_with_output()?;
    let _ = feeder.join();
    let (status, headers, body) = parse_cgi_output(&output.stdout);
    Ok(CgiResponse {
        status,
        headers,
        body,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
    })
}

/// A CGI's output: its `Status` (200 when it gives none), its other headers, and the body
/// after the blank line. Output with no blank line is all headers.
pub fn parse_cgi_output(output: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    // The first blank line, CRLF or LF.
    let crlf = find(output, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(output, b"\n\n").map(|i| (i, 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let (head, body) = match split {
        Some((i, n)) => (&output[..i], &output[i + n..]),
        None => (output, &[][..]),
    };
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    (status, headers, body.to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn git(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run git in {}: {e}", repo.display()))
}

/// Makes `repo` a bare repository the fake can host: `git http-backend` needs
/// `http.receivepack` to take pushes. Panics when `repo` is not a git directory.
pub fn prepare_bare(repo: &Path) {
    let output = git(repo, &["rev-parse", "--is-bare-repository"]);
    assert!(
        output.status.success(),
        "{} is not a git repository: {}",
        repo.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = git(repo, &["config", "http.receivepack", "true"]);
    assert!(
        output.status.success(),
        "enable receive-pack in {}: {}",
        repo.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every ref of `repo` (`refs/heads/main` → sha), peeled to nothing: what `for-each-ref`
/// says.
pub fn refs(repo: &Path) -> BTreeMap<String, String> {
    let output = git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(sha, name)| (name.to_string(), sha.to_string()))
        .collect()
}

/// The branches of `repo` (`main` → sha).
pub fn branches(repo: &Path) -> BTreeMap<String, String> {
    refs(repo)
        .into_iter()
        .filter_map(|(name, sha)| Some((name.strip_prefix("refs/heads/")?.to_string(), sha)))
        .collect()
}

/// The refs that differ between two [`refs`] snapshots: `(ref, new sha)`, the new sha
/// [`ZERO_SHA`] for a deleted ref.
pub fn changed_refs(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut changed: Vec<(String, String)> = after
        .iter()
        .filter(|(name, sha)| before.get(*name) != Some(sha))
        .map(|(name, sha)| (name.clone(), sha.clone()))
        .collect();
    changed.extend(
        before
            .keys()
            .filter(|name| !after.contains_key(*name))
            .map(|name| (name.clone(), ZERO_SHA.to_string())),
    );
    changed
}

/// Points `refs/heads/{branch}` of `repo` at the commit `sha`; panics when there is no such
/// commit.
pub fn set_branch(repo: &Path, branch: &str, sha: &str) {
    let name = format!("refs/heads/{branch}");
    let output = git(repo, &["update-ref", &name, sha]);
    assert!(
        output.status.success(),
        "point {name} of {} at {sha}: {}",
        repo.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_full_sha(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `sha` (40 hex digits) names a commit of `repo`.
pub fn has_commit(repo: &Path, sha: &str) -> bool {
    is_full_sha(sha)
        && git(repo, &["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .status
            .success()
}

/// Whether the commit `ancestor` is reachable from `descendant` (or is it).
pub fn is_ancestor(repo: &Path, ancestor: &str, descendant: &str) -> bool {
    git(repo, &["merge-base", "--is-ancestor", ancestor, descendant])
        .status
        .success()
}

/// A name, an email and a time, as a commit's `author` or `committer` line has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub email: String,
    /// Unix time.
    pub time: i64,
}

/// A commit object, read with `git cat-file commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Ident,
    pub committer: Ident,
    /// Without the trailing newline git stores.
    pub message: String,
    /// Whether it carries a `gpgsig` header.
    pub signed: bool,
}

/// The commit `sha` (40 hex digits) of `repo`, `None` when there is no such commit.
pub fn commit(repo: &Path, sha: &str) -> Option<Commit> {
    if !has_commit(repo, sha) {
        return None;
    }
    let output = git(repo, &["cat-file", "commit", sha]);
    if !output.status.success() {
        return None;
    }
    parse_commit(sha, &String::from_utf8_lossy(&output.stdout))
}

/// Parses a raw commit object.
pub fn parse_commit(sha: &str, raw: &str) -> Option<Commit> {
    let (head, message) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let mut tree = None;
    let mut parents = Vec::new();
    let mut author = None;
    let mut committer = None;
    let mut signed = false;
    for line in head.lines() {
        // A multi-line header (gpgsig, mergetag) goes on with lines starting with a space.
        if line.starts_with(' ') {
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "tree" => tree = Some(value.to_string()),
            "parent" => parents.push(value.to_string()),
            "author" => author = parse_ident(value),
            "committer" => committer = parse_ident(value),
            "gpgsig" | "gpgsig-sha256" => signed = true,
            _ => {}
        }
    }
    Some(Commit {
        sha: sha.to_string(),
        tree: tree?,
        parents,
        author: author?,
        committer: committer?,
        message: message.strip_suffix('\n').unwrap_or(message).to_string(),
        signed,
    })
}

/// `Name <email> 1700000000 +0100`.
fn parse_ident(value: &str) -> Option<Ident> {
    let open = value.find('<')?;
    let close = value.rfind('>')?;
    let name = value[..open].trim().to_string();
    let email = value.get(open + 1..close)?.to_string();
    let time = value[close + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Ident { name, email, time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_is_split_into_status_headers_and_body() {
        let out = b"Status: 403 Forbidden\r\nExpires: Fri, 01 Jan 1980\r\nContent-Type: text/plain\r\n\r\nno";
        let (status, headers, body) = parse_cgi_output(out);
        assert_eq!(status, 403);
        assert_eq!(
            headers,
            [
                ("Expires".to_string(), "Fri, 01 Jan 1980".to_string()),
                ("Content-Type".to_string(), "text/plain".to_string())
            ]
        );
        assert_eq!(body, b"no");
        let (status, headers, body) = parse_cgi_output(b"Content-Type: a/b\n\n\r\n\r\nbody");
        assert_eq!((status, headers.len()), (200, 1));
        assert_eq!(body, b"\r\n\r\nbody");
    }

    #[test]
    fn commits_are_parsed_with_their_multi_line_headers() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
                   parent 1111111111111111111111111111111111111111\n\
                   author A U Thor <a@example.com> 1700000000 +0100\n\
                   committer C O Mitter <c@example.com> 1700000060 -0500\n\
                   gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\
                   \n\
                   Subject\n\nBody\n";
        let commit = parse_commit("2222222222222222222222222222222222222222", raw).unwrap();
        assert_eq!(commit.tree, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        assert_eq!(commit.parents, ["1111111111111111111111111111111111111111"]);
        assert_eq!(commit.author.name, "A U Thor");
        assert_eq!(commit.author.email, "a@example.com");
        assert_eq!(commit.author.time, 1_700_000_000);
        assert_eq!(commit.committer.time, 1_700_000_060);
        assert_eq!(commit.message, "Subject\n\nBody");
        assert!(commit.signed);
    }

    #[test]
    fn changed_refs_name_created_moved_and_deleted_refs() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let before = map(&[
            ("refs/heads/a", "1"),
            ("refs/heads/b", "2"),
            ("refs/heads/c", "3"),
        ]);
        let after = map(&[
            ("refs/heads/a", "1"),
            ("refs/heads/b", "4"),
            ("refs/heads/d", "5"),
        ]);
        assert_eq!(
            changed_refs(&before, &after),
            [
                ("refs/heads/b".to_string(), "4".to_string()),
                ("refs/heads/d".to_string(), "5".to_string()),
                ("refs/heads/c".to_string(), ZERO_SHA.to_string()),
            ]
        );
    }
}
