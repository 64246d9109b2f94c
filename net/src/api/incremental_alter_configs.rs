//! IncrementalAlterConfigs v0-v1: SET, DELETE (back to the default), APPEND and
//! SUBTRACT (list configs) on topic configs. Also the shared core of
//! AlterConfigs: the new configs are computed and validated on shard 0, stored
//! in the topic table and applied to the open logs by every shard.
//!
//! A replicated topic's configs are cluster metadata: in a cluster the change
//! is computed from the controller's copy, written as one
//! `AlterTopicConfigs` command (forwarded to the controller leader), and
//! every node installs it in its topic table and open logs
//! (`replication::run`); the answer waits (bounded) until this node has it.
//! Two changes racing on different nodes: the later write wins whole.
//!
//! Broker configs are static (config file and flags, read at start): a change
//! to a BROKER resource is refused with INVALID_REQUEST and a message saying so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use sluice_codec::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use sluice_codec::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use sluice_codec::ErrorCode;

use shard_router::controller::{Command, ControllerHandle, MetadataError, WriteError};

use crate::api::admin::{on_controller, AdminError, REPLICATED_TOPIC_WAIT};
use crate::state::ShardState;
use crate::topics::{log_config, TOPIC_CONFIGS};

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Topic configs whose values are comma-separated lists: APPEND and SUBTRACT
/// apply to these only, as in Kafka.
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

/// The change asked for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConfigChange {
    /// AlterConfigs: the resource's configs become exactly these (a null value
    /// or a missing key means the default).
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs: (key, operation, value), applied in order.
    Incremental(Vec<(String, i8, Option<String>)>),
}

