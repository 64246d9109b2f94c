//! Producer workers: each owns one connection per leader broker, batches
//! per partition (size and linger, as Kafka's producer does), keeps up to
//! `max_in_flight` Produce requests outstanding, and records each message's
//! latency from its intended send time to its acknowledgement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_codec::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};
use sluice_records::{BatchBuilder, Compression};

use crate::client::{Cluster, Pipeline};
use crate::error::{PerfError, Result};
use crate::histogram::Stats;
use crate::workload::{
    partition_for_key, payload_template, Acks, Clock, KeyDist, RateSchedule, Rng, TIMESTAMP_BYTES,
};

/// Most bytes a record adds beyond its value: length, attributes, deltas,
/// key (16 bytes here) and length prefixes.
const RECORD_OVERHEAD_BOUND_BYTES: usize = 48;
/// Produce request timeout given to the broker.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Longest a worker sleeps between checks of its schedule and lingers.
const MAX_SLEEP: Duration = Duration::from_millis(1);
/// Messages generated between checks of linger deadlines and the clock.
const MESSAGES_PER_ROUND: usize = 4096;

/// One producer run's settings (validated by the CLI).
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub connections: usize,
    pub max_in_flight: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub max_request_bytes: usize,
    pub message_bytes: usize,
    pub keys: KeyDist,
    pub acks: Acks,
    pub compression: Compression,
    /// Total messages a second over all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Stop generating at this run time.
    pub end_ns: u64,
    /// Stop after this many messages in total.
    pub messages: Option<u64>,
}

/// Messages of one batch in flight: enough to account for the answer.
struct SentBatch {
    partition: u32,
    bytes: u64,
    /// Intended send time (run ns) of each message in the batch.
    intended_ns: Vec<u64>,
}

/// A partition's open batch.
struct Accumulator {
    builder: BatchBuilder,
    intended_ns: Vec<u64>,
    payload_bytes: u64,
}

/// Runs worker `index` of `cfg.connections` until its share is sent and
/// answered.
pub fn run_worker(
    index: usize,
    cfg: &ProduceConfig,
    cluster: &Cluster,
    clock: Clock,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let workers = cfg.connections as u64;
    let partitions = cluster.partitions();
    let share = cfg
        .messages
        .map(|m| m / workers + u64::from((index as u64) < m % workers));
    // Workers are staggered by one message interval so their sum is even.
    let mut schedule = cfg.rate.map(|r| {
        let stagger_ns = (index as f64 * 1e9 / r) as u64;
        RateSchedule::new(r / workers as f64, clock.now_ns() + stagger_ns)
    });

    let mut pipelines: HashMap<i32, Pipeline<Vec<SentBatch>>> = HashMap::new();
    for &leader in &cluster.leaders {
        if pipelines.contains_key(&leader) {
            continue;
        }
        let addr = cluster.leader_addr(
            cluster
                .leaders
                .iter()
                .position(|&l| l == leader)
                .unwrap_or(0) as u32,
        )?;
        let stats = Arc::clone(&stats);
        let pipeline = Pipeline::connect(addr, cfg.max_in_flight, move |sent, body| {
            on_response(clock, &stats, sent, body)
        })?;
        pipelines.insert(leader, pipeline);
    }

    let mut accs: Vec<Accumulator> = (0..partitions)
        .map(|_| Accumulator {
            builder: BatchBuilder::new(cfg.compression),
            intended_ns: Vec::new(),
            payload_bytes: 0,
        })
        .collect();
    let mut rng = Rng::new(0x5eed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    let payload = payload_template(cfg.message_bytes, index as u64);
    let mut value = payload.clone();
    let mut key = Vec::with_capacity(16);
    let mut sticky = (index as u32) % partitions;
    let mut generated = 0u64;
    let linger_ns = cfg.linger.as_nanos() as u64;
    let record_bound = cfg.message_bytes + RECORD_OVERHEAD_BOUND_BYTES;
    let mut sender = Sender {
        cfg,
        cluster,
        clock,
        stats: &stats,
        pipelines: &mut pipelines,
    };

    loop {
        let now = clock.now_ns();
        let done = now >= cfg.end_ns
            || share.is_some_and(|s| generated >= s)
            || stop.load(Ordering::Relaxed);
        if done {
            break;
        }
        let mut full = false;
        for _ in 0..MESSAGES_PER_ROUND {
            if share.is_some_and(|s| generated >= s) {
                break;
            }
            let intended = match schedule.as_mut() {
                Some(s) => match s.next_due(now) {
                    Some(t) => t,
                    None => break,
                },
                None => now,
            };
            let has_key = cfg.keys.next_key(&mut rng, &mut key);
            let partition = if has_key {
                partition_for_key(&key, partitions)
            } else {
                sticky
            };
            if cfg.message_bytes >= TIMESTAMP_BYTES {
                value[..TIMESTAMP_BYTES].copy_from_slice(&clock.to_unix_ns(intended).to_be_bytes());
            }
            let acc = &mut accs[partition as usize];
            acc.builder.push(
                (clock.to_unix_ns(intended) / 1_000_000) as i64,
                has_key.then_some(&key[..]),
                Some(&value),
                &[],
            );
            acc.intended_ns.push(intended);
            acc.payload_bytes += cfg.message_bytes as u64;
            generated += 1;
            // Closed when the next record might not fit, so a batch stays
            // within --batch-size (brokers refuse batches over their limit).
            if acc.builder.uncompressed_size() + record_bound > cfg.batch_bytes {
                full = true;
                if !has_key {
                    sticky = (sticky + 1) % partitions;
                }
                break;
            }
        }
        let now = clock.now_ns();
        let lingered = accs
            .iter()
            .any(|a| a.intended_ns.first().is_some_and(|&t| now >= t + linger_ns));
        if full || lingered {
            if !full && cfg.keys == KeyDist::None {
                sticky = (sticky + 1) % partitions;
            }
            sender.send_all(&mut accs)?;
            continue;
        }
        if cfg.rate.is_none() {
            continue;
        }
        // Sleep until the next message is due or the oldest batch lingers out.
        let next_due = schedule
            .as_ref()
            .map_or(now, RateSchedule::next_intended_ns);
        let linger_at = accs
            .iter()
            .filter_map(|a| a.intended_ns.first().map(|&t| t + linger_ns))
            .min()
            .unwrap_or(u64::MAX);
        let wake = next_due.min(linger_at).min(cfg.end_ns);
        if wake > now {
            std::thread::sleep(Duration::from_nanos(wake - now).min(MAX_SLEEP));
        }
    }
    sender.send_all(&mut accs)?;
    let mut result = Ok(());
    for (_, p) in pipelines.drain() {
        let r = p.finish();
        if result.is_ok() {
            result = r;
        }
    }
    result
}

struct Sender<'a> {
    cfg: &'a ProduceConfig,
    cluster: &'a Cluster,
    clock: Clock,
    stats: &'a Stats,
    pipelines: &'a mut HashMap<i32, Pipeline<Vec<SentBatch>>>,
}

