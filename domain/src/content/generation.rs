//! Text generation: the port through which the platform writes (drafts in a brand's voice, LLM
//! steps of workflows), and the deterministic template generator that is its default.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use crate::brand::VoiceGuidelines;

/// What to write. `draft` is set when the text is a draft for a brand: the provider then writes
/// in that brand's voice for that channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub system: Option<String>,
    pub prompt: String,
    pub max_tokens: Option<u32>,
    pub draft: Option<DraftBrief>,
    /// Seeds a sampling provider, so the same request gives the same text again (a retried
    /// workflow step derives it from the step, and writes what its first attempt wrote).
    pub seed: Option<u64>,
    /// The text ends before the first of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// A draft to write: the brand, its voice, the channel and the brief; `feedback` lists what a
/// revision must fix (the voice check's issues).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftBrief {
    pub brand: String,
    pub brief: String,
    pub channel: Channel,
    pub voice: VoiceGuidelines,
    pub feedback: Vec<String>,
}

impl DraftBrief {
    /// The system prompt and user prompt a chat model gets for this draft. The rules go in the
    /// user's turn as a short list, and the length as words as well as characters: small local
    /// models follow that far better than rules folded into the system prompt.
    pub fn prompts(&self) -> (String, String) {
        let mut system = format!(
            "You write {} posts for the brand {}.",
            self.channel, self.brand
        );
        if !self.voice.tone.is_empty() {
            system.push_str(&format!(" Tone: {}.", self.voice.tone));
        }
        system.push_str(
            " Answer with the post's text only: no title, no quotes, no placeholders in brackets.",
        );
        let kind = match self.channel {
            Channel::Twitter => "one short tweet (one or two sentences)",
            Channel::Instagram => "one Instagram caption",
            Channel::LinkedIn => "one LinkedIn post",
            Channel::Newsletter => "one newsletter paragraph",
            Channel::Blog => "the opening paragraph of a blog post",
        };
        let mut user = format!("Brief: {}\nWrite {kind}.\nRules:", self.brief);
        if let Some(max) = self.channel.max_chars() {
            user.push_str(&format!(
                "\n- At most {max} characters (about {} words).",
                max / 7
            ));
        }
        if !self.voice.required_phrases.is_empty() {
            user.push_str(&format!(
                "\n- Include these phrases word for word: {}.",
                quoted(&self.voice.required_phrases)
            ));
        }
        if !self.voice.banned_words.is_empty() {
            user.push_str(&format!(
                "\n- Never use these words: {}.",
                quoted(&self.voice.banned_words)
            ));
        }
        user.push_str("\n- Short sentences and plain words.");
        if !self.feedback.is_empty() {
            user.push_str("\nThe previous version was refused; fix: ");
            user.push_str(&self.feedback.join("; "));
        }
        (system, user)
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tokens a generation used, as the provider counted them (the template generator counts
/// whitespace-separated words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// How a sampling provider chose its tokens: recorded with what it wrote, so the text can be
/// generated again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub seed: u64,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub repetition_penalty: f32,
}

/// A generated text and who wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    /// `None` for providers that do not sample here (templates, a remote service).
    pub sampling: Option<Sampling>,
}

/// Receives a generation's text as it is written, a piece at a time.
pub trait TextSink: Send + Sync {
    fn push(&self, piece: &str);
}

/// Why a generation failed: a transient failure (timeout, 429, 5xx) may succeed on retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    #[error("the provider failed for now: {0}")]
    Transient(String),
    #[error("the provider refused: {0}")]
    Terminal(String),
}

/// A text-generation provider.
#[async_trait]
pub trait TextGenerator: Send + Sync + std::fmt::Debug {
    async fn generate(&self, request: &GenerationRequest) -> Result<Generation, GenerationError>;
    /// Like `generate`, handing `sink` the text as it is written; providers that cannot stream
    /// hand it the whole text at the end.
    async fn generate_streaming(
        &self,
        request: &GenerationRequest,
        sink: &dyn TextSink,
    ) -> Result<Generation, GenerationError> {
        let generation = self.generate(request).await?;
        sink.push(&generation.text);
        Ok(generation)
    }
    /// `provider` and `model`, for the record.
    fn describe(&self) -> (String, String);
}

/// The default provider: deterministic text from templates. For a draft it writes the brief in
/// the brand's voice: an opener chosen by the tone, the brief with banned words left out, every
/// required phrase, cut at a word boundary to fit the channel. For any other prompt it answers
/// with a fixed, recognisable summary of the prompt. The same request always gives the same text.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateGenerator;

impl TemplateGenerator {
    pub const PROVIDER: &'static str = "template";
    /// Bump whenever the templates change, so recorded generations say which produced them.
    pub const MODEL: &'static str = "template-v1";

