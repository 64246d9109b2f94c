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
    /// How often retention runs, in ms.
    pub retention_check_interval_ms: u64,
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
        }
    }
}
