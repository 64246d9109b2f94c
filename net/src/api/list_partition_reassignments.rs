//! ListPartitionReassignments v0 (KIP-455): the reassignments in progress,
//! from the controller's metadata as this node has applied it: for each
//! partition its whole replica set (old and new), the replicas being added
//! and those being removed. Without a filter every partition in progress is
//! listed; topics and partitions asked for that are unknown, or not being
//! reassigned, are left out, as Kafka does. A single node has none.

use shard_router::controller::ClusterMetadata;
use sluice_codec::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use sluice_codec::list_partition_reassignments_response::{
    ListPartitionReassignmentsResponse, OngoingPartitionReassignment, OngoingTopicReassignment,
};

use crate::state::ShardState;

pub fn handle(
    state: &ShardState,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let topics = match &state.config.controller {
        Some(c) => ongoing(&c.metadata(), req.topics.as_deref()),
        None => Vec::new(),
    };
    ListPartitionReassignmentsResponse {
        throttle_time_ms: 0,
        error_code: 0,
        error_message: None,
        topics,
    }
}

/// The reassignments in progress among `filter` (all when `None`). Pure.
pub fn ongoing(
    meta: &ClusterMetadata,
    filter: Option<
        &[sluice_codec::list_partition_reassignments_request::ListPartitionReassignmentsTopics],
    >,
) -> Vec<OngoingTopicReassignment> {
    let wanted = |topic: &str, partition: i32| match filter {
        None => true,
        Some(f) => f
            .iter()
            .any(|t| t.name == topic && t.partition_indexes.contains(&partition)),
    };
    let mut out = Vec::new();
    for (name, t) in &meta.topics {
        let partitions: Vec<OngoingPartitionReassignment> = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i32, p))
            .filter(|(i, p)| {
                (!p.adding_replicas.is_empty() || !p.removing_replicas.is_empty())
                    && wanted(name, *i)
            })
            .map(|(i, p)| OngoingPartitionReassignment {
                partition_index: i,
                replicas: p.replicas.iter().map(|r| r.node.0).collect(),
                adding_replicas: p.adding_replicas.iter().map(|n| n.0).collect(),
                removing_replicas: p.removing_replicas.iter().map(|n| n.0).collect(),
            })
            .collect();
        if !partitions.is_empty() {
            out.push(OngoingTopicReassignment {
                name: name.clone(),
                partitions,
            });
        }
    }
    out
}