    fn opener(tone: &str) -> &'static str {
        let tone = tone.to_lowercase();
        let has = |w: &str| tone.contains(w);
        if has("playful") || has("fun") {
            "Guess what?"
        } else if has("formal") || has("professional") {
            "We are pleased to share:"
        } else if has("bold") || has("confident") {
            "Big news:"
        } else if has("warm") || has("friendly") {
            "Good news, friends:"
        } else {
            ""
        }
    }

    /// The draft's text.
    pub fn write_draft(brief: &DraftBrief) -> String {
        let banned: Vec<String> = brief
            .voice
            .banned_words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let words: Vec<&str> = brief
            .brief
            .split_whitespace()
            .filter(|word| {
                let bare: String = word
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '\'')
                    .collect::<String>()
                    .to_lowercase();
                !banned.contains(&bare)
            })
            .collect();
        let mut body = words.join(" ");
        if !body.is_empty() && !body.ends_with(['.', '!', '?']) {
            body.push('.');
        }
        let opener = Self::opener(&brief.voice.tone);
        let mut tail = String::new();
        for phrase in &brief.voice.required_phrases {
            let phrase = phrase.trim();
            if phrase.is_empty() || body.to_lowercase().contains(&phrase.to_lowercase()) {
                continue;
            }
            tail.push(' ');
            tail.push_str(phrase);
            if !phrase.ends_with(['.', '!', '?']) {
                tail.push('.');
            }
        }
        let head = if opener.is_empty() {
            body
        } else {
            format!("{opener} {body}")
        };
        match brief.channel.max_chars() {
            Some(max) if head.chars().count() + tail.chars().count() > max => {
                // Keep every required phrase; shorten the body at a word boundary.
                let room = max.saturating_sub(tail.chars().count() + 1);
                let mut cut = String::new();
                for word in head.split_whitespace() {
                    let extra = word.chars().count() + usize::from(!cut.is_empty());
                    if cut.chars().count() + extra > room {
                        break;
                    }
                    if !cut.is_empty() {
                        cut.push(' ');
                    }
                    cut.push_str(word);
                }
                if !cut.is_empty() {
                    cut.push('…');
                }
                format!("{cut}{tail}").trim().to_owned()
            }
            _ => format!("{head}{tail}").trim().to_owned(),
        }
    }

    /// The answer to a prompt that is not a draft.
    pub fn answer(request: &GenerationRequest) -> String {
        let prompt: String = request
            .prompt
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let limit = request.max_tokens.map_or(200, |n| n as usize);
        let words: Vec<&str> = prompt.split(' ').take(limit).collect();
        format!("Summary of the request: {}", words.join(" "))
    }
}

#[async_trait]
impl TextGenerator for TemplateGenerator {
    async fn generate(&self, request: &GenerationRequest) -> Result<Generation, GenerationError> {
        let text = match &request.draft {
            Some(brief) => Self::write_draft(brief),
            None => Self::answer(request),
        };
        let prompt_words = request.prompt.split_whitespace().count()
            + request
                .system
                .as_deref()
                .map_or(0, |s| s.split_whitespace().count());
        Ok(Generation {
            usage: Usage {
                prompt_tokens: prompt_words as u64,
                completion_tokens: text.split_whitespace().count() as u64,
            },
            text,
            provider: Self::PROVIDER.to_owned(),
            model: Self::MODEL.to_owned(),
            sampling: None,
        })
    }

    fn describe(&self) -> (String, String) {
        (Self::PROVIDER.to_owned(), Self::MODEL.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{RulesVoiceChecker, VoiceChecker};

    fn brief(channel: Channel, text: &str) -> DraftBrief {
        DraftBrief {
            brand: "Acme Skates".into(),
            brief: text.into(),
            channel,
            voice: VoiceGuidelines {
                tone: "warm, plain".into(),
                banned_words: vec!["cheap".into(), "guarantee".into()],
                required_phrases: vec!["Skate safe".into()],
            },
            feedback: vec![],
        }
    }

    #[test]
    fn a_template_draft_follows_the_voice_and_passes_the_rules() {
        let b = brief(
            Channel::Blog,
            "Our cheap new wheels grip wet ramps, we guarantee it",
        );
        let text = TemplateGenerator::write_draft(&b);
        assert_eq!(
            text,
            "Good news, friends: Our new wheels grip wet ramps, we it. Skate safe."
        );
        assert!(RulesVoiceChecker.check(&text, b.channel, &b.voice).passed);
    }

    #[test]
    fn a_template_draft_fits_the_channel_and_keeps_required_phrases() {
        let long = "word ".repeat(200);
        let b = brief(Channel::Twitter, &long);
        let text = TemplateGenerator::write_draft(&b);
        assert!(text.chars().count() <= 280, "{}", text.chars().count());
        assert!(text.ends_with("Skate safe."));
        assert!(RulesVoiceChecker.check(&text, b.channel, &b.voice).passed);
    }

    #[test]
    fn the_same_request_gives_the_same_text() {
        let b = brief(Channel::LinkedIn, "Launch day");
        assert_eq!(
            TemplateGenerator::write_draft(&b),
            TemplateGenerator::write_draft(&b)
        );
        let (system, user) = b.prompts();
        assert!(system.contains("linkedin") && system.contains("Tone: warm, plain."));
        assert_eq!(
            user,
            "Brief: Launch day\nWrite one LinkedIn post.\nRules:\n\
             - At most 3000 characters (about 428 words).\n\
             - Include these phrases word for word: \"Skate safe\".\n\
             - Never use these words: \"cheap\", \"guarantee\".\n\
             - Short sentences and plain words."
        );
    }
}
