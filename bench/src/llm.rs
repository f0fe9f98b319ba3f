//! `plasma bench llm`: the in-process text model (SmolLM2-135M-Instruct on candle) next to
//! llama.cpp on the same GGUF file, the same prompts and the same cores, and the quality of its
//! drafts next to the template generator's.
//!
//! 1. Speed: each of `--speed-prompts` draft prompts (ChatML, as the drafting workflow sends
//!    them) is processed, then `--tokens` tokens are generated greedily (no early stop, so both
//!    generate exactly as many). Tokens per second of prompt processing and of generation, in
//!    process and in llama.cpp (llama-cpp-python, `scripts/llama_reference.py bench`, run right
//!    after with as many threads as this process's matrix multiplies use).
//! 2. Memory: the resident set the model adds to its process, here and in llama.cpp.
//! 3. Quality: `--briefs` briefs across channels and brands, each written by the template
//!    generator and by the model (sampled, seeded by the brief), checked by the platform's voice
//!    checker and revised with its issues as feedback up to the drafting workflow's limit: the
//!    share passing on the first try and after revisions, and a few drafts of each.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use plasma_adapters::embedding::default_models_dir;
use plasma_adapters::llama::{argmax, KvCache};
use plasma_adapters::local_llm::{LocalLlm, LocalLlmSettings};
use plasma_adapters::VaderScorer;
use plasma_domain::agent::builtin::DRAFT_REVISIONS;
use plasma_domain::brand::VoiceGuidelines;
use plasma_domain::content::{
    BrandVoiceChecker, Channel, DraftBrief, GenerationRequest, TemplateGenerator, TextGenerator,
    VoiceChecker,
};
use serde_json::json;

#[derive(Debug, Args)]
pub struct LlmBenchArgs {
    /// Where scripts/install-models.sh put the models.
    #[arg(long, env = "PLASMA_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// The Python of a venv with llama-cpp-python (scripts/install-llama-server.sh); without
    /// it, llama.cpp is not measured.
    #[arg(long)]
    pub llama_python: Option<PathBuf>,
    /// Prompts timed for speed.
    #[arg(long, default_value_t = 10)]
    pub speed_prompts: usize,
    /// Tokens generated after each of them.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// Briefs written and voice-checked by each generator (0: skip).
    #[arg(long, default_value_t = 50)]
    pub briefs: usize,
}

/// A brand's voice, as the quality briefs use them.
fn brands() -> Vec<(&'static str, VoiceGuidelines)> {
    vec![
        (
            "Acme Rockets",
            VoiceGuidelines {
                tone: "playful, confident".into(),
                banned_words: vec!["cheap".into(), "guarantee".into()],
                required_phrases: vec![],
            },
        ),
        (
            "Northwind Outdoor",
            VoiceGuidelines {
                tone: "warm, friendly".into(),
                banned_words: vec!["hate".into(), "terrible".into()],
                required_phrases: vec!["See you outside".into()],
            },
        ),
        (
            "Harbor Financial",
            VoiceGuidelines {
                tone: "formal, professional".into(),
                banned_words: vec!["free money".into(), "risk-free".into()],
                required_phrases: vec![],
            },
        ),
        (
            "Initech",
            VoiceGuidelines {
                tone: "plain".into(),
                banned_words: vec!["synergy".into()],
                required_phrases: vec!["#Initech".into()],
            },
        ),
    ]
}

const TOPICS: [&str; 25] = [
    "Announce a new product for first-time customers.",
    "Share three tips for getting started.",
    "Invite customers to a spring event next Saturday.",
    "Thank the community for one million orders.",
    "Explain the new safety features in plain words.",
    "Tease a colour range coming next month.",
    "Celebrate the team that answered every support ticket in a day.",
    "Announce longer opening hours at the flagship store.",
    "Share a customer story about a first success.",
    "Introduce the new mobile app and what it does.",
    "Remind customers to register for the free workshop.",
    "Announce a partnership with a local school.",
    "Share what the research lab learned this quarter.",
    "Explain how returns work, step by step.",
    "Announce a recycling programme for old products.",
    "Welcome new subscribers and say what to expect.",
    "Share a behind-the-scenes look at how products are tested.",
    "Announce a price change and explain why.",
    "Invite feedback on the new website.",
    "Celebrate ten years in business.",
    "Share a checklist for a safe weekend trip.",
    "Announce a limited edition made with customer ideas.",
    "Explain the warranty in two sentences.",
    "Announce the winners of the photo contest.",
    "Share the roadmap for the next six months.",
];

