//! ListOffsets lookups: by timestamp (record level) and the largest timestamp.

mod common;

use std::cell::RefCell;

use bytes::Bytes;
use common::*;
use engine::log::{flush, offset_for_timestamp, PartitionLog};
use engine::recovery::close;
use engine::storage::memory::MemStorage;
use engine::{LogConfig, TimestampType};
use futures::executor::block_on;
use sluice_records::{BatchBuilder, Compression};

/// A batch whose records carry the given timestamps, in order.
fn batch_ts(compression: Compression, timestamps: &[i64]) -> Bytes {
    let mut b = BatchBuilder::new(compression);
    for (i, &ts) in timestamps.iter().enumerate() {
        let value = format!("value-{i}-{}", "y".repeat(40));
        b.push(ts, Some(b"key"), Some(value.as_bytes()), &[]);
    }
    b.build()
}

fn append_ts(log: &RefCell<PartitionLog<MemStorage>>, compression: Compression, ts: &[i64]) -> i64 {
    log.borrow_mut()
        .append(&batch_ts(compression, ts), 0, NOW)
        .expect("append")
        .base_offset
}

async fn lookup(log: &RefCell<PartitionLog<MemStorage>>, ts: i64) -> Option<(i64, i64)> {
    offset_for_timestamp(log, ts).await.expect("lookup")
}

/// 60 batches of 5 records over several segments; record `o` has timestamp
/// `1000 + 10 * o`, except batch 30 whose timestamps go backwards.
async fn build(
    storage: &MemStorage,
    cfg: &LogConfig,
    compression: Compression,
) -> RefCell<PartitionLog<MemStorage>> {
    let log = open(storage, cfg).await.expect("open");
    for b in 0..60i64 {
        let mut ts: Vec<i64> = (0..5).map(|i| 1000 + 10 * (b * 5 + i)).collect();
        if b == 30 {
            ts.reverse();
        }
        append_ts(&log, compression, &ts);
        flush(&log, NOW, false).await;
    }
    log
}

async fn check_lookups(log: &RefCell<PartitionLog<MemStorage>>) {
    assert_eq!(
        lookup(log, 0).await,
        Some((0, 1000)),
        "below everything: the log start"
    );
    assert_eq!(lookup(log, 1000).await, Some((0, 1000)));
    assert_eq!(
        lookup(log, 1001).await,
        Some((1, 1010)),
        "record level, inside a batch"
    );
    assert_eq!(lookup(log, 1010).await, Some((1, 1010)));
    assert_eq!(
        lookup(log, 1000 + 10 * 123 - 3).await,
        Some((123, 1000 + 10 * 123))
    );
    // Batch 30 (offsets 150..=154) holds 1000+10*154 first, then descending:
    // the first record at or above 1000+10*152 is offset 150.
    assert_eq!(
        lookup(log, 1000 + 10 * 152).await,
        Some((150, 1000 + 10 * 154))
    );
    assert_eq!(
        lookup(log, 1000 + 10 * 155).await,
        Some((155, 1000 + 10 * 155))
    );
    assert_eq!(
        lookup(log, 1000 + 10 * 299).await,
        Some((299, 1000 + 10 * 299))
    );
    assert_eq!(
        lookup(log, 1000 + 10 * 299 + 1).await,
        None,
        "past the largest"
    );
}

#[test]
fn finds_the_first_record_at_or_after_a_timestamp() {
    block_on(async {
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let storage = MemStorage::new();
            let cfg = LogConfig {
                segment_bytes: 1024,
                index_interval_bytes: 256,
                ..small_segments()
            };
            let log = build(&storage, &cfg, compression).await;
            assert!(log.borrow().segment_count() > 3, "several segments");
            // Hot: the tail cache of 1 MiB holds it all.
            check_lookups(&log).await;
            close(&log, NOW).await.expect("close");
            drop(log);
            // Cold: reopened, so every read goes to disk.
            let log = open(&storage, &cfg).await.expect("reopen");
            check_lookups(&log).await;
            drop(log);
            // After a crash (no clean marker): indexes rebuilt by the scan.
            let log = open(
                &storage.after_crash(engine::storage::memory::CrashKind::PowerLoss),
                &cfg,
            )
            .await
            .expect("reopen after crash");
            check_lookups(&log).await;
        }
    });
}

#[test]
fn respects_the_log_start_and_visibility() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = build(&storage, &cfg, Compression::None).await;
        log.borrow_mut()
            .advance_log_start(42)
            .expect("delete records");
        assert_eq!(
            lookup(&log, 0).await,
            Some((42, 1420)),
            "mid-batch log start"
        );
        assert_eq!(log.borrow().max_timestamp_offset(), Some((299, 3990)));
        // Unflushed data is not visible, even when it matches.
        append_ts(&log, Compression::None, &[9000, 9001]);
        assert_eq!(lookup(&log, 5000).await, None);
        assert_eq!(log.borrow().max_timestamp_offset(), Some((299, 3990)));
        flush(&log, NOW, false).await;
        assert_eq!(lookup(&log, 5000).await, Some((300, 9000)));
        assert_eq!(lookup(&log, 9001).await, Some((301, 9001)));
        assert_eq!(
            log.borrow().max_timestamp_offset(),
            Some((301, 9001)),
            "batch granularity: the last offset of the batch"
        );
    });
}

#[test]
fn max_timestamp_picks_the_earliest_batch_with_the_largest() {
    block_on(async {
        let storage = MemStorage::new();
        let log = open(&storage, &small_segments()).await.expect("open");
        assert_eq!(log.borrow().max_timestamp_offset(), None, "empty log");
        assert_eq!(lookup(&log, 0).await, None, "empty log");
        append_ts(&log, Compression::None, &[100, 500, 200]);
        append_ts(&log, Compression::None, &[300]);
        append_ts(&log, Compression::None, &[500]);
        log.borrow_mut().force_roll(NOW);
        append_ts(&log, Compression::None, &[400]);
        flush(&log, NOW, false).await;
        assert_eq!(log.borrow().max_timestamp_offset(), Some((2, 500)));
        assert_eq!(lookup(&log, 250).await, Some((1, 500)));
        assert_eq!(lookup(&log, 350).await, Some((1, 500)));
        assert_eq!(lookup(&log, 450).await, Some((1, 500)));
        assert_eq!(lookup(&log, 501).await, None);
        append_ts(&log, Compression::None, &[900]);
        flush(&log, NOW, false).await;
        assert_eq!(log.borrow().max_timestamp_offset(), Some((6, 900)));
    });
}

#[test]
fn log_append_time_topics_use_the_broker_time() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let log = open(&storage, &cfg).await.expect("open");
        log.borrow_mut()
            .append(&batch_ts(Compression::Gzip, &[5, 6, 7]), 0, NOW)
            .expect("append");
        log.borrow_mut()
            .append(&batch_ts(Compression::None, &[1, 2]), 0, NOW + 10)
            .expect("append");
        flush(&log, NOW + 10, false).await;
        assert_eq!(lookup(&log, 7).await, Some((0, NOW)));
        assert_eq!(lookup(&log, NOW + 1).await, Some((3, NOW + 10)));
        assert_eq!(log.borrow().max_timestamp_offset(), Some((4, NOW + 10)));
    });
}
