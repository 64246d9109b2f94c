//! ListOffsets v1-v10: earliest (-2), latest (-1), max timestamp (-3),
//! earliest local (-4), latest tiered (-5), and by timestamp. The
//! partition's `current_leader_epoch` (v4+, KIP-320) is checked as Fetch
//! checks it; each answer carries the leader epoch of the offset found.

use std::rc::Rc;

use sluice_codec::list_offsets_request::ListOffsetsRequest;
use sluice_codec::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use sluice_codec::ErrorCode;

use super::offset_for_leader_epoch::{epoch_entries, LEADER_EPOCH};
use super::on_owner;
use crate::replication::{self, ConsumerView};
use crate::state::ShardState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (timestamp, offset, leader epoch of the offset).
type Answer = Result<(i64, i64, i32), ErrorCode>;

/// The leader epoch an offset was written in: the latest epoch starting at
/// or before it in `entries` ((epoch, start offset), epochs increasing), or
/// -1 when none does. Pure.
fn epoch_at(entries: &[(i32, i64)], offset: i64) -> i32 {
    entries
        .iter()
        .rev()
        .find(|&&(_, start)| start <= offset)
        .map_or(-1, |&(epoch, _)| epoch)
}

async fn lookup(
    s: Rc<ShardState>,
    topic: String,
    partition: i32,
    timestamp: i64,
    current_leader_epoch: i32,
) -> Answer {
    // KIP-320: the client's leader epoch is checked first, as Kafka does.
    let view = replication::consumer_view_checked(&s, &topic, partition, current_leader_epoch)?;
    let Some(log) = s.log(&topic, partition) else {
        return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let (start, mut hw) = {
        let l = log.borrow();
        (l.log_start_offset(), l.visible_offset())
    };
    let leader_epoch = match view {
        ConsumerView::Local => LEADER_EPOCH,
        // Replicated: the latest offset consumers can read is the high watermark.
        ConsumerView::Leader(l) => {
            let l = l.borrow();
            hw = l.state.high_watermark();
            l.state.epoch().0
        }
        ConsumerView::NotLeader => return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
    };
    let entries = {
        let l = log.borrow();
        epoch_entries(
            l.leader_epochs(),
            leader_epoch,
            l.log_start_offset(),
            l.log_end_offset(),
        )
    };
    let found = |timestamp: i64, offset: i64| {
        let epoch = if offset < 0 {
            -1
        } else {
            epoch_at(&entries, offset)
        };
        (timestamp, offset, epoch)
    };
    match timestamp {
        // The latest offset's epoch is the leader's: Kafka's latest cached epoch.
        LATEST => Ok((-1, hw, leader_epoch)),
        EARLIEST | EARLIEST_LOCAL => Ok(found(-1, start)),
        // Nothing is tiered: as Kafka answers without tiered storage.
        LATEST_TIERED => Ok((-1, -1, -1)),
        MAX_TIMESTAMP => Ok(log
            .borrow()
            .max_timestamp_offset()
            .map_or((-1, -1, -1), |(o, t)| found(t, o))),
        t if t >= 0 => match engine::timestamp::offset_for_timestamp(&log, t).await {
            Ok(Some((offset, ts))) => Ok(found(ts, offset)),
            Ok(None) => Ok((-1, -1, -1)),
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "ListOffsets by timestamp failed");
                Err(ErrorCode::KAFKA_STORAGE_ERROR)
            }
        },
        _ => Err(ErrorCode::INVALID_REQUEST),
    }
}

pub async fn handle(state: &Rc<ShardState>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let table = state.topics();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = table.get(&t.name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let (ts, epoch) = (p.timestamp, p.current_leader_epoch);
            let answer: Answer = on_owner(state, meta, p.partition_index, move |s, topic| {
                lookup(s, topic, p.partition_index, ts, epoch)
            })
            .await;
            partitions.push(match answer {
                Ok((timestamp, offset, leader_epoch)) => ListOffsetsPartitionResponse {
                    partition_index: p.partition_index,
                    error_code: 0,
                    timestamp,
                    offset,
                    leader_epoch,
                },
                Err(code) => ListOffsetsPartitionResponse {
                    partition_index: p.partition_index,
                    error_code: code.0,
                    timestamp: -1,
                    offset: -1,
                    leader_epoch: -1,
                },
            });
        }
        topics.push(ListOffsetsTopicResponse {
            name: t.name,
            partitions,
        });
    }
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::epoch_at;

    #[test]
    fn the_epoch_of_an_offset_is_the_latest_starting_at_or_before_it() {
        let entries = [(0, 0), (3, 10), (5, 25)];
        assert_eq!(epoch_at(&entries, 0), 0);
        assert_eq!(epoch_at(&entries, 9), 0);
        assert_eq!(epoch_at(&entries, 10), 3);
        assert_eq!(epoch_at(&entries, 40), 5);
        assert_eq!(epoch_at(&[(2, 5)], 4), -1, "before every known epoch");
        assert_eq!(epoch_at(&[], 4), -1);
    }
}
