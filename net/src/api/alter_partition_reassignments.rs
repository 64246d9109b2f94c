//! AlterPartitionReassignments v0-v1 (KIP-455, KIP-860): start, replace or
//! cancel the reassignment of partitions of replicated topics. Each
//! partition is one `AlterReassignment` command to the controller, which
//! answers once the reassignment has started (the copy runs on; it is done
//! when ListPartitionReassignments no longer lists the partition).
//!
//! Errors per partition, as Kafka: `UNKNOWN_TOPIC_OR_PARTITION`,
//! `INVALID_REPLICA_ASSIGNMENT` (no replicas, a broker twice, a broker
//! that is not registered or is fenced), `INVALID_REPLICATION_FACTOR` (v1
//! with `allow_replication_factor_change` false and another count),
//! `NO_REASSIGNMENT_IN_PROGRESS` (a cancel with nothing to cancel). Topics
//! that live on one node only (no controller, or replication factor 1
//! created locally) cannot move: `INVALID_REPLICA_ASSIGNMENT` says so.

use shard_router::controller::{
    ClusterMetadata, Command, ControllerHandle, MetadataError, WriteError,
};
use shard_router::NodeId;
use sluice_codec::alter_partition_reassignments_request::AlterPartitionReassignmentsRequest;
use sluice_codec::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use sluice_codec::ErrorCode;

use crate::state::ShardState;

pub async fn handle(
    state: &ShardState,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let controller = state.config.controller.as_ref();
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result = match controller {
                Some(c) => {
                    reassign(
                        c,
                        &t.name,
                        p.partition_index,
                        p.replicas,
                        req.allow_replication_factor_change,
                    )
                    .await
                }
                None => Err(local_only(state, &t.name)),
            };
            let (error_code, error_message) = match result {
                Ok(()) => (0, None),
                Err((code, message)) => (code.0, Some(message)),
            };
            partitions.push(ReassignablePartitionResponse {
                partition_index: p.partition_index,
                error_code,
                error_message,
            });
        }
        responses.push(ReassignableTopicResponse {
            name: t.name,
            partitions,
        });
    }
    AlterPartitionReassignmentsResponse {
        throttle_time_ms: 0,
        allow_replication_factor_change: req.allow_replication_factor_change,
        error_code: 0,
        error_message: None,
        responses,
    }
}

fn local_only(state: &ShardState, topic: &str) -> (ErrorCode, String) {
    if state.topics().get(topic).is_none() {
        return (
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {topic} does not exist"),
        );
    }
    (
        ErrorCode::INVALID_REPLICA_ASSIGNMENT,
        format!(
            "topic {topic} lives on node {} alone (not created through the controller); it cannot be reassigned",
            state.config.node_id
        ),
    )
}

/// The replicas a partition had before the reassignment in progress (if
/// any) added some: what `allow_replication_factor_change` compares with.
fn original_replica_count(meta: &ClusterMetadata, topic: &str, partition: i32) -> Option<usize> {
    let p = meta
        .topics
        .get(topic)?
        .partitions
        .get(usize::try_from(partition).ok()?)?;
    Some(p.replicas.len() - p.adding_replicas.len())
}

async fn reassign(
    controller: &ControllerHandle,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
    allow_replication_factor_change: bool,
) -> Result<(), (ErrorCode, String)> {
    if let (Some(target), false) = (&replicas, allow_replication_factor_change) {
        let count = original_replica_count(&controller.metadata(), topic, partition);
        if count.is_some_and(|c| c != target.len()) {
            return Err((
                ErrorCode::INVALID_REPLICATION_FACTOR,
                format!(
                    "{topic}-{partition} has {} replicas, the new assignment {}; the request does not allow a change",
                    count.unwrap_or(0),
                    target.len()
                ),
            ));
        }
    }
    let command = Command::AlterReassignment {
        topic: topic.to_string(),
        partition,
        replicas: replicas.map(|r| r.into_iter().map(NodeId).collect()),
    };
    match controller.write(command).await {
        Ok(_) => Ok(()),
        Err(WriteError::Refused(e)) => {
            let code = match &e {
                MetadataError::UnknownTopic(_) | MetadataError::UnknownPartition { .. } => {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                }
                MetadataError::InvalidReplicaAssignment(_) => ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                MetadataError::NoReassignmentInProgress { .. } => {
                    ErrorCode::NO_REASSIGNMENT_IN_PROGRESS
                }
                _ => ErrorCode::UNKNOWN_SERVER_ERROR,
            };
            Err((code, e.to_string()))
        }
        Err(e) => Err((ErrorCode::REQUEST_TIMED_OUT, e.to_string())),
    }
}
