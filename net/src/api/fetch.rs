//! Fetch v4-v17: stored batches returned as stored (the stored chunks go to
//! the socket as they are, never joined), long polls that end at
//! `min_bytes` or `max_wait_ms`. Fetch sessions (KIP-227) are declined by
//! answering session id 0, which makes clients send full requests, as Kafka
//! itself does when its session cache is full. A partition's
//! `current_leader_epoch` (v9+, KIP-320) is checked against the replica's
//! epoch: `FENCED_LEADER_EPOCH` when older, `UNKNOWN_LEADER_EPOCH` when newer.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use engine::LogError;
use sluice_codec::fetch_request::FetchRequest;
use sluice_codec::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use sluice_codec::{ErrorCode, Records};
use uuid::Uuid;

use crate::replication::{self, ConsumerView};
use crate::state::{now_ms, ShardState};
use shard_router::replication::{consumer_read_bound, ReadBound};

/// The longest long poll honoured, whatever the client asks.
const MAX_WAIT_MS: i32 = 30_000;

struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// The client's view of the leader epoch (KIP-320), -1 for none.
    current_leader_epoch: i32,
}

/// The topics of a request as asked (name, id), each with its partitions to read.
type Plan = Vec<(String, Uuid, Vec<(i32, Result<Wanted, ErrorCode>)>)>;

#[derive(Default)]
struct Got {
    error: i16,
    records: Vec<Bytes>,
    high_watermark: i64,
    log_start_offset: i64,
}

async fn read_on_shard(
    s: Rc<ShardState>,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
) -> Got {
    let view = match replication::consumer_view_checked(&s, &topic, partition, current_leader_epoch)
    {
        Ok(view) => view,
        Err(code) => {
            return Got {
                error: code.0,
                high_watermark: -1,
                log_start_offset: -1,
                ..Default::default()
            }
        }
    };
    let leading = match view {
        ConsumerView::Local => None,
        ConsumerView::Leader(l) => Some(l),
        ConsumerView::NotLeader => {
            return Got {
                error: ErrorCode::NOT_LEADER_OR_FOLLOWER.0,
                high_watermark: -1,
                log_start_offset: -1,
                ..Default::default()
            }
        }
    };
    let Some(log) = s.log(&topic, partition) else {
        return Got {
            error: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
            high_watermark: -1,
            log_start_offset: -1,
            ..Default::default()
        };
    };
    if let Some(l) = &leading {
        // Consumers see only committed data: up to the high watermark. A
        // fetch between it and the log end is answered empty, not out of
        // range (after a failover the new leader's may trail what was read).
        let hw = l.borrow().state.high_watermark();
        let (start, end) = {
            let lg = log.borrow();
            (lg.log_start_offset(), lg.log_end_offset())
        };
        match consumer_read_bound(offset, start, hw.min(end), end) {
            ReadBound::OutOfRange => {
                return Got {
                    error: ErrorCode::OFFSET_OUT_OF_RANGE.0,
                    high_watermark: hw,
                    log_start_offset: start,
                    ..Default::default()
                }
            }
            ReadBound::Empty => {
                return Got {
                    error: 0,
                    records: Vec::new(),
                    high_watermark: hw,
                    log_start_offset: start,
                }
            }
            ReadBound::Upto(_) => {}
        }
    }
    match engine::log::read(&log, offset, max_bytes).await {
        Ok(r) => match &leading {
            None => Got {
                error: 0,
                records: r.chunks,
                high_watermark: r.high_watermark,
                log_start_offset: r.log_start_offset,
            },
            Some(l) => {
                let hw = l.borrow().state.high_watermark();
                Got {
                    error: 0,
                    records: replication::cut_at(r.chunks, hw),
                    high_watermark: hw,
                    log_start_offset: r.log_start_offset,
                }
            }
        },
        Err(e) => {
            let l = log.borrow();
            let error = match e {
                LogError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
                other => {
                    tracing::error!(topic, partition, error = %other, "fetch failed");
                    ErrorCode::KAFKA_STORAGE_ERROR
                }
            };
            Got {
                error: error.0,
                records: Vec::new(),
                high_watermark: l.visible_offset(),
                log_start_offset: l.log_start_offset(),
            }
        }
    }
}

/// Resolves on the owning shard when the partition's visible end passes `offset`, or at the deadline.
async fn wait_on_shard(
    s: Rc<ShardState>,
    topic: String,
    partition: i32,
    offset: i64,
    wait_ms: u64,
) {
    let Some(log) = s.log(&topic, partition) else {
        return;
    };
    if let ConsumerView::Leader(l) = replication::consumer_view(&s, &topic, partition) {
        // Replicated: new data for consumers is a move of the high watermark.
        if l.borrow().state.high_watermark() > offset {
            return;
        }
        let changed = l.borrow_mut().changed();
        let timeout = glommio::timer::sleep(Duration::from_millis(wait_ms));
        futures::pin_mut!(changed, timeout);
        futures::future::select(changed, timeout).await;
        return;
    }
    if log.borrow().visible_offset() > offset {
        return;
    }
    let changed = log.borrow_mut().visible_changed();
    let timeout = glommio::timer::sleep(Duration::from_millis(wait_ms));
    futures::pin_mut!(changed, timeout);
    futures::future::select(changed, timeout).await;
}

