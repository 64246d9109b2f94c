//! Truncation of the log end (replication): what goes, what stays, what a reopen sees.

mod common;

use std::cell::RefCell;

use common::*;
use engine::log::{
    flush, offset_for_timestamp, truncate_fully_and_start_at, truncate_to, PartitionLog,
};
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
    for_each_ending(|kind| async move {
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

        let reopened = end_log(log, &storage, kind).await;
        let log = open(&reopened, &cfg).await.expect("reopen");
        assert_eq!(
            read_all(&log, 0).await.expect("read"),
            want,
            "nothing truncated comes back ({kind:?})"
        );
        assert_eq!(log.borrow().log_end_offset(), want.len() as i64);
    });
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

#[test]
fn a_log_emptied_and_restarted_at_a_later_offset_stays_there_across_reopens() {
    for_each_ending(|kind| async move {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        fill(&log, 0..40, 4).await;
        assert!(log.borrow().segment_count() >= 3);
        // An append not yet durable: its waiter is failed, not answered.
        let pending = log
            .borrow_mut()
            .append(&batch(99, 4, NOW), 3, NOW)
            .expect("append");
        let waiter = log.borrow_mut().wait_visible(pending.last_offset + 1);

        truncate_fully_and_start_at(&log, 500, NOW)
            .await
            .expect("restart at 500");
        let err = waiter.await.expect_err("the pending append is failed");
        assert!(matches!(err, LogError::Abandoned(_)), "{err}");
        {
            let l = log.borrow();
            assert_eq!(l.log_start_offset(), 500);
            assert_eq!(l.log_end_offset(), 500);
            assert_eq!(l.visible_offset(), 500);
            assert_eq!(l.segment_count(), 1);
            assert!(l.leader_epochs().is_empty());
            assert!(l.producers().is_empty());
        }
        assert!(matches!(
            read_all(&log, 0).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(read_all(&log, 500).await.expect("read"), vec![]);
        let names = engine::storage::Storage::list_dir(&storage, &dir())
            .await
            .expect("list");
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".log") || n.ends_with("index") || n.ends_with(".snapshot")),
            "{names:?}"
        );

        // Empty, then reopened: still at 500.
        drop(log);
        let reopened = match kind {
            None => storage.clone(),
            Some(kind) => storage.after_crash(kind),
        };
        let log = open(&reopened, &cfg).await.expect("reopen empty");
        assert_eq!(log.borrow().log_start_offset(), 500, "{kind:?}");
        assert_eq!(log.borrow().log_end_offset(), 500, "{kind:?}");
        assert!(log.borrow().leader_epochs().is_empty(), "{kind:?}");

        // Replication goes on from there, in a later epoch.
        let more = fill(&log, 70..73, 4).await;
        assert_eq!(more[0].1, 500);
        engine::recovery::checkpoint_leader_epochs(&log)
            .await
            .expect("epochs");
        let reopened = end_log(log, &reopened, kind).await;
        let log = open(&reopened, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().log_start_offset(), 500, "{kind:?}");
        assert_eq!(
            read_all(&log, 500).await.expect("read"),
            expected(&more, 4),
            "{kind:?}"
        );
        assert_eq!(log.borrow().leader_epochs(), &[(7, 500)], "{kind:?}");
    });
}

#[test]
fn restarting_below_the_log_start_empties_the_log_too() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &small_segments()).await.expect("open");
        fill(&log, 0..10, 4).await;
        log.borrow_mut()
            .advance_log_start(20)
            .expect("delete records");
        // A history that diverges below the log start: truncate_to refuses,
        // the log restarts at the offset instead.
        assert!(matches!(
            truncate_to(&log, 8).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        truncate_fully_and_start_at(&log, 8, NOW)
            .await
            .expect("restart at 8");
        assert_eq!(log.borrow().log_start_offset(), 8);
        assert_eq!(log.borrow().log_end_offset(), 8);
        let a = log
            .borrow_mut()
            .append(&batch(5, 4, NOW), 0, NOW)
            .expect("append");
        assert_eq!(a.base_offset, 8);
        flush(&log, NOW, false).await;
        assert_eq!(
            read_all(&log, 8).await.expect("read"),
            expected(&[(5, 8, 11)], 4)
        );
    });
}
