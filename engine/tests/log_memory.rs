//! The partition log on the in-memory, fault-injecting disk.

mod common;

use std::cell::RefCell;

use bytes::Bytes;
use common::*;
use engine::log::{delete_dropped_files, flush, read, PartitionLog};
use engine::recovery::close;
use engine::storage::memory::{CrashKind, MemStorage};
use engine::{AppendError, FlushPolicy, LogConfig, LogError};
use futures::executor::block_on;
use futures::FutureExt;
use sluice_records::{BatchBuilder, Compression};

fn append(log: &RefCell<PartitionLog<MemStorage>>, id: u32, n: usize) -> engine::Appended {
    log.borrow_mut()
        .append(&batch(id, n, NOW), 0, NOW)
        .expect("append")
}

#[test]
fn append_flush_read_reopen() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        let mut expected = Vec::new();
        for id in 0..40u32 {
            let a = append(&log, id, 5);
            assert_eq!(a.base_offset, i64::from(id) * 5, "offsets are dense");
            for i in 0..5 {
                expected.push((a.base_offset + i as i64, value_of(id, i)));
            }
            let waiter = log.borrow_mut().wait_visible(a.last_offset + 1);
            let mut waiter = Box::pin(waiter);
            assert!(
                waiter.as_mut().now_or_never().is_none(),
                "not visible before the flush"
            );
            assert_eq!(
                read_all(&log, 0).await.expect("read").len(),
                expected.len() - 5,
                "readers see only flushed data"
            );
            assert!(flush(&log, NOW, false).await);
            waiter.await.expect("visible after the flush");
        }
        assert!(
            log.borrow().segment_count() >= 3,
            "small segments rolled: {}",
            log.borrow().segment_count()
        );
        assert_eq!(read_all(&log, 0).await.expect("read"), expected);
        // From the middle of a batch: the whole batch comes back, records before are skipped.
        assert_eq!(
            read_all(&log, 57).await.expect("read"),
            expected[57..].to_vec()
        );

        // Reopen without a clean close: the active segment is scanned.
        drop(log);
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().log_end_offset(), 200);
        assert_eq!(read_all(&log, 0).await.expect("read"), expected);
        let a = append(&log, 99, 2);
        assert_eq!(a.base_offset, 200, "offsets continue after reopen");
        flush(&log, NOW, false).await;
        close(&log, NOW).await.expect("close");
        drop(log);
        // After a clean close the scan is skipped and everything is still there.
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().log_end_offset(), 202);
        assert_eq!(read_all(&log, 195).await.expect("read").len(), 7);
    });
}

#[test]
fn out_of_range_reads_are_refused() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &LogConfig::default()).await.expect("open");
        append(&log, 1, 3);
        flush(&log, NOW, false).await;
        assert!(matches!(
            read(&log, 4, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            read(&log, -1, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(read(&log, 3, 100)
            .await
            .expect("at the end")
            .chunks
            .is_empty());
    });
}

#[test]
fn invalid_batches_leave_the_log_untouched() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            max_message_bytes: 2000,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        let good = batch(1, 3, NOW);
        let mut bad_crc = good.to_vec();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0x40;
        assert!(matches!(
            log.borrow_mut().append(&bad_crc, 0, NOW),
            Err(AppendError::InvalidBatch(_))
        ));
        assert!(matches!(
            log.borrow_mut().append(&good[..good.len() - 1], 0, NOW),
            Err(AppendError::InvalidBatch(_))
        ));
        assert!(matches!(
            log.borrow_mut().append(&[], 0, NOW),
            Err(AppendError::InvalidBatch(_))
        ));
        let big = batch(10, 40, NOW);
        assert!(big.len() > 2000);
        assert!(matches!(
            log.borrow_mut().append(&big, 0, NOW),
            Err(AppendError::TooLarge { .. })
        ));
        assert_eq!(log.borrow().log_end_offset(), 0);
        assert!(!flush(&log, NOW, false).await, "nothing to flush");
        assert_eq!(append(&log, 3, 2).base_offset, 0);
    });
}

#[test]
fn idempotent_retries_get_their_original_offsets() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &LogConfig::default()).await.expect("open");
        let mk = |seq: i32, n: usize| {
            let mut b = sluice_records::BatchBuilder::new(sluice_records::Compression::None);
            b.producer(42, 0, seq);
            for i in 0..n {
                b.push(NOW, Some(b"k"), Some(format!("{seq}-{i}").as_bytes()), &[]);
            }
            b.build()
        };
        let a = log.borrow_mut().append(&mk(0, 3), 0, NOW).expect("first");
        let b = log.borrow_mut().append(&mk(3, 2), 0, NOW).expect("second");
        let retry = log.borrow_mut().append(&mk(0, 3), 0, NOW).expect("retry");
        assert!(retry.duplicate);
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (a.base_offset, a.last_offset)
        );
        assert!(matches!(
            log.borrow_mut().append(&mk(9, 1), 0, NOW),
            Err(AppendError::OutOfOrderSequence { .. })
        ));
        flush(&log, NOW, false).await;
        // The state survives a crash: rebuilt from the log.
        drop(log);
        let log = open(
            &storage.after_crash(CrashKind::ProcessKill),
            &LogConfig::default(),
        )
        .await
        .expect("reopen");
        let retry = log
            .borrow_mut()
            .append(&mk(3, 2), 0, NOW)
            .expect("retry after restart");
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, b.base_offset);
        assert_eq!(log.borrow().log_end_offset(), 5);
    });
}