impl Sender<'_> {
    /// Sends every open batch, one request per leader (split at the request
    /// size limit), as Kafka's producer drains a node once one batch is ready.
    fn send_all(&mut self, accs: &mut [Accumulator]) -> Result<()> {
        let mut by_leader: HashMap<i32, Vec<(u32, Bytes, SentBatch)>> = HashMap::new();
        for (p, acc) in accs.iter_mut().enumerate() {
            if acc.builder.is_empty() {
                continue;
            }
            let batch = acc.builder.build();
            let sent = SentBatch {
                partition: p as u32,
                bytes: acc.payload_bytes,
                intended_ns: std::mem::take(&mut acc.intended_ns),
            };
            acc.payload_bytes = 0;
            by_leader
                .entry(self.cluster.leaders[p])
                .or_default()
                .push((p as u32, batch, sent));
        }
        for (leader, batches) in by_leader {
            let mut request: Vec<(u32, Bytes)> = Vec::new();
            let mut sent: Vec<SentBatch> = Vec::new();
            let mut size = 0;
            for (p, batch, s) in batches {
                if !request.is_empty() && size + batch.len() > self.cfg.max_request_bytes {
                    self.send_one(
                        leader,
                        std::mem::take(&mut request),
                        std::mem::take(&mut sent),
                    )?;
                    size = 0;
                }
                size += batch.len();
                request.push((p, batch));
                sent.push(s);
            }
            self.send_one(leader, request, sent)?;
        }
        Ok(())
    }

    fn send_one(
        &mut self,
        leader: i32,
        batches: Vec<(u32, Bytes)>,
        sent: Vec<SentBatch>,
    ) -> Result<()> {
        let body = RequestBody::Produce(ProduceRequest {
            transactional_id: None,
            acks: self.cfg.acks.wire(),
            timeout_ms: PRODUCE_TIMEOUT_MS,
            topic_data: vec![TopicProduceData {
                name: self.cluster.topic.clone(),
                partition_data: batches
                    .into_iter()
                    .map(|(p, b)| PartitionProduceData {
                        index: p as i32,
                        records: Some(b.into()),
                    })
                    .collect(),
                ..TopicProduceData::default()
            }],
        });
        let pipeline = self
            .pipelines
            .get_mut(&leader)
            .expect("a pipeline per leader");
        let version = self.cluster.versions.produce;
        if self.cfg.acks == Acks::None {
            pipeline.send_unanswered(version, &body)?;
            // No answer comes: a message counts once it is on the socket.
            let now = self.clock.now_ns();
            self.stats.with(|s| {
                for b in &sent {
                    s.count(now, b.intended_ns.len() as u64, b.bytes);
                    for &t in &b.intended_ns {
                        s.record_latency_ns(now.saturating_sub(t));
                    }
                }
            });
            Ok(())
        } else {
            pipeline.send(version, &body, sent)
        }
    }
}

fn on_response(
    clock: Clock,
    stats: &Stats,
    sent: Vec<SentBatch>,
    body: ResponseBody,
) -> Result<()> {
    let now = clock.now_ns();
    let ResponseBody::Produce(r) = body else {
        return Err(PerfError::Protocol("Produce: wrong response type".into()));
    };
    let mut codes: HashMap<u32, (i16, Option<String>)> = HashMap::new();
    for t in &r.responses {
        for p in &t.partition_responses {
            codes.insert(p.index as u32, (p.error_code, p.error_message.clone()));
        }
    }
    stats.with(|s| {
        for b in &sent {
            match codes.get(&b.partition) {
                Some((0, _)) => {
                    s.count(now, b.intended_ns.len() as u64, b.bytes);
                    for &t in &b.intended_ns {
                        s.record_latency_ns(now.saturating_sub(t));
                    }
                }
                Some((code, msg)) => s.error(b.intended_ns.len() as u64, || {
                    format!(
                        "produce to partition {}: {} {}",
                        b.partition,
                        ErrorCode(*code),
                        msg.as_deref().unwrap_or("")
                    )
                }),
                None => s.error(b.intended_ns.len() as u64, || {
                    format!("produce response lacks partition {}", b.partition)
                }),
            }
        }
    });
    Ok(())
}
