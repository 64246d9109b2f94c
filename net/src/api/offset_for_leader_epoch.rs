//! OffsetForLeaderEpoch v2-v4 (KIP-101, KIP-320): the end offset of a leader
//! epoch, from the log's leader epoch cache, so a consumer can check that its
//! position did not fall off truncated history.
//!
//! A single node is the leader of every partition in epoch [`LEADER_EPOCH`]
//! since it started. A replicated partition (cluster) is answered on its
//! leader only, in that leader's current epoch (after a failover a consumer
//! validates its position against the new leader with the epoch Metadata
//! gave it). As Kafka adds (epoch, log end) to its cache on becoming leader,
//! the current epoch is taken to start at the log end when the cache has not
//! seen it yet, and the single node's epoch 0 at the log start (the cache is
//! rebuilt from appends, and every batch carries it).

use std::rc::Rc;

use futures::future::join_all;
use sluice_codec::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use sluice_codec::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use sluice_codec::ErrorCode;

use super::on_owner;
use crate::replication::{self, ConsumerView};
use crate::state::ShardState;

/// The leader epoch of every partition on a single node.
pub(crate) const LEADER_EPOCH: i32 = 0;
/// No epoch: the client did not say (current epoch) or none is known (answer).
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

/// Kafka's fencing of the client's view of the leader: an older epoch is
/// FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH. Pure.
pub(crate) fn check_current_epoch(current: i32, leader: i32) -> Result<(), ErrorCode> {
    if current == UNDEFINED_EPOCH || current == leader {
        Ok(())
    } else if current < leader {
        Err(ErrorCode::FENCED_LEADER_EPOCH)
    } else {
        Err(ErrorCode::UNKNOWN_LEADER_EPOCH)
    }
}

/// The (epoch, start offset) entries to answer from: the log's cache, plus the
/// current leader epoch when the cache has not seen it yet. Pure.
pub(crate) fn epoch_entries(
    cache: &[(i32, i64)],
    leader_epoch: i32,
    log_start: i64,
    log_end: i64,
) -> Vec<(i32, i64)> {
    let mut entries = cache.to_vec();
    match entries.last() {
        None => entries.push((leader_epoch, log_start)),
        Some(&(last, _)) if last < leader_epoch => entries.push((leader_epoch, log_end)),
        Some(_) => {}
    }
    entries
}

/// Kafka's answer for `requested`: the latest epoch ends at the log end; an
/// older one ends where the next larger epoch starts, reported with the largest
/// known epoch at or below it (or the requested one when all known epochs are
/// larger); an unknown epoch gives (-1, -1). Pure.
pub(crate) fn end_offset_for(entries: &[(i32, i64)], requested: i32, log_end: i64) -> (i32, i64) {
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    }
    if entries.last().is_some_and(|&(e, _)| e == requested) {
        return (requested, log_end);
    }
    let Some(&(_, next_start)) = entries.iter().find(|&&(e, _)| e > requested) else {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    };
    match entries.iter().rev().find(|&&(e, _)| e <= requested) {
        Some(&(floor, _)) => (floor, next_start),
        None => (requested, next_start),
    }
}

async fn lookup(
    s: Rc<ShardState>,
    topic: String,
    partition: i32,
    current_epoch: i32,
    requested: i32,
) -> Result<(i32, i64), ErrorCode> {
    // A replicated partition answers only on its leader, in the leader's
    // current epoch (a consumer validates its position against the new leader
    // after a failover, asking with the epoch Metadata gave it).
    // The client's current epoch is checked first (a follower fences a
    // stale one too), then leadership.
    let leader_epoch =
        match replication::consumer_view_checked(&s, &topic, partition, current_epoch)? {
            ConsumerView::Local => LEADER_EPOCH,
            ConsumerView::Leader(l) => l.borrow().state.epoch().0,
            ConsumerView::NotLeader => return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
        };
    let Some(log) = s.log(&topic, partition) else {
        return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let l = log.borrow();
    let entries = epoch_entries(
        l.leader_epochs(),
        leader_epoch,
        l.log_start_offset(),
        l.log_end_offset(),
    );
    Ok(end_offset_for(&entries, requested, l.log_end_offset()))
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let table = state.topics();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = table.get(&t.topic);
        let answers = join_all(t.partitions.iter().map(|p| {
            let (partition, current, requested) =
                (p.partition, p.current_leader_epoch, p.leader_epoch);
            on_owner(state, meta, partition, move |s, topic| {
                lookup(s, topic, partition, current, requested)
            })
        }))
        .await;
        let partitions = t
            .partitions
            .iter()
            .zip(answers)
            .map(|(p, answer)| match answer {
                Ok((leader_epoch, end_offset)) => EpochEndOffset {
                    error_code: 0,
                    partition: p.partition,
                    leader_epoch,
                    end_offset,
                },
                Err(code) => EpochEndOffset {
                    error_code: code.0,
                    partition: p.partition,
                    leader_epoch: UNDEFINED_EPOCH,
                    end_offset: UNDEFINED_OFFSET,
                },
            })
            .collect();
        topics.push(OffsetForLeaderTopicResult {
            topic: t.topic,
            partitions,
        });
    }
    OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_by_current_epoch() {
        assert_eq!(check_current_epoch(-1, 0), Ok(()));
        assert_eq!(check_current_epoch(0, 0), Ok(()));
        assert_eq!(
            check_current_epoch(1, 0),
            Err(ErrorCode::UNKNOWN_LEADER_EPOCH)
        );
        assert_eq!(
            check_current_epoch(2, 3),
            Err(ErrorCode::FENCED_LEADER_EPOCH)
        );
    }

    #[test]
    fn single_node_epoch_zero() {
        // Nothing appended since start: epoch 0 covers the whole log.
        let entries = epoch_entries(&[], 0, 5, 20);
        assert_eq!(entries, vec![(0, 5)]);
        assert_eq!(end_offset_for(&entries, 0, 20), (0, 20));
        assert_eq!(end_offset_for(&entries, -1, 20), (-1, -1));
        assert_eq!(
            end_offset_for(&entries, 1, 20),
            (-1, -1),
            "a future epoch is unknown"
        );
        // Appends seen: the cache is used as it is.
        assert_eq!(epoch_entries(&[(0, 7)], 0, 5, 20), vec![(0, 7)]);
    }

    #[test]
    fn kafka_semantics_over_several_epochs() {
        let entries = [(1, 0), (3, 10), (6, 25)];
        let end = 40;
        assert_eq!(end_offset_for(&entries, 6, end), (6, 40), "latest: log end");
        assert_eq!(
            end_offset_for(&entries, 3, end),
            (3, 25),
            "start of the next"
        );
        assert_eq!(end_offset_for(&entries, 1, end), (1, 10));
        assert_eq!(
            end_offset_for(&entries, 4, end),
            (3, 25),
            "between: floor epoch"
        );
        assert_eq!(end_offset_for(&entries, 0, end), (0, 0), "below all known");
        assert_eq!(
            end_offset_for(&entries, 7, end),
            (-1, -1),
            "above all known"
        );
        // A newer leader epoch than the cache knows starts at the log end.
        assert_eq!(
            epoch_entries(&entries, 8, 0, end),
            vec![(1, 0), (3, 10), (6, 25), (8, 40)]
        );
    }
}
