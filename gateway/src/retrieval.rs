//! GraphRAG retrieval over the read models: which chunks the knowledge graph points a question
//! at (local search), and the extractive answer composed from retrieved chunks, every sentence
//! citing the chunk it was taken from. Pure functions over a graph snapshot and chunk texts.

use std::collections::{HashMap, HashSet};

use plasma_projections::{ChunkHit, GraphSnapshot};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Entities the question's words name carry this weight; those found in the chunks vector
/// search ranks first carry half of it, divided by the rank.
const NAMED_WEIGHT: f64 = 1.0;
const VECTOR_SEED_WEIGHT: f64 = 0.5;
/// The vector hits whose entities seed the walk.
const VECTOR_SEEDS: usize = 5;
/// Seeds expanded to their neighbours, and neighbours per seed.
const EXPANDED_SEEDS: usize = 10;
const NEIGHBOURS_PER_SEED: usize = 10;
/// A neighbour inherits this share of its seed's weight, times the edge's weight.
const NEIGHBOUR_SHARE: f64 = 0.5;
/// Mentions of one entity considered: a very common entity does not flood the list.
const MENTIONS_PER_ENTITY: usize = 200;

/// What the graph makes of a question: the entities it starts from (strongest first) and the
/// chunks it points at, best first, with their scores.
#[derive(Debug, Clone, Default)]
pub struct GraphRanking {
    pub seeds: Vec<usize>,
    pub chunks: Vec<((Uuid, i64), f64)>,
}

/// The question's words and runs of up to four words, as entity keys to look up.
fn phrases(question: &str) -> Vec<String> {
    let tokens: Vec<String> = question
        .split_whitespace()
        .map(|t| {
            t.trim_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '#')
                .to_owned()
        })
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Vec::new();
    for n in 1..=4 {
        for window in tokens.windows(n) {
            out.push(window.join(" "));
        }
    }
    out
}

/// Local search's graph side: entities named in the question and those in the best vector
/// hits, their neighbours, and the chunks mentioning them, each entity weighted by how rare it
/// is (a name in every chunk says nothing about which chunk to read).
pub fn graph_ranking(
    graph: &GraphSnapshot,
    question: &str,
    vector_hits: &[ChunkHit],
) -> GraphRanking {
    let total = graph.total_chunks.max(1) as f64;
    let rarity = |node: usize| {
        let chunks = graph.entity(node).map_or(0, |e| e.chunks) as f64;
        (1.0 + total / (1.0 + chunks)).ln()
    };
    let mut seeds: HashMap<usize, f64> = HashMap::new();
    for phrase in phrases(question) {
        for &node in graph.named(&phrase) {
            let weight = seeds.entry(node).or_default();
            *weight = weight.max(NAMED_WEIGHT);
        }
    }
    for (rank, hit) in vector_hits.iter().take(VECTOR_SEEDS).enumerate() {
        for &node in graph.in_chunk(hit.document_id, hit.chunk_index) {
            *seeds.entry(node).or_default() += VECTOR_SEED_WEIGHT / (rank + 1) as f64;
        }
    }
    let mut ranked_seeds: Vec<(usize, f64)> = seeds
        .iter()
        .map(|(&node, &weight)| (node, weight * rarity(node)))
        .collect();
    ranked_seeds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut weights = seeds.clone();
    for &(seed, _) in ranked_seeds.iter().take(EXPANDED_SEEDS) {
        let base = seeds.get(&seed).copied().unwrap_or(0.0);
        let mut neighbours: Vec<(usize, f64)> = graph
            .adjacency
            .get(seed)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|&(other, edge)| {
                let weight = graph.edges.get(edge)?.weight;
                (weight > 0.0).then_some((other, weight))
            })
            .collect();
        neighbours.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (other, weight) in neighbours.into_iter().take(NEIGHBOURS_PER_SEED) {
            *weights.entry(other).or_default() += NEIGHBOUR_SHARE * base * weight;
        }
    }
    let mut chunks: HashMap<(Uuid, i64), f64> = HashMap::new();
    for (&node, &weight) in &weights {
        let score = weight * rarity(node);
        for &key in graph
            .mentions
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .take(MENTIONS_PER_ENTITY)
        {
            *chunks.entry(key).or_default() += score;
        }
    }
    let mut chunks: Vec<((Uuid, i64), f64)> = chunks.into_iter().collect();
    chunks.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    GraphRanking {
        seeds: ranked_seeds.into_iter().map(|(n, _)| n).collect(),
        chunks,
    }
}

/// One sentence of an answer, with the chunks it cites (numbers into the answer's citations).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnswerSentence {
    pub text: String,
    pub citations: Vec<usize>,
}

/// Words that say nothing about what a question is after.
const STOP_WORDS: &[&str] = &[
    "about", "after", "also", "and", "are", "because", "been", "but", "can", "could", "did",
    "does", "for", "from", "had", "has", "have", "how", "into", "its", "not", "one", "only",
    "other", "should", "some", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "use", "used", "was", "what", "when", "where", "which",
    "while", "who", "why", "will", "with", "would", "you", "your",
];

/// A word's comparable form: lower case, its first six characters (a crude stem).
fn stem(word: &str) -> String {
    word.to_lowercase().chars().take(6).collect()
}

fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && !STOP_WORDS.contains(&w.to_lowercase().as_str()))
        .map(stem)
        .collect()
}

