//! Partition replication as pure, deterministic state machines: events in
//! (messages received, local appends and flushes, the time), outputs out
//! (messages to send, appends to make, acknowledgements to complete, ISR
//! changes to propose). No sockets, clocks or disks here: the shard that owns
//! a partition drives these and does the I/O, and tests drive them in a
//! simulation.
//!
//! - [`LeaderState`]: follower progress, ISR, high watermark, `acks=all`
//!   waiters, `min.insync.replicas`.
//! - [`FollowerState`]: the leader epoch it follows, the KIP-101/KIP-279
//!   truncation handshake, then the stream of batches.
//! - [`epochs`]: leader-epoch cache lookups shared by both sides.
//! - [`wire`]: the framed protocol between replication ports.

pub mod epochs;
mod follower;
mod leader;
pub mod wire;

pub use follower::{FollowerAction, FollowerError, FollowerState};
pub use leader::{
    consumer_read_bound, AckId, AckResult, LeaderConfig, LeaderOutput, LeaderState, ProduceError,
    ReadBound,
};

/// A partition leader's epoch (Kafka's leader epoch): bumped by the controller
/// at every leader change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

/// No epoch known.
pub const UNDEFINED_EPOCH: i32 = -1;
/// No offset known.
pub const UNDEFINED_OFFSET: i64 = -1;
