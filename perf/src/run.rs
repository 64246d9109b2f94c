//! One benchmark run: bootstrap, workers, progress, summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::cli::{BenchConfig, Mode, StartAt, DEFAULT_DURATION};
use crate::client::{bootstrap, list_offsets, Cluster, TopicSpec};
use crate::consume::{self, ConsumeConfig, StopWhen};
use crate::error::{PerfError, Result};
use crate::histogram::Stats;
use crate::produce::{self, ProduceConfig};
use crate::report::{progress, RoleSummary, Series, Summary};
use crate::workload::Clock;

/// How long an end-to-end consumer keeps reading after the producer stops.
const E2E_DRAIN_GRACE: Duration = Duration::from_secs(10);
/// ListOffsets timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// Runs the benchmark `cfg` describes and returns its summary.
pub fn run(cfg: &BenchConfig) -> Result<Summary> {
    let spec = TopicSpec {
        name: cfg.topic.clone(),
        partitions: cfg.partitions,
        replication_factor: cfg.replication_factor,
        configs: cfg.topic_configs.clone(),
    };
    let cluster = bootstrap(&cfg.bootstrap, &spec, cfg.mode != Mode::Consume)?;
    if !cfg.quiet && cluster.partitions() != cfg.partitions as u32 && cfg.mode != Mode::Consume {
        eprintln!(
            "note: topic {} exists with {} partitions (not --partitions {}); using them all",
            cfg.topic,
            cluster.partitions(),
            cfg.partitions
        );
    }
    let clock = Clock::new();
    let produce_stats = Arc::new(Stats::new());
    let consume_stats = Arc::new(Stats::new());
    // Offsets are looked up before the clock starts counting throughput.
    let (start_offsets, end_offsets) = match cfg.mode {
        Mode::Produce => (Vec::new(), None),
        Mode::Consume => {
            let start_offsets = match cfg.from {
                StartAt::Earliest => list_offsets(&cluster, EARLIEST)?,
                StartAt::Latest => list_offsets(&cluster, LATEST)?,
                StartAt::Offset(o) => vec![o; cluster.partitions() as usize],
            };
            // Without a bound, read up to the end as it was at the start.
            let end_offsets = (cfg.duration.is_none() && cfg.messages.is_none())
                .then(|| list_offsets(&cluster, LATEST))
                .transpose()?;
            (start_offsets, end_offsets)
        }
        Mode::E2e => (list_offsets(&cluster, LATEST)?, None),
    };
    let start = clock.now_ns();
    let consume_end_ns = match (cfg.mode, cfg.duration) {
        (Mode::Consume, Some(d)) => start + d.as_nanos() as u64,
        _ => u64::MAX,
    };
    let consume_target = match cfg.mode {
        Mode::Consume => cfg.messages.unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    let stop = Arc::new(StopWhen {
        end_ns: AtomicU64::new(consume_end_ns),
        target_messages: AtomicU64::new(consume_target),
        end_offsets,
        abort: AtomicBool::new(false),
    });
    let mut series = Vec::new();
    if cfg.mode != Mode::Consume {
        series.push(Series {
            name: "produce",
            stats: &produce_stats,
            has_latency: true,
        });
    }
    if cfg.mode != Mode::Produce {
        series.push(Series {
            name: if cfg.mode == Mode::E2e {
                "e2e"
            } else {
                "consume"
            },
            stats: &consume_stats,
            has_latency: cfg.mode == Mode::E2e,
        });
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        let reporter = scope.spawn(|| {
            progress(
                clock,
                start,
                &series,
                &done,
                cfg.quiet,
                cfg.histogram_log.as_deref(),
            )
        });
        let result = match cfg.mode {
            Mode::Produce => run_producers(cfg, &cluster, clock, &produce_stats, start),
            Mode::Consume => run_consumers(
                cfg,
                &cluster,
                &start_offsets,
                clock,
                &consume_stats,
                &stop,
                false,
            ),
            Mode::E2e => {
                let consumers = scope.spawn(|| {
                    run_consumers(
                        cfg,
                        &cluster,
                        &start_offsets,
                        clock,
                        &consume_stats,
                        &stop,
                        true,
                    )
                });
                let produced = run_producers(cfg, &cluster, clock, &produce_stats, start);
                // The consumers stop once they have every acknowledged
                // message, or after a grace period.
                let acked = produce_stats.with(|s| s.messages);
                stop.target_messages.store(acked, Ordering::Relaxed);
                stop.end_ns.store(
                    clock.now_ns() + E2E_DRAIN_GRACE.as_nanos() as u64,
                    Ordering::Relaxed,
                );
                if produced.is_err() {
                    stop.abort.store(true, Ordering::Relaxed);
                }
                let consumed = consumers.join().unwrap_or_else(|_| {
                    Err(PerfError::Protocol("consumer thread panicked".into()))
                });
                produced.and(consumed)
            }
        };
        done.store(true, Ordering::Relaxed);
        let logged = reporter
            .join()
            .unwrap_or_else(|_| Err(PerfError::Protocol("progress thread panicked".into())));
        result.and(logged)
    })?;
    let produce =
        (cfg.mode != Mode::Consume).then(|| RoleSummary::of(&produce_stats, start, Some("ack")));
    let consume = match cfg.mode {
        Mode::Produce => None,
        Mode::Consume => Some(RoleSummary::of(&consume_stats, start, None)),
        Mode::E2e => Some(RoleSummary::of(&consume_stats, start, Some("e2e"))),
    };
    Ok(Summary {
        mode: cfg.mode.name(),
        bootstrap: cfg.bootstrap.clone(),
        topic: cfg.topic.clone(),
        partitions: cluster.partitions(),
        settings: settings_json(cfg),
        produce,
        consume,
    })
}

