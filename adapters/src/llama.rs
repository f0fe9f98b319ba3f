//! A llama-architecture decoder read from a GGUF file and run with candle on the CPU: the model
//! behind the in-process text generator (SmolLM2-135M-Instruct). The computation is llama.cpp's
//! (and candle-transformers' `quantized_llama`, MIT/Apache-2.0): RMS norm, grouped-query
//! attention with interleaved rotary embeddings (GGUF stores Q and K permuted for them), a SwiGLU
//! feed-forward, and an output projection that reuses the token embeddings when the file has no
//! `output.weight`. It is written here, on candle-core and candle-nn which the embedding models
//! already build, rather than through candle-transformers, whose hundred-odd other models would
//! add minutes to every clean build on two cores.
//!
//! Weights stay quantized. Q4_1 matrices are converted once, at load, to Q8_0: candle multiplies
//! Q8_0 with AVX2 and Q4_1 only with scalar code, and Q8_0 holds Q4_1's values almost exactly
//! (its step is a 127th of each block's largest value, Q4_1's a 15th of the block's range).
//! Q, K and V are one multiply, as are the feed-forward's gate and up: generating a token reads
//! every weight once, and fewer, larger multiplies spend less time starting and joining threads.
//!
//! The tokenizer is the file's own: its byte-level BPE vocabulary and merges, pre-tokenized as
//! the GGUF's `smollm` pre-tokenizer says (each digit alone, then GPT-2's byte-level split, no
//! leading space added). Control tokens (`<|im_start|>` …) are never read out of text: the chat
//! template inserts them by id, so a brief that contains one cannot forge a turn.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::Tokenizer;

/// Why a GGUF model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is not a usable GGUF llama model: {0}")]
    Format(String),
}

impl From<candle_core::Error> for GgufError {
    fn from(e: candle_core::Error) -> Self {
        Self::Format(e.to_string())
    }
}

/// The shape of the network, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub feed_forward: usize,
    pub rope_base: f32,
    pub norm_eps: f64,
    /// Positions the model was trained for.
    pub context: usize,
    pub vocab: usize,
}

/// Matrices applied to the same input, fused into one multiply where they can be: fewer, larger
/// multiplies cost less than many small ones when each reads its weights once per token.
struct Projections {
    /// Each multiply and the widths of the outputs it yields, in order.
    parts: Vec<(QMatMul, Vec<usize>)>,
}

impl Projections {
    fn new(tensors: Vec<QTensor>) -> Result<Self, GgufError> {
        let fusable = tensors
            .iter()
            .all(|t| matches!(t.dtype(), GgmlDType::Q4_1 | GgmlDType::Q8_0));
        if !fusable {
            let parts = tensors
                .into_iter()
                .map(|t| {
                    let rows = t.shape().dims()[0];
                    Ok((matmul(t)?, vec![rows]))
                })
                .collect::<Result<_, GgufError>>()?;
            return Ok(Self { parts });
        }
        let dense = tensors
            .iter()
            .map(|t| t.dequantize(&Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let widths = dense.iter().map(|t| t.dims()[0]).collect();
        let all = Tensor::cat(&dense, 0)?;
        let fused = QTensor::quantize(&all, GgmlDType::Q8_0)?;
        Ok(Self {
            parts: vec![(QMatMul::from_qtensor(fused)?, widths)],
        })
    }

    /// Every output, in the order the matrices were given.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut outputs = Vec::new();
        for (matmul, widths) in &self.parts {
            let y = matmul.forward(x)?;
            if widths.len() == 1 {
                outputs.push(y);
                continue;
            }
            let mut start = 0;
            for width in widths {
                outputs.push(y.narrow(1, start, *width)?);
                start += width;
            }
        }
        Ok(outputs)
    }
}

struct Layer {
    attention_norm: Tensor,
    /// Q, K and V.
    qkv: Projections,
    wo: QMatMul,
    ffn_norm: Tensor,
    /// Gate and up.
    gate_up: Projections,
    down: QMatMul,
}

/// The token embeddings: read a row at a time from the Q8_0 table the output projection also
/// uses (no second, dense copy), or dense when the file stores them otherwise.
enum Embeddings {
    Q8_0(Arc<QTensor>),
    Dense(Tensor),
}

/// Q8_0: per 32 values, an f16 scale then 32 signed bytes.
const Q8_0_BLOCK: usize = 32;
const Q8_0_BYTES: usize = 34;

impl Embeddings {
    fn lookup(&self, tokens: &[u32], hidden: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(table) => table.index_select(&Tensor::new(tokens, &Device::Cpu)?, 0),
            Self::Q8_0(table) => {
                let data = table.data()?;
                let row_bytes = hidden / Q8_0_BLOCK * Q8_0_BYTES;
                let mut values = Vec::with_capacity(tokens.len() * hidden);
                for &token in tokens {
                    let start = token as usize * row_bytes;
                    let Some(row) = data.get(start..start + row_bytes) else {
                        candle_core::bail!("token {token} is not in the vocabulary");
                    };
                    for block in row.chunks_exact(Q8_0_BYTES) {
                        let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
                        values.extend(block[2..].iter().map(|&q| f32::from(q as i8) * scale));
                    }
                }
                Tensor::from_vec(values, (tokens.len(), hidden), &Device::Cpu)
            }
        }
    }
}

