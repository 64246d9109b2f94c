//! OffsetFetch v1-v9 (the codec starts at v1; several groups per request in
//! v8+). Answers the committed offset and metadata of each partition asked
//! (all of the group's when the topic list is null), -1 where none.

use std::rc::Rc;

use sluice_codec::offset_fetch_request::OffsetFetchRequest;
use sluice_codec::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sluice_codec::ErrorCode;

use crate::groups::{self, Missing};
use crate::state::ShardState;

/// (topic, [(partition, offset, leader epoch, metadata)])
type Offsets = Vec<(String, Vec<(i32, i64, i32, String)>)>;

/// One group's offsets, from its shard.
async fn fetch_group(
    state: &Rc<ShardState>,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Offsets, ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::INVALID_GROUP_ID);
    }
    let gid = group_id.clone();
    groups::on_group_shard(state, &gid, move |s, partition| {
        let r = s.groups.borrow_mut().with_group(
            &group_id,
            partition,
            Missing::Fail(ErrorCode(0)),
            |g, _| {
                let found = |t: &str, p: i32| g.offsets.get(&(t.to_string(), p));
                match &topics {
                    Some(asked) => asked
                        .iter()
                        .map(|(t, ps)| {
                            let parts = ps
                                .iter()
                                .map(|&p| match found(t, p) {
                                    Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone()),
                                    None => (p, -1, -1, String::new()),
                                })
                                .collect();
                            (t.clone(), parts)
                        })
                        .collect(),
                    None => {
                        let mut out: Offsets = Vec::new();
                        for ((t, p), c) in &g.offsets {
                            if out.last().is_none_or(|(name, _)| name != t) {
                                out.push((t.clone(), Vec::new()));
                            }
                            let last = out.last_mut().expect("pushed");
                            last.1
                                .push((*p, c.offset, c.leader_epoch, c.metadata.clone()));
                        }
                        out
                    }
                }
            },
        );
        let r = match (r, &topics) {
            // An unknown group has no offsets: -1 for what was asked.
            (Err(ErrorCode(0)), Some(asked)) => Ok(asked
                .iter()
                .map(|(t, ps)| {
                    (
                        t.clone(),
                        ps.iter().map(|&p| (p, -1, -1, String::new())).collect(),
                    )
                })
                .collect()),
            (Err(ErrorCode(0)), None) => Ok(Vec::new()),
            (r, _) => r,
        };
        Box::pin(async move { r })
    })
    .await
    .and_then(|r| r)
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut out = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let group_id = g.group_id.clone();
            out.push(match fetch_group(state, g.group_id, topics).await {
                Ok(offsets) => OffsetFetchResponseGroup {
                    group_id,
                    topics: offsets
                        .into_iter()
                        .map(|(name, parts)| OffsetFetchResponseTopics {
                            name,
                            partitions: parts
                                .into_iter()
                                .map(|(p, o, e, m)| OffsetFetchResponsePartitions {
                                    partition_index: p,
                                    committed_offset: o,
                                    committed_leader_epoch: e,
                                    metadata: Some(m),
                                    error_code: 0,
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    error_code: 0,
                },
                Err(code) => OffsetFetchResponseGroup {
                    group_id,
                    topics: Vec::new(),
                    error_code: code.0,
                },
            });
        }
        return OffsetFetchResponse {
            groups: out,
            ..Default::default()
        };
    }
    let asked: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let partition =
        |p: i32, o: i64, e: i32, m: String, code: ErrorCode| OffsetFetchResponsePartition {
            partition_index: p,
            committed_offset: o,
            committed_leader_epoch: e,
            metadata: Some(m),
            error_code: code.0,
        };
    match fetch_group(state, req.group_id, asked.clone()).await {
        Ok(offsets) => OffsetFetchResponse {
            topics: offsets
                .into_iter()
                .map(|(name, parts)| OffsetFetchResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(|(p, o, e, m)| partition(p, o, e, m, ErrorCode(0)))
                        .collect(),
                })
                .collect(),
            ..Default::default()
        },
        // v1 has no top-level error: it goes on every partition asked too.
        Err(code) => OffsetFetchResponse {
            error_code: code.0,
            topics: asked
                .unwrap_or_default()
                .into_iter()
                .map(|(name, ps)| OffsetFetchResponseTopic {
                    name,
                    partitions: ps
                        .into_iter()
                        .map(|p| partition(p, -1, -1, String::new(), code))
                        .collect(),
                })
                .collect(),
            ..Default::default()
        },
    }
}
