//! A flush job that syncs must cover what earlier jobs wrote: also when their
//! writes are still in flight while it runs, and when it writes nothing
//! itself (an idle `flush.ms` interval ending). Checked by a power loss right
//! after the sync was reported: everything below the durable offset must be
//! there after the reopen.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use engine::log::{flush, PartitionLog};
use engine::storage::memory::{CrashKind, MemStorage};
use engine::storage::BLOCK_SIZE;
use engine::{FlushPolicy, LogConfig};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use sluice_records::{BatchBuilder, Compression};

type Log = Rc<RefCell<PartitionLog<MemStorage>>>;

const INTERVAL_MS: u64 = 1000;

fn interval_config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::IntervalMs(INTERVAL_MS),
        preallocate_bytes: 0,
        ..LogConfig::default()
    }
}

/// Prepares a flush job at `now_ms` and runs it on `pool` until it waits (on
/// held writes or on an earlier job); it ends when the pool runs on.
fn start_job(pool: &mut LocalPool, log: &Log, storage: &MemStorage, now_ms: i64, force_sync: bool) {
    let job = log
        .borrow_mut()
        .prepare_flush(now_ms, force_sync)
        .expect("a flush job");
    let (log, storage) = (log.clone(), storage.clone());
    pool.spawner()
        .spawn_local(async move {
            let end = job.end_offset();
            let outcome = job.execute(&storage).await;
            outcome.turn().await;
            log.borrow_mut().complete_flush(end, outcome, now_ms);
        })
        .expect("spawn");
    pool.run_until_stalled();
}

/// A one-record batch whose length makes the log end at `end_at` when it
/// starts at `start` (a value padded to fit).
fn batch_ending_at(start: u64, end_at: u64) -> Bytes {
    for pad in 0..(end_at - start) as usize {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(NOW, Some(b"k"), Some(&vec![b'a'; pad]), &[]);
        let bytes = b.build();
        if start + bytes.len() as u64 == end_at {
            return bytes;
        }
    }
    panic!("no padding makes a batch from {start} end at {end_at}");
}

/// Opens a log and makes a first append durable (the job that creates the
/// file runs alone); returns the log and its byte size so far.
fn setup(pool: &mut LocalPool, storage: &MemStorage) -> (Log, u64) {
    let log = Rc::new(
        pool.run_until(open(storage, &interval_config()))
            .expect("open"),
    );
    let first = batch(0, 5, NOW);
    log.borrow_mut().append(&first, 0, NOW).expect("append");
    assert!(pool.run_until(flush(&log, NOW, true)));
    assert_eq!(log.borrow().durable_offset(), 5);
    (log, first.len() as u64)
}

/// After a power loss now, the reopened log must hold every offset the log
/// reported durable.
fn check_power_loss(pool: &mut LocalPool, storage: &MemStorage, log: &Log) {
    let durable = log.borrow().durable_offset();
    let after = storage.after_crash(CrashKind::PowerLoss);
    let reopened = pool
        .run_until(open(&after, &interval_config()))
        .expect("reopen");
    assert_eq!(
        reopened.borrow().log_end_offset(),
        durable,
        "a power loss after the sync kept everything reported durable"
    );
    let records = pool.run_until(read_all(&reopened, 0)).expect("read");
    assert_eq!(records.len() as i64, durable);
}

#[test]
fn a_sync_waits_for_the_writes_of_earlier_jobs() {
    let mut pool = LocalPool::new();
    let storage = MemStorage::new();
    let (log, size) = setup(&mut pool, &storage);

    // Job A: a batch that ends exactly on a block boundary, written but not
    // synced (the interval has not passed); its writes stay in flight.
    let a_end = (size / BLOCK_SIZE + 3) * BLOCK_SIZE;
    log.borrow_mut()
        .append(&batch_ending_at(size, a_end), 0, NOW)
        .expect("append A");
    storage.hold_writes_below(a_end);
    start_job(&mut pool, &log, &storage, NOW, false);

    // Job B: the interval has passed, so it writes the next batch (from the
    // block boundary: nothing of A's to rewrite) and syncs.
    let later = NOW + INTERVAL_MS as i64;
    let b = log
        .borrow_mut()
        .append(&batch(2, 3, later), 0, later)
        .expect("append B");
    start_job(&mut pool, &log, &storage, later, false);
    assert_eq!(log.borrow().durable_offset(), 5, "nothing new applied yet");

    storage.release_writes();
    pool.run();
    assert_eq!(log.borrow().durable_offset(), b.last_offset + 1);
    check_power_loss(&mut pool, &storage, &log);
}

#[test]
fn a_sync_that_writes_nothing_syncs_what_earlier_jobs_wrote() {
    let mut pool = LocalPool::new();
    let storage = MemStorage::new();
    let (log, _) = setup(&mut pool, &storage);

    // Written, not synced: the interval has not passed.
    let a = log
        .borrow_mut()
        .append(&batch(1, 20, NOW), 0, NOW)
        .expect("append");
    assert!(pool.run_until(flush(&log, NOW, false)));
    assert_eq!(log.borrow().durable_offset(), 5);

    // The producer went quiet; the interval ends with nothing new to write.
    assert!(pool.run_until(flush(&log, NOW + INTERVAL_MS as i64, false)));
    assert_eq!(log.borrow().durable_offset(), a.last_offset + 1);
    check_power_loss(&mut pool, &storage, &log);
}

#[test]
fn a_sync_only_job_waits_for_a_write_still_in_flight() {
    let mut pool = LocalPool::new();
    let storage = MemStorage::new();
    let (log, _) = setup(&mut pool, &storage);

    let a = log
        .borrow_mut()
        .append(&batch(1, 20, NOW), 0, NOW)
        .expect("append");
    storage.hold_writes_below(u64::MAX);
    start_job(&mut pool, &log, &storage, NOW, false);

    // A forced sync (as a truncation or a close asks for) while A's write is
    // still in flight.
    start_job(&mut pool, &log, &storage, NOW, true);
    assert_eq!(log.borrow().durable_offset(), 5, "nothing new applied yet");

    storage.release_writes();
    pool.run();
    assert_eq!(log.borrow().durable_offset(), a.last_offset + 1);
    check_power_loss(&mut pool, &storage, &log);
}
