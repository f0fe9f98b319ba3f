//! The one mention generator: realistic-looking social and news mentions of a brand, with a
//! sentiment mix, sources, authors and publication times, pseudo-random but deterministic (a
//! fixed seed), so every demo is the same demo and every benchmark run ingests the same data.
//! `plasma dev --demo` and `plasma bench` both draw from it.

use chrono::{DateTime, Duration, Utc};
use plasma_commands::MentionInput;

/// What a generated mention can name.
#[derive(Debug, Clone, Copy)]
pub struct BrandProfile<'a> {
    pub name: &'a str,
    pub products: &'a [&'a str],
    pub competitors: &'a [&'a str],
}

/// The brand the benchmarks generate mentions of.
pub const ACME: BrandProfile<'static> = BrandProfile {
    name: "Acme",
    products: &[
        "rocket skates",
        "anvil subscription",
        "jet pack",
        "Acme app",
    ],
    competitors: &["Globex", "Initech"],
};

/// The sentiment of what is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// About 45% positive, 30% neutral, 25% negative.
    Mixed,
    /// A negative burst (a product scare), all within `Window::Day`.
    Spike,
}

/// When generated mentions are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Uniformly over the `days` before `end`.
    Before { end: DateTime<Utc>, days: i64 },
    /// Within the day starting at `start`, never after `end`.
    Day {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub brand: BrandProfile<'a>,
    pub tone: Tone,
    pub window: Window,
    pub count: usize,
    /// External ids are `{prefix}-{brand slug}-{index}`.
    pub prefix: &'a str,
    /// Template sentences per mention: 1 reads like a tweet; more make longer posts.
    pub sentences: usize,
}

const POSITIVE: [&str; 6] = [
    "Absolutely love my {product} from {brand}! Best purchase this year.",
    "{brand} support was fantastic today, sorted my {product} issue in minutes. Great team.",
    "Really impressed with the new {product}. {brand} nailed it, wonderful work.",
    "Switched from {competitor} to {brand} and I'm so happy with the {product}.",
    "The {product} by {brand} is excellent value, highly recommend it to everyone.",
    "Three months with the {brand} {product} and still delighted. Solid and reliable.",
];
const NEUTRAL: [&str; 6] = [
    "{brand} announced a new {product} colour for spring.",
    "Anyone know when the {brand} {product} restocks?",
    "Comparing {brand} and {competitor} for a {product}, which one do people use?",
    "Picked up a {product} from {brand} today. Will report back next week.",
    "{brand} opened a new store downtown, open until 8pm on weekdays.",
    "Reading the {brand} quarterly update on the {product} line.",
];
const NEGATIVE: [&str; 6] = [
    "My {product} from {brand} broke after two weeks. Really disappointed.",
    "{brand} customer service is terrible, still waiting for a refund on my {product}.",
    "Honestly {competitor} is better, the {brand} {product} is overpriced and slow.",
    "Worst experience with {brand} ever. The {product} arrived damaged and nobody cares.",
    "Why is the {brand} app so buggy? Can't even manage my {product}. Annoying.",
    "Sad to say the {brand} {product} has been a frustrating waste of money.",
];
const SPIKE: [&str; 5] = [
    "{brand} {product} recall?? Mine overheated and started smoking. Scary and dangerous!",
    "Furious. {brand} won't answer about the {product} battery fires. Terrible, awful handling.",
    "Just saw the news about {brand} {product} catching fire. Horrible. Returning mine today.",
    "Shame on {brand} for hiding the {product} defect. Never buying again, disgusting.",
    "{brand} {product} burned my kid's hand. This is horrible, people could get hurt. Angry.",
];
const SOURCES: [(&str, u64); 5] = [
    ("twitter", 40),
    ("reddit", 20),
    ("reviews", 20),
    ("news", 10),
    ("blog", 10),
];
const NAMES: [&str; 12] = [
    "ana", "bo", "chen", "dara", "eli", "fatima", "gus", "hana", "ivo", "jules", "kemi", "lars",
];

/// Draws mentions from a fixed seed.
#[derive(Debug, Clone)]
pub struct MentionGenerator {
    rng: Rng,
}

impl MentionGenerator {
    pub fn new(seed: u64) -> Self {
        Self { rng: Rng(seed) }
    }