pub async fn handle(state: &Rc<ShardState>, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse {
            error_code: ErrorCode::FETCH_SESSION_ID_NOT_FOUND.0,
            ..Default::default()
        };
    }
    let table = state.topics();
    let mut plan: Plan = Vec::new();
    for t in req.topics {
        let meta = if version >= 13 {
            table.by_id(t.topic_id)
        } else {
            table.get(&t.topic)
        };
        let unknown = if version >= 13 {
            ErrorCode::UNKNOWN_TOPIC_ID
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        };
        let parts = t
            .partitions
            .into_iter()
            .map(|p| {
                let w = match meta {
                    None => Err(unknown),
                    Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                        Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                    }
                    Some(m) => Ok(Wanted {
                        topic: m.name.clone(),
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        current_leader_epoch: p.current_leader_epoch,
                    }),
                };
                (p.partition, w)
            })
            .collect();
        plan.push((t.topic, t.topic_id, parts));
    }
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let deadline = now_ms() + i64::from(req.max_wait_ms.clamp(0, MAX_WAIT_MS));
    loop {
        let mut reads = Vec::new();
        for (_, _, parts) in &plan {
            for (_, w) in parts {
                if let Ok(w) = w {
                    let (topic, partition, offset, mb, epoch) = (
                        w.topic.clone(),
                        w.partition,
                        w.offset,
                        w.max_bytes,
                        w.current_leader_epoch,
                    );
                    let owner = state.owner(&topic, partition);
                    reads.push(state.router.call(owner, move |s: &Rc<ShardState>| {
                        Box::pin(read_on_shard(
                            s.clone(),
                            topic,
                            partition,
                            offset,
                            mb,
                            epoch,
                        ))
                    }));
                }
            }
        }
        let mut results = futures::future::join_all(reads).await.into_iter();
        let mut got: Vec<Vec<(i32, Got)>> = Vec::with_capacity(plan.len());
        let mut total = 0usize;
        let mut any_error = false;
        for (_, _, parts) in &plan {
            let mut g = Vec::with_capacity(parts.len());
            for (index, w) in parts {
                let mut r = match w {
                    Err(code) => Got {
                        error: code.0,
                        high_watermark: -1,
                        log_start_offset: -1,
                        ..Default::default()
                    },
                    Ok(_) => results.next().map_or_else(
                        || Got {
                            error: ErrorCode::UNKNOWN_SERVER_ERROR.0,
                            ..Default::default()
                        },
                        |r| {
                            r.unwrap_or(Got {
                                error: ErrorCode::KAFKA_STORAGE_ERROR.0,
                                ..Default::default()
                            })
                        },
                    ),
                };
                // The response's max_bytes: whole partitions in order, the first always.
                let len: usize = r.records.iter().map(Bytes::len).sum();
                if total > 0 && total + len > max_bytes {
                    r.records.clear();
                } else {
                    total += len;
                }
                any_error |= r.error != 0;
                g.push((*index, r));
            }
            got.push(g);
        }
        let now = now_ms();
        if total >= min_bytes.max(1) || any_error || now >= deadline {
            let mut resp = respond(plan, got);
            if any_error {
                super::current_leader::fill_fetch(state, &mut resp);
            }
            return resp;
        }
        // Long poll: wait until any partition has new data, or the deadline.
        let wait_ms = (deadline - now) as u64;
        let mut waits = Vec::new();
        for ((_, _, parts), seen) in plan.iter().zip(&got) {
            for ((_, w), (_, g)) in parts.iter().zip(seen) {
                if let Ok(w) = w {
                    // Wait for data past what this read saw, not past the
                    // fetch offset: a partition holding data below
                    // min_bytes would end the wait at once, and the loop
                    // would spin on the shard until the deadline.
                    let offset = w.offset.max(g.high_watermark);
                    let (topic, partition) = (w.topic.clone(), w.partition);
                    let owner = state.owner(&topic, partition);
                    let job =
                        move |s: &Rc<ShardState>| -> futures::future::LocalBoxFuture<'static, ()> {
                            Box::pin(wait_on_shard(s.clone(), topic, partition, offset, wait_ms))
                        };
                    waits.push(Box::pin(state.router.call(owner, job)));
                }
            }
        }
        if waits.is_empty() {
            glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
        } else {
            let (_first, _, _rest) = futures::future::select_all(waits).await;
        }
    }
}

fn respond(plan: Plan, got: Vec<Vec<(i32, Got)>>) -> FetchResponse {
    let responses = plan
        .into_iter()
        .zip(got)
        .map(|((topic, topic_id, _), parts)| FetchableTopicResponse {
            topic,
            topic_id,
            partitions: parts
                .into_iter()
                .map(|(partition_index, g)| PartitionData {
                    partition_index,
                    error_code: g.error,
                    high_watermark: g.high_watermark,
                    // No transactions: the last stable offset is the high watermark.
                    last_stable_offset: g.high_watermark,
                    log_start_offset: g.log_start_offset,
                    aborted_transactions: Some(Vec::new()),
                    preferred_read_replica: -1,
                    // The stored chunks as they are: the encoder writes each
                    // as its own piece of the vectored write, nothing joined.
                    records: Some(Records::from(g.records)),
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    FetchResponse {
        responses,
        session_id: 0,
        ..Default::default()
    }
}
