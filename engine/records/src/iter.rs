//! Walking a buffer of concatenated batches: a segment region, a fetch
//! response's records, a produce request's records.

use std::ops::Range;

use crate::error::BatchError;
use crate::header::{
    be_i32, check_batch_length, compute_crc, BatchHeader, HEADER_LEN, LENGTH_OFFSET, LOG_OVERHEAD,
    MAGIC_OFFSET, MAGIC_V2,
};

/// Why a scan stopped before the end of the buffer. Both carry the position
/// of the first byte not part of a good batch: the point to truncate to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The buffer ends inside a batch whose start looks sound (or only zero
    /// bytes remain, as preallocation or block padding leaves): an
    /// interrupted write in a log, a cut-off last batch in a fetch response.
    /// A length field that runs past the end of the buffer can not be told
    /// apart from an interrupted write and is reported here too.
    #[error("torn batch at position {pos}: needs {needed} bytes, {have} present")]
    Torn {
        pos: usize,
        needed: usize,
        have: usize,
    },
    /// The bytes at `pos` are not a good batch (bad magic, impossible length,
    /// CRC mismatch).
    #[error("corrupt batch at position {pos}: {err}")]
    Corrupt { pos: usize, err: BatchError },
}

impl ScanError {
    pub fn pos(&self) -> usize {
        match self {
            ScanError::Torn { pos, .. } | ScanError::Corrupt { pos, .. } => *pos,
        }
    }
}

/// Yields `Ok((header, range))` for each whole batch (`&buf[range]` is the
/// batch), then at most one `Err(ScanError)`, after which it is finished:
/// past a bad batch nothing can be trusted. A clean end yields nothing more.
///
/// CRCs are checked unless [`BatchIter::without_crc`] is used (for callers
/// that run [`crate::validate`] on every batch anyway).
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    check_crc: bool,
    done: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            pos: 0,
            check_crc: true,
            done: false,
        }
    }

    /// Frame only: header, magic and lengths, no CRC.
    pub fn without_crc(mut self) -> Self {
        self.check_crc = false;
        self
    }

    /// End of the last good batch yielded (where a scan stopped).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn step(&self) -> Result<(BatchHeader, Range<usize>), ScanError> {
        let pos = self.pos;
        let rest = &self.buf[pos..];
        let torn = |needed: usize| ScanError::Torn {
            pos,
            needed,
            have: rest.len(),
        };
        let corrupt = |err: BatchError| ScanError::Corrupt { pos, err };
        if rest.iter().all(|&b| b == 0) {
            return Err(torn(HEADER_LEN.max(rest.len())));
        }
        if rest.len() < LOG_OVERHEAD {
            return Err(torn(HEADER_LEN));
        }
        let batch_length = be_i32(rest, LENGTH_OFFSET);
        check_batch_length(batch_length, rest.len()).map_err(corrupt)?;
        if rest.len() > MAGIC_OFFSET {
            let magic = rest[MAGIC_OFFSET] as i8;
            if magic != MAGIC_V2 {
                return Err(corrupt(BatchError::BadMagic(magic)));
            }
        }
        let total = batch_length as usize + LOG_OVERHEAD;
        if rest.len() < total {
            return Err(torn(total));
        }
        let batch = &rest[..total];
        let header = BatchHeader::parse(batch).map_err(corrupt)?;
        if self.check_crc {
            let computed = compute_crc(batch);
            if computed != header.crc {
                return Err(corrupt(BatchError::CrcMismatch {
                    stored: header.crc,
                    computed,
                }));
            }
        }
        Ok((header, pos..pos + total))
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos == self.buf.len() {
            return None;
        }
        match self.step() {
            Ok((header, range)) => {
                self.pos = range.end;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
