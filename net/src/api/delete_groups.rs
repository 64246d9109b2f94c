//! DeleteGroups v0-v2: deletes empty groups with their offsets (tombstones in
//! `__consumer_offsets`, durable before the answer).

use std::rc::Rc;

use sluice_codec::delete_groups_request::DeleteGroupsRequest;
use sluice_codec::delete_groups_response::{DeletableGroupResult, DeleteGroupsResponse};
use sluice_codec::ErrorCode;

use crate::groups::group::GroupState;
use crate::groups::{self, storage, Missing};
use crate::state::ShardState;

async fn delete_on_shard(
    s: Rc<ShardState>,
    partition: i32,
    group_id: String,
) -> Result<(), ErrorCode> {
    let records = s
        .groups
        .borrow_mut()
        .with_group(
            &group_id,
            partition,
            Missing::Fail(ErrorCode::GROUP_ID_NOT_FOUND),
            |g, _| {
                if !matches!(g.state, GroupState::Empty | GroupState::Dead) {
                    return Err(ErrorCode::NON_EMPTY_GROUP);
                }
                let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = g
                    .offsets
                    .keys()
                    .map(|(t, p)| (storage::offset_key(&g.id, t, *p), None))
                    .collect();
                records.push((storage::group_key(&g.id), None));
                Ok(records)
            },
        )
        .and_then(|r| r)?;
    let wait = groups::append(&s, partition, &records)?;
    s.groups.borrow_mut().remove(&group_id);
    // A write not replicated in time: retriable, as Kafka's coordinator
    // answers it (the admin client retries COORDINATOR_NOT_AVAILABLE).
    wait.await.map_err(groups::retriable_timeout)
}

pub async fn handle(state: &Rc<ShardState>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for group_id in req.groups_names {
        let outcome = if group_id.is_empty() {
            Err(ErrorCode::INVALID_GROUP_ID)
        } else {
            let gid = group_id.clone();
            groups::on_group_shard(state, &group_id, move |s, partition| {
                Box::pin(delete_on_shard(s, partition, gid))
            })
            .await
            .and_then(|r| r)
        };
        results.push(DeletableGroupResult {
            group_id,
            error_code: outcome.err().map_or(0, |c| c.0),
            error_message: None,
        });
    }
    DeleteGroupsResponse {
        results,
        ..Default::default()
    }
}
