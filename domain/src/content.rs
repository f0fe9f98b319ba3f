//! content context (in progress)