const CHANNELS: [Channel; 4] = [
    Channel::Twitter,
    Channel::LinkedIn,
    Channel::Newsletter,
    Channel::Blog,
];

fn briefs(count: usize) -> Vec<DraftBrief> {
    let brands = brands();
    (0..count)
        .map(|i| {
            let (brand, voice) = &brands[i % brands.len()];
            DraftBrief {
                brand: (*brand).to_owned(),
                brief: TOPICS[i % TOPICS.len()].to_owned(),
                channel: CHANNELS[(i / brands.len()) % CHANNELS.len()],
                voice: voice.clone(),
                feedback: Vec::new(),
            }
        })
        .collect()
}

fn request(brief: &DraftBrief, seed: u64) -> GenerationRequest {
    let (system, prompt) = brief.prompts();
    GenerationRequest {
        system: Some(system),
        prompt,
        max_tokens: None,
        draft: Some(brief.clone()),
        seed: Some(seed),
        stop: Vec::new(),
    }
}

/// This process's resident set, in MiB (Linux).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

pub async fn llm(args: LlmBenchArgs) -> Result<()> {
    if args.speed_prompts == 0 || args.tokens == 0 {
        bail!("--speed-prompts and --tokens must be positive");
    }
    let models_dir = args.models_dir.clone().unwrap_or_else(default_models_dir);
    let settings = LocalLlmSettings::in_models_dir(&models_dir);
    let model_file = settings.model_file.clone();
    let before = rss_mib();
    let loading = Instant::now();
    let llm = LocalLlm::load(settings)?;
    let load_s = loading.elapsed().as_secs_f64();
    let model_rss = rss_mib() - before;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // 1. Speed, in process.
    let all = briefs(args.speed_prompts.max(args.briefs));
    let prompts: Vec<Vec<u32>> = all[..args.speed_prompts]
        .iter()
        .map(|brief| {
            let (system, user) = brief.prompts();
            llm.tokenizer().chat(&[
                plasma_adapters::llama::Turn {
                    role: "system",
                    content: &system,
                },
                plasma_adapters::llama::Turn {
                    role: "user",
                    content: &user,
                },
            ])
        })
        .collect::<Result<_, _>>()?;
    let model = llm.model();
    let (mut prompt_tokens, mut prompt_s, mut generation_s) = (0usize, 0.0f64, 0.0f64);
    for prompt in &prompts {
        let mut cache = KvCache::default();
        let started = Instant::now();
        let mut logits = model.forward(prompt, &mut cache)?;
        prompt_s += started.elapsed().as_secs_f64();
        prompt_tokens += prompt.len();
        let started = Instant::now();
        for _ in 0..args.tokens {
            let next = argmax(&logits).unwrap_or(0) as u32;
            logits = model.forward(&[next], &mut cache)?;
        }
        generation_s += started.elapsed().as_secs_f64();
    }
    let generated = (args.tokens * prompts.len()) as f64;
    let ours = json!({
        "prompt_tokens_per_s": round(prompt_tokens as f64 / prompt_s, 1),
        "generation_tokens_per_s": round(generated / generation_s, 1),
        "model_rss_mib": round(model_rss, 1),
        "load_s": round(load_s, 2),
    });
    eprintln!("candle: {ours}");

    // The same prompts in llama.cpp.
    let reference = match &args.llama_python {
        None => None,
        Some(python) => {
            let dir = tempfile::tempdir()?;
            let file = dir.path().join("prompts.json");
            std::fs::write(&file, serde_json::to_vec(&prompts)?)?;
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/llama_reference.py");
            let script = if script.is_file() {
                script
            } else {
                PathBuf::from("scripts/llama_reference.py")
            };
            let output = Command::new(python)
                .arg(&script)
                .arg("bench")
                .arg(&model_file)
                .arg(&file)
                .arg(args.tokens.to_string())
                .arg(threads.to_string())
                .output()
                .context("running scripts/llama_reference.py")?;
            if !output.status.success() {
                bail!(
                    "llama_reference.py failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let r: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            let num = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            Some(json!({
                "prompt_tokens_per_s": round(num("prompt_tokens") / num("prompt_secs"), 1),
                "generation_tokens_per_s": round(num("generated_tokens") / num("generation_secs"), 1),
                "model_rss_mib": round(num("model_rss_mib"), 1),
                "load_s": round(num("load_s"), 2),
                "version": r["version"],
            }))
        }
    };
    if let Some(reference) = &reference {
        eprintln!("llama.cpp: {reference}");
    }

    // 3. Quality.
    let checker = BrandVoiceChecker::new(Arc::new(VaderScorer::new()));
    let mut quality = serde_json::Map::new();
    let generators: [(&str, Arc<dyn TextGenerator>); 2] = [
        ("template", Arc::new(TemplateGenerator)),
        ("local", Arc::new(llm.clone())),
    ];
    for (name, generator) in generators {
        if args.briefs == 0 {
            break;
        }
        let started = Instant::now();
        let (mut first, mut eventually, mut generations) = (0usize, 0usize, 0usize);
        let mut examples = Vec::new();
        let mut issues: std::collections::BTreeMap<String, usize> = Default::default();
        for (i, brief) in all[..args.briefs].iter().enumerate() {
            let mut brief = brief.clone();
            let mut attempts = Vec::new();
            let mut passed = false;
            for attempt in 0..=DRAFT_REVISIONS {
                let seed = (i as u64) << 8 | attempt as u64;
                let generation = generator.generate(&request(&brief, seed)).await?;
                generations += 1;
                let check = checker.check(&generation.text, brief.channel, &brief.voice);
                attempts.push(json!({"text": generation.text, "issues": check.issues}));
                if check.passed {
                    passed = true;
                    if attempt == 0 {
                        first += 1;
                    }
                    break;
                }
                for issue in &check.issues {
                    let kind = issue.split(':').next().unwrap_or(issue).to_owned();
                    *issues.entry(kind).or_default() += 1;
                }
                brief.feedback = check.issues;
            }
            eventually += usize::from(passed);
            if i < 4 {
                examples.push(json!({
                    "brand": brief.brand, "channel": brief.channel.to_string(),
                    "brief": brief.brief, "passed": passed, "attempts": attempts,
                }));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let entry = json!({
            "briefs": args.briefs,
            "passed_first_try": first,
            "passed_after_revisions": eventually,
            "first_try_share": round(first as f64 / args.briefs as f64, 2),
            "after_revisions_share": round(eventually as f64 / args.briefs as f64, 2),
            "generations": generations,
            "seconds": round(seconds, 1),
            "failed_checks_by_kind": issues,
            "examples": examples,
        });
        eprintln!(
            "{name}: {first}/{} first try, {eventually} after revisions, {generations} generations in {seconds:.1} s",
            args.briefs
        );
        quality.insert(name.to_owned(), entry);
    }

    let ratio = reference.as_ref().map(|r| {
        let ours_gen = ours["generation_tokens_per_s"].as_f64().unwrap_or(0.0);
        let ours_prompt = ours["prompt_tokens_per_s"].as_f64().unwrap_or(0.0);
        json!({
            "generation": round(ours_gen / r["generation_tokens_per_s"].as_f64().unwrap_or(f64::NAN), 2),
            "prompt": round(ours_prompt / r["prompt_tokens_per_s"].as_f64().unwrap_or(f64::NAN), 2),
        })
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "model": model_file.display().to_string(),
            "threads": threads,
            "speed_prompts": prompts.len(),
            "mean_prompt_tokens": prompt_tokens / prompts.len(),
            "generated_tokens_per_prompt": args.tokens,
            "candle": ours,
            "llama_cpp": reference,
            "candle_over_llama_cpp": ratio,
            "quality": quality,
        }))?
    );
    Ok(())
}
