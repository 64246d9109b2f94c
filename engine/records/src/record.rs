//! Records inside a batch: borrowed views, parsed without allocating.

use crate::error::BatchError;
use crate::header::{BatchHeader, HEADER_LEN};
use crate::varint::{read_varint, read_varlong};

/// One record, borrowing its key, value and headers from the records region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unused by Kafka so far; kept as read.
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Headers<'a>,
}

impl Record<'_> {
    /// The record's timestamp under the batch's timestamp type.
    pub fn timestamp(&self, batch: &BatchHeader) -> i64 {
        match batch.timestamp_type() {
            crate::TimestampType::LogAppendTime => batch.max_timestamp,
            crate::TimestampType::CreateTime => {
                batch.base_timestamp.wrapping_add(self.timestamp_delta)
            }
        }
    }

    /// The record's absolute offset.
    pub fn offset(&self, batch: &BatchHeader) -> i64 {
        batch.base_offset.wrapping_add(i64::from(self.offset_delta))
    }
}

/// The headers of a record: already validated when the record was parsed,
/// decoded lazily on iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    count: u32,
    bytes: &'a [u8],
}

/// One record header. Kafka header keys are UTF-8 strings on the client
/// side; here they stay bytes (the broker never needs them decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            left: self.count,
            bytes: self.bytes,
            pos: 0,
        }
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = Header<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

pub struct HeaderIter<'a> {
    left: u32,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The bytes were checked by parse_headers; a failure here cannot
        // happen, and ending the iteration is the harmless answer if it did.
        match read_header(self.bytes, &mut self.pos) {
            Ok(h) => Some(h),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// Reads a varint length and that many bytes; -1 is null, below -1 refused.
#[inline]
fn read_nullable<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    what: &'static str,
) -> Result<Option<&'a [u8]>, BatchError> {
    let len = read_varint(buf, pos).ok_or(BatchError::invalid(what))?;
    if len == -1 {
        return Ok(None);
    }
    if len < 0 {
        return Err(BatchError::invalid(what));
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|&e| e <= buf.len())
        .ok_or(BatchError::invalid(what))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(Some(s))
}

#[inline]
fn read_header<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Header<'a>, BatchError> {
    let key =
        read_nullable(buf, pos, "bad header key")?.ok_or(BatchError::invalid("null header key"))?;
    let value = read_nullable(buf, pos, "bad header value")?;
    Ok(Header { key, value })
}

/// Parses one record (length varint first) at `buf[*pos..]`, advancing `pos`
/// past it. The record must fill exactly the length it declares.
#[inline]
pub(crate) fn parse_record<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Record<'a>, BatchError> {
    let len = read_varint(buf, pos).ok_or(BatchError::invalid("bad record length"))?;
    if len < 0 {
        return Err(BatchError::invalid("negative record length"));
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|&e| e <= buf.len())
        .ok_or(BatchError::invalid(
            "record length past the end of the records",
        ))?;
    let body = &buf[..end];
    let mut p = *pos;
    let attributes = *body.get(p).ok_or(BatchError::invalid("record too short"))? as i8;
    p += 1;
    let timestamp_delta =
        read_varlong(body, &mut p).ok_or(BatchError::invalid("bad timestamp delta"))?;
    let offset_delta = read_varint(body, &mut p).ok_or(BatchError::invalid("bad offset delta"))?;
    let key = read_nullable(body, &mut p, "bad key length")?;
    let value = read_nullable(body, &mut p, "bad value length")?;
    let count = read_varint(body, &mut p).ok_or(BatchError::invalid("bad header count"))?;
    if count < 0 {
        return Err(BatchError::invalid("negative header count"));
    }
    let headers_start = p;
    for _ in 0..count {
        read_header(body, &mut p)?;
    }
    if p != end {
        return Err(BatchError::invalid(
            "record length disagrees with its fields",
        ));
    }
    *pos = end;
    Ok(Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers: Headers {
            count: count as u32,
            bytes: &body[headers_start..end],
        },
    })
}

/// Skips a varint length and that many bytes of `buf` (nullable: -1 is null);
/// `None` if malformed. Returns whether it was null.
#[inline(always)]
fn skip_nullable(buf: &[u8], pos: &mut usize) -> Option<bool> {
    let len = read_varint(buf, pos)?;
    if len == -1 {
        return Some(true);
    }
    if len < 0 {
        return None;
    }
    let end = pos.checked_add(len as usize).filter(|&e| e <= buf.len())?;
    *pos = end;
    Some(false)
}

