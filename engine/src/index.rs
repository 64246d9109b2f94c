//! Sparse indexes of a segment, in Kafka's file formats.
//!
//! `.index`: entries of 8 bytes, relative offset (i32 BE) then file position
//! (i32 BE). `.timeindex`: entries of 12 bytes, timestamp (i64 BE) then relative
//! offset (i32 BE). An entry is added when at least `index.interval.bytes` of log
//! were appended since the previous one; each points at a batch start.

/// Offset index: (offset relative to the segment base, byte position).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, offset_relative: u32, position: u32) {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|&(o, p)| o < offset_relative && p < position));
        self.entries.push((offset_relative, position));
    }

    /// The position of the last indexed batch starting at or before `offset_relative`.
    pub fn lookup(&self, offset_relative: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= offset_relative);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Drops entries at or past `position` (truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let i = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(i);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Parses an index file; `None` when it is inconsistent with a segment of
    /// `segment_len` bytes (then the caller rebuilds it from the log).
    pub fn decode(data: &[u8], segment_len: u64) -> Option<OffsetIndex> {
        if data.len() % 8 != 0 {
            return None;
        }
        let mut index = OffsetIndex::default();
        for e in data.chunks_exact(8) {
            let o = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let ordered = index
                .entries
                .last()
                .is_none_or(|&(lo, lp)| lo < o && lp < p);
            if !ordered || u64::from(p) >= segment_len {
                return None;
            }
            index.entries.push((o, p));
        }
        Some(index)
    }
}

/// Time index: (max timestamp so far, offset relative to the segment base of the
/// batch that reached it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records a new maximum; entries stay strictly increasing in both fields.
    pub fn push(&mut self, timestamp_ms: i64, offset_relative: u32) {
        match self.entries.last() {
            Some(&(t, o)) if timestamp_ms <= t || offset_relative <= o => {}
            _ => self.entries.push((timestamp_ms, offset_relative)),
        }
    }

    /// The relative offset from which a scan for `timestamp_ms` must start: the
    /// offset of the last entry whose timestamp is below the target (earlier
    /// batches cannot hold a timestamp at or above it... except records within the
    /// batch of that entry, which the scan covers), or 0.
    pub fn lookup(&self, timestamp_ms: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp_ms);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn truncate_to_offset(&mut self, offset_relative: u32) {
        let i = self.entries.partition_point(|&(_, o)| o < offset_relative);
        self.entries.truncate(i);
    }

    /// The entries, oldest first: (running max timestamp, relative offset).
    pub fn entries(&self) -> &[(i64, u32)] {
        &self.entries
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn decode(data: &[u8]) -> Option<TimeIndex> {
        if data.len() % 12 != 0 {
            return None;
        }
        let mut index = TimeIndex::default();
        for e in data.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if index
                .entries
                .last()
                .is_some_and(|&(lt, lo)| lt >= t || lo >= o)
            {
                return None;
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut i = OffsetIndex::default();
        i.push(10, 4096);
        i.push(20, 8192);
        assert_eq!(i.lookup(0), 0);
        assert_eq!(i.lookup(9), 0);
        assert_eq!(i.lookup(10), 4096);
        assert_eq!(i.lookup(19), 4096);
        assert_eq!(i.lookup(25), 8192);
        let decoded = OffsetIndex::decode(&i.encode(), 10_000).expect("valid");
        assert_eq!(decoded, i);
        assert!(
            OffsetIndex::decode(&i.encode(), 8192).is_none(),
            "position past the segment end"
        );
        assert!(OffsetIndex::decode(&[0; 7], 100).is_none());
        i.truncate_to_position(8192);
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn time_lookup_and_round_trip() {
        let mut t = TimeIndex::default();
        t.push(100, 5);
        t.push(90, 6); // not a new maximum: ignored
        t.push(200, 9);
        assert_eq!(t.lookup(50), 0);
        assert_eq!(t.lookup(100), 0);
        assert_eq!(t.lookup(150), 5);
        assert_eq!(t.lookup(250), 9);
        assert_eq!(TimeIndex::decode(&t.encode()), Some(t.clone()));
        assert!(TimeIndex::decode(&[1; 13]).is_none());
        t.truncate_to_offset(9);
        assert_eq!(t.last(), Some((100, 5)));
    }
}
