//! DescribeQuorum v0-v2 (KIP-595, KIP-919): the controller's Raft quorum as
//! its leader sees it, for `kafka-metadata-quorum describe --status` and
//! `--replication`.
//!
//! Kafka serves it for the metadata log, topic `__cluster_metadata`
//! partition 0; the quorum here is sluice's openraft group, so its Raft term
//! is the leader epoch and the leader's last applied index the high
//! watermark. Only the controller leader knows how far each member has
//! replicated, so any other node asks the leader over the controller
//! connection (Kafka's brokers forward the request to the active
//! controller) and answers with the leader's view: every node gives the
//! same answer. While no leader is known the answer is
//! `NOT_LEADER_OR_FOLLOWER`, and `REQUEST_TIMED_OUT` when the leader does
//! not answer within a second (both retriable). A voter's or observer's
//! last caught-up time is now when its log reaches the leader's end, else
//! unknown (-1), as is the last fetch time (openraft does not track them).
//! Observers are the registered brokers that do not vote (their log ends
//! are known when they follow the log as learners). A single node (no
//! `controller_voters`) runs no quorum and says so with `INVALID_REQUEST`.

use shard_router::controller::{ClusterMetadata, QuorumInfo, VoterInfo, WriteError};
use shard_router::NodeId;
use sluice_codec::describe_quorum_request::DescribeQuorumRequest;
use sluice_codec::describe_quorum_response::{
    DescribeQuorumResponse, Listener, Node, PartitionData, ReplicaState, TopicData,
};
use sluice_codec::ErrorCode;

use crate::state::{now_ms, ShardState};

/// The name Kafka gives its metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// The listener name the voters' controller addresses are given under.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// Kafka's value for an unknown offset or time.
const UNKNOWN: i64 = -1;

/// The state of partition 0 of the metadata log from the leader's view
/// `quorum`, with the registered brokers of `metadata` that do not vote as
/// observers, at wall-clock time `now_ms`. Pure.
pub(crate) fn quorum_partition(
    quorum: &QuorumInfo,
    metadata: &ClusterMetadata,
    now_ms: i64,
) -> PartitionData {
    let leader_end = quorum.last_log_index.map_or(UNKNOWN, |i| i as i64);
    let state = |node: NodeId, member: Option<&VoterInfo>| {
        let log_end = match member.and_then(|m| m.matched_index) {
            Some(i) => i as i64,
            None if Some(node) == quorum.leader => leader_end,
            None => UNKNOWN,
        };
        ReplicaState {
            replica_id: node.0,
            log_end_offset: log_end,
            last_fetch_timestamp: UNKNOWN,
            last_caught_up_timestamp: if log_end >= 0 && log_end >= leader_end {
                now_ms
            } else {
                UNKNOWN
            },
            ..Default::default()
        }
    };
    let current_voters = quorum
        .voters
        .iter()
        .map(|v| state(v.node, Some(v)))
        .collect();
    let observers = metadata
        .brokers
        .keys()
        .filter(|n| !quorum.voters.iter().any(|v| v.node == **n))
        .map(|n| state(*n, quorum.learners.iter().find(|l| l.node == *n)))
        .collect();
    PartitionData {
        partition_index: 0,
        error_code: 0,
        error_message: None,
        leader_id: quorum.leader.map_or(-1, |n| n.0),
        leader_epoch: i32::try_from(quorum.term).unwrap_or(i32::MAX),
        high_watermark: quorum.applied_index.map_or(0, |i| i as i64),
        current_voters,
        observers,
    }
}

pub async fn handle(state: &ShardState, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
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
    let quorum = match controller.leader_quorum().await {
        Ok(q) => q,
        Err(e) => {
            let code = match e {
                WriteError::NotLeader { .. } => ErrorCode::NOT_LEADER_OR_FOLLOWER,
                _ => ErrorCode::REQUEST_TIMED_OUT,
            };
            return DescribeQuorumResponse {
                error_code: code.0,
                error_message: Some(format!(
                    "the controller leader's view of the quorum is not available: {e}"
                )),
                ..Default::default()
            };
        }
    };
    let answer = quorum_partition(&quorum, &controller.metadata(), now_ms());
    let partition = |index: i32| {
        if index != 0 {
            return PartitionData {
                partition_index: index,
                error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                error_message: Some(format!("{METADATA_TOPIC} has partition 0 only")),
                ..Default::default()
            };
        }
        answer.clone()
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
    use shard_router::controller::{BrokerRegistration, Command};

    use super::*;

    fn member(node: i32, matched_index: Option<u64>) -> VoterInfo {
        VoterInfo {
            node: NodeId(node),
            addr: format!("127.0.0.{node}:9093"),
            matched_index,
        }
    }

    #[test]
    fn the_leaders_view_with_log_ends_lag_and_observers() {
        let quorum = QuorumInfo {
            leader: Some(NodeId(2)),
            term: 7,
            applied_index: Some(40),
            last_log_index: Some(41),
            voters: vec![member(1, Some(41)), member(2, None), member(3, Some(30))],
            learners: vec![member(4, Some(41))],
            is_leader: true,
        };
        let mut metadata = ClusterMetadata::new();
        for node in [1, 2, 3, 4, 5] {
            metadata
                .apply(&Command::RegisterBroker(BrokerRegistration {
                    node: NodeId(node),
                    host: "h".into(),
                    port: 9092,
                    shards: 1,
                    replication_ports: Vec::new(),
                }))
                .expect("registers");
        }
        let p = quorum_partition(&quorum, &metadata, 1000);
        assert_eq!((p.leader_id, p.leader_epoch, p.high_watermark), (2, 7, 40));
        let view = |r: &[ReplicaState]| -> Vec<(i32, i64, i64, i64)> {
            r.iter()
                .map(|s| {
                    (
                        s.replica_id,
                        s.log_end_offset,
                        s.last_fetch_timestamp,
                        s.last_caught_up_timestamp,
                    )
                })
                .collect()
        };
        // The leader's own end is its last log index; a lagging voter has
        // no caught-up time.
        assert_eq!(
            view(&p.current_voters),
            vec![(1, 41, -1, 1000), (2, 41, -1, 1000), (3, 30, -1, -1)]
        );
        // Node 5 is registered but not (yet) a learner: unknown.
        assert_eq!(view(&p.observers), vec![(4, 41, -1, 1000), (5, -1, -1, -1)]);
    }

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
