//! Lookups by timestamp (Kafka ListOffsets with a timestamp, and -3 for the
//! largest timestamp).
//!
//! Segments whose max timestamp is below the target are skipped without I/O, the
//! time index gives the first batch worth reading inside a segment, and only then
//! are batches read (tail cache or disk) and walked record by record: a batch's
//! max timestamp says whether it holds a match, not which record it is.

use std::cell::RefCell;

use bytes::Bytes;
use sluice_records::BatchHeader;

use crate::error::LogError;
use crate::log::{PartitionLog, ReadPlan};
use crate::storage::Storage;

/// Bytes read per step of a timestamp scan: a few batches, not a whole segment,
/// since the match is usually in the first batch the time index points at.
const TIMESTAMP_SCAN_READ_BYTES: usize = 256 << 10;

/// The most a compressed batch may decompress to while it is searched (the same
/// bound validation uses), so a hostile batch cannot exhaust memory here.
const TIMESTAMP_SCAN_MAX_DECOMPRESSED_BYTES: usize = sluice_records::DEFAULT_MAX_DECOMPRESSED_BYTES;

impl<S: Storage> PartitionLog<S> {
    /// Where a scan for the first record with a timestamp at or above
    /// `timestamp_ms`, among offsets at or above `from`, must start reading; `None`
    /// when no visible batch at or past `from` can hold one.
    fn timestamp_scan_start(&self, from: i64, timestamp_ms: i64) -> Option<i64> {
        let first_base = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        let seg = self
            .segments
            .range(first_base..)
            .map(|(_, s)| s)
            .filter(|s| s.next_offset > from)
            .find(|s| s.max_timestamp >= timestamp_ms)?;
        // Batches up to the time index's entry below the target all have smaller
        // timestamps; the batch holding that entry is re-read, which is harmless.
        let hint = seg.base_offset + i64::from(seg.time_index.lookup(timestamp_ms));
        let start = hint.max(from).max(seg.base_offset);
        (start < self.visible_offset).then_some(start)
    }

    /// ListOffsets -3: the offset and timestamp of the visible record with the
    /// largest timestamp, at **batch granularity**: the offset returned is the
    /// last offset of the first batch that reached the largest max timestamp
    /// (Kafka returns the offset of the record itself, which may be earlier in
    /// that batch). Batches below the log start offset are not considered.
    /// `None` when the log has no visible batch with a timestamp.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for seg in self.segments.values() {
            if seg.max_timestamp < 0 || seg.next_offset <= self.log_start_offset {
                continue;
            }
            // The time index holds each new running maximum of the segment with the
            // last offset of the batch that set it; the newest entry whose batch is
            // visible (and not below the log start) is this segment's answer.
            let found = seg
                .time_index
                .entries()
                .iter()
                .rev()
                .map(|&(t, o)| (seg.base_offset + i64::from(o), t))
                .find(|&(o, _)| o < self.visible_offset);
            if let Some((offset, ts)) = found {
                if offset >= self.log_start_offset && best.is_none_or(|(_, bt)| ts > bt) {
                    best = Some((offset, ts));
                }
            }
        }
        best
    }
}

/// ListOffsets with a timestamp: the first visible offset at or above the log
/// start whose record timestamp is at or above `timestamp_ms`, with that
/// timestamp; `None` when there is none. Compressed batches are decompressed as
/// a stream, within a bounded output size.
pub async fn offset_for_timestamp<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut from = log.borrow().log_start_offset;
    let mut scratch = Vec::new();
    loop {
        let (plan, dir) = {
            let l = log.borrow();
            from = from.max(l.log_start_offset);
            let Some(start) = l.timestamp_scan_start(from, timestamp_ms) else {
                return Ok(None);
            };
            (
                l.plan_read(start, TIMESTAMP_SCAN_READ_BYTES)?,
                l.dir.clone(),
            )
        };
        let result = match plan {
            ReadPlan::Done(r) => r,
            ReadPlan::Disk(d) => d.execute().await?,
        };
        if result.chunks.is_empty() {
            return Ok(None);
        }
        let before = from;
        for chunk in &result.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let corrupt = |reason: String| LogError::Corrupt {
                    path: dir.clone(),
                    position: 0,
                    reason,
                };
                let header = BatchHeader::parse(&chunk[at..])
                    .map_err(|e| corrupt(format!("batch near offset {from}: {e}")))?;
                let len = header.total_len();
                if len < sluice_records::HEADER_LEN || at + len > chunk.len() {
                    return Err(corrupt(format!("batch near offset {from}: length {len}")));
                }
                let batch = chunk.slice(at..at + len);
                at += len;
                if header.last_offset() < from {
                    continue;
                }
                if header.max_timestamp >= timestamp_ms {
                    let found = first_record_at_or_after(&batch, from, timestamp_ms, &mut scratch)
                        .map_err(|e| {
                            corrupt(format!("batch at offset {}: {e}", header.base_offset))
                        })?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                from = header.last_offset() + 1;
            }
        }
        if from <= before {
            // A read that makes no progress would loop forever: the log changed
            // under the scan (truncation); report no match rather than spin.
            return Ok(None);
        }
    }
}

/// The first record of `batch` at or past offset `from` with a timestamp at or
/// above `timestamp_ms`: (offset, timestamp).
fn first_record_at_or_after(
    batch: &Bytes,
    from: i64,
    timestamp_ms: i64,
    scratch: &mut Vec<u8>,
) -> Result<Option<(i64, i64)>, sluice_records::BatchError> {
    let header = BatchHeader::parse(batch)?;
    let mut found = None;
    sluice_records::visit_records(
        batch,
        TIMESTAMP_SCAN_MAX_DECOMPRESSED_BYTES,
        scratch,
        |_, record| {
            if found.is_none() {
                let (offset, ts) = (record.offset(&header), record.timestamp(&header));
                if offset >= from && ts >= timestamp_ms {
                    found = Some((offset, ts));
                }
            }
            Ok(())
        },
    )?;
    Ok(found)
}
