//! `sluice consume`: read a topic's records and print them through a format
//! template (kcat's `-f` placeholders).
//!
//! Offsets persist in a consumer group: `--group NAME`, or the default
//! group (`sluice-default`, `--default-group` / `SLUICE_DEFAULT_GROUP`)
//! when none is named. The CLI does not join the group: it finds the
//! coordinator, reads the committed offsets (OffsetFetch), reads every
//! partition itself and commits what it printed with generation -1 and an
//! empty member id, a "simple" commit that Kafka accepts while the group
//! has no active members. `--no-group` reads without committing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::{ApiKey, ErrorCode, RequestBody, ResponseBody};
use sluice_records::{
    decompress_records, BatchIter, Record, RecordIter, ScanError, DEFAULT_MAX_DECOMPRESSED_BYTES,
};

use crate::cmd::config::{not_found, runtime_error, usage_error, ClientArgs, Session, TopicInfo};
use crate::cmd::group::{commit_offsets, fetch_offsets, TopicPartition};

/// Bytes a fetch may return per partition and in all.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// How long the broker holds a fetch open when there is nothing new, in ms:
/// short with `--exit` (the end is near), longer when following.
const WAIT_EXIT_MS: i32 = 100;
const WAIT_FOLLOW_MS: i32 = 500;
/// Consecutive retriable fetch errors (leader moved) tolerated.
const MAX_FETCH_RETRIES: u32 = 20;

#[derive(Args, Debug)]
#[command(after_help = "Format placeholders: %t topic, %p partition, %o offset, %k key, %s value, \
%T timestamp (ms), %h headers (k=v,k=v), %% a percent sign; escapes \\n \\t \\r \\\\.\n\n\
Groups: without --group the default group is used, so a second run continues where the first \
stopped. The CLI does not join the group (no JoinGroup/SyncGroup): it reads every partition \
itself and commits the offsets it printed with generation -1 and no member id, which brokers \
accept while the group has no active members. Use a group of its own, or --no-group, next to \
running consumers of a group. If the broker has no group APIs, the default group is skipped \
with a warning.\n\n"
    .to_string() + crate::cmd::config::EXIT_CODES_HELP)]
pub struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to read.
    topic: String,
    /// Read only this partition; repeat for more (default: all).
    #[arg(short, long = "partition", value_name = "N")]
    partitions: Vec<i32>,
    /// Where to start: beginning, end, offset:N (N < 0: N before the end) or
    /// timestamp:MS (first record at or after). Overrides the group's
    /// committed offsets; without it, start at them, or at the beginning.
    #[arg(short = 'o', long = "from", value_name = "POSITION", value_parser = parse_position)]
    from: Option<Position>,
    /// Consumer group whose committed offsets to start from and commit to.
    #[arg(short, long, value_name = "NAME", conflicts_with = "no_group")]
    group: Option<String>,
    /// The group used when --group is not given.
    #[arg(
        long,
        env = "SLUICE_DEFAULT_GROUP",
        default_value = "sluice-default",
        value_name = "NAME"
    )]
    default_group: String,
    /// Read without a group: nothing is committed.
    #[arg(long)]
    no_group: bool,
    /// Output template per record (kcat -f style).
    #[arg(short, long, default_value = "%s\\n", value_name = "TEMPLATE")]
    format: String,
    /// Exit once every partition is read to its end, instead of following.
    #[arg(short, long)]
    exit: bool,
    /// Exit after printing this many records.
    #[arg(short, long, value_name = "N")]
    count: Option<u64>,
    /// Commit the group's offsets this often while reading, in ms (and always at exit).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    commit_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Beginning,
    End,
    /// An absolute offset, or (negative) this many records before the end.
    Offset(i64),
    Timestamp(i64),
}

pub fn parse_position(s: &str) -> Result<Position, String> {
    let bad = || format!("{s:?} is not a position: use beginning, end, offset:N or timestamp:MS");
    match s {
        "beginning" | "earliest" => Ok(Position::Beginning),
        "end" | "latest" => Ok(Position::End),
        _ => {
            if let Some(n) = s.strip_prefix("offset:") {
                n.parse().map(Position::Offset).map_err(|_| bad())
            } else if let Some(n) = s.strip_prefix("timestamp:") {
                match n.parse::<i64>() {
                    Ok(ms) if ms >= 0 => Ok(Position::Timestamp(ms)),
                    _ => Err(bad()),
                }
            } else {
                Err(bad())
            }
        }
    }
}

