//! Truncation of the log end (replication): what goes, what stays, what a reopen sees.

mod common;

use std::cell::RefCell;

use common::*;
use engine::log::{flush, offset_for_timestamp, truncate_to, PartitionLog};
use engine::recovery::close;
use engine::storage::memory::{CrashKind, MemStorage};
use engine::{FlushPolicy, LogConfig, LogError};
use futures::executor::block_on;

/// Appends batches `ids` of `n` records each (leader epoch = id / 10), flushing
/// after each; returns (id, base, last) per batch.
async fn fill(
    log: &RefCell<PartitionLog<MemStorage>>,
    ids: std::ops::Range<u32>,
    n: usize,
) -> Vec<(u32, i64, i64)> {
    let mut out = Vec::new();
    for id in ids {
        let a = log
            .borrow_mut()
            .append(&batch(id, n, NOW + i64::from(id)), (id / 10) as i32, NOW)
            .expect("append");
        out.push((id, a.base_offset, a.last_offset));
        flush(log, NOW, false).await;
    }
    out
}

fn expected(batches: &[(u32, i64, i64)], n: usize) -> Vec<(i64, Vec<u8>)> {
    batches
        .iter()
        .flat_map(|&(id, base, _)| (0..n).map(move |i| (base + i as i64, value_of(id, i))))
        .collect()
}

#[test]
fn truncate_inside_the_active_and_an_earlier_segment_then_reopen() {
    for kind in [
        None,
        Some(CrashKind::ProcessKill),
        Some(CrashKind::PowerLoss),
    ] {
        block_on(async {
            let storage = MemStorage::new();
            let cfg = small_segments();
            let log = open(&storage, &cfg).await.expect("open");
            let batches = fill(&log, 0..40, 4).await;
            let segments_before = log.borrow().segment_count();
            assert!(segments_before >= 3, "{segments_before} segments");

            // Inside the active segment.
            let (_, cut, _) = batches[38];
            truncate_to(&log, cut).await.expect("truncate");
            assert_eq!(log.borrow().log_end_offset(), cut);
            assert_eq!(log.borrow().visible_offset(), cut);
            assert_eq!(
                read_all(&log, 0).await.expect("read"),
                expected(&batches[..38], 4)
            );

            // Far back: later segments go with their files.
            let (_, cut, _) = batches[5];
            truncate_to(&log, cut).await.expect("truncate");
            assert_eq!(log.borrow().log_end_offset(), cut);
            assert_eq!(log.borrow().segment_count(), 1);
            let names = engine::storage::Storage::list_dir(&storage, &dir())
                .await
                .expect("list");
            let logs: Vec<_> = names.iter().filter(|n| n.ends_with(".log")).collect();
            assert_eq!(logs, ["00000000000000000000.log"], "{names:?}");
            assert!(
                !names
                    .iter()
                    .any(|n| n.ends_with("index") && !n.starts_with("00000000000000000000")),
                "{names:?}"
            );
            assert_eq!(
                read_all(&log, 0).await.expect("read"),
                expected(&batches[..5], 4)
            );
            assert_eq!(
                log.borrow().leader_epochs(),
                &[(0, 0)],
                "epochs starting past the cut are forgotten"
            );
            assert_eq!(
                offset_for_timestamp(&log, NOW + 30).await.expect("lookup"),
                None,
                "truncated timestamps are gone"
            );

            // Appends continue at the cut, over the old bytes.
            let more = fill(&log, 100..110, 3).await;
            assert_eq!(more[0].1, cut);
            let mut want = expected(&batches[..5], 4);
            want.extend(expected(&more, 3));
            assert_eq!(read_all(&log, 0).await.expect("read"), want);

            let reopened = match kind {
                None => {
                    close(&log, NOW).await.expect("close");
                    drop(log);
                    storage.clone()
                }
                Some(kind) => {
                    drop(log);
                    storage.after_crash(kind)
                }
            };
            let log = open(&reopened, &cfg).await.expect("reopen");
            assert_eq!(
                read_all(&log, 0).await.expect("read"),
                want,
                "nothing truncated comes back ({kind:?})"
            );
            assert_eq!(log.borrow().log_end_offset(), want.len() as i64);
        });
    }
}

#[test]
fn truncated_files_are_gone_even_without_later_appends() {
    for kind in [CrashKind::ProcessKill, CrashKind::PowerLoss] {
        block_on(async {
            let storage = MemStorage::new();
            let cfg = small_segments();
            let log = open(&storage, &cfg).await.expect("open");
            let batches = fill(&log, 0..40, 4).await;
            close(&log, NOW).await.expect("close");
            drop(log);
            let log = open(&storage, &cfg).await.expect("reopen");
            let (_, cut, _) = batches[12];
            truncate_to(&log, cut).await.expect("truncate");
            drop(log);
            let log = open(&storage.after_crash(kind), &cfg)
                .await
                .expect("reopen");
            assert_eq!(
                read_all(&log, 0).await.expect("read"),
                expected(&batches[..12], 4)
            );
            assert_eq!(log.borrow().log_end_offset(), cut);
        });
    }
}