/// An unclean restart reads the active segment, not the whole log: the
/// producer snapshot each roll writes lets recovery skip the sealed
/// segments (only their small index files are read), and idempotence still
/// holds across the restart.
#[test]
fn an_unclean_restart_reads_only_the_active_segment() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        let mk = |seq: i32| {
            let mut b = sluice_records::BatchBuilder::new(sluice_records::Compression::None);
            b.producer(42, 0, seq);
            for i in 0..10 {
                b.push(
                    NOW,
                    Some(b"k"),
                    Some(format!("{seq}-{i}-{}", "x".repeat(40)).as_bytes()),
                    &[],
                );
            }
            b.build()
        };
        let mut last = None;
        for n in 0..80 {
            last = Some(
                log.borrow_mut()
                    .append(&mk(n * 10), 0, NOW)
                    .expect("append"),
            );
            flush(&log, NOW, false).await;
        }
        let last = last.expect("appended");
        let segments = log.borrow().segment_count();
        assert!(segments >= 6, "{segments} segments");
        drop(log);

        let after = storage.after_crash(CrashKind::ProcessKill);
        let bases: Vec<i64> = (0..=last.last_offset)
            .filter(|o| after.exists(&path_of(&format!("{o:020}.log"))))
            .collect();
        assert_eq!(bases.len(), segments);
        let log = open(&after, &cfg).await.expect("reopen");
        // Sealed segments: only their index files are read, never their data.
        for base in &bases[..bases.len() - 1] {
            let read = after.bytes_read(&path_of(&format!("{base:020}.log")));
            assert_eq!(
                read, 0,
                "recovery read {read} bytes of sealed segment {base}"
            );
        }
        let active = path_of(&format!("{:020}.log", bases[bases.len() - 1]));
        assert!(
            after.bytes_read(&active) > 0,
            "the active segment is scanned"
        );
        let retry = log
            .borrow_mut()
            .append(&mk(79 * 10), 0, NOW)
            .expect("retry after restart");
        assert!(retry.duplicate, "the producer state came back");
        assert_eq!(retry.base_offset, last.base_offset);
    });
}

/// The scripted workload of the crash tests: appends with a flush job
/// prepared after each (several in flight at once), all run and then a final
/// flush every few batches, segment rolls. Returns the ids of acknowledged batches with their
/// base offsets. Stops at the first failure (the crash).
async fn workload(
    storage: &MemStorage,
    cfg: &LogConfig,
    make: fn(u32) -> Bytes,
    acked: &mut Vec<(u32, i64)>,
) {
    let Ok(log) = open(storage, cfg).await else {
        return;
    };
    let mut appended = Vec::new();
    let mut jobs = Vec::new();
    for id in 0..24u32 {
        let Ok(a) = log.borrow_mut().append(&make(id), 0, NOW) else {
            return;
        };
        appended.push((id, a.base_offset, a.last_offset));
        jobs.extend(log.borrow_mut().prepare_flush(NOW, false));
        if id % 3 == 2 {
            run_jobs_newest_first(&log, storage, std::mem::take(&mut jobs)).await;
            flush(&log, NOW, false).await;
            let visible = log.borrow().visible_offset();
            acked.extend(
                appended
                    .iter()
                    .filter(|&&(_, _, last)| last < visible)
                    .map(|&(id, base, _)| (id, base)),
            );
            appended.retain(|&(_, _, last)| last >= visible);
            if storage.has_crashed() {
                return;
            }
        }
    }
    let _ = close(&log, NOW).await;
}

fn small_batch(id: u32) -> Bytes {
    batch(id, 1 + id as usize % 4, NOW)
}

/// About 200 KiB: three of them make a flush of more than one write piece.
fn big_batch(id: u32) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(NOW, Some(b"k"), Some(&value_of(id, 0)), &[]);
    let filler = vec![b'f'; 50 << 10];
    for _ in 0..4 {
        b.push(NOW, None, Some(&filler), &[]);
    }
    b.build()
}

fn crash_everywhere(cfg: LogConfig, kind: CrashKind) {
    crash_everywhere_with(cfg, kind, small_batch);
}

