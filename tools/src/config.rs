//! The configuration of `sluice serve`: built-in defaults, then a TOML file
//! (`--config FILE`), then `SLUICE_*` environment variables, then flags; a
//! later source wins key by key. Every key is checked before the broker
//! starts, and a bad one is refused with its name, its value and the reason.
//!
//! The file uses the same key names as this struct (snake_case); each key's
//! flag is the key with dashes (`--num-partitions`) and its environment
//! variable is `SLUICE_` plus the key in capitals (`SLUICE_NUM_PARTITIONS`).
//! `docs/configuration.md` documents every key; a test keeps it, `--help` and
//! [`ServeConfig::default`] in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest request frame a broker may be configured to accept: the frame
/// size prefix is an i32.
const MAX_REQUEST_BYTES_LIMIT: u64 = i32::MAX as u64;
/// Smallest useful request frame limit (an ApiVersions request is ~30 bytes,
/// but a produce request needs room for a batch).
const MIN_REQUEST_BYTES: u64 = 1024;
/// Upper bound of shards, as a sanity check against typos (`--shards 1000`).
const MAX_SHARDS: usize = 1024;
/// The broker refuses topics with more partitions than this.
const MAX_DEFAULT_PARTITIONS: i32 = net::topics::MAX_PARTITIONS_PER_TOPIC;

/// Where the metrics and health endpoint listens unless configured.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9644";