impl ConfigChange {
    fn keys(&self) -> Vec<&str> {
        match self {
            ConfigChange::Replace(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            ConfigChange::Incremental(ops) => ops.iter().map(|(k, _, _)| k.as_str()).collect(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ResourceChange {
    pub resource_type: i8,
    pub name: String,
    pub change: ConfigChange,
}

fn invalid_config(msg: String) -> AdminError {
    (ErrorCode::INVALID_CONFIG.0, msg)
}

fn invalid_request(msg: String) -> AdminError {
    (ErrorCode::INVALID_REQUEST.0, msg)
}

fn check_known(key: &str, value: Option<&str>) -> Result<(), AdminError> {
    if TOPIC_CONFIGS.iter().any(|(k, _)| *k == key) {
        return Ok(());
    }
    Err(invalid_config(match value {
        Some(v) => format!("unknown topic config {key:?} (value {v:?})"),
        None => format!("unknown topic config {key:?}"),
    }))
}

fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The topic's configs after `change`, before validation of the values. Pure.
pub(crate) fn changed_configs(
    current: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
    change: &ConfigChange,
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut seen = HashSet::new();
    for key in change.keys() {
        if !seen.insert(key) {
            return Err(invalid_request(format!(
                "config {key:?} appears more than once for one resource"
            )));
        }
    }
    match change {
        ConfigChange::Replace(entries) => {
            let mut configs = BTreeMap::new();
            for (key, value) in entries {
                check_known(key, value.as_deref())?;
                if let Some(v) = value {
                    configs.insert(key.clone(), v.clone());
                }
            }
            Ok(configs)
        }
        ConfigChange::Incremental(ops) => {
            let mut configs = current.clone();
            for (key, op, value) in ops {
                check_known(key, value.as_deref())?;
                match *op {
                    OP_SET => {
                        let Some(v) = value else {
                            return Err(invalid_config(format!(
                                "SET of topic config {key:?} needs a value, got null"
                            )));
                        };
                        configs.insert(key.clone(), v.clone());
                    }
                    OP_DELETE => {
                        configs.remove(key);
                    }
                    OP_APPEND | OP_SUBTRACT => {
                        let name = if *op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                        if !LIST_CONFIGS.contains(&key.as_str()) {
                            return Err(invalid_config(format!(
                                "cannot {name} to topic config {key:?} (value {:?}): it is not a list",
                                value.as_deref().unwrap_or("")
                            )));
                        }
                        let Some(v) = value else {
                            return Err(invalid_config(format!(
                                "{name} to topic config {key:?} needs a value, got null"
                            )));
                        };
                        let old = configs
                            .get(key)
                            .or_else(|| defaults.get(key))
                            .map(String::as_str)
                            .or_else(|| {
                                TOPIC_CONFIGS
                                    .iter()
                                    .find(|(k, _)| k == key)
                                    .map(|(_, d)| *d)
                            })
                            .unwrap_or("");
                        let mut items: Vec<&str> = list_items(old).collect();
                        if *op == OP_APPEND {
                            for item in list_items(v) {
                                if !items.contains(&item) {
                                    items.push(item);
                                }
                            }
                        } else {
                            let removed: Vec<&str> = list_items(v).collect();
                            items.retain(|i| !removed.contains(i));
                        }
                        let joined = items.join(",");
                        configs.insert(key.clone(), joined);
                    }
                    other => {
                        return Err(invalid_request(format!(
                            "unknown config operation {other} for {key:?}: use 0 SET, 1 DELETE, 2 APPEND or 3 SUBTRACT"
                        )))
                    }
                }
            }
            Ok(configs)
        }
    }
}

/// The new configs of a topic, validated as the logs will use them.
pub(crate) fn new_topic_configs(
    current: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
    change: &ConfigChange,
) -> Result<BTreeMap<String, String>, AdminError> {
    let configs = changed_configs(current, defaults, change)?;
    log_config(&configs, defaults).map_err(invalid_config)?;
    Ok(configs)
}

/// Checks that need no topic table: resource type, broker resources, duplicates.
/// `None` means the resource goes on to shard 0.
fn precheck(r: &ResourceChange, duplicate: bool) -> Option<Result<(), AdminError>> {
    if duplicate {
        return Some(Err(invalid_request(format!(
            "resource {} (type {}) appears more than once in the request",
            r.name, r.resource_type
        ))));
    }
    match r.resource_type {
        RESOURCE_TOPIC => None,
        RESOURCE_BROKER if r.change.keys().is_empty() => Some(Ok(())),
        RESOURCE_BROKER => Some(Err(invalid_request(format!(
            "broker configs are static in sluice (config file or flags, read at start); \
             cannot change {} on broker {:?}",
            r.change.keys().join(", "),
            r.name
        )))),
        other => Some(Err(invalid_request(format!(
            "config resource type {other} is not supported (only TOPIC=2 and BROKER=4)"
        )))),
    }
}

/// Applies (or with `validate_only`, only checks) `resources`; one result each,
/// in request order.
pub(crate) async fn alter(
    state: &Rc<ShardState>,
    resources: Vec<ResourceChange>,
    validate_only: bool,
) -> Vec<Result<(), AdminError>> {
    let mut results: Vec<Option<Result<(), AdminError>>> = Vec::with_capacity(resources.len());
    let mut topics = Vec::new();
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for r in &resources {
        *counts
            .entry((r.resource_type, r.name.as_str()))
            .or_default() += 1;
    }
    let table = state.topics();
    for (i, r) in resources.iter().enumerate() {
        let duplicate = counts[&(r.resource_type, r.name.as_str())] > 1;
        let mut early = precheck(r, duplicate);
        if early.is_none() {
            let replicated = table.get(&r.name).is_some_and(|m| m.is_replicated());
            match &state.config.controller {
                Some(controller) if replicated => {
                    early = Some(
                        alter_replicated(state, controller, &r.name, &r.change, validate_only)
                            .await,
                    );
                }
                _ => topics.push((i, r.name.clone(), r.change.clone())),
            }
        }
        results.push(early);
    }
    if !topics.is_empty() {
        let indexes: Vec<usize> = topics.iter().map(|(i, _, _)| *i).collect();
        let outcome = on_controller(state, move |s, table| {
            topics
                .into_iter()
                .map(|(i, name, change)| {
                    let r = match table.topics.get_mut(&name) {
                        None => Err((
                            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                            format!("no topic {name}"),
                        )),
                        Some(meta) => {
                            new_topic_configs(&meta.configs, &s.config.topic_defaults, &change).map(
                                |configs| {
                                    if !validate_only {
                                        meta.configs = configs;
                                    }
                                },
                            )
                        }
                    };
                    (i, r)
                })
                .collect::<Vec<_>>()
        })
        .await;
        match outcome {
            Ok(done) => {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
            Err(e) => {
                for i in indexes {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every resource has a result"))
        .collect()
}

/// How often a config change is computed again when other brokers' changes
/// of the same topic keep coming first.
const CONFIG_CHANGE_ATTEMPTS: u32 = 10;

/// A config change of a replicated topic, through the controller; waits
/// (bounded) until this node's topic table has the new configs.
async fn alter_replicated(
    state: &Rc<ShardState>,
    controller: &ControllerHandle,
    name: &str,
    change: &ConfigChange,
    validate_only: bool,
) -> Result<(), AdminError> {
    // The new configs are computed from this node's copy of the metadata:
    // after a restart it is old until it catches up.
    let deadline = std::time::Instant::now() + REPLICATED_TOPIC_WAIT;
    while !controller.caught_up() {
        if std::time::Instant::now() >= deadline {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT.0,
                "this broker's cluster metadata has not caught up with the controller yet".into(),
            ));
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Computed from this node's copy and written only if the controller
    // still holds what it was computed from: when another broker's change
    // came first, compute again from the newer configs (bounded).
    let mut attempts = 0;
    let configs = loop {
        attempts += 1;
        let metadata = controller.metadata();
        let Some(topic) = metadata.topics.get(name) else {
            return Err((
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                format!("no topic {name}"),
            ));
        };
        let configs = new_topic_configs(&topic.configs, &state.config.topic_defaults, change)?;
        if validate_only || configs == topic.configs {
            return Ok(());
        }
        let command = Command::AlterTopicConfigs {
            name: name.to_string(),
            configs: configs.clone(),
            expected: Some(topic.configs.clone()),
        };
        match controller.write(command).await {
            Ok(_) => break configs,
            Err(WriteError::Refused(MetadataError::ConfigsChanged(_)))
                if attempts < CONFIG_CHANGE_ATTEMPTS =>
            {
                // Wait until this node has seen the change that came first.
                let seen = topic.configs.clone();
                while controller
                    .metadata()
                    .topics
                    .get(name)
                    .is_some_and(|t| t.configs == seen)
                {
                    if std::time::Instant::now() >= deadline {
                        return Err((
                            ErrorCode::REQUEST_TIMED_OUT.0,
                            format!("the configs of {name} changed meanwhile and the change has not reached this broker yet"),
                        ));
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            Err(WriteError::Refused(MetadataError::UnknownTopic(_))) => {
                return Err((
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                    format!("no topic {name}"),
                ))
            }
            Err(WriteError::Refused(e)) => {
                return Err((ErrorCode::UNKNOWN_SERVER_ERROR.0, e.to_string()))
            }
            Err(e) => return Err((ErrorCode::REQUEST_TIMED_OUT.0, e.to_string())),
        }
    };
    let deadline = std::time::Instant::now() + REPLICATED_TOPIC_WAIT;
    while state
        .topics()
        .get(name)
        .is_none_or(|m| m.configs != configs)
    {
        if std::time::Instant::now() >= deadline {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT.0,
                format!("the configs of {name} were changed but have not reached this broker yet"),
            ));
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

pub(crate) fn error_parts(r: Result<(), AdminError>) -> (i16, Option<String>) {
    match r {
        Ok(()) => (0, None),
        Err((code, msg)) => (code, Some(msg)),
    }
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources: Vec<ResourceChange> = req
        .resources
        .into_iter()
        .map(|r| ResourceChange {
            resource_type: r.resource_type,
            name: r.resource_name,
            change: ConfigChange::Incremental(
                r.configs
                    .into_iter()
                    .map(|c| (c.name, c.config_operation, c.value))
                    .collect(),
            ),
        })
        .collect();
    let asked: Vec<(i8, String)> = resources
        .iter()
        .map(|r| (r.resource_type, r.name.clone()))
        .collect();
    let results = alter(state, resources, req.validate_only).await;
    IncrementalAlterConfigsResponse {
        responses: asked
            .into_iter()
            .zip(results)
            .map(|((resource_type, resource_name), r)| {
                let (error_code, error_message) = error_parts(r);
                AlterConfigsResourceResponse {
                    error_code,
                    error_message,
                    resource_type,
                    resource_name,
                }
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ops(list: &[(&str, i8, Option<&str>)]) -> ConfigChange {
        ConfigChange::Incremental(
            list.iter()
                .map(|(k, o, v)| (k.to_string(), *o, v.map(str::to_string)))
                .collect(),
        )
    }

    #[test]
    fn set_and_delete() {
        let none = BTreeMap::new();
        let current = map(&[("retention.ms", "1000"), ("flush", "never")]);
        let new = new_topic_configs(
            &current,
            &none,
            &ops(&[
                ("retention.ms", OP_SET, Some("2000")),
                ("flush", OP_DELETE, None),
                ("segment.bytes", OP_SET, Some("1048576")),
            ]),
        )
        .expect("valid");
        assert_eq!(
            new,
            map(&[("retention.ms", "2000"), ("segment.bytes", "1048576")])
        );
        // Deleting a key that is not set is a no-op.
        let same = new_topic_configs(&new, &none, &ops(&[("flush", OP_DELETE, None)]));
        assert_eq!(same.expect("valid"), new);
    }

    #[test]
    fn unknown_key_and_bad_value_name_both() {
        let none = BTreeMap::new();
        let (code, msg) =
            new_topic_configs(&none, &none, &ops(&[("no.such.config", OP_SET, Some("7"))]))
                .expect_err("unknown");
        assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
        assert!(msg.contains("no.such.config") && msg.contains('7'), "{msg}");
        let (code, msg) = new_topic_configs(
            &none,
            &none,
            &ops(&[("retention.ms", OP_SET, Some("soon"))]),
        )
        .expect_err("bad value");
        assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
        assert!(
            msg.contains("retention.ms") && msg.contains("soon"),
            "{msg}"
        );
        let (code, _) = new_topic_configs(&none, &none, &ops(&[("retention.ms", OP_SET, None)]))
            .expect_err("null value");
        assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
    }

    #[test]
    fn append_and_subtract_on_lists_only() {
        let none = BTreeMap::new();
        // APPEND to the default list ("delete") of an already present item.
        let new = changed_configs(
            &none,
            &none,
            &ops(&[("cleanup.policy", OP_APPEND, Some("delete"))]),
        )
        .expect("append");
        assert_eq!(new, map(&[("cleanup.policy", "delete")]));
        let new = changed_configs(
            &none,
            &none,
            &ops(&[("cleanup.policy", OP_APPEND, Some("compact"))]),
        )
        .expect("append");
        assert_eq!(new, map(&[("cleanup.policy", "delete,compact")]));
        let new = changed_configs(
            &new,
            &none,
            &ops(&[("cleanup.policy", OP_SUBTRACT, Some("compact"))]),
        )
        .expect("subtract");
        assert_eq!(new, map(&[("cleanup.policy", "delete")]));
        // The broker default is the starting list when the topic has none.
        let defaults = map(&[("cleanup.policy", "compact")]);
        let new = changed_configs(
            &none,
            &defaults,
            &ops(&[("cleanup.policy", OP_APPEND, Some("delete"))]),
        )
        .expect("append");
        assert_eq!(new, map(&[("cleanup.policy", "compact,delete")]));
        // The validated path takes compaction, and refuses an unknown policy.
        let new = new_topic_configs(
            &none,
            &none,
            &ops(&[("cleanup.policy", OP_APPEND, Some("compact"))]),
        )
        .expect("compact");
        assert_eq!(new, map(&[("cleanup.policy", "delete,compact")]));
        let (code, msg) = new_topic_configs(
            &none,
            &none,
            &ops(&[("cleanup.policy", OP_APPEND, Some("shred"))]),
        )
        .expect_err("unknown policy");
        assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
        assert!(msg.contains("cleanup.policy"), "{msg}");
        let (code, msg) = changed_configs(
            &none,
            &none,
            &ops(&[("retention.ms", OP_APPEND, Some("5"))]),
        )
        .expect_err("not a list");
        assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
        assert!(
            msg.contains("retention.ms") && msg.contains("not a list"),
            "{msg}"
        );
    }

    #[test]
    fn bad_operation_and_duplicate_keys() {
        let none = BTreeMap::new();
        let (code, _) = changed_configs(&none, &none, &ops(&[("retention.ms", 9, Some("1"))]))
            .expect_err("bad op");
        assert_eq!(code, ErrorCode::INVALID_REQUEST.0);
        let (code, msg) = changed_configs(
            &none,
            &none,
            &ops(&[
                ("retention.ms", OP_SET, Some("1")),
                ("retention.ms", OP_DELETE, None),
            ]),
        )
        .expect_err("duplicate");
        assert_eq!(code, ErrorCode::INVALID_REQUEST.0);
        assert!(msg.contains("retention.ms"), "{msg}");
    }

    #[test]
    fn replace_drops_unlisted_and_null_keys() {
        let none = BTreeMap::new();
        let current = map(&[("retention.ms", "1000"), ("flush", "never")]);
        let change = ConfigChange::Replace(vec![
            ("segment.ms".into(), Some("60000".into())),
            ("flush".into(), None),
        ]);
        let new = new_topic_configs(&current, &none, &change).expect("valid");
        assert_eq!(new, map(&[("segment.ms", "60000")]));
        let bad = ConfigChange::Replace(vec![("max.message.bytes".into(), Some("big".into()))]);
        let (code, msg) = new_topic_configs(&current, &none, &bad).expect_err("bad");
        assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
        assert!(
            msg.contains("max.message.bytes") && msg.contains("big"),
            "{msg}"
        );
    }

    #[test]
    fn broker_and_other_resources_are_refused_clearly() {
        let change = |keys: &[&str]| {
            ConfigChange::Incremental(
                keys.iter()
                    .map(|k| (k.to_string(), OP_SET, Some("1".into())))
                    .collect(),
            )
        };
        let broker = ResourceChange {
            resource_type: RESOURCE_BROKER,
            name: "1".into(),
            change: change(&["log.retention.ms"]),
        };
        let Some(Err((code, msg))) = precheck(&broker, false) else {
            panic!("a broker change must be refused");
        };
        assert_eq!(code, ErrorCode::INVALID_REQUEST.0);
        assert!(
            msg.contains("static") && msg.contains("log.retention.ms"),
            "{msg}"
        );
        let empty = ResourceChange {
            change: change(&[]),
            ..broker.clone()
        };
        assert_eq!(precheck(&empty, false), Some(Ok(())));
        let logger = ResourceChange {
            resource_type: 8,
            ..broker.clone()
        };
        assert!(
            matches!(precheck(&logger, false), Some(Err((c, _))) if c == ErrorCode::INVALID_REQUEST.0)
        );
        let topic = ResourceChange {
            resource_type: RESOURCE_TOPIC,
            ..broker
        };
        assert_eq!(precheck(&topic, false), None);
        assert!(
            matches!(precheck(&topic, true), Some(Err((c, _))) if c == ErrorCode::INVALID_REQUEST.0)
        );
    }
}
