use std::io;
use std::path::PathBuf;

use sluice_records::BatchError;

/// Why an append was refused. Nothing was written for any of these.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("batch of {size} bytes is over max.message.bytes {max}")]
    TooLarge { size: usize, max: u32 },
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {sequence} does not follow {last}")]
    OutOfOrderSequence {
        producer_id: i64,
        sequence: i32,
        last: i32,
    },
    #[error("the log is poisoned and refuses writes: {0}")]
    Poisoned(String),
    #[error("the log is closed")]
    Closed,
}

/// Why a batch copied from the leader was refused (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaAppendError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("replica batch at offset {base_offset} does not start at the log end {log_end}")]
    NotAtLogEnd { base_offset: i64, log_end: i64 },
    #[error("replica batch of leader epoch {epoch} is older than the log's latest epoch {latest}")]
    EpochGoesBack { epoch: i32, latest: i32 },
}

/// An I/O failure of the log, or an append that failed after it was accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: PathBuf,
        message: String,
        no_space: bool,
    },
    #[error("the log is poisoned after a failed fdatasync and refuses writes: {0}")]
    Poisoned(String),
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("the append was abandoned: {0}")]
    Abandoned(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl LogError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, e: &io::Error) -> LogError {
        LogError::Io {
            op,
            path: path.into(),
            message: e.to_string(),
            no_space: e.raw_os_error() == Some(libc::ENOSPC),
        }
    }

    /// True when the failure was a full disk (Kafka: `KAFKA_STORAGE_ERROR`, retriable).
    pub fn is_no_space(&self) -> bool {
        matches!(self, LogError::Io { no_space: true, .. })
    }
}
