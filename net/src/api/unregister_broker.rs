//! UnregisterBroker v0 (KIP-500 era; `kafka-cluster unregister`, `sluice
//! cluster unregister`): forget a broker that is gone for good.
//!
//! The controller removes its registration from the metadata (so Metadata
//! and DescribeCluster stop listing it) and, when it was a broker-only node
//! (a Raft learner), removes it from the controller membership, so the
//! leader stops sending it the metadata log. Refused, with a message saying
//! why, for a broker that is live (Kafka unregisters a live broker too; here
//! it would register again on its next heartbeat), one that still holds
//! replicas (drain it first) and a controller voter (fixed by
//! configuration). An unknown id is `BROKER_ID_NOT_REGISTERED`, as Kafka
//! answers; without a controller every id is.

use std::rc::Rc;

use shard_router::controller::{Command, MetadataError, WriteError};
use shard_router::NodeId;
use sluice_codec::unregister_broker_request::UnregisterBrokerRequest;
use sluice_codec::unregister_broker_response::UnregisterBrokerResponse;
use sluice_codec::ErrorCode;

use crate::state::ShardState;

pub async fn handle(
    state: &Rc<ShardState>,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let node = NodeId(req.broker_id);
    let (code, message) = match &state.config.controller {
        None => (
            ErrorCode::BROKER_ID_NOT_REGISTERED,
            Some(format!(
                "broker {} is not registered: this node runs without a controller",
                req.broker_id
            )),
        ),
        Some(controller) => match controller.write(Command::UnregisterBroker { node }).await {
            Ok(_) => (ErrorCode::NONE, None),
            Err(WriteError::Refused(e @ MetadataError::UnknownBroker(_))) => {
                (ErrorCode::BROKER_ID_NOT_REGISTERED, Some(e.to_string()))
            }
            Err(WriteError::Refused(e)) => (ErrorCode::INVALID_REQUEST, Some(e.to_string())),
            Err(e @ (WriteError::Unavailable(_) | WriteError::NotLeader { .. })) => {
                (ErrorCode::REQUEST_TIMED_OUT, Some(e.to_string()))
            }
            Err(e) => (ErrorCode::UNKNOWN_SERVER_ERROR, Some(e.to_string())),
        },
    };
    if code == ErrorCode::NONE {
        tracing::info!(broker = req.broker_id, "broker unregistered");
    }
    UnregisterBrokerResponse {
        error_code: code.0,
        error_message: message,
        ..Default::default()
    }
}
