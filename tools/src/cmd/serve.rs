//! `sluice serve`: run a broker.
//!
//! Configuration comes from built-in defaults, a TOML file (`--config`),
//! `SLUICE_*` environment variables and flags, later ones winning; see
//! `crate::config` and docs/configuration.md.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use net::metrics::Scrape;
use net::{BrokerConfig, ShardState};
use shard_router::controller::{
    BrokerRegistration, Controller, ControllerConfig, UNCLEAN_LEADER_ELECTION_ENABLE,
};
use shard_router::{NodeId, RuntimeConfig, ShardCtx, ShardId};

use crate::cmd::config::usage_error;
use crate::config::{parse_topic_default, ServeConfig, DEFAULT_METRICS_LISTEN};

/// Every flag but `--config` and `--print-config` overrides the config key
/// of the same name (dashes for underscores); each also reads `SLUICE_<KEY>`.
/// A flag or variable wins over the file, and the file over the default.
#[derive(Args, Debug)]
#[command(
    after_help = "Precedence: flags, then SLUICE_* environment variables, then the \
    --config file, then the defaults shown. Every key is documented in docs/configuration.md.\n\
    Exit codes: 0 stopped cleanly, 1 runtime error, 2 invalid flag or configuration."
)]
pub struct ServeArgs {
    /// A TOML file of config keys (see docs/configuration.md); unknown keys are errors.
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit without starting.
    #[arg(long)]
    print_config: bool,
    /// Where partition logs and metadata live. Key data_dir, default ./sluice-data.
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on for Kafka clients. Key listen, default 0.0.0.0:9092.
    #[arg(long, env = "SLUICE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Host advertised to clients in Metadata. Key advertised_host, default: the listen
    /// address, or 127.0.0.1 for 0.0.0.0.
    #[arg(long, env = "SLUICE_ADVERTISED_HOST", value_name = "HOST")]
    advertised_host: Option<String>,
    /// Number of shards (one pinned core each). Key shards, default one per usable CPU.
    #[arg(long, env = "SLUICE_SHARDS", value_name = "N")]
    shards: Option<usize>,
    /// This broker's node id. Key node_id, default 0.
    #[arg(long, env = "SLUICE_NODE_ID", value_name = "ID")]
    node_id: Option<i32>,
    /// Cluster id reported to clients. Key cluster_id, default sluice-cluster.
    #[arg(long, env = "SLUICE_CLUSTER_ID", value_name = "ID")]
    cluster_id: Option<String>,
    /// Create topics on first use (Kafka's auto.create.topics.enable). Key
    /// auto_create_topics, default true.
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", value_name = "BOOL", action = clap::ArgAction::Set)]
    auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic (Kafka's num.partitions). Key num_partitions,
    /// default 1.
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", value_name = "N")]
    num_partitions: Option<i32>,
    /// Default flush policy of topics: always (fsync before ack), never, or interval.ms=N.
    /// Key flush, default always.
    #[arg(long, env = "SLUICE_FLUSH", value_name = "POLICY")]
    flush: Option<String>,
    /// Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes). Key
    /// max_request_bytes, default 104857600.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", value_name = "BYTES")]
    max_request_bytes: Option<u64>,
    /// Requests one connection may have in flight before the broker stops reading it. Key
    /// max_in_flight_per_connection, default 64.
    #[arg(long, env = "SLUICE_MAX_IN_FLIGHT_PER_CONNECTION", value_name = "N")]
    max_in_flight_per_connection: Option<usize>,
    /// Bytes of recent batches cached per shard. Key tail_cache_bytes, default 268435456.
    #[arg(long, env = "SLUICE_TAIL_CACHE_BYTES", value_name = "BYTES")]
    tail_cache_bytes: Option<u64>,
    /// Busy-poll this many microseconds before an idle shard sleeps (lower latency, more
    /// CPU). Key spin_before_park_us, default unset (no busy polling).
    #[arg(long, env = "SLUICE_SPIN_BEFORE_PARK_US", value_name = "US")]
    spin_before_park_us: Option<u64>,
    /// Longest a shard runs tasks before it submits queued disk I/O, in microseconds
    /// (glommio's preempt timer). Key preempt_timer_us, default 500.
    #[arg(long, env = "SLUICE_PREEMPT_TIMER_US", value_name = "US")]
    preempt_timer_us: Option<u64>,
    /// How often retention runs, in ms. Key retention_check_interval_ms, default 30000.
    #[arg(long, env = "SLUICE_RETENTION_CHECK_INTERVAL_MS", value_name = "MS")]
    retention_check_interval_ms: Option<u64>,
    /// How long a shard's log cleaner sleeps when no compacted log is due, in ms
    /// (Kafka's log.cleaner.backoff.ms). Key log_cleaner_backoff_ms, default 15000.
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS", value_name = "MS")]
    log_cleaner_backoff_ms: Option<u64>,
    /// Memory of each shard's log cleaner key map, about 32 bytes a key (Kafka's
    /// log.cleaner.dedupe.buffer.size). Key log_cleaner_dedupe_buffer_bytes, default 33554432.
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_DEDUPE_BUFFER_BYTES",
        value_name = "BYTES"
    )]
    log_cleaner_dedupe_buffer_bytes: Option<u64>,
    /// I/O rate limit of each shard's log cleaner, reads and writes together, 0 for
    /// none (Kafka's log.cleaner.io.max.bytes.per.second). Key
    /// log_cleaner_io_max_bytes_per_second, default 104857600.
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND",
        value_name = "BYTES"
    )]
    log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Guaranteed I/O rate of each shard's log cleaner while the shard's produce
    /// and fetch disk I/O is in flight (it otherwise defers its I/O to theirs), 0
    /// to wait for an idle data path. Key log_cleaner_io_min_bytes_per_second,
    /// default 8388608.
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_IO_MIN_BYTES_PER_SECOND",
        value_name = "BYTES"
    )]
    log_cleaner_io_min_bytes_per_second: Option<u64>,
    /// How long the log cleaner waits before looking again when it defers an I/O
    /// to the shard's produce and fetch I/O, in µs (0 to 500; 0: it never
    /// defers). Key log_cleaner_defer_wait_us, default 200.
    #[arg(long, env = "SLUICE_LOG_CLEANER_DEFER_WAIT_US", value_name = "US")]
    log_cleaner_defer_wait_us: Option<u64>,
    /// Partitions of __consumer_offsets when it is created (Kafka's
    /// offsets.topic.num.partitions). Key offsets_topic_partitions, default 50.
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_PARTITIONS", value_name = "N")]
    offsets_topic_partitions: Option<i32>,
    /// Replicas of each __consumer_offsets partition in a cluster (Kafka's
    /// offsets.topic.replication.factor, capped by the number of controller
    /// voters); the topic is created once that many brokers are live. Key
    /// offsets_topic_replication_factor, default 3.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_TOPIC_REPLICATION_FACTOR",
        value_name = "N"
    )]
    offsets_topic_replication_factor: Option<i16>,
    /// How long a new group waits for more members before its first rebalance, in ms
    /// (Kafka's group.initial.rebalance.delay.ms). Key group_initial_rebalance_delay_ms,
    /// default 3000.
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        value_name = "MS"
    )]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a group member may ask for, in ms. Key
    /// group_min_session_timeout_ms, default 6000.
    #[arg(long, env = "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a group member may ask for, in ms. Key
    /// group_max_session_timeout_ms, default 1800000.
    #[arg(long, env = "SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_max_session_timeout_ms: Option<i32>,
    /// How long committed offsets are kept once their group is empty (or, in a group
    /// with members, once no member subscribes to their topic), in minutes (Kafka's
    /// offsets.retention.minutes). Key offsets_retention_minutes, default 10080.
    #[arg(long, env = "SLUICE_OFFSETS_RETENTION_MINUTES", value_name = "MIN")]
    offsets_retention_minutes: Option<u64>,
    /// How often expired committed offsets (and offsets of deleted topics) are removed,
    /// in ms (Kafka's offsets.retention.check.interval.ms). Key
    /// offsets_retention_check_interval_ms, default 600000.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        value_name = "MS"
    )]
    offsets_retention_check_interval_ms: Option<u64>,
    /// How long a write to __consumer_offsets (an offset commit, group metadata)
    /// waits for its in-sync replicas before it is answered REQUEST_TIMED_OUT, in ms
    /// (Kafka's offsets.commit.timeout.ms). Key offsets_commit_timeout_ms, default 5000.
    #[arg(long, env = "SLUICE_OFFSETS_COMMIT_TIMEOUT_MS", value_name = "MS")]
    offsets_commit_timeout_ms: Option<u64>,
    /// Address of the HTTP endpoint serving GET /metrics (Prometheus) and GET /health;
    /// empty or off disables it. Key metrics_listen, default 127.0.0.1:9644.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// The controller voters of a cluster, ID@HOST:PORT,... (e.g.
    /// 1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093). A node whose node_id is not
    /// among them runs as a broker only: it follows the metadata as a non-voting
    /// learner and needs controller_listen. Key controller_voters, default unset (a
    /// single node, no controller).
    #[arg(
        long,
        env = "SLUICE_CONTROLLER_VOTERS",
        value_name = "ID@HOST:PORT,..."
    )]
    controller_voters: Option<String>,
    /// Address this node's controller listens on for the other voters (on a
    /// broker-only node: the IP and port the voters reach it at). Key
    /// controller_listen, default unset (this node's entry in controller_voters).
    #[arg(long, env = "SLUICE_CONTROLLER_LISTEN", value_name = "ADDR")]
    controller_listen: Option<String>,
    /// How often this broker heartbeats to the controller leader, in ms (Kafka's
    /// broker.heartbeat.interval.ms). Key broker_heartbeat_interval_ms, default 2000.
    #[arg(long, env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    broker_heartbeat_interval_ms: Option<u64>,
    /// A broker without a heartbeat for this long is fenced and its partition
    /// leaderships move to in-sync replicas, in ms (Kafka's broker.session.timeout.ms).
    /// Key broker_session_timeout_ms, default 9000.
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS", value_name = "MS")]
    broker_session_timeout_ms: Option<u64>,
    /// Whether the controller moves partition leaderships back to their preferred
    /// (first) replica on its own, as after a rolling restart (Kafka's
    /// auto.leader.rebalance.enable). Key auto_leader_rebalance_enable, default true.
    #[arg(long, env = "SLUICE_AUTO_LEADER_REBALANCE_ENABLE", value_name = "BOOL", action = clap::ArgAction::Set)]
    auto_leader_rebalance_enable: Option<bool>,
    /// How often the controller leader checks for leaderships away from their
    /// preferred replica, in ms (Kafka's leader.imbalance.check.interval.seconds,
    /// default 300 s there). Key leader_imbalance_check_interval_ms, default 10000.
    #[arg(
        long,
        env = "SLUICE_LEADER_IMBALANCE_CHECK_INTERVAL_MS",
        value_name = "MS"
    )]
    leader_imbalance_check_interval_ms: Option<u64>,
    /// The share of a broker's preferred leaderships that may be elsewhere before the
    /// controller moves them back, in percent (Kafka's
    /// leader.imbalance.per.broker.percentage). Key
    /// leader_imbalance_per_broker_percentage, default 10.
    #[arg(
        long,
        env = "SLUICE_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
        value_name = "PERCENT"
    )]
    leader_imbalance_per_broker_percentage: Option<u32>,
    /// Replication port of shard 0 in a cluster; shard N listens on this + N, on the
    /// listen address. 0 picks a free port per shard (peers learn it from the
    /// controller). Key replication_port, default 0.
    #[arg(long, env = "SLUICE_REPLICATION_PORT", value_name = "PORT")]
    replication_port: Option<u16>,
    /// How long a follower may go without catching up with its leader before it
    /// leaves the in-sync replicas, in ms (Kafka's replica.lag.time.max.ms). Key
    /// replica_lag_time_max_ms, default 30000.
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", value_name = "MS")]
    replica_lag_time_max_ms: Option<u64>,
    /// A broker-wide topic config default, NAME=VALUE (e.g. retention.ms=86400000);
    /// repeat it, or comma-separate in the variable. Key topic_defaults (a table),
    /// default empty.
    #[arg(long = "topic-default", env = "SLUICE_TOPIC_DEFAULTS", value_name = "NAME=VALUE",
          value_delimiter = ',', value_parser = parse_topic_default)]
    topic_defaults: Vec<(String, String)>,
}

