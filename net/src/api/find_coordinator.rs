//! FindCoordinator v0-v6 (batched keys in v4+). Every group's coordinator is
//! this node (its shard is chosen inside the node); transaction coordinators
//! do not exist in sluice.

use std::rc::Rc;

use sluice_codec::find_coordinator_request::FindCoordinatorRequest;
use sluice_codec::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use sluice_codec::ErrorCode;

use crate::groups;
use crate::state::ShardState;

const KEY_TYPE_GROUP: i8 = 0;

fn find(state: &ShardState, key: &str, key_type: i8) -> Coordinator {
    let fail = |code: ErrorCode, msg: &str| Coordinator {
        key: key.to_string(),
        node_id: -1,
        host: String::new(),
        port: -1,
        error_code: code.0,
        error_message: Some(msg.to_string()),
    };
    if key_type != KEY_TYPE_GROUP {
        return fail(
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            "sluice has no transaction coordinator (transactions are not supported)",
        );
    }
    if groups::offsets_partitions(state).is_none() {
        return fail(
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            "the __consumer_offsets topic is not created yet",
        );
    }
    Coordinator {
        key: key.to_string(),
        node_id: state.config.node_id,
        host: state.config.advertised_host.clone(),
        port: i32::from(state.config.advertised_port),
        error_code: 0,
        error_message: None,
    }
}

pub fn handle(
    state: &Rc<ShardState>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        return FindCoordinatorResponse {
            coordinators: req
                .coordinator_keys
                .iter()
                .map(|k| find(state, k, req.key_type))
                .collect(),
            ..Default::default()
        };
    }
    let c = find(state, &req.key, req.key_type);
    FindCoordinatorResponse {
        error_code: c.error_code,
        error_message: c.error_message,
        node_id: c.node_id,
        host: c.host,
        port: c.port,
        ..Default::default()
    }
}