/// True when `records` holds exactly `count` well-formed records whose
/// offset deltas are 0, 1, 2, ... (and whose keys are all non-null if
/// `require_keys`): the same rules as [`RecordIter`] followed by
/// `validate`'s per-record checks, answered without building records. On
/// `false`, walk with [`RecordIter`] to learn what is wrong.
pub(crate) fn records_are_valid(records: &[u8], count: i32, require_keys: bool) -> bool {
    let Ok(count) = u32::try_from(count) else {
        return false;
    };
    let walk = || -> Option<()> {
        let mut pos = 0usize;
        for index in 0..count {
            let len = read_varint(records, &mut pos)?;
            if len < 0 {
                return None;
            }
            let end = pos
                .checked_add(len as usize)
                .filter(|&e| e <= records.len())?;
            let body = &records[..end];
            // The attributes byte.
            let mut p = pos.checked_add(1).filter(|&p| p <= end)?;
            read_varlong(body, &mut p)?;
            let offset_delta = read_varint(body, &mut p)?;
            if i64::from(offset_delta) != i64::from(index) {
                return None;
            }
            let key_null = skip_nullable(body, &mut p)?;
            if require_keys && key_null {
                return None;
            }
            skip_nullable(body, &mut p)?;
            let headers = read_varint(body, &mut p)?;
            if headers < 0 {
                return None;
            }
            for _ in 0..headers {
                if skip_nullable(body, &mut p)? {
                    return None;
                }
                skip_nullable(body, &mut p)?;
            }
            if p != end {
                return None;
            }
            pos = end;
        }
        (pos == records.len()).then_some(())
    };
    walk().is_some()
}

/// Iterates the records of an uncompressed records region (the bytes after
/// the 61-byte header). Yields an error, then stops, if a record is
/// malformed, if the region holds fewer or more records than `count`, or if
/// bytes are left over. It does not check that offset deltas are dense
/// (compacted Kafka logs have gaps); [`crate::validate`] does.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    index: u32,
    count: u32,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// `count` is the batch's `record_count`. A negative count can never be
    /// met: it is read as unbounded and fails where the records run out.
    pub fn new(records: &'a [u8], count: i32) -> RecordIter<'a> {
        RecordIter {
            buf: records,
            pos: 0,
            index: 0,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            done: false,
        }
    }

    /// The records of an uncompressed batch (header parsed, length checked,
    /// CRC not checked).
    pub fn from_batch(batch: &'a [u8]) -> Result<(BatchHeader, RecordIter<'a>), BatchError> {
        let header = BatchHeader::parse(batch)?;
        if header.total_len() != batch.len() {
            return Err(BatchError::LengthMismatch {
                declared: i64::from(header.batch_length) + crate::header::LOG_OVERHEAD as i64,
                actual: batch.len(),
            });
        }
        let compression = header.compression()?;
        if compression != crate::Compression::None {
            return Err(BatchError::invalid(
                "compressed batch: use visit_records or decompress_records",
            ));
        }
        Ok((
            header,
            RecordIter::new(&batch[HEADER_LEN..], header.record_count),
        ))
    }

    /// Records yielded so far.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.count {
            self.done = true;
            if self.pos != self.buf.len() {
                return Some(Err(BatchError::invalid(
                    "bytes left after record_count records",
                )));
            }
            return None;
        }
        if self.pos == self.buf.len() {
            self.done = true;
            return Some(Err(BatchError::invalid("fewer records than record_count")));
        }
        match parse_record(self.buf, &mut self.pos) {
            Ok(r) => {
                self.index += 1;
                Some(Ok(r))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod fast_walk_tests {
    use super::*;
    use crate::{BatchBuilder, Compression};
    use proptest::prelude::*;

    /// The reference: the full walk plus `validate`'s per-record checks.
    fn slow(records: &[u8], count: i32, require_keys: bool) -> bool {
        (0u32..).zip(RecordIter::new(records, count)).all(|(i, r)| {
            r.is_ok_and(|r| {
                i64::from(r.offset_delta) == i64::from(i) && !(require_keys && r.key.is_none())
            })
        })
    }

    fn agree(records: &[u8], count: i32) {
        for require_keys in [false, true] {
            assert_eq!(
                records_are_valid(records, count, require_keys),
                slow(records, count, require_keys),
                "count {count}, require_keys {require_keys}, records {records:?}"
            );
        }
    }

    fn sample_records() -> (Vec<u8>, i32) {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(1, Some(b"k1"), Some(b"value"), &[]);
        b.push(2, None, Some(b"v"), &[("h", Some(b"x".as_slice()))]);
        b.push(3, Some(b""), None, &[("h2", None)]);
        let long = vec![7u8; 300];
        b.push(1 << 40, Some(&long), Some(&long), &[]);
        let batch = b.build();
        (batch[HEADER_LEN..].to_vec(), 4)
    }

    #[test]
    fn agrees_on_every_single_byte_change_and_truncation() {
        let (records, count) = sample_records();
        assert!(records_are_valid(&records, count, false));
        assert!(!records_are_valid(&records, count, true), "a null key");
        for c in [-1, 0, 1, 3, 5, i32::MAX] {
            agree(&records, c);
        }
        for len in 0..records.len() {
            agree(&records[..len], count);
        }
        let mut longer = records.clone();
        longer.push(0);
        agree(&longer, count);
        for i in 0..records.len() {
            for v in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff] {
                let mut m = records.clone();
                m[i] = v;
                agree(&m, count);
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), count in -1i32..4) {
            agree(&bytes, count);
        }

        #[test]
        fn agrees_on_mutated_batches(at in any::<prop::sample::Index>(), v in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let (mut records, count) = sample_records();
            let i = at.index(records.len());
            records[i] = v;
            agree(&records, count);
            let n = cut.index(records.len() + 1);
            agree(&records[..n], count);
        }
    }
}
