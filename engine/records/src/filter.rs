//! Rewriting a stored batch to keep only some of its records (log compaction).

use crate::compression::Compressors;
use crate::error::BatchError;
use crate::header::{
    compute_crc, BatchHeader, Compression, CRC_OFFSET, HEADER_LEN, LENGTH_OFFSET, LOG_OVERHEAD,
    RECORD_COUNT_OFFSET,
};
use crate::record::{parse_record, Record};
use crate::validate::decompress_records;

/// What [`BatchFilter::filter`] made of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every record is kept: store the original bytes unchanged.
    Unchanged,
    /// No record is kept.
    Empty,
    /// Some records are kept: the new batch is in the filter's output buffer.
    Rewritten,
}

/// Filters the records of stored batches, reusing its buffers and compressor
/// state across batches.
///
/// A rewritten batch keeps the original base offset, last offset delta (so a
/// producer's sequence range stays as it was, as Kafka's cleaner does),
/// timestamps, producer fields, attributes and codec; each kept record's bytes
/// are copied unchanged (their offset and timestamp deltas stay relative to
/// the unchanged base), so offsets have gaps and `record_count` is smaller
/// than `last_offset_delta + 1`. The CRC is recomputed.
pub struct BatchFilter {
    compressors: Compressors,
    records: Vec<u8>,
    kept: Vec<u8>,
    out: Vec<u8>,
}