/// What the broker and the commands log unless configured.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The levels a log filter may name.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter: a level, or comma-separated directives each a level
/// or `target=level` (`info,net=debug`). Stricter than tracing's own parser,
/// which takes any word as a target name, so a typo such as `inf` would
/// silently log nothing.
pub fn check_log_level(filter: &str) -> Result<(), String> {
    let level_ok = |l: &str| LOG_LEVELS.contains(&l.to_ascii_lowercase().as_str());
    if filter.trim().is_empty() {
        return Err("must not be empty; use a level (off, error, warn, info, debug, trace) or target=level pairs, e.g. info,net=debug".into());
    }
    for directive in filter.split(',') {
        let directive = directive.trim();
        let ok = match directive.split_once('=') {
            None => level_ok(directive),
            Some((target, level)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && level_ok(level)
            }
        };
        if !ok {
            return Err(format!(
                "{directive:?} is neither a level (off, error, warn, info, debug, trace) nor target=level, e.g. info,net=debug"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The effective configuration of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    pub node_id: i32,
    pub cluster_id: String,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub flush: String,
    pub max_request_bytes: u64,
    pub max_in_flight_per_connection: usize,
    pub tail_cache_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spin_before_park_us: Option<u64>,
    pub preempt_timer_us: u64,
    pub retention_check_interval_ms: u64,
    pub offsets_topic_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub offsets_retention_minutes: u64,
    pub offsets_retention_check_interval_ms: u64,
    pub offsets_commit_timeout_ms: u64,
    /// What the broker logs: a level, or comma-separated `target=level`.
    pub log_level: String,
    pub log_cleaner_backoff_ms: u64,
    pub log_cleaner_dedupe_buffer_bytes: u64,
    pub log_cleaner_io_max_bytes_per_second: u64,
    pub log_cleaner_io_min_bytes_per_second: u64,
    pub log_cleaner_defer_wait_us: u64,
    /// Address of the HTTP endpoint for `/metrics` and `/health`; empty or
    /// `off` disables it.
    pub metrics_listen: String,
    /// The controller voters of a cluster, `ID@HOST:PORT,...`; unset runs a
    /// single node without a controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_voters: Option<String>,
    /// Where this node's controller listens; unset: its own entry in
    /// `controller_voters` (required on a broker-only node, which is not
    /// among them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_listen: Option<String>,
    /// How often the broker heartbeats to the controller leader, in ms.
    pub broker_heartbeat_interval_ms: u64,
    /// A broker silent this long is fenced, its leaderships move, in ms.
    pub broker_session_timeout_ms: u64,
    /// Kafka's `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// How often the controller leader checks leader imbalance, in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// Kafka's `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: u32,
    /// Replication port of shard 0 (shard N: this + N); 0 picks free ports.
    pub replication_port: u16,
    /// Kafka's `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    /// Broker-wide topic config defaults, by Kafka name (`"retention.ms"`).
    pub topic_defaults: BTreeMap<String, String>,
}

/// Most controller voters a cluster may list (Raft quorums stay small).
pub const MAX_CONTROLLER_VOTERS: usize = 9;

/// What `controller_voters` and `controller_listen` resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Every voter's controller address, by node id.
    pub voters: BTreeMap<i32, String>,
    /// The address this node's controller binds.
    pub listen: SocketAddr,
}

/// Parses `ID@HOST:PORT,ID@HOST:PORT,...` into addresses by node id.
pub fn parse_controller_voters(s: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for item in s.split(',').map(str::trim) {
        if item.is_empty() {
            return Err("an empty entry; use ID@HOST:PORT,ID@HOST:PORT".into());
        }
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("{item:?} is not ID@HOST:PORT (e.g. 1@10.0.0.1:9093)"))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("{item:?}: the node id must be a number, 0 or more"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?}: the address needs a port (HOST:PORT)"))?;
        let host_ok = !host.is_empty() && !host.contains(char::is_whitespace);
        if !host_ok || port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
            return Err(format!("{item:?}: {addr:?} is not HOST:PORT"));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if voters.len() > MAX_CONTROLLER_VOTERS {
        return Err(format!(
            "{} voters; at most {MAX_CONTROLLER_VOTERS} (3 or 5 is usual)",
            voters.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for addr in voters.values() {
        if !seen.insert(addr) {
            return Err(format!("address {addr} is listed twice"));
        }
    }
    Ok(voters)
}

impl Default for ServeConfig {
    fn default() -> Self {
        let broker = net::BrokerConfig::default();
        ServeConfig {
            data_dir: broker.data_dir,
            listen: broker.listen.to_string(),
            advertised_host: None,
            shards: None,
            node_id: broker.node_id,
            cluster_id: broker.cluster_id,
            auto_create_topics: broker.auto_create_topics,
            num_partitions: broker.num_partitions,
            flush: "always".to_string(),
            max_request_bytes: broker.max_request_bytes as u64,
            max_in_flight_per_connection: broker.max_in_flight_per_connection,
            tail_cache_bytes: broker.tail_cache_bytes as u64,
            spin_before_park_us: None,
            preempt_timer_us: u64::try_from(shard_router::DEFAULT_PREEMPT_TIMER.as_micros())
                .unwrap_or(u64::MAX),
            retention_check_interval_ms: broker.retention_check_interval_ms,
            offsets_topic_partitions: broker.offsets_topic_partitions,
            offsets_topic_replication_factor: broker.offsets_topic_replication_factor,
            group_initial_rebalance_delay_ms: broker.group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms: broker.group_min_session_timeout_ms,
            group_max_session_timeout_ms: broker.group_max_session_timeout_ms,
            offsets_retention_minutes: broker.offsets_retention_minutes,
            offsets_retention_check_interval_ms: broker.offsets_retention_check_interval_ms,
            offsets_commit_timeout_ms: broker.offsets_commit_timeout_ms,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            log_cleaner_backoff_ms: broker.log_cleaner_backoff_ms,
            log_cleaner_dedupe_buffer_bytes: broker.log_cleaner_dedupe_buffer_bytes,
            log_cleaner_io_max_bytes_per_second: broker.log_cleaner_io_max_bytes_per_second,
            log_cleaner_io_min_bytes_per_second: broker.log_cleaner_io_min_bytes_per_second,
            log_cleaner_defer_wait_us: broker.log_cleaner_defer_wait_us,
            metrics_listen: DEFAULT_METRICS_LISTEN.to_string(),
            controller_voters: None,
            controller_listen: None,
            broker_heartbeat_interval_ms:
                shard_router::controller::DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS,
            broker_session_timeout_ms: shard_router::controller::DEFAULT_BROKER_SESSION_TIMEOUT_MS,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms:
                shard_router::controller::DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS,
            leader_imbalance_per_broker_percentage:
                shard_router::controller::DEFAULT_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
            replication_port: broker.replication_port,
            replica_lag_time_max_ms: broker.replica_lag_time_max_ms as u64,
            topic_defaults: BTreeMap::new(),
        }
    }
}

/// A configuration refused: which key, the value given, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file cannot be read.
    Read { path: PathBuf, reason: String },
    /// The file is not valid TOML, has an unknown key, or a value of the
    /// wrong type (the parser's message names the key and the line).
    Parse { path: PathBuf, reason: String },
    /// A key's value is out of range or malformed.
    Invalid {
        key: String,
        value: String,
        why: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => write!(
                f,
                "cannot read the config file {}: {reason}; check the path given to --config / SLUICE_CONFIG",
                path.display()
            ),
            ConfigError::Parse { path, reason } => write!(
                f,
                "invalid config file {}: {}; see docs/configuration.md or `sluice serve --help` for the keys",
                path.display(),
                reason.trim_end()
            ),
            ConfigError::Invalid { key, value, why } => write!(
                f,
                "invalid config: {key} = {value:?}: {why} (set in the config file, {} or --{})",
                env_name(key),
                flag_name(key)
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The environment variable of a key.
pub fn env_name(key: &str) -> String {
    format!("SLUICE_{}", key.to_ascii_uppercase())
}

/// The flag of a key (without the leading dashes).
pub fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

impl ServeConfig {
    /// Defaults overlaid with the file at `path`, when given.
    pub fn from_file(path: Option<&Path>) -> Result<ServeConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(ServeConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        ServeConfig::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses TOML text; keys not given keep their defaults.
    pub fn parse(text: &str) -> Result<ServeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The configuration as a TOML document that `--config` reads back.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# The effective configuration of `sluice serve` (defaults, then the config\n\
             # file, then SLUICE_* environment variables, then flags).\n",
        );
        let unset = [
            (
                "advertised_host",
                self.advertised_host.is_none(),
                "the listen address, or 127.0.0.1 for 0.0.0.0",
            ),
            ("shards", self.shards.is_none(), "one per usable CPU"),
            (
                "spin_before_park_us",
                self.spin_before_park_us.is_none(),
                "no busy polling",
            ),
            (
                "controller_voters",
                self.controller_voters.is_none(),
                "a single node, no controller",
            ),
            (
                "controller_listen",
                self.controller_listen.is_none(),
                "this node's entry in controller_voters",
            ),
        ];
        for (key, is_unset, meaning) in unset {
            if is_unset {
                out.push_str(&format!("# {key}: unset ({meaning})\n"));
            }
        }
        out.push_str(&toml::to_string(self).expect("a flat struct of plain values serializes"));
        out
    }

    /// Checks every key; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, why: &str| ConfigError::Invalid {
            key: key.to_string(),
            value,
            why: why.to_string(),
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", String::new(), "must not be empty"));
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                self.listen.clone(),
                "not an IP address and port, e.g. 0.0.0.0:9092 or [::]:9092",
            ));
        }
        if let Some(host) = &self.advertised_host {
            if host.trim().is_empty() || host.contains(char::is_whitespace) {
                return Err(invalid(
                    "advertised_host",
                    host.clone(),
                    "must be a host name or IP address clients can reach",
                ));
            }
        }
        if let Some(shards) = self.shards {
            if shards == 0 || shards > MAX_SHARDS {
                return Err(invalid(
                    "shards",
                    shards.to_string(),
                    &format!("must be between 1 and {MAX_SHARDS}"),
                ));
            }
        }
        if self.broker_heartbeat_interval_ms == 0 {
            return Err(invalid(
                "broker_heartbeat_interval_ms",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            return Err(invalid(
                "broker_session_timeout_ms",
                self.broker_session_timeout_ms.to_string(),
                &format!(
                    "must be longer than broker_heartbeat_interval_ms ({})",
                    self.broker_heartbeat_interval_ms
                ),
            ));
        }
        if self.node_id < 0 {
            return Err(invalid(
                "node_id",
                self.node_id.to_string(),
                "must be 0 or more",
            ));
        }
        if self.cluster_id.trim().is_empty() {
            return Err(invalid(
                "cluster_id",
                self.cluster_id.clone(),
                "must not be empty",
            ));
        }
        if !(1..=MAX_DEFAULT_PARTITIONS).contains(&self.num_partitions) {
            return Err(invalid(
                "num_partitions",
                self.num_partitions.to_string(),
                &format!("must be between 1 and {MAX_DEFAULT_PARTITIONS}"),
            ));
        }
        if engine::FlushPolicy::parse(&self.flush).is_none() {
            return Err(invalid(
                "flush",
                self.flush.clone(),
                "use always, never or interval.ms=N",
            ));
        }
        if !(MIN_REQUEST_BYTES..=MAX_REQUEST_BYTES_LIMIT).contains(&self.max_request_bytes) {
            return Err(invalid(
                "max_request_bytes",
                self.max_request_bytes.to_string(),
                &format!("must be between {MIN_REQUEST_BYTES} and {MAX_REQUEST_BYTES_LIMIT}"),
            ));
        }
        if self.max_in_flight_per_connection == 0 {
            return Err(invalid(
                "max_in_flight_per_connection",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(50..=100_000).contains(&self.preempt_timer_us) {
            return Err(invalid(
                "preempt_timer_us",
                self.preempt_timer_us.to_string(),
                "must be between 50 and 100000",
            ));
        }
        if usize::try_from(self.tail_cache_bytes).is_err() {
            return Err(invalid(
                "tail_cache_bytes",
                self.tail_cache_bytes.to_string(),
                "larger than this machine's address space",
            ));
        }
        if self.log_cleaner_backoff_ms == 0 {
            return Err(invalid(
                "log_cleaner_backoff_ms",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(1 << 10..=1 << 40).contains(&self.log_cleaner_dedupe_buffer_bytes) {
            return Err(invalid(
                "log_cleaner_dedupe_buffer_bytes",
                self.log_cleaner_dedupe_buffer_bytes.to_string(),
                "must be between 1 KiB and 1 TiB",
            ));
        }
        if !(100..=86_400_000).contains(&self.leader_imbalance_check_interval_ms) {
            return Err(invalid(
                "leader_imbalance_check_interval_ms",
                self.leader_imbalance_check_interval_ms.to_string(),
                "must be between 100 ms and a day",
            ));
        }
        if self.leader_imbalance_per_broker_percentage > 100 {
            return Err(invalid(
                "leader_imbalance_per_broker_percentage",
                self.leader_imbalance_per_broker_percentage.to_string(),
                "must be between 0 and 100",
            ));
        }
        if !(100..=86_400_000).contains(&self.replica_lag_time_max_ms) {
            return Err(invalid(
                "replica_lag_time_max_ms",
                self.replica_lag_time_max_ms.to_string(),
                "must be between 100 ms and a day",
            ));
        }
        let max_defer_us = engine::cleaner::MAX_DEFER_WAIT.as_micros() as u64;
        if self.log_cleaner_defer_wait_us > max_defer_us {
            return Err(invalid(
                "log_cleaner_defer_wait_us",
                self.log_cleaner_defer_wait_us.to_string(),
                &format!("must be between 0 and {max_defer_us}"),
            ));
        }
        if self.retention_check_interval_ms == 0 {
            return Err(invalid(
                "retention_check_interval_ms",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(1..=MAX_DEFAULT_PARTITIONS).contains(&self.offsets_topic_partitions) {
            return Err(invalid(
                "offsets_topic_partitions",
                self.offsets_topic_partitions.to_string(),
                &format!("must be between 1 and {MAX_DEFAULT_PARTITIONS}"),
            ));
        }
        if !(1..=16).contains(&self.offsets_topic_replication_factor) {
            return Err(invalid(
                "offsets_topic_replication_factor",
                self.offsets_topic_replication_factor.to_string(),
                "must be between 1 and 16",
            ));
        }
        if self.group_min_session_timeout_ms < 1 {
            return Err(invalid(
                "group_min_session_timeout_ms",
                self.group_min_session_timeout_ms.to_string(),
                "must be at least 1",
            ));
        }
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms {
            return Err(invalid(
                "group_max_session_timeout_ms",
                self.group_max_session_timeout_ms.to_string(),
                &format!(
                    "must not be below group_min_session_timeout_ms ({})",
                    self.group_min_session_timeout_ms
                ),
            ));
        }
        if self.offsets_retention_minutes == 0 {
            return Err(invalid(
                "offsets_retention_minutes",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return Err(invalid(
                "offsets_retention_check_interval_ms",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.offsets_commit_timeout_ms == 0 {
            return Err(invalid(
                "offsets_commit_timeout_ms",
                "0".into(),
                "must be at least 1",
            ));
        }
        if let Err(why) = check_log_level(&self.log_level) {
            return Err(invalid("log_level", self.log_level.clone(), &why));
        }
        if self.metrics_addr().is_none()
            && !self.metrics_listen.is_empty()
            && self.metrics_listen != "off"
        {
            return Err(invalid(
                "metrics_listen",
                self.metrics_listen.clone(),
                "not an IP address and port (e.g. 127.0.0.1:9644), or off",
            ));
        }
        self.controller()
            .map_err(|(key, value, why)| invalid(key, value, &why))?;
        for (name, value) in &self.topic_defaults {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                return Err(invalid(
                    "topic_defaults",
                    format!("{name}={value}"),
                    "a topic config name must be non-empty and without spaces",
                ));
            }
            if name == "unclean.leader.election.enable"
                && !["true", "false"].contains(&value.trim().to_ascii_lowercase().as_str())
            {
                return Err(invalid(
                    "topic_defaults",
                    format!("{name}={value}"),
                    "unclean.leader.election.enable: use true or false",
                ));
            }
            if name == "flush" && engine::FlushPolicy::parse(value).is_none() {
                return Err(invalid(
                    "topic_defaults",
                    format!("{name}={value}"),
                    "flush: use always, never or interval.ms=N",
                ));
            }
        }
        Ok(())
    }

    /// The controller of a cluster, `None` for a single node; `Err` names
    /// the key, its value and what is wrong.
    #[allow(clippy::type_complexity)]
    pub fn controller(&self) -> Result<Option<ControllerSettings>, (&'static str, String, String)> {
        let Some(text) = &self.controller_voters else {
            if let Some(listen) = &self.controller_listen {
                return Err((
                    "controller_listen",
                    listen.clone(),
                    "needs controller_voters (a single node runs no controller)".into(),
                ));
            }
            return Ok(None);
        };
        let voters = parse_controller_voters(text)
            .map_err(|why| ("controller_voters", text.clone(), why))?;
        let listen = match (voters.get(&self.node_id), &self.controller_listen) {
            (_, Some(l)) => l.parse::<SocketAddr>().map_err(|_| {
                (
                    "controller_listen",
                    l.clone(),
                    "not an IP address and port, e.g. 0.0.0.0:9093".to_string(),
                )
            })?,
            (Some(own), None) => own.parse::<SocketAddr>().map_err(|_| {
                (
                    "controller_listen",
                    String::new(),
                    format!(
                        "this node's voter address {own} is a host name: set controller_listen \
                         to the IP address and port to bind"
                    ),
                )
            })?,
            (None, None) => {
                return Err((
                    "controller_voters",
                    text.clone(),
                    format!(
                        "node_id {} is not among the voters ({}); a broker-only node needs \
                         controller_listen, the address the voters reach it at",
                        self.node_id,
                        voters
                            .keys()
                            .map(|k| k.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        if !voters.contains_key(&self.node_id) && listen.ip().is_unspecified() {
            return Err((
                "controller_listen",
                listen.to_string(),
                "a broker-only node (not among controller_voters) tells the voters this \
                 address: give its IP, not an unspecified one"
                    .into(),
            ));
        }
        if let Ok(kafka) = self.listen.parse::<SocketAddr>() {
            let same_ip = kafka.ip() == listen.ip()
                || kafka.ip().is_unspecified()
                || listen.ip().is_unspecified();
            if same_ip && kafka.port() == listen.port() {
                return Err((
                    "controller_listen",
                    listen.to_string(),
                    format!(
                        "collides with the Kafka listen address {kafka}; the controller needs a \
                         port of its own"
                    ),
                ));
            }
        }
        Ok(Some(ControllerSettings { voters, listen }))
    }

    /// The metrics endpoint's address, `None` when disabled (empty or `off`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
    }

    /// The listen address (call after [`ServeConfig::validate`]).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .expect("validate() checked the listen address")
    }
}

/// Parses `name=value` (a `--topic-default` flag or an item of
/// `SLUICE_TOPIC_DEFAULTS`).
pub fn parse_topic_default(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!(
            "{s:?} is not NAME=VALUE (e.g. retention.ms=86400000)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let d = ServeConfig::default();
        d.validate().unwrap();
        assert_eq!(ServeConfig::parse(&d.to_toml()).unwrap(), d);
        let mut c = d.clone();
        c.shards = Some(2);
        c.advertised_host = Some("broker-1".into());
        c.topic_defaults
            .insert("retention.ms".into(), "1000".into());
        assert_eq!(ServeConfig::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn a_file_sets_only_its_keys() {
        let c =
            ServeConfig::parse("num_partitions = 3\n[topic_defaults]\n\"retention.ms\" = \"5\"\n")
                .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.topic_defaults["retention.ms"], "5");
        assert_eq!(c.listen, ServeConfig::default().listen);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_name() {
        let e = ServeConfig::parse("num_partitons = 3\n").unwrap_err();
        assert!(e.contains("num_partitons"), "{e}");
        let e = ServeConfig::parse("num_partitions = \"three\"\n").unwrap_err();
        assert!(e.contains("num_partitions"), "{e}");
    }

    #[test]
    fn invalid_values_name_key_value_and_reason() {
        let d = ServeConfig::default;
        let e = ServeConfig {
            flush: "sometimes".into(),
            ..d()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("flush = \"sometimes\""), "{e}");
        assert!(e.contains("SLUICE_FLUSH") && e.contains("--flush"), "{e}");
        let bad = [
            (
                ServeConfig {
                    listen: "localhost".into(),
                    ..d()
                },
                "listen = \"localhost\"",
            ),
            (
                ServeConfig {
                    num_partitions: 0,
                    ..d()
                },
                "num_partitions = \"0\"",
            ),
            (
                ServeConfig {
                    shards: Some(0),
                    ..d()
                },
                "shards = \"0\"",
            ),
            (
                ServeConfig {
                    group_max_session_timeout_ms: 1,
                    ..d()
                },
                "group_max_session_timeout_ms",
            ),
            (
                ServeConfig {
                    log_level: "inf".into(),
                    ..d()
                },
                "log_level = \"inf\"",
            ),
            (
                ServeConfig {
                    log_level: "net=loud".into(),
                    ..d()
                },
                "log_level = \"net=loud\"",
            ),
            (
                ServeConfig {
                    offsets_retention_check_interval_ms: 0,
                    ..d()
                },
                "offsets_retention_check_interval_ms",
            ),
            (
                ServeConfig {
                    offsets_commit_timeout_ms: 0,
                    ..d()
                },
                "offsets_commit_timeout_ms",
            ),
            (
                ServeConfig {
                    topic_defaults: [("unclean.leader.election.enable".into(), "yes".into())]
                        .into(),
                    ..d()
                },
                "unclean.leader.election.enable=yes",
            ),
            (
                ServeConfig {
                    metrics_listen: "9644".into(),
                    ..d()
                },
                "metrics_listen = \"9644\"",
            ),
        ];
        for (c, want) in bad {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn log_filters() {
        for good in ["info", "WARN", "off", "info,net=debug", "net::groups=trace"] {
            check_log_level(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "inf",
            "sometimes",
            "net=loud",
            "=info",
            "info,",
            "net debug=info",
        ] {
            assert!(check_log_level(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn controller_voters_parse_and_resolve_this_nodes_listen_address() {
        let voters =
            parse_controller_voters("1@127.0.0.1:9093, 2@127.0.0.2:9093,3@node-3:9093").unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&3], "node-3:9093");
        let c = ServeConfig {
            node_id: 2,
            controller_voters: Some("1@127.0.0.1:9093,2@127.0.0.2:9093".into()),
            ..ServeConfig::default()
        };
        c.validate().unwrap();
        let settings = c.controller().unwrap().unwrap();
        assert_eq!(settings.listen, "127.0.0.2:9093".parse().unwrap());
        assert_eq!(settings.voters.len(), 2);
        assert_eq!(ServeConfig::default().controller().unwrap(), None);
        assert_eq!(ServeConfig::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn bad_controller_settings_name_key_value_and_reason() {
        for bad in [
            "",
            "1",
            "1@",
            "x@127.0.0.1:9093",
            "-1@127.0.0.1:9093",
            "1@127.0.0.1",
            "1@127.0.0.1:0",
            "1@127.0.0.1:99999",
            "1@127.0.0.1:9093,1@127.0.0.2:9093",
            "1@127.0.0.1:9093,2@127.0.0.1:9093",
            "1@127.0.0.1:9093,,2@127.0.0.2:9093",
            "0@a:1,1@b:1,2@c:1,3@d:1,4@e:1,5@f:1,6@g:1,7@h:1,8@i:1,9@j:1",
        ] {
            assert!(parse_controller_voters(bad).is_err(), "{bad:?} accepted");
        }
        let d = || ServeConfig {
            node_id: 1,
            ..ServeConfig::default()
        };
        let cases = [
            (
                ServeConfig {
                    node_id: 4,
                    controller_voters: Some("1@127.0.0.1:9093".into()),
                    ..d()
                },
                "node_id 4 is not among the voters (1)",
            ),
            (
                ServeConfig {
                    controller_listen: Some("0.0.0.0:9093".into()),
                    ..d()
                },
                "controller_listen = \"0.0.0.0:9093\": needs controller_voters",
            ),
            (
                ServeConfig {
                    controller_voters: Some("1@node-1:9093".into()),
                    ..d()
                },
                "is a host name: set controller_listen",
            ),
            (
                ServeConfig {
                    controller_voters: Some("1@127.0.0.1:9093".into()),
                    controller_listen: Some("nine".into()),
                    ..d()
                },
                "controller_listen = \"nine\"",
            ),
            (
                ServeConfig {
                    controller_voters: Some("1@127.0.0.1:9092".into()),
                    ..d()
                },
                "collides with the Kafka listen address",
            ),
            (
                ServeConfig {
                    controller_voters: Some("1@127.0.0.1".into()),
                    ..d()
                },
                "SLUICE_CONTROLLER_VOTERS",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let ok = ServeConfig {
            controller_voters: Some("1@node-1:9093".into()),
            controller_listen: Some("0.0.0.0:9093".into()),
            ..d()
        };
        ok.validate().unwrap();
    }

    #[test]
    fn topic_default_pairs() {
        assert_eq!(
            parse_topic_default("retention.ms=10").unwrap(),
            ("retention.ms".into(), "10".into())
        );
        assert!(parse_topic_default("retention.ms").is_err());
        assert!(parse_topic_default("=1").is_err());
    }
}
