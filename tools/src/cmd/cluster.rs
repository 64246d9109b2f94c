//! `sluice cluster describe`: cluster id, controller and brokers
//! (DescribeCluster when the broker has it, Metadata otherwise);
//! `sluice cluster elect`: leader elections (see `elect.rs`);
//! `sluice cluster reassign`: move partitions between brokers
//! (AlterPartitionReassignments, ListPartitionReassignments);
//! `sluice cluster unregister`: forget a removed broker (UnregisterBroker).

use clap::{Args, Subcommand};
use sluice_codec::describe_cluster_request::DescribeClusterRequest;
use sluice_codec::unregister_broker_request::UnregisterBrokerRequest;
use sluice_codec::{ApiKey, ErrorCode, RequestBody, ResponseBody};

use crate::cmd::config::{describe_error, not_found, runtime_error, ClientArgs, Session};
use crate::cmd::elect::ElectArgs;

#[derive(Args, Debug)]
#[command(after_help = crate::cmd::config::EXIT_CODES_HELP)]
pub struct ClusterArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Show the cluster id, the controller, every broker (fenced ones too,
    /// marked) and topic counts.
    Describe,
    /// Move a partition's replicas to other brokers, cancel such a move,
    /// list the moves in progress, or move every replica off a broker
    /// (drain it before removing it). The data is copied while producers
    /// and consumers keep running; a move is done once every new replica
    /// has caught up. A replica can also move to another shard (core) of
    /// its broker (--replicas ID:SHARD,...), without copying. Only
    /// replicated topics (created with a replication factor above 1 in a
    /// cluster) can move.
    Reassign(crate::cmd::reassign::ReassignArgs),
    /// Elect partition leaders: move leaderships back to the preferred
    /// (first) replica, or give a partition whose in-sync replicas are all
    /// down an out-of-sync leader (unclean, loses records). Without --topic,
    /// every partition; only partitions that needed an election are listed.
    Elect(ElectArgs),
    /// Forget a broker that was removed for good: it leaves the broker list
    /// (and, if it was a broker-only node, the controller quorum's
    /// membership). Refused while the broker is running or still holds
    /// replicas (drain it first with `reassign --drain`), and for a
    /// controller voter.
    Unregister {
        /// The broker's node id.
        #[arg(long, value_name = "N")]
        id: i32,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut s = Session::connect(&args.client)?;
    match args.command {
        ClusterCommand::Describe => describe(&mut s),
        ClusterCommand::Elect(elect) => crate::cmd::elect::run(&mut s, &elect),
        ClusterCommand::Reassign(r) => crate::cmd::reassign::run(&mut s, r),
        ClusterCommand::Unregister { id } => unregister(&mut s, id),
    }
}

fn unregister(s: &mut Session, id: i32) -> anyhow::Result<()> {
    let body = RequestBody::UnregisterBroker(UnregisterBrokerRequest { broker_id: id });
    let ResponseBody::UnregisterBroker(r) = s.call(None, &body)? else {
        unreachable!("call() checks the response type");
    };
    let code = ErrorCode(r.error_code);
    if !code.is_none() {
        let why = describe_error(code, r.error_message.as_deref());
        if code == ErrorCode::BROKER_ID_NOT_REGISTERED {
            return Err(not_found(format!("broker {id} is not registered: {why}")));
        }
        return Err(runtime_error(format!(
            "broker {id} not unregistered: {why}"
        )));
    }
    println!("broker {id} unregistered");
    Ok(())
}

fn describe(s: &mut Session) -> anyhow::Result<()> {
    // (id, host:port, rack, fenced)
    let mut brokers: Vec<(i32, String, Option<String>, bool)>;
    let (cluster_id, controller) = if s.supports(ApiKey::DescribeCluster) {
        let body = RequestBody::DescribeCluster(DescribeClusterRequest {
            endpoint_type: 1,
            include_fenced_brokers: true,
            ..DescribeClusterRequest::default()
        });
        let ResponseBody::DescribeCluster(r) = s.call(None, &body)? else {
            unreachable!("call() checks the response type");
        };
        let code = ErrorCode(r.error_code);
        if !code.is_none() {
            return Err(runtime_error(format!(
                "DescribeCluster failed: {}",
                describe_error(code, r.error_message.as_deref())
            )));
        }
        brokers = r
            .brokers
            .iter()
            .map(|b| {
                (
                    b.broker_id,
                    format!("{}:{}", b.host, b.port),
                    b.rack.clone(),
                    b.is_fenced,
                )
            })
            .collect();
        (Some(r.cluster_id.clone()), r.controller_id)
    } else {
        let m = s.metadata(Some(&[]), false)?;
        brokers = m
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id,
                    format!("{}:{}", b.host, b.port),
                    b.rack.clone(),
                    false,
                )
            })
            .collect();
        (m.cluster_id.clone(), m.controller_id)
    };
    brokers.sort();
    let topics = s.topics()?;
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    println!("Cluster id: {}", cluster_id.as_deref().unwrap_or("-"));
    println!("Controller: {controller}");
    println!(
        "Topics: {} ({} internal), partitions: {partitions}",
        topics.len(),
        topics.iter().filter(|t| t.internal).count()
    );
    println!("Brokers: {}", brokers.len());
    println!("{:>8}  {:<30}  {:<8}  RACK", "ID", "HOST:PORT", "STATE");
    for (id, addr, rack, fenced) in brokers {
        let state = if fenced { "fenced" } else { "live" };
        println!(
            "{id:>8}  {addr:<30}  {state:<8}  {}",
            rack.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