impl Default for BatchFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchFilter {
    pub fn new() -> Self {
        BatchFilter {
            compressors: Compressors::new(),
            records: Vec::new(),
            kept: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Calls `keep(header, offset, record)` for each record of `batch` (a whole
    /// stored batch, CRC already checked), decompressing at most
    /// `max_decompressed_bytes`, and builds the batch of the kept records.
    pub fn filter<F>(
        &mut self,
        batch: &[u8],
        max_decompressed_bytes: usize,
        mut keep: F,
    ) -> Result<(BatchHeader, Filtered), BatchError>
    where
        F: FnMut(&BatchHeader, i64, &Record<'_>) -> bool,
    {
        let header = decompress_records(batch, max_decompressed_bytes, &mut self.records)?;
        let count = u32::try_from(header.record_count)
            .map_err(|_| BatchError::invalid("negative record_count"))?;
        self.kept.clear();
        let mut pos = 0usize;
        let mut kept_count = 0i32;
        for _ in 0..count {
            let start = pos;
            let record = parse_record(&self.records, &mut pos)?;
            let offset = record.offset(&header);
            if keep(&header, offset, &record) {
                self.kept.extend_from_slice(&self.records[start..pos]);
                kept_count += 1;
            }
        }
        if pos != self.records.len() {
            return Err(BatchError::invalid("bytes left after record_count records"));
        }
        if kept_count == header.record_count {
            return Ok((header, Filtered::Unchanged));
        }
        if kept_count == 0 {
            return Ok((header, Filtered::Empty));
        }
        let codec = header.compression()?;
        self.out.clear();
        self.out.extend_from_slice(&batch[..HEADER_LEN]);
        self.compressors
            .compress(codec, &self.kept, &mut self.out)
            .map_err(|e| BatchError::Decompression(e.to_string()))?;
        finish(&mut self.out, kept_count)?;
        Ok((header, Filtered::Rewritten))
    }

    /// The batch built by the last [`BatchFilter::filter`] that returned
    /// [`Filtered::Rewritten`], or by [`BatchFilter::empty_batch`].
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Builds, in the output buffer, the header-only batch (no records) that
    /// stands for `batch` when all its records are gone but its producer state
    /// must survive: same offsets, producer fields and timestamps.
    pub fn empty_batch(&mut self, batch: &[u8]) -> Result<(), BatchError> {
        let header = BatchHeader::parse(batch)?;
        let codec = header.compression()?;
        self.out.clear();
        self.out.extend_from_slice(&batch[..HEADER_LEN]);
        if codec != Compression::None {
            // Clear the codec bits: there is nothing to decompress.
            let attributes = header.attributes & !0x07;
            self.out[crate::header::ATTRIBUTES_OFFSET..crate::header::ATTRIBUTES_OFFSET + 2]
                .copy_from_slice(&attributes.to_be_bytes());
        }
        finish(&mut self.out, 0)
    }
}

/// Sets the length, record count and CRC of a batch built in `out`.
fn finish(out: &mut [u8], record_count: i32) -> Result<(), BatchError> {
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| BatchError::invalid("rewritten batch larger than i32::MAX"))?;
    out[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
    out[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&record_count.to_be_bytes());
    let crc = compute_crc(out);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{set_base_offset, BatchBuilder, BatchIter, RecordIter};

    fn sample(codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(codec);
        b.producer(5, 1, 10);
        for i in 0..6u8 {
            let key = [b'k', i % 3];
            let value = vec![i; 40];
            b.push(
                1_000 + i64::from(i),
                Some(&key),
                Some(&value),
                &[("h", Some(&[i]))],
            );
        }
        let mut batch = b.build().to_vec();
        set_base_offset(&mut batch, 100).expect("a whole batch");
        batch
    }

    #[test]
    fn keeps_offsets_timestamps_headers_and_codec() {
        for codec in Compression::ALL {
            let batch = sample(codec);
            let mut f = BatchFilter::new();
            let (h, r) = f
                .filter(&batch, 1 << 20, |_, offset, _| offset % 2 == 1)
                .expect("filters");
            assert_eq!(r, Filtered::Rewritten);
            let out = f.output().to_vec();
            let (nh, range) = BatchIter::new(&out)
                .next()
                .expect("one")
                .expect("valid crc");
            assert_eq!(range.end, out.len());
            assert_eq!(nh.base_offset, 100);
            assert_eq!(nh.last_offset(), h.last_offset(), "last offset kept");
            assert_eq!(nh.record_count, 3);
            assert_eq!(nh.compression().expect("codec"), codec);
            assert_eq!((nh.producer_id, nh.base_sequence), (5, 10));
            let mut seen = Vec::new();
            let mut scratch = Vec::new();
            crate::visit_records(&out, 1 << 20, &mut scratch, |_, r| {
                let hdr = r.headers.iter().next().expect("a header");
                seen.push((
                    r.offset(&nh),
                    r.timestamp(&nh),
                    r.value.map(<[u8]>::to_vec),
                    hdr.value.map(<[u8]>::to_vec),
                ));
                Ok(())
            })
            .expect("records parse");
            let want: Vec<_> = [1u8, 3, 5]
                .iter()
                .map(|&i| {
                    (
                        100 + i64::from(i),
                        1_000 + i64::from(i),
                        Some(vec![i; 40]),
                        Some(vec![i]),
                    )
                })
                .collect();
            assert_eq!(seen, want, "{codec:?}");
        }
    }

    #[test]
    fn all_or_nothing() {
        let batch = sample(Compression::None);
        let mut f = BatchFilter::new();
        assert_eq!(
            f.filter(&batch, 1 << 20, |_, _, _| true).expect("ok").1,
            Filtered::Unchanged
        );
        assert_eq!(
            f.filter(&batch, 1 << 20, |_, _, _| false).expect("ok").1,
            Filtered::Empty
        );
        f.empty_batch(&batch).expect("builds");
        let out = f.output();
        let (h, range) = BatchIter::new(out).next().expect("one").expect("valid crc");
        assert_eq!(
            (range.end, h.record_count, h.last_offset()),
            (HEADER_LEN, 0, 105)
        );
        let (_, mut records) = RecordIter::from_batch(out).expect("parses");
        assert!(records.next().is_none());
    }

    #[test]
    fn limit_is_enforced() {
        let batch = sample(Compression::Zstd);
        let mut f = BatchFilter::new();
        assert!(matches!(
            f.filter(&batch, 64, |_, _, _| true),
            Err(BatchError::DecompressionLimit { .. })
        ));
    }
}