fn crash_everywhere_with(cfg: LogConfig, kind: CrashKind, make: fn(u32) -> Bytes) {
    block_on(async {
        let clean = MemStorage::new();
        let mut all = Vec::new();
        workload(&clean, &cfg, make, &mut all).await;
        let total_ops = clean.ops();
        assert!(
            total_ops > 20 && all.len() == 24,
            "the workload runs clean: {total_ops} ops"
        );
        for crash_at in 1..=total_ops {
            let storage = MemStorage::new();
            storage.crash_at_op(crash_at);
            let mut acked = Vec::new();
            workload(&storage, &cfg, make, &mut acked).await;
            let survivor = storage.after_crash(kind);
            let log = open(&survivor, &cfg)
                .await
                .unwrap_or_else(|e| panic!("reopen after crash at op {crash_at}: {e}"));
            let records = read_all(&log, 0)
                .await
                .unwrap_or_else(|e| panic!("read after crash at op {crash_at}: {e}"));
            for (i, (offset, _)) in records.iter().enumerate() {
                assert_eq!(
                    *offset, i as i64,
                    "offsets dense after crash at op {crash_at}"
                );
            }
            for &(id, base) in &acked {
                let got = records.get(base as usize).unwrap_or_else(|| {
                    panic!("acked batch {id} at {base} lost (crash at op {crash_at})")
                });
                assert_eq!(
                    got.1,
                    value_of(id, 0),
                    "acked batch {id} intact (crash at op {crash_at})"
                );
            }
            let end = log.borrow().log_end_offset();
            assert_eq!(
                end,
                records.len() as i64,
                "crash at op {crash_at} of {total_ops}, {kind:?}"
            );
            let a = log
                .borrow_mut()
                .append(&batch(999, 2, NOW), 0, NOW)
                .expect("append after recovery");
            assert_eq!(
                a.base_offset, end,
                "offsets continue densely (crash at op {crash_at})"
            );
            flush(&log, NOW, false).await;
            assert!(!log.borrow().is_poisoned());
            assert_eq!(read_all(&log, end).await.expect("read").len(), 2);
        }
    });
}

#[test]
fn crash_at_every_io_point_loses_no_acked_append_process_kill() {
    crash_everywhere(
        LogConfig {
            flush: FlushPolicy::Never,
            ..small_segments()
        },
        CrashKind::ProcessKill,
    );
}

#[test]
fn crash_at_every_io_point_loses_no_acked_append_power_loss() {
    crash_everywhere(small_segments(), CrashKind::PowerLoss);
}

/// Flushes of several write pieces (all in flight together): a crash between
/// or inside pieces loses nothing acknowledged, under both crash kinds.
#[test]
fn crash_at_every_io_point_of_multi_piece_flushes() {
    let big = |flush| LogConfig {
        flush,
        segment_bytes: 4 << 20,
        preallocate_bytes: 1 << 20,
        ..LogConfig::default()
    };
    assert!(3 * big_batch(0).len() as u64 > engine::log::WRITE_PIECE_BYTES);
    crash_everywhere_with(big(FlushPolicy::Never), CrashKind::ProcessKill, big_batch);
    crash_everywhere_with(big(FlushPolicy::Always), CrashKind::PowerLoss, big_batch);
}

#[test]
fn failed_fdatasync_poisons_the_log() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &LogConfig::default()).await.expect("open");
        append(&log, 1, 3);
        flush(&log, NOW, false).await;
        storage.fail_fsync(true);
        let a = append(&log, 2, 3);
        let waiter = log.borrow_mut().wait_visible(a.last_offset + 1);
        flush(&log, NOW, false).await;
        assert!(
            matches!(waiter.await, Err(LogError::Poisoned(_))),
            "the append is failed, not acknowledged"
        );
        assert!(log.borrow().is_poisoned());
        let err = log
            .borrow_mut()
            .append(&batch(3, 1, NOW), 0, NOW)
            .expect_err("refused");
        assert!(matches!(err, AppendError::Poisoned(_)), "{err}");
        assert!(err.to_string().contains("poisoned"));
        storage.fail_fsync(false);
        assert!(
            !flush(&log, NOW, false).await,
            "a poisoned log does not retry the sync"
        );
        // Durable data is still served.
        assert_eq!(
            read_all(&log, 0).await.expect("read"),
            (0..3)
                .map(|i| (i as i64, value_of(1, i)))
                .collect::<Vec<_>>()
        );
    });
}

#[test]
fn full_disk_fails_appends_and_recovers() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            preallocate_bytes: 0,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 1, 3);
        flush(&log, NOW, false).await;
        storage.set_capacity(Some(4096));
        let mut waiters = Vec::new();
        for id in 10..20 {
            let a = append(&log, id, 20);
            waiters.push(log.borrow_mut().wait_visible(a.last_offset + 1));
        }
        flush(&log, NOW, false).await;
        for w in waiters {
            let err = w.await.expect_err("no space");
            assert!(err.is_no_space(), "{err}");
        }
        assert!(!log.borrow().is_poisoned(), "a full disk does not poison");
        assert_eq!(
            log.borrow().log_end_offset(),
            3,
            "unwritten appends were taken back"
        );
        assert_eq!(read_all(&log, 0).await.expect("read").len(), 3);
        storage.set_capacity(None);
        let a = append(&log, 30, 2);
        assert_eq!(a.base_offset, 3);
        let w = log.borrow_mut().wait_visible(a.last_offset + 1);
        flush(&log, NOW, false).await;
        w.await.expect("appends work again");
        drop(log);
        let log = open(&storage.after_crash(CrashKind::PowerLoss), &cfg)
            .await
            .expect("reopen");
        let records = read_all(&log, 0).await.expect("read");
        assert_eq!(records.len(), 5);
        assert_eq!(records[3].1, value_of(30, 0));
    });
}

