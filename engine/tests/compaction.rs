//! Log compaction against a model (random puts and deletes, cleaning passes at
//! random points, partial passes from a small key map, restarts and crashes),
//! and a crash at every I/O step of a cleaning pass.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use common::*;
use engine::cleaner::{clean, CleanerOptions, NoPace, MAP_BYTES_PER_ENTRY};
use engine::log::{flush, read, PartitionLog};
use engine::recovery::close;
use engine::storage::memory::{CrashKind, MemStorage};
use engine::storage::Storage;
use engine::{CleanupPolicy, LogConfig};
use futures::executor::block_on;
use proptest::prelude::*;
use sluice_records::{visit_records, BatchBuilder, BatchHeader, Compression};

const RETENTION_MS: i64 = 10_000;

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2 << 10,
        index_interval_bytes: 256,
        preallocate_bytes: 0,
        cleanup_policy: CleanupPolicy::COMPACT,
        delete_retention_ms: RETENTION_MS,
        min_cleanable_dirty_ratio: 0.3,
        ..LogConfig::default()
    }
}

fn small_map(entries: usize) -> CleanerOptions {
    CleanerOptions {
        map_memory_bytes: entries * MAP_BYTES_PER_ENTRY,
        io_chunk_bytes: 4096,
        ..CleanerOptions::default()
    }
}

/// One record: key, value (None: a tombstone).
type Put = (u8, Option<Vec<u8>>);

fn batch_of(puts: &[Put], ts: i64, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(codec);
    for (k, v) in puts {
        b.push(
            ts,
            Some(format!("key-{k}").as_bytes()),
            v.as_deref(),
            &[("h", Some(&[*k]))],
        );
    }
    b.build()
}

/// Every record readable from the log start: (offset, key, value, timestamp).
type Row = (i64, Vec<u8>, Option<Vec<u8>>, i64);

async fn read_rows<S: Storage>(log: &RefCell<PartitionLog<S>>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let mut offset = log.borrow().log_start_offset();
    let mut scratch = Vec::new();
    loop {
        let r = read(log, offset, 16 << 10).await.expect("read");
        if r.chunks.is_empty() {
            return out;
        }
        for chunk in r.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let h = BatchHeader::parse(&chunk[at..]).expect("header");
                let batch = &chunk[at..at + h.total_len()];
                visit_records(batch, 1 << 24, &mut scratch, |_, rec| {
                    let o = rec.offset(&h);
                    if o >= offset {
                        out.push((
                            o,
                            rec.key.unwrap_or_default().to_vec(),
                            rec.value.map(<[u8]>::to_vec),
                            rec.timestamp(&h),
                        ));
                    }
                    Ok(())
                })
                .expect("records parse");
                at += h.total_len();
                offset = h.last_offset() + 1;
            }
        }
    }
}

/// The last row of each key, checking offsets strictly increase.
fn latest(rows: &[Row]) -> BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)> {
    let mut last = BTreeMap::new();
    for w in rows.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "offsets strictly increase: {} then {}",
            w[0].0,
            w[1].0
        );
    }
    for (_, k, v, ts) in rows {
        last.insert(k.clone(), (v.clone(), *ts));
    }
    last
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        puts: Vec<(u8, Option<u16>)>,
        compressed: bool,
    },
    Flush,
    Roll,
    Clean {
        force: bool,
        map_entries: usize,
    },
    Tick {
        ms: i64,
    },
    CloseReopen,
    Crash {
        power_loss: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let put = (0u8..12, prop::option::weighted(0.8, 0u16..300));
    prop_oneof![
        10 => (prop::collection::vec(put, 1..6), any::<bool>())
            .prop_map(|(puts, compressed)| Op::Put { puts, compressed }),
        4 => Just(Op::Flush),
        2 => Just(Op::Roll),
        3 => (any::<bool>(), prop_oneof![Just(4usize), Just(8), Just(1000)])
            .prop_map(|(force, map_entries)| Op::Clean { force, map_entries }),
        2 => (1i64..6_000).prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::CloseReopen),
        1 => any::<bool>().prop_map(|power_loss| Op::Crash { power_loss }),
    ]
}

fn value(k: u8, n: u16, seq: usize) -> Vec<u8> {
    let mut v = format!("{k}:{seq}:").into_bytes();
    v.resize(v.len() + n as usize, b'a' + k);
    v
}

/// The model: each key's latest value (None: deleted) and its timestamp;
/// appends not yet flushed (lost by a crash).
#[derive(Default)]
struct Model {
    latest: HashMap<Vec<u8>, (Option<Vec<u8>>, i64)>,
    pending: Vec<(Vec<u8>, Option<Vec<u8>>, i64)>,
}

