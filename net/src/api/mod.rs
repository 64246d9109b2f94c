//! One module per Kafka API, each stating the versions it serves; dispatch.
//!
//! ApiVersions advertises exactly [`SUPPORTED`] (intersected with what the codec
//! decodes); anything else is not advertised, and a request for it closes the
//! connection, as Kafka does for an API it does not know.

use std::rc::Rc;

use bytes::Bytes;
use sluice_codec::{
    decode_request, decode_request_header_prefix, encode_response, ApiKey, RequestBody,
    ResponseBody,
};

use sluice_codec::fetch_response::FetchResponse;

use crate::server::PendingResponse;
use crate::state::ShardState;

pub mod admin;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_replica_log_dirs;
pub mod api_versions;
pub mod current_leader;
pub mod delete_groups;
pub mod delete_records;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod producer_id;
pub mod sync_group;
pub mod unregister_broker;

/// The APIs this broker serves, with the version range of each handler.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 0, 9),
    (ApiKey::OffsetFetch, 0, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::UnregisterBroker, 0, 0),
];

/// The advertised range of `key`: the handler's range within the codec's.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    let &(_, lo, hi) = SUPPORTED.iter().find(|(k, _, _)| *k == key)?;
    let (clo, chi) = key.supported_versions();
    let (lo, hi) = (lo.max(clo), hi.min(chi));
    (lo <= hi).then_some((lo, hi))
}

