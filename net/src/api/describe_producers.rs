//! DescribeProducers v0: per partition, the idempotent producers the log
//! tracks (id, epoch, last sequence, last timestamp), read on the owning shard.
//! sluice has no transactions yet: coordinator epoch and the open transaction's
//! start offset are always -1.

use std::rc::Rc;

use engine::producers::ProducerStates;
use futures::future::join_all;
use sluice_codec::describe_producers_request::DescribeProducersRequest;
use sluice_codec::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use sluice_codec::ErrorCode;

use super::on_owner;
use crate::state::ShardState;

/// The active producers of one partition, ordered by producer id. Pure.
pub(crate) fn active_producers(states: &ProducerStates) -> Vec<ProducerState> {
    let mut producers: Vec<ProducerState> = states
        .iter()
        .map(|(&producer_id, entry)| ProducerState {
            producer_id,
            producer_epoch: i32::from(entry.epoch),
            last_sequence: entry.batches.back().map_or(-1, |b| b.last_seq),
            last_timestamp: entry.last_timestamp_ms,
            coordinator_epoch: -1,
            current_txn_start_offset: -1,
        })
        .collect();
    producers.sort_by_key(|p| p.producer_id);
    producers
}

async fn lookup(
    s: Rc<ShardState>,
    topic: String,
    partition: i32,
) -> Result<Vec<ProducerState>, ErrorCode> {
    let Some(log) = s.log(&topic, partition) else {
        return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let producers = active_producers(log.borrow().producers());
    Ok(producers)
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let table = state.topics();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = table.get(&t.name);
        let answers = join_all(t.partition_indexes.iter().map(|&partition| {
            on_owner(state, meta, partition, move |s, topic| {
                lookup(s, topic, partition)
            })
        }))
        .await;
        let partitions = t
            .partition_indexes
            .iter()
            .zip(answers)
            .map(|(&partition_index, answer)| match answer {
                Ok(active_producers) => PartitionResponse {
                    partition_index,
                    error_code: 0,
                    error_message: None,
                    active_producers,
                },
                Err(code) => PartitionResponse {
                    partition_index,
                    error_code: code.0,
                    error_message: Some(format!(
                        "{}-{partition_index}: {}",
                        t.name,
                        if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                            "no such topic or partition"
                        } else {
                            "the owning shard did not answer"
                        }
                    )),
                    active_producers: vec![],
                },
            })
            .collect();
        topics.push(TopicResponse {
            name: t.name,
            partitions,
        });
    }
    DescribeProducersResponse {
        topics,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use engine::producers::BatchMeta;

    use super::*;

    fn batch(first_seq: i32, last_seq: i32, base_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq,
            base_offset,
            last_offset: base_offset + i64::from(last_seq - first_seq),
        }
    }

    #[test]
    fn producers_with_last_sequence_and_timestamp() {
        let mut states = ProducerStates::default();
        assert!(active_producers(&states).is_empty());
        states.record(2000, 3, batch(0, 9, 0), 1_000);
        states.record(2000, 3, batch(10, 14, 10), 1_500);
        states.record(1000, 0, batch(0, 0, 15), 900);
        let got = active_producers(&states);
        assert_eq!(
            got,
            vec![
                ProducerState {
                    producer_id: 1000,
                    producer_epoch: 0,
                    last_sequence: 0,
                    last_timestamp: 900,
                    coordinator_epoch: -1,
                    current_txn_start_offset: -1,
                },
                ProducerState {
                    producer_id: 2000,
                    producer_epoch: 3,
                    last_sequence: 14,
                    last_timestamp: 1_500,
                    coordinator_epoch: -1,
                    current_txn_start_offset: -1,
                },
            ]
        );
    }
}