fn settings_json(cfg: &BenchConfig) -> serde_json::Value {
    json!({
        "connections": cfg.connections,
        "max_in_flight": cfg.max_in_flight,
        "batch_bytes": cfg.batch_bytes,
        "linger_ms": cfg.linger.as_secs_f64() * 1e3,
        "message_bytes": cfg.message_bytes,
        "keys": format!("{:?}", cfg.keys),
        "acks": cfg.acks.wire(),
        "compression": format!("{:?}", cfg.compression).to_lowercase(),
        "rate": cfg.rate,
        "duration_secs": cfg.duration.map(|d| d.as_secs_f64()),
        "messages": cfg.messages,
    })
}

/// Joins scoped workers, keeping the first error.
fn join_all(workers: Vec<std::thread::ScopedJoinHandle<'_, Result<()>>>, what: &str) -> Result<()> {
    let mut result = Ok(());
    for w in workers {
        let r = w
            .join()
            .unwrap_or_else(|_| Err(PerfError::Protocol(format!("{what} thread panicked"))));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

fn run_producers(
    cfg: &BenchConfig,
    cluster: &Cluster,
    clock: Clock,
    stats: &Arc<Stats>,
    start: u64,
) -> Result<()> {
    let duration = match (cfg.duration, cfg.messages) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let pcfg = ProduceConfig {
        connections: cfg.connections,
        max_in_flight: cfg.max_in_flight,
        batch_bytes: cfg.batch_bytes,
        linger: cfg.linger,
        max_request_bytes: cfg.max_request_bytes,
        message_bytes: cfg.message_bytes,
        keys: cfg.keys,
        acks: cfg.acks,
        compression: cfg.compression,
        rate: cfg.rate,
        end_ns: duration.map_or(u64::MAX, |d| start + d.as_nanos() as u64),
        messages: cfg.messages,
    };
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let workers = (0..cfg.connections)
            .map(|i| {
                let (pcfg, stats, stop) = (&pcfg, Arc::clone(stats), Arc::clone(&stop));
                scope.spawn(move || {
                    let r = produce::run_worker(i, pcfg, cluster, clock, stats, Arc::clone(&stop));
                    if r.is_err() {
                        // One failed connection ends the run.
                        stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        join_all(workers, "producer")
    })
}

#[allow(clippy::too_many_arguments)]
fn run_consumers(
    cfg: &BenchConfig,
    cluster: &Cluster,
    start_offsets: &[i64],
    clock: Clock,
    stats: &Arc<Stats>,
    stop: &Arc<StopWhen>,
    e2e: bool,
) -> Result<()> {
    let ccfg = ConsumeConfig {
        connections: cfg.connections,
        max_wait_ms: cfg.fetch_max_wait.as_millis() as i32,
        partition_max_bytes: cfg.fetch_bytes as i32,
        max_bytes: i32::MAX,
        e2e,
    };
    std::thread::scope(|scope| {
        let workers = (0..cfg.connections)
            .map(|i| {
                let (ccfg, stats, stop) = (&ccfg, Arc::clone(stats), Arc::clone(stop));
                scope.spawn(move || {
                    let r = consume::run_worker(
                        i,
                        ccfg,
                        cluster,
                        start_offsets,
                        clock,
                        stats,
                        Arc::clone(&stop),
                    );
                    if r.is_err() {
                        stop.abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        join_all(workers, "consumer")
    })
}
