//! The BERT encoder all-MiniLM-L6-v2 runs: the same computation as candle-transformers'
//! `bert` module (MIT/Apache-2.0), which this adapter used first, with the work around the
//! matrix multiplies done differently, since on a CPU that work, not the multiplies, took
//! most of the time:
//!
//! - every linear layer is one 2-D matrix multiply over all the batch's tokens (not one per
//!   text against a broadcast weight);
//! - the attention's 1/√d scale is folded into the query (a tensor `heads × width` times
//!   smaller than the scores), and softmax is candle's fused, parallel last-dimension kernel
//!   instead of five separate passes;
//! - GELU's erf is a branch-free rational approximation (|error| < 1e-6, the one Eigen and
//!   XLA use) that the compiler vectorises, spread over the cores, instead of a scalar erf.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use rayon::prelude::*;
use serde::Deserialize;

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// A dense layer: `x · Wᵀ + b` over the last dimension.
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((outputs, inputs), "weight")?;
        Ok(Self {
            // Transposed once here, not on every call.
            weight_t: weight.t()?.contiguous()?,
            bias: vb.get(outputs, "bias")?,
        })
    }

    /// `x` of shape (tokens, inputs) → (tokens, outputs).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

pub(crate) struct Encoder {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
}

impl Encoder {
    pub(crate) fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        if config.hidden_act != "gelu" {
            candle_core::bail!("unsupported activation `{}`", config.hidden_act);
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            candle_core::bail!("the hidden size does not split into the attention heads");
        }
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: Dense::load(h, h, a.pp("self.query"))?,
                    key: Dense::load(h, h, a.pp("self.key"))?,
                    value: Dense::load(h, h, a.pp("self.value"))?,
                    attention_output: Dense::load(h, h, a.pp("output.dense"))?,
                    attention_norm: layer_norm(h, eps, a.pp("output.LayerNorm"))?,
                    intermediate: Dense::load(
                        h,
                        config.intermediate_size,
                        l.pp("intermediate.dense"),
                    )?,
                    output: Dense::load(config.intermediate_size, h, l.pp("output.dense"))?,
                    output_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(
                config.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type: embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            head_size: h / config.num_attention_heads,
        })
    }

    /// The last hidden states, (texts, width, hidden), of `ids` (texts, width) whose real
    /// tokens `mask` marks with 1 (all of one segment).
    pub(crate) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (texts, width) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, width as u32, device)?;
        let segment = Tensor::zeros(1, DType::U32, device)?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .broadcast_add(&self.token_type.forward(&segment)?)?;
        let x = self.norm.forward(&x)?;
        let hidden = x.dim(2)?;
        // Padding gets a large negative score: after softmax its weight is exactly 0.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((texts, 1, 1, width))?;
        let mut x = x.reshape((texts * width, hidden))?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &bias, texts, width)?;
        }
        x.reshape((texts, width, hidden))
    }

    /// One encoder layer over `x`, (texts × width, hidden).
    fn layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        bias: &Tensor,
        texts: usize,
        width: usize,
    ) -> Result<Tensor> {
        let hidden = self.heads * self.head_size;
        let heads = |t: Tensor| {
            t.reshape((texts, width, self.heads, self.head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = 1.0 / (self.head_size as f64).sqrt();
        let q = heads((layer.query.forward(x)? * scale)?)?;
        let k = heads(layer.key.forward(x)?)?;
        let v = heads(layer.value.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((texts * width, hidden))?;
        let attended = layer
            .attention_norm
            .forward(&(layer.attention_output.forward(&context)? + x)?)?;
        let inner = layer
            .intermediate
            .forward(&attended)?
            .apply_op1_no_bwd(&GeluErf)?;
        layer
            .output_norm
            .forward(&(layer.output.forward(&inner)? + &attended)?)
    }
}

/// GELU with erf (BERT's), by [`erf`], in parallel.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-rational"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gelu: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu: contiguous input only");
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        let gelu = |out: &mut [f32], src: &[f32]| {
            for (y, &x) in out.iter_mut().zip(src) {
                *y = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            }
        };
        // A question's few tokens are done before threads would start.
        const PIECE: usize = 16 * 1024;
        if src.len() <= PIECE {
            gelu(&mut out, src);
        } else {
            out.par_chunks_mut(PIECE)
                .zip(src.par_chunks(PIECE))
                .for_each(|(out, src)| gelu(out, src));
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// erf as a ratio of two polynomials on [-4, 4] (outside, erf is ±1 in single precision); no
/// branches, so a loop of it vectorises. Plain multiplies and adds, not `mul_add`: without
/// the FMA target feature at compile time that is a call to a scalar `fmaf` per step.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329_2e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rational_erf_is_within_a_millionth_of_erf() {
        // erf from its Taylor series at small |x| and the complementary asymptote elsewhere
        // would be a test of their own; libm's is the reference (std has none for f32).
        let mut worst = 0.0f64;
        for i in -6000..=6000 {
            let x = i as f64 / 1000.0;
            let exact = libm_erf(x);
            worst = worst.max((f64::from(erf(x as f32)) - exact).abs());
        }
        assert!(worst < 1e-6, "{worst}");
    }

    /// erf by its series (|x| < 2.5) or continued fraction, in f64: exact enough to test a
    /// single-precision approximation.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let value = if a < 2.5 {
            let mut sum = 0.0;
            let mut term = a;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -a * a / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc by Lentz's continued fraction.
            let mut f = a;
            let mut c = a;
            let mut d = 0.0;
            for k in 1..200 {
                let an = k as f64 / 2.0;
                d = a + an * d;
                d = 1.0 / d;
                c = a + an / c;
                f *= c * d;
            }
            1.0 - (-a * a).exp() / (f * std::f64::consts::PI.sqrt())
        };
        value.copysign(x)
    }
}
