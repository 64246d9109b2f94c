//! net: the Kafka-facing broker. Framing, dispatch, one module per Kafka API,
//! topic admin. It must never know the file layout of logs (the engine owns it).

pub mod api;
pub mod config;
pub mod groups;
pub mod metrics;
pub mod replication;
pub mod server;
pub mod state;
pub mod topics;

pub use config::BrokerConfig;
pub use state::ShardState;
