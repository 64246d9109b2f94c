//! shard-router: the thread-per-core shard runtime, placement of partitions on
//! shards, and cross-core channels. It must never parse Kafka requests.
//!
//! - [`run`] starts one pinned glommio executor per shard after checking the
//!   host (locked memory, io_uring, CPUs), and stops them on SIGTERM/SIGINT.
//! - [`Router`] calls another shard: bounded channels, FIFO per sender.
//! - [`partition_shard`] / [`key_shard`] say which shard owns what.
//! - [`replication`]: the partition replication protocol as pure state
//!   machines (leader: ISR, high watermark, `acks=all`; follower: KIP-101
//!   truncation, the batch stream) and its wire format. It owns no sockets,
//!   clocks or logs: the owning shard drives it and does the I/O.
//!
//! Nothing here shares mutable state between cores behind a lock: a shard's
//! state lives in an `Rc` on its own executor, and other cores reach it only
//! by sending it a job.

pub mod controller;
mod env;
mod error;
mod ids;
mod latch;
mod listen;
mod mesh;
mod placement;
pub mod replication;
mod shard;
mod sys;

pub use env::{
    memlock_needed_bytes, plan_io_memory, CpuBudget, DEFAULT_IO_MEMORY_BYTES,
    GLOMMIO_MIN_IO_MEMORY_BYTES, GLOMMIO_MIN_MEMLOCK_BYTES, IO_MEMORY_RINGS,
};
pub use error::{BoxError, RouterError, StartError};
pub use ids::{NodeId, ShardId};
pub use listen::{bind_exclusive, bind_shared};
pub use mesh::{Reply, Router, DEFAULT_CHANNEL_CAPACITY_JOBS};
pub use placement::{fnv1a_32, key_shard, partition_shard};
pub use shard::{run, RuntimeConfig, ShardCtx, ShardResult, Shutdown, DEFAULT_PREEMPT_TIMER};
