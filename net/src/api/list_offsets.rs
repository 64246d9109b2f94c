//! ListOffsets v1-v10: earliest (-2), latest (-1), max timestamp (-3),
//! earliest local (-4), latest tiered (-5), and by timestamp.

use std::rc::Rc;

use sluice_codec::list_offsets_request::ListOffsetsRequest;
use sluice_codec::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use sluice_codec::ErrorCode;

use super::on_owner;
use crate::state::ShardState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

type Answer = Result<(i64, i64), ErrorCode>;

async fn lookup(s: Rc<ShardState>, topic: String, partition: i32, timestamp: i64) -> Answer {
    let Some(log) = s.log(&topic, partition) else {
        return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let (start, mut hw) = {
        let l = log.borrow();
        (l.log_start_offset(), l.visible_offset())
    };
    match crate::replication::consumer_view(&s, &topic, partition) {
        crate::replication::ConsumerView::Local => {}
        // Replicated: the latest offset consumers can read is the high watermark.
        crate::replication::ConsumerView::Leader(l) => hw = l.borrow().state.high_watermark(),
        crate::replication::ConsumerView::NotLeader => {
            return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER)
        }
    }
    match timestamp {
        LATEST => Ok((-1, hw)),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, start)),
        // Nothing is tiered: as Kafka answers without tiered storage.
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => Ok(log
            .borrow()
            .max_timestamp_offset()
            .map_or((-1, -1), |(o, t)| (t, o))),
        t if t >= 0 => match engine::timestamp::offset_for_timestamp(&log, t).await {
            Ok(Some((offset, ts))) => Ok((ts, offset)),
            Ok(None) => Ok((-1, -1)),
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
            let ts = p.timestamp;
            let answer: Answer = on_owner(state, meta, p.partition_index, move |s, topic| {
                lookup(s, topic, p.partition_index, ts)
            })
            .await;
            partitions.push(match answer {
                Ok((timestamp, offset)) => ListOffsetsPartitionResponse {
                    partition_index: p.partition_index,
                    error_code: 0,
                    timestamp,
                    offset,
                    leader_epoch: 0,
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
