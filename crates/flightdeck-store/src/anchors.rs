//! The installation's anchor file: a hash chain over mission heads kept outside the database.
//!
//! Each line of `<data-dir>/anchors.jsonl` records one mission's head at one point (its
//! creation, and every time it parks or finishes): the mission, the seq and hash of its head
//! event, and the hash of the line before, so that rewriting, cutting or deleting a timeline
//! in the database (and fixing its mission row) no longer verifies: the anchored heads are
//! gone or differ. With `[audit] signing_key`, every line is also signed (ed25519), so the
//! file cannot be rewritten consistently without the key either.
//!
//! Lines are appended under an exclusive `flock` (processes of one installation anchor one
//! after another) and fsynced before the append returns.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, Verifier as _};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use flightdeck_core::hash::{sha256_hex, GENESIS_HASH};
use flightdeck_core::jcs::canonicalize;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The anchor file's name in the data directory.
pub const ANCHOR_FILE: &str = "anchors.jsonl";

/// What a signature covers: this prefix, then the line's hash.
const SIGNED_PREFIX: &str = "flightdeck-anchor-v1\n";

/// Why a head is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorReason {
    /// The mission's first append (a new mission or a fork).
    Created,
    /// It stopped to wait: for an approval, or for a budget raise.
    Parked,
    /// It ended (succeeded, failed, cancelled).
    Finished,
}

impl AnchorReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorReason::Created => "created",
            AnchorReason::Parked => "parked",
            AnchorReason::Finished => "finished",
        }
    }
}

/// A mission's head to anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorPoint {
    pub mission: String,
    /// Seq of the head event.
    pub seq: u64,
    /// Hash of the head event.
    pub head: String,
    /// The head event's `at`.
    pub at: String,
    pub reason: AnchorReason,
    /// The mission's status at this head.
    pub status: String,
}

/// One line of the anchor file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorRecord {
    /// The line's number, from 1.
    pub n: u64,
    pub at: String,
    pub mission: String,
    pub seq: u64,
    pub head: String,
    pub reason: AnchorReason,
    pub status: String,
    /// `hash` of the line before (64 zeros for the first).
    pub prev: String,
    /// sha256(prev + "\n" + JCS of the fields above, `prev` left out).
    pub hash: String,
    /// sha256 of the signing key's raw public key, hex (signed lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// ed25519 signature over `flightdeck-anchor-v1\n` + `hash`, base64 (signed lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl AnchorRecord {
    /// The hash this record's fields and `prev` make.
    fn computed_hash(&self) -> String {
        let body = json!({
            "n": self.n,
            "at": self.at,
            "mission": self.mission,
            "seq": self.seq,
            "head": self.head,
            "reason": self.reason.as_str(),
            "status": self.status,
        });
        // Strings and integers only: always canonical.
        let canonical = canonicalize(&body).unwrap_or_default();
        sha256_hex(format!("{}\n{canonical}", self.prev).as_bytes())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    #[error("anchor file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The last line is not a record, so there is nothing to chain a new one onto.
    #[error("anchor file {path}: line {line} is not an anchor record ({reason})")]
    Broken {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("[audit] signing_key {path}: {source}")]
    KeyUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("[audit] signing_key {path}: not an ed25519 private key in PKCS#8 PEM ({reason})")]
    KeyInvalid { path: String, reason: String },
}

/// Reads an ed25519 private key from a PKCS#8 PEM file (as `openssl genpkey -algorithm
/// ed25519` writes it): the `[audit] signing_key` of attestations and anchors.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, AnchorError> {
    let pem = std::fs::read_to_string(path).map_err(|source| AnchorError::KeyUnreadable {
        path: path.display().to_string(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| AnchorError::KeyInvalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A key's id: sha256 of the raw public key, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())
}

/// Appends anchors to one anchor file.
#[derive(Clone)]
pub struct AnchorLog {
    path: PathBuf,
    key: Option<SigningKey>,
}

impl std::fmt::Debug for AnchorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorLog")
            .field("path", &self.path)
            .field("signed", &self.key.is_some())
            .finish()
    }
}

