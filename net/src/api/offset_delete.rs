//! OffsetDelete v0: removes committed offsets of a group, refused per
//! partition (GROUP_SUBSCRIBED_TO_TOPIC) for topics its live members consume.

use std::rc::Rc;

use sluice_codec::offset_delete_request::OffsetDeleteRequest;
use sluice_codec::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use sluice_codec::ErrorCode;

use crate::groups::group::{Group, GroupState};
use crate::groups::{self, storage, subscribed_topics, Missing};
use crate::state::ShardState;

type Answer = Result<Vec<(String, Vec<(i32, ErrorCode)>)>, ErrorCode>;

/// Topics the group's members consume, or `Err` when it cannot be told.
fn subscriptions(g: &Group) -> Result<Vec<String>, ErrorCode> {
    if g.state == GroupState::Empty {
        return Ok(Vec::new());
    }
    if g.protocol_type.as_deref() != Some("consumer") {
        return Err(ErrorCode::NON_EMPTY_GROUP);
    }
    let protocol = g.protocol.as_deref().unwrap_or("");
    let mut topics = Vec::new();
    for m in g.members.values() {
        let mut found = false;
        for (name, metadata) in &m.protocols {
            if protocol.is_empty() || name == protocol {
                topics.extend(subscribed_topics(metadata).ok_or(ErrorCode::NON_EMPTY_GROUP)?);
                found = true;
            }
        }
        if !found {
            return Err(ErrorCode::NON_EMPTY_GROUP);
        }
    }
    Ok(topics)
}

async fn delete_on_shard(s: Rc<ShardState>, partition: i32, req: OffsetDeleteRequest) -> Answer {
    let mut records = Vec::new();
    let results = s
        .groups
        .borrow_mut()
        .with_group(
            &req.group_id,
            partition,
            Missing::Fail(ErrorCode::GROUP_ID_NOT_FOUND),
            |g, _| {
                let subscribed = subscriptions(g)?;
                Ok(req
                    .topics
                    .iter()
                    .map(|t| {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                if subscribed.contains(&t.name) {
                                    return (
                                        p.partition_index,
                                        ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC,
                                    );
                                }
                                let key = (t.name.clone(), p.partition_index);
                                if g.offsets.remove(&key).is_some() {
                                    records.push((
                                        storage::offset_key(&g.id, &t.name, p.partition_index),
                                        None,
                                    ));
                                }
                                (p.partition_index, ErrorCode(0))
                            })
                            .collect();
                        (t.name.clone(), parts)
                    })
                    .collect::<Vec<_>>())
            },
        )
        .and_then(|r| r)?;
    if !records.is_empty() {
        groups::append(&s, partition, &records)?
            .await
            .map_err(groups::retriable_timeout)?;
    }
    Ok(results)
}

pub async fn handle(state: &Rc<ShardState>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let answer: Answer = if req.group_id.is_empty() {
        Err(ErrorCode::INVALID_GROUP_ID)
    } else {
        let group_id = req.group_id.clone();
        groups::on_group_shard(state, &group_id, move |s, partition| {
            Box::pin(delete_on_shard(s, partition, req))
        })
        .await
        .and_then(|r| r)
    };
    match answer {
        Err(code) => OffsetDeleteResponse {
            error_code: code.0,
            ..Default::default()
        },
        Ok(topics) => OffsetDeleteResponse {
            topics: topics
                .into_iter()
                .map(|(name, parts)| OffsetDeleteResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(|(partition_index, code)| OffsetDeleteResponsePartition {
                            partition_index,
                            error_code: code.0,
                        })
                        .collect(),
                })
                .collect(),
            ..Default::default()
        },
    }
}
