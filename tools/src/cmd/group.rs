//! `sluice group list | describe | reset-offsets | delete`, and the offset
//! requests `sluice consume` shares: OffsetFetch and the "simple" (memberless,
//! generation -1) OffsetCommit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use sluice_codec::delete_groups_request::DeleteGroupsRequest;
use sluice_codec::describe_groups_request::DescribeGroupsRequest;
use sluice_codec::describe_groups_response::DescribedGroup;
use sluice_codec::list_groups_request::ListGroupsRequest;
use sluice_codec::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_codec::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use sluice_codec::{ApiKey, ErrorCode, RequestBody, ResponseBody};

use crate::cmd::config::{
    describe_error, not_found, runtime_error, usage_error, ClientArgs, Progress, Session,
};
use crate::cmd::consume::{parse_position, resolve_positions, Position};

pub type TopicPartition = (String, i32);

/// Partitions per OffsetCommit request of a reset (progress is drawn between).
const COMMIT_CHUNK: usize = 1000;
/// How long to retry while a coordinator loads or moves.
const COORDINATOR_RETRY: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
#[command(after_help = crate::cmd::config::EXIT_CODES_HELP)]
pub struct GroupArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List consumer groups, one per line.
    List {
        /// Also show each group's state and protocol type.
        #[arg(short, long)]
        long: bool,
    },
    /// Show a group's state, members and, per partition, the committed
    /// offset, the log end offset and the lag between them.
    Describe { group: String },
    /// Move a group's committed offsets. Shows the plan; changes nothing
    /// without --execute. The group must have no active members.
    ResetOffsets {
        group: String,
        /// Topic whose offsets to reset.
        #[arg(short, long, required = true)]
        topic: String,
        /// Only this partition; repeat for more (default: all).
        #[arg(short, long = "partition", value_name = "N")]
        partitions: Vec<i32>,
        /// New position: beginning, end, offset:N, timestamp:MS, or shift:N
        /// (move the committed offset by N, negative to go back).
        #[arg(long, value_name = "POSITION", value_parser = parse_reset)]
        to: Reset,
        /// Apply the change (without it, only print the plan).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups and their committed offsets (they must have no members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    To(Position),
    Shift(i64),
}

fn parse_reset(s: &str) -> Result<Reset, String> {
    if let Some(n) = s.strip_prefix("shift:") {
        return n
            .parse()
            .map(Reset::Shift)
            .map_err(|_| format!("{s:?}: shift:N needs a whole number, e.g. shift:-10"));
    }
    parse_position(s)
        .map(Reset::To)
        .map_err(|e| format!("{e} or shift:N"))
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut s = Session::connect(&args.client)?;
    match args.command {
        GroupCommand::List { long } => list(&mut s, long),
        GroupCommand::Describe { group } => describe(&mut s, &group),
        GroupCommand::ResetOffsets {
            group,
            topic,
            partitions,
            to,
            execute,
        } => reset(&mut s, &group, &topic, &partitions, to, execute),
        GroupCommand::Delete { groups } => delete(&mut s, &groups),
    }
}

fn list(s: &mut Session, long: bool) -> anyhow::Result<()> {
    s.version(ApiKey::ListGroups)?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    let nodes: Vec<i32> = s.brokers.keys().copied().collect();
    for node in nodes {
        let body = RequestBody::ListGroups(ListGroupsRequest::default());
        let ResponseBody::ListGroups(r) = s.call(Some(node), &body)? else {
            unreachable!("call() checks the response type");
        };
        let code = ErrorCode(r.error_code);
        if !code.is_none() {
            return Err(runtime_error(format!(
                "broker {node} could not list groups: {code}"
            )));
        }
        for g in r.groups {
            groups.insert(g.group_id, (g.group_state, g.protocol_type));
        }
    }
    for (id, (state, protocol)) in groups {
        if long {
            let or_dash = |v: &str| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.to_string()
                }
            };
            println!("{id}\t{}\t{}", or_dash(&state), or_dash(&protocol));
        } else {
            println!("{id}");
        }
    }
    Ok(())
}

