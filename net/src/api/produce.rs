//! Produce v3-v13. Each partition's batch is appended on its owning shard in
//! the order requests arrive (the append runs synchronously when the job is
//! dequeued there); the response waits until every batch meets its flush policy.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use engine::AppendError;
use futures::future::LocalBoxFuture;
use shard_router::Reply;
use sluice_codec::produce_request::ProduceRequest;
use sluice_codec::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use sluice_codec::ErrorCode;

use crate::replication::{self, produce_gate, ProduceGate};
use crate::state::{now_ms, ShardState};
use shard_router::replication::AckResult;

fn failed(index: i32, code: ErrorCode, message: impl Into<String>) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: code.0,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: Some(message.into()),
        ..Default::default()
    }
}

/// The Kafka error code of a refused append.
pub fn append_error_code(e: &AppendError) -> ErrorCode {
    match e {
        AppendError::InvalidBatch(b) => ErrorCode(b.kind().kafka_error_code()),
        AppendError::TooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
        AppendError::ProducerFenced { .. } => ErrorCode::INVALID_PRODUCER_EPOCH,
        AppendError::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
        AppendError::Poisoned(_) | AppendError::Closed => ErrorCode::KAFKA_STORAGE_ERROR,
    }
}

enum Slot {
    Done(PartitionProduceResponse),
    Pending(i32, Reply<PartitionProduceResponse>),
}

/// Queues every partition's append on its shard (in order), and returns the
/// response to come.
pub async fn enqueue(
    state: &Rc<ShardState>,
    req: ProduceRequest,
    version: i16,
) -> LocalBoxFuture<'static, ProduceResponse> {
    let table = state.topics();
    let transactional = req.transactional_id.is_some();
    let acks = req.acks;
    let timeout_ms = req.timeout_ms;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let meta = if version >= 13 {
            table.by_id(topic.topic_id)
        } else {
            table.get(&topic.name)
        };
        let unknown = if version >= 13 {
            ErrorCode::UNKNOWN_TOPIC_ID
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        };
        let mut slots = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let slot = match (meta, p.records) {
                _ if transactional => Slot::Done(failed(
                    p.index,
                    ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "transactions are not supported by sluice",
                )),
                (None, _) => Slot::Done(failed(p.index, unknown, "unknown topic")),
                (Some(m), _) if p.index < 0 || p.index >= m.partitions => Slot::Done(failed(
                    p.index,
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {} has no partition {}", m.name, p.index),
                )),
                (Some(_), None) => {
                    Slot::Done(failed(p.index, ErrorCode::INVALID_RECORD, "no records"))
                }
                (Some(m), Some(records)) => {
                    // A decoded value is one slice of the request frame: no copy.
                    let records = records.contiguous();
                    let (topic, index) = (m.name.clone(), p.index);
                    let owner = state.owner(&topic, index);
                    let job = move |s: &Rc<ShardState>| {
                        append_on_shard(s, topic, index, records, acks, timeout_ms)
                    };
                    match state.router.submit(owner, job).await {
                        Ok(reply) => Slot::Pending(index, reply),
                        Err(e) => {
                            Slot::Done(failed(index, ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))
                        }
                    }
                }
            };
            slots.push(slot);
        }
        topics.push((topic.name, topic.topic_id, slots));
    }
    let state = state.clone();
    Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, topic_id, slots) in topics {
            let mut partition_responses = Vec::with_capacity(slots.len());
            for slot in slots {
                partition_responses.push(match slot {
                    Slot::Done(r) => r,
                    Slot::Pending(index, reply) => match reply.await {
                        Ok(r) => r,
                        Err(e) => failed(index, ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()),
                    },
                });
            }
            responses.push(TopicProduceResponse {
                name,
                topic_id,
                partition_responses,
            });
        }
        let mut resp = ProduceResponse {
            responses,
            ..Default::default()
        };
        super::current_leader::fill_produce(&state, &mut resp);
        resp
    })
}

