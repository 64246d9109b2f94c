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
