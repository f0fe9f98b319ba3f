//! research context (in progress)
