//! The 61-byte v2 batch header, its attribute bits, and the in-place rewrites
//! the broker makes to stored batches.

use crate::error::BatchError;

/// Size of the v2 batch header; records (or the compressed payload) follow it.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length` counts: base offset (8) and the length itself (4).
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format sluice accepts.
pub const MAGIC_V2: i8 = 2;
/// Start of the CRC-covered range (the attributes field).
pub const CRC_START: usize = ATTRIBUTES_OFFSET;

pub(crate) const BASE_OFFSET_OFFSET: usize = 0;
pub(crate) const LENGTH_OFFSET: usize = 8;
pub(crate) const LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub(crate) const BASE_TIMESTAMP_OFFSET: usize = 27;
pub(crate) const MAX_TIMESTAMP_OFFSET: usize = 35;
pub(crate) const PRODUCER_ID_OFFSET: usize = 43;
pub(crate) const PRODUCER_EPOCH_OFFSET: usize = 51;
pub(crate) const BASE_SEQUENCE_OFFSET: usize = 53;
pub(crate) const RECORD_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Timestamp value meaning "none" in Kafka (`RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec id Kafka uses on the wire and in `compression.type`.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    pub fn from_id(id: u8) -> Result<Compression, BatchError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnsupportedCompression(other)),
        }
    }
}

/// Attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Every field of a v2 batch header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after this field: the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

#[inline]
pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

#[inline]
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` (which may hold more than one
    /// batch). Checks only what the layout depends on: at least
    /// [`HEADER_LEN`] bytes, magic 2, and a `batch_length` no smaller than
    /// the header itself. No CRC check; see [`crate::validate`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                have: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let batch_length = be_i32(buf, LENGTH_OFFSET);
        check_batch_length(batch_length, buf.len())?;
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_OFFSET),
            magic,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            record_count: be_i32(buf, RECORD_COUNT_OFFSET),
        })
    }

    /// Writes all fields into `dst[..HEADER_LEN]` as they are (the CRC field too).
    pub fn write(&self, dst: &mut [u8]) -> Result<(), BatchError> {
        if dst.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                have: dst.len(),
            });
        }
        let d = &mut dst[..HEADER_LEN];
        d[0..8].copy_from_slice(&self.base_offset.to_be_bytes());
        d[8..12].copy_from_slice(&self.batch_length.to_be_bytes());
        d[12..16].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        d[16] = self.magic as u8;
        d[17..21].copy_from_slice(&self.crc.to_be_bytes());
        d[21..23].copy_from_slice(&self.attributes.to_be_bytes());
        d[23..27].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        d[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        d[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        d[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        d[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
        d[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
        d[57..61].copy_from_slice(&self.record_count.to_be_bytes());
        Ok(())
    }

    /// The codec in bits 0-2; ids 5-7 are refused.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_id((self.attributes & COMPRESSION_MASK) as u8)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Bytes of the whole batch, header included.
    pub fn total_len(&self) -> usize {
        // parse() guarantees batch_length >= HEADER_LEN - LOG_OVERHEAD > 0.
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// A producer id is set (idempotent or transactional producer).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// `batch_length` must at least cover the header after the length field.
pub(crate) fn check_batch_length(batch_length: i32, have: usize) -> Result<(), BatchError> {
    if (batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(batch_length) + LOG_OVERHEAD as i64,
            actual: have,
        });
    }
    Ok(())
}

/// CRC-32C of a batch's attributes..end, the range Kafka v2 checksums.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

fn require_header(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            have: batch.len(),
        });
    }
    Ok(())
}

/// Sets the base offset (outside the CRC's range: the CRC stays valid).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    require_header(batch)?;
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Sets the partition leader epoch (outside the CRC's range).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    require_header(batch)?;
    batch[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Marks the batch `LogAppendTime` with `max_timestamp = timestamp_ms` and
/// recomputes the CRC. `batch` must be exactly one whole v2 batch; its CRC is
/// not checked first (validate before rewriting, as the broker does).
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length) + LOG_OVERHEAD as i64,
            actual: batch.len(),
        });
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}