    /// The mentions `batch` asks for.
    pub fn generate(&mut self, batch: &Batch<'_>) -> Vec<MentionInput> {
        let brand = &batch.brand;
        let slug = slug(brand.name);
        (0..batch.count)
            .map(|i| {
                let product = *self.rng.pick(brand.products);
                let competitor = *self.rng.pick(brand.competitors);
                let mut text = fill(self.template(batch.tone), brand, product, competitor);
                let published_at = match batch.window {
                    Window::Day { start, end } => {
                        (start + Duration::seconds(self.rng.below(86_400) as i64)).min(end)
                    }
                    Window::Before { end, days } => {
                        end - Duration::seconds(self.rng.below(days as u64 * 86_400) as i64)
                    }
                };
                let source = self.rng.weighted(&SOURCES);
                let author = format!("@{}{}", self.rng.pick(&NAMES), self.rng.below(900) + 100);
                for _ in 1..batch.sentences {
                    let product = *self.rng.pick(brand.products);
                    text.push(' ');
                    text.push_str(&fill(self.template(batch.tone), brand, product, competitor));
                }
                let external_id = format!("{}-{slug}-{i:05}", batch.prefix);
                MentionInput {
                    source: source.to_owned(),
                    url: Some(format!("https://{source}.example/{external_id}")),
                    external_id,
                    author,
                    text,
                    published_at,
                    language: Some("en".to_owned()),
                }
            })
            .collect()
    }

    fn template(&mut self, tone: Tone) -> &'static str {
        match tone {
            Tone::Spike => self.rng.pick_text(&SPIKE),
            Tone::Mixed => match self.rng.below(100) {
                0..45 => self.rng.pick_text(&POSITIVE),
                45..75 => self.rng.pick_text(&NEUTRAL),
                _ => self.rng.pick_text(&NEGATIVE),
            },
        }
    }
}

/// A brand name as it appears in ids: lower case, dashes for spaces.
pub fn slug(name: &str) -> String {
    name.to_lowercase().replace(' ', "-")
}

fn fill(template: &str, brand: &BrandProfile<'_>, product: &str, competitor: &str) -> String {
    template
        .replace("{brand}", brand.name)
        .replace("{product}", product)
        .replace("{competitor}", competitor)
}

/// xorshift64*: deterministic and dependency-free.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn pick_text(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }

    fn weighted(&mut self, items: &[(&'static str, u64)]) -> &'static str {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        items[0].0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    const ACME: BrandProfile<'static> = BrandProfile {
        name: "Acme Rockets",
        products: &["rocket skates", "jet pack"],
        competitors: &["Globex"],
    };

    fn batch(tone: Tone, sentences: usize) -> Batch<'static> {
        let end = Utc.with_ymd_and_hms(2026, 10, 30, 0, 0, 0).unwrap();
        Batch {
            brand: ACME,
            tone,
            window: Window::Before { end, days: 29 },
            count: 500,
            prefix: "m",
            sentences,
        }
    }

    #[test]
    fn the_same_seed_generates_the_same_mentions() {
        let a = MentionGenerator::new(7).generate(&batch(Tone::Mixed, 1));
        let b = MentionGenerator::new(7).generate(&batch(Tone::Mixed, 1));
        assert_eq!(a, b);
        assert_ne!(a, MentionGenerator::new(8).generate(&batch(Tone::Mixed, 1)));
    }

    #[test]
    fn mentions_have_unique_ids_fall_in_their_window_and_name_the_brand() {
        let generated = MentionGenerator::new(7).generate(&batch(Tone::Mixed, 3));
        let ids: std::collections::HashSet<_> =
            generated.iter().map(|m| m.external_id.clone()).collect();
        assert_eq!(ids.len(), generated.len());
        let end = Utc.with_ymd_and_hms(2026, 10, 30, 0, 0, 0).unwrap();
        for mention in &generated {
            assert!(mention.published_at <= end);
            assert!(mention.published_at > end - Duration::days(29));
            assert!(mention.text.contains("Acme Rockets"), "{}", mention.text);
        }
    }

    #[test]
    fn more_sentences_make_longer_posts() {
        let short = MentionGenerator::new(7).generate(&batch(Tone::Mixed, 1));
        let long = MentionGenerator::new(7).generate(&batch(Tone::Mixed, 4));
        let mean = |ms: &[MentionInput]| ms.iter().map(|m| m.text.len()).sum::<usize>() / ms.len();
        assert!(mean(&long) > 3 * mean(&short));
    }

    #[test]
    fn a_spike_is_negative_and_within_its_day() {
        let start = Utc.with_ymd_and_hms(2026, 10, 20, 0, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 10, 30, 0, 0, 0).unwrap();
        let spike = MentionGenerator::new(7).generate(&Batch {
            tone: Tone::Spike,
            window: Window::Day { start, end },
            ..batch(Tone::Spike, 1)
        });
        let spike_texts: Vec<String> = SPIKE
            .iter()
            .flat_map(|t| {
                ACME.products
                    .iter()
                    .map(move |p| fill(t, &ACME, p, "Globex"))
            })
            .collect();
        for mention in &spike {
            assert!(spike_texts.contains(&mention.text), "{}", mention.text);
            assert!(mention.published_at >= start);
            assert!(mention.published_at < start + Duration::days(1));
        }
    }
}