impl Model {
    fn commit(&mut self) {
        for (k, v, ts) in self.pending.drain(..) {
            self.latest.insert(k, (v, ts));
        }
    }

    /// Checks what the log holds against the model: a key's last row is its
    /// latest value; a deleted key shows its tombstone or nothing.
    fn check(&self, rows: &[Row], step: usize) {
        let last = latest(rows);
        for (k, (v, _)) in &self.latest {
            match (v, last.get(k)) {
                (Some(v), Some((Some(got), _))) => {
                    assert_eq!(got, v, "step {step}: latest value of {k:?}")
                }
                (Some(_), got) => panic!("step {step}: key {k:?} lost its value: {got:?}"),
                (None, None) | (None, Some((None, _))) => {}
                (None, Some(got)) => {
                    panic!("step {step}: deleted key {k:?} came back: {got:?}")
                }
            }
        }
        for k in last.keys() {
            assert!(
                self.latest.contains_key(k),
                "step {step}: unknown key {k:?}"
            );
        }
    }
}

fn run_model(ops: Vec<Op>) {
    block_on(async {
        let cfg = compact_config();
        let mut storage = MemStorage::new();
        let mut log = open(&storage, &cfg).await.expect("open");
        let mut model = Model::default();
        let mut now = NOW;
        let mut seq = 0usize;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put { puts, compressed } => {
                    let puts: Vec<Put> = puts
                        .into_iter()
                        .map(|(k, n)| {
                            seq += 1;
                            (k, n.map(|n| value(k, n, seq)))
                        })
                        .collect();
                    let codec = if compressed {
                        Compression::Lz4
                    } else {
                        Compression::None
                    };
                    log.borrow_mut()
                        .append(&batch_of(&puts, now, codec), 0, now)
                        .expect("append");
                    for (k, v) in puts {
                        model
                            .pending
                            .push((format!("key-{k}").into_bytes(), v, now));
                    }
                }
                Op::Flush => {
                    flush(&log, now, false).await;
                    model.commit();
                }
                Op::Roll => {
                    log.borrow_mut().force_roll(now);
                    flush(&log, now, false).await;
                    model.commit();
                }
                Op::Clean { force, map_entries } => {
                    clean(&log, now, force, &small_map(map_entries), &mut NoPace)
                        .await
                        .expect("clean");
                }
                Op::Tick { ms } => now += ms,
                Op::CloseReopen => {
                    close(&log, now).await.expect("close");
                    model.commit();
                    log = open(&storage, &cfg).await.expect("reopen");
                }
                Op::Crash { power_loss } => {
                    let kind = if power_loss {
                        CrashKind::PowerLoss
                    } else {
                        CrashKind::ProcessKill
                    };
                    storage = storage.after_crash(kind);
                    model.pending.clear();
                    log = open(&storage, &cfg).await.expect("open after crash");
                }
            }
            model.check(&read_rows(&log).await, step);
        }
        // Seal everything, let every tombstone expire, clean with a map that
        // holds every key: exactly one row per live key remains, and no
        // deleted key at all.
        log.borrow_mut().force_roll(now);
        flush(&log, now, false).await;
        model.commit();
        now += RETENTION_MS + 1;
        clean(&log, now, true, &small_map(1000), &mut NoPace)
            .await
            .expect("final clean");
        let rows = read_rows(&log).await;
        model.check(&rows, usize::MAX);
        let live: BTreeMap<Vec<u8>, Vec<u8>> = model
            .latest
            .iter()
            .filter_map(|(k, (v, _))| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let got: Vec<(Vec<u8>, Vec<u8>)> = rows
            .iter()
            .map(|(_, k, v, _)| (k.clone(), v.clone().expect("no tombstone survives")))
            .collect();
        assert_eq!(got.len(), live.len(), "one row per live key: {got:?}");
        assert_eq!(
            got.into_iter().collect::<BTreeMap<_, _>>(),
            live,
            "exactly the latest values"
        );
        // And after a restart, the same.
        close(&log, now).await.expect("close");
        let log = open(&storage, &cfg).await.expect("reopen");
        model.check(&read_rows(&log).await, usize::MAX);
        assert_eq!(read_rows(&log).await.len(), live.len());
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn compaction_matches_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run_model(ops);
    }
}

