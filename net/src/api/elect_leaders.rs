//! ElectLeaders v0-v2 (KIP-183, KIP-460): preferred or unclean leader
//! election, as `kafka-leader-election` and `sluice cluster elect` ask.
//!
//! Partitions of replicated topics go to the controller as one
//! `ElectLeaders` command (forwarded to the controller leader like every
//! write); the answer comes once it is committed, and the replicas take
//! their new roles from the metadata. A partition of a topic this node
//! serves on its own (a single node, or replication factor 1) has one
//! replica, which leads: `ELECTION_NOT_NEEDED`. A null topic list means
//! every partition, and then, as Kafka answers, only partitions that needed
//! an election are listed.

use std::rc::Rc;

use shard_router::controller::{ElectionError, ElectionResult, ElectionType, Outcome, WriteError};
use shard_router::NodeId;
use sluice_codec::elect_leaders_request::ElectLeadersRequest;
use sluice_codec::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use sluice_codec::ErrorCode;

use crate::state::ShardState;

/// Kafka's `ElectionType` values.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// One partition's answer: the error and its message.
type Answer = (ErrorCode, Option<String>);

fn answer_of(result: &Result<NodeId, ElectionError>) -> Answer {
    match result {
        Ok(_) => (ErrorCode::NONE, None),
        Err(ElectionError::UnknownTopicOrPartition) => (
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            Some("no such topic or partition".into()),
        ),
        Err(ElectionError::ElectionNotNeeded) => (
            ErrorCode::ELECTION_NOT_NEEDED,
            Some("leader election not needed for this partition".into()),
        ),
        Err(ElectionError::PreferredLeaderNotAvailable) => (
            ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
            Some("the preferred replica is fenced or not in the ISR".into()),
        ),
        Err(ElectionError::EligibleLeadersNotAvailable) => (
            ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
            Some("no replica is on a live broker".into()),
        ),
    }
}

pub async fn handle(state: &Rc<ShardState>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let election = match req.election_type {
        PREFERRED => ElectionType::Preferred,
        UNCLEAN => ElectionType::Unclean,
        other => {
            tracing::debug!(
                election_type = other,
                "ElectLeaders with an unknown election type"
            );
            return ElectLeadersResponse {
                error_code: ErrorCode::INVALID_REQUEST.0,
                ..Default::default()
            };
        }
    };
    let table = state.topics();
    let controller = state.config.controller.clone();
    let cluster = controller.as_ref().map(|c| c.metadata());
    let replicated = |name: &str| {
        cluster.as_ref().is_some_and(|c| {
            table.get(name).is_some_and(|m| {
                m.is_replicated()
                    && c.topics
                        .get(name)
                        .is_some_and(|t| t.topic_id == *m.id.as_bytes())
            })
        })
    };
    // Every (topic, partition) asked for, in request order, with the answer
    // known here; those left `None` go to the controller.
    let mut asked: Vec<(String, i32, Option<Answer>)> = Vec::new();
    let mut for_controller: Option<Vec<(String, i32)>> = None;
    match req.topic_partitions {
        None => {
            if cluster.is_some() {
                for_controller = Some(Vec::new());
            }
        }
        Some(topics) => {
            let mut wanted = Vec::new();
            for t in topics {
                for p in t.partitions {
                    let answer = if replicated(&t.topic) {
                        wanted.push((t.topic.clone(), p));
                        None
                    } else {
                        match table.get(&t.topic) {
                            Some(m) if (0..m.partitions).contains(&p) => {
                                Some(answer_of(&Err(ElectionError::ElectionNotNeeded)))
                            }
                            _ => Some(answer_of(&Err(ElectionError::UnknownTopicOrPartition))),
                        }
                    };
                    asked.push((t.topic.clone(), p, answer));
                }
            }
            if !wanted.is_empty() {
                for_controller = Some(wanted);
            }
        }
    }
    let all = asked.is_empty();
    let mut error_code = ErrorCode::NONE;
    if let (Some(controller), Some(wanted)) = (controller, for_controller) {
        let command = shard_router::controller::Command::ElectLeaders {
            election,
            partitions: (!all).then_some(wanted),
        };
        match controller.write(command).await {
            Ok(Outcome::LeadersElected { results }) => fill(&mut asked, all, results),
            Ok(other) => {
                tracing::error!(
                    ?other,
                    "the controller answered an election with another outcome"
                );
                error_code = ErrorCode::UNKNOWN_SERVER_ERROR;
            }
            Err(e) => {
                let code = match e {
                    WriteError::Unavailable(_) | WriteError::NotLeader { .. } => {
                        ErrorCode::REQUEST_TIMED_OUT
                    }
                    _ => ErrorCode::UNKNOWN_SERVER_ERROR,
                };
                for a in asked.iter_mut().filter(|a| a.2.is_none()) {
                    a.2 = Some((code, Some(e.to_string())));
                }
                if all {
                    error_code = code;
                }
            }
        }
    }
    ElectLeadersResponse {
        error_code: error_code.0,
        replica_election_results: by_topic(asked),
        ..Default::default()
    }
}

