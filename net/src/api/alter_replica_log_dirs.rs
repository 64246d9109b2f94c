//! AlterReplicaLogDirs v1-v2: move this broker's replica of a partition to
//! another of its shards (Kafka moves a replica between the log directories
//! of one broker; sluice has one data directory per node and places
//! replicas on shards, so the "log dir" named is a shard: `shard-N`, or any
//! path whose last component is that). `sluice cluster reassign --replicas
//! ID:SHARD,...` sends it to the broker concerned.
//!
//! Each partition is one `MoveReplicaShard` command to the controller (the
//! data stays where it is: the old shard closes the log and the new one
//! opens it once the metadata reaches the node). Errors per partition:
//! `LOG_DIR_NOT_FOUND` (not a shard name, or a shard this broker does not
//! run), `REPLICA_NOT_AVAILABLE` (this broker holds no replica of it),
//! `UNKNOWN_TOPIC_OR_PARTITION`, `INVALID_REQUEST` (a topic that lives on
//! this node alone, placed by hash: only the controller places replicas),
//! `REQUEST_TIMED_OUT` (no controller reachable). The response has no
//! message field: the reason is logged.

use std::path::Path;

use shard_router::controller::{Command, MetadataError, WriteError};
use shard_router::{NodeId, ShardId};
use sluice_codec::alter_replica_log_dirs_request::AlterReplicaLogDirsRequest;
use sluice_codec::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult, AlterReplicaLogDirsResponse,
};
use sluice_codec::ErrorCode;

use crate::state::ShardState;

/// The shard a log dir path names (`shard-N`, as its last component). Pure.
pub fn shard_of_path(path: &str) -> Option<u16> {
    Path::new(path)
        .file_name()?
        .to_str()?
        .strip_prefix("shard-")?
        .parse()
        .ok()
}

/// The log dir name of a shard, as `shard_of_path` reads it.
pub fn path_of_shard(shard: u16) -> String {
    format!("shard-{shard}")
}

pub async fn handle(
    state: &ShardState,
    req: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
    for dir in req.dirs {
        let shard = shard_of_path(&dir.path);
        for t in dir.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let result = match shard {
                    Some(shard) => move_one(state, &t.name, p, shard).await,
                    None => Err((
                        ErrorCode::LOG_DIR_NOT_FOUND,
                        format!("{:?} names no shard (shard-N)", dir.path),
                    )),
                };
                let error_code = match result {
                    Ok(()) => 0,
                    Err((code, message)) => {
                        tracing::info!(topic = t.name, partition = p, %message, "replica not moved to another shard");
                        code.0
                    }
                };
                partitions.push(AlterReplicaLogDirPartitionResult {
                    partition_index: p,
                    error_code,
                });
            }
            match results.iter_mut().find(|r| r.topic_name == t.name) {
                Some(r) => r.partitions.extend(partitions),
                None => results.push(AlterReplicaLogDirTopicResult {
                    topic_name: t.name,
                    partitions,
                }),
            }
        }
    }
    AlterReplicaLogDirsResponse {
        throttle_time_ms: 0,
        results,
    }
}

async fn move_one(
    state: &ShardState,
    topic: &str,
    partition: i32,
    shard: u16,
) -> Result<(), (ErrorCode, String)> {
    let replicated = state.topics().get(topic).map(|m| m.is_replicated());
    let controller = match (&state.config.controller, replicated) {
        (Some(c), Some(true) | None) => c,
        (None, None) => {
            return Err((
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {topic} does not exist"),
            ))
        }
        _ => {
            return Err((
                ErrorCode::INVALID_REQUEST,
                format!(
                    "topic {topic} lives on node {} alone, placed by hash; only the controller moves replicas",
                    state.config.node_id
                ),
            ))
        }
    };
    let command = Command::MoveReplicaShard {
        topic: topic.to_string(),
        partition,
        node: NodeId(state.config.node_id),
        shard: ShardId(shard),
    };
    match controller.write(command).await {
        Ok(_) => Ok(()),
        Err(WriteError::Refused(e)) => {
            let code = match &e {
                MetadataError::UnknownTopic(_) | MetadataError::UnknownPartition { .. } => {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                }
                MetadataError::UnknownShard { .. } => ErrorCode::LOG_DIR_NOT_FOUND,
                MetadataError::NoReplicaOnNode { .. } | MetadataError::UnknownBroker(_) => {
                    ErrorCode::REPLICA_NOT_AVAILABLE
                }
                _ => ErrorCode::UNKNOWN_SERVER_ERROR,
            };
            Err((code, e.to_string()))
        }
        Err(e) => Err((ErrorCode::REQUEST_TIMED_OUT, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_dir_names_a_shard_by_its_last_component() {
        assert_eq!(shard_of_path("shard-0"), Some(0));
        assert_eq!(shard_of_path("shard-12"), Some(12));
        assert_eq!(shard_of_path("/var/lib/sluice/shard-3"), Some(3));
        assert_eq!(shard_of_path(&path_of_shard(7)), Some(7));
        for bad in [
            "",
            "shard-",
            "shard-x",
            "shard--1",
            "/data",
            "shard-70000",
            "shards-1",
        ] {
            assert_eq!(shard_of_path(bad), None, "{bad:?}");
        }
    }
}