#[test]
fn compaction_model_long_run() {
    // A fixed, long history: many passes, partial ones included.
    let mut ops = Vec::new();
    for i in 0..400u32 {
        let k = (i * 7 % 13) as u8;
        let v = if i % 9 == 0 {
            None
        } else {
            Some((i % 200) as u16)
        };
        ops.push(Op::Put {
            puts: vec![(k, v), ((k + 3) % 13, Some(5))],
            compressed: i % 3 == 0,
        });
        match i % 11 {
            3 => ops.push(Op::Roll),
            5 => ops.push(Op::Clean {
                force: false,
                map_entries: 6,
            }),
            7 => ops.push(Op::Tick { ms: 3_000 }),
            9 => ops.push(Op::Flush),
            _ => {}
        }
        if i % 97 == 50 {
            ops.push(Op::CloseReopen);
        }
    }
    run_model(ops);
}

/// A log with sealed segments full of overwritten keys and tombstones.
async fn setup(storage: &MemStorage, cfg: &LogConfig) -> RefCell<PartitionLog<MemStorage>> {
    let log = open(storage, cfg).await.expect("open");
    for round in 0..12u16 {
        let puts: Vec<Put> = (0..6u8)
            .map(|k| {
                let v = if (round + u16::from(k)) % 5 == 0 {
                    None
                } else {
                    Some(value(k, 40 + round, usize::from(round)))
                };
                (k, v)
            })
            .collect();
        let codec = if round % 2 == 0 {
            Compression::None
        } else {
            Compression::Zstd
        };
        log.borrow_mut()
            .append(&batch_of(&puts, NOW + i64::from(round), codec), 0, NOW)
            .expect("append");
        if round % 3 == 2 {
            log.borrow_mut().force_roll(NOW);
        }
        flush(&log, NOW, false).await;
    }
    log.borrow_mut().force_roll(NOW);
    flush(&log, NOW, false).await;
    log
}

fn crash_during_clean(kind: CrashKind, clean_at: i64, map_entries: usize) {
    block_on(async {
        // Segments are rolled by hand; a large segment.bytes lets the pass
        // merge several of them into one output.
        let cfg = LogConfig {
            segment_bytes: 64 << 10,
            ..compact_config()
        };
        let reference = MemStorage::new();
        let log = setup(&reference, &cfg).await;
        // (non-empty segments, bytes): an empty active segment without a
        // file does not survive a reopen, and does not matter.
        let shape = |l: &PartitionLog<MemStorage>| {
            (
                l.segment_sizes().iter().filter(|&&s| s > 0).count(),
                l.size_bytes(),
            )
        };
        let shape_before = shape(&log.borrow());
        let before = latest(&read_rows(&log).await);
        let rows_before = read_rows(&log).await.len();
        reference.count_dir_ops(true);
        let start_ops = reference.ops();
        let stats = clean(&log, clean_at, true, &small_map(map_entries), &mut NoPace)
            .await
            .expect("clean")
            .expect("a pass ran");
        let pass_ops = reference.ops() - start_ops;
        assert!(
            pass_ops > 10,
            "the pass does I/O: {pass_ops} ops, {stats:?}"
        );
        let after = latest(&read_rows(&log).await);
        let shape_after = shape(&log.borrow());
        assert_ne!(shape_after, shape_before, "the pass rewrote segments");
        assert!(
            read_rows(&log).await.len() < rows_before,
            "the pass removed rows"
        );
        for (k, v) in &before {
            let got = after.get(k);
            assert!(
                got == Some(v) || (v.0.is_none() && got.is_none()),
                "the clean run keeps {k:?}: {v:?} -> {got:?}"
            );
        }
        for crash in 1..=pass_ops {
            let storage = MemStorage::new();
            let log = setup(&storage, &cfg).await;
            storage.count_dir_ops(true);
            storage.crash_at_op(storage.ops() + crash);
            let _ = clean(&log, clean_at, true, &small_map(map_entries), &mut NoPace).await;
            assert!(storage.has_crashed(), "crash point {crash} reached");
            drop(log);
            let survivor = storage.after_crash(kind);
            let log = open(&survivor, &cfg)
                .await
                .unwrap_or_else(|e| panic!("reopen after crash {crash}: {e}"));
            let got = latest(&read_rows(&log).await);
            for (k, v) in &before {
                let g = got.get(k);
                assert!(
                    g == Some(v) || (v.0.is_none() && g.is_none()),
                    "crash at step {crash}/{pass_ops} ({kind:?}): {k:?} was {v:?}, now {g:?}"
                );
            }
            // The old segments or the new ones, never a mix.
            let s = shape(&log.borrow());
            assert!(
                s == shape_before || s == shape_after,
                "crash at step {crash}/{pass_ops} ({kind:?}): segments {s:?}, \
                 before {shape_before:?}, after {shape_after:?}"
            );
            // The log works on: cleaning again and appending.
            clean(&log, clean_at, true, &small_map(map_entries), &mut NoPace)
                .await
                .unwrap_or_else(|e| panic!("clean after crash {crash}: {e}"));
            let got = latest(&read_rows(&log).await);
            for (k, v) in &before {
                let g = got.get(k);
                assert!(g == Some(v) || (v.0.is_none() && g.is_none()));
            }
            let end = log.borrow().log_end_offset();
            let a = log
                .borrow_mut()
                .append(
                    &batch_of(&[(1, Some(b"x".to_vec()))], NOW, Compression::None),
                    0,
                    NOW,
                )
                .expect("append after recovery");
            assert_eq!(a.base_offset, end);
        }
    });
}

