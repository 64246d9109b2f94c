//! DeleteRecords v0-v2: moves a partition's log start offset forward, on the
//! shard that owns it. Offset -1 means the high watermark; an offset beyond it
//! (or below -1) is OFFSET_OUT_OF_RANGE; one below the current start changes
//! nothing. The new start is checkpointed before the answer, and the segments
//! wholly below it are deleted. The answer's low watermark is the log start.
//! A replicated partition is trimmed on its leader only, up to the
//! replication high watermark (Kafka's rule; elsewhere
//! NOT_LEADER_OR_FOLLOWER); followers keep their log start, and a replica
//! whose log ends below the leader's start is restarted there by
//! replication.

use std::rc::Rc;

use futures::future::join_all;
use sluice_codec::delete_records_request::DeleteRecordsRequest;
use sluice_codec::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use sluice_codec::ErrorCode;

use super::on_owner;
use crate::state::ShardState;

/// The requested offset that means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// The new log start asked for, or why it is refused. Pure.
pub(crate) fn target_offset(requested: i64, high_watermark: i64) -> Result<i64, ErrorCode> {
    let target = if requested == HIGH_WATERMARK {
        high_watermark
    } else {
        requested
    };
    if target < 0 || target > high_watermark {
        return Err(ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    Ok(target)
}

/// Runs on the owning shard: the new low watermark.
async fn delete_on_shard(
    s: Rc<ShardState>,
    topic: String,
    partition: i32,
    requested: i64,
) -> Result<i64, ErrorCode> {
    let Some(log) = s.log(&topic, partition) else {
        return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let high_watermark = match crate::replication::consumer_view(&s, &topic, partition) {
        crate::replication::ConsumerView::Local => log.borrow().visible_offset(),
        // A new leader may know a high watermark past its own durable end.
        crate::replication::ConsumerView::Leader(l) => l
            .borrow()
            .state
            .high_watermark()
            .min(log.borrow().visible_offset()),
        crate::replication::ConsumerView::NotLeader => {
            return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER)
        }
    };
    let advanced = {
        let mut l = log.borrow_mut();
        let target = target_offset(requested, high_watermark)?;
        l.advance_log_start(target)
    };
    match advanced {
        // The dropped segments' files are closed when these handles go.
        Ok(_dropped_files) => {}
        Err(engine::LogError::OffsetOutOfRange { .. }) => {
            return Err(ErrorCode::OFFSET_OUT_OF_RANGE)
        }
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "DeleteRecords failed");
            return Err(ErrorCode::KAFKA_STORAGE_ERROR);
        }
    }
    // Durable before the answer: a restart must not bring the records back.
    if let Err(e) = engine::recovery::checkpoint_log_start(&log).await {
        tracing::warn!(topic, partition, error = %e, "DeleteRecords could not checkpoint the log start");
        return Err(ErrorCode::KAFKA_STORAGE_ERROR);
    }
    // The start is durable, so the records are gone for readers whatever
    // happens to the files: a failed delete leaves garbage, not an error.
    if let Err(e) = engine::log::delete_dropped_files(&log).await {
        tracing::warn!(topic, partition, error = %e, "DeleteRecords could not delete segment files");
    }
    let start = log.borrow().log_start_offset();
    Ok(start)
}

pub async fn handle(state: &Rc<ShardState>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let table = state.topics();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = table.get(&t.name);
        let answers = join_all(t.partitions.iter().map(|p| {
            let (partition, offset) = (p.partition_index, p.offset);
            on_owner(state, meta, partition, move |s, topic| {
                delete_on_shard(s, topic, partition, offset)
            })
        }))
        .await;
        let partitions = t
            .partitions
            .iter()
            .zip(answers)
            .map(|(p, answer)| match answer {
                Ok(low_watermark) => DeleteRecordsPartitionResult {
                    partition_index: p.partition_index,
                    low_watermark,
                    error_code: 0,
                },
                Err(code) => DeleteRecordsPartitionResult {
                    partition_index: p.partition_index,
                    low_watermark: -1,
                    error_code: code.0,
                },
            })
            .collect();
        topics.push(DeleteRecordsTopicResult {
            name: t.name,
            partitions,
        });
    }
    DeleteRecordsResponse {
        topics,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_offsets() {
        assert_eq!(target_offset(-1, 42), Ok(42), "-1 is the high watermark");
        assert_eq!(target_offset(0, 42), Ok(0));
        assert_eq!(target_offset(42, 42), Ok(42), "up to the high watermark");
        assert_eq!(target_offset(43, 42), Err(ErrorCode::OFFSET_OUT_OF_RANGE));
        assert_eq!(target_offset(-2, 42), Err(ErrorCode::OFFSET_OUT_OF_RANGE));
        assert_eq!(target_offset(-1, 0), Ok(0), "an empty log");
    }
}