/// The weights, shared read-only by every generation in the process.
pub struct Llama {
    config: LlamaConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("config", &self.config)
            .finish()
    }
}

/// One generation's attention keys and values, per layer.
#[derive(Debug, Default)]
pub struct KvCache {
    entries: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Positions already processed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A GGUF file opened: its metadata and the reader its tensors come from.
pub struct GgufFile {
    content: gguf_file::Content,
    reader: BufReader<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let mut reader = BufReader::new(File::open(path)?);
        let content = gguf_file::Content::read(&mut reader)?;
        Ok(Self { content, reader })
    }

    fn meta(&self, key: &str) -> Result<&gguf_file::Value, GgufError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| GgufError::Format(format!("no `{key}` in its metadata")))
    }

    fn meta_u32(&self, key: &str) -> Result<usize, GgufError> {
        Ok(self.meta(key)?.to_u32()? as usize)
    }

    fn meta_strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        self.meta(key)?
            .to_vec()?
            .iter()
            .map(|v| Ok(v.to_string()?.clone()))
            .collect()
    }

    fn tensor(&mut self, name: &str) -> Result<QTensor, GgufError> {
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| GgufError::Format(format!("tensor `{name}`: {e}")))
    }

    pub fn config(&self) -> Result<LlamaConfig, GgufError> {
        let architecture = self.meta("general.architecture")?.to_string()?;
        if architecture != "llama" {
            return Err(GgufError::Format(format!(
                "its architecture is `{architecture}`, not llama"
            )));
        }
        let hidden = self.meta_u32("llama.embedding_length")?;
        let heads = self.meta_u32("llama.attention.head_count")?;
        let kv_heads = self.meta_u32("llama.attention.head_count_kv")?;
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(GgufError::Format(format!(
                "{hidden} wide with {heads} heads and {kv_heads} key-value heads is not a llama shape"
            )));
        }
        let head_dim = hidden / heads;
        if head_dim % 2 != 0 {
            return Err(GgufError::Format("the head width is odd".into()));
        }
        let vocab = match self.content.metadata.get("llama.vocab_size") {
            Some(v) => v.to_u32()? as usize,
            None => self.meta("tokenizer.ggml.tokens")?.to_vec()?.len(),
        };
        Ok(LlamaConfig {
            layers: self.meta_u32("llama.block_count")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            feed_forward: self.meta_u32("llama.feed_forward_length")?,
            rope_base: self
                .content
                .metadata
                .get("llama.rope.freq_base")
                .map(|v| v.to_f32())
                .transpose()?
                .unwrap_or(10_000.0),
            norm_eps: f64::from(
                self.meta("llama.attention.layer_norm_rms_epsilon")?
                    .to_f32()?,
            ),
            context: self.meta_u32("llama.context_length")?,
            vocab,
        })
    }

    /// The file's tokenizer: byte-level BPE from its vocabulary and merges.
    pub fn tokenizer(&self) -> Result<LlamaTokenizer, GgufError> {
        let model = self.meta("tokenizer.ggml.model")?.to_string()?;
        if model != "gpt2" {
            return Err(GgufError::Format(format!(
                "its tokenizer is `{model}`, not byte-level BPE (gpt2)"
            )));
        }
        let pre = match self.content.metadata.get("tokenizer.ggml.pre") {
            Some(v) => v.to_string()?.clone(),
            None => "default".to_owned(),
        };
        let individual_digits = match pre.as_str() {
            "smollm" => true,
            "gpt2" | "default" => false,
            other => {
                return Err(GgufError::Format(format!(
                    "its pre-tokenizer `{other}` is not one this reader knows (smollm, gpt2)"
                )))
            }
        };
        let tokens = self.meta_strings("tokenizer.ggml.tokens")?;
        let merges = self
            .meta_strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| GgufError::Format(format!("the merge `{m}` has no space")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let special = |key: &str| -> Result<Option<u32>, GgufError> {
            self.content
                .metadata
                .get(key)
                .map(|v| v.to_u32())
                .transpose()
                .map_err(Into::into)
        };
        let id_of = |token: &str| vocab.get(token).copied();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.clone(), merges)
            .build()
            .map_err(|e| GgufError::Format(format!("its BPE vocabulary: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        if individual_digits {
            inner.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        } else {
            inner.with_pre_tokenizer(Some(byte_level));
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let im_start = id_of("<|im_start|>");
        let im_end = id_of("<|im_end|>");
        let end_of_text = special("tokenizer.ggml.eos_token_id")?;
        Ok(LlamaTokenizer {
            inner,
            im_start,
            im_end,
            stops: [im_end, end_of_text, id_of("<|endoftext|>")]
                .into_iter()
                .flatten()
                .collect(),
        })
    }

    /// The weights, read into memory.
    pub fn weights(&mut self) -> Result<Llama, GgufError> {
        let config = self.config()?;
        let embedding = self.tensor("token_embd.weight")?;
        if embedding.shape().dims() != [config.vocab, config.hidden] {
            return Err(GgufError::Format(format!(
                "token_embd.weight is {:?}, not [{}, {}]",
                embedding.shape().dims(),
                config.vocab,
                config.hidden
            )));
        }
        let embedding = Arc::new(embedding);
        let embeddings = if embedding.dtype() == GgmlDType::Q8_0 && config.hidden % Q8_0_BLOCK == 0
        {
            Embeddings::Q8_0(embedding.clone())
        } else {
            Embeddings::Dense(embedding.dequantize(&Device::Cpu)?)
        };
        let output = if self.content.tensor_infos.contains_key("output.weight") {
            let output = self.tensor("output.weight")?;
            matmul(output)?
        } else {
            QMatMul::from_arc(embedding)?
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut get = |part: &str| self.tensor(&format!("blk.{i}.{part}.weight"));
            layers.push(Layer {
                attention_norm: get("attn_norm")?.dequantize(&Device::Cpu)?,
                qkv: Projections::new(vec![get("attn_q")?, get("attn_k")?, get("attn_v")?])?,
                wo: matmul(get("attn_output")?)?,
                ffn_norm: get("ffn_norm")?.dequantize(&Device::Cpu)?,
                gate_up: Projections::new(vec![get("ffn_gate")?, get("ffn_up")?])?,
                down: matmul(get("ffn_down")?)?,
            });
        }
        let norm = self
            .tensor("output_norm.weight")?
            .dequantize(&Device::Cpu)?;
        let (cos, sin) = rotary_tables(&config)?;
        Ok(Llama {
            config,
            embeddings,
            layers,
            norm,
            output,
            cos,
            sin,
        })
    }
}

/// A weight matrix ready to multiply: Q4_1 becomes Q8_0 (see the module's comment).
fn matmul(tensor: QTensor) -> Result<QMatMul, GgufError> {
    let tensor = if tensor.dtype() == GgmlDType::Q4_1 {
        QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
    } else {
        tensor
    };
    Ok(QMatMul::from_qtensor(tensor)?)
}

/// cos and sin of every position's rotation angles: (context, head_dim / 2) each.
fn rotary_tables(config: &LlamaConfig) -> candle_core::Result<(Tensor, Tensor)> {
    let half = config.head_dim / 2;
    let inverse: Vec<f32> = (0..half)
        .map(|i| {
            1.0 / config
                .rope_base
                .powf(2.0 * i as f32 / config.head_dim as f32)
        })
        .collect();
    let inverse = Tensor::from_vec(inverse, (1, half), &Device::Cpu)?;
    let positions = Tensor::arange(0u32, config.context as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((config.context, 1))?;
    let angles = positions.broadcast_mul(&inverse)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Llama {
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Runs `tokens` after what `cache` holds and answers the next token's logits.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Vec<f32>> {
        let c = &self.config;
        let seq = tokens.len();
        let start = cache.len;
        if seq == 0 {
            candle_core::bail!("no tokens to run");
        }
        if start + seq > c.context {
            candle_core::bail!(
                "{} positions exceed the model's context of {}",
                start + seq,
                c.context
            );
        }
        if cache.entries.len() != c.layers {
            cache.entries = (0..c.layers).map(|_| None).collect();
        }
        let mut x = self.embeddings.lookup(tokens, c.hidden)?;
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let group = c.heads / c.kv_heads;
        let total = start + seq;
        // Queries of one key-value group are stacked (group × seq rows), so row r is position
        // start + r % seq; a row may see keys up to its own position.
        let mask = if seq > 1 {
            let mask: Vec<f32> = (0..group * seq)
                .flat_map(|r| {
                    let position = start + r % seq;
                    (0..total).map(move |j| {
                        if j <= position {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            Some(Tensor::from_vec(mask, (group * seq, total), &Device::Cpu)?)
        } else {
            None
        };
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let heads = |t: &Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((seq, n, c.head_dim))?
                .transpose(0, 1)?
                .contiguous()?
                .unsqueeze(0)
        };
        for (layer, entry) in self.layers.iter().zip(cache.entries.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &layer.attention_norm, c.norm_eps as f32)?;
            let qkv = layer.qkv.forward(&h)?;
            let [q, k, v] = qkv.as_slice() else {
                candle_core::bail!("attention needs three projections");
            };
            let q = candle_nn::rotary_emb::rope_i(&heads(q, c.heads)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&heads(k, c.kv_heads)?, &cos, &sin)?;
            let v = heads(v, c.kv_heads)?;
            let (k, v) = match entry.take() {
                Some((past_k, past_v)) => (
                    Tensor::cat(&[&past_k, &k], 2)?,
                    Tensor::cat(&[&past_v, &v], 2)?,
                ),
                None => (k, v),
            };
            // (kv_heads, group × seq, head_dim): each group's queries against its one key set.
            let q = (q.reshape((c.kv_heads, group * seq, c.head_dim))? * scale)?;
            let mut scores = q.matmul(&k.squeeze(0)?.t()?)?;
            if let Some(mask) = &mask {
                scores = scores.broadcast_add(mask)?;
            }
            let weights = candle_nn::ops::softmax_last_dim(&scores)?;
            let attended = weights
                .matmul(&v.squeeze(0)?)?
                .reshape((c.heads, seq, c.head_dim))?
                .transpose(0, 1)?
                .reshape((seq, c.hidden))?;
            *entry = Some((k, v));
            x = (x + layer.wo.forward(&attended)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.norm_eps as f32)?;
            let gate_up = layer.gate_up.forward(&h)?;
            let [gate, up] = gate_up.as_slice() else {
                candle_core::bail!("the feed-forward needs two projections");
            };
            x = (x + layer.down.forward(&(gate.silu()? * up)?)?)?;
        }
        cache.len = total;
        let last = x.narrow(0, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.norm_eps as f32)?;
        self.output
            .forward(&last)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()
    }
}

/// The model's tokenizer and the ids the chat template needs.
#[derive(Debug, Clone)]
pub struct LlamaTokenizer {
    inner: Tokenizer,
    im_start: Option<u32>,
    im_end: Option<u32>,
    stops: Vec<u32>,
}

/// One turn of a chat.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

impl LlamaTokenizer {
    /// The ids of plain text: control tokens in it are read as text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, GgufError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| GgufError::Format(format!("cannot tokenize: {e}")))
    }

    /// The text of `ids` (control tokens included as their names).
    pub fn decode(&self, ids: &[u32]) -> Result<String, GgufError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| GgufError::Format(format!("cannot decode: {e}")))
    }

    /// ChatML, as SmolLM2's template writes it, ending with the assistant's turn opened.
    pub fn chat(&self, turns: &[Turn<'_>]) -> Result<Vec<u32>, GgufError> {
        let (Some(start), Some(end)) = (self.im_start, self.im_end) else {
            return Err(GgufError::Format(
                "its vocabulary has no <|im_start|> and <|im_end|> for a chat".into(),
            ));
        };
        let newline = self.encode("\n")?;
        let mut ids = Vec::new();
        for turn in turns {
            ids.push(start);
            ids.extend(self.encode(&format!("{}\n{}", turn.role, turn.content))?);
            ids.push(end);
            ids.extend(&newline);
        }
        ids.push(start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }

    /// Whether the model ends its answer with this token.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stops.contains(&id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The index of the largest logit (for tests and checks; generation samples).
pub fn argmax(logits: &[f32]) -> Option<usize> {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}
