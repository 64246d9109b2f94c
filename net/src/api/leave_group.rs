//! LeaveGroup v0-v5 (one member in v0-v2; a batch of members, static ones by
//! group.instance.id, in v3+).

use std::rc::Rc;

use sluice_codec::leave_group_request::LeaveGroupRequest;
use sluice_codec::leave_group_response::{LeaveGroupResponse, MemberResponse};
use sluice_codec::ErrorCode;

use crate::groups::group::LeavingMember;
use crate::groups::{self, Missing};
use crate::state::{now_ms, ShardState};

pub async fn handle(
    state: &Rc<ShardState>,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let leaving: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.clone(),
            instance_id: None,
        }]
    };
    let result = if req.group_id.is_empty() {
        Err(ErrorCode::INVALID_GROUP_ID)
    } else {
        let group_id = req.group_id.clone();
        let asked = leaving.clone();
        groups::on_group_shard(state, &req.group_id, move |s, partition| {
            let codes = s.groups.borrow_mut().with_group(
                &group_id,
                partition,
                Missing::Fail(ErrorCode::UNKNOWN_MEMBER_ID),
                |g, cfg| g.leave(&asked, now_ms(), cfg),
            );
            groups::persist_dirty(&s);
            Box::pin(async move { codes })
        })
        .await
        .and_then(|r| r)
    };
    match result {
        Err(code) => LeaveGroupResponse {
            error_code: code.0,
            ..Default::default()
        },
        Ok(codes) if version < 3 => LeaveGroupResponse {
            error_code: codes.first().map_or(0, |c| c.0),
            ..Default::default()
        },
        Ok(codes) => LeaveGroupResponse {
            members: leaving
                .into_iter()
                .zip(codes)
                .map(|(m, code)| MemberResponse {
                    member_id: m.member_id,
                    group_instance_id: m.instance_id,
                    error_code: code.0,
                })
                .collect(),
            ..Default::default()
        },
    }
}
