//! `sluice produce`: lines from stdin or files become records of a topic.
//!
//! A reader thread feeds lines to the producer loop, which batches them per
//! partition and sends a batch when it is full or when no line has arrived
//! for `--linger-ms` (so typing into a terminal sends each line at once,
//! and a big file goes out in large batches). Keyed records go to the
//! partition Kafka's Java client would pick: `toPositive(murmur2(key)) %
//! partitions`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_codec::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};
use sluice_records::{BatchBuilder, Compression};

use crate::cmd::config::{
    describe_error, not_found, now_ms, parse_pair, runtime_error, usage_error, ClientArgs,
    Progress, Session, TopicInfo,
};

/// Lines buffered between the reader thread and the producer loop.
const LINE_QUEUE: usize = 8192;
/// Attempts for a batch refused with a retriable error (leader moved,
/// broker busy) before the command fails.
const MAX_SEND_ATTEMPTS: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long the broker may wait for replicas before answering, in ms.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

#[derive(Args, Debug)]
#[command(after_help = "Each input line is one record (the newline is not part of it). \
With --key-separator, the text before the first separator is the key. Records with a key \
go to the partition Kafka's default partitioner picks (murmur2 of the key), others round-robin.\n\
Progress is shown when stderr is a terminal.\n\n".to_string() + crate::cmd::config::EXIT_CODES_HELP)]
pub struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to write to.
    topic: String,
    /// Files to read, in order ("-" is stdin); default stdin.
    files: Vec<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without SEP is an error).
    #[arg(short = 'K', long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header on every record, KEY=VALUE; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_pair)]
    headers: Vec<(String, String)>,
    /// Write every record to this partition.
    #[arg(short, long, value_name = "N", conflicts_with = "partitioner")]
    partition: Option<i32>,
    /// How to pick partitions: key-hash (murmur2 of the key, as Kafka's default
    /// partitioner; records without a key round-robin) or round-robin.
    #[arg(long, value_enum, default_value_t = Partitioner::KeyHash)]
    partitioner: Partitioner,
    /// Compression of batches.
    #[arg(short = 'z', long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Acknowledgement to wait for: all (every in-sync replica), 1 (the leader) or 0 (none).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Send a partition's batch once it holds this many bytes.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    batch_bytes: usize,
    /// Send what is batched once no line has arrived for this long, in ms.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    linger_ms: u64,
    /// Let the broker create a missing topic (Kafka's auto-creation) instead of failing.
    #[arg(long)]
    auto_create: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Partitioner {
    KeyHash,
    RoundRobin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("{s:?}: use all, 1 or 0")),
    }
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), the
/// hash of its default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's Java client picks for a key:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// One input line, or why reading stopped.
enum Input {
    Line {
        line: Vec<u8>,
        source: String,
        number: u64,
    },
    Failed(String),
}

fn spawn_reader(files: Vec<PathBuf>) -> Receiver<Input> {
    let (tx, rx) = sync_channel(LINE_QUEUE);
    std::thread::spawn(move || {
        let files = if files.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            files
        };
        for path in files {
            let (name, reader): (String, Box<dyn BufRead>) = if path.as_os_str() == "-" {
                ("stdin".into(), Box::new(BufReader::new(std::io::stdin())))
            } else {
                match File::open(&path) {
                    Ok(f) => (
                        path.display().to_string(),
                        Box::new(BufReader::with_capacity(1 << 20, f)),
                    ),
                    Err(e) => {
                        let _ = tx.send(Input::Failed(format!(
                            "cannot open {}: {e}",
                            path.display()
                        )));
                        return;
                    }
                }
            };
            let mut reader = reader;
            let mut number = 0u64;
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        number += 1;
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        let item = Input::Line {
                            line,
                            source: name.clone(),
                            number,
                        };
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Input::Failed(format!("cannot read {name}: {e}")));
                        return;
                    }
                }
            }
        }
    });
    rx
}

struct Producer {
    session: Session,
    topic: TopicInfo,
    acks: i16,
    compression: Compression,
    /// Open batch per partition.
    builders: BTreeMap<i32, BatchBuilder>,
    sent_records: u64,
    sent_bytes: u64,
}