/// The start offset of each partition for `position`, checked against the
/// partition's range.
pub fn resolve_positions(
    s: &mut Session,
    topic: &TopicInfo,
    partitions: &[i32],
    position: Position,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let earliest = s.list_offsets(topic, partitions, -2)?;
    let latest = s.list_offsets(topic, partitions, -1)?;
    let mut out = BTreeMap::new();
    let by_time = match position {
        Position::Timestamp(ms) => Some(s.list_offsets(topic, partitions, ms)?),
        _ => None,
    };
    for &p in partitions {
        let (lo, hi) = (earliest[&p], latest[&p]);
        let offset = match position {
            Position::Beginning => lo,
            Position::End => hi,
            Position::Offset(n) if n < 0 => hi.saturating_add(n).max(lo),
            Position::Offset(n) => {
                if n < lo || n > hi {
                    return Err(usage_error(format!(
                        "offset {n} is outside partition {p} of {:?}, which holds offsets {lo}..{hi} (the end is {hi}); pick one in that range, or use beginning or end",
                        topic.name
                    )));
                }
                n
            }
            Position::Timestamp(_) => {
                let o = by_time.as_ref().expect("listed above")[&p];
                // No record at or after the time: start at the end.
                if o < 0 {
                    hi
                } else {
                    o
                }
            }
        };
        out.insert(p, offset);
    }
    Ok(out)
}

/// One piece of a format template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

