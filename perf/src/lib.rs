//! perf: a Kafka-protocol load generator and benchmark reports.
//!
//! It owns the client side of the protocol for benchmarks (bootstrap,
//! pipelined Produce and Fetch over blocking sockets), the open-loop rate
//! schedule, latency histograms and reports, and the `sluice bench`
//! arguments. It talks to any Kafka-compatible broker over TCP only: it must
//! never reach into a broker's internals, and never hide queueing delay
//! (latency counts from each message's intended send time).

pub mod cli;
pub mod client;
pub mod compare;
pub mod consume;
pub mod error;
pub mod histogram;
pub mod produce;
pub mod report;
pub mod run;
pub mod workload;

pub use cli::{BenchArgs, BenchConfig, Mode};
pub use error::{PerfError, Result};
pub use report::Summary;
pub use run::run;
