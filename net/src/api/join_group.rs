//! JoinGroup v0-v9: runs on the group's shard; answers when the join phase of
//! the rebalance completes (or at once: errors, MEMBER_ID_REQUIRED in v4+, a
//! member of a stable group rejoining unchanged).

use std::rc::Rc;

use sluice_codec::join_group_request::JoinGroupRequest;
use sluice_codec::join_group_response::JoinGroupResponse;
use sluice_codec::ErrorCode;

use crate::groups::group::{JoinRequest, Reply};
use crate::groups::{self, Missing};
use crate::state::{now_ms, ShardState};

fn failed(member_id: String, code: ErrorCode) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: code.0,
        generation_id: -1,
        protocol_name: None,
        member_id,
        ..Default::default()
    }
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: JoinGroupRequest,
    version: i16,
    client: super::Client,
) -> JoinGroupResponse {
    if req.group_id.is_empty() {
        return failed(req.member_id, ErrorCode::INVALID_GROUP_ID);
    }
    let member_id = req.member_id.clone();
    let group_id = req.group_id;
    let join = JoinRequest {
        member_id: req.member_id,
        instance_id: req.group_instance_id,
        client_id: client.id,
        client_host: client.host,
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout served as both.
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type,
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name, p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let gid = group_id.clone();
    let result = groups::on_group_shard(state, &group_id, move |s, partition| {
        Box::pin(async move {
            let reply =
                s.groups
                    .borrow_mut()
                    .with_group(&gid, partition, Missing::Create, |g, cfg| {
                        g.join(join, now_ms(), cfg)
                    });
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
        Err(code) => failed(member_id, code),
    }
}
