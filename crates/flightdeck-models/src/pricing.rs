//! Prices, token estimates and the worst-case cost of a call (for budget checks before it).
//!
//! # The estimate
//!
//! No tokenizer is shipped; the estimate is a documented, deliberately generous heuristic:
//!
//! - text: one token per 4 ASCII bytes (rounded up) plus one token per non-ASCII character
//!   (CJK and other scripts run close to a token per character);
//! - each message: its text, plus [`PER_MESSAGE_TOKENS`] for the role and framing; an
//!   assistant's tool calls count their name and the JSON of their arguments; a tool result its
//!   call id and content;
//! - each tool definition: its name, description and the JSON of its schema, plus
//!   [`PER_TOOL_TOKENS`];
//! - plus [`PER_REQUEST_TOKENS`] once.
//!
//! Real tokenizers average 3.5–4.5 characters per token on English and code, so the estimate
//! is near the truth and rarely far below it. The budget check uses it only *before* a call;
//! the provider's reported usage is what is spent.

use serde::{Deserialize, Serialize};

use crate::types::{ChatRequest, Message, ToolCall, Usage};

/// Framing tokens per message (role, separators).
pub const PER_MESSAGE_TOKENS: u64 = 4;
/// Framing tokens per tool definition.
pub const PER_TOOL_TOKENS: u64 = 8;
/// Framing tokens per request (reply priming).
pub const PER_REQUEST_TOKENS: u64 = 3;
/// The output limit assumed when a request sets none (and the one Anthropic is sent).
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = crate::anthropic::DEFAULT_MAX_TOKENS;

/// Prices in USD per million tokens (`[pricing."<ref>"]` in the config, `[pricing]` in a
/// script).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Cache reads; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_mtok: Option<f64>,
    /// Cache writes; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
}

impl Pricing {
    pub fn new(input_per_mtok: f64, output_per_mtok: f64) -> Pricing {
        Pricing {
            input_per_mtok,
            output_per_mtok,
            cache_read_per_mtok: None,
            cache_write_per_mtok: None,
        }
    }

    /// What `usage` cost: uncached input at the input price, cache reads and writes at theirs,
    /// output at the output price.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage
            .cache_read_tokens
            .saturating_add(usage.cache_write_tokens);
        let uncached = usage.input_tokens.saturating_sub(cached);
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        per(uncached, self.input_per_mtok)
            + per(
                usage.cache_read_tokens,
                self.cache_read_per_mtok.unwrap_or(self.input_per_mtok),
            )
            + per(
                usage.cache_write_tokens,
                self.cache_write_per_mtok.unwrap_or(self.input_per_mtok),
            )
            + per(usage.output_tokens, self.output_per_mtok)
    }
}

/// Estimated tokens of `text` (see the module docs).
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut counter = ByteCounter::default();
    counter.count(text.as_bytes());
    counter.tokens()
}

/// Estimated tokens of `value` as compact JSON text, counted without building the text.
pub fn estimate_json_tokens(value: &serde_json::Value) -> u64 {
    let mut counter = ByteCounter::default();
    // Writing into the counter cannot fail; a value that does not serialize counts as empty.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.tokens()
}

/// Counts what the estimate needs of UTF-8 text, on bytes rather than decoded chars (the
/// engine estimates the whole conversation before every model call): an ASCII char is one byte
/// below 0x80, and every other char has exactly one leading byte that is not a continuation
/// byte (0b10xxxxxx).
#[derive(Default)]
struct ByteCounter {
    ascii: u64,
    other: u64,
}

impl ByteCounter {
    fn count(&mut self, bytes: &[u8]) {
        // Per chunk of at most 255 bytes the counts fit in a u8, which the compiler turns into
        // wide vector compares and adds.
        for chunk in bytes.chunks(255) {
            let mut ascii: u8 = 0;
            let mut other: u8 = 0;
            for &b in chunk {
                ascii = ascii.wrapping_add(u8::from(b < 0x80));
                other = other.wrapping_add(u8::from(b >= 0xC0));
            }
            self.ascii += u64::from(ascii);
            self.other += u64::from(other);
        }
    }

