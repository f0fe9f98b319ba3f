//! Adapters: implementations of the ports the domain declares for the outside world.
//!
//! - [`sentiment::VaderScorer`]: the domain's `SentimentScorer`, VADER with its lexicon
//!   compiled in.
//! - [`embedding`]: the domain's `Embedder`: all-MiniLM-L6-v2 (candle) and WordLlama static
//!   vectors, loaded from local model files.
//! - [`webhook`]: the domain's `ChannelSecrets` and `WebhookSender`: HMAC-signed POSTs.
//! - [`openai`]: the domain's `TextGenerator` over any OpenAI-compatible chat-completions API.
//! - [`local_llm`]: the domain's `TextGenerator` in-process: SmolLM2-135M-Instruct on
//!   [`llama`], a GGUF llama decoder on candle.
//! - [`outbound`]: the agent's `OutboundHttp` (allow-listed hosts) and `DraftPublisher` (a
//!   signed webhook).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bert;
pub mod embedding;
pub mod llama;
pub mod local_llm;
pub mod openai;
pub mod outbound;
pub mod sentiment;
pub mod webhook;

pub use embedding::{KnownModel, LoadError, MiniLm, WordLlama};
pub use sentiment::VaderScorer;
