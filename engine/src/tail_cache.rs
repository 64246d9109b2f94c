//! The tail cache: recent batches of a partition kept in memory, so that
//! consumers at the tail are served without disk reads (direct I/O bypasses the
//! page cache). All logs of a shard share one byte budget.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// The byte budget shared by the tail caches of one shard.
#[derive(Clone, Debug)]
pub struct CacheBudget {
    used_bytes: Rc<Cell<usize>>,
    limit_bytes: usize,
    /// Reads served from the caches, and reads that had to go to disk (metrics).
    hits: Rc<Cell<u64>>,
    misses: Rc<Cell<u64>>,
}

impl CacheBudget {
    pub fn new(limit_bytes: usize) -> Self {
        CacheBudget {
            used_bytes: Rc::new(Cell::new(0)),
            limit_bytes,
            hits: Rc::new(Cell::new(0)),
            misses: Rc::new(Cell::new(0)),
        }
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Reads of the shard's tail caches that were served from memory.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Reads of the shard's tail caches that found the offset older than the cache.
    pub fn misses(&self) -> u64 {
        self.misses.get()
    }
}

impl Default for CacheBudget {
    fn default() -> Self {
        CacheBudget::new(64 << 20)
    }
}

struct Entry {
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
}

pub struct TailCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    budget: CacheBudget,
}

impl TailCache {
    pub fn new(budget: CacheBudget) -> Self {
        TailCache {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn push(&mut self, base_offset: i64, last_offset: i64, bytes: Bytes) {
        debug_assert!(self
            .entries
            .back()
            .is_none_or(|e| e.last_offset < base_offset));
        let len = bytes.len();
        self.entries.push_back(Entry {
            base_offset,
            last_offset,
            bytes,
        });
        self.bytes += len;
        self.budget
            .used_bytes
            .set(self.budget.used_bytes.get() + len);
        while self.budget.used_bytes.get() > self.budget.limit_bytes && self.entries.len() > 1 {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.bytes.len();
            self.budget
                .used_bytes
                .set(self.budget.used_bytes.get() - e.bytes.len());
        }
    }

    /// Whole batches from the one containing `offset`, below `visible_end`, up to
    /// `max_bytes` (at least one batch). `None` when `offset` is older than the cache.
    pub fn read(&self, offset: i64, visible_end: i64, max_bytes: usize) -> Option<Vec<Bytes>> {
        if self.entries.front().is_none_or(|e| offset < e.base_offset) {
            self.budget.misses.set(self.budget.misses.get() + 1);
            return None;
        }
        self.budget.hits.set(self.budget.hits.get() + 1);
        let start = self.entries.partition_point(|e| e.last_offset < offset);
        let mut out = Vec::new();
        let mut total = 0;
        for e in self.entries.range(start..) {
            if e.base_offset >= visible_end
                || (!out.is_empty() && total + e.bytes.len() > max_bytes)
            {
                break;
            }
            total += e.bytes.len();
            out.push(e.bytes.clone());
        }
        Some(out)
    }

    /// Forgets batches at or past `offset` (truncation, a failed write).
    pub fn truncate_from(&mut self, offset: i64) {
        while self.entries.back().is_some_and(|e| e.last_offset >= offset) {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= e.bytes.len();
                self.budget
                    .used_bytes
                    .set(self.budget.used_bytes.get() - e.bytes.len());
            }
        }
    }

    /// Forgets batches entirely below `offset` (retention, DeleteRecords).
    pub fn drop_before(&mut self, offset: i64) {
        while self.entries.front().is_some_and(|e| e.last_offset < offset) {
            self.pop_front();
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        self.budget
            .used_bytes
            .set(self.budget.used_bytes.get() - self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_batches_within_bounds() {
        let budget = CacheBudget::new(1000);
        let mut c = TailCache::new(budget.clone());
        c.push(0, 9, Bytes::from(vec![0; 100]));
        c.push(10, 19, Bytes::from(vec![1; 100]));
        c.push(20, 29, Bytes::from(vec![2; 100]));
        assert_eq!(budget.used_bytes(), 300);
        let r = c.read(15, 30, 150).expect("cached");
        assert_eq!(r.len(), 1, "max_bytes allows one batch");
        assert_eq!(r[0][0], 1);
        assert_eq!(
            c.read(15, 20, 1000).expect("cached").len(),
            1,
            "visible end stops the read"
        );
        assert_eq!(
            c.read(0, 30, 1).expect("cached").len(),
            1,
            "at least one batch"
        );
        c.truncate_from(20);
        assert_eq!(c.read(20, 30, 1000).expect("cached").len(), 0);
        assert!(TailCache::new(budget.clone()).read(0, 30, 1000).is_none());
        assert_eq!(
            (budget.hits(), budget.misses()),
            (4, 1),
            "hit/miss counters"
        );
        drop(c);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn evicts_oldest_over_budget() {
        let budget = CacheBudget::new(250);
        let mut c = TailCache::new(budget.clone());
        for i in 0..5 {
            c.push(i * 10, i * 10 + 9, Bytes::from(vec![0; 100]));
        }
        assert!(budget.used_bytes() <= 250);
        assert!(
            c.read(0, 100, 1000).is_none(),
            "the oldest batches were evicted"
        );
        assert!(c.read(45, 100, 1000).is_some());
    }
}
