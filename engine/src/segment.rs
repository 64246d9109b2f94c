//! One segment of a partition log: a `.log` file of batches plus its sparse
//! indexes, named by the base offset as Kafka names them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::index::{OffsetIndex, TimeIndex};
use crate::storage::StorageFile;

pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Parses `<20 digits>.<extension>` into the base offset.
pub fn parse_file_name(name: &str, extension: &str) -> Option<i64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Takes appends.
    Active,
    /// Rolled: the next flush writes its rest, trims the file, syncs and writes its indexes.
    Sealing,
    /// Complete on disk.
    Sealed,
}

pub struct Segment<F: StorageFile> {
    pub base_offset: i64,
    pub path: PathBuf,
    /// `None` until the first flush creates the file.
    pub file: Option<Rc<F>>,
    /// Logical bytes assigned (written or pending).
    pub size: u64,
    /// Bytes whose direct-I/O write completed.
    pub written: u64,
    /// The bytes of the last partial block, `[align_down(written), written)`:
    /// rewritten with new data by the next flush.
    pub tail_block: Vec<u8>,
    /// Appended batches not yet handed to a write, in order.
    pub pending: VecDeque<Bytes>,
    /// Disk space allocated for the file.
    pub allocated: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index: u64,
    /// One past the last offset stored in this segment.
    pub next_offset: i64,
    /// The largest batch max timestamp in this segment (-1 when unknown or empty).
    pub max_timestamp: i64,
    pub created_ms: i64,
    pub state: SegmentState,
    /// The file holds writes (completed or in flight) that no `fdatasync` has
    /// covered yet: the next job that syncs must sync this file too, even when
    /// it writes nothing to it.
    pub unsynced: bool,
}

impl<F: StorageFile> Segment<F> {
    pub fn new(dir: &Path, base_offset: i64, now_ms: i64) -> Self {
        Segment {
            base_offset,
            path: dir.join(file_name(base_offset, "log")),
            file: None,
            size: 0,
            written: 0,
            tail_block: Vec::new(),
            pending: VecDeque::new(),
            allocated: 0,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            state: SegmentState::Active,
            unsynced: false,
        }
    }

    pub fn relative(&self, offset: i64) -> u32 {
        debug_assert!(
            offset >= self.base_offset && offset - self.base_offset <= i64::from(u32::MAX)
        );
        (offset - self.base_offset) as u32
    }

    pub fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }

    pub fn time_index_path(&self) -> PathBuf {
        self.path.with_extension("timeindex")
    }

    /// Records a batch appended at `position`, for the sparse indexes.
    pub fn note_batch(
        &mut self,
        base_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
        position: u64,
        len: u64,
        interval: u64,
    ) {
        if self.bytes_since_index >= interval {
            self.index.push(self.relative(base_offset), position as u32);
            self.bytes_since_index = 0;
        }
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.time_index
                .push(max_timestamp, self.relative(last_offset));
        }
        self.bytes_since_index += len;
        self.next_offset = last_offset + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(parse_file_name("00000000000000000042.log", "log"), Some(42));
        assert_eq!(parse_file_name("00000000000000000042.index", "log"), None);
        assert_eq!(parse_file_name("42.log", "log"), None);
        assert_eq!(parse_file_name("0000000000000000004x.log", "log"), None);
        assert_eq!(
            parse_file_name("99999999999999999999.log", "log"),
            None,
            "overflow is refused"
        );
    }
}
