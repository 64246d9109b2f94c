//! Appends of batches copied from a leader (replication): offsets, epochs and
//! bytes kept as the leader stored them; gaps and epoch regressions refused.

mod common;

use std::cell::RefCell;

use bytes::Bytes;
use common::*;
use engine::log::{flush, read, PartitionLog};
use engine::recovery::close;
use engine::storage::memory::MemStorage;
use engine::{LogConfig, ReplicaAppendError};
use futures::executor::block_on;
use sluice_records::{BatchBuilder, BatchHeader, Compression};

/// Every stored batch from `from` to the visible end, one `Bytes` each.
async fn batches(log: &RefCell<PartitionLog<MemStorage>>, from: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = read(log, offset, 64 << 10).await.expect("read");
        if r.chunks.is_empty() {
            return out;
        }
        for chunk in r.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let h = BatchHeader::parse(&chunk[at..]).expect("stored header");
                out.push(chunk.slice(at..at + h.total_len()));
                offset = h.next_offset();
                at += h.total_len();
            }
        }
    }
}

#[test]
fn a_follower_copy_is_byte_identical_across_segments_and_a_reopen() {
    block_on(async {
        let cfg = small_segments();
        let leader_disk = MemStorage::new();
        let follower_disk = MemStorage::new();
        let leader = open(&leader_disk, &cfg).await.expect("open");
        let follower = open(&follower_disk, &cfg).await.expect("open");
        for id in 0..30u32 {
            leader
                .borrow_mut()
                .append(&batch(id, 3, NOW), (id / 10) as i32, NOW)
                .expect("append");
        }
        flush(&leader, NOW, false).await;
        let copied = batches(&leader, 0).await;
        assert_eq!(copied.len(), 30);
        for b in &copied {
            follower
                .borrow_mut()
                .append_replica(b, NOW)
                .expect("replica append");
            flush(&follower, NOW, false).await;
        }
        assert!(follower.borrow().segment_count() >= 2);
        assert_eq!(
            follower.borrow().leader_epochs(),
            leader.borrow().leader_epochs()
        );
        assert_eq!(follower.borrow().log_end_offset(), 90);
        assert_eq!(batches(&follower, 0).await, copied);

        close(&follower, NOW).await.expect("close");
        let reopened = open(&follower_disk, &cfg).await.expect("reopen");
        assert_eq!(reopened.borrow().log_end_offset(), 90);
        assert_eq!(batches(&reopened, 0).await, copied);
    });
}

#[test]
fn a_gap_an_overlap_an_older_epoch_and_a_bad_crc_are_refused() {
    block_on(async {
        let cfg = LogConfig::default();
        let leader = open(&MemStorage::new(), &cfg).await.expect("open");
        let follower = open(&MemStorage::new(), &cfg).await.expect("open");
        for (id, epoch) in [(0u32, 3), (1, 3), (2, 5)] {
            leader
                .borrow_mut()
                .append(&batch(id, 2, NOW), epoch, NOW)
                .expect("append");
        }
        flush(&leader, NOW, false).await;
        let b = batches(&leader, 0).await;

        let gap = follower.borrow_mut().append_replica(&b[1], NOW);
        assert!(
            matches!(
                gap,
                Err(ReplicaAppendError::NotAtLogEnd {
                    base_offset: 2,
                    log_end: 0
                })
            ),
            "{gap:?}"
        );
        follower
            .borrow_mut()
            .append_replica(&b[0], NOW)
            .expect("first");
        follower
            .borrow_mut()
            .append_replica(&b[1], NOW)
            .expect("second");
        let overlap = follower.borrow_mut().append_replica(&b[1], NOW);
        assert!(
            matches!(
                overlap,
                Err(ReplicaAppendError::NotAtLogEnd {
                    base_offset: 2,
                    log_end: 4
                })
            ),
            "{overlap:?}"
        );
        follower
            .borrow_mut()
            .append_replica(&b[2], NOW)
            .expect("third");

        // A batch of epoch 4 after epoch 5 data: history would go back.
        let mut older = b[2].to_vec();
        sluice_records::set_base_offset(&mut older, 6).expect("header");
        sluice_records::set_partition_leader_epoch(&mut older, 4).expect("header");
        let back = follower.borrow_mut().append_replica(&older, NOW);
        assert!(
            matches!(
                back,
                Err(ReplicaAppendError::EpochGoesBack {
                    epoch: 4,
                    latest: 5
                })
            ),
            "{back:?}"
        );

        let mut corrupt = b[2].to_vec();
        sluice_records::set_base_offset(&mut corrupt, 6).expect("header");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let bad = follower.borrow_mut().append_replica(&corrupt, NOW);
        assert!(matches!(bad, Err(ReplicaAppendError::Append(_))), "{bad:?}");
        assert_eq!(follower.borrow().log_end_offset(), 6);
        assert_eq!(follower.borrow().leader_epochs(), &[(3, 0), (5, 4)]);
    });
}

#[test]
fn producer_state_follows_the_copied_batches() {
    block_on(async {
        let cfg = LogConfig::default();
        let leader = open(&MemStorage::new(), &cfg).await.expect("open");
        let follower = open(&MemStorage::new(), &cfg).await.expect("open");
        for seq in [0, 2, 4] {
            let mut b = BatchBuilder::new(Compression::None);
            b.producer(7, 1, seq);
            b.push(NOW, Some(b"k"), Some(b"a"), &[]);
            b.push(NOW, Some(b"k"), Some(b"b"), &[]);
            leader
                .borrow_mut()
                .append(&b.build(), 0, NOW)
                .expect("append");
        }
        flush(&leader, NOW, false).await;
        for b in batches(&leader, 0).await {
            follower.borrow_mut().append_replica(&b, NOW).expect("copy");
        }
        // A retry of the last batch, sent to the follower once it leads, is
        // answered with the original offsets.
        let mut retry = BatchBuilder::new(Compression::None);
        retry.producer(7, 1, 4);
        retry.push(NOW, Some(b"k"), Some(b"a"), &[]);
        retry.push(NOW, Some(b"k"), Some(b"b"), &[]);
        let a = follower
            .borrow_mut()
            .append(&retry.build(), 1, NOW)
            .expect("retry");
        assert!(a.duplicate);
        assert_eq!((a.base_offset, a.last_offset), (4, 5));
    });
}
