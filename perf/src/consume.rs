//! Consumer workers: each owns a share of the partitions and keeps one Fetch
//! in flight per partition (so a connection has as many fetches pipelined as
//! it has partitions), counting records and, for end-to-end runs, the
//! latency from the send time embedded in each value to its arrival.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};
use sluice_records::{visit_records, BatchIter, ScanError, DEFAULT_MAX_DECOMPRESSED_BYTES};

use crate::client::{Cluster, Pipeline};
use crate::error::{PerfError, Result};
use crate::histogram::Stats;
use crate::workload::{Clock, TIMESTAMP_BYTES};

/// Fetch errors tolerated per partition (retried after a pause) before the
/// run fails.
const MAX_FETCH_RETRIES: u32 = 50;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    pub connections: usize,
    pub max_wait_ms: i32,
    pub partition_max_bytes: i32,
    pub max_bytes: i32,
    /// Read the embedded send time of every record (end-to-end runs).
    pub e2e: bool,
}

/// When the consumers stop; shared by all workers and the producer side.
pub struct StopWhen {
    /// Stop fetching at this run time.
    pub end_ns: AtomicU64,
    /// Stop once this many records arrived in total (`u64::MAX`: no limit).
    pub target_messages: AtomicU64,
    /// Per partition: stop once the fetch position reaches this offset.
    pub end_offsets: Option<Vec<i64>>,
    pub abort: AtomicBool,
}

enum Next {
    Fetch {
        partition: u32,
        offset: i64,
    },
    Retry {
        partition: u32,
        offset: i64,
        error: String,
    },
    Done,
}

struct FetchCtx {
    partition: u32,
    offset: i64,
}

/// Runs consumer worker `index` over its partitions (`p % connections == index`)
/// from `start_offsets`.
pub fn run_worker(
    index: usize,
    cfg: &ConsumeConfig,
    cluster: &Cluster,
    start_offsets: &[i64],
    clock: Clock,
    stats: Arc<Stats>,
    stop: Arc<StopWhen>,
) -> Result<()> {
    let mine: Vec<u32> = (0..cluster.partitions())
        .filter(|p| *p as usize % cfg.connections == index)
        .filter(|&p| {
            let reached = stop
                .end_offsets
                .as_ref()
                .is_some_and(|end| start_offsets[p as usize] >= end[p as usize]);
            !reached
        })
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let (tx, rx) = channel::<Next>();
    let mut pipelines: HashMap<i32, Pipeline<FetchCtx>> = HashMap::new();
    for &p in &mine {
        let leader = cluster.leaders[p as usize];
        if pipelines.contains_key(&leader) {
            continue;
        }
        let handler = Handler {
            clock,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            tx: tx.clone(),
            e2e: cfg.e2e,
            scratch: Vec::new(),
        };
        let mut handler = handler;
        // One fetch per partition in flight, all partitions at once.
        let pipeline = Pipeline::connect(cluster.leader_addr(p)?, mine.len(), move |ctx, body| {
            handler.on_response(ctx, body)
        })?;
        pipelines.insert(leader, pipeline);
    }
    drop(tx);
    let mut active = mine.len();
    let mut retries: HashMap<u32, u32> = HashMap::new();
    for &p in &mine {
        send_fetch(cfg, cluster, &mut pipelines, p, start_offsets[p as usize])?;
    }
    while active > 0 {
        let next = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(n) => n,
            Err(RecvTimeoutError::Timeout) => continue,
            // Every handler is gone: a reader failed; finish() says why.
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let past_end = clock.now_ns() >= stop.end_ns.load(Ordering::Relaxed)
            || stop.abort.load(Ordering::Relaxed);
        match next {
            Next::Done => active -= 1,
            Next::Fetch { .. } | Next::Retry { .. } if past_end => active -= 1,
            Next::Fetch { partition, offset } => {
                send_fetch(cfg, cluster, &mut pipelines, partition, offset)?;
            }
            Next::Retry {
                partition,
                offset,
                error,
            } => {
                let n = retries.entry(partition).or_default();
                *n += 1;
                if *n > MAX_FETCH_RETRIES {
                    return Err(PerfError::Broker(format!(
                        "fetch from partition {partition} at offset {offset} failed {MAX_FETCH_RETRIES} times, last with {error}"
                    )));
                }
                std::thread::sleep(RETRY_PAUSE);
                send_fetch(cfg, cluster, &mut pipelines, partition, offset)?;
            }
        }
    }
    let mut result = Ok(());
    for (_, p) in pipelines.drain() {
        let r = p.finish();
        if result.is_ok() {
            result = r;
        }
    }
    result
}

