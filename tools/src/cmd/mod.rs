//! One module per `sluice` subcommand.

pub mod bench;
pub mod serve;
