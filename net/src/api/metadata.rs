//! Metadata v0-v13 (auto-creates topics when asked and enabled) and
//! DescribeCluster v0-v2. A single node leads every partition. In a cluster
//! (a controller is configured) the broker lists are the brokers registered
//! with the controller; topics are still this node's own.

use std::rc::Rc;

use shard_router::controller::ControllerHandle;
use sluice_codec::describe_cluster_response::{DescribeClusterBroker, DescribeClusterResponse};
use sluice_codec::metadata_request::MetadataRequest;
use sluice_codec::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_codec::ErrorCode;

use crate::api::admin::{self, NewTopic};
use crate::state::ShardState;
use crate::topics::{validate_topic_name, TopicMeta};

/// Kafka's "authorized operations not requested" marker.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

fn topic_entry(state: &ShardState, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = state.config.node_id;
    if let (true, Some(controller)) = (meta.is_replicated(), &state.config.controller) {
        return replicated_entry(&controller.metadata(), meta);
    }
    MetadataResponseTopic {
        error_code: 0,
        name: Some(meta.name.clone()),
        topic_id: meta.id,
        is_internal: meta.internal,
        partitions: (0..meta.partitions)
            .map(|p| MetadataResponsePartition {
                error_code: 0,
                partition_index: p,
                leader_id: node,
                leader_epoch: 0,
                replica_nodes: vec![node],
                isr_nodes: vec![node],
                offline_replicas: vec![],
            })
            .collect(),
        topic_authorized_operations: OPS_NOT_REQUESTED,
    }
}

/// A replicated topic as the controller has it: leader, epoch, replicas,
/// ISR and offline replicas per partition.
fn replicated_entry(
    cluster: &shard_router::controller::ClusterMetadata,
    meta: &TopicMeta,
) -> MetadataResponseTopic {
    let partitions = cluster
        .topics
        .get(&meta.name)
        .filter(|t| t.topic_id == *meta.id.as_bytes());
    MetadataResponseTopic {
        error_code: 0,
        name: Some(meta.name.clone()),
        topic_id: meta.id,
        is_internal: meta.internal,
        partitions: (0..meta.partitions)
            .map(|p| {
                let Some(ps) = partitions.and_then(|t| t.partitions.get(p as usize)) else {
                    return MetadataResponsePartition {
                        error_code: ErrorCode::LEADER_NOT_AVAILABLE.0,
                        partition_index: p,
                        leader_id: -1,
                        leader_epoch: -1,
                        ..Default::default()
                    };
                };
                MetadataResponsePartition {
                    error_code: if ps.leader.is_some() {
                        0
                    } else {
                        ErrorCode::LEADER_NOT_AVAILABLE.0
                    },
                    partition_index: p,
                    leader_id: ps.leader_id(),
                    leader_epoch: ps.leader_epoch,
                    replica_nodes: ps.replicas.iter().map(|r| r.node.0).collect(),
                    isr_nodes: ps.isr.iter().map(|n| n.0).collect(),
                    offline_replicas: cluster.offline_replicas(ps).iter().map(|n| n.0).collect(),
                }
            })
            .collect(),
        topic_authorized_operations: OPS_NOT_REQUESTED,
    }
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let cfg = &state.config;
    // v0 had no null: an empty list meant all topics.
    let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().map(|t| (t.name, t.topic_id)).collect()),
    };
    let auto_create = cfg.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    if let (Some(wanted), true) = (&wanted, auto_create) {
        let table = state.topics();
        let missing: Vec<NewTopic> = wanted
            .iter()
            .filter_map(|(name, _)| name.as_ref())
            .filter(|n| table.get(n).is_none() && validate_topic_name(n).is_ok())
            .map(|n| NewTopic {
                name: n.clone(),
                partitions: cfg.num_partitions,
                configs: Default::default(),
            })
            .collect();
        if !missing.is_empty() {
            for (name, result) in admin::create(state, missing, false).await {
                if let Err((code, msg)) = result {
                    if code != ErrorCode::TOPIC_ALREADY_EXISTS.0 {
                        tracing::warn!(topic = name, code, msg, "auto-creating a topic failed");
                    }
                }
            }
        }
    }
    let table = state.topics();
    let topics = match wanted {
        None => table
            .topics
            .values()
            .map(|m| topic_entry(state, m))
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|(name, id)| {
                let meta = match &name {
                    Some(n) => table.get(n),
                    None => table.by_id(id),
                };
                match meta {
                    Some(m) => topic_entry(state, m),
                    None => {
                        let code = match &name {
                            Some(n) if validate_topic_name(n).is_err() => {
                                ErrorCode::INVALID_TOPIC_EXCEPTION
                            }
                            Some(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                            None => ErrorCode::UNKNOWN_TOPIC_ID,
                        };
                        MetadataResponseTopic {
                            error_code: code.0,
                            name,
                            topic_id: id,
                            ..Default::default()
                        }
                    }
                }
            })
            .collect(),
    };
    let (brokers, controller_id) = match &cfg.controller {
        Some(controller) => {
            let cluster = controller.metadata();
            let brokers = cluster
                .live_brokers()
                .map(|b| MetadataResponseBroker {
                    node_id: b.registration.node.0,
                    host: b.registration.host.clone(),
                    port: i32::from(b.registration.port),
                    rack: None,
                })
                .collect();
            (brokers, controller_leader(controller))
        }
        None => (
            vec![MetadataResponseBroker {
                node_id: cfg.node_id,
                host: cfg.advertised_host.clone(),
                port: i32::from(cfg.advertised_port),
                rack: None,
            }],
            cfg.node_id,
        ),
    };
    MetadataResponse {
        brokers,
        cluster_id: Some(cfg.cluster_id.clone()),
        controller_id,
        topics,
        cluster_authorized_operations: OPS_NOT_REQUESTED,
        ..Default::default()
    }
}

/// The controller leader's node id as Kafka reports it, -1 while unknown.
fn controller_leader(controller: &ControllerHandle) -> i32 {
    controller.quorum().leader.map_or(-1, |n| n.0)
}

/// Fenced brokers are listed only when asked for (DescribeCluster v2's
/// `include_fenced_brokers`), as Kafka does.
pub fn describe_cluster(state: &ShardState, include_fenced: bool) -> DescribeClusterResponse {
    let cfg = &state.config;
    let (brokers, controller_id) = match &cfg.controller {
        Some(controller) => (
            controller
                .metadata()
                .brokers
                .values()
                .filter(|b| include_fenced || !b.fenced)
                .map(|b| DescribeClusterBroker {
                    broker_id: b.registration.node.0,
                    host: b.registration.host.clone(),
                    port: i32::from(b.registration.port),
                    rack: None,
                    is_fenced: b.fenced,
                })
                .collect(),
            controller_leader(controller),
        ),
        None => (
            vec![DescribeClusterBroker {
                broker_id: cfg.node_id,
                host: cfg.advertised_host.clone(),
                port: i32::from(cfg.advertised_port),
                rack: None,
                is_fenced: false,
            }],
            cfg.node_id,
        ),
    };
    DescribeClusterResponse {
        endpoint_type: 1,
        cluster_id: cfg.cluster_id.clone(),
        controller_id,
        brokers,
        cluster_authorized_operations: OPS_NOT_REQUESTED,
        ..Default::default()
    }
}
