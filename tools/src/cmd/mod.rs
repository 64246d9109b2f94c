//! One module per `sluice` subcommand.

pub mod serve;