#[test]
fn refuses_offsets_that_are_not_batch_boundaries() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &small_segments()).await.expect("open");
        let batches = fill(&log, 0..10, 4).await;
        let end = log.borrow().log_end_offset();
        for bad in [1, batches[3].1 + 2, batches[9].2] {
            let err = truncate_to(&log, bad).await.expect_err("mid-batch");
            assert!(matches!(err, LogError::InvalidArgument(_)), "{bad}: {err}");
        }
        assert!(matches!(
            truncate_to(&log, end + 1).await,
            Err(LogError::InvalidArgument(_))
        ));
        truncate_to(&log, end)
            .await
            .expect("the log end is a no-op");
        assert_eq!(log.borrow().log_end_offset(), end);
        log.borrow_mut()
            .advance_log_start(8)
            .expect("delete records");
        assert!(matches!(
            truncate_to(&log, 4).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(!log.borrow().is_poisoned());
        assert_eq!(
            read_all(&log, 8).await.expect("read"),
            expected(&batches, 4)[8..]
        );
        // Truncating to the log start empties the log; offsets continue from there.
        truncate_to(&log, 8).await.expect("truncate to the start");
        assert_eq!(read_all(&log, 8).await.expect("read"), vec![]);
        let a = log
            .borrow_mut()
            .append(&batch(77, 2, NOW), 0, NOW)
            .expect("append");
        assert_eq!(a.base_offset, 8);
    });
}

#[test]
fn unflushed_appends_before_the_cut_are_made_durable_first() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            flush: FlushPolicy::Never,
            ..small_segments()
        };
        let log = open(&storage, &cfg).await.expect("open");
        let first = fill(&log, 0..3, 4).await;
        // Not flushed: the truncation must write and sync these first.
        let kept = log
            .borrow_mut()
            .append(&batch(3, 4, NOW), 0, NOW)
            .expect("append");
        let cut = kept.last_offset + 1;
        let dropped = log
            .borrow_mut()
            .append(&batch(4, 4, NOW), 0, NOW)
            .expect("append");
        let kept_waiter = log.borrow_mut().wait_visible(kept.last_offset + 1);
        let dropped_waiter = log.borrow_mut().wait_visible(dropped.last_offset + 1);
        truncate_to(&log, cut).await.expect("truncate");
        kept_waiter.await.expect("kept append is durable");
        // The dropped append was flushed too (the truncation syncs everything
        // first), then taken away: its waiter was already answered.
        let _ = dropped_waiter.await;
        let mut want = expected(&first, 4);
        want.extend(expected(&[(3, kept.base_offset, kept.last_offset)], 4));
        assert_eq!(read_all(&log, 0).await.expect("read"), want);
        drop(log);
        let log = open(&storage.after_crash(CrashKind::PowerLoss), &cfg)
            .await
            .expect("reopen");
        assert_eq!(read_all(&log, 0).await.expect("read"), want);
    });
}

#[test]
fn idempotent_state_forgets_truncated_batches() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &LogConfig::default()).await.expect("open");
        let mk = |seq: i32, n: usize| {
            let mut b = sluice_records::BatchBuilder::new(sluice_records::Compression::None);
            b.producer(7, 0, seq);
            for i in 0..n {
                b.push(NOW, None, Some(format!("{seq}-{i}").as_bytes()), &[]);
            }
            b.build()
        };
        log.borrow_mut().append(&mk(0, 3), 0, NOW).expect("first");
        let second = log.borrow_mut().append(&mk(3, 2), 0, NOW).expect("second");
        flush(&log, NOW, false).await;
        truncate_to(&log, second.base_offset)
            .await
            .expect("truncate");
        let again = log
            .borrow_mut()
            .append(&mk(3, 2), 0, NOW)
            .expect("re-append after truncation");
        assert!(!again.duplicate, "the truncated batch is not remembered");
        assert_eq!(again.base_offset, second.base_offset);
    });
}

#[test]
fn pending_appends_past_a_durable_cut_are_abandoned() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &small_segments()).await.expect("open");
        let first = fill(&log, 0..6, 4).await;
        let cut = log.borrow().log_end_offset();
        let pending = log
            .borrow_mut()
            .append(&batch(50, 4, NOW), 0, NOW)
            .expect("append");
        let waiter = log.borrow_mut().wait_visible(pending.last_offset + 1);
        // The durable end: the pending batch past it goes, its waiter is failed.
        truncate_to(&log, cut)
            .await
            .expect("truncate at the durable end");
        assert_eq!(log.borrow().log_end_offset(), cut);
        let err = waiter.await.expect_err("the pending append is failed");
        assert!(matches!(err, LogError::Abandoned(_)), "{err}");
        let again = log
            .borrow_mut()
            .append(&batch(51, 4, NOW), 0, NOW)
            .expect("append");
        assert_eq!(again.base_offset, cut);
        let waiter = log.borrow_mut().wait_visible(again.last_offset + 1);
        let (_, cut, _) = first[5];
        truncate_to(&log, cut).await.expect("truncate");
        let err = waiter.await.expect_err("the pending append is failed");
        assert!(matches!(err, LogError::Abandoned(_)), "{err}");
        assert_eq!(
            read_all(&log, 0).await.expect("read"),
            expected(&first[..5], 4)
        );
        assert!(
            !flush(&log, NOW, false).await,
            "nothing of the dropped append is written"
        );
        drop(log);
        let log = open(
            &storage.after_crash(CrashKind::ProcessKill),
            &small_segments(),
        )
        .await
        .expect("reopen");
        assert_eq!(
            read_all(&log, 0).await.expect("read"),
            expected(&first[..5], 4)
        );
    });
}