/// Puts the controller's results into `asked` (in request order), or, for
/// an election of every partition, lists them as they come.
fn fill(asked: &mut Vec<(String, i32, Option<Answer>)>, all: bool, results: Vec<ElectionResult>) {
    if all {
        asked.extend(
            results
                .into_iter()
                .map(|r| (r.topic, r.partition, Some(answer_of(&r.result)))),
        );
        return;
    }
    let mut results = results.into_iter();
    for a in asked.iter_mut().filter(|a| a.2.is_none()) {
        // The controller answers the partitions sent, in the order sent.
        a.2 = Some(match results.next() {
            Some(r) if r.topic == a.0 && r.partition == a.1 => answer_of(&r.result),
            _ => (
                ErrorCode::UNKNOWN_SERVER_ERROR,
                Some("the controller's answer does not match the request".into()),
            ),
        });
    }
}

/// Groups answers by topic, topics in order of first appearance.
fn by_topic(asked: Vec<(String, i32, Option<Answer>)>) -> Vec<ReplicaElectionResult> {
    let mut out: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition_id, answer) in asked {
        let (code, message) =
            answer.unwrap_or((ErrorCode::UNKNOWN_SERVER_ERROR, Some("no answer".into())));
        let result = PartitionResult {
            partition_id,
            error_code: code.0,
            error_message: message,
        };
        match out.iter_mut().find(|r| r.topic == topic) {
            Some(r) => r.partition_result.push(result),
            None => out.push(ReplicaElectionResult {
                topic,
                partition_result: vec![result],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_grouped_by_topic_in_request_order() {
        let none = Some((ErrorCode::NONE, None));
        let asked = vec![
            ("b".to_string(), 1, none.clone()),
            ("a".to_string(), 0, none.clone()),
            ("b".to_string(), 0, None),
        ];
        let out = by_topic(asked);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].topic, "b");
        let parts: Vec<(i32, i16)> = out[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(parts, vec![(1, 0), (0, ErrorCode::UNKNOWN_SERVER_ERROR.0)]);
        assert_eq!(out[1].topic, "a");
    }

    #[test]
    fn controller_results_fill_the_partitions_it_was_sent() {
        let mut asked = vec![
            (
                "local".to_string(),
                0,
                Some(answer_of(&Err(ElectionError::ElectionNotNeeded))),
            ),
            ("r".to_string(), 0, None),
            ("r".to_string(), 1, None),
        ];
        fill(
            &mut asked,
            false,
            vec![
                ElectionResult {
                    topic: "r".into(),
                    partition: 0,
                    result: Ok(NodeId(2)),
                },
                ElectionResult {
                    topic: "r".into(),
                    partition: 1,
                    result: Err(ElectionError::PreferredLeaderNotAvailable),
                },
            ],
        );
        let codes: Vec<ErrorCode> = asked
            .iter()
            .map(|a| a.2.clone().expect("answered").0)
            .collect();
        assert_eq!(
            codes,
            vec![
                ErrorCode::ELECTION_NOT_NEEDED,
                ErrorCode::NONE,
                ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE
            ]
        );
    }
}