impl ServeArgs {
    /// The effective configuration: the file (or defaults) overlaid with
    /// variables and flags, then checked.
    /// `log_level` is the global `--log-level` / `SLUICE_LOG_LEVEL`, which
    /// overrides the file's `log_level` like any other flag.
    pub fn effective_config(&self, log_level: Option<&str>) -> anyhow::Result<ServeConfig> {
        let mut c = ServeConfig::from_file(self.config.as_deref()).map_err(usage_error)?;
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut c.data_dir, &self.data_dir);
        set(&mut c.listen, &self.listen);
        if self.advertised_host.is_some() {
            c.advertised_host = self.advertised_host.clone();
        }
        if self.shards.is_some() {
            c.shards = self.shards;
        }
        set(&mut c.node_id, &self.node_id);
        set(&mut c.cluster_id, &self.cluster_id);
        set(&mut c.auto_create_topics, &self.auto_create_topics);
        set(&mut c.num_partitions, &self.num_partitions);
        set(&mut c.flush, &self.flush);
        set(&mut c.max_request_bytes, &self.max_request_bytes);
        set(
            &mut c.max_in_flight_per_connection,
            &self.max_in_flight_per_connection,
        );
        set(&mut c.tail_cache_bytes, &self.tail_cache_bytes);
        if self.spin_before_park_us.is_some() {
            c.spin_before_park_us = self.spin_before_park_us;
        }
        set(&mut c.preempt_timer_us, &self.preempt_timer_us);
        set(
            &mut c.retention_check_interval_ms,
            &self.retention_check_interval_ms,
        );
        set(
            &mut c.offsets_topic_partitions,
            &self.offsets_topic_partitions,
        );
        set(
            &mut c.offsets_topic_replication_factor,
            &self.offsets_topic_replication_factor,
        );
        set(&mut c.log_cleaner_backoff_ms, &self.log_cleaner_backoff_ms);
        set(
            &mut c.log_cleaner_dedupe_buffer_bytes,
            &self.log_cleaner_dedupe_buffer_bytes,
        );
        set(
            &mut c.log_cleaner_io_max_bytes_per_second,
            &self.log_cleaner_io_max_bytes_per_second,
        );
        set(
            &mut c.log_cleaner_io_min_bytes_per_second,
            &self.log_cleaner_io_min_bytes_per_second,
        );
        set(
            &mut c.log_cleaner_defer_wait_us,
            &self.log_cleaner_defer_wait_us,
        );
        set(
            &mut c.group_initial_rebalance_delay_ms,
            &self.group_initial_rebalance_delay_ms,
        );
        set(
            &mut c.group_min_session_timeout_ms,
            &self.group_min_session_timeout_ms,
        );
        set(
            &mut c.group_max_session_timeout_ms,
            &self.group_max_session_timeout_ms,
        );
        set(
            &mut c.offsets_retention_minutes,
            &self.offsets_retention_minutes,
        );
        set(
            &mut c.offsets_retention_check_interval_ms,
            &self.offsets_retention_check_interval_ms,
        );
        set(
            &mut c.offsets_commit_timeout_ms,
            &self.offsets_commit_timeout_ms,
        );
        if let Some(level) = log_level {
            c.log_level = level.to_string();
        }
        set(&mut c.metrics_listen, &self.metrics_listen);
        if self.controller_voters.is_some() {
            c.controller_voters = self.controller_voters.clone();
        }
        if self.controller_listen.is_some() {
            c.controller_listen = self.controller_listen.clone();
        }
        set(
            &mut c.broker_heartbeat_interval_ms,
            &self.broker_heartbeat_interval_ms,
        );
        set(
            &mut c.broker_session_timeout_ms,
            &self.broker_session_timeout_ms,
        );
        set(
            &mut c.auto_leader_rebalance_enable,
            &self.auto_leader_rebalance_enable,
        );
        set(
            &mut c.leader_imbalance_check_interval_ms,
            &self.leader_imbalance_check_interval_ms,
        );
        set(
            &mut c.leader_imbalance_per_broker_percentage,
            &self.leader_imbalance_per_broker_percentage,
        );
        set(&mut c.replication_port, &self.replication_port);
        set(
            &mut c.replica_lag_time_max_ms,
            &self.replica_lag_time_max_ms,
        );
        for (k, v) in &self.topic_defaults {
            c.topic_defaults.insert(k.clone(), v.clone());
        }
        c.validate().map_err(usage_error)?;
        Ok(c)
    }
}

