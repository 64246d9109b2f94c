//! DescribeQuorum v0-v2 (KIP-595, KIP-919): the controller's Raft quorum as
//! this node sees it, for `kafka-metadata-quorum describe --status`.
//!
//! Kafka serves it for the metadata log, topic `__cluster_metadata`
//! partition 0; the quorum here is sluice's openraft group, so its Raft term
//! is the leader epoch and the last applied index the high watermark. Only
//! the controller leader knows how far each voter has replicated: a
//! follower answers with the leader and term it knows and `-1` for the
//! voters' log ends. A single node (no `controller_voters`) runs no quorum
//! and says so with `INVALID_REQUEST`.

use sluice_codec::describe_quorum_request::DescribeQuorumRequest;
use sluice_codec::describe_quorum_response::{
    DescribeQuorumResponse, Listener, Node, PartitionData, ReplicaState, TopicData,
};
use sluice_codec::ErrorCode;

use crate::state::ShardState;

/// The name Kafka gives its metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// The listener name the voters' controller addresses are given under.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub fn handle(state: &ShardState, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let Some(controller) = &state.config.controller else {
        return DescribeQuorumResponse {
            error_code: ErrorCode::INVALID_REQUEST.0,
            error_message: Some(
                "this node runs no controller quorum: it is a single node (no controller_voters)"
                    .into(),
            ),
            ..Default::default()
        };
    };
    let quorum = controller.quorum();
    let metadata = controller.metadata();
    let unknown = -1i64;
    let voters: Vec<ReplicaState> = quorum
        .voters
        .iter()
        .map(|v| ReplicaState {
            replica_id: v.node.0,
            log_end_offset: match (quorum.is_leader, v.matched_index) {
                (true, Some(i)) => i as i64,
                (true, None) => 0,
                (false, _) if Some(v.node) == quorum.leader => {
                    quorum.last_log_index.map_or(unknown, |i| i as i64)
                }
                (false, _) => unknown,
            },
            last_fetch_timestamp: unknown,
            last_caught_up_timestamp: unknown,
            ..Default::default()
        })
        .collect();
    // Registered brokers that are not voters follow the metadata as observers.
    let observers: Vec<ReplicaState> = metadata
        .brokers
        .keys()
        .filter(|n| !quorum.voters.iter().any(|v| v.node == **n))
        .map(|n| ReplicaState {
            replica_id: n.0,
            log_end_offset: unknown,
            last_fetch_timestamp: unknown,
            last_caught_up_timestamp: unknown,
            ..Default::default()
        })
        .collect();
    let partition = |index: i32| {
        if index != 0 {
            return PartitionData {
                partition_index: index,
                error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                error_message: Some(format!("{METADATA_TOPIC} has partition 0 only")),
                ..Default::default()
            };
        }
        PartitionData {
            partition_index: 0,
            error_code: 0,
            error_message: None,
            leader_id: quorum.leader.map_or(-1, |n| n.0),
            leader_epoch: i32::try_from(quorum.term).unwrap_or(i32::MAX),
            high_watermark: quorum.applied_index.map_or(0, |i| i as i64),
            current_voters: voters.clone(),
            observers: observers.clone(),
        }
    };
    let topics = req
        .topics
        .iter()
        .map(|t| TopicData {
            topic_name: t.topic_name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    if t.topic_name == METADATA_TOPIC {
                        partition(p.partition_index)
                    } else {
                        PartitionData {
                            partition_index: p.partition_index,
                            error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                            error_message: Some(format!(
                                "the quorum's log is {METADATA_TOPIC}, not {}",
                                t.topic_name
                            )),
                            ..Default::default()
                        }
                    }
                })
                .collect(),
        })
        .collect();
    let nodes = quorum
        .voters
        .iter()
        .map(|v| Node {
            node_id: v.node.0,
            listeners: listener(&v.addr).into_iter().collect(),
        })
        .collect();
    DescribeQuorumResponse {
        error_code: 0,
        error_message: None,
        topics,
        nodes,
    }
}

/// `host:port` (or `[v6]:port`) as a listener; `None` when it does not parse.
fn listener(addr: &str) -> Option<Listener> {
    let (host, port) = addr.rsplit_once(':')?;
    Some(Listener {
        name: CONTROLLER_LISTENER.into(),
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        port: port.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::listener;

    #[test]
    fn voter_addresses_become_listeners() {
        let l = listener("127.0.0.2:9093").expect("parses");
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.2", 9093));
        let l = listener("[::1]:9093").expect("parses");
        assert_eq!((l.host.as_str(), l.port), ("::1", 9093));
        assert!(listener("no-port").is_none());
        assert!(listener("host:99999").is_none());
    }
}