#[test]
fn flipped_bit_in_a_sealed_segment_is_detected_on_read() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        for id in 0..20 {
            append(&log, id, 4);
            flush(&log, NOW, false).await;
        }
        close(&log, NOW).await.expect("close");
        drop(log);
        let first = path_of("00000000000000000000.log");
        assert!(storage.flip_bit(&first, 200, 3));
        // The tail cache is cold after reopen, so the read goes to disk.
        let log = open(&storage, &cfg).await.expect("reopen");
        let err = read(&log, 0, 1 << 20)
            .await
            .expect_err("corruption is reported");
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
    });
}

#[test]
fn garbage_active_segment_is_truncated_and_foreign_files_ignored() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig::default();
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 1, 3);
        flush(&log, NOW, false).await;
        drop(log);
        let active = path_of("00000000000000000000.log");
        let len = storage.file_len(&active).expect("exists");
        let mut content = vec![0u8; len];
        let original = engine::storage::read_file(&storage, &active)
            .await
            .expect("read")
            .expect("some");
        content[..original.len()].copy_from_slice(&original);
        let used = read_all_len(&original);
        content.truncate(used);
        content.extend_from_slice(b"this is not a record batch, just garbage bytes from somewhere");
        storage.put_file(&active, &content);
        storage.put_file(&path_of("notes.txt"), b"hello");
        let log = open(&storage, &cfg)
            .await
            .expect("reopen truncates the garbage");
        assert_eq!(read_all(&log, 0).await.expect("read").len(), 3);
        assert_eq!(
            storage.file_len(&active),
            Some(used),
            "the file was trimmed to the last good batch"
        );
    });
}

fn read_all_len(data: &[u8]) -> usize {
    let mut it = sluice_records::BatchIter::new(data);
    for r in it.by_ref() {
        if r.is_err() {
            break;
        }
    }
    it.position()
}

#[test]
fn retention_by_size_and_delete_records() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            retention_bytes: 6000,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        for id in 0..30 {
            append(&log, id, 3);
            flush(&log, NOW, false).await;
        }
        flush(&log, NOW, false).await;
        let before = log.borrow().segment_count();
        let removed = log.borrow_mut().plan_retention(NOW);
        assert!(removed > 0 && log.borrow().segment_count() == before - removed);
        assert!(log.borrow().size_bytes() < 6000 + 2048);
        let start = log.borrow().log_start_offset();
        assert!(start > 0);
        assert!(delete_dropped_files(&log).await.expect("delete") >= removed);
        assert!(!storage.exists(&path_of("00000000000000000000.log")));
        assert!(matches!(
            read(&log, 0, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            read_all(&log, start)
                .await
                .expect("read")
                .first()
                .map(|r| r.0),
            Some(start)
        );
        // DeleteRecords moves the start inside a segment; reads below it are refused.
        let target = start + 4;
        log.borrow_mut()
            .advance_log_start(target)
            .expect("delete records");
        engine::recovery::checkpoint_log_start(&log)
            .await
            .expect("checkpoint");
        assert!(matches!(
            read(&log, start, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        drop(log);
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(
            log.borrow().log_start_offset(),
            target,
            "the start offset survives a restart"
        );
    });
}

#[test]
fn retention_by_time_keeps_the_active_segment() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            retention_ms: 1000,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        for id in 0..10 {
            append(&log, id, 3);
            flush(&log, NOW, false).await;
        }
        flush(&log, NOW, false).await;
        assert_eq!(
            log.borrow_mut().plan_retention(NOW + 500),
            0,
            "nothing old enough yet"
        );
        let n = log.borrow().segment_count();
        assert_eq!(log.borrow_mut().plan_retention(NOW + 5000), n - 1);
        assert_eq!(log.borrow().segment_count(), 1, "the active segment stays");
        assert_eq!(
            log.borrow().log_start_offset(),
            log.borrow().segments_first_base()
        );
    });
}

#[test]
fn retention_below_a_bound_keeps_every_segment_that_reaches_it() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            retention_ms: 1000,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        for id in 0..30 {
            append(&log, id, 3);
            flush(&log, NOW, false).await;
        }
        let bases = log.borrow().segment_bases();
        assert!(bases.len() >= 3, "{bases:?}");
        // A bound inside the second segment: only the first may go, as its
        // every offset lies below the bound.
        let bound = bases[2] - 1;
        assert_eq!(log.borrow_mut().plan_retention_below(NOW + 5000, bound), 1);
        assert_eq!(log.borrow().log_start_offset(), bases[1]);
        // Nothing below the log start: nothing more goes.
        assert_eq!(
            log.borrow_mut().plan_retention_below(NOW + 5000, bases[1]),
            0
        );
        // At the bound exactly: the second segment ends there, so it goes.
        assert_eq!(
            log.borrow_mut().plan_retention_below(NOW + 5000, bases[2]),
            1
        );
        assert_eq!(log.borrow().log_start_offset(), bases[2]);
    });
}