fn parse_format(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = Vec::new();
    let mut chars = template.chars();
    let flush = |lit: &mut Vec<u8>, pieces: &mut Vec<Piece>| {
        if !lit.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(lit)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let piece = match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('s') => Piece::Value,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        lit.push(b'%');
                        continue;
                    }
                    Some(other) => {
                        return Err(format!(
                        "unknown placeholder %{other} in --format; use %t %p %o %k %s %T %h or %%"
                    ))
                    }
                    None => {
                        return Err(
                            "--format ends with a lone %; write %% for a percent sign".into()
                        )
                    }
                };
                flush(&mut lit, &mut pieces);
                pieces.push(piece);
            }
            '\\' => match chars.next() {
                Some('n') => lit.push(b'\n'),
                Some('t') => lit.push(b'\t'),
                Some('r') => lit.push(b'\r'),
                Some('\\') => lit.push(b'\\'),
                Some(other) => {
                    lit.push(b'\\');
                    let mut buf = [0u8; 4];
                    lit.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => lit.push(b'\\'),
            },
            other => {
                let mut buf = [0u8; 4];
                lit.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    flush(&mut lit, &mut pieces);
    Ok(pieces)
}

fn render(
    out: &mut impl Write,
    pieces: &[Piece],
    topic: &str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    r: &Record<'_>,
) -> std::io::Result<()> {
    for piece in pieces {
        match piece {
            Piece::Literal(b) => out.write_all(b)?,
            Piece::Topic => out.write_all(topic.as_bytes())?,
            Piece::Partition => write!(out, "{partition}")?,
            Piece::Offset => write!(out, "{offset}")?,
            Piece::Key => out.write_all(r.key.unwrap_or_default())?,
            Piece::Value => out.write_all(r.value.unwrap_or_default())?,
            Piece::Timestamp => write!(out, "{timestamp}")?,
            Piece::Headers => {
                for (i, h) in r.headers.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(h.key)?;
                    out.write_all(b"=")?;
                    out.write_all(h.value.unwrap_or_default())?;
                }
            }
        }
    }
    Ok(())
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let pieces = parse_format(&args.format).map_err(usage_error)?;
    if args.count == Some(0) {
        return Ok(());
    }
    let mut s = Session::connect(&args.client)?;
    let topic = s.topic(&args.topic, false)?;
    let all: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        all.clone()
    } else {
        for p in &args.partitions {
            if !all.contains(p) {
                return Err(not_found(format!(
                    "partition {p} of topic {:?} does not exist: it has partitions 0..={}",
                    args.topic,
                    all.len() - 1
                )));
            }
        }
        let set: BTreeSet<i32> = args.partitions.iter().copied().collect();
        set.into_iter().collect()
    };

    // The group, and where it left off.
    let group_apis = [
        ApiKey::FindCoordinator,
        ApiKey::OffsetFetch,
        ApiKey::OffsetCommit,
    ]
    .iter()
    .all(|k| s.supports(*k));
    let group: Option<String> = match (&args.group, args.no_group) {
        (_, true) => None,
        (Some(g), false) => {
            if !group_apis {
                return Err(runtime_error(format!(
                    "the broker at {} has no consumer-group APIs (FindCoordinator, OffsetFetch, OffsetCommit), so group {g:?} cannot be used; read with --no-group",
                    args.client.bootstrap
                )));
            }
            Some(g.clone())
        }
        (None, false) => {
            if group_apis {
                Some(args.default_group.clone())
            } else {
                eprintln!(
                    "sluice: warning: the broker has no consumer-group APIs; reading without the default group {:?} (offsets are not saved)",
                    args.default_group
                );
                None
            }
        }
    };
    let coordinator = match &group {
        Some(g) => Some(s.coordinator(g)?),
        None => None,
    };
    let mut position = match args.from {
        Some(p) => resolve_positions(&mut s, &topic, &partitions, p)?,
        None => {
            let mut start = resolve_positions(&mut s, &topic, &partitions, Position::Beginning)?;
            if let (Some(g), Some(c)) = (&group, coordinator) {
                let wanted = vec![(topic.name.clone(), partitions.clone())];
                let committed = fetch_offsets(&mut s, c, g, Some(&wanted))?;
                let latest = s.list_offsets(&topic, &partitions, -1)?;
                for (&p, offset) in start.iter_mut() {
                    if let Some(&c) = committed.get(&(topic.name.clone(), p)) {
                        // A commit outside the log (deleted by retention, or
                        // from a topic since re-created) falls back to the
                        // nearest end, as auto.offset.reset would.
                        *offset = c.clamp(*offset, latest[&p]);
                    }
                }
            }
            start
        }
    };

    let stop_flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop_flag))
            .map_err(|e| runtime_error(format!("cannot install a signal handler: {e}")))?;
    }

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut committed: BTreeMap<i32, i64> = position.clone();
    let mut last_commit = Instant::now();
    let commit_interval = Duration::from_millis(args.commit_interval_ms);
    let mut printed = 0u64;
    let mut done: BTreeSet<i32> = BTreeSet::new();
    if args.exit {
        let latest = s.list_offsets(&topic, &partitions, -1)?;
        for (&p, &o) in &position {
            if o >= latest[&p] {
                done.insert(p);
            }
        }
    }
    let mut topic = topic;
    let mut scratch = Vec::new();
    let mut retries = 0u32;
    let wait_ms = if args.exit {
        WAIT_EXIT_MS
    } else {
        WAIT_FOLLOW_MS
    };
    'read: while done.len() < partitions.len() {
        if stop_flag.load(Ordering::Relaxed) {
            break;
        }
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions.iter().filter(|p| !done.contains(p)) {
            by_leader
                .entry(topic.leader_of(p).unwrap_or(-1))
                .or_default()
                .push(p);
        }
        let mut refresh = false;
        for (leader, parts) in by_leader {
            let body = RequestBody::Fetch(FetchRequest {
                replica_id: -1,
                max_wait_ms: wait_ms,
                min_bytes: 1,
                max_bytes: FETCH_MAX_BYTES,
                isolation_level: 0,
                session_id: 0,
                session_epoch: -1,
                topics: vec![FetchTopic {
                    topic: topic.name.clone(),
                    partitions: parts
                        .iter()
                        .map(|p| FetchPartition {
                            partition: *p,
                            current_leader_epoch: -1,
                            fetch_offset: position[p],
                            log_start_offset: -1,
                            partition_max_bytes: PARTITION_MAX_BYTES,
                            ..FetchPartition::default()
                        })
                        .collect(),
                    ..FetchTopic::default()
                }],
                ..FetchRequest::default()
            });
            let ResponseBody::Fetch(r) = s.call(Some(leader), &body)? else {
                unreachable!("call() checks the response type");
            };
            let top = ErrorCode(r.error_code);
            if !top.is_none() {
                return Err(runtime_error(format!(
                    "fetch from broker {leader} failed: {top}"
                )));
            }
            for t in &r.responses {
                for pd in &t.partitions {
                    let p = pd.partition_index;
                    let Some(&pos) = position.get(&p) else {
                        continue;
                    };
                    let code = ErrorCode(pd.error_code);
                    match code {
                        ErrorCode::NONE => {}
                        ErrorCode::OFFSET_OUT_OF_RANGE => {
                            return Err(runtime_error(format!(
                                "offset {pos} of partition {p} is out of range (the log now starts at {} and ends at {}); start again with --from beginning or --from end",
                                pd.log_start_offset, pd.high_watermark
                            )));
                        }
                        ErrorCode::NOT_LEADER_OR_FOLLOWER
                        | ErrorCode::LEADER_NOT_AVAILABLE
                        | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                        | ErrorCode::FENCED_LEADER_EPOCH
                        | ErrorCode::UNKNOWN_LEADER_EPOCH => {
                            refresh = true;
                            continue;
                        }
                        _ => {
                            return Err(runtime_error(format!(
                                "fetch of partition {p} failed: {code}"
                            )))
                        }
                    }
                    let records = pd
                        .records
                        .as_ref()
                        .map(|r| r.contiguous())
                        .unwrap_or_default();
                    let mut new_pos = pos;
                    for item in BatchIter::new(&records) {
                        let (header, range) = match item {
                            Ok(b) => b,
                            // A fetch may end inside a batch: read it next time.
                            Err(ScanError::Torn { .. }) => break,
                            Err(e) => {
                                return Err(runtime_error(format!(
                                "partition {p} returned a corrupt batch near offset {new_pos}: {e}"
                            )))
                            }
                        };
                        if header.last_offset() < new_pos {
                            continue;
                        }
                        if !header.is_control() {
                            let h = decompress_records(
                                &records[range],
                                DEFAULT_MAX_DECOMPRESSED_BYTES,
                                &mut scratch,
                            )
                            .map_err(|e| {
                                runtime_error(format!(
                                    "cannot read a batch of partition {p} at offset {}: {e}",
                                    header.base_offset
                                ))
                            })?;
                            for rec in RecordIter::new(&scratch, h.record_count) {
                                let rec = rec.map_err(|e| {
                                    runtime_error(format!(
                                        "malformed record in partition {p} near offset {new_pos}: {e}"
                                    ))
                                })?;
                                let offset = rec.offset(&h);
                                if offset < new_pos {
                                    continue;
                                }
                                let written = render(
                                    &mut out,
                                    &pieces,
                                    &topic.name,
                                    p,
                                    offset,
                                    rec.timestamp(&h),
                                    &rec,
                                );
                                if let Err(e) = written {
                                    if e.kind() == ErrorKind::BrokenPipe {
                                        // The reader of our output is gone.
                                        break 'read;
                                    }
                                    return Err(runtime_error(format!("cannot write output: {e}")));
                                }
                                new_pos = offset + 1;
                                position.insert(p, new_pos);
                                printed += 1;
                                if args.count.is_some_and(|n| printed >= n) {
                                    break 'read;
                                }
                            }
                        }
                        // Past the whole batch (also control batches and
                        // compacted gaps).
                        new_pos = new_pos.max(header.next_offset());
                        position.insert(p, new_pos);
                    }
                    if args.exit && new_pos >= pd.high_watermark {
                        done.insert(p);
                    }
                }
            }
        }
        match out.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
            Err(e) => return Err(runtime_error(format!("cannot write output: {e}"))),
            Ok(()) => {}
        }
        if refresh {
            retries += 1;
            if retries > MAX_FETCH_RETRIES {
                return Err(runtime_error(format!(
                    "partitions of {:?} keep moving or have no leader; is the cluster healthy?",
                    topic.name
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
            let name = topic.name.clone();
            topic = s.topic(&name, false)?;
        } else {
            retries = 0;
        }
        if let (Some(g), Some(c)) = (&group, coordinator) {
            if last_commit.elapsed() >= commit_interval && position != committed {
                commit(&mut s, c, g, &topic.name, &position, &committed)?;
                committed = position.clone();
                last_commit = Instant::now();
            }
        }
    }
    // Output first, so a commit never covers records not yet written.
    let _ = out.flush();
    if let (Some(g), Some(c)) = (&group, coordinator) {
        if position != committed {
            commit(&mut s, c, g, &topic.name, &position, &committed)?;
        }
    }
    Ok(())
}

/// Commits the positions that moved since the last commit.
fn commit(
    s: &mut Session,
    coordinator: i32,
    group: &str,
    topic: &str,
    position: &BTreeMap<i32, i64>,
    committed: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let offsets: BTreeMap<TopicPartition, i64> = position
        .iter()
        .filter(|(p, o)| committed.get(p) != Some(o))
        .map(|(&p, &o)| ((topic.to_string(), p), o))
        .collect();
    commit_offsets(s, coordinator, group, &offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(parse_position("beginning"), Ok(Position::Beginning));
        assert_eq!(parse_position("end"), Ok(Position::End));
        assert_eq!(parse_position("offset:42"), Ok(Position::Offset(42)));
        assert_eq!(parse_position("offset:-3"), Ok(Position::Offset(-3)));
        assert_eq!(
            parse_position("timestamp:1700000000000"),
            Ok(Position::Timestamp(1_700_000_000_000))
        );
        for bad in ["", "offset:", "offset:x", "timestamp:-1", "middle", "42"] {
            assert!(parse_position(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_templates() {
        let p = parse_format("%t/%p@%o %k=%s %T [%h]%%\\n").unwrap();
        assert_eq!(p.first(), Some(&Piece::Topic));
        assert_eq!(p.last(), Some(&Piece::Literal(b"]%\n".to_vec())));
        assert!(parse_format("%x").is_err());
        assert!(parse_format("abc%").is_err());
        let mut b = sluice_records::BatchBuilder::new(sluice_records::Compression::None);
        b.push(5, Some(b"k"), Some(b"v"), &[("a", Some(b"1")), ("b", None)]);
        let batch = b.build();
        let (h, mut it) = RecordIter::from_batch(&batch).unwrap();
        let rec = it.next().unwrap().unwrap();
        let mut out = Vec::new();
        render(&mut out, &p, "t", 2, 9, rec.timestamp(&h), &rec).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "t/2@9 k=v 5 [a=1,b=]%\n");
    }
}
