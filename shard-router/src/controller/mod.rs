//! The controller: cluster metadata kept in a Raft group (openraft).
//!
//! - [`metadata`]: the pure state machine the Raft log is applied to.

pub mod metadata;

pub use metadata::{
    Broker, BrokerRegistration, ClusterMetadata, Command, MetadataError, Outcome, PartitionState,
    Replica, TopicState,
};