/// `text` cut into sentences of a useful length.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' && chars.peek() == Some(&'\n') {
            push_sentence(&mut out, &mut current);
            continue;
        }
        current.push(if c == '\n' { ' ' } else { c });
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            push_sentence(&mut out, &mut current);
        }
    }
    push_sentence(&mut out, &mut current);
    out
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let sentence = current.split_whitespace().collect::<Vec<_>>().join(" ");
    current.clear();
    if (20..=600).contains(&sentence.chars().count()) {
        out.push(sentence);
    }
}

/// The most sentences an answer has, and from one chunk.
const ANSWER_SENTENCES: usize = 4;
const SENTENCES_PER_CHUNK: usize = 2;

/// An extractive answer: the sentences of the retrieved chunks that share most of the
/// question's terms (shorter sentences and better-ranked chunks first on ties), in the order
/// of their chunks' ranks, each citing its chunk (1-based, into `hits`). Empty when no
/// sentence shares a term with the question.
pub fn compose_answer(
    question: &str,
    hits: &[ChunkHit],
    bodies: &HashMap<(Uuid, i64), String>,
) -> Vec<AnswerSentence> {
    let wanted = terms(question);
    let mut candidates: Vec<(usize, usize, String, HashSet<String>)> = Vec::new();
    for (rank, hit) in hits.iter().enumerate() {
        let Some(body) = bodies.get(&(hit.document_id, hit.chunk_index)) else {
            continue;
        };
        for (at, sentence) in sentences(body).into_iter().enumerate() {
            let found = terms(&sentence);
            candidates.push((rank, at, sentence, found));
        }
    }
    // A question term in every sentence ("Python" in Python's FAQ) tells little: terms weigh
    // by how few candidate sentences hold them.
    let total = candidates.len().max(1) as f64;
    let weight: HashMap<&String, f64> = wanted
        .iter()
        .map(|term| {
            let holding = candidates.iter().filter(|c| c.3.contains(term)).count() as f64;
            (term, (1.0 + total / (1.0 + holding)).ln())
        })
        .collect();
    let mut scored: Vec<(f64, usize, usize, String)> = Vec::new();
    for (rank, at, sentence, found) in candidates {
        let shared: f64 = wanted
            .intersection(&found)
            .map(|term| weight.get(term).copied().unwrap_or(0.0))
            .sum();
        if shared <= 0.0 {
            continue;
        }
        let length = (found.len().max(1) as f64).sqrt();
        let score = shared / length + 0.3 / (rank + 1) as f64;
        scored.push((score, rank, at, sentence));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut per_chunk: HashMap<usize, usize> = HashMap::new();
    let mut chosen: Vec<(usize, usize, String)> = Vec::new();
    for (_, rank, at, sentence) in scored {
        if chosen.len() >= ANSWER_SENTENCES {
            break;
        }
        let count = per_chunk.entry(rank).or_default();
        if *count >= SENTENCES_PER_CHUNK || chosen.iter().any(|c| c.2 == sentence) {
            continue;
        }
        *count += 1;
        chosen.push((rank, at, sentence));
    }
    chosen.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    chosen
        .into_iter()
        .map(|(rank, _, text)| AnswerSentence {
            text,
            citations: vec![rank + 1],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(document: u128, chunk: i64) -> ChunkHit {
        ChunkHit {
            score: 0.0,
            document_id: Uuid::from_u128(document),
            title: "t".into(),
            source: "s".into(),
            chunk_index: chunk,
            start_char: 0,
            end_char: 10,
            snippet: String::new(),
            ingested_at: chrono::DateTime::default(),
        }
    }

    #[test]
    fn given_retrieved_chunks_then_each_answer_sentence_cites_the_chunk_it_came_from() {
        let hits = vec![hit(1, 0), hit(2, 3)];
        let bodies = HashMap::from([
            (
                (Uuid::from_u128(1), 0),
                "Cython compiles Python to C. It is unrelated to cooking.".to_owned(),
            ),
            (
                (Uuid::from_u128(2), 3),
                "The weather was fine. Cython speeds up numeric loops considerably.".to_owned(),
            ),
        ]);
        let answer = compose_answer("How does Cython speed up Python loops?", &hits, &bodies);
        assert!(!answer.is_empty());
        for sentence in &answer {
            let cited = sentence.citations[0];
            assert!((1..=hits.len()).contains(&cited));
            let source = &hits[cited - 1];
            let body = &bodies[&(source.document_id, source.chunk_index)];
            assert!(
                body.contains(&sentence.text),
                "{sentence:?} not in chunk {cited}"
            );
        }
        assert!(answer.iter().all(|s| !s.text.contains("weather")));
    }

    #[test]
    fn given_no_shared_terms_then_the_answer_is_empty() {
        let hits = vec![hit(1, 0)];
        let bodies = HashMap::from([(
            (Uuid::from_u128(1), 0),
            "Nothing relevant here at all.".to_owned(),
        )]);
        assert!(compose_answer("Cython?", &hits, &bodies).is_empty());
    }

    #[test]
    fn phrases_are_runs_of_up_to_four_words() {
        let found = phrases("Who is Guido van Rossum?");
        assert!(found.contains(&"Guido van Rossum".to_owned()));
        assert!(found.contains(&"Who".to_owned()));
    }
}