fn send_fetch(
    cfg: &ConsumeConfig,
    cluster: &Cluster,
    pipelines: &mut HashMap<i32, Pipeline<FetchCtx>>,
    partition: u32,
    offset: i64,
) -> Result<()> {
    let body = RequestBody::Fetch(FetchRequest {
        replica_id: -1,
        max_wait_ms: cfg.max_wait_ms,
        min_bytes: 1,
        max_bytes: cfg.max_bytes,
        // Sessionless: every fetch names its partition in full.
        session_id: 0,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: cluster.topic.clone(),
            partitions: vec![FetchPartition {
                partition: partition as i32,
                fetch_offset: offset,
                partition_max_bytes: cfg.partition_max_bytes,
                ..FetchPartition::default()
            }],
            ..FetchTopic::default()
        }],
        ..FetchRequest::default()
    });
    let pipeline = pipelines
        .get_mut(&cluster.leaders[partition as usize])
        .expect("a pipeline per leader");
    pipeline.send(
        cluster.versions.fetch,
        &body,
        FetchCtx { partition, offset },
    )
}

struct Handler {
    clock: Clock,
    stats: Arc<Stats>,
    stop: Arc<StopWhen>,
    tx: Sender<Next>,
    e2e: bool,
    scratch: Vec<u8>,
}

impl Handler {
    fn on_response(&mut self, ctx: FetchCtx, body: ResponseBody) -> Result<()> {
        let now = self.clock.now_ns();
        let ResponseBody::Fetch(r) = body else {
            return Err(PerfError::Protocol("Fetch: wrong response type".into()));
        };
        if r.error_code != 0 {
            return Err(PerfError::Broker(format!(
                "fetch: {}",
                ErrorCode(r.error_code)
            )));
        }
        let data = r
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index as u32 == ctx.partition);
        let Some(data) = data else {
            return Err(PerfError::Protocol(format!(
                "fetch response lacks partition {}",
                ctx.partition
            )));
        };
        if data.error_code != 0 {
            let code = ErrorCode(data.error_code);
            self.stats.with(|s| {
                s.error(0, || format!("fetch partition {}: {code}", ctx.partition));
            });
            if code == ErrorCode::OFFSET_OUT_OF_RANGE {
                return Err(PerfError::Broker(format!(
                    "fetch partition {} at offset {}: {code}",
                    ctx.partition, ctx.offset
                )));
            }
            let _ = self.tx.send(Next::Retry {
                partition: ctx.partition,
                offset: ctx.offset,
                error: code.to_string(),
            });
            return Ok(());
        }
        // A decoded value is one slice of the response frame: no copy.
        let records = data
            .records
            .as_ref()
            .map(|r| r.contiguous())
            .unwrap_or_default();
        let mut next = ctx.offset;
        let mut messages = 0u64;
        let mut bytes = 0u64;
        let mut latencies: Vec<u64> = Vec::new();
        for item in BatchIter::new(&records) {
            let (header, range) = match item {
                Ok(b) => b,
                // A fetch may end inside a batch; the rest comes next time.
                Err(ScanError::Torn { .. }) => break,
                Err(e) => {
                    return Err(PerfError::Broker(format!(
                        "corrupt batch in partition {} near offset {next}: {e:?}",
                        ctx.partition
                    )))
                }
            };
            if header.last_offset() < next {
                continue;
            }
            let first = header.base_offset.max(next);
            let count = (header.last_offset() - first + 1) as u64;
            messages += count;
            bytes += range.len() as u64;
            if self.e2e {
                let batch = &records[range];
                let from = next;
                visit_records(
                    batch,
                    DEFAULT_MAX_DECOMPRESSED_BYTES,
                    &mut self.scratch,
                    |_, rec| {
                        if rec.offset(&header) >= from {
                            if let Some(ts) = rec
                                .value
                                .and_then(|v| v.get(..TIMESTAMP_BYTES))
                                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            {
                                let sent = u64::from_be_bytes(ts);
                                latencies.push(self.clock.to_unix_ns(now).saturating_sub(sent));
                            }
                        }
                        Ok(())
                    },
                )
                .map_err(|e| PerfError::Broker(format!("undecodable batch: {e}")))?;
            }
            next = header.next_offset();
        }
        let total = self.stats.with(|s| {
            if messages > 0 {
                s.count(now, messages, bytes);
            }
            for &l in &latencies {
                s.record_latency_ns(l);
            }
            s.messages
        });
        let reached_end = self
            .stop
            .end_offsets
            .as_ref()
            .is_some_and(|end| next >= end[ctx.partition as usize]);
        let enough = total >= self.stop.target_messages.load(Ordering::Relaxed);
        let msg = if reached_end || enough {
            Next::Done
        } else {
            Next::Fetch {
                partition: ctx.partition,
                offset: next,
            }
        };
        let _ = self.tx.send(msg);
        Ok(())
    }
}
