//! Topic admin: CreateTopics v2-v7, DeleteTopics v1-v6, CreatePartitions
//! v0-v3, DescribeConfigs v1-v4. Changes run on shard 0, one at a time, which
//! persists the topic table and installs it on every shard before answering.

use std::collections::BTreeMap;
use std::rc::Rc;

use shard_router::controller::{Command, ControllerHandle, MetadataError, WriteError};
use shard_router::ShardId;
use sluice_codec::create_partitions_request::CreatePartitionsRequest;
use sluice_codec::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use sluice_codec::create_topics_request::CreateTopicsRequest;
use sluice_codec::create_topics_response::{CreatableTopicResult, CreateTopicsResponse};
use sluice_codec::delete_topics_request::DeleteTopicsRequest;
use sluice_codec::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use sluice_codec::describe_configs_request::DescribeConfigsRequest;
use sluice_codec::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use sluice_codec::ErrorCode;
use uuid::Uuid;

use crate::state::ShardState;
use crate::topics::{
    log_config, validate_topic_name, TopicMeta, TopicTable, MAX_PARTITIONS_PER_TOPIC, TOPIC_CONFIGS,
};

/// A failed admin step: Kafka error code and message.
pub type AdminError = (i16, String);

#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// Runs `f` on shard 0 with the admin lock held, over a copy of the topic
/// table; publishes the table when `f` changed it.
pub(crate) async fn on_controller<F, R>(state: &Rc<ShardState>, f: F) -> Result<R, AdminError>
where
    F: FnOnce(&ShardState, &mut TopicTable) -> R + Send + 'static,
    R: Send + 'static,
{
    state
        .router
        .call(ShardId(0), move |s: &Rc<ShardState>| {
            let s = s.clone();
            Box::pin(async move {
                let _permit = s
                    .admin_lock
                    .acquire_permit(1)
                    .await
                    .map_err(|e| (ErrorCode::UNKNOWN_SERVER_ERROR.0, e.to_string()))?;
                let current = s.topics();
                let mut table = (*current).clone();
                let result = f(&s, &mut table);
                if table != *current {
                    table.version = current.version + 1;
                    s.publish_topics(table)
                        .await
                        .map_err(|e| (ErrorCode::KAFKA_STORAGE_ERROR.0, e))?;
                }
                Ok(result)
            })
        })
        .await
        .map_err(|e| (ErrorCode::UNKNOWN_SERVER_ERROR.0, e.to_string()))?
}

