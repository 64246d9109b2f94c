//! engine: storage only. Partition logs, segments, indexes, group commit,
//! recovery and retention. It must never know about sockets or Kafka requests.
//!
//! A log is owned by one shard and driven through `RefCell`; the free functions
//! in [`log`] and [`recovery`] never hold a borrow across an await.

pub mod cleaner;
pub mod config;
pub mod error;
pub mod index;
pub mod log;
pub mod producers;
pub mod recovery;
pub mod segment;
pub mod storage;
pub mod sys;
pub mod tail_cache;
pub mod timestamp;
pub mod truncate;

pub use config::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
pub use error::{AppendError, LogError, ReplicaAppendError};
pub use log::{Appended, PartitionLog, ReadResult};
pub use tail_cache::CacheBudget;
