//! `sluice bench` arguments and their validation into a [`BenchConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_records::Compression;

use crate::error::{PerfError, Result};
use crate::workload::{parse_count, parse_duration, parse_rate, parse_size, Acks, KeyDist};

/// Messages a run sends when neither `--duration` nor `--messages` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Largest in-flight window per connection.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1024;
pub const MAX_CONNECTIONS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Produce as fast as possible or at --rate; latency = ack - intended send time.
    Produce,
    /// Fetch from --from as fast as possible (by default until the end offsets seen at start).
    Consume,
    /// Produce at --rate and consume concurrently; latency = arrival - embedded send time.
    E2e,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    /// Any broker of the cluster, or a comma-separated list of them (the
    /// first that answers is used); the others are found through Metadata.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to use; created (with --partitions) when missing.
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Topic config for creation, KEY=VALUE (repeatable), e.g. flush=never.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    pub topic_configs: Vec<String>,
    /// Connections (producer or consumer workers), each its own thread.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per producer connection (Kafka's max.in.flight.requests.per.connection).
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Target batch size per partition, e.g. 16KiB (Kafka's batch.size).
    #[arg(long, default_value = "16KiB")]
    pub batch_size: String,
    /// Longest a batch waits to fill, e.g. 5ms or 0 (Kafka's linger.ms).
    #[arg(long, default_value = "5ms")]
    pub linger: String,
    /// Largest produce request, e.g. 1MiB (Kafka's max.request.size).
    #[arg(long, default_value = "1MiB")]
    pub max_request_size: String,
    /// Record value size in bytes (the first 8 carry the send time).
    #[arg(long, default_value = "100")]
    pub message_size: String,
    /// Keys: none (sticky partitioning), random, or space:N (N distinct keys).
    #[arg(long, default_value = "none")]
    pub keys: String,
    /// Acknowledgements: 0, 1 or all (-1).
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub acks: String,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Target messages per second over all connections (e.g. 20000, 20k, 2M); open loop. Default: as fast as possible.
    #[arg(long, allow_hyphen_values = true)]
    pub rate: Option<String>,
    /// How long to send (e.g. 20s, 2m); default 10s unless --messages is given.
    #[arg(long)]
    pub duration: Option<String>,
    /// How many messages to send (or, for consume, to read) in total.
    #[arg(long)]
    pub messages: Option<String>,
    /// consume: where to start, earliest, latest or an offset.
    #[arg(long, default_value = "earliest", allow_hyphen_values = true)]
    pub from: String,
    /// Longest a fetch waits at the broker for data (Kafka's fetch.max.wait.ms).
    #[arg(long, default_value = "500ms")]
    pub fetch_max_wait: String,
    /// Bytes per partition per fetch (Kafka's max.partition.fetch.bytes).
    #[arg(long, default_value = "1MiB")]
    pub fetch_size: String,
    /// Print the summary as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write an HdrHistogram interval log (one histogram per second) to FILE.
    #[arg(long, value_name = "FILE")]
    pub histogram_log: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Where consumption starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub mode: Mode,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub topic_configs: Vec<(String, String)>,
    pub connections: usize,
    pub max_in_flight: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub max_request_bytes: usize,
    pub message_bytes: usize,
    pub keys: KeyDist,
    pub acks: Acks,
    pub compression: Compression,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub messages: Option<u64>,
    pub from: StartAt,
    pub fetch_max_wait: Duration,
    pub fetch_bytes: usize,
    pub json: bool,
    pub histogram_log: Option<PathBuf>,
    pub quiet: bool,
}

fn invalid(msg: String) -> PerfError {
    PerfError::InvalidArg(msg)
}

pub fn parse_compression(s: &str) -> Result<Compression> {
    match s {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(invalid(format!(
            "--compression {s:?}: use none, gzip, snappy, lz4 or zstd"
        ))),
    }
}

