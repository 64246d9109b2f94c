//! The controller: cluster metadata kept in a Raft group (openraft 0.9).
//!
//! - [`metadata`]: the pure state machine the Raft log is applied to.
//! - `store`: the Raft log, vote and snapshots on disk.
//! - `network`: Raft RPCs, forwarded commands and heartbeats over TCP.
//! - `liveness`: broker heartbeats and fencing after the session timeout.
//! - `rebalance`: which partitions automatic preferred-leader election
//!   moves back to their preferred replica.
//! - [`Controller`]: a handle to one controller node, which runs on a
//!   dedicated thread with its own tokio runtime (openraft needs tokio;
//!   glommio executors cannot poll tokio I/O). Shards reach it through the
//!   handle's bounded channel and get the metadata as a whole `Arc`
//!   replaced on every change; `tokio::sync` channels need no tokio runtime
//!   on the receiving side, so they work from glommio too.

mod liveness;
pub mod metadata;
mod network;
mod node;
mod rebalance;
mod store;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

pub use metadata::{
    Broker, BrokerRegistration, ClusterMetadata, Command, ElectionError, ElectionResult,
    ElectionType, MetadataError, Outcome, PartitionState, Replica, TopicState,
    UNCLEAN_LEADER_ELECTION_ENABLE,
};
pub use node::{
    Controller, ControllerConfig, ControllerError, ControllerHandle, QuorumInfo, VoterInfo,
    DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS, DEFAULT_BROKER_SESSION_TIMEOUT_MS,
    DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS, DEFAULT_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
};
pub use rebalance::{preferred_elections, MAX_ELECTIONS_PER_CHECK};
pub use store::{LogStore, StateMachineStore};

/// openraft's node id: a Kafka node id, which the config keeps non-negative.
pub type RaftNodeId = u64;

/// What applying one log entry returned: `None` for Raft's own entries
/// (blank, membership), else the command's outcome.
pub type Response = Option<Result<Outcome, MetadataError>>;

openraft::declare_raft_types!(
    /// openraft's types for the controller.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = RaftNodeId,
        Node = BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// Why a command was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteError {
    /// The metadata refused it (the state is unchanged).
    #[error("refused: {0}")]
    Refused(MetadataError),
    /// This node does not lead; `leader` does, if known.
    #[error("not the controller leader (leader: {leader:?})")]
    NotLeader {
        leader: Option<RaftNodeId>,
        leader_addr: Option<String>,
    },
    /// No leader could be reached in time (no quorum, or shutting down).
    #[error("controller unavailable: {0}")]
    Unavailable(String),
    #[error("controller error: {0}")]
    Internal(String),
}

pub type WriteResult = Result<Outcome, WriteError>;
