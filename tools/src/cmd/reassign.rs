//! `sluice cluster reassign`: move partitions between brokers through
//! AlterPartitionReassignments and watch them with
//! ListPartitionReassignments, like Kafka's `kafka-reassign-partitions`;
//! move a replica to another shard of its broker through
//! AlterReplicaLogDirs (a shard is the broker's "log dir" `shard-N`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args};
use sluice_codec::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use sluice_codec::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic, AlterReplicaLogDirsRequest,
};
use sluice_codec::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};

use crate::cmd::config::{describe_error, runtime_error, usage_error, Session};

/// Pause between two looks at the moves in progress (`--wait-ms`).
const WAIT_POLL: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["replicas", "cancel", "list", "drain"])
))]
pub struct ReassignArgs {
    /// The topic of the partition to move (with --replicas or --cancel).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// The partition to move (with --replicas or --cancel).
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// Move the partition to these brokers (ids, the preferred leader
    /// first), e.g. 1,2,4. New replicas copy the log from the leader; the
    /// move completes once they have caught up, then the replicas left out
    /// drop theirs. A leader left out hands over to an in-sync new replica.
    /// ID:SHARD also puts that broker's replica on that shard (core) of the
    /// broker, e.g. 1:1,2,3: the log stays in the broker's data dir, the old
    /// shard closes it and the new one opens it (a leader moved this way
    /// starts a new leader epoch; clients follow as after a failover).
    /// Needs the controller (a cluster, or a node with controller_voters).
    #[arg(long, value_delimiter = ',', value_name = "ID[:SHARD],...", value_parser = parse_replica)]
    replicas: Option<Vec<ReplicaSpec>>,
    /// Cancel the move in progress of the partition: the replicas it added
    /// go, the old ones stay.
    #[arg(long)]
    cancel: bool,
    /// List the moves in progress: each partition's replicas (old and new),
    /// those being added and those being removed.
    #[arg(long)]
    list: bool,
    /// Move every replica off broker ID (before removing it): each goes to
    /// the live broker not yet holding the partition that holds the fewest
    /// replicas. Topics that live on one node only are not moved.
    #[arg(long, value_name = "ID")]
    drain: Option<i32>,
    /// Wait up to this long for the moves started to complete, in ms (0:
    /// return once they have started).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    wait_ms: u64,
}

/// (topic, partition, new replicas or `None` to cancel).
type Move = (String, i32, Option<Vec<i32>>);

/// One replica of `--replicas`: a broker, and the shard asked for, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReplicaSpec {
    node: i32,
    shard: Option<u16>,
}

/// `ID` or `ID:SHARD`.
fn parse_replica(s: &str) -> Result<ReplicaSpec, String> {
    let (node, shard) = match s.split_once(':') {
        Some((n, sh)) => (n, Some(sh)),
        None => (s, None),
    };
    let node = node
        .trim()
        .parse::<i32>()
        .map_err(|_| format!("{node:?} is not a broker id"))?;
    let shard = shard
        .map(|sh| {
            sh.trim()
                .parse::<u16>()
                .map_err(|_| format!("{sh:?} is not a shard number"))
        })
        .transpose()?;
    Ok(ReplicaSpec { node, shard })
}

pub fn run(s: &mut Session, args: ReassignArgs) -> anyhow::Result<()> {
    if args.list {
        return list(s);
    }
    let mut shard_moves: Vec<(i32, u16)> = Vec::new();
    let moves: Vec<Move> = if let Some(broker) = args.drain {
        drain_plan(s, broker)?
    } else {
        let (Some(topic), Some(partition)) = (args.topic.clone(), args.partition) else {
            return Err(usage_error(
                "--replicas and --cancel need --topic and --partition",
            ));
        };
        if args.cancel {
            vec![(topic, partition, None)]
        } else {
            let specs = args.replicas.clone().unwrap_or_default();
            let nodes: Vec<i32> = specs.iter().map(|r| r.node).collect();
            shard_moves = specs
                .iter()
                .filter_map(|r| Some((r.node, r.shard?)))
                .collect();
            // A move between the shards of the brokers that already hold
            // the partition, in their order, needs no reassignment.
            let same_brokers = !shard_moves.is_empty()
                && s.topic(&topic, false)?
                    .partitions
                    .iter()
                    .find(|p| p.partition == partition)
                    .is_some_and(|p| p.replicas == nodes);
            if same_brokers {
                Vec::new()
            } else {
                vec![(topic, partition, Some(nodes))]
            }
        }
    };
    if moves.is_empty() && shard_moves.is_empty() {
        println!("Nothing to move.");
        return Ok(());
    }
    let started = if moves.is_empty() {
        Vec::new()
    } else {
        alter(s, &moves)?
    };
    if let (Some(topic), Some(partition)) = (&args.topic, args.partition) {
        move_shards(s, topic, partition, &shard_moves)?;
    }
    if args.wait_ms > 0 && !started.is_empty() {
        wait(s, &started, Duration::from_millis(args.wait_ms))?;
        println!("Done: {} partition(s) moved.", started.len());
    }
    Ok(())
}

