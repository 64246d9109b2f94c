//! OffsetCommit v2-v9 (the codec starts at v2). A commit is checked against
//! the group (member, generation, state), appended to the group's partition of
//! `__consumer_offsets` and answered once durable there, so an acknowledged
//! commit survives a crash. Commits with generation -1 and no member are
//! "simple" commits, accepted while the group has no members (as Kafka does).

use std::rc::Rc;

use sluice_codec::offset_commit_request::OffsetCommitRequest;
use sluice_codec::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sluice_codec::ErrorCode;

use crate::groups::group::Committed;
use crate::groups::{self, storage, Missing};
use crate::state::{now_ms, ShardState};

/// Every partition of the request answered with `code`.
fn all(req: &OffsetCommitRequest, code: ErrorCode) -> Vec<(String, Vec<(i32, ErrorCode)>)> {
    req.topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, code))
                    .collect(),
            )
        })
        .collect()
}

async fn commit_on_shard(
    s: Rc<ShardState>,
    partition: i32,
    req: OffsetCommitRequest,
    version: i16,
) -> Vec<(String, Vec<(i32, ErrorCode)>)> {
    let now = now_ms();
    let table = s.topics();
    let generation = req.generation_id_or_member_epoch;
    // Only v2-v4 carry a retention time; -1 means the broker's rule.
    let expire_ts_ms = if (2..=4).contains(&version) && req.retention_time_ms >= 0 {
        now.saturating_add(req.retention_time_ms)
    } else {
        -1
    };
    let missing = if generation < 0 {
        Missing::Create
    } else {
        Missing::Fail(ErrorCode::ILLEGAL_GENERATION)
    };
    let checked = s
        .groups
        .borrow_mut()
        .with_group(&req.group_id, partition, missing, |g, cfg| {
            g.check_commit(
                &req.member_id,
                req.group_instance_id.as_deref(),
                generation,
                now,
            )
            .map(|()| cfg.max_offset_metadata_bytes)
        })
        .and_then(|r| r);
    let max_metadata = match checked {
        Ok(m) => m,
        Err(code) => return all(&req, code),
    };
    let mut results = Vec::with_capacity(req.topics.len());
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for t in &req.topics {
        let meta = table.get(&t.name);
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let metadata = p.committed_metadata.clone().unwrap_or_default();
            let code = match meta {
                Some(m) if p.partition_index >= 0 && p.partition_index < m.partitions => {
                    if metadata.len() > max_metadata {
                        ErrorCode::OFFSET_METADATA_TOO_LARGE
                    } else {
                        ErrorCode(0)
                    }
                }
                _ => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            };
            if code.0 == 0 {
                let c = Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_ts_ms: now,
                    expire_ts_ms,
                };
                records.push((
                    storage::offset_key(&req.group_id, &t.name, p.partition_index),
                    Some(storage::offset_value(&c)),
                ));
                accepted.push(((t.name.clone(), p.partition_index), c));
            }
            parts.push((p.partition_index, code));
        }
        results.push((t.name.clone(), parts));
    }
    if records.is_empty() {
        return results;
    }
    // Appended and applied in one synchronous step, so commits apply in the
    // order they are written; the answer waits for durability.
    let wait = match groups::append(&s, partition, &records) {
        Ok(w) => w,
        Err(code) => return all(&req, code),
    };
    let _ = s
        .groups
        .borrow_mut()
        .with_group(&req.group_id, partition, Missing::Create, |g, _| {
            g.offsets.extend(accepted)
        });
    if let Err(code) = wait.await {
        for (_, parts) in &mut results {
            for (_, c) in parts.iter_mut().filter(|(_, c)| c.0 == 0) {
                *c = code;
            }
        }
    }
    results
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let results = if req.group_id.is_empty() {
        all(&req, ErrorCode::INVALID_GROUP_ID)
    } else {
        let fallback = req.clone();
        let group_id = req.group_id.clone();
        groups::on_group_shard(state, &group_id, move |s, partition| {
            Box::pin(commit_on_shard(s, partition, req, version))
        })
        .await
        .unwrap_or_else(|code| all(&fallback, code))
    };
    OffsetCommitResponse {
        topics: results
            .into_iter()
            .map(|(name, parts)| OffsetCommitResponseTopic {
                name,
                partitions: parts
                    .into_iter()
                    .map(|(partition_index, code)| OffsetCommitResponsePartition {
                        partition_index,
                        error_code: code.0,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