/// Regression (found by the model test): retention deleted every segment file
/// while the active segment had never been written; a reopen restarted offsets at 0.
#[test]
fn offsets_survive_retention_of_every_written_segment() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            retention_bytes: 0,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        for id in 0..10 {
            append(&log, id, 3);
            flush(&log, NOW, false).await;
        }
        log.borrow_mut().force_roll(NOW);
        flush(&log, NOW, false).await;
        let end = log.borrow().log_end_offset();
        log.borrow_mut().plan_retention(NOW);
        delete_dropped_files(&log).await.expect("delete");
        assert_eq!(log.borrow().log_start_offset(), end);
        drop(log);
        let log = open(&storage.after_crash(CrashKind::ProcessKill), &cfg)
            .await
            .expect("reopen");
        assert_eq!(log.borrow().log_start_offset(), end);
        assert_eq!(
            append(&log, 20, 1).base_offset,
            end,
            "offsets are not reused"
        );
    });
}

/// Regression (found by the model test): a power loss took back data past a
/// checkpointed log start; the stale checkpoint came back once offsets grew past it.
#[test]
fn a_log_start_checkpoint_past_the_recovered_end_is_rewritten() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 1, 4);
        flush(&log, NOW, false).await;
        log.borrow_mut()
            .advance_log_start(2)
            .expect("delete records");
        engine::recovery::checkpoint_log_start(&log)
            .await
            .expect("checkpoint");
        drop(log);
        let storage = storage.after_crash(CrashKind::PowerLoss);
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().log_end_offset(), 0, "nothing was synced");
        assert_eq!(log.borrow().log_start_offset(), 0);
        append(&log, 2, 5);
        flush(&log, NOW, false).await;
        drop(log);
        let log = open(&storage.after_crash(CrashKind::ProcessKill), &cfg)
            .await
            .expect("reopen");
        assert_eq!(log.borrow().log_start_offset(), 0);
        assert_eq!(read_all(&log, 0).await.expect("read").len(), 5);
    });
}

/// Regression: the clean-shutdown marker was trusted whenever the file was at
/// least as long as it said, so data written after a clean close (preallocated
/// files are longer anyway) was silently cut off at the next open.
#[test]
fn data_written_after_the_clean_marker_forces_a_scan() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig::default();
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 1, 3);
        flush(&log, NOW, false).await;
        close(&log, NOW).await.expect("close");
        assert!(
            matches!(
                log.borrow_mut().append(&batch(2, 1, NOW), 0, NOW),
                Err(AppendError::Closed)
            ),
            "a closed log refuses appends"
        );
        drop(log);
        // A batch lands after the marker was written (as a write racing the close would).
        let active = path_of("00000000000000000000.log");
        let mut content = engine::storage::read_file(&storage, &active)
            .await
            .expect("read")
            .expect("exists")
            .to_vec();
        let mut extra = batch(7, 2, NOW).to_vec();
        sluice_records::set_base_offset(&mut extra, 3).expect("valid batch");
        content.extend_from_slice(&extra);
        storage.put_file(&active, &content);
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(
            log.borrow().log_end_offset(),
            5,
            "the scan found the batch past the marker"
        );
        assert_eq!(read_all(&log, 3).await.expect("read").len(), 2);
    });
}

/// Regression: a crash inside the flush that seals a rolled segment left the
/// next (empty) segment in place, so the log end jumped past offsets no batch
/// held and a consumer there read nothing forever.
#[test]
fn an_unfinished_seal_drops_the_later_segments_on_reopen() {
    block_on(async {
        let cfg = LogConfig {
            flush: FlushPolicy::Never,
            segment_bytes: 1 << 20,
            preallocate_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let storage = MemStorage::new();
        let log = open(&storage, &cfg).await.expect("open");
        for id in 0..2 {
            log.borrow_mut()
                .append(&big_batch(id), 0, NOW)
                .expect("append");
        }
        flush(&log, NOW, false).await;
        let durable_end = log.borrow().visible_offset();
        for id in 2..4 {
            log.borrow_mut()
                .append(&big_batch(id), 0, NOW)
                .expect("append");
        }
        log.borrow_mut().force_roll(NOW);
        log.borrow_mut()
            .append(&big_batch(4), 0, NOW)
            .expect("append");
        // The seal flush's first write is torn, then the process dies.
        storage.crash_at_op(storage.ops() + 1);
        flush(&log, NOW, false).await;
        assert!(storage.has_crashed());
        let survivor = storage.after_crash(CrashKind::ProcessKill);
        let log = open(&survivor, &cfg).await.expect("reopen");
        let records = read_all(&log, 0).await.expect("read");
        let end = log.borrow().log_end_offset();
        assert_eq!(end, records.len() as i64, "no offsets without batches");
        assert!(end >= durable_end);
        assert_eq!(log.borrow().segment_count(), 1);
        let a = log
            .borrow_mut()
            .append(&batch(999, 2, NOW), 0, NOW)
            .expect("append after recovery");
        assert_eq!(a.base_offset, end);
        flush(&log, NOW, false).await;
        assert_eq!(read_all(&log, end).await.expect("read").len(), 2);
    });
}

/// Reads return chunks the fetch path passes to the socket as they are: the
/// tail cache one per batch (each its stored allocation), a disk read one per
/// read buffer however many batches it holds, never a per-batch slice list.
#[test]
fn reads_return_whole_batch_chunks_adjacent_disk_batches_in_one() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        let batches: Vec<Bytes> = (0..20u32)
            .map(|id| {
                let b = batch(id, 2, NOW);
                log.borrow_mut().append(&b, 0, NOW).expect("append");
                b
            })
            .collect();
        flush(&log, NOW, false).await;
        let cached = read(&log, 0, 1 << 20).await.expect("cached read");
        assert_eq!(
            cached.chunks.len(),
            batches.len(),
            "one chunk per cached batch"
        );
        assert_eq!(cached.last_offset(), Some(39));
        let stored: Vec<u8> = cached.chunks.iter().flat_map(|c| c.to_vec()).collect();
        close(&log, NOW).await.expect("close");

        // No cache: the reads below go to the disk.
        let log = reopen_cold(&storage, &cfg).await;
        let cold = read(&log, 0, 1 << 20).await.expect("disk read");
        assert_eq!(
            cold.chunks.len(),
            1,
            "adjacent batches of one read share a chunk"
        );
        assert_eq!(&cold.chunks[0][..], &stored[..]);
        assert_eq!(cold.last_offset(), Some(39));
        // From the middle (offset 10 is in the sixth batch): the chunk starts
        // at that batch's boundary.
        let skipped: usize = cached.chunks[..5].iter().map(Bytes::len).sum();
        let mid = read(&log, 10, 1 << 20).await.expect("disk read");
        assert_eq!(mid.chunks.len(), 1);
        assert_eq!(&mid.chunks[0][..], &stored[skipped..]);
        // A byte limit still ends the read at a batch boundary.
        let limit = cached.chunks[5].len() + cached.chunks[6].len();
        let part = read(&log, 10, limit).await.expect("disk read");
        assert_eq!(part.len_bytes(), limit);
        assert_eq!(part.last_offset(), Some(13));
    });
}

