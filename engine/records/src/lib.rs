//! Kafka record batches (magic v2): parsing, validation, CRC-32C, record
//! iteration, streaming decompression with an output limit, in-place
//! rewrites of broker-owned fields, and a builder.
//!
//! This crate owns the byte format only. It must never do I/O, never panic
//! on any input bytes, never allocate per record while walking uncompressed
//! records, and never let a compressed payload expand past the caller's
//! limit.
//!
//! Layout of a batch (big-endian): base_offset i64, batch_length i32,
//! partition_leader_epoch i32, magic i8, crc u32 (CRC-32C of attributes..end),
//! attributes i16, last_offset_delta i32, base_timestamp i64,
//! max_timestamp i64, producer_id i64, producer_epoch i16, base_sequence
//! i32, record_count i32, then the records (compressed as one stream when
//! the codec is not None).

mod builder;
mod compression;
mod error;
mod filter;
mod header;
mod iter;
mod record;
mod validate;
mod varint;

pub use builder::BatchBuilder;
pub use error::{BatchError, BatchErrorKind};
pub use filter::{BatchFilter, Filtered};
pub use header::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, BatchHeader, Compression,
    TimestampType, CRC_START, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_TIMESTAMP,
};
pub use iter::{BatchIter, ScanError};
pub use record::{Header, HeaderIter, Headers, Record, RecordIter};
pub use validate::{
    decompress_records, validate, visit_records, ValidateOptions, DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
};
