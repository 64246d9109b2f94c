//! ListGroups v0-v5: the groups of every shard, filtered by state (v4+) and
//! type (v5+: all sluice groups are "classic").

use std::rc::Rc;

use sluice_codec::list_groups_request::ListGroupsRequest;
use sluice_codec::list_groups_response::{ListGroupsResponse, ListedGroup};
use sluice_codec::ErrorCode;

use crate::state::ShardState;

pub async fn handle(state: &Rc<ShardState>, req: ListGroupsRequest) -> ListGroupsResponse {
    let listed = state
        .router
        .broadcast(|s: &Rc<ShardState>| {
            let groups = s.groups.borrow().list();
            Box::pin(async move { groups })
        })
        .await;
    let mut error_code = 0;
    let mut groups = Vec::new();
    match listed {
        Err(_) => error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0,
        Ok(shards) => {
            for shard in shards {
                match shard {
                    None => error_code = ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.0,
                    Some(gs) => groups.extend(gs),
                }
            }
        }
    }
    let state_ok = |st: &str| {
        req.states_filter.is_empty() || req.states_filter.iter().any(|f| f.eq_ignore_ascii_case(st))
    };
    let type_ok = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|f| f.eq_ignore_ascii_case("classic"));
    groups.sort();
    ListGroupsResponse {
        error_code,
        groups: groups
            .into_iter()
            .filter(|(_, _, st)| type_ok && state_ok(st))
            .map(|(group_id, protocol_type, st)| ListedGroup {
                group_id,
                protocol_type,
                group_state: st.to_string(),
                group_type: "classic".to_string(),
            })
            .collect(),
        ..Default::default()
    }
}
