//! The broker's configuration, as the `sluice` binary hands it over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Host and port put in Metadata for clients to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub cluster_id: String,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// Broker-wide topic config defaults (Kafka names, e.g. `flush`, `retention.ms`).
    pub topic_defaults: BTreeMap<String, String>,
    /// Kafka's `socket.request.max.bytes`: a larger frame closes the connection.
    pub max_request_bytes: usize,
    /// Requests one connection may have in flight before the broker stops reading it.
    pub max_in_flight_per_connection: usize,
    /// Tail cache bytes per shard.
    pub tail_cache_bytes: usize,
    /// How often log retention runs, in ms.
    pub retention_check_interval_ms: u64,
    /// Kafka's `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// when it is created (groups are spread over them).
    pub offsets_topic_partitions: i32,
    /// Kafka's `offsets.topic.replication.factor`: replicas of each
    /// `__consumer_offsets` partition in a cluster (capped by the number of
    /// controller voters); the topic is created once that many brokers are
    /// live. Without a controller the topic is local and this is unused.
    pub offsets_topic_replication_factor: i16,
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// Kafka's `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// Kafka's `offsets.retention.minutes`.
    pub offsets_retention_minutes: u64,
    /// Kafka's `offsets.retention.check.interval.ms`: how often expired
    /// committed offsets are looked for and removed.
    pub offsets_retention_check_interval_ms: u64,
    /// Kafka's `offsets.commit.timeout.ms`: how long a write to
    /// `__consumer_offsets` (a commit, group metadata) waits for its
    /// replicas before it is answered as timed out.
    pub offsets_commit_timeout_ms: u64,
    /// Kafka's `log.cleaner.backoff.ms`: how long a shard's cleaner sleeps
    /// when no compacted log is due.
    pub log_cleaner_backoff_ms: u64,
    /// Kafka's `log.cleaner.dedupe.buffer.size`, per shard: memory of the
    /// cleaner's key map (about 32 bytes a key).
    pub log_cleaner_dedupe_buffer_bytes: u64,
    /// Kafka's `log.cleaner.io.max.bytes.per.second`, per shard (reads and
    /// writes together); 0 means no limit.
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// Per shard: the cleaner's guaranteed I/O share while the shard's data
    /// path (flushes, fetches from disk) has disk I/O in flight, when it
    /// otherwise defers its I/O; 0 means it waits for an idle data path.
    pub log_cleaner_io_min_bytes_per_second: u64,
    /// How long the cleaner waits before looking again when it defers an I/O
    /// to the data path's, in µs (at most 500); 0 means it never defers.
    pub log_cleaner_defer_wait_us: u64,
    /// The cluster controller, when this node is part of a cluster: Metadata
    /// and DescribeCluster then list the brokers registered with it.
    pub controller: Option<shard_router::controller::ControllerHandle>,
    /// The replication port of shard 0; shard N listens on this + N. 0: each
    /// shard takes a free port (the ports reach peers through the broker's
    /// registration with the controller). Only used in a cluster.
    pub replication_port: u16,
    /// Kafka's `replica.lag.time.max.ms`: a follower that has not caught up
    /// with the leader for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./sluice-data"),
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            cluster_id: "sluice-cluster".to_string(),
            auto_create_topics: true,
            num_partitions: 1,
            topic_defaults: BTreeMap::new(),
            max_request_bytes: 100 << 20,
            max_in_flight_per_connection: 64,
            tail_cache_bytes: 256 << 20,
            retention_check_interval_ms: 30_000,
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offsets_commit_timeout_ms: 5_000,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_bytes: 32 << 20,
            log_cleaner_io_max_bytes_per_second: engine::cleaner::DEFAULT_MAX_BYTES_PER_SECOND,
            log_cleaner_io_min_bytes_per_second: engine::cleaner::DEFAULT_MIN_BYTES_PER_SECOND,
            log_cleaner_defer_wait_us: engine::cleaner::DEFAULT_DEFER_WAIT.as_micros() as u64,
            controller: None,
            replication_port: 0,
            replica_lag_time_max_ms: 30_000,
        }
    }
}