#[test]
fn crash_at_every_step_of_a_pass_process_kill() {
    crash_during_clean(CrashKind::ProcessKill, NOW, 1000);
}

#[test]
fn crash_at_every_step_of_a_pass_power_loss() {
    crash_during_clean(CrashKind::PowerLoss, NOW, 1000);
}

#[test]
fn crash_at_every_step_of_a_partial_pass_dropping_tombstones() {
    crash_during_clean(CrashKind::PowerLoss, NOW + RETENTION_MS * 2, 5);
}

#[test]
fn keyless_records_are_refused_on_compacted_logs() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &compact_config()).await.expect("open");
        for codec in [Compression::None, Compression::Gzip] {
            let mut b = BatchBuilder::new(codec);
            b.push(NOW, Some(b"k"), Some(b"v"), &[]);
            b.push(NOW, None, Some(b"v"), &[]);
            let err = log
                .borrow_mut()
                .append(&b.build(), 0, NOW)
                .expect_err("a keyless record is refused");
            match err {
                engine::AppendError::InvalidBatch(e) => assert_eq!(
                    e.kind(),
                    sluice_records::BatchErrorKind::InvalidRecord,
                    "{codec:?}"
                ),
                other => panic!("{other}"),
            }
        }
    });
}

#[test]
fn dirty_ratio_and_lags_decide_when_a_log_is_due() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 1_000,
            ..compact_config()
        };
        let log = open(&storage, &cfg).await.expect("open");
        let puts: Vec<Put> = (0..4u8).map(|k| (k, Some(vec![k; 100]))).collect();
        log.borrow_mut()
            .append(&batch_of(&puts, NOW, Compression::None), 0, NOW)
            .expect("append");
        log.borrow_mut().force_roll(NOW);
        flush(&log, NOW, false).await;
        let d = log.borrow().dirtiness(NOW).expect("compacted");
        assert!(!d.due, "younger than min.compaction.lag.ms: {d:?}");
        assert_eq!(d.dirty_bytes, 0);
        let d = log.borrow().dirtiness(NOW + 1_001).expect("compacted");
        assert!(d.due && d.ratio == 1.0, "{d:?}");
        let stats = clean(&log, NOW + 1_001, false, &small_map(100), &mut NoPace)
            .await
            .expect("clean");
        assert!(stats.is_some());
        let d = log.borrow().dirtiness(NOW + 1_001).expect("compacted");
        assert!(!d.due && d.dirty_bytes == 0 && d.clean_bytes > 0, "{d:?}");
        // max.compaction.lag.ms makes a slightly dirty log due.
        log.borrow_mut().set_config(LogConfig {
            max_compaction_lag_ms: 5_000,
            min_compaction_lag_ms: 0,
            ..cfg.clone()
        });
        log.borrow_mut()
            .append(
                &batch_of(&[(0, Some(vec![1]))], NOW + 2_000, Compression::None),
                0,
                NOW + 2_000,
            )
            .expect("append");
        log.borrow_mut().force_roll(NOW + 2_000);
        flush(&log, NOW + 2_000, false).await;
        let d = log.borrow().dirtiness(NOW + 3_000).expect("compacted");
        assert!(!d.due && d.ratio < 0.5, "{d:?}");
        let d = log.borrow().dirtiness(NOW + 7_001).expect("compacted");
        assert!(d.due && d.lag_ms > 5_000, "{d:?}");
        // A delete-only log is not the cleaner's.
        log.borrow_mut().set_config(LogConfig {
            cleanup_policy: CleanupPolicy::DELETE,
            ..cfg
        });
        assert!(log.borrow().dirtiness(NOW).is_none());
    });
}
