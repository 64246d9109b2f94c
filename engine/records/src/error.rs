//! Typed errors of the batch format, and the one Kafka error class each maps to.

use std::borrow::Cow;

/// Why a batch (or a buffer of batches) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the structure it must hold.
    #[error("truncated: needed {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    /// Only magic v2 batches are understood.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    BadMagic(i8),
    /// `batch_length + 12` disagrees with the bytes given, or is below the
    /// header's own size.
    #[error("batch length mismatch: header says {declared} bytes, have {actual}")]
    LengthMismatch { declared: i64, actual: usize },
    /// CRC-32C over attributes..end does not match the stored one.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// A well-formed batch whose content breaks a rule (counts, offsets,
    /// record layout, missing key on a compacted topic, ...).
    #[error("invalid record: {0}")]
    InvalidRecord(Cow<'static, str>),
    /// A timestamp rule was broken (producer-set LogAppendTime, max before base).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(&'static str),
    /// The batch is larger than the topic (or request) allows.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// Compression codec id 5..=7 (attribute bits 0-2).
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    /// The compressed payload could not be decoded.
    #[error("decompression failed: {0}")]
    Decompression(String),
    /// Decompressing would produce more than the configured output limit.
    #[error("decompressed records exceed the limit of {limit} bytes")]
    DecompressionLimit { limit: usize },
}

/// The class of a [`BatchError`], i.e. the Kafka error code the broker answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchErrorKind {
    /// Kafka `CORRUPT_MESSAGE` (2).
    Corrupt,
    /// Kafka `INVALID_RECORD` (87).
    InvalidRecord,
    /// Kafka `INVALID_TIMESTAMP` (32).
    InvalidTimestamp,
    /// Kafka `MESSAGE_TOO_LARGE` (10).
    TooLarge,
    /// Kafka `UNSUPPORTED_COMPRESSION_TYPE` (76).
    Unsupported,
}

impl BatchErrorKind {
    /// The Kafka protocol error code for this class.
    pub fn kafka_error_code(self) -> i16 {
        match self {
            BatchErrorKind::Corrupt => 2,
            BatchErrorKind::InvalidRecord => 87,
            BatchErrorKind::InvalidTimestamp => 32,
            BatchErrorKind::TooLarge => 10,
            BatchErrorKind::Unsupported => 76,
        }
    }
}

impl BatchError {
    pub fn kind(&self) -> BatchErrorKind {
        match self {
            BatchError::Truncated { .. }
            | BatchError::BadMagic(_)
            | BatchError::LengthMismatch { .. }
            | BatchError::CrcMismatch { .. }
            | BatchError::Decompression(_) => BatchErrorKind::Corrupt,
            BatchError::InvalidRecord(_) => BatchErrorKind::InvalidRecord,
            BatchError::InvalidTimestamp(_) => BatchErrorKind::InvalidTimestamp,
            // A batch that is fine but expands past our limit is "too large":
            // Java producers answer MESSAGE_TOO_LARGE by splitting the batch,
            // whereas CORRUPT_MESSAGE would be retried unchanged forever.
            BatchError::TooLarge { .. } | BatchError::DecompressionLimit { .. } => {
                BatchErrorKind::TooLarge
            }
            BatchError::UnsupportedCompression(_) => BatchErrorKind::Unsupported,
        }
    }

    pub(crate) fn invalid(reason: &'static str) -> BatchError {
        BatchError::InvalidRecord(Cow::Borrowed(reason))
    }
}
