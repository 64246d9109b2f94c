//! The topic table: every topic, its id, partition count and configs.
//!
//! Shard 0 owns changes (create, delete, alter) and persists the table; every
//! shard holds a read-only copy that is replaced wholesale when it changes, so
//! request routing reads it without any lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Most partitions one topic may have on this broker.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Configs set on the topic (Kafka names); defaults are not stored.
    pub configs: BTreeMap<String, String>,
    /// Internal topics (`__consumer_offsets`) are flagged in Metadata.
    #[serde(default)]
    pub internal: bool,
    /// A replicated topic (created through the cluster controller): the
    /// replicas of each partition as (node, shard), preferred leader first,
    /// as the controller placed them. Empty for a topic of this node alone,
    /// whose partitions go to shards by hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<(i32, u16)>>,
}

impl TopicMeta {
    pub fn is_replicated(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// The shard of `node` holding a replica of `partition`, if any.
    pub fn replica_shard(&self, partition: i32, node: i32) -> Option<u16> {
        let p = usize::try_from(partition).ok()?;
        self.replicas
            .get(p)?
            .iter()
            .find(|&&(n, _)| n == node)
            .map(|&(_, s)| s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicTable {
    pub topics: BTreeMap<String, TopicMeta>,
    /// Bumped on every change; a shard ignores a table older than its own.
    pub version: u64,
}

pub type SharedTopics = Arc<TopicTable>;

impl TopicTable {
    pub fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }
}

/// Kafka's rule for topic names: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is illegal"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "topic name is longer than {MAX_TOPIC_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains the illegal character {c:?}; use [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

/// The topic configs sluice understands, with their defaults (Kafka's names).
pub const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("delete.retention.ms", "86400000"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("flush", "always"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("segment.ms", "604800000"),
    ("segment.index.bytes", "10485760"),
    ("index.interval.bytes", "4096"),
    ("min.insync.replicas", "1"),
    ("unclean.leader.election.enable", "false"),
];

/// The effective value of a topic config: the topic's own, else the broker default.
pub fn config_value<'a>(
    configs: &'a BTreeMap<String, String>,
    defaults: &'a BTreeMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    configs
        .get(key)
        .or_else(|| defaults.get(key))
        .map(String::as_str)
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("invalid value {v:?} for {key}: not a number"))
}

/// Builds the engine's log config from topic configs over broker defaults,
/// refusing unknown keys and bad values with a message naming both.
pub fn log_config(
    configs: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = LogConfig::default();
    for key in configs.keys() {
        if !TOPIC_CONFIGS.iter().any(|(k, _)| k == key) {
            return Err(format!("unknown topic config {key:?}"));
        }
    }
    for &(key, _) in TOPIC_CONFIGS {
        let Some(v) = config_value(configs, defaults, key) else {
            continue;
        };
        match key {
            "flush" => {
                c.flush = FlushPolicy::parse(v).ok_or_else(|| {
                    format!("invalid value {v:?} for flush: use always, never or interval.ms=N")
                })?
            }
            "max.message.bytes" => c.max_message_bytes = parse_num(key, v)?,
            "message.timestamp.type" => {
                c.timestamp_type = match v {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(format!(
                            "invalid value {v:?} for {key}: use CreateTime or LogAppendTime"
                        ))
                    }
                }
            }
            "retention.bytes" => c.retention_bytes = parse_num(key, v)?,
            "retention.ms" => c.retention_ms = parse_num(key, v)?,
            "segment.bytes" => {
                c.segment_bytes = parse_num(key, v)?;
                if c.segment_bytes < 14 {
                    return Err(format!("invalid value {v:?} for {key}: at least 14"));
                }
            }
            "segment.ms" => c.segment_ms = parse_num(key, v)?,
            "index.interval.bytes" => c.index_interval_bytes = parse_num(key, v)?,
            "cleanup.policy" => {
                c.cleanup_policy = CleanupPolicy::parse(v).ok_or_else(|| {
                    format!(
                        "invalid value {v:?} for {key}: a list of delete and compact \
                         (delete, compact or compact,delete)"
                    )
                })?
            }
            "delete.retention.ms" => {
                c.delete_retention_ms = parse_num(key, v)?;
                if c.delete_retention_ms < 0 {
                    return Err(format!("invalid value {v:?} for {key}: at least 0"));
                }
            }
            "min.cleanable.dirty.ratio" => {
                c.min_cleanable_dirty_ratio = parse_num(key, v)?;
                if !(0.0..=1.0).contains(&c.min_cleanable_dirty_ratio) {
                    return Err(format!("invalid value {v:?} for {key}: between 0 and 1"));
                }
            }
            "min.compaction.lag.ms" => {
                c.min_compaction_lag_ms = parse_num(key, v)?;
                if c.min_compaction_lag_ms < 0 {
                    return Err(format!("invalid value {v:?} for {key}: at least 0"));
                }
            }
            "max.compaction.lag.ms" => {
                c.max_compaction_lag_ms = parse_num(key, v)?;
                if c.max_compaction_lag_ms < 1 {
                    return Err(format!("invalid value {v:?} for {key}: at least 1"));
                }
            }
            "segment.index.bytes" => {
                parse_num::<i64>(key, v)?;
            }
            "min.insync.replicas" => {
                let n: i32 = parse_num(key, v)?;
                if n < 1 {
                    return Err(format!("invalid value {v:?} for {key}: at least 1"));
                }
            }
            // Read by the controller (replicated topics only).
            "unclean.leader.election.enable" => {
                let v = v.trim();
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                    return Err(format!("invalid value {v:?} for {key}: use true or false"));
                }
            }
            _ => {}
        }
    }
    if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
        return Err(format!(
            "min.compaction.lag.ms ({}) is over max.compaction.lag.ms ({})",
            c.min_compaction_lag_ms, c.max_compaction_lag_ms
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
    }

    #[test]
    fn unclean_leader_election_enable_is_a_boolean() {
        let none = BTreeMap::new();
        let mut c = BTreeMap::new();
        for ok in ["true", "false", "TRUE"] {
            c.insert("unclean.leader.election.enable".to_string(), ok.to_string());
            assert!(log_config(&c, &none).is_ok(), "{ok}");
        }
        c.insert(
            "unclean.leader.election.enable".to_string(),
            "yes".to_string(),
        );
        let e = log_config(&c, &none).expect_err("not a boolean");
        assert!(
            e.contains("unclean.leader.election.enable") && e.contains("yes"),
            "{e}"
        );
    }

    #[test]
    fn configs_are_checked() {
        let none = BTreeMap::new();
        let mut c = BTreeMap::new();
        c.insert("retention.ms".to_string(), "1000".to_string());
        c.insert("flush".to_string(), "never".to_string());
        let lc = log_config(&c, &none).expect("valid");
        assert_eq!(lc.retention_ms, 1000);
        assert_eq!(lc.flush, FlushPolicy::Never);
        c.insert("retention.ms".to_string(), "soon".to_string());
        assert!(log_config(&c, &none)
            .expect_err("bad")
            .contains("retention.ms"));
        let mut k = BTreeMap::new();
        for (policy, compact, delete) in [
            ("compact", true, false),
            ("delete", false, true),
            ("compact,delete", true, true),
            ("delete, compact", true, true),
        ] {
            k.insert("cleanup.policy".to_string(), policy.to_string());
            let lc = log_config(&k, &none).expect("valid policy");
            assert_eq!(
                (lc.cleanup_policy.compact, lc.cleanup_policy.delete),
                (compact, delete),
                "{policy}"
            );
        }
        k.insert("cleanup.policy".to_string(), "compact,shred".to_string());
        assert!(log_config(&k, &none)
            .expect_err("bad")
            .contains("cleanup.policy"));
        k.insert("cleanup.policy".to_string(), "compact".to_string());
        k.insert("min.cleanable.dirty.ratio".to_string(), "1.5".to_string());
        assert!(log_config(&k, &none)
            .expect_err("bad")
            .contains("dirty.ratio"));
        k.insert("min.cleanable.dirty.ratio".to_string(), "0.1".to_string());
        k.insert("min.compaction.lag.ms".to_string(), "10".to_string());
        k.insert("max.compaction.lag.ms".to_string(), "5".to_string());
        assert!(log_config(&k, &none)
            .expect_err("bad")
            .contains("max.compaction.lag.ms"));
        k.insert("max.compaction.lag.ms".to_string(), "50".to_string());
        k.insert("delete.retention.ms".to_string(), "7".to_string());
        let lc = log_config(&k, &none).expect("valid");
        assert_eq!(
            (
                lc.min_cleanable_dirty_ratio,
                lc.min_compaction_lag_ms,
                lc.max_compaction_lag_ms,
                lc.delete_retention_ms
            ),
            (0.1, 10, 50, 7)
        );
        let mut u = BTreeMap::new();
        u.insert("no.such.config".to_string(), "1".to_string());
        assert!(log_config(&u, &none)
            .expect_err("unknown")
            .contains("no.such.config"));
    }
}
