//! `sluice cluster elect`: preferred or unclean leader election
//! (ElectLeaders), as Kafka's `kafka-leader-election` tool does it.

use clap::{Args, ValueEnum};
use sluice_codec::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};

use crate::cmd::config::{describe_error, not_found, runtime_error, usage_error, Session};

/// Which election to run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionKind {
    /// Make each partition's first assigned replica its leader again, if it
    /// is live and in sync.
    Preferred,
    /// Give a partition that has no leader (every in-sync replica is down)
    /// any live replica as leader. Records that replica lacks are lost.
    Unclean,
}

#[derive(Args, Debug)]
pub struct ElectArgs {
    /// The election to run.
    #[arg(long = "type", value_enum, default_value = "preferred")]
    kind: ElectionKind,
    /// Only this topic (default: every partition of every topic).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// Only this partition of --topic (default: all of its partitions).
    #[arg(long, value_name = "N", requires = "topic")]
    partition: Option<i32>,
}

pub fn run(s: &mut Session, args: &ElectArgs) -> anyhow::Result<()> {
    let topic_partitions = match &args.topic {
        None => None,
        Some(topic) => {
            let partitions = match args.partition {
                Some(p) if p < 0 => {
                    return Err(usage_error(format!("--partition {p}: must be 0 or more")))
                }
                Some(p) => vec![p],
                None => {
                    let m = s.metadata(Some(std::slice::from_ref(topic)), false)?;
                    let t = m
                        .topics
                        .iter()
                        .find(|t| t.name.as_deref() == Some(topic.as_str()))
                        .filter(|t| t.error_code == 0)
                        .ok_or_else(|| not_found(format!("topic {topic:?} does not exist")))?;
                    let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
                    ps.sort_unstable();
                    ps
                }
            };
            Some(vec![TopicPartitions {
                topic: topic.clone(),
                partitions,
            }])
        }
    };
    let election_type = match args.kind {
        ElectionKind::Preferred => 0,
        ElectionKind::Unclean => 1,
    };
    let body = RequestBody::ElectLeaders(ElectLeadersRequest {
        election_type,
        topic_partitions,
        timeout_ms: 30_000,
    });
    let ResponseBody::ElectLeaders(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let code = ErrorCode(r.error_code);
    if !code.is_none() {
        return Err(runtime_error(format!(
            "ElectLeaders failed: {}",
            describe_error(code, None)
        )));
    }
    let kind = match args.kind {
        ElectionKind::Preferred => "preferred",
        ElectionKind::Unclean => "unclean",
    };
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    let mut lines = 0;
    for t in &r.replica_election_results {
        for p in &t.partition_result {
            let code = ErrorCode(p.error_code);
            let what = format!("{}-{}", t.topic, p.partition_id);
            lines += 1;
            if code.is_none() {
                println!("{what}: leader elected ({kind})");
            } else if code == ErrorCode::ELECTION_NOT_NEEDED {
                println!("{what}: no election needed");
            } else {
                let why = describe_error(code, p.error_message.as_deref());
                println!("{what}: not elected: {why}");
                if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                    unknown.push(what);
                } else {
                    failed.push(what);
                }
            }
        }
    }
    if lines == 0 {
        println!("no partition needed a {kind} election");
    }
    if !failed.is_empty() {
        return Err(runtime_error(format!(
            "no {kind} leader elected for {}",
            failed.join(", ")
        )));
    }
    if !unknown.is_empty() {
        return Err(not_found(format!(
            "no such partition: {}",
            unknown.join(", ")
        )));
    }
    Ok(())
}