impl Producer {
    fn builder(&mut self, partition: i32) -> &mut BatchBuilder {
        let compression = self.compression;
        self.builders
            .entry(partition)
            .or_insert_with(|| BatchBuilder::new(compression))
    }

    /// Sends every non-empty batch, one request per leader.
    fn flush(&mut self) -> anyhow::Result<()> {
        let mut batches: BTreeMap<i32, (bytes::Bytes, usize)> = BTreeMap::new();
        for (&p, b) in &mut self.builders {
            if !b.is_empty() {
                let n = b.len();
                batches.insert(p, (b.build(), n));
            }
        }
        let mut attempt = 0;
        while !batches.is_empty() {
            attempt += 1;
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for &p in batches.keys() {
                let leader = self.topic.leader_of(p).unwrap_or(-1);
                by_leader.entry(leader).or_default().push(p);
            }
            let mut retry: Vec<(i32, String)> = Vec::new();
            for (leader, parts) in by_leader {
                let body = RequestBody::Produce(ProduceRequest {
                    transactional_id: None,
                    acks: self.acks,
                    timeout_ms: PRODUCE_TIMEOUT_MS,
                    topic_data: vec![TopicProduceData {
                        name: self.topic.name.clone(),
                        partition_data: parts
                            .iter()
                            .map(|p| PartitionProduceData {
                                index: *p,
                                records: Some(batches[p].0.clone().into()),
                            })
                            .collect(),
                        ..TopicProduceData::default()
                    }],
                });
                if self.acks == 0 {
                    self.session.send_unanswered(leader, &body)?;
                    for p in &parts {
                        let (b, n) = batches.remove(p).expect("batch of a listed partition");
                        self.sent_records += n as u64;
                        self.sent_bytes += b.len() as u64;
                    }
                    continue;
                }
                let ResponseBody::Produce(r) = self.session.call(Some(leader), &body)? else {
                    unreachable!("call() checks the response type");
                };
                for t in &r.responses {
                    for pr in &t.partition_responses {
                        let code = ErrorCode(pr.error_code);
                        let why = describe_error(code, pr.error_message.as_deref());
                        match code {
                            ErrorCode::NONE => {
                                if let Some((b, n)) = batches.remove(&pr.index) {
                                    self.sent_records += n as u64;
                                    self.sent_bytes += b.len() as u64;
                                }
                            }
                            ErrorCode::NOT_LEADER_OR_FOLLOWER
                            | ErrorCode::LEADER_NOT_AVAILABLE
                            | ErrorCode::REQUEST_TIMED_OUT
                            | ErrorCode::NOT_ENOUGH_REPLICAS
                            | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                            | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
                                retry.push((pr.index, why));
                            }
                            ErrorCode::MESSAGE_TOO_LARGE | ErrorCode::RECORD_LIST_TOO_LARGE => {
                                return Err(runtime_error(format!(
                                    "partition {} refused a batch: {why}; lower --batch-bytes or shorten the lines",
                                    pr.index
                                )));
                            }
                            _ => {
                                return Err(runtime_error(format!(
                                    "partition {} of {:?} refused a batch: {why}",
                                    pr.index, self.topic.name
                                )));
                            }
                        }
                    }
                }
            }
            if batches.is_empty() {
                break;
            }
            if attempt >= MAX_SEND_ATTEMPTS {
                let detail = retry
                    .iter()
                    .map(|(p, why)| format!("partition {p}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(runtime_error(format!(
                    "could not write to {:?} after {MAX_SEND_ATTEMPTS} attempts ({detail})",
                    self.topic.name
                )));
            }
            std::thread::sleep(RETRY_PAUSE);
            let name = self.topic.name.clone();
            self.topic = self.session.topic(&name, false)?;
        }
        Ok(())
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if args.batch_bytes == 0 {
        return Err(usage_error("--batch-bytes must be at least 1"));
    }
    if matches!(&args.key_separator, Some(s) if s.is_empty()) {
        return Err(usage_error("--key-separator must not be empty"));
    }
    let mut session = Session::connect(&args.client)?;
    let topic = session.topic(&args.topic, args.auto_create)?;
    let partitions = topic.partitions.len() as u32;
    if let Some(p) = args.partition {
        if p < 0 || p as u32 >= partitions {
            return Err(not_found(format!(
                "partition {p} of topic {:?} does not exist: it has partitions 0..={}",
                args.topic,
                partitions - 1
            )));
        }
    }
    let interactive = args.files.is_empty() && std::io::stdin().is_terminal();
    let mut producer = Producer {
        session,
        topic,
        acks: args.acks,
        compression: args.compression.compression(),
        builders: BTreeMap::new(),
        sent_records: 0,
        sent_bytes: 0,
    };
    let headers: Vec<(&str, Option<&[u8]>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_bytes())))
        .collect();
    let lines = spawn_reader(args.files.clone());
    let linger = Duration::from_millis(args.linger_ms);
    let mut progress = Progress::new();
    let mut next_round_robin: u32 = 0;
    let mut read_records = 0u64;
    loop {
        let item = match lines.recv_timeout(linger) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                producer.flush()?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (line, source, number) = match item {
            Input::Line {
                line,
                source,
                number,
            } => (line, source, number),
            Input::Failed(why) => {
                producer.flush()?;
                return Err(usage_error(format!(
                    "{why} (after {} records were written)",
                    producer.sent_records
                )));
            }
        };
        let (key, value): (Option<&[u8]>, &[u8]) = match &args.key_separator {
            None => (None, &line),
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                None => {
                    producer.flush()?;
                    return Err(usage_error(format!(
                        "{source} line {number} has no key separator {sep:?}; with --key-separator every line must be KEY{sep}VALUE ({} records were written before it)",
                        producer.sent_records
                    )));
                }
            },
        };
        let partition = match (args.partition, key, args.partitioner) {
            (Some(p), _, _) => p,
            (None, Some(k), Partitioner::KeyHash) => partition_for_key(k, partitions) as i32,
            _ => {
                let p = next_round_robin % partitions;
                next_round_robin = next_round_robin.wrapping_add(1);
                p as i32
            }
        };
        let full = {
            let b = producer.builder(partition);
            b.push(now_ms(), key, Some(value), &headers);
            b.uncompressed_size() >= args.batch_bytes
        };
        read_records += 1;
        if full {
            producer.flush()?;
        }
        if !interactive {
            let (sent, bytes) = (producer.sent_records, producer.sent_bytes);
            progress.update(|| {
                format!(
                    "produced {sent} of {read_records} records read ({:.1} MiB)",
                    bytes as f64 / (1 << 20) as f64
                )
            });
        }
    }
    producer.flush()?;
    progress.finish();
    if crate::cmd::config::show_progress() && !interactive {
        eprintln!(
            "produced {} records to {} ({} partitions)",
            producer.sent_records, args.topic, partitions
        );
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Kafka 4.4's `Utils.murmur2` and `Utils.toPositive(h) % n`
    /// (computed with jshell against kafka-clients-4.4.0.jar):
    /// (key, murmur2, partition of 3, partition of 7).
    const JAVA: &[(&str, i32, u32, u32)] = &[
        ("", 275646681, 0, 2),
        ("a", -1563381124, 1, 5),
        ("ab", 316155434, 2, 0),
        ("abc", 479470107, 0, 4),
        ("21", -973932308, 0, 3),
        ("foobar", -790332482, 0, 0),
        ("key-0", 29210041, 1, 0),
        ("key-1", 193331640, 0, 5),
        ("key-42", -187086521, 0, 3),
        ("user-1234", -1663159204, 1, 2),
        ("a-little-bit-long-string", -985981536, 2, 1),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
            2,
            3,
        ),
    ];

    #[test]
    fn murmur2_matches_java() {
        for &(key, hash, p3, p7) in JAVA {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            assert_eq!(partition_for_key(key.as_bytes(), 3), p3, "{key:?} of 3");
            assert_eq!(partition_for_key(key.as_bytes(), 7), p7, "{key:?} of 7");
        }
        // Non-ASCII keys hash their UTF-8 bytes, as Java's getBytes(UTF_8).
        assert_eq!(murmur2("héllo".as_bytes()), 614509002);
    }

    #[test]
    fn acks_values() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn separator_search() {
        assert_eq!(find(b"k::v", b"::"), Some(1));
        assert_eq!(find(b"kv", b":"), None);
    }
}
