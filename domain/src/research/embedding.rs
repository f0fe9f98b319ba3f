//! The embedder port: texts in, unit vectors out. The models live outside the domain (the
//! adapters crate); the domain only knows which model made a vector, because vectors of
//! different models never share an index and are never compared.

use serde::{Deserialize, Serialize};

/// Which model made a vector: its name, the version of its weights, and its dimension.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EmbeddingModel {
    /// e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// The weights' version (the package and file they came from).
    pub version: String,
    pub dimension: u32,
}

impl EmbeddingModel {
    /// `name@version`: the key vectors are stored and searched under.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Why texts could not be embedded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenizing for {model}: {reason}")]
    Tokenize { model: String, reason: String },
    #[error("running {model}: {reason}")]
    Model { model: String, reason: String },
}

/// Turns texts into L2-normalised vectors (cosine similarity is then a dot product).
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn model(&self) -> &EmbeddingModel;

    /// One vector of `model().dimension` per text, in order. Texts longer than the model's
    /// window are truncated to it.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// How many tokens the model reads of each text (after truncation).
    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError>;
}

/// The dot product of two vectors of the same model; their cosine similarity when both are unit
/// vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_keyed_by_name_and_version() {
        let model = EmbeddingModel {
            name: "all-MiniLM-L6-v2".into(),
            version: "gt-0.1.0".into(),
            dimension: 384,
        };
        assert_eq!(model.key(), "all-MiniLM-L6-v2@gt-0.1.0");
    }

    #[test]
    fn cosine_of_unit_vectors_is_their_dot_product() {
        let a = [0.6, 0.8];
        let b = [0.8, 0.6];
        assert!((cosine(&a, &b) - 0.96).abs() < 1e-6);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
    }
}