/// Appends `batches` batches of `records` records to a new log, flushes and
/// closes it, and reopens it with no tail cache: every read goes to disk.
async fn cold_log(
    storage: &MemStorage,
    cfg: &LogConfig,
    batches: u32,
    records: usize,
) -> RefCell<PartitionLog<MemStorage>> {
    let log = open(storage, cfg).await.expect("open");
    for id in 0..batches {
        append(&log, id, records);
    }
    flush(&log, NOW, false).await;
    close(&log, NOW).await.expect("close");
    reopen_cold(storage, cfg).await
}

/// Opens the log in `storage` with no tail cache.
async fn reopen_cold(storage: &MemStorage, cfg: &LogConfig) -> RefCell<PartitionLog<MemStorage>> {
    engine::recovery::open(
        storage.clone(),
        dir(),
        cfg.clone(),
        engine::CacheBudget::new(0),
        NOW,
    )
    .await
    .map(RefCell::new)
    .expect("reopen")
}

/// Every record value from `offset` to the end, read in fetches of `fetch` bytes.
async fn values_from(
    log: &RefCell<PartitionLog<MemStorage>>,
    offset: i64,
    fetch: usize,
) -> Vec<Vec<u8>> {
    let mut offset = offset;
    let mut values = Vec::new();
    loop {
        let r = read(log, offset, fetch).await.expect("read");
        let Some(last) = r.last_offset() else { break };
        for c in &r.chunks {
            for item in sluice_records::BatchIter::new(c) {
                let (_, range) = item.expect("whole batches");
                let (_, records) =
                    sluice_records::RecordIter::from_batch(&c[range]).expect("batch");
                values.extend(records.map(|r| r.expect("record").value.unwrap().to_vec()));
            }
        }
        offset = last + 1;
    }
    values
}

/// Cold reads go through the read-ahead (each read issues the next): a whole
/// log read in small fetches matches what was appended, and after a truncation
/// and new appends no bytes read ahead from before the cut are served.
#[test]
fn cold_reads_through_the_read_ahead_are_exact_and_truncation_drops_it() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let log = cold_log(&storage, &cfg, 60, 3).await;
        let expect = |id: u32| (0..3).map(move |i| value_of(id, i));
        let values = values_from(&log, 0, 2 << 10).await;
        assert_eq!(values, (0..60).flat_map(expect).collect::<Vec<_>>());

        // Read the first part (a read-ahead is now in flight past it), cut
        // there, append other batches, read on.
        let r = read(&log, 0, 2 << 10).await.expect("read");
        let cut = r.last_offset().expect("batches") + 1;
        engine::log::truncate_to(&log, cut).await.expect("truncate");
        for id in 100..110u32 {
            append(&log, id, 3);
        }
        flush(&log, NOW, false).await;
        let records = read_all(&log, cut).await.expect("read after the cut");
        let got: Vec<Vec<u8>> = records.into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, (100..110).flat_map(expect).collect::<Vec<_>>());
    });
}

