//! The log against a plain model: random appends, flushes, rolls, retention,
//! DeleteRecords, truncation, clean reopens and crashes. After every step each
//! visible record reads back equal, offsets dense, and timestamp lookups agree.

mod common;

use std::cell::RefCell;

use bytes::Bytes;
use common::*;
use engine::log::{delete_dropped_files, flush, offset_for_timestamp, truncate_to, PartitionLog};
use engine::recovery::{checkpoint_log_start, close};
use engine::storage::memory::{CrashKind, MemStorage};
use engine::{FlushPolicy, LogConfig};
use futures::executor::block_on;
use proptest::prelude::*;
use sluice_records::{BatchBuilder, Compression};

#[derive(Clone, Debug)]
enum Op {
    /// `records` records of about `size` bytes each.
    Append {
        records: usize,
        size: usize,
    },
    Flush,
    /// Appends of `records` records each, a flush job prepared after each, all
    /// run together (jobs in flight at once), polled newest first.
    PipelinedFlush {
        jobs: usize,
        records: usize,
    },
    Roll,
    Retention {
        bytes: i64,
    },
    /// DeleteRecords to this fraction (per mille) of the way from start to visible end.
    DeleteRecords {
        per_mille: i64,
    },
    /// Truncate to the batch boundary picked by this fraction (per mille).
    Truncate {
        per_mille: usize,
    },
    CloseReopen,
    Crash {
        power_loss: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..8, 0usize..600).prop_map(|(records, size)| Op::Append { records, size }),
        4 => Just(Op::Flush),
        2 => (1usize..=5, 1usize..40).prop_map(|(jobs, records)| Op::PipelinedFlush { jobs, records }),
        1 => Just(Op::Roll),
        1 => (2_000i64..20_000).prop_map(|bytes| Op::Retention { bytes }),
        1 => (0i64..=1000).prop_map(|per_mille| Op::DeleteRecords { per_mille }),
        1 => (0usize..=1000).prop_map(|per_mille| Op::Truncate { per_mille }),
        1 => Just(Op::CloseReopen),
        1 => any::<bool>().prop_map(|power_loss| Op::Crash { power_loss }),
    ]
}

fn timestamp_of(offset: i64) -> i64 {
    1_000 + 10 * offset
}

fn value(offset: i64, size: usize) -> Vec<u8> {
    let mut v = format!("{offset}:").into_bytes();
    v.resize(v.len() + size, b'a' + (offset % 26) as u8);
    v
}

/// The model: every record ever kept, by offset (dense from 0), batch starts, log start.
#[derive(Default)]
struct Model {
    values: Vec<Vec<u8>>,
    batch_starts: Vec<i64>,
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.values.len() as i64
    }

    fn truncate(&mut self, end: i64) {
        self.values.truncate(end as usize);
        self.batch_starts.retain(|&b| b < end);
    }
}

async fn check(log: &RefCell<PartitionLog<MemStorage>>, model: &Model, probe: i64, step: usize) {
    let (end, visible, start) = {
        let l = log.borrow();
        (l.log_end_offset(), l.visible_offset(), l.log_start_offset())
    };
    assert_eq!(end, model.end(), "log end, step {step}");
    assert_eq!(start, model.log_start, "log start, step {step}");
    assert!(start <= visible && visible <= end, "bounds, step {step}");
    let records = read_all(log, start).await.expect("read");
    let want: Vec<(i64, Vec<u8>)> = (start..visible)
        .map(|o| (o, model.values[o as usize].clone()))
        .collect();
    assert_eq!(records, want, "records, step {step}");
    // ListOffsets by timestamp agrees with a linear search of the model.
    let target = timestamp_of(start) + probe.rem_euclid((visible - start + 2) * 10) - 15;
    let expected = (start..visible)
        .find(|&o| timestamp_of(o) >= target)
        .map(|o| (o, timestamp_of(o)));
    let got = offset_for_timestamp(log, target).await.expect("lookup");
    assert_eq!(got, expected, "timestamp lookup {target}, step {step}");
}