impl AnchorLog {
    /// The anchor file at `path` (created by the first append), signing with `key` if given.
    pub fn new(path: PathBuf, key: Option<SigningKey>) -> AnchorLog {
        AnchorLog { path, key }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `point`, chained onto the file's last line, and syncs it to disk. Blocking.
    pub fn append(&self, point: &AnchorPoint) -> Result<AnchorRecord, AnchorError> {
        let io = |source: std::io::Error| AnchorError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io)?;
        // Released when `file` is dropped; another process waits here meanwhile.
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| io(std::io::Error::from(errno)))?;
        let len = file.metadata().map_err(io)?.len();
        let (complete, last) = last_line(&file, len).map_err(io)?;
        if complete < len {
            // A write cut short by a crash: it never returned, so nothing relies on it.
            file.set_len(complete).map_err(io)?;
        }
        let (n, prev) = match last {
            None => (1, GENESIS_HASH.to_string()),
            Some((offset, text)) => match serde_json::from_slice::<AnchorRecord>(&text) {
                Ok(record) => (record.n + 1, record.hash),
                Err(e) => {
                    return Err(AnchorError::Broken {
                        path: self.path.display().to_string(),
                        line: line_number_at(&file, offset).map_err(io)?,
                        reason: e.to_string(),
                    })
                }
            },
        };
        let mut record = AnchorRecord {
            n,
            at: point.at.clone(),
            mission: point.mission.clone(),
            seq: point.seq,
            head: point.head.clone(),
            reason: point.reason,
            status: point.status.clone(),
            prev,
            hash: String::new(),
            keyid: None,
            sig: None,
        };
        record.hash = record.computed_hash();
        if let Some(key) = &self.key {
            let signature = key.sign(format!("{SIGNED_PREFIX}{}", record.hash).as_bytes());
            record.keyid = Some(key_id(&key.verifying_key()));
            record.sig = Some(BASE64.encode(signature.to_bytes()));
        }
        // A record is plain data: it always serializes.
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        (&*file).write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)?;
        if len == 0 {
            // A new file: its directory entry must be durable too.
            if let Some(dir) = self.path.parent() {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        Ok(record)
    }
}

/// The number of the line that starts at `offset` (the newlines before it, plus one).
fn line_number_at(file: &File, offset: u64) -> std::io::Result<u64> {
    let mut lines = 1u64;
    let mut buffer = vec![0u8; 8192];
    let mut at = 0u64;
    while at < offset {
        let take = (offset - at).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..take], at)?;
        lines += buffer[..take].iter().filter(|b| **b == b'\n').count() as u64;
        at += take as u64;
    }
    Ok(lines)
}

/// The length of the file's complete lines (those ending in `\n`), and the last of them with
/// the offset it starts at. Reads only the file's tail.
#[allow(clippy::type_complexity)]
fn last_line(file: &File, len: u64) -> std::io::Result<(u64, Option<(u64, Vec<u8>)>)> {
    const CHUNK: u64 = 8192;
    let mut start = len;
    let mut tail: Vec<u8> = Vec::new();
    // Read backwards until the last complete line is whole in `tail`.
    loop {
        let newlines: Vec<usize> = tail
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .rev()
            .take(2)
            .collect();
        let found = match newlines.as_slice() {
            [last, before] => Some((*last, Some(*before))),
            [last] if start == 0 => Some((*last, None)),
            [] if start == 0 => return Ok((0, None)),
            _ => None,
        };
        if let Some((last, before)) = found {
            let from = before.map_or(0, |b| b + 1);
            let text = tail[from..last].to_vec();
            let complete = start + last as u64 + 1;
            return Ok((complete, Some((start + from as u64, text))));
        }
        let take = start.min(CHUNK);
        start -= take;
        let mut chunk = vec![0u8; take as usize];
        file.read_exact_at(&mut chunk, start)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
    }
}

/// The first place an anchor file does not hold: its line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorBreak {
    pub line: u64,
    pub reason: String,
}

