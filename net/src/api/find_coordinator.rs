//! FindCoordinator v0-v6 (batched keys in v4+). A group's coordinator is
//! this node (its shard is chosen inside the node), or in a cluster the
//! leader of the group's `__consumer_offsets` partition; transaction
//! coordinators do not exist in sluice.

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
    let Some(partitions) = groups::offsets_partitions(state) else {
        return fail(
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            "the __consumer_offsets topic is not created yet",
        );
    };
    if let (true, Some(controller)) = (groups::replicated(state), &state.config.controller) {
        let p = groups::partition_for(key, partitions);
        let meta = controller.metadata();
        let leader = meta
            .topics
            .get(groups::OFFSETS_TOPIC)
            .and_then(|t| t.partitions.get(usize::try_from(p).ok()?))
            .and_then(|ps| ps.leader)
            .and_then(|l| meta.brokers.get(&l).filter(|b| !b.fenced));
        return match leader {
            Some(b) => Coordinator {
                key: key.to_string(),
                node_id: b.registration.node.0,
                host: b.registration.host.clone(),
                port: i32::from(b.registration.port),
                error_code: 0,
                error_message: None,
            },
            None => fail(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                &format!("partition {p} of __consumer_offsets has no leader"),
            ),
        };
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