/// Puts each broker's replica of the partition on the shard asked for
/// (AlterReplicaLogDirs to that broker, the log dir naming the shard);
/// errors if any was refused.
fn move_shards(
    s: &mut Session,
    topic: &str,
    partition: i32,
    shard_moves: &[(i32, u16)],
) -> anyhow::Result<()> {
    let mut failed = 0;
    for &(node, shard) in shard_moves {
        let body = RequestBody::AlterReplicaLogDirs(AlterReplicaLogDirsRequest {
            dirs: vec![AlterReplicaLogDir {
                path: format!("shard-{shard}"),
                topics: vec![AlterReplicaLogDirTopic {
                    name: topic.to_string(),
                    partitions: vec![partition],
                }],
            }],
        });
        let ResponseBody::AlterReplicaLogDirs(r) = s.call(Some(node), &body)? else {
            unreachable!("call() checks the response type");
        };
        let code = r
            .results
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .map_or(ErrorCode::UNKNOWN_SERVER_ERROR, |p| ErrorCode(p.error_code));
        if code.is_none() {
            println!("{topic}-{partition}: replica on broker {node} moving to shard {shard}");
            continue;
        }
        failed += 1;
        let why = match code {
            ErrorCode::LOG_DIR_NOT_FOUND => format!("broker {node} has no shard {shard}"),
            ErrorCode::REPLICA_NOT_AVAILABLE => {
                format!("broker {node} holds no replica of it")
            }
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => "no such topic or partition".to_string(),
            ErrorCode::INVALID_REQUEST => {
                "the topic lives on one node, placed by hash; only topics placed by the controller move between shards".to_string()
            }
            other => describe_error(other, None),
        };
        eprintln!("{topic}-{partition}: not moved to shard {shard} of broker {node}: {why}");
    }
    if failed > 0 {
        return Err(runtime_error(format!(
            "{failed} of {} shard move(s) refused",
            shard_moves.len()
        )));
    }
    Ok(())
}

