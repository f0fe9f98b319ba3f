//! Adapters: implementations of the ports the domain declares for the outside world.
//!
//! - [`sentiment::VaderScorer`]: the domain's `SentimentScorer`, VADER with its lexicon
//!   compiled in.
//!
//! Embedders, entity extractors and text generators arrive here as the research and agent
//! work lands; the domain only ever sees the port.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod sentiment;

pub use sentiment::VaderScorer;
