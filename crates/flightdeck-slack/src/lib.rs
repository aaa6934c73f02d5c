//! flightdeck's Slack layer: the pieces an approval in Slack is made of, with no knowledge of
//! missions, stores or config files (callers pass plain data in and get plain data out).
//!
//! - [`signature`]: Slack's request signing for HTTP mode (`POST /slack/actions`):
//!   [`signature::verify`] checks `X-Slack-Signature` (`v0=` + HMAC-SHA256 over
//!   `v0:{timestamp}:{raw body}`) in constant time and refuses timestamps more than five
//!   minutes from now; call it on the raw bytes before parsing anything.
//! - [`blocks`] (pure): [`blocks::approval_message`] turns an [`blocks::ApprovalRequestView`]
//!   into the Block Kit message (blocks plus `text` fallback): the whole context of the
//!   approval, Approve / Deny buttons with a confirm dialog while it is open, a line saying why
//!   once it is closed. Mission text is escaped so it cannot link or mention; Block Kit limits
//!   are kept by truncating ("…and N more"), never by failing.
//! - [`interactivity`] (pure): [`interactivity::parse_approval_click`] turns a
//!   `block_actions` interactivity body into an [`interactivity::ApprovalClick`] and refuses
//!   anything else (other payload types, other actions, missing fields, bodies over 64 KiB).
//! - [`client`]: [`client::SlackClient`], the Web API calls flightdeck makes
//!   (`chat.postMessage`, `chat.update`, `chat.postEphemeral`, `users.info`) with the bot
//!   token only in an `Authorization: Bearer` header, `ok: false` as a typed error, and
//!   HTTP 429 retried after `Retry-After` through an injectable [`client::Sleeper`]; and
//!   `apps.connections.open` with the app-level token ([`client::AppToken`]).
//! - [`socket_mode`]: [`socket_mode::SocketMode`], a Socket Mode client: it keeps a WebSocket
//!   to Slack up (rotations, reconnects with backoff), acknowledges every envelope as it
//!   arrives and hands each to a handler once (redeliveries deduplicated).
//!
//! Not here yet: deciding who may approve (that is `flightdeck-policy`'s
//! eligibility over `[people]`), and delivery (the feed cursor, `notification.sent`).

pub mod blocks;
pub mod client;
pub mod interactivity;
pub mod signature;
pub mod socket_mode;

pub use blocks::{approval_message, ApprovalMessage, ApprovalRequestView};
pub use client::{AppToken, BotToken, SlackClient, SlackError};
pub use interactivity::{parse_approval_click, ApprovalClick, InteractivityError};
pub use signature::{verify, SignatureError};
pub use socket_mode::{Envelope, SocketMode};
