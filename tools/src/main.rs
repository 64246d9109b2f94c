//! The `sluice` binary: the broker (`serve`) and, in time, the admin and client
//! commands users expect from Kafka's shell tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod config;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A durable, partitioned commit log that speaks the Kafka protocol",
    after_help = cmd::config::EXIT_CODES_HELP
)]
struct Cli {
    /// Log level filter (tracing syntax, e.g. `info`, `net=debug`).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (defaults: one node, port 9092, data in ./sluice-data, one shard per CPU).
    Serve(Box<cmd::serve::ServeArgs>),
    /// Benchmark any Kafka-compatible broker: produce, consume or e2e (end-to-end latency).
    Bench(Box<cmd::bench::BenchArgs>),
    /// Create, list, describe, alter and delete topics.
    Topic(cmd::topic::TopicArgs),
    /// Write lines from stdin or files as records to a topic.
    Produce(cmd::produce::ProduceArgs),
    /// Read records from a topic and print them with a format template.
    Consume(cmd::consume::ConsumeArgs),
    /// List, describe (with lag), reset the offsets of and delete consumer groups.
    Group(cmd::group::GroupArgs),
    /// Describe the cluster: id, controller and brokers.
    Cluster(cmd::cluster::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Bench(args) => cmd::bench::run(*args),
        Command::Topic(args) => cmd::topic::run(args),
        Command::Produce(args) => cmd::produce::run(args),
        Command::Consume(args) => cmd::consume::run(args),
        Command::Group(args) => cmd::group::run(args),
        Command::Cluster(args) => cmd::cluster::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::from(cmd::config::exit_code(&e))
        }
    }
}
