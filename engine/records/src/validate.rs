//! Validation of one batch, and visiting the records of any batch.

use std::io::Read;

use crate::compression::{decoder, map_io};
use crate::error::BatchError;
use crate::header::{
    compute_crc, BatchHeader, Compression, TimestampType, HEADER_LEN, LOG_OVERHEAD, NO_TIMESTAMP,
};
use crate::record::{parse_record, Record, RecordIter};
use crate::varint::read_varint;

/// Kafka's default `max.message.bytes` (1 MiB + a v0 record overhead).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1_048_588;
/// Default cap on one batch's decompressed records.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// Read granularity when pulling records out of a decompression stream.
const STREAM_CHUNK: usize = 16 * 1024;

/// What [`validate`] enforces beyond the format itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Largest whole batch accepted (the topic's `max.message.bytes`).
    pub max_batch_bytes: usize,
    /// Every record needs a non-null key (compacted topics). Compressed
    /// batches are then decompressed, as a stream, to check.
    pub require_keys: bool,
    /// Cap on the decompressed records of one batch, when decompressing.
    pub max_decompressed_bytes: usize,
    /// The batch comes from a producer (not from our log or a leader): refuse
    /// what only a broker may write (control batches, LogAppendTime) and
    /// a producer id without a sequence, as Kafka's broker does.
    pub from_client: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            require_keys: false,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            from_client: true,
        }
    }
}

/// Checks one whole batch (exactly `batch.len()` bytes) and returns its header.
///
/// In order: header and magic, `batch_length + 12 == batch.len()`, size
/// limit (`TooLarge`), CRC-32C, codec, `record_count >= 1` and
/// `== last_offset_delta + 1`, `max_timestamp >= base_timestamp` for
/// CreateTime batches (unless either is -1), the producer-only rules if
/// `from_client`; then uncompressed batches are walked record by record
/// (layout, dense offset deltas `0..record_count`, exact fill), and
/// compressed ones too when `require_keys` is set.
///
/// Kafka's broker does not check the batch's max timestamp against the
/// records (it rewrites it); neither do we, beyond the base/max ordering.
pub fn validate(batch: &[u8], opts: &ValidateOptions) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length) + LOG_OVERHEAD as i64,
            actual: batch.len(),
        });
    }
    if batch.len() > opts.max_batch_bytes {
        return Err(BatchError::TooLarge {
            size: batch.len(),
            max: opts.max_batch_bytes,
        });
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    let compression = header.compression()?;
    if header.record_count < 1 {
        return Err(BatchError::invalid("record_count below 1"));
    }
    if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(BatchError::invalid(
            "record_count disagrees with last_offset_delta",
        ));
    }
    if header.timestamp_type() == TimestampType::CreateTime
        && header.base_timestamp != NO_TIMESTAMP
        && header.max_timestamp != NO_TIMESTAMP
        && header.max_timestamp < header.base_timestamp
    {
        return Err(BatchError::InvalidTimestamp(
            "max_timestamp before base_timestamp",
        ));
    }
    if opts.from_client {
        if header.is_control() {
            return Err(BatchError::invalid("clients may not write control batches"));
        }
        if header.timestamp_type() == TimestampType::LogAppendTime {
            return Err(BatchError::InvalidTimestamp(
                "producers may not set LogAppendTime",
            ));
        }
        if header.has_producer_id() && header.base_sequence < 0 {
            return Err(BatchError::invalid(
                "producer id set without a base sequence",
            ));
        }
    }
    let require_keys = opts.require_keys;
    let check = |index: u32, r: &Record<'_>| -> Result<(), BatchError> {
        if i64::from(r.offset_delta) != i64::from(index) {
            return Err(BatchError::invalid(
                "record offset deltas are not 0, 1, 2, ...",
            ));
        }
        if require_keys && r.key.is_none() {
            return Err(BatchError::invalid("null key on a compacted topic"));
        }
        Ok(())
    };
    if compression == Compression::None {
        // The walk that accepts exactly what the one below accepts, without
        // building records; the full walk runs only to name the error.
        let records = &batch[HEADER_LEN..];
        if !crate::record::records_are_valid(records, header.record_count, require_keys) {
            for (index, r) in (0u32..).zip(RecordIter::new(records, header.record_count)) {
                check(index, &r?)?;
            }
        }
    } else if require_keys {
        let mut scratch = Vec::new();
        visit_compressed(
            &header,
            compression,
            &batch[HEADER_LEN..],
            opts.max_decompressed_bytes,
            &mut scratch,
            |index, r| check(index, &r),
        )?;
    }
    Ok(header)
}