pub fn run(args: ServeArgs, log_level: Option<&str>) -> anyhow::Result<()> {
    let c = args.effective_config(log_level)?;
    if args.print_config {
        print!("{}", c.to_toml());
        return Ok(());
    }
    crate::init_logging(&c.log_level);
    std::fs::create_dir_all(&c.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}: check the path and its permissions",
            c.data_dir.display()
        )
    })?;
    let probe = c.data_dir.join(".sluice-write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "the data directory {} is not writable",
            c.data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    // glommio opens directories (to fsync them) in a way that fails with EBADF
    // for relative paths, so the broker works on the absolute path.
    let data_dir = std::fs::canonicalize(&c.data_dir)
        .with_context(|| format!("cannot resolve the data directory {}", c.data_dir.display()))?;
    let listen = c.listen_addr();
    let advertised_host = c.advertised_host.clone().unwrap_or_else(|| {
        if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        }
    });
    let mut topic_defaults = c.topic_defaults.clone();
    topic_defaults.insert("flush".to_string(), c.flush.clone());
    // Every field is set today; a field added to BrokerConfig later keeps
    // its default until it gets a config key here.
    #[allow(clippy::needless_update)]
    let cfg = BrokerConfig {
        node_id: c.node_id,
        data_dir,
        listen,
        advertised_host,
        advertised_port: listen.port(),
        cluster_id: c.cluster_id.clone(),
        auto_create_topics: c.auto_create_topics,
        num_partitions: c.num_partitions,
        topic_defaults,
        max_request_bytes: usize::try_from(c.max_request_bytes)
            .expect("validate() bounds max_request_bytes by i32::MAX"),
        max_in_flight_per_connection: c.max_in_flight_per_connection,
        tail_cache_bytes: usize::try_from(c.tail_cache_bytes)
            .expect("validate() checked tail_cache_bytes fits"),
        retention_check_interval_ms: c.retention_check_interval_ms,
        offsets_topic_partitions: c.offsets_topic_partitions,
        offsets_topic_replication_factor: c.offsets_topic_replication_factor,
        group_initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms,
        group_min_session_timeout_ms: c.group_min_session_timeout_ms,
        group_max_session_timeout_ms: c.group_max_session_timeout_ms,
        offsets_retention_minutes: c.offsets_retention_minutes,
        offsets_retention_check_interval_ms: c.offsets_retention_check_interval_ms,
        offsets_commit_timeout_ms: c.offsets_commit_timeout_ms,
        log_cleaner_backoff_ms: c.log_cleaner_backoff_ms,
        log_cleaner_dedupe_buffer_bytes: c.log_cleaner_dedupe_buffer_bytes,
        log_cleaner_io_max_bytes_per_second: c.log_cleaner_io_max_bytes_per_second,
        replication_port: c.replication_port,
        replica_lag_time_max_ms: i64::try_from(c.replica_lag_time_max_ms)
            .expect("validate() bounds replica_lag_time_max_ms"),
        log_cleaner_io_min_bytes_per_second: c.log_cleaner_io_min_bytes_per_second,
        log_cleaner_defer_wait_us: c.log_cleaner_defer_wait_us,
        ..BrokerConfig::default()
    };
    let controller = start_controller(&c, &cfg)?;
    // More replicas than voters could never be placed (Kafka would wait
    // forever): a cluster of fewer nodes gets one replica on each.
    let voters = c.controller().ok().flatten().map_or(1, |s| s.voters.len());
    let cfg = BrokerConfig {
        controller: controller.as_ref().map(Controller::handle),
        offsets_topic_replication_factor: c
            .offsets_topic_replication_factor
            .min(i16::try_from(voters).unwrap_or(i16::MAX)),
        ..cfg
    };
    let runtime = RuntimeConfig {
        shards: c.shards,
        spin_before_park: c.spin_before_park_us.map(std::time::Duration::from_micros),
        preempt_timer: std::time::Duration::from_micros(c.preempt_timer_us),
        ..RuntimeConfig::default()
    };
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "starting sluice");
    let scrapes = start_metrics_endpoint(&c)?;
    // Before the shards start allocating from their arenas.
    engine::sys::keep_freed_memory();
    shard_router::run(runtime, move |ctx: ShardCtx<ShardState>| {
        let cfg = cfg.clone();
        let scrapes = scrapes.clone();
        async move {
            let listener = shard_router::bind_shared(cfg.listen)?;
            // In a cluster each shard has a replication port of its own.
            let replication = match &cfg.controller {
                Some(_) => {
                    let port = match cfg.replication_port {
                        0 => 0,
                        p => p.checked_add(ctx.shard().0).ok_or_else(|| {
                            format!(
                                "replication_port {p} + shard {} is past 65535",
                                ctx.shard().0
                            )
                        })?,
                    };
                    let addr = std::net::SocketAddr::new(cfg.listen.ip(), port);
                    Some(shard_router::bind_exclusive(addr)?)
                }
                None => None,
            };
            let state = ShardState::new(
                ctx.shard(),
                ctx.shards(),
                cfg,
                ctx.router().clone(),
                ctx.shutdown_signal(),
            );
            let state = ctx.install_state(state);
            if let Some(l) = &replication {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                state.replication_port.set(port);
            }
            state.start().await?;
            glommio::spawn_local(state.clone().run_flusher()).detach();
            glommio::spawn_local(state.clone().run_housekeeping()).detach();
            // The cleaner runs in a queue of its own with a small share of the
            // CPU, so produce and fetch on the shard keep their latency.
            let cleaner_queue = glommio::executor().create_task_queue(
                glommio::Shares::Static(net::state::CLEANER_SHARES),
                glommio::Latency::NotImportant,
                "log-cleaner",
            );
            match glommio::spawn_local_into(state.clone().run_cleaner(), cleaner_queue) {
                Ok(task) => {
                    task.detach();
                }
                Err(e) => return Err(format!("cannot start the log cleaner: {e}").into()),
            }
            state.wait_all_started().await;
            if let Some(l) = replication {
                glommio::spawn_local(net::replication::serve(state.clone(), l)).detach();
                glommio::spawn_local(net::replication::run(state.clone())).detach();
            }
            if let (Some(controller), 0) = (&state.config.controller, ctx.shard().0) {
                let mut replication_ports = Vec::with_capacity(usize::from(ctx.shards()));
                for shard in 0..ctx.shards() {
                    let port = state
                        .router
                        .call(ShardId(shard), |s: &Rc<ShardState>| {
                            let port = s.replication_port.get();
                            Box::pin(async move { port })
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    replication_ports.push(port);
                }
                let registration = BrokerRegistration {
                    node: NodeId(state.config.node_id),
                    host: state.config.advertised_host.clone(),
                    port: state.config.advertised_port,
                    shards: ctx.shards(),
                    replication_ports,
                };
                controller.spawn_registration(registration)?;
            }
            if let Some(rx) = take_scrapes(&scrapes) {
                glommio::spawn_local(net::metrics::serve_scrapes(state.clone(), rx)).detach();
            }
            tracing::info!(shard = ctx.shard().0, cpu = ctx.cpu(), "serving");
            net::server::serve(state.clone(), listener).await;
            state.wait_all_drained().await;
            state.close_all().await;
            tracing::info!(shard = ctx.shard().0, "stopped cleanly");
            Ok(())
        }
    })?;
    drop(controller);
    Ok(())
}

/// Starts this node's controller when `controller_voters` is set: binds its
/// port (so a taken port fails the start) and opens its log under
/// `<data_dir>/controller`.
fn start_controller(c: &ServeConfig, cfg: &BrokerConfig) -> anyhow::Result<Option<Controller>> {
    let settings = c
        .controller()
        .map_err(|(key, value, why)| anyhow::anyhow!("invalid config: {key} = {value:?}: {why}"))?;
    let Some(settings) = settings else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(settings.listen).with_context(|| {
        format!(
            "cannot listen on controller_listen = {}: is the port in use?",
            settings.listen
        )
    })?;
    let voters = settings
        .voters
        .into_iter()
        .map(|(id, addr)| (NodeId(id), addr))
        .collect();
    let mut config =
        ControllerConfig::new(NodeId(c.node_id), voters, cfg.data_dir.join("controller"));
    config.broker_heartbeat_interval_ms = c.broker_heartbeat_interval_ms;
    config.broker_session_timeout_ms = c.broker_session_timeout_ms;
    config.auto_leader_rebalance = c.auto_leader_rebalance_enable;
    config.leader_imbalance_check_interval_ms = c.leader_imbalance_check_interval_ms;
    config.leader_imbalance_per_broker_percentage = c.leader_imbalance_per_broker_percentage;
    config.unclean_leader_election_enable = c
        .topic_defaults
        .get(UNCLEAN_LEADER_ELECTION_ENABLE)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let controller = Controller::start(config, listener).context("starting the controller")?;
    tracing::info!(listen = %settings.listen, node = c.node_id, "controller started");
    Ok(Some(controller))
}

/// Scrapes from the metrics thread, for the one shard that takes them.
type Scrapes = Arc<Mutex<Option<Receiver<Scrape>>>>;

/// Binds the metrics endpoint (before the shards start, so a taken port fails
/// the start) and runs its thread. The first shard to start takes the receiver.
fn start_metrics_endpoint(c: &ServeConfig) -> anyhow::Result<Scrapes> {
    let Some(addr) = c.metrics_addr() else {
        return Ok(Arc::new(Mutex::new(None)));
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        // Several brokers on one host (tests, development) would all want the
        // default port: only a configured address is worth refusing to start.
        Err(e) if c.metrics_listen == DEFAULT_METRICS_LISTEN => {
            tracing::warn!(%addr, error = %e, "metrics endpoint disabled: cannot listen on the default \
                metrics_listen; set metrics_listen to a free address, or to off");
            return Ok(Arc::new(Mutex::new(None)));
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot listen on metrics_listen = {addr}: is the port in use? (set it to off to disable)")
            })
        }
    };
    // Bounded: scrapes beyond this are answered 503 at once.
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    net::metrics::http::spawn(listener, tx).context("starting the metrics thread")?;
    tracing::info!(%addr, "metrics and health endpoint listening");
    Ok(Arc::new(Mutex::new(Some(rx))))
}

fn take_scrapes(scrapes: &Scrapes) -> Option<Receiver<Scrape>> {
    // Startup only, once per shard: not on any data path.
    scrapes.lock().map_or(None, |mut slot| slot.take())
}
