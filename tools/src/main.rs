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
    /// What to log on stderr: a level (off, error, warn, info, debug, trace) or
    /// comma-separated target=level pairs, e.g. info,net=debug. Key log_level, default info
    /// (`sluice serve` also reads it from its --config file).
    #[arg(long, global = true, env = "SLUICE_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Describe the cluster (id, controller, brokers) and move partitions
    /// between brokers.
    Cluster(cmd::cluster::ClusterArgs),
}

/// Sends log lines at or above `filter` to stderr; `filter` was checked
/// with [`config::check_log_level`].
pub(crate) fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config::DEFAULT_LOG_LEVEL));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The client commands log per `--log-level` at once; `serve` merges it
/// into its configuration first (the file may set it).
fn client_logging(log_level: Option<&str>) -> anyhow::Result<()> {
    let filter = log_level.unwrap_or(config::DEFAULT_LOG_LEVEL);
    config::check_log_level(filter).map_err(|why| {
        cmd::config::usage_error(format!(
            "invalid --log-level / SLUICE_LOG_LEVEL {filter:?}: {why}"
        ))
    })?;
    init_logging(filter);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_level = cli.log_level.as_deref();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(*args, log_level),
        command => client_logging(log_level).and_then(|()| match command {
            Command::Serve(args) => cmd::serve::run(*args, log_level),
            Command::Bench(args) => cmd::bench::run(*args),
            Command::Topic(args) => cmd::topic::run(args),
            Command::Produce(args) => cmd::produce::run(args),
            Command::Consume(args) => cmd::consume::run(args),
            Command::Group(args) => cmd::group::run(args),
            Command::Cluster(args) => cmd::cluster::run(args),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::from(cmd::config::exit_code(&e))
        }
    }
}