/// Calls `f(index, record)` for every record of a whole batch, compressed or
/// not, in order. Compressed payloads are decompressed as a stream: at most
/// `max_decompressed_bytes` are ever produced (else `DecompressionLimit`),
/// and only one record plus a 16 KiB chunk is held at a time, in `scratch`
/// (reused across calls; it grows to the largest record seen).
///
/// Checks the length field and record layout, `record_count` and exact
/// fill, but not the CRC (call [`validate`] first) nor offset density.
/// An error from `f` stops the walk and is returned.
pub fn visit_records<F>(
    batch: &[u8],
    max_decompressed_bytes: usize,
    scratch: &mut Vec<u8>,
    mut f: F,
) -> Result<BatchHeader, BatchError>
where
    F: FnMut(u32, Record<'_>) -> Result<(), BatchError>,
{
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length) + LOG_OVERHEAD as i64,
            actual: batch.len(),
        });
    }
    let compression = header.compression()?;
    if compression == Compression::None {
        let records = RecordIter::new(&batch[HEADER_LEN..], header.record_count);
        for (index, r) in (0u32..).zip(records) {
            f(index, r?)?;
        }
    } else {
        visit_compressed(
            &header,
            compression,
            &batch[HEADER_LEN..],
            max_decompressed_bytes,
            scratch,
            f,
        )?;
    }
    Ok(header)
}

/// Decompresses a whole batch's records into `out` (cleared first), never
/// growing it past `max_decompressed_bytes`; iterate them with
/// `RecordIter::new(out, header.record_count)`. For uncompressed batches the
/// records are copied. Checks neither the CRC nor the records' layout.
pub fn decompress_records(
    batch: &[u8],
    max_decompressed_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length) + LOG_OVERHEAD as i64,
            actual: batch.len(),
        });
    }
    out.clear();
    let payload = &batch[HEADER_LEN..];
    let compression = header.compression()?;
    if compression == Compression::None {
        if payload.len() > max_decompressed_bytes {
            return Err(BatchError::DecompressionLimit {
                limit: max_decompressed_bytes,
            });
        }
        out.extend_from_slice(payload);
        return Ok(header);
    }
    let mut reader = decoder(compression, payload, max_decompressed_bytes)?;
    // Grow `out` ourselves (read_to_end would double past the limit): its
    // capacity never exceeds the limit; Limited refuses the byte after it.
    loop {
        if out.len() >= max_decompressed_bytes {
            // Full: the stream must end here.
            let mut probe = [0u8; 1];
            return match read_retrying(&mut reader, &mut probe) {
                Ok(0) => Ok(header),
                Ok(_) => Err(BatchError::DecompressionLimit {
                    limit: max_decompressed_bytes,
                }),
                Err(e) => Err(map_io(e, max_decompressed_bytes)),
            };
        }
        if out.len() == out.capacity() {
            let room = max_decompressed_bytes - out.len();
            let grow = out.len().max(STREAM_CHUNK).min(room);
            out.reserve_exact(grow);
        }
        let len = out.len();
        let cap = out.capacity().min(max_decompressed_bytes);
        out.resize(cap, 0);
        let n = match read_retrying(&mut reader, &mut out[len..]) {
            Ok(n) => n,
            Err(e) => {
                out.truncate(len);
                return Err(map_io(e, max_decompressed_bytes));
            }
        };
        out.truncate(len + n);
        if n == 0 {
            return Ok(header);
        }
    }
}

/// A window over a decompression stream holding at least one whole record.
struct StreamWindow<'s, R> {
    src: R,
    buf: &'s mut Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    limit: usize,
}

impl<R: Read> StreamWindow<'_, R> {
    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads until `need` bytes are buffered or the stream ends.
    fn fill(&mut self, need: usize) -> Result<(), BatchError> {
        while self.end - self.start < need && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = (need - self.end).max(STREAM_CHUNK);
            if self.buf.len() < self.end + want {
                self.buf.resize(self.end + want, 0);
            }
            let n = read_retrying(&mut self.src, &mut self.buf[self.end..])
                .map_err(|e| map_io(e, self.limit))?;
            if n == 0 {
                self.eof = true;
            } else {
                self.end += n;
            }
        }
        Ok(())
    }
}

fn read_retrying<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn visit_compressed<F>(
    header: &BatchHeader,
    compression: Compression,
    payload: &[u8],
    limit: usize,
    scratch: &mut Vec<u8>,
    mut f: F,
) -> Result<(), BatchError>
where
    F: FnMut(u32, Record<'_>) -> Result<(), BatchError>,
{
    let src = decoder(compression, payload, limit)?;
    let mut w = StreamWindow {
        src,
        buf: scratch,
        start: 0,
        end: 0,
        eof: false,
        limit,
    };
    let count = u32::try_from(header.record_count)
        .map_err(|_| BatchError::invalid("negative record_count"))?;
    for index in 0..count {
        // A record starts with its length: a varint of at most 5 bytes.
        w.fill(5)?;
        if w.available().is_empty() {
            return Err(BatchError::invalid("fewer records than record_count"));
        }
        let mut p = 0;
        let len =
            read_varint(w.available(), &mut p).ok_or(BatchError::invalid("bad record length"))?;
        let len =
            usize::try_from(len).map_err(|_| BatchError::invalid("negative record length"))?;
        let total = p + len;
        if total > limit {
            // Buffering it would break the limit, whatever the stream holds.
            return Err(BatchError::DecompressionLimit { limit });
        }
        w.fill(total)?;
        if w.available().len() < total {
            return Err(BatchError::invalid("record cut short by end of stream"));
        }
        let mut pos = 0;
        let record = parse_record(&w.available()[..total], &mut pos)?;
        f(index, record)?;
        w.start += total;
    }
    w.fill(1)?;
    if !w.available().is_empty() {
        return Err(BatchError::invalid("bytes left after record_count records"));
    }
    Ok(())
}
