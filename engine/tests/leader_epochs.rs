//! The leader-epoch cache survives a restart (Kafka's `leader-epoch-checkpoint`):
//! epochs of sealed segments that recovery does not scan come from the
//! checkpoint, those of scanned segments from their batches, and a truncation
//! takes cut epochs out of the file too.

mod common;

use std::cell::RefCell;

use common::*;
use engine::log::{flush, truncate_to, PartitionLog};
use engine::recovery::{
    checkpoint_leader_epochs, decode_leader_epochs, encode_leader_epochs, LEADER_EPOCH_CHECKPOINT,
};
use engine::storage::memory::{CrashKind, MemStorage};
use futures::executor::block_on;

/// Puts an empty producer snapshot (with its CRC) at `base`, the active
/// segment's base: recovery then replays only from there, and trusts the
/// sealed segments before it without reading them. (The snapshots the flush
/// writes at a roll lack the CRC recovery checks, so today recovery replays
/// every segment; this test must not depend on that.)
fn snapshot_at(storage: &MemStorage, base: i64) {
    let body = engine::producers::ProducerStates::default().encode();
    let mut file = body.clone();
    file.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    storage.put_file(
        &path_of(&engine::segment::file_name(base, "snapshot")),
        &file,
    );
}

/// Appends batches of 4 records, the epoch of each from `epoch_of(id)`,
/// flushing after each; returns the base offsets.
async fn fill(
    log: &RefCell<PartitionLog<MemStorage>>,
    ids: std::ops::Range<u32>,
    epoch_of: impl Fn(u32) -> i32,
) -> Vec<i64> {
    let mut out = Vec::new();
    for id in ids {
        let a = log
            .borrow_mut()
            .append(&batch(id, 4, NOW + i64::from(id)), epoch_of(id), NOW)
            .expect("append");
        out.push(a.base_offset);
        flush(log, NOW, false).await;
    }
    out
}

fn epoch_of(id: u32) -> i32 {
    match id {
        0..10 => 1,
        10..25 => 3,
        _ => 5,
    }
}

async fn active_segment_base(storage: &MemStorage) -> i64 {
    let names = engine::storage::Storage::list_dir(storage, &dir())
        .await
        .expect("list");
    names
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse::<i64>().ok())
        .max()
        .expect("a segment")
}

#[test]
fn the_checkpoint_format_is_kafkas() {
    let body = encode_leader_epochs(&[(1, 0), (3, 40)]);
    assert_eq!(body, b"0\n2\n1 0\n3 40\n");
    assert_eq!(decode_leader_epochs(&body), Some(vec![(1, 0), (3, 40)]));
    assert_eq!(decode_leader_epochs(b"0\n0\n"), Some(vec![]));
    for bad in [
        &b"1\n0\n"[..],
        b"0\n2\n1 0\n",
        b"0\n2\n3 0\n1 40\n",
        b"0\n1\n1 x\n",
        b"0\n1\n1 0 7\n",
        b"\xff",
    ] {
        assert_eq!(decode_leader_epochs(bad), None, "{bad:?}");
    }
}

#[test]
fn epochs_of_unscanned_sealed_segments_survive_a_crash_and_a_clean_close() {
    for_each_ending(|kind| async move {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        let bases = fill(&log, 0..40, epoch_of).await;
        let want = vec![(1, 0), (3, bases[10]), (5, bases[25])];
        assert_eq!(log.borrow().leader_epochs(), &want[..]);
        assert!(log.borrow().segment_count() >= 3, "epochs span segments");
        assert!(log.borrow().leader_epochs_dirty());
        checkpoint_leader_epochs(&log).await.expect("checkpoint");
        assert!(!log.borrow().leader_epochs_dirty());
        // Epoch 7 starts after the checkpoint, in the active segment: the
        // recovery scan finds it.
        let more = fill(&log, 40..42, |_| 7).await;
        let mut want_more = want.clone();
        want_more.push((7, more[0]));

        let reopened = end_log(log, &storage, kind).await;
        let active = active_segment_base(&reopened).await;
        snapshot_at(&reopened, active);
        let log = open(&reopened, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().leader_epochs(), &want_more[..], "{kind:?}");
    });
}

#[test]
fn truncation_cuts_the_checkpoint_and_a_reopen_keeps_the_cut() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        let bases = fill(&log, 0..40, epoch_of).await;
        checkpoint_leader_epochs(&log).await.expect("checkpoint");
        truncate_to(&log, bases[12]).await.expect("truncate");
        let want = vec![(1, 0), (3, bases[10])];
        assert_eq!(log.borrow().leader_epochs(), &want[..]);
        let file = engine::storage::read_file(&storage, &path_of(LEADER_EPOCH_CHECKPOINT))
            .await
            .expect("read")
            .expect("the checkpoint exists");
        assert_eq!(decode_leader_epochs(&file), Some(want.clone()));
        // A follower of epoch 6 appends on: the new epoch is in the cache and,
        // after a crash, back from the scan or the checkpoint.
        fill(&log, 100..103, |_| 6).await;
        let crashed = storage.after_crash(CrashKind::PowerLoss);
        let active = active_segment_base(&crashed).await;
        snapshot_at(&crashed, active);
        let log = open(&crashed, &cfg).await.expect("reopen");
        let got = log.borrow().leader_epochs().to_vec();
        assert_eq!(&got[..2], &want[..]);
        assert_eq!(got[2], (6, bases[12]));
    });
}

#[test]
fn a_stale_checkpoint_past_the_recovered_end_is_cut_and_garbage_is_ignored() {
    block_on(async {
        let storage = MemStorage::new();
        let cfg = small_segments();
        let log = open(&storage, &cfg).await.expect("open");
        fill(&log, 0..3, |_| 2).await;
        drop(log);
        storage.put_file(
            &path_of(LEADER_EPOCH_CHECKPOINT),
            &encode_leader_epochs(&[(2, 0), (4, 1_000)]),
        );
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().leader_epochs(), &[(2, 0)]);
        drop(log);
        storage.put_file(&path_of(LEADER_EPOCH_CHECKPOINT), b"not a checkpoint");
        let log = open(&storage, &cfg).await.expect("reopen");
        assert_eq!(log.borrow().leader_epochs(), &[(2, 0)], "from the scan");
    });
}