/// Sends the moves; prints each one's result. Returns the partitions whose
/// move started (not cancels); errors if any was refused.
fn alter(s: &mut Session, moves: &[Move]) -> anyhow::Result<Vec<(String, i32)>> {
    let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for (topic, partition, replicas) in moves {
        topics
            .entry(topic)
            .or_default()
            .push(ReassignablePartition {
                partition_index: *partition,
                replicas: replicas.clone(),
            });
    }
    let body = RequestBody::AlterPartitionReassignments(AlterPartitionReassignmentsRequest {
        topics: topics
            .into_iter()
            .map(|(name, partitions)| ReassignableTopic {
                name: name.to_string(),
                partitions,
            })
            .collect(),
        ..Default::default()
    });
    let ResponseBody::AlterPartitionReassignments(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let code = ErrorCode(r.error_code);
    if !code.is_none() {
        return Err(runtime_error(format!(
            "AlterPartitionReassignments failed: {}",
            describe_error(code, r.error_message.as_deref())
        )));
    }
    let mut started = Vec::new();
    let mut failed = 0;
    for t in &r.responses {
        for p in &t.partitions {
            let asked = moves
                .iter()
                .find(|(n, i, _)| n == &t.name && *i == p.partition_index)
                .and_then(|m| m.2.as_ref());
            let code = ErrorCode(p.error_code);
            if !code.is_none() {
                failed += 1;
                eprintln!(
                    "{}-{}: {}",
                    t.name,
                    p.partition_index,
                    describe_error(code, p.error_message.as_deref())
                );
                continue;
            }
            match asked {
                Some(replicas) => {
                    println!(
                        "{}-{}: moving to {}",
                        t.name,
                        p.partition_index,
                        join(replicas)
                    );
                    started.push((t.name.clone(), p.partition_index));
                }
                None => println!("{}-{}: move cancelled", t.name, p.partition_index),
            }
        }
    }
    if failed > 0 {
        return Err(runtime_error(format!(
            "{failed} of {} partition(s) refused",
            moves.len()
        )));
    }
    Ok(started)
}

/// (topic, partition, replicas, adding, removing) of every move in progress.
type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

fn ongoing(s: &mut Session) -> anyhow::Result<Vec<Ongoing>> {
    let body = RequestBody::ListPartitionReassignments(ListPartitionReassignmentsRequest {
        topics: None,
        ..Default::default()
    });
    let ResponseBody::ListPartitionReassignments(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let code = ErrorCode(r.error_code);
    if !code.is_none() {
        return Err(runtime_error(format!(
            "ListPartitionReassignments failed: {}",
            describe_error(code, r.error_message.as_deref())
        )));
    }
    let mut out: Vec<Ongoing> = r
        .topics
        .into_iter()
        .flat_map(|t| {
            t.partitions.into_iter().map(move |p| {
                (
                    t.name.clone(),
                    p.partition_index,
                    p.replicas,
                    p.adding_replicas,
                    p.removing_replicas,
                )
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

fn list(s: &mut Session) -> anyhow::Result<()> {
    let moves = ongoing(s)?;
    if moves.is_empty() {
        println!("No reassignment in progress.");
        return Ok(());
    }
    println!(
        "{:<30}  {:>9}  {:<16}  {:<16}  REMOVING",
        "TOPIC", "PARTITION", "REPLICAS", "ADDING"
    );
    for (topic, partition, replicas, adding, removing) in moves {
        println!(
            "{topic:<30}  {partition:>9}  {:<16}  {:<16}  {}",
            join(&replicas),
            join(&adding),
            join(&removing)
        );
    }
    Ok(())
}

fn wait(s: &mut Session, started: &[(String, i32)], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<(String, i32)> = ongoing(s)?
            .into_iter()
            .map(|m| (m.0, m.1))
            .filter(|tp| started.contains(tp))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = left.iter().map(|(t, p)| format!("{t}-{p}")).collect();
            return Err(runtime_error(format!(
                "still moving after {} ms: {}",
                limit.as_millis(),
                names.join(", ")
            )));
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// A move for every partition with a replica on `broker`: the replica goes
/// to the live broker outside the partition holding the fewest replicas.
fn drain_plan(s: &mut Session, broker: i32) -> anyhow::Result<Vec<Move>> {
    let topics = s.topics()?;
    let live: BTreeSet<i32> = s.brokers.keys().copied().collect();
    let mut load: BTreeMap<i32, usize> = live.iter().map(|&b| (b, 0)).collect();
    for p in topics.iter().flat_map(|t| t.partitions.iter()) {
        for r in &p.replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for t in &topics {
        for p in &t.partitions {
            if !p.replicas.contains(&broker) {
                continue;
            }
            let Some(&to) = load
                .iter()
                .filter(|(b, _)| **b != broker && !p.replicas.contains(b))
                .min_by_key(|(b, n)| (**n, **b))
                .map(|(b, _)| b)
            else {
                return Err(runtime_error(format!(
                    "{}-{}: no live broker outside its replicas {} can take the replica of broker {broker}",
                    t.name,
                    p.partition,
                    join(&p.replicas)
                )));
            };
            *load.entry(to).or_default() += 1;
            let mut target: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|&r| r != broker)
                .collect();
            target.push(to);
            moves.push((t.name.clone(), p.partition, Some(target)));
        }
    }
    Ok(moves)
}

fn join(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_a_broker_id_with_an_optional_shard() {
        assert_eq!(
            parse_replica("1"),
            Ok(ReplicaSpec {
                node: 1,
                shard: None
            })
        );
        assert_eq!(
            parse_replica("1:3"),
            Ok(ReplicaSpec {
                node: 1,
                shard: Some(3)
            })
        );
        for bad in ["", "x", "1:", "1:x", ":1", "1:-1", "1:2:3"] {
            assert!(parse_replica(bad).is_err(), "{bad:?}");
        }
    }
}
