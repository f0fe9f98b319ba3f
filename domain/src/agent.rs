//! agent context (in progress)
