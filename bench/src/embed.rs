//! `plasma bench embed`: embedding throughput of each model on this machine, on chunk-sized
//! texts, and for all-MiniLM-L6-v2 the floating-point rate its forward pass achieves (to set
//! next to the machine's own single-precision matrix-multiply rate, which
//! `scripts/bench-embed.sh` measures with numpy in the same run).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use chrono::{TimeZone, Utc};
use clap::Args;
use plasma_adapters::embedding::default_models_dir;
use plasma_adapters::KnownModel;

use crate::mentions::{self, MentionGenerator, Tone, Window};

#[derive(Debug, Args)]
pub struct EmbedBenchArgs {
    /// Texts to embed with each model.
    #[arg(long, default_value_t = 512)]
    texts: usize,
    /// Texts per model call (the embedding worker's batch).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Sentences per text: 14 make about 1,000 characters, the default chunk.
    #[arg(long, default_value_t = 14)]
    sentences: usize,
    /// The models dir (`scripts/install-models.sh`).
    #[arg(long, env = "PLASMA_MODELS_DIR")]
    models_dir: Option<PathBuf>,
}

/// all-MiniLM-L6-v2's shape, for counting its floating-point operations.
const LAYERS: f64 = 6.0;
const HIDDEN: f64 = 384.0;
const INTERMEDIATE: f64 = 1536.0;

/// Multiply-adds (as 2 operations each) of one encoder pass over `rows` sequences padded to
/// `width` tokens: the Q, K, V and output projections, the two feed-forward matrices, and the
/// attention scores and their weighted sum.
fn minilm_flops(rows: usize, width: usize) -> f64 {
    let tokens = (rows * width) as f64;
    let per_layer = 2.0 * tokens * (4.0 * HIDDEN * HIDDEN + 2.0 * HIDDEN * INTERMEDIATE)
        + 4.0 * rows as f64 * (width * width) as f64 * HIDDEN;
    LAYERS * per_layer
}

pub async fn embed(args: EmbedBenchArgs) -> Result<()> {
    if args.texts == 0 || args.batch == 0 || args.sentences == 0 {
        bail!("--texts, --batch and --sentences must be positive");
    }
    let models_dir = args.models_dir.unwrap_or_else(default_models_dir);
    let end = Utc
        .with_ymd_and_hms(2026, 10, 31, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let texts: Vec<String> = MentionGenerator::new(0x5EED)
        .generate(&mentions::Batch {
            brand: mentions::ACME,
            tone: Tone::Mixed,
            window: Window::Before { end, days: 30 },
            count: args.texts,
            prefix: "t",
            sentences: args.sentences,
        })
        .into_iter()
        .map(|m| m.text)
        .collect();
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
    eprintln!(
        "{} texts of {} characters on average, batches of {}",
        texts.len(),
        chars / texts.len(),
        args.batch
    );
    println!("| model | texts | tokens | seconds | texts/s | tokens/s | GFLOP/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for model in KnownModel::ALL {
        let embedder = model.load(&models_dir)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        // Warm up: first calls allocate and fault in the weights.
        embedder.embed(&refs[..args.batch.min(refs.len())])?;
        let mut tokens = 0usize;
        let mut flops = 0.0;
        for batch in refs.chunks(args.batch) {
            let counts = embedder.token_counts(batch)?;
            tokens += counts.iter().sum::<usize>();
            flops += minilm_flops(batch.len(), counts.iter().copied().max().unwrap_or(0));
        }
        let started = Instant::now();
        for batch in refs.chunks(args.batch) {
            embedder.embed(batch)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let rate = match model {
            KnownModel::MiniLm => format!("{:.1}", flops / seconds / 1e9),
            KnownModel::WordLlama => "–".to_owned(),
        };
        println!(
            "| {} | {} | {tokens} | {seconds:.2} | {:.0} | {:.0} | {rate} |",
            model.name(),
            refs.len(),
            refs.len() as f64 / seconds,
            tokens as f64 / seconds,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minilm_pass_counts_its_matrix_multiplies() {
        // One sequence of one token: the projections and the feed-forward dominate.
        let one = minilm_flops(1, 1);
        let expected = 6.0 * (2.0 * (4.0 * 384.0 * 384.0 + 2.0 * 384.0 * 1536.0) + 4.0 * 384.0);
        assert!((one - expected).abs() < 1.0);
        // Attention grows with the square of the width.
        assert!(minilm_flops(1, 256) > 256.0 * one);
    }
}
