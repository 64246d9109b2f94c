//! Building batches, for the load generator, the CLI producer and tests.

use bytes::Bytes;

use crate::compression::Compressors;
use crate::header::{
    compute_crc, BatchHeader, Compression, CRC_OFFSET, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
};
use crate::varint::{varint_len, varlong_len, write_varint, write_varlong};

const TRANSACTIONAL_BIT: i16 = 0x10;

/// Accumulates records and produces one batch: base offset 0, CreateTime,
/// valid CRC, compressed as a Java producer would (snappy in xerial framing,
/// LZ4 frames of independent 64 KiB blocks, zstd level 3, gzip level 6).
///
/// `build` resets the builder for the next batch while keeping its
/// compressor state and sizing the next buffer from the last one.
///
/// ```
/// use sluice_records::{BatchBuilder, Compression, validate, ValidateOptions};
/// let mut b = BatchBuilder::new(Compression::Lz4);
/// b.producer(7, 0, 0).push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[("h", None)]);
/// let batch = b.build();
/// assert_eq!(validate(&batch, &ValidateOptions::default()).unwrap().record_count, 1);
/// ```
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    /// Header space followed by the uncompressed records.
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    compressors: Compressors,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            buf: vec![0; HEADER_LEN],
            count: 0,
            base_timestamp: -1,
            max_timestamp: -1,
            compressors: Compressors::new(),
        }
    }

    /// Idempotent producer fields (defaults: -1, -1, -1). Kept across builds.
    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the transactional attribute bit. Kept across builds.
    pub fn transactional(&mut self, on: bool) -> &mut Self {
        self.transactional = on;
        self
    }

    /// Appends a record with the next offset delta.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> &mut Self {
        assert!(
            self.count < i32::MAX,
            "a batch holds at most i32::MAX records"
        );
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count;
        let bytes_len = |b: Option<&[u8]>| match b {
            None => 1,
            Some(b) => varint_len(len_i32(b.len())) + b.len(),
        };
        let mut body = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(len_i32(headers.len()));
        for (k, v) in headers {
            body += bytes_len(Some(k.as_bytes())) + bytes_len(*v);
        }
        let buf = &mut self.buf;
        buf.reserve(body + 5);
        write_varint(buf, len_i32(body));
        buf.push(0); // record attributes
        write_varlong(buf, timestamp_delta);
        write_varint(buf, offset_delta);
        write_bytes(buf, key);
        write_bytes(buf, value);
        write_varint(buf, len_i32(headers.len()));
        for (k, v) in headers {
            write_bytes(buf, Some(k.as_bytes()));
            write_bytes(buf, *v);
        }
        self.count += 1;
        self
    }

    /// Records pushed since the last build.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built uncompressed (an upper bound in practice
    /// for compressed ones), to cut batches at a target size.
    pub fn uncompressed_size(&self) -> usize {
        self.buf.len()
    }

    /// Finishes the batch and resets the builder (producer fields kept;
    /// callers advance `base_sequence` themselves). Panics if empty: a batch
    /// without records is invalid.
    pub fn build(&mut self) -> Bytes {
        assert!(self.count > 0, "cannot build a batch without records");
        let mut out = if self.compression == Compression::None {
            // The batch leaves in the Bytes without a copy; the next one
            // probably needs about as much room.
            let next = Vec::with_capacity(self.buf.len());
            std::mem::replace(&mut self.buf, next)
        } else {
            let mut out = Vec::with_capacity(HEADER_LEN + self.buf.len() / 2);
            out.resize(HEADER_LEN, 0);
            self.compressors
                .compress(self.compression, &self.buf[HEADER_LEN..], &mut out)
                .expect("compressing into memory cannot fail");
            self.buf.truncate(HEADER_LEN);
            out
        };
        assert!(
            out.len() - LOG_OVERHEAD <= i32::MAX as usize,
            "batch larger than i32::MAX"
        );
        let mut attributes = i16::from(self.compression.id());
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (out.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.count,
        };
        header
            .write(&mut out)
            .expect("buffer starts with header space");
        let crc = compute_crc(&out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        if self.buf.len() < HEADER_LEN {
            self.buf.resize(HEADER_LEN, 0);
        }
        self.count = 0;
        self.base_timestamp = -1;
        self.max_timestamp = -1;
        Bytes::from(out)
    }
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).expect("field longer than i32::MAX bytes")
}

#[inline]
fn write_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varint(buf, -1),
        Some(b) => {
            write_varint(buf, len_i32(b.len()));
            buf.extend_from_slice(b);
        }
    }
}
