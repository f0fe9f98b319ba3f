//! Subcommands of the `plasma` binary.

pub mod bench;