/// Runs `f` on the shard owning `partition` of `meta`'s topic, with that shard's
/// state and the topic name. A missing topic or a partition out of range is
/// UNKNOWN_TOPIC_OR_PARTITION; a shard that cannot be reached, KAFKA_STORAGE_ERROR.
pub(crate) async fn on_owner<T, F, Fut>(
    state: &Rc<ShardState>,
    meta: Option<&crate::topics::TopicMeta>,
    partition: i32,
    f: F,
) -> Result<T, sluice_codec::ErrorCode>
where
    F: FnOnce(Rc<ShardState>, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, sluice_codec::ErrorCode>> + 'static,
    T: Send + 'static,
{
    let Some(m) = meta.filter(|m| partition >= 0 && partition < m.partitions) else {
        return Err(sluice_codec::ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let topic = m.name.clone();
    let owner = state.owner(&topic, partition);
    let job = move |s: &Rc<ShardState>| -> futures::future::LocalBoxFuture<
        'static,
        Result<T, sluice_codec::ErrorCode>,
    > { Box::pin(f(s.clone(), topic)) };
    state
        .router
        .call(owner, job)
        .await
        .unwrap_or(Err(sluice_codec::ErrorCode::KAFKA_STORAGE_ERROR))
}

fn respond(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    body: ResponseBody,
) -> Option<Vec<Bytes>> {
    Some(encode_response(correlation_id, key, version, &body))
}

/// Decodes one request frame and starts its handling. Returns once the
/// request's order-sensitive part is queued (produce appends are queued on their
/// shards here, before the next request is read), with the response to come.
/// `Err` closes the connection.
/// Who sent a request: Kafka reports these in DescribeGroups.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// The request header's client id.
    pub id: String,
    /// The peer address, as Kafka writes it (`/ip`).
    pub host: String,
}

pub async fn dispatch(
    state: &Rc<ShardState>,
    frame: Bytes,
    peer_host: &str,
) -> Result<PendingResponse, String> {
    let (key, version, correlation_id) =
        decode_request_header_prefix(&frame).map_err(|e| e.to_string())?;
    let Some(api) = ApiKey::from_i16(key) else {
        return Err(format!("unknown api key {key}"));
    };
    let supported = supported_range(api).is_some_and(|(lo, hi)| lo <= version && version <= hi);
    if !supported {
        if api == ApiKey::ApiVersions {
            // Answered in v0 so a client can read it whatever it asked for.
            let body = api_versions::unsupported_version();
            return Ok(Box::pin(async move {
                respond(correlation_id, api, 0, ResponseBody::ApiVersions(body))
            }));
        }
        return Err(format!("{} v{version} is not supported", api.name()));
    }
    let (header, body) =
        decode_request(frame).map_err(|e| format!("{} v{version}: {e}", api.name()))?;
    let client = Client {
        id: header.client_id.unwrap_or_default(),
        host: format!("/{peer_host}"),
    };
    let state = state.clone();
    let in_flight = state.metrics.request_started(api);
    let pending: PendingResponse = match body {
        RequestBody::Produce(req) => {
            let acks = req.acks;
            let response = produce::enqueue(&state, req, version).await;
            Box::pin(async move {
                let body = response.await;
                in_flight.finish();
                // acks=0: the client expects no response at all.
                if acks == 0 {
                    return None;
                }
                respond(correlation_id, api, version, ResponseBody::Produce(body))
            })
        }
        body => {
            let task = glommio::spawn_local(async move {
                let response = handle(&state, body, version, client).await;
                if let ResponseBody::Fetch(f) = &response {
                    count_fetched(&state, f);
                }
                in_flight.finish();
                respond(correlation_id, api, version, response)
            });
            Box::pin(task)
        }
    };
    Ok(pending)
}

/// Counts the records a Fetch response carries, by topic, on this shard.
fn count_fetched(state: &ShardState, response: &FetchResponse) {
    let table = state.topics();
    for t in &response.responses {
        let name = match table.by_id(t.topic_id) {
            Some(meta) if t.topic.is_empty() => meta.name.as_str(),
            _ => t.topic.as_str(),
        };
        for p in &t.partitions {
            if let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) {
                // Every chunk holds whole batches.
                let count = records
                    .chunks()
                    .iter()
                    .map(|c| crate::metrics::count_records(c))
                    .sum();
                state.metrics.fetched(name, records.len(), count);
            }
        }
    }
}

async fn handle(
    state: &Rc<ShardState>,
    body: RequestBody,
    version: i16,
    client: Client,
) -> ResponseBody {
    match body {
        RequestBody::ApiVersions(_) => ResponseBody::ApiVersions(api_versions::handle()),
        RequestBody::Metadata(req) => {
            ResponseBody::Metadata(metadata::handle(state, req, version).await)
        }
        RequestBody::Fetch(req) => ResponseBody::Fetch(fetch::handle(state, req, version).await),
        RequestBody::ListOffsets(req) => {
            ResponseBody::ListOffsets(list_offsets::handle(state, req).await)
        }
        RequestBody::CreateTopics(req) => {
            ResponseBody::CreateTopics(admin::create_topics(state, req).await)
        }
        RequestBody::DeleteTopics(req) => {
            ResponseBody::DeleteTopics(admin::delete_topics(state, req, version).await)
        }
        RequestBody::CreatePartitions(req) => {
            ResponseBody::CreatePartitions(admin::create_partitions(state, req).await)
        }
        RequestBody::DescribeConfigs(req) => {
            ResponseBody::DescribeConfigs(admin::describe_configs(state, req))
        }
        RequestBody::DescribeQuorum(req) => {
            ResponseBody::DescribeQuorum(describe_quorum::handle(state, req).await)
        }
        RequestBody::DescribeCluster(req) => ResponseBody::DescribeCluster(
            metadata::describe_cluster(state, req.include_fenced_brokers),
        ),
        RequestBody::InitProducerId(req) => {
            ResponseBody::InitProducerId(producer_id::handle(state, req).await)
        }
        RequestBody::IncrementalAlterConfigs(req) => ResponseBody::IncrementalAlterConfigs(
            incremental_alter_configs::handle(state, req).await,
        ),
        RequestBody::AlterConfigs(req) => {
            ResponseBody::AlterConfigs(alter_configs::handle(state, req).await)
        }
        RequestBody::DeleteRecords(req) => {
            ResponseBody::DeleteRecords(delete_records::handle(state, req).await)
        }
        RequestBody::OffsetForLeaderEpoch(req) => {
            ResponseBody::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(state, req).await)
        }
        RequestBody::DescribeProducers(req) => {
            ResponseBody::DescribeProducers(describe_producers::handle(state, req).await)
        }
        RequestBody::DescribeLogDirs(req) => {
            ResponseBody::DescribeLogDirs(describe_log_dirs::handle(state, req).await)
        }
        RequestBody::FindCoordinator(req) => {
            ResponseBody::FindCoordinator(find_coordinator::handle(state, req, version))
        }
        RequestBody::JoinGroup(req) => {
            ResponseBody::JoinGroup(join_group::handle(state, req, version, client).await)
        }
        RequestBody::SyncGroup(req) => {
            ResponseBody::SyncGroup(sync_group::handle(state, req).await)
        }
        RequestBody::Heartbeat(req) => ResponseBody::Heartbeat(heartbeat::handle(state, req).await),
        RequestBody::LeaveGroup(req) => {
            ResponseBody::LeaveGroup(leave_group::handle(state, req, version).await)
        }
        RequestBody::OffsetCommit(req) => {
            ResponseBody::OffsetCommit(offset_commit::handle(state, req, version).await)
        }
        RequestBody::OffsetFetch(req) => {
            ResponseBody::OffsetFetch(offset_fetch::handle(state, req, version).await)
        }
        RequestBody::OffsetDelete(req) => {
            ResponseBody::OffsetDelete(offset_delete::handle(state, req).await)
        }
        RequestBody::ListGroups(req) => {
            ResponseBody::ListGroups(list_groups::handle(state, req).await)
        }
        RequestBody::DescribeGroups(req) => {
            ResponseBody::DescribeGroups(describe_groups::handle(state, req).await)
        }
        RequestBody::DeleteGroups(req) => {
            ResponseBody::DeleteGroups(delete_groups::handle(state, req).await)
        }
        RequestBody::AlterPartitionReassignments(req) => ResponseBody::AlterPartitionReassignments(
            alter_partition_reassignments::handle(state, req).await,
        ),
        RequestBody::ListPartitionReassignments(req) => ResponseBody::ListPartitionReassignments(
            list_partition_reassignments::handle(state, req),
        ),
        RequestBody::AlterReplicaLogDirs(req) => {
            ResponseBody::AlterReplicaLogDirs(alter_replica_log_dirs::handle(state, req).await)
        }
        RequestBody::ElectLeaders(req) => {
            ResponseBody::ElectLeaders(elect_leaders::handle(state, req).await)
        }
        RequestBody::UnregisterBroker(req) => {
            ResponseBody::UnregisterBroker(unregister_broker::handle(state, req).await)
        }
        other => unreachable_api(other),
    }
}

fn unreachable_api(body: RequestBody) -> ResponseBody {
    // dispatch() refuses every API outside SUPPORTED before decoding, and every
    // API in SUPPORTED has an arm above: this is a programming error.
    panic!("no handler for {}", body.api_key().name())
}