/// A log larger than two read-aheads, read on in fetches smaller and larger
/// than a read-ahead (and from the start again, a seek back), with one
/// segment and with segments of a few read-aheads: every record comes back
/// once, in order (the reader goes from the current read-ahead to the next
/// one issued before it ran out, and the batch cut at a read-ahead's end is
/// read again whole).
#[test]
fn long_cold_reads_chain_read_aheads_exactly() {
    block_on(async {
        for segment_bytes in [1u64 << 30, 3 << 20] {
            let storage = MemStorage::new();
            let cfg = LogConfig {
                flush: FlushPolicy::Never,
                segment_bytes,
                ..LogConfig::default()
            };
            let batches = 240u32;
            let log = cold_log(&storage, &cfg, batches, 400).await;
            assert!(
                log.borrow().size_bytes() > 2 * engine::log::READ_AHEAD_BYTES as u64,
                "the log spans more than two read-aheads: {} bytes",
                log.borrow().size_bytes()
            );
            let expected: Vec<Vec<u8>> = (0..batches)
                .flat_map(|id| (0..400).map(move |i| value_of(id, i)))
                .collect();
            for fetch in [1 << 20, 700 << 10, 5 << 20] {
                let values = values_from(&log, 0, fetch).await;
                assert!(
                    values == expected,
                    "segments of {segment_bytes} bytes, fetches of {fetch}: {} values read, {} expected",
                    values.len(),
                    expected.len()
                );
            }
        }
    });
}

/// Runs jobs prepared one after another, polled newest first: each must wait
/// for its predecessor where it rewrites that one's last block, and be applied
/// after it.
async fn run_jobs_newest_first(
    log: &RefCell<PartitionLog<MemStorage>>,
    storage: &MemStorage,
    jobs: Vec<engine::log::FlushJob<engine::storage::memory::MemFile>>,
) {
    let runs = jobs.into_iter().rev().map(|job| async move {
        let end = job.end_offset();
        let outcome = job.execute(storage).await;
        outcome.turn().await;
        log.borrow_mut().complete_flush(end, outcome, NOW);
    });
    futures::future::join_all(runs).await;
}

#[test]
fn several_flush_jobs_in_flight_apply_in_order() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            ..small_segments()
        };
        let log = open(&storage, &cfg).await.expect("open");
        // The first flush creates the file: it runs alone.
        append(&log, 0, 3);
        let first = log.borrow_mut().prepare_flush(NOW, false).expect("a job");
        append(&log, 1, 3);
        assert!(
            log.borrow_mut().prepare_flush(NOW, false).is_none(),
            "no job starts beside one that creates the file"
        );
        run_jobs_newest_first(&log, &storage, vec![first]).await;

        // Odd-sized batches: every job rewrites the partial block of the one before.
        let mut jobs = Vec::new();
        let mut waiters = Vec::new();
        for id in 2..2 + engine::log::MAX_FLUSH_JOBS_IN_FLIGHT {
            let a = append(&log, id, 7);
            waiters.push(log.borrow_mut().wait_visible(a.last_offset + 1));
            jobs.push(log.borrow_mut().prepare_flush(NOW, false).expect("a job"));
        }
        let a = append(&log, 99, 1);
        assert!(
            log.borrow_mut().prepare_flush(NOW, false).is_none(),
            "at most {} jobs in flight",
            engine::log::MAX_FLUSH_JOBS_IN_FLIGHT
        );
        run_jobs_newest_first(&log, &storage, jobs).await;
        for w in waiters {
            w.await.expect("visible");
        }
        assert_eq!(log.borrow().visible_offset(), a.base_offset);
        assert!(flush(&log, NOW, false).await);

        let mut expected = Vec::new();
        let mut offset = 0;
        for (id, n) in [(0, 3), (1, 3), (2, 7), (3, 7), (4, 7), (5, 7), (99, 1)] {
            for i in 0..n {
                expected.push((offset, value_of(id, i)));
                offset += 1;
            }
        }
        assert_eq!(read_all(&log, 0).await.expect("read"), expected);
        // What reached the file is whole: a process crash now keeps it all.
        drop(log);
        let log = open(&storage.after_crash(CrashKind::ProcessKill), &cfg)
            .await
            .expect("reopen");
        assert_eq!(read_all(&log, 0).await.expect("read"), expected);
    });
}

#[test]
fn a_failed_job_voids_the_jobs_after_it() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            preallocate_bytes: 0,
            ..small_segments()
        };
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 0, 3);
        assert!(flush(&log, NOW, false).await);
        let kept = read_all(&log, 0).await.expect("read");
        // No room for more: the first job in flight fails, and the appends of
        // every later job are taken back with it.
        storage.set_capacity(Some(4096));
        let mut jobs = Vec::new();
        let mut waiters = Vec::new();
        for id in 1..4 {
            let a = append(&log, id, 300);
            waiters.push(log.borrow_mut().wait_visible(a.last_offset + 1));
            jobs.push(log.borrow_mut().prepare_flush(NOW, false).expect("a job"));
        }
        run_jobs_newest_first(&log, &storage, jobs).await;
        for w in waiters {
            let err = w.await.expect_err("no space");
            assert!(err.is_no_space(), "{err}");
        }
        assert!(!log.borrow().is_poisoned());
        assert_eq!(log.borrow().log_end_offset(), 3);
        assert!(!log.borrow().needs_flush(NOW) || flush(&log, NOW, false).await);

        storage.set_capacity(None);
        let a = append(&log, 7, 2);
        assert_eq!(
            a.base_offset, 3,
            "offsets continue after the taken-back ones"
        );
        let w = log.borrow_mut().wait_visible(a.last_offset + 1);
        assert!(flush(&log, NOW, false).await);
        w.await.expect("appends work again");
        let mut expected = kept;
        expected.push((3, value_of(7, 0)));
        expected.push((4, value_of(7, 1)));
        assert_eq!(read_all(&log, 0).await.expect("read"), expected);
        drop(log);
        let log = open(&storage.after_crash(CrashKind::ProcessKill), &cfg)
            .await
            .expect("reopen");
        assert_eq!(read_all(&log, 0).await.expect("read"), expected);
    });
}