impl BenchArgs {
    pub fn validate(&self) -> Result<BenchConfig> {
        let rate = self.rate.as_deref().map(parse_rate).transpose()?;
        let acks = Acks::parse(&self.acks)?;
        let keys = KeyDist::parse(&self.keys)?;
        let compression = parse_compression(&self.compression)?;
        let with_flag = |flag: &str, e: PerfError| match e {
            PerfError::InvalidArg(m) => invalid(format!("--{flag} {m}")),
            other => other,
        };
        let batch_bytes = parse_size(&self.batch_size).map_err(|e| with_flag("batch-size", e))?;
        let max_request_bytes =
            parse_size(&self.max_request_size).map_err(|e| with_flag("max-request-size", e))?;
        let message_bytes =
            parse_size(&self.message_size).map_err(|e| with_flag("message-size", e))?;
        let fetch_bytes = parse_size(&self.fetch_size).map_err(|e| with_flag("fetch-size", e))?;
        let linger = match self.linger.trim() {
            "0" | "0ms" | "0s" => Duration::ZERO,
            s => parse_duration(s).map_err(|e| with_flag("linger", e))?,
        };
        let fetch_max_wait = match self.fetch_max_wait.trim() {
            "0" | "0ms" | "0s" => Duration::ZERO,
            s => parse_duration(s).map_err(|e| with_flag("fetch-max-wait", e))?,
        };
        let duration = self
            .duration
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| with_flag("duration", e))?;
        let messages = self
            .messages
            .as_deref()
            .map(parse_count)
            .transpose()
            .map_err(|e| with_flag("messages", e))?;
        if messages == Some(0) {
            return Err(invalid("--messages must be at least 1".into()));
        }
        let from = match self.from.as_str() {
            "earliest" => StartAt::Earliest,
            "latest" => StartAt::Latest,
            s => match s.parse::<i64>() {
                Ok(o) if o >= 0 => StartAt::Offset(o),
                _ => {
                    return Err(invalid(format!(
                        "--from {s:?}: use earliest, latest or an offset >= 0"
                    )))
                }
            },
        };
        let mut topic_configs = Vec::new();
        for kv in &self.topic_configs {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(invalid(format!("--topic-config {kv:?}: use KEY=VALUE")));
            };
            topic_configs.push((k.to_string(), v.to_string()));
        }
        if self.topic.is_empty() {
            return Err(invalid("--topic must not be empty".into()));
        }
        if !(1..=100_000).contains(&self.partitions) {
            return Err(invalid(format!(
                "--partitions {}: use 1 to 100000",
                self.partitions
            )));
        }
        if self.replication_factor < 1 {
            return Err(invalid("--replication-factor must be at least 1".into()));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(invalid(format!(
                "--connections {}: use 1 to {MAX_CONNECTIONS}",
                self.connections
            )));
        }
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&self.max_in_flight) {
            return Err(invalid(format!(
                "--max-in-flight {}: use 1 to {MAX_IN_FLIGHT_LIMIT}",
                self.max_in_flight
            )));
        }
        if batch_bytes == 0 || batch_bytes > max_request_bytes {
            return Err(invalid(format!(
                "--batch-size {batch_bytes}: must be > 0 and at most --max-request-size ({max_request_bytes})"
            )));
        }
        if i32::try_from(max_request_bytes).is_err() || i32::try_from(fetch_bytes).is_err() {
            return Err(invalid("sizes must stay below 2 GiB".into()));
        }
        if fetch_bytes == 0 {
            return Err(invalid("--fetch-size must be > 0".into()));
        }
        if message_bytes > max_request_bytes {
            return Err(invalid(format!(
                "--message-size {message_bytes} exceeds --max-request-size {max_request_bytes}"
            )));
        }
        if self.mode == Mode::E2e {
            if rate.is_none() {
                return Err(invalid(
                    "e2e needs --rate (end-to-end latency is measured at a fixed rate)".into(),
                ));
            }
            if message_bytes < crate::workload::TIMESTAMP_BYTES {
                return Err(invalid(format!(
                    "e2e needs --message-size >= {} (the send time is embedded in each value)",
                    crate::workload::TIMESTAMP_BYTES
                )));
            }
        }
        if fetch_max_wait > Duration::from_secs(60) {
            return Err(invalid("--fetch-max-wait is at most 60s".into()));
        }
        Ok(BenchConfig {
            mode: self.mode,
            bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            topic_configs,
            connections: self.connections,
            max_in_flight: self.max_in_flight,
            batch_bytes,
            linger,
            max_request_bytes,
            message_bytes,
            keys,
            acks,
            compression,
            rate,
            duration,
            messages,
            from,
            fetch_max_wait,
            fetch_bytes,
            json: self.json,
            histogram_log: self.histogram_log.clone(),
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchConfig> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
            .map_err(|e| PerfError::InvalidArg(e.to_string()))?;
        cli.args.validate()
    }

    fn err_of(argv: &[&str]) -> String {
        parse(argv).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&["produce"]).unwrap();
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.batch_bytes, 16384);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.rate, None);
        assert_eq!(c.partitions, 6);
    }

    #[test]
    fn full_produce_line_parses() {
        let c = parse(&[
            "produce",
            "--bootstrap",
            "h:1",
            "--topic",
            "t",
            "--acks",
            "-1",
            "--rate",
            "20k",
            "--compression",
            "zstd",
            "--keys",
            "space:1000",
            "--batch-size",
            "64KiB",
            "--linger",
            "0",
            "--duration",
            "20s",
            "--topic-config",
            "flush=never",
        ])
        .unwrap();
        assert_eq!(c.rate, Some(20_000.0));
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.keys, KeyDist::Space { count: 1000 });
        assert_eq!(c.linger, Duration::ZERO);
        assert_eq!(c.topic_configs, vec![("flush".into(), "never".into())]);
    }

    #[test]
    fn bad_rate_is_a_clear_error() {
        for bad in ["0", "-3", "fast", "1e999"] {
            let e = err_of(&["produce", "--rate", bad]);
            assert!(e.contains("--rate") && e.contains("positive"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_acks_is_a_clear_error() {
        for bad in ["2", "leader", "-2"] {
            let e = err_of(&["produce", "--acks", bad]);
            assert!(e.contains("--acks") && e.contains("0"), "{bad}: {e}");
        }
        assert_eq!(parse(&["produce", "--acks", "0"]).unwrap().acks, Acks::None);
        assert_eq!(
            parse(&["produce", "--acks", "1"]).unwrap().acks,
            Acks::Leader
        );
    }

    #[test]
    fn other_bad_arguments_are_named() {
        assert!(err_of(&["produce", "--compression", "brotli"]).contains("--compression"));
        assert!(err_of(&["produce", "--keys", "space:0"]).contains("--keys"));
        assert!(err_of(&["produce", "--batch-size", "2MiB"]).contains("--batch-size"));
        assert!(err_of(&["produce", "--duration", "soon"]).contains("--duration"));
        assert!(err_of(&["produce", "--connections", "0"]).contains("--connections"));
        assert!(err_of(&["produce", "--max-in-flight", "0"]).contains("--max-in-flight"));
        assert!(err_of(&["consume", "--from", "-4"]).contains("--from"));
        assert!(err_of(&["produce", "--messages", "0"]).contains("--messages"));
        assert!(err_of(&["produce", "--topic-config", "flush"]).contains("KEY=VALUE"));
    }

    #[test]
    fn e2e_needs_a_rate_and_room_for_the_timestamp() {
        assert!(err_of(&["e2e"]).contains("--rate"));
        assert!(
            err_of(&["e2e", "--rate", "1000", "--message-size", "4"]).contains("--message-size")
        );
        assert!(parse(&["e2e", "--rate", "1000"]).is_ok());
    }
}