/// Creates topics (or only validates them); one result per topic, in order.
pub async fn create(
    state: &Rc<ShardState>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<(String, Result<TopicMeta, AdminError>)> {
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let outcome = on_controller(state, move |s, table| {
        topics
            .into_iter()
            .map(|t| {
                let r = (|| {
                    validate_topic_name(&t.name).map_err(|m| (ErrorCode::INVALID_TOPIC_EXCEPTION.0, m))?;
                    if table.get(&t.name).is_some() {
                        return Err((ErrorCode::TOPIC_ALREADY_EXISTS.0, format!("topic {} already exists", t.name)));
                    }
                    if t.partitions < 1 || t.partitions > MAX_PARTITIONS_PER_TOPIC {
                        return Err((ErrorCode::INVALID_PARTITIONS.0, format!("partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {}", t.partitions)));
                    }
                    log_config(&t.configs, &s.config.topic_defaults).map_err(|m| (ErrorCode::INVALID_CONFIG.0, m))?;
                    let meta = TopicMeta { name: t.name.clone(), id: Uuid::new_v4(), partitions: t.partitions, configs: t.configs, internal: t.name.starts_with("__"), replicas: Vec::new() };
                    if !validate_only {
                        table.topics.insert(t.name.clone(), meta.clone());
                    }
                    Ok(meta)
                })();
                (t.name, r)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match outcome {
        Ok(results) => results,
        Err(e) => names.into_iter().map(|n| (n, Err(e.clone()))).collect(),
    }
}

/// How long CreateTopics waits for a topic the controller created to reach
/// this node's topic table (so the client can use it at once).
pub(crate) const REPLICATED_TOPIC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A topic with replication factor > 1 in a cluster: the controller places
/// its replicas; every node then installs it from the metadata
/// (`replication::run`). `min.insync.replicas` defaults to 2 when there are
/// three replicas or more, so that acks=all means two fsynced copies.
pub(crate) async fn create_replicated(
    state: &Rc<ShardState>,
    controller: &ControllerHandle,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    mut configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicMeta, AdminError> {
    validate_topic_name(name).map_err(|m| (ErrorCode::INVALID_TOPIC_EXCEPTION.0, m))?;
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
        return Err((
            ErrorCode::INVALID_PARTITIONS.0,
            format!(
                "partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {partitions}"
            ),
        ));
    }
    if replication_factor >= 3 && !configs.contains_key("min.insync.replicas") {
        configs.insert("min.insync.replicas".into(), "2".into());
    }
    log_config(&configs, &state.config.topic_defaults)
        .map_err(|m| (ErrorCode::INVALID_CONFIG.0, m))?;
    if state.topics().get(name).is_some() {
        return Err((
            ErrorCode::TOPIC_ALREADY_EXISTS.0,
            format!("topic {name} already exists"),
        ));
    }
    let live = controller.metadata().live_brokers().count();
    if usize::try_from(replication_factor).unwrap_or(0) > live {
        return Err((
            ErrorCode::INVALID_REPLICATION_FACTOR.0,
            format!(
                "replication factor {replication_factor} is larger than the {live} live brokers"
            ),
        ));
    }
    let id = Uuid::new_v4();
    let meta = TopicMeta {
        name: name.to_string(),
        id,
        partitions,
        configs: configs.clone(),
        internal: name.starts_with("__"),
        replicas: vec![Vec::new(); usize::try_from(partitions).unwrap_or(0)],
    };
    if validate_only {
        return Ok(meta);
    }
    let command = Command::CreateTopic {
        name: name.to_string(),
        topic_id: *id.as_bytes(),
        partitions,
        replication_factor,
        configs,
    };
    match controller.write(command).await {
        Ok(_) => {}
        // A forwarded write retried after a lost reply applies twice.
        Err(WriteError::Refused(MetadataError::TopicExists(_)))
            if controller
                .metadata()
                .topics
                .get(name)
                .is_some_and(|t| t.topic_id == *id.as_bytes()) => {}
        Err(WriteError::Refused(e)) => {
            let code = match &e {
                MetadataError::TopicExists(_) => ErrorCode::TOPIC_ALREADY_EXISTS,
                MetadataError::InvalidTopicName(_) => ErrorCode::INVALID_TOPIC_EXCEPTION,
                MetadataError::InvalidPartitions { .. } => ErrorCode::INVALID_PARTITIONS,
                MetadataError::InvalidReplicationFactor { .. } => {
                    ErrorCode::INVALID_REPLICATION_FACTOR
                }
                _ => ErrorCode::UNKNOWN_SERVER_ERROR,
            };
            return Err((code.0, e.to_string()));
        }
        Err(e) => return Err((ErrorCode::REQUEST_TIMED_OUT.0, e.to_string())),
    }
    let deadline = std::time::Instant::now() + REPLICATED_TOPIC_WAIT;
    loop {
        if let Some(m) = state.topics().get(name).filter(|m| m.id == id) {
            return Ok(m.clone());
        }
        if std::time::Instant::now() >= deadline {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT.0,
                format!("topic {name} was created but has not reached this broker yet"),
            ));
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn create_topics(
    state: &Rc<ShardState>,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let node = state.config.node_id;
    let mut early = Vec::new();
    let mut new = Vec::new();
    for t in req.topics {
        let partitions = if t.num_partitions == -1 {
            if t.assignments.is_empty() {
                state.config.num_partitions
            } else {
                t.assignments.len() as i32
            }
        } else {
            t.num_partitions
        };
        if t.replication_factor > 1 && t.assignments.is_empty() {
            if let Some(controller) = &state.config.controller {
                let configs = t
                    .configs
                    .into_iter()
                    .filter_map(|c| Some((c.name, c.value?)))
                    .collect();
                let r = create_replicated(
                    state,
                    controller,
                    &t.name,
                    partitions,
                    t.replication_factor,
                    configs,
                    req.validate_only,
                )
                .await;
                early.push((t.name, r));
                continue;
            }
        }
        let bad_rf = t.replication_factor != -1 && t.replication_factor != 1;
        let bad_assignment = t.assignments.iter().any(|a| a.broker_ids != [node]);
        if bad_rf || bad_assignment {
            let msg = format!(
                "replication factor {} is larger than the 1 available broker",
                t.replication_factor
            );
            early.push((t.name, Err((ErrorCode::INVALID_REPLICATION_FACTOR.0, msg))));
            continue;
        }
        let configs = t
            .configs
            .into_iter()
            .filter_map(|c| Some((c.name, c.value?)))
            .collect();
        new.push(NewTopic {
            name: t.name,
            partitions,
            configs,
        });
    }
    let mut results = early;
    results.extend(create(state, new, req.validate_only).await);
    CreateTopicsResponse {
        topics: results
            .into_iter()
            .map(|(name, r)| match r {
                Ok(meta) => CreatableTopicResult {
                    name,
                    topic_id: meta.id,
                    num_partitions: meta.partitions,
                    replication_factor: meta.replicas.first().map_or(1, |r| r.len() as i16),
                    ..Default::default()
                },
                Err((code, msg)) => CreatableTopicResult {
                    name,
                    error_code: code,
                    error_message: Some(msg),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                },
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn delete_topics(
    state: &Rc<ShardState>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    // Replicated topics are deleted by the controller; every node then drops
    // them from its table (`replication::run`).
    let mut targets = targets;
    let mut replicated_results = Vec::new();
    if let Some(controller) = &state.config.controller {
        let table = state.topics();
        let mut replicated = Vec::new();
        targets.retain(|(name, id)| {
            let found = match name {
                Some(n) => table.get(n),
                None => table.by_id(*id),
            };
            match found {
                Some(m) if m.is_replicated() => {
                    replicated.push(m.clone());
                    false
                }
                _ => true,
            }
        });
        for meta in replicated {
            let result = delete_replicated(state, controller, &meta).await;
            let (error_code, error_message) = match result {
                Ok(()) => (0, None),
                Err((code, msg)) => (code, Some(msg)),
            };
            replicated_results.push(DeletableTopicResult {
                name: Some(meta.name.clone()),
                topic_id: meta.id,
                error_code,
                error_message,
            });
        }
    }
    let asked = targets.clone();
    let outcome = on_controller(state, move |_, table| {
        targets
            .into_iter()
            .map(|(name, id)| {
                let found = match &name {
                    Some(n) => table.get(n).cloned(),
                    None => table.by_id(id).cloned(),
                };
                match found {
                    Some(meta) => {
                        table.topics.remove(&meta.name);
                        DeletableTopicResult {
                            name: Some(meta.name),
                            topic_id: meta.id,
                            ..Default::default()
                        }
                    }
                    None => DeletableTopicResult {
                        error_code: if name.is_some() {
                            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0
                        } else {
                            ErrorCode::UNKNOWN_TOPIC_ID.0
                        },
                        error_message: Some("no such topic".into()),
                        name,
                        topic_id: id,
                    },
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    let responses = match outcome {
        Ok(r) => r,
        Err((code, msg)) => asked
            .into_iter()
            .map(|(name, topic_id)| DeletableTopicResult {
                name,
                topic_id,
                error_code: code,
                error_message: Some(msg.clone()),
            })
            .collect(),
    };
    let mut responses = responses;
    responses.extend(replicated_results);
    DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}

/// Deletes a replicated topic through the controller and waits (bounded)
/// until this node has dropped it.
async fn delete_replicated(
    state: &Rc<ShardState>,
    controller: &ControllerHandle,
    meta: &TopicMeta,
) -> Result<(), AdminError> {
    let command = Command::DeleteTopic {
        name: meta.name.clone(),
    };
    match controller.write(command).await {
        Ok(_) => {}
        // Already gone (a retried forwarded write applies twice).
        Err(WriteError::Refused(MetadataError::UnknownTopic(_))) => {}
        Err(WriteError::Refused(e)) => {
            return Err((ErrorCode::UNKNOWN_SERVER_ERROR.0, e.to_string()))
        }
        Err(e) => return Err((ErrorCode::REQUEST_TIMED_OUT.0, e.to_string())),
    }
    let deadline = std::time::Instant::now() + REPLICATED_TOPIC_WAIT;
    while state
        .topics()
        .get(&meta.name)
        .is_some_and(|m| m.id == meta.id)
    {
        if std::time::Instant::now() >= deadline {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT.0,
                format!(
                    "topic {} was deleted but this broker still has it",
                    meta.name
                ),
            ));
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

pub async fn create_partitions(
    state: &Rc<ShardState>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let validate_only = req.validate_only;
    let asked: Vec<String> = req.topics.iter().map(|t| t.name.clone()).collect();
    let topics = req.topics;
    let outcome = on_controller(state, move |_, table| {
        topics
            .into_iter()
            .map(|t| {
                let r = match table.topics.get_mut(&t.name) {
                    None => Err((
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                        format!("no topic {}", t.name),
                    )),
                    Some(meta) if meta.is_replicated() => Err((
                        ErrorCode::INVALID_REQUEST.0,
                        format!(
                            "topic {} is replicated; adding partitions to it is not supported yet",
                            t.name
                        ),
                    )),
                    Some(meta) if t.count <= meta.partitions => Err((
                        ErrorCode::INVALID_PARTITIONS.0,
                        format!(
                            "topic {} has {} partitions; the new count must be larger, got {}",
                            t.name, meta.partitions, t.count
                        ),
                    )),
                    Some(_) if t.count > MAX_PARTITIONS_PER_TOPIC => Err((
                        ErrorCode::INVALID_PARTITIONS.0,
                        format!("at most {MAX_PARTITIONS_PER_TOPIC} partitions"),
                    )),
                    Some(meta) => {
                        if !validate_only {
                            meta.partitions = t.count;
                        }
                        Ok(())
                    }
                };
                (t.name, r)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = match outcome {
        Ok(r) => r,
        Err(e) => asked.into_iter().map(|n| (n, Err(e.clone()))).collect(),
    };
    CreatePartitionsResponse {
        results: results
            .into_iter()
            .map(|(name, r)| match r {
                Ok(()) => CreatePartitionsTopicResult {
                    name,
                    ..Default::default()
                },
                Err((code, msg)) => CreatePartitionsTopicResult {
                    name,
                    error_code: code,
                    error_message: Some(msg),
                },
            })
            .collect(),
        ..Default::default()
    }
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_STATIC_BROKER: i8 = 4;

pub fn describe_configs(
    state: &ShardState,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let table = state.topics();
    let defaults = &state.config.topic_defaults;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let wanted = |k: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|w| w == k))
            };
            let entry = |name: &str, value: &str, source: i8| DescribeConfigsResourceResult {
                name: name.to_string(),
                value: Some(value.to_string()),
                config_source: source,
                ..Default::default()
            };
            match r.resource_type {
                RESOURCE_TOPIC => match table.get(&r.resource_name) {
                    Some(meta) => DescribeConfigsResult {
                        resource_type: r.resource_type,
                        configs: TOPIC_CONFIGS
                            .iter()
                            .filter(|(k, _)| wanted(k))
                            .map(
                                |&(k, default)| match (meta.configs.get(k), defaults.get(k)) {
                                    (Some(v), _) => entry(k, v, SOURCE_DYNAMIC_TOPIC),
                                    (None, Some(v)) => entry(k, v, SOURCE_STATIC_BROKER),
                                    (None, None) => entry(k, default, SOURCE_DEFAULT),
                                },
                            )
                            .collect(),
                        resource_name: r.resource_name,
                        ..Default::default()
                    },
                    None => DescribeConfigsResult {
                        error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                        error_message: Some(format!("no topic {}", r.resource_name)),
                        resource_type: r.resource_type,
                        resource_name: r.resource_name,
                        configs: vec![],
                    },
                },
                RESOURCE_BROKER => DescribeConfigsResult {
                    resource_type: r.resource_type,
                    configs: defaults
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| entry(k, v, SOURCE_STATIC_BROKER))
                        .collect(),
                    resource_name: r.resource_name,
                    ..Default::default()
                },
                other => DescribeConfigsResult {
                    error_code: ErrorCode::INVALID_REQUEST.0,
                    error_message: Some(format!("resource type {other} is not supported")),
                    resource_type: other,
                    resource_name: r.resource_name,
                    configs: vec![],
                },
            }
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}