    fn tokens(&self) -> u64 {
        self.ascii.div_ceil(4) + self.other
    }
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn estimate_calls(calls: &[ToolCall]) -> u64 {
    calls
        .iter()
        .map(|call| {
            estimate_text_tokens(&call.id)
                + estimate_text_tokens(&call.name)
                + estimate_json_tokens(&call.arguments)
        })
        .sum()
}

/// Estimated input tokens of `request` (see the module docs).
pub fn estimate_input_tokens(request: &ChatRequest) -> u64 {
    PER_REQUEST_TOKENS
        + request
            .messages
            .iter()
            .map(estimate_message_tokens)
            .sum::<u64>()
        + estimate_tools_tokens(&request.tools)
}

/// The request's own [`ChatRequest::input_tokens_estimate`], else [`estimate_input_tokens`].
pub fn input_tokens_of(request: &ChatRequest) -> u64 {
    request
        .input_tokens_estimate
        .unwrap_or_else(|| estimate_input_tokens(request))
}

/// One message's part of [`estimate_input_tokens`]: the sum over a request's messages plus
/// [`estimate_tools_tokens`] plus [`PER_REQUEST_TOKENS`] is the request's estimate, so a
/// caller can keep it as a conversation grows.
pub fn estimate_message_tokens(message: &Message) -> u64 {
    PER_MESSAGE_TOKENS
        + match message {
            Message::System { content } | Message::User { content } => {
                estimate_text_tokens(content)
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                content.as_deref().map(estimate_text_tokens).unwrap_or(0)
                    + estimate_calls(tool_calls)
            }
            Message::Tool {
                call_id, content, ..
            } => estimate_text_tokens(call_id) + estimate_text_tokens(content),
        }
}

/// The tool definitions' part of [`estimate_input_tokens`].
pub fn estimate_tools_tokens(tools: &[crate::types::ToolDefinition]) -> u64 {
    tools
        .iter()
        .map(|tool| {
            PER_TOOL_TOKENS
                + estimate_text_tokens(&tool.name)
                + estimate_text_tokens(&tool.description)
                + estimate_json_tokens(&tool.parameters)
        })
        .sum()
}

/// Estimated output tokens of an answer with `content` and `calls`.
pub fn estimate_output_tokens(content: Option<&str>, calls: &[ToolCall]) -> u64 {
    content.map(estimate_text_tokens).unwrap_or(0) + estimate_calls(calls)
}

/// The most a call can cost, for the budget check before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorstCase {
    pub input_tokens: u64,
    /// The request's `max_output_tokens`, or [`DEFAULT_MAX_OUTPUT_TOKENS`].
    pub output_tokens: u64,
    /// Input plus output: what the `tokens` budget must have left.
    pub total_tokens: u64,
    /// Priced at the input and output prices (no cache discount is assumed); `None` without a
    /// price.
    pub usd: Option<f64>,
}

/// The worst case of `request`: estimated input plus the whole output limit.
pub fn worst_case_cost(request: &ChatRequest, pricing: Option<&Pricing>) -> WorstCase {
    let input_tokens = input_tokens_of(request);
    let output_tokens = request
        .max_output_tokens
        .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
    let usd = pricing.map(|p| {
        p.cost(&Usage {
            input_tokens,
            output_tokens,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        })
    });
    WorstCase {
        input_tokens,
        output_tokens,
        total_tokens: input_tokens.saturating_add(output_tokens),
        usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolDefinition;
    use serde_json::json;

    #[test]
    fn text_estimate_table() {
        let cases: &[(&str, u64)] = &[
            ("", 0),
            ("a", 1),
            ("abcd", 1),
            ("abcde", 2),
            ("fn main() {}", 3),
            ("日本語", 3),
            ("héllo", 2),
            // One char of each UTF-8 length: 2, 3 and 4 bytes.
            ("é€😀", 3),
            ("ab😀cd😀e", 4),
        ];
        for (text, tokens) in cases {
            assert_eq!(estimate_text_tokens(text), *tokens, "{text:?}");
        }
        // Past one 255-byte chunk, the counts carry over chunks.
        let long = format!("{}{}", "a".repeat(1000), "é".repeat(300));
        assert_eq!(estimate_text_tokens(&long), 250 + 300);
    }

    #[test]
    fn json_estimate_is_the_estimate_of_the_compact_text() {
        let values = [
            json!(null),
            json!({"command": "cargo test -p x", "n": 12, "ok": true}),
            json!({"path": "src/日本.rs", "lines": [1, 2, 3], "nested": {"q": "\"quoted\"\n"}}),
            json!("x".repeat(700)),
        ];
        for value in values {
            assert_eq!(
                estimate_json_tokens(&value),
                estimate_text_tokens(&value.to_string()),
                "{value}"
            );
        }
    }

    #[test]
    fn request_estimate_counts_messages_calls_and_tools() {
        let mut request = ChatRequest::new(
            "m",
            vec![
                Message::system("abcd"),
                Message::user("abcdabcd"),
                Message::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "run".into(),
                        arguments: json!({"a": 1}),
                    }],
                },
                Message::tool_result("c1", "abcd"),
            ],
        );
        // 3 + (4+1) + (4+2) + (4 + 1 + 1 + 2) + (4 + 1 + 1)
        assert_eq!(estimate_input_tokens(&request), 3 + 5 + 6 + 8 + 6);
        request.tools.push(ToolDefinition {
            name: "run".into(),
            description: "abcd".into(),
            parameters: json!({}),
        });
        // + 8 + 1 + 1 + 1
        assert_eq!(estimate_input_tokens(&request), 28 + 11);
    }

    #[test]
    fn cost_and_worst_case() {
        let pricing = Pricing {
            input_per_mtok: 2.0,
            output_per_mtok: 8.0,
            cache_read_per_mtok: Some(0.5),
            cache_write_per_mtok: None,
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cache_read_tokens: 400_000,
            cache_write_tokens: 100_000,
        };
        // 500k uncached * 2 + 400k * 0.5 + 100k * 2 + 500k * 8
        let cost = pricing.cost(&usage);
        assert!((cost - (1.0 + 0.2 + 0.2 + 4.0)).abs() < 1e-9, "{cost}");

        let mut request = ChatRequest::new("m", vec![Message::user("abcd")]);
        request.max_output_tokens = Some(1000);
        let worst = worst_case_cost(&request, Some(&Pricing::new(1.0, 2.0)));
        assert_eq!(worst.input_tokens, 3 + 4 + 1);
        assert_eq!(worst.output_tokens, 1000);
        assert_eq!(worst.total_tokens, 1008);
        let usd = worst.usd.unwrap();
        assert!((usd - (8.0 * 1.0 + 1000.0 * 2.0) / 1e6).abs() < 1e-12);
        request.max_output_tokens = None;
        let worst = worst_case_cost(&request, None);
        assert_eq!(worst.output_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
        assert_eq!(worst.usd, None);
    }
}
