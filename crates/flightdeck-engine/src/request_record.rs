//! Request records: what `model.requested.request` names.
//!
//! An agent's request grows by a few messages per step while the rest stays the same, so
//! storing the whole request at every call made a step cost in proportion to the length of the
//! conversation (149 KiB per step at step 200). A request record stores the provider-neutral
//! request as what it adds to the record it continues:
//!
//! ```json
//! {"format": "flightdeck.request/1", "after": "sha256:…", "model": "…",
//!  "messages": [only the new ones], "temperature": …, "max_output_tokens": …}
//! ```
//!
//! A record without `after` is whole and also holds `tools`. Because `after` is a digest of
//! the record continued, the digest of the last record pins the whole request. Which record a
//! call continues is decided from the timeline alone (the one of the attempt that answered the
//! agent's previous call, unless the conversation was compacted since), so a resumed or
//! replayed agent writes the same records.

use flightdeck_core::Digest;
use flightdeck_models::{ChatRequest, Message};
use flightdeck_store::ArtifactStore;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::EngineError;

/// The `format` of a request record.
pub(crate) const FORMAT: &str = "flightdeck.request/1";

/// The most records one request may chain through when it is read back (far more steps than
/// any agent takes; a guard against a corrupt artifact store, not a product limit).
const MAX_CHAIN: usize = 1_000_000;

/// A stored request record, as a later request continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordedRequest {
    pub(crate) digest: Digest,
    /// How many of the conversation's messages the request it records held.
    pub(crate) messages: usize,
}

#[derive(Serialize)]
struct Record<'a> {
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a Digest>,
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [flightdeck_models::ToolDefinition]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
}

/// The bytes of the record of `request`, continuing `after` when given: only the messages
/// past the ones `after` holds are written. The caller keeps `after` only while the
/// conversation has grown by appending (a compaction starts a whole record again).
pub(crate) fn encode(
    request: &ChatRequest,
    after: Option<&RecordedRequest>,
) -> Result<Vec<u8>, EngineError> {
    let after = after.filter(|a| a.messages <= request.messages.len());
    let skip = after.map_or(0, |a| a.messages);
    let record = Record {
        format: FORMAT,
        after: after.map(|a| &a.digest),
        model: &request.model,
        messages: request.messages.get(skip..).unwrap_or_default(),
        tools: after.is_none().then_some(request.tools.as_slice()),
        temperature: request.temperature,
        max_output_tokens: request.max_output_tokens,
    };
    serde_json::to_vec(&record).map_err(|e| EngineError::Encode {
        what: "request record",
        message: e.to_string(),
    })
}

/// The whole request `digest` records, read back through the records it continues: the
/// neutral request as JSON (`model`, `messages`, `tools`, `temperature`,
/// `max_output_tokens`). A record that is not one (or a broken chain) is an error naming it.
pub(crate) async fn expand(
    artifacts: &dyn ArtifactStore,
    digest: &Digest,
) -> Result<Value, EngineError> {
    let broken = |message: String| EngineError::Encode {
        what: "request record",
        message,
    };
    let mut chain: Vec<Map<String, Value>> = Vec::new();
    let mut next = Some(digest.clone());
    while let Some(at) = next.take() {
        if chain.len() >= MAX_CHAIN {
            return Err(broken(format!(
                "{digest} chains through over {MAX_CHAIN} records"
            )));
        }
        let bytes = artifacts.get(&at).await?;
        let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(broken(format!("{at} is not a JSON object")));
        };
        if record.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(broken(format!("{at} is not a {FORMAT} record")));
        }
        next = match record.get("after") {
            None => None,
            Some(Value::String(after)) => Some(
                after
                    .parse::<Digest>()
                    .map_err(|e| broken(format!("{at}: `after` {e}")))?,
            ),
            Some(_) => return Err(broken(format!("{at}: `after` is not a digest"))),
        };
        chain.push(record);
    }
    // The newest record says what was sent with the messages; the oldest holds the tools.
    let mut messages: Vec<Value> = Vec::new();
    for record in chain.iter().rev() {
        match record.get("messages") {
            Some(Value::Array(new)) => messages.extend(new.iter().cloned()),
            _ => return Err(broken(format!("a record of {digest} has no `messages`"))),
        }
    }
    let (Some(newest), Some(oldest)) = (chain.first(), chain.last()) else {
        return Err(broken(format!("{digest}: empty chain")));
    };
    let mut whole = Map::new();
    for key in ["model", "temperature", "max_output_tokens"] {
        if let Some(value) = newest.get(key) {
            whole.insert(key.to_string(), value.clone());
        }
    }
    whole.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = oldest.get("tools") {
        whole.insert("tools".into(), tools.clone());
    }
    Ok(Value::Object(whole))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_store::FsArtifactStore;

    fn request(messages: &[&str]) -> ChatRequest {
        let mut request =
            ChatRequest::new("m-1", messages.iter().map(|m| Message::user(*m)).collect());
        request.max_output_tokens = Some(100);
        request
    }

    async fn put(store: &FsArtifactStore, bytes: &[u8]) -> Digest {
        store.put(bytes).await.unwrap()
    }

    #[tokio::test]
    async fn a_chain_of_records_reads_back_as_the_whole_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::new(dir.path().to_path_buf());
        let first = request(&["a", "b"]);
        let d1 = put(&store, &encode(&first, None).unwrap()).await;
        let second = request(&["a", "b", "c"]);
        let after = RecordedRequest {
            digest: d1.clone(),
            messages: 2,
        };
        let bytes = encode(&second, Some(&after)).unwrap();
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored["messages"].as_array().unwrap().len(), 1, "{stored}");
        assert_eq!(stored["after"], d1.to_string());
        assert!(stored.get("tools").is_none());
        let d2 = put(&store, &bytes).await;
        let whole = expand(&store, &d2).await.unwrap();
        let mut expected = serde_json::to_value(&second).unwrap();
        expected["tools"] = Value::Array(Vec::new());
        let whole_tools = whole
            .get("tools")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let mut whole = whole;
        whole["tools"] = whole_tools;
        assert_eq!(whole, expected);
    }

    #[tokio::test]
    async fn the_digest_covers_what_a_record_continues() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::new(dir.path().to_path_buf());
        let next = request(&["a", "b", "c"]);
        let mut digests = Vec::new();
        for base in [request(&["a", "b"]), request(&["a", "x"])] {
            let d = put(&store, &encode(&base, None).unwrap()).await;
            let after = RecordedRequest {
                digest: d,
                messages: 2,
            };
            digests.push(put(&store, &encode(&next, Some(&after)).unwrap()).await);
        }
        assert_ne!(digests[0], digests[1]);
    }

    #[tokio::test]
    async fn a_broken_chain_is_an_error_naming_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::new(dir.path().to_path_buf());
        let not_a_record = put(&store, b"{\"model\":\"m\"}").await;
        let error = expand(&store, &not_a_record).await.unwrap_err().to_string();
        assert!(error.contains(&not_a_record.to_string()), "{error}");
        let missing = Digest::of(b"never stored");
        let dangling = format!(
            "{{\"format\":\"{FORMAT}\",\"after\":\"{missing}\",\"model\":\"m\",\"messages\":[]}}"
        );
        let d = put(&store, dangling.as_bytes()).await;
        assert!(expand(&store, &d).await.is_err());
    }
}