/// Regression: with a job in flight and a roll pending (its job must run
/// alone), `needs_flush` said yes while `prepare_flush` refused, so the
/// broker's flusher started empty rounds in a loop; the spinning task kept
/// glommio from reaping the in-flight job's completion and the shard hung
/// (flush=always, W1 in perf/compare.sh).
#[test]
fn needs_flush_is_false_while_no_job_may_start() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            ..small_segments()
        };
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 0, 3);
        assert!(flush(&log, NOW, false).await);
        append(&log, 1, 3);
        let job = log.borrow_mut().prepare_flush(NOW, false).expect("a job");
        log.borrow_mut().force_roll(NOW);
        append(&log, 2, 3);
        assert!(
            log.borrow_mut().prepare_flush(NOW, false).is_none(),
            "the seal and the new file wait for the job in flight"
        );
        assert!(
            !log.borrow().needs_flush(NOW),
            "so nothing is to be done until it ends"
        );
        run_jobs_newest_first(&log, &storage, vec![job]).await;
        assert!(log.borrow().needs_flush(NOW), "now the roll can go");
        while flush(&log, NOW, false).await {}
        assert_eq!(log.borrow().visible_offset(), 9);
        assert_eq!(read_all(&log, 0).await.expect("read").len(), 9);
    });
}

#[test]
fn the_high_watermark_checkpoint_survives_a_close_and_a_crash_within_the_log() {
    for_each_ending(|kind| async move {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        assert_eq!(log.borrow().checkpointed_high_watermark(), None);
        for id in 0..4 {
            append(&log, id, 5);
        }
        flush(&log, NOW, false).await;
        let cp = engine::recovery::checkpoint_high_watermark;
        assert!(cp(&log, 15).await.expect("write"), "{kind:?}");
        assert!(!cp(&log, 15).await.expect("unchanged"), "not rewritten");
        let reopened = end_log(log, &storage, kind).await;
        let log = open(&reopened, &cfg).await.expect("reopen");
        assert_eq!(
            log.borrow().checkpointed_high_watermark(),
            Some(15),
            "{kind:?}"
        );
        assert!(!cp(&log, 15).await.expect("unchanged"), "read back");

        // A follower's high watermark may pass what it made durable: a
        // power loss then leaves a log shorter than the checkpoint.
        append(&log, 9, 5);
        assert!(cp(&log, 25).await.expect("write"));
        let reopened = end_log(log, &reopened, kind).await;
        let log = open(&reopened, &cfg).await.expect("reopen");
        let end = log.borrow().log_end_offset();
        assert_eq!(
            log.borrow().checkpointed_high_watermark(),
            Some(end.min(25)),
            "{kind:?}"
        );
        if kind == Some(CrashKind::PowerLoss) {
            assert_eq!(end, 20, "the unflushed batch is gone");
        }
    });
}

#[test]
fn an_unreadable_high_watermark_checkpoint_is_no_checkpoint() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        append(&log, 0, 5);
        flush(&log, NOW, false).await;
        engine::recovery::checkpoint_high_watermark(&log, 5)
            .await
            .expect("write");
        close(&log, NOW).await.expect("close");
        drop(log);
        let path = path_of(engine::recovery::HIGH_WATERMARK_CHECKPOINT);
        assert!(storage.flip_bit(&path, 3, 0), "written");
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().checkpointed_high_watermark(), None);
    });
}

/// A read-ahead no reader claims gives its share of the shard's read-ahead
/// budget back at the second idle sweep; one a reader uses stays.
#[test]
fn an_unclaimed_read_ahead_is_released_by_the_idle_sweep() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let log = cold_log(&storage, &cfg, 60, 3).await;
        let before = engine::log::read_ahead_budget_used();
        let r = read(&log, 0, 2 << 10).await.expect("read");
        let next = r.last_offset().expect("batches") + 1;
        assert!(log.borrow().has_read_ahead());
        assert!(engine::log::read_ahead_budget_used() > before);
        // Claimed since the last sweep: kept, and marked unclaimed.
        assert!(!log.borrow_mut().release_idle_read_ahead());
        // A reader goes on: claimed again, kept again.
        read(&log, next, 2 << 10).await.expect("read on");
        assert!(!log.borrow_mut().release_idle_read_ahead());
        assert!(log.borrow().has_read_ahead());
        // No reader until the next sweep: released, budget given back.
        assert!(log.borrow_mut().release_idle_read_ahead());
        assert!(!log.borrow().has_read_ahead());
        assert_eq!(engine::log::read_ahead_budget_used(), before);
        assert!(!log.borrow_mut().release_idle_read_ahead(), "nothing left");
        // Reading still works, from the disk, and reads ahead again.
        let values = values_from(&log, 0, 2 << 10).await;
        assert_eq!(values.len(), 180);
    });
}
