//! KIP-951: a partition refused with `NOT_LEADER_OR_FOLLOWER` or
//! `FENCED_LEADER_EPOCH` carries the leader this broker knows (id and
//! epoch, from the cluster metadata), and the response lists that leader's
//! endpoint, so a client (Java 3.7+, franz-go) moves its produce or fetch to
//! the new leader at once instead of after a Metadata round trip. Produce
//! v10+ and Fetch v12+ (endpoints from Fetch v16); older versions drop the
//! fields when encoding.

use std::collections::BTreeSet;

use shard_router::controller::ClusterMetadata;
use sluice_codec::{fetch_response, produce_response, ErrorCode};

use crate::state::ShardState;

/// A leader to point a client at: id, epoch, and where it listens.
struct Leader {
    id: i32,
    epoch: i32,
}

fn redirects(code: i16) -> bool {
    code == ErrorCode::NOT_LEADER_OR_FOLLOWER.0 || code == ErrorCode::FENCED_LEADER_EPOCH.0
}

/// The live leader of `partition` of the topic named `name` (or, when the
/// name is empty, with id `topic_id`).
fn leader_of(
    cluster: &ClusterMetadata,
    name: &str,
    topic_id: uuid::Uuid,
    partition: i32,
) -> Option<Leader> {
    let topic = if name.is_empty() {
        cluster
            .topics
            .values()
            .find(|t| t.topic_id == *topic_id.as_bytes())?
    } else {
        cluster.topics.get(name)?
    };
    let p = topic.partitions.get(usize::try_from(partition).ok()?)?;
    let node = p.leader?;
    cluster.brokers.get(&node).filter(|b| !b.fenced)?;
    Some(Leader {
        id: node.0,
        epoch: p.leader_epoch,
    })
}

/// The endpoints of `ids`, as registered (advertised host and port).
fn endpoints(cluster: &ClusterMetadata, ids: &BTreeSet<i32>) -> Vec<(i32, String, i32)> {
    cluster
        .brokers
        .values()
        .filter(|b| ids.contains(&b.registration.node.0))
        .map(|b| {
            let r = &b.registration;
            (r.node.0, r.host.clone(), i32::from(r.port))
        })
        .collect()
}

pub fn fill_produce(state: &ShardState, resp: &mut produce_response::ProduceResponse) {
    let Some(controller) = &state.config.controller else {
        return;
    };
    let cluster = controller.metadata();
    let mut named = BTreeSet::new();
    for t in &mut resp.responses {
        for p in &mut t.partition_responses {
            if !redirects(p.error_code) {
                continue;
            }
            if let Some(l) = leader_of(&cluster, &t.name, t.topic_id, p.index) {
                p.current_leader = produce_response::LeaderIdAndEpoch {
                    leader_id: l.id,
                    leader_epoch: l.epoch,
                };
                named.insert(l.id);
            }
        }
    }
    resp.node_endpoints = endpoints(&cluster, &named)
        .into_iter()
        .map(|(node_id, host, port)| produce_response::NodeEndpoint {
            node_id,
            host,
            port,
            rack: None,
        })
        .collect();
}

pub fn fill_fetch(state: &ShardState, resp: &mut fetch_response::FetchResponse) {
    let Some(controller) = &state.config.controller else {
        return;
    };
    let cluster = controller.metadata();
    let mut named = BTreeSet::new();
    for t in &mut resp.responses {
        for p in &mut t.partitions {
            if !redirects(p.error_code) {
                continue;
            }
            if let Some(l) = leader_of(&cluster, &t.topic, t.topic_id, p.partition_index) {
                p.current_leader = fetch_response::LeaderIdAndEpoch {
                    leader_id: l.id,
                    leader_epoch: l.epoch,
                };
                named.insert(l.id);
            }
        }
    }
    resp.node_endpoints = endpoints(&cluster, &named)
        .into_iter()
        .map(|(node_id, host, port)| fetch_response::NodeEndpoint {
            node_id,
            host,
            port,
            rack: None,
        })
        .collect();
}