async fn run(cfg: LogConfig, ops: Vec<(Op, i64)>) {
    let mut storage = MemStorage::new();
    let mut log = open(&storage, &cfg).await.expect("open");
    let mut model = Model::default();
    for (step, (op, probe)) in ops.into_iter().enumerate() {
        match op {
            Op::Append { records, size } => {
                let base = model.end();
                let mut b = BatchBuilder::new(Compression::None);
                for i in 0..records as i64 {
                    let o = base + i;
                    b.push(timestamp_of(o), None, Some(&value(o, size)), &[]);
                    model.values.push(value(o, size));
                }
                let batch: Bytes = b.build();
                let a = log.borrow_mut().append(&batch, 0, NOW).expect("append");
                assert_eq!(a.base_offset, base, "dense offsets, step {step}");
                model.batch_starts.push(base);
            }
            Op::Flush => {
                flush(&log, NOW, false).await;
                let l = log.borrow();
                assert_eq!(l.visible_offset(), l.log_end_offset(), "step {step}");
            }
            Op::PipelinedFlush { jobs, records } => {
                let mut prepared = Vec::new();
                for _ in 0..jobs {
                    let base = model.end();
                    let mut b = BatchBuilder::new(Compression::None);
                    for i in 0..records as i64 {
                        let o = base + i;
                        b.push(timestamp_of(o), None, Some(&value(o, 30)), &[]);
                        model.values.push(value(o, 30));
                    }
                    let batch: Bytes = b.build();
                    log.borrow_mut().append(&batch, 0, NOW).expect("append");
                    model.batch_starts.push(base);
                    prepared.extend(log.borrow_mut().prepare_flush(NOW, false));
                }
                let storage = storage.clone();
                let runs = prepared.into_iter().rev().map(|job| {
                    let (log, storage) = (&log, &storage);
                    async move {
                        let end = job.end_offset();
                        let outcome = job.execute(storage).await;
                        outcome.turn().await;
                        log.borrow_mut().complete_flush(end, outcome, NOW);
                    }
                });
                futures::future::join_all(runs).await;
            }
            Op::Roll => log.borrow_mut().force_roll(NOW),
            Op::Retention { bytes } => {
                let mut c = log.borrow().config().clone();
                c.retention_bytes = bytes;
                log.borrow_mut().set_config(c);
                log.borrow_mut().plan_retention(NOW);
                delete_dropped_files(&log).await.expect("delete files");
                let start = log.borrow().log_start_offset();
                assert!(start >= model.log_start, "the start never goes back");
                model.log_start = start;
                log.borrow_mut().set_config(cfg.clone());
            }
            Op::DeleteRecords { per_mille } => {
                let visible = log.borrow().visible_offset();
                let target = model.log_start + (visible - model.log_start) * per_mille / 1000;
                log.borrow_mut()
                    .advance_log_start(target)
                    .expect("delete records");
                checkpoint_log_start(&log).await.expect("checkpoint");
                delete_dropped_files(&log).await.expect("delete files");
                model.log_start = model.log_start.max(target);
            }
            Op::Truncate { per_mille } => {
                let cuts: Vec<i64> = model
                    .batch_starts
                    .iter()
                    .copied()
                    .filter(|&b| b >= model.log_start)
                    .chain(std::iter::once(model.end()))
                    .collect();
                let cut = cuts[(cuts.len() - 1) * per_mille / 1000];
                truncate_to(&log, cut).await.expect("truncate");
                model.truncate(cut);
            }
            Op::CloseReopen => {
                close(&log, NOW).await.expect("close");
                drop(log);
                log = open(&storage, &cfg).await.expect("reopen");
            }
            Op::Crash { power_loss } => {
                let (written, durable) = {
                    let l = log.borrow();
                    (l.visible_offset(), l.durable_offset())
                };
                drop(log);
                let kind = if power_loss {
                    CrashKind::PowerLoss
                } else {
                    CrashKind::ProcessKill
                };
                storage = storage.after_crash(kind);
                log = open(&storage, &cfg).await.expect("reopen after crash");
                let end = log.borrow().log_end_offset();
                let kept = if power_loss { durable } else { written };
                assert!(
                    end >= kept && end <= model.end(),
                    "{kind:?} kept {end}, acknowledged {kept}, step {step}"
                );
                model.truncate(end);
                model.log_start = model.log_start.min(end);
            }
        }
        check(&log, &model, probe, step).await;
    }
}

fn config() -> impl Strategy<Value = LogConfig> {
    (
        prop_oneof![Just(FlushPolicy::Always), Just(FlushPolicy::Never)],
        prop_oneof![Just(0u64), Just(8192u64)],
        2048u64..8192,
    )
        .prop_map(|(flush, preallocate_bytes, segment_bytes)| LogConfig {
            flush,
            preallocate_bytes,
            segment_bytes,
            index_interval_bytes: 512,
            ..LogConfig::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_the_model(
        cfg in config(),
        ops in proptest::collection::vec((op(), any::<i64>()), 1..60),
    ) {
        block_on(run(cfg, ops));
    }
}
