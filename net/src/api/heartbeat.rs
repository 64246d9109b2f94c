//! Heartbeat v0-v4: keeps a member's session alive and tells it when to rejoin.

use std::rc::Rc;

use sluice_codec::heartbeat_request::HeartbeatRequest;
use sluice_codec::heartbeat_response::HeartbeatResponse;
use sluice_codec::ErrorCode;

use crate::groups::{self, Missing};
use crate::state::{now_ms, ShardState};

pub async fn handle(state: &Rc<ShardState>, req: HeartbeatRequest) -> HeartbeatResponse {
    let code = if req.group_id.is_empty() {
        ErrorCode::INVALID_GROUP_ID
    } else {
        let group_id = req.group_id.clone();
        let result = groups::on_group_shard(state, &group_id, move |s, partition| {
            let code = s.groups.borrow_mut().with_group(
                &req.group_id,
                partition,
                Missing::Fail(ErrorCode::UNKNOWN_MEMBER_ID),
                |g, _| {
                    g.heartbeat(
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id,
                        now_ms(),
                    )
                },
            );
            Box::pin(async move { code })
        })
        .await;
        match result.and_then(|r| r) {
            Ok(code) | Err(code) => code,
        }
    };
    HeartbeatResponse {
        error_code: code.0,
        ..Default::default()
    }
}