/// Checks every line of an anchor file's `text`: a record, numbered in order, chained onto
/// the one before, its hash right and, when `key` is given, signed by it. Returns the records.
pub fn verify_anchors(
    text: &str,
    key: Option<&VerifyingKey>,
) -> Result<Vec<AnchorRecord>, AnchorBreak> {
    let mut records: Vec<AnchorRecord> = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    let mut rest = text;
    let mut line_no = 0u64;
    while !rest.is_empty() {
        line_no += 1;
        let fail = |reason: String| AnchorBreak {
            line: line_no,
            reason,
        };
        let Some((line, after)) = rest.split_once('\n') else {
            return Err(fail(
                "the last line is incomplete (a write cut short, or an edit)".to_string(),
            ));
        };
        rest = after;
        let record: AnchorRecord =
            serde_json::from_str(line).map_err(|e| fail(format!("not an anchor record: {e}")))?;
        if record.n != line_no {
            return Err(fail(format!(
                "numbered {}, expected {line_no}: a line was removed or moved",
                record.n
            )));
        }
        if record.prev != prev {
            return Err(fail(format!(
                "prev is {}, the line before hashes to {prev}",
                record.prev
            )));
        }
        let computed = record.computed_hash();
        if record.hash != computed {
            return Err(fail(format!(
                "hash is {}, its fields hash to {computed}: it was edited",
                record.hash
            )));
        }
        if let Some(key) = key {
            let (Some(keyid), Some(sig)) = (&record.keyid, &record.sig) else {
                return Err(fail(
                    "not signed, but [audit] signing_key is configured".to_string(),
                ));
            };
            let expected = key_id(key);
            if *keyid != expected {
                return Err(fail(format!(
                    "signed by key {keyid}, not by the configured key {expected}"
                )));
            }
            let verified = BASE64
                .decode(sig)
                .ok()
                .and_then(|bytes| Signature::from_slice(&bytes).ok())
                .is_some_and(|signature| {
                    key.verify(
                        format!("{SIGNED_PREFIX}{}", record.hash).as_bytes(),
                        &signature,
                    )
                    .is_ok()
                });
            if !verified {
                return Err(fail(format!(
                    "the signature does not verify with key {expected}"
                )));
            }
        }
        prev = record.hash.clone();
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn point(mission: &str, seq: u64) -> AnchorPoint {
        AnchorPoint {
            mission: mission.to_string(),
            seq,
            head: format!("{seq:064x}"),
            at: "2026-01-01T00:00:00.000Z".to_string(),
            reason: AnchorReason::Created,
            status: "queued".to_string(),
        }
    }

    #[test]
    fn appended_lines_chain_and_verify_and_edits_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ANCHOR_FILE);
        let key = SigningKey::from_bytes(&[7; 32]);
        let log = AnchorLog::new(path.clone(), Some(key.clone()));
        for seq in 1..=3 {
            log.append(&point("m-a", seq)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let records = verify_anchors(&text, Some(&key.verifying_key())).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].prev, records[1].hash);
        assert!(verify_anchors(&text, None).is_ok());
        let lines: Vec<&str> = text.lines().collect();
        // (what is done to the file, the line reported)
        let other = SigningKey::from_bytes(&[8; 32]);
        let cases: Vec<(&str, String, Option<VerifyingKey>, u64)> = vec![
            (
                "an edited head",
                text.replacen(&format!("{:064x}", 2), &format!("{:064x}", 9), 1),
                None,
                2,
            ),
            (
                "a removed line",
                format!("{}\n{}\n", lines[0], lines[2]),
                None,
                2,
            ),
            (
                "a torn last line",
                text[..text.len() - 5].to_string(),
                None,
                3,
            ),
            ("another key", text.clone(), Some(other.verifying_key()), 1),
            (
                "an unsigned file",
                {
                    let unsigned = dir.path().join("unsigned.jsonl");
                    AnchorLog::new(unsigned.clone(), None)
                        .append(&point("m-a", 1))
                        .unwrap();
                    std::fs::read_to_string(unsigned).unwrap()
                },
                Some(key.verifying_key()),
                1,
            ),
        ];
        for (what, tampered, key, line) in cases {
            let broken = verify_anchors(&tampered, key.as_ref()).unwrap_err();
            assert_eq!(broken.line, line, "{what}: {broken:?}");
        }
    }

    #[test]
    fn an_append_after_a_torn_line_drops_it_and_chains_onto_the_last_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ANCHOR_FILE);
        let log = AnchorLog::new(path.clone(), None);
        log.append(&point("m-a", 1)).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"n\":2,\"at\"").unwrap();
        let record = log.append(&point("m-b", 1)).unwrap();
        assert_eq!(record.n, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_anchors(&text, None).unwrap().len(), 2);
    }

    #[test]
    fn an_append_onto_a_broken_last_line_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ANCHOR_FILE);
        let log = AnchorLog::new(path.clone(), None);
        log.append(&point("m-a", 1)).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"not a record\n").unwrap();
        match log.append(&point("m-b", 1)).unwrap_err() {
            AnchorError::Broken { line, .. } => assert_eq!(line, 2),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_last_line_is_found_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ANCHOR_FILE);
        let log = AnchorLog::new(path.clone(), None);
        // About 300 bytes a line: the file passes several 8 KiB chunks.
        for seq in 1..=100 {
            let record = log.append(&point("m-a", seq)).unwrap();
            assert_eq!(record.n, seq);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_anchors(&text, None).unwrap().len(), 100);
    }
}
