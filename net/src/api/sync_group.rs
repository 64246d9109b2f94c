//! SyncGroup v0-v5: the leader hands out the assignment; every member waits
//! for its share.

use std::rc::Rc;

use sluice_codec::sync_group_request::SyncGroupRequest;
use sluice_codec::sync_group_response::SyncGroupResponse;
use sluice_codec::ErrorCode;

use crate::groups::group::Reply;
use crate::groups::{self, Missing};
use crate::state::{now_ms, ShardState};

fn failed(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: code.0,
        protocol_type: None,
        protocol_name: None,
        ..Default::default()
    }
}

pub async fn handle(state: &Rc<ShardState>, req: SyncGroupRequest) -> SyncGroupResponse {
    if req.group_id.is_empty() {
        return failed(ErrorCode::INVALID_GROUP_ID);
    }
    let group_id = req.group_id.clone();
    let result = groups::on_group_shard(state, &group_id, move |s, partition| {
        Box::pin(async move {
            let assignments = req
                .assignments
                .into_iter()
                .map(|a| (a.member_id, a.assignment))
                .collect();
            let reply = s.groups.borrow_mut().with_group(
                &req.group_id,
                partition,
                Missing::Fail(ErrorCode::UNKNOWN_MEMBER_ID),
                |g, _| {
                    g.sync(
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id,
                        req.protocol_type.as_deref(),
                        req.protocol_name.as_deref(),
                        assignments,
                        now_ms(),
                    )
                },
            );
            groups::persist_dirty(&s);
            match reply {
                Err(code) => Err(code),
                Ok(Reply::Now(r)) => Ok(r),
                Ok(Reply::Later(rx)) => rx.await.map_err(|_| ErrorCode::NOT_COORDINATOR),
            }
        })
    })
    .await;
    match result.and_then(|r| r) {
        Ok(r) => r,
        Err(code) => failed(code),
    }
}
