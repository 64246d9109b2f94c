//! DescribeGroups v0-v5: state, protocol and members of each group; member
//! metadata and assignments only for a stable group (as Kafka answers).

use std::rc::Rc;

use sluice_codec::describe_groups_request::DescribeGroupsRequest;
use sluice_codec::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use sluice_codec::ErrorCode;

use crate::groups::group::GroupState;
use crate::groups::{self, Missing};
use crate::state::ShardState;

/// Kafka's value when authorized operations were not asked for.
const NO_AUTHORIZED_OPERATIONS: i32 = i32::MIN;

fn failed(group_id: String, code: ErrorCode) -> DescribedGroup {
    DescribedGroup {
        error_code: code.0,
        group_id,
        group_state: String::new(),
        authorized_operations: NO_AUTHORIZED_OPERATIONS,
        ..Default::default()
    }
}

async fn describe(state: &Rc<ShardState>, group_id: String) -> DescribedGroup {
    if group_id.is_empty() {
        return failed(group_id, ErrorCode::INVALID_GROUP_ID);
    }
    let gid = group_id.clone();
    let result = groups::on_group_shard(state, &gid, move |s, partition| {
        let r = s.groups.borrow_mut().with_group(
            &group_id,
            partition,
            Missing::Fail(ErrorCode(0)),
            |g, _| {
                let stable = g.state == GroupState::Stable;
                let protocol = g.protocol.clone().unwrap_or_default();
                DescribedGroup {
                    error_code: 0,
                    group_id: g.id.clone(),
                    group_state: g.state.name().to_string(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol_data: if stable {
                        protocol.clone()
                    } else {
                        String::new()
                    },
                    members: g
                        .members
                        .values()
                        .map(|m| DescribedGroupMember {
                            member_id: m.id.clone(),
                            group_instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            member_metadata: if stable {
                                m.metadata(&protocol)
                            } else {
                                Default::default()
                            },
                            member_assignment: if stable {
                                m.assignment.clone()
                            } else {
                                Default::default()
                            },
                        })
                        .collect(),
                    authorized_operations: NO_AUTHORIZED_OPERATIONS,
                    ..Default::default()
                }
            },
        );
        let r = match r {
            // An unknown group is described as Dead with no error (v0-v5).
            Err(ErrorCode(0)) => Ok(DescribedGroup {
                group_id,
                group_state: GroupState::Dead.name().to_string(),
                authorized_operations: NO_AUTHORIZED_OPERATIONS,
                ..Default::default()
            }),
            r => r,
        };
        Box::pin(async move { r })
    })
    .await
    .and_then(|r| r);
    result.unwrap_or_else(|code| failed(gid, code))
}

pub async fn handle(state: &Rc<ShardState>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        groups.push(describe(state, g).await);
    }
    DescribeGroupsResponse {
        groups,
        ..Default::default()
    }
}