/// Runs on the owning shard. The append happens now, synchronously, so the
/// order of jobs is the order of offsets; the returned future waits for the
/// flush policy, and with `acks=all` on a replicated partition for the high
/// watermark, at most `timeout_ms` from the append (then
/// `REQUEST_TIMED_OUT`, as Kafka answers; the batch stays appended).
fn append_on_shard(
    s: &Rc<ShardState>,
    topic: String,
    index: i32,
    records: Bytes,
    acks: i16,
    timeout_ms: i32,
) -> LocalBoxFuture<'static, PartitionProduceResponse> {
    let ready =
        |r| -> LocalBoxFuture<'static, PartitionProduceResponse> { Box::pin(async move { r }) };
    let gate = match s.topics().get(&topic) {
        Some(meta) => produce_gate(s, meta, index, acks),
        None => ProduceGate::Local,
    };
    let leading = match gate {
        ProduceGate::Local => None,
        ProduceGate::Leader(l) => Some(l),
        ProduceGate::Refused(code, msg) => return ready(failed(index, code, msg)),
    };
    let Some(log) = s.log(&topic, index) else {
        return ready(failed(
            index,
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            "partition not on this broker",
        ));
    };
    // Kafka's rule since produce v3: exactly one batch per partition.
    let mut batches = sluice_records::BatchIter::new(&records).without_crc();
    let batch = match (batches.next(), batches.next()) {
        (Some(Ok((_, range))), None) => records.slice(range),
        (Some(Ok(_)), Some(_)) => {
            return ready(failed(
                index,
                ErrorCode::INVALID_RECORD,
                "a produce request must carry exactly one record batch per partition",
            ))
        }
        (Some(Err(e)), _) => {
            return ready(failed(index, ErrorCode::CORRUPT_MESSAGE, e.to_string()))
        }
        (None, _) => return ready(failed(index, ErrorCode::CORRUPT_MESSAGE, "empty records")),
    };
    let records = sluice_records::BatchHeader::parse(&batch).map_or(0, |h| h.record_count);
    // Replicated partitions stamp the leader epoch on each batch.
    let epoch = leading.as_ref().map_or(0, |l| l.borrow().state.epoch().0);
    let appended = log.borrow_mut().append(&batch, epoch, now_ms());
    match appended {
        Err(e) => ready(failed(index, append_error_code(&e), e.to_string())),
        Ok(a) => {
            if !a.duplicate {
                s.metrics
                    .appended(&topic, batch.len(), u64::try_from(records).unwrap_or(0));
                s.mark_dirty(&log);
            }
            if let Some(l) = &leading {
                replication::on_leader_appended(l, log.borrow().log_end_offset());
            }
            let visible = log.borrow_mut().wait_visible(a.last_offset + 1);
            let log = log.clone();
            let metrics = s.metrics.clone();
            let started = std::time::Instant::now();
            let s = s.clone();
            Box::pin(async move {
                let mut visible = visible.await;
                metrics.produce_durable(started.elapsed());
                if let (Some(l), Ok(())) = (&leading, &visible) {
                    let tp = (topic.clone(), index);
                    // The first batch of a new epoch: its start goes to the
                    // leader-epoch checkpoint before it is acknowledged.
                    visible = engine::recovery::checkpoint_leader_epochs(&log).await;
                    let durable = log.borrow().visible_offset();
                    replication::on_leader_durable(&s, &tp, l, durable);
                    if visible.is_ok() && acks == -1 {
                        // A negative timeout_ms times out at once, as in Kafka.
                        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0))
                            .saturating_sub(started.elapsed());
                        let committed = replication::wait_committed_within(
                            &s,
                            &tp,
                            l,
                            a.last_offset + 1,
                            timeout,
                        );
                        match committed.await {
                            None => {
                                return failed(
                                    index,
                                    ErrorCode::REQUEST_TIMED_OUT,
                                    format!(
                                        "the batch was not replicated to every in-sync replica within timeout_ms {timeout_ms}"
                                    ),
                                )
                            }
                            Some(AckResult::Committed) => {}
                            Some(AckResult::NotEnoughReplicasAfterAppend) => {
                                return failed(
                                    index,
                                    ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                    "the ISR shrank below min.insync.replicas",
                                )
                            }
                            Some(AckResult::NotLeader) => {
                                return failed(
                                    index,
                                    ErrorCode::NOT_LEADER_OR_FOLLOWER,
                                    "leadership moved before the batch was committed",
                                )
                            }
                        }
                    }
                }
                match visible {
                    Ok(()) => PartitionProduceResponse {
                        index,
                        error_code: 0,
                        base_offset: a.base_offset,
                        log_append_time_ms: a.log_append_time_ms,
                        log_start_offset: log.borrow().log_start_offset(),
                        ..Default::default()
                    },
                    Err(e) => failed(index, ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()),
                }
            })
        }
    }
}