/// DescribeGroups of one group at its coordinator.
fn describe_group(
    s: &mut Session,
    coordinator: i32,
    group: &str,
) -> anyhow::Result<DescribedGroup> {
    let body = RequestBody::DescribeGroups(DescribeGroupsRequest {
        groups: vec![group.to_string()],
        include_authorized_operations: false,
    });
    let ResponseBody::DescribeGroups(r) = s.call(Some(coordinator), &body)? else {
        unreachable!("call() checks the response type");
    };
    let g = r
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| runtime_error("DescribeGroups answered without the group"))?;
    let code = ErrorCode(g.error_code);
    if !code.is_none() && code != ErrorCode::GROUP_ID_NOT_FOUND {
        return Err(runtime_error(format!(
            "cannot describe group {group:?}: {}",
            describe_error(code, g.error_message.as_deref())
        )));
    }
    Ok(g)
}

fn group_missing(g: &DescribedGroup) -> bool {
    ErrorCode(g.error_code) == ErrorCode::GROUP_ID_NOT_FOUND || g.group_state == "Dead"
}

fn describe(s: &mut Session, group: &str) -> anyhow::Result<()> {
    let coordinator = s.coordinator(group)?;
    let g = describe_group(s, coordinator, group)?;
    let committed = fetch_offsets(s, coordinator, group, None)?;
    if group_missing(&g) && committed.is_empty() {
        return Err(not_found(format!(
            "group {group:?} does not exist; list groups with `sluice group list`"
        )));
    }
    println!(
        "Group: {group}  State: {}  Protocol: {}  Members: {}",
        if g.group_state.is_empty() {
            "-"
        } else {
            &g.group_state
        },
        if g.protocol_type.is_empty() {
            "-"
        } else {
            &g.protocol_type
        },
        g.members.len()
    );
    for m in &g.members {
        println!(
            "  member {} client {} host {}",
            m.member_id, m.client_id, m.client_host
        );
    }
    println!(
        "{:<30} {:>9} {:>14} {:>14} {:>10}",
        "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    );
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in committed.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut total_lag: i64 = 0;
    for (name, parts) in by_topic {
        let ends = match s.topic(&name, false) {
            Ok(t) => {
                let known: Vec<i32> = parts
                    .iter()
                    .copied()
                    .filter(|p| t.leader_of(*p).is_some())
                    .collect();
                s.list_offsets(&t, &known, -1)?
            }
            // Offsets of a deleted topic: no log end.
            Err(_) => BTreeMap::new(),
        };
        for p in parts {
            let c = committed[&(name.clone(), p)];
            match ends.get(&p) {
                Some(&end) => {
                    let lag = (end - c).max(0);
                    total_lag += lag;
                    println!("{name:<30} {p:>9} {c:>14} {end:>14} {lag:>10}");
                }
                None => println!("{name:<30} {p:>9} {c:>14} {:>14} {:>10}", "-", "-"),
            }
        }
    }
    println!("Total lag: {total_lag}");
    Ok(())
}

fn reset(
    s: &mut Session,
    group: &str,
    topic_name: &str,
    partitions: &[i32],
    to: Reset,
    execute: bool,
) -> anyhow::Result<()> {
    let topic = s.topic(topic_name, false)?;
    let all: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    for p in partitions {
        if !all.contains(p) {
            return Err(not_found(format!(
                "partition {p} of topic {topic_name:?} does not exist: it has partitions 0..={}",
                all.len() - 1
            )));
        }
    }
    let parts: Vec<i32> = if partitions.is_empty() {
        all
    } else {
        partitions.to_vec()
    };
    let coordinator = s.coordinator(group)?;
    if s.supports(ApiKey::DescribeGroups) {
        let g = describe_group(s, coordinator, group)?;
        if !g.members.is_empty() {
            return Err(runtime_error(format!(
                "group {group:?} has {} active member(s) (state {}); stop its consumers before resetting offsets",
                g.members.len(),
                g.group_state
            )));
        }
    }
    let wanted = vec![(topic_name.to_string(), parts.clone())];
    let current = fetch_offsets(s, coordinator, group, Some(&wanted))?;
    let target: BTreeMap<i32, i64> = match to {
        Reset::To(position) => resolve_positions(s, &topic, &parts, position)?,
        Reset::Shift(n) => {
            let earliest = s.list_offsets(&topic, &parts, -2)?;
            let latest = s.list_offsets(&topic, &parts, -1)?;
            parts
                .iter()
                .map(|&p| {
                    let from = current
                        .get(&(topic_name.to_string(), p))
                        .copied()
                        .unwrap_or(earliest[&p]);
                    (p, from.saturating_add(n).clamp(earliest[&p], latest[&p]))
                })
                .collect()
        }
    };
    println!(
        "{:<30} {:>9} {:>14} {:>14}",
        "TOPIC", "PARTITION", "CURRENT", "NEW"
    );
    for (&p, &new) in &target {
        let cur = current
            .get(&(topic_name.to_string(), p))
            .map_or("-".to_string(), i64::to_string);
        println!("{topic_name:<30} {p:>9} {cur:>14} {new:>14}");
    }
    if !execute {
        eprintln!("dry run: nothing changed; add --execute to apply");
        return Ok(());
    }
    let offsets: Vec<(TopicPartition, i64)> = target
        .iter()
        .map(|(&p, &o)| ((topic_name.to_string(), p), o))
        .collect();
    let mut progress = Progress::new();
    let mut done = 0usize;
    for chunk in offsets.chunks(COMMIT_CHUNK) {
        let map: BTreeMap<TopicPartition, i64> = chunk.iter().cloned().collect();
        commit_offsets(s, coordinator, group, &map)?;
        done += chunk.len();
        let total = offsets.len();
        progress.update(|| format!("reset {done} of {total} partitions"));
    }
    progress.finish();
    println!(
        "reset the offsets of group {group} on {} partition(s) of {topic_name}",
        offsets.len()
    );
    Ok(())
}

fn delete(s: &mut Session, groups: &[String]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for group in groups {
        let coordinator = s.coordinator(group)?;
        let body = RequestBody::DeleteGroups(DeleteGroupsRequest {
            groups_names: vec![group.clone()],
        });
        let ResponseBody::DeleteGroups(r) = s.call(Some(coordinator), &body)? else {
            unreachable!("call() checks the response type");
        };
        for res in &r.results {
            let code = ErrorCode(res.error_code);
            let why = describe_error(code, res.error_message.as_deref());
            match code {
                ErrorCode::NONE => println!("deleted group {}", res.group_id),
                ErrorCode::GROUP_ID_NOT_FOUND => missing.push(res.group_id.clone()),
                ErrorCode::NON_EMPTY_GROUP => {
                    return Err(runtime_error(format!(
                        "group {:?} still has active members ({why}); stop its consumers first",
                        res.group_id
                    )))
                }
                _ => {
                    return Err(runtime_error(format!(
                        "cannot delete group {:?}: {why}",
                        res.group_id
                    )))
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(not_found(format!(
            "group(s) {} do not exist; list groups with `sluice group list`",
            missing.join(", ")
        )));
    }
    Ok(())
}

fn retriable(code: ErrorCode) -> bool {
    [
        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode::COORDINATOR_NOT_AVAILABLE,
        ErrorCode::NOT_COORDINATOR,
    ]
    .contains(&code)
}

/// The committed offsets of `group` (None: of every topic it has). Only
/// partitions with a commit are in the answer.
pub fn fetch_offsets(
    s: &mut Session,
    coordinator: i32,
    group: &str,
    topics: Option<&[(String, Vec<i32>)]>,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let version = s.version(ApiKey::OffsetFetch)?;
    if topics.is_none() && version < 2 {
        return Err(runtime_error(
            "the broker's OffsetFetch (v1) cannot list all of a group's topics",
        ));
    }
    let deadline = Instant::now() + COORDINATOR_RETRY;
    loop {
        let body = if version >= 8 {
            RequestBody::OffsetFetch(OffsetFetchRequest {
                groups: vec![OffsetFetchRequestGroup {
                    group_id: group.to_string(),
                    member_id: None,
                    member_epoch: -1,
                    topics: topics.map(|ts| {
                        ts.iter()
                            .map(|(name, parts)| OffsetFetchRequestTopics {
                                name: name.clone(),
                                partition_indexes: parts.clone(),
                                ..OffsetFetchRequestTopics::default()
                            })
                            .collect()
                    }),
                }],
                require_stable: false,
                ..OffsetFetchRequest::default()
            })
        } else {
            RequestBody::OffsetFetch(OffsetFetchRequest {
                group_id: group.to_string(),
                topics: topics.map(|ts| {
                    ts.iter()
                        .map(|(name, parts)| OffsetFetchRequestTopic {
                            name: name.clone(),
                            partition_indexes: parts.clone(),
                        })
                        .collect()
                }),
                require_stable: false,
                ..OffsetFetchRequest::default()
            })
        };
        let ResponseBody::OffsetFetch(r) = s.call(Some(coordinator), &body)? else {
            unreachable!("call() checks the response type");
        };
        // (group error, [(topic, partition, offset, error)])
        let (code, rows): (ErrorCode, Vec<(String, i32, i64, i16)>) = if version >= 8 {
            let g = r
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| runtime_error("OffsetFetch answered without the group"))?;
            let rows = g
                .topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    t.partitions.into_iter().map(move |p| {
                        (
                            name.clone(),
                            p.partition_index,
                            p.committed_offset,
                            p.error_code,
                        )
                    })
                })
                .collect();
            (ErrorCode(g.error_code), rows)
        } else {
            let rows = r
                .topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    t.partitions.into_iter().map(move |p| {
                        (
                            name.clone(),
                            p.partition_index,
                            p.committed_offset,
                            p.error_code,
                        )
                    })
                })
                .collect();
            (ErrorCode(r.error_code), rows)
        };
        let partition_code = rows
            .iter()
            .map(|r| ErrorCode(r.3))
            .find(|c| !c.is_none() && *c != ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
        let code = if code.is_none() {
            partition_code.unwrap_or(code)
        } else {
            code
        };
        if code == ErrorCode::GROUP_ID_NOT_FOUND {
            return Ok(BTreeMap::new());
        }
        if code.is_none() {
            return Ok(rows
                .into_iter()
                .filter(|r| r.2 >= 0 && r.3 == 0)
                .map(|(t, p, o, _)| ((t, p), o))
                .collect());
        }
        if !retriable(code) || Instant::now() >= deadline {
            return Err(runtime_error(format!(
                "cannot read the committed offsets of group {group:?}: {code}"
            )));
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Commits `offsets` for `group` as a memberless client (generation -1, no
/// member id): what a consumer that assigns partitions itself does; brokers
/// accept it while the group has no active members.
pub fn commit_offsets(
    s: &mut Session,
    coordinator: i32,
    group: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> anyhow::Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), &o) in offsets {
        by_topic
            .entry(t)
            .or_default()
            .push(OffsetCommitRequestPartition {
                partition_index: *p,
                committed_offset: o,
                committed_leader_epoch: -1,
                committed_metadata: Some(String::new()),
            });
    }
    let body = RequestBody::OffsetCommit(OffsetCommitRequest {
        group_id: group.to_string(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: by_topic
            .into_iter()
            .map(|(name, partitions)| OffsetCommitRequestTopic {
                name: name.to_string(),
                partitions,
                ..OffsetCommitRequestTopic::default()
            })
            .collect(),
    });
    let deadline = Instant::now() + COORDINATOR_RETRY;
    loop {
        let ResponseBody::OffsetCommit(r) = s.call(Some(coordinator), &body)? else {
            unreachable!("call() checks the response type");
        };
        let failed = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .find(|(_, p)| p.error_code != 0);
        let Some((t, p)) = failed else {
            return Ok(());
        };
        let code = ErrorCode(p.error_code);
        if retriable(code) && Instant::now() < deadline {
            std::thread::sleep(RETRY_PAUSE);
            continue;
        }
        let hint = match code {
            ErrorCode::UNKNOWN_MEMBER_ID
            | ErrorCode::ILLEGAL_GENERATION
            | ErrorCode::REBALANCE_IN_PROGRESS => {
                "; the group has active members, which own its offsets: use another --group, or --no-group"
            }
            ErrorCode::INVALID_GROUP_ID => "; pick a non-empty group name",
            _ => "",
        };
        let err = format!(
            "cannot commit the offset of {}/{} for group {group:?}: {code}{hint}",
            t.name, p.partition_index
        );
        return Err(if code == ErrorCode::INVALID_GROUP_ID {
            usage_error(err)
        } else {
            runtime_error(err)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_parse() {
        assert_eq!(parse_reset("shift:-5"), Ok(Reset::Shift(-5)));
        assert_eq!(parse_reset("beginning"), Ok(Reset::To(Position::Beginning)));
        assert_eq!(parse_reset("offset:7"), Ok(Reset::To(Position::Offset(7))));
        assert!(parse_reset("shift:x").is_err());
        assert!(parse_reset("sideways").is_err());
    }
}
