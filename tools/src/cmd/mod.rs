//! One module per `sluice` subcommand.

pub mod bench;
pub mod cluster;
pub mod config;
pub mod consume;
pub mod elect;
pub mod group;
pub mod produce;
pub mod reassign;
pub mod serve;
pub mod topic;
