//! Idempotent-producer state of one partition: per producer id, its epoch and
//! the sequence ranges and offsets of its last five batches, as Kafka keeps them.
//!
//! It lives beside the log (not in the broker) because it is rebuilt from the
//! log: on open, from the snapshot written at the last segment roll plus the
//! batches of the active segment, so a retry after a crash is still recognised.

use std::collections::{HashMap, VecDeque};

use crate::error::AppendError;

/// How many recent batches per producer are remembered for deduplication (Kafka: 5,
/// the most in-flight requests an idempotent producer may have).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// The bound on producers tracked per partition; the least recently active are
/// dropped first when it is exceeded (besides expiry by `producer.id.expiration.ms`).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    pub last_timestamp_ms: i64,
}

/// What an incoming idempotent batch is, against the producer's state.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch: append it.
    Accept,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate(BatchMeta),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    /// Checks a batch of `record_count` records from `producer_id`/`epoch` starting at `first_seq`.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        record_count: i32,
    ) -> Result<SequenceCheck, AppendError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // No state: any sequence starts it, as in Kafka since 2.5
            // (KIP-360). The producer may have written before its batches
            // left the log (retention, DeleteRecords), or before this
            // replica's log started (a replica seeded at its leader's log
            // start knows no producer from below it): refusing would fail a
            // running idempotent producer after a failover.
            return Ok(SequenceCheck::Accept);
        };
        if epoch < entry.epoch {
            return Err(AppendError::ProducerFenced {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if first_seq != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id,
                    sequence: first_seq,
                    last: -1,
                });
            }
            return Ok(SequenceCheck::Accept);
        }
        let last_seq = first_seq.wrapping_add(record_count - 1);
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*b));
        }
        let last = entry.batches.back().map_or(-1, |b| b.last_seq);
        if first_seq != next_seq(last) {
            return Err(AppendError::OutOfOrderSequence {
                producer_id,
                sequence: first_seq,
                last,
            });
        }
        Ok(SequenceCheck::Accept)
    }

    /// Records an appended batch (also used when replaying the log on open).
    pub fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta, timestamp_ms: i64) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                last_timestamp_ms: timestamp_ms,
            });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(timestamp_ms);
        if self.producers.len() > MAX_PRODUCERS_PER_PARTITION {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, e)| e.last_timestamp_ms)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    /// Drops producers idle for longer than `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, e| now_ms - e.last_timestamp_ms <= expiration_ms);
    }

    /// Drops batch records at or past `offset` (log truncation).
    pub fn truncate_to(&mut self, offset: i64) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    /// Snapshot file body: `[u32 count] then per producer [i64 id][i16 epoch]
    /// [i64 last_ts][u8 n] n x [i32 first][i32 last][i64 base][i64 last_off]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.producers.len() * 64);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(mut data: &[u8]) -> Option<ProducerStates> {
        fn take<const N: usize>(d: &mut &[u8]) -> Option<[u8; N]> {
            let (head, rest) = d.split_first_chunk::<N>()?;
            *d = rest;
            Some(*head)
        }
        let count = u32::from_be_bytes(take(&mut data)?);
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = i64::from_be_bytes(take(&mut data)?);
            let epoch = i16::from_be_bytes(take(&mut data)?);
            let last_timestamp_ms = i64::from_be_bytes(take(&mut data)?);
            let [n] = take::<1>(&mut data)?;
            if usize::from(n) > BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(BATCHES_PER_PRODUCER);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(take(&mut data)?),
                    last_seq: i32::from_be_bytes(take(&mut data)?),
                    base_offset: i64::from_be_bytes(take(&mut data)?),
                    last_offset: i64::from_be_bytes(take(&mut data)?),
                });
            }
            states.producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp_ms,
                },
            );
        }
        data.is_empty().then_some(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: i32, last: i32, off: i64) -> BatchMeta {
        BatchMeta {
            first_seq: first,
            last_seq: last,
            base_offset: off,
            last_offset: off + i64::from(last - first),
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 10).expect("first"), SequenceCheck::Accept);
        // A producer this log has no state of may start at any sequence.
        assert_eq!(
            s.check(8, 0, 5, 1).expect("unknown producer"),
            SequenceCheck::Accept
        );
        s.record(7, 0, meta(0, 9, 100), 1);
        assert_eq!(s.check(7, 0, 10, 5).expect("next"), SequenceCheck::Accept);
        assert_eq!(
            s.check(7, 0, 0, 10).expect("retry"),
            SequenceCheck::Duplicate(meta(0, 9, 100))
        );
        assert!(matches!(
            s.check(7, 0, 12, 1),
            Err(AppendError::OutOfOrderSequence { last: 9, .. })
        ));
        assert!(matches!(
            s.check(7, -1, 10, 1),
            Err(AppendError::ProducerFenced { current: 0, .. })
        ));
        assert_eq!(
            s.check(7, 1, 0, 1).expect("new epoch"),
            SequenceCheck::Accept
        );
        assert!(s.check(7, 1, 3, 1).is_err(), "a new epoch must start at 0");
    }

    #[test]
    fn keeps_only_the_last_five_batches() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(1, 0, meta(i, i, i64::from(i)), 0);
        }
        let e = s.get(1).expect("present");
        assert_eq!(e.batches.len(), BATCHES_PER_PRODUCER);
        assert_eq!(e.batches.front().map(|b| b.first_seq), Some(2));
        // The oldest retry can no longer be recognised: it is out of order now.
        assert!(s.check(1, 0, 0, 1).is_err());
    }

    #[test]
    fn snapshot_round_trip_and_rejects_garbage() {
        let mut s = ProducerStates::default();
        s.record(1, 3, meta(0, 4, 10), 99);
        s.record(2, 0, meta(0, 0, 15), 100);
        let bytes = s.encode();
        assert_eq!(ProducerStates::decode(&bytes), Some(s));
        for cut in 0..bytes.len() {
            assert_eq!(ProducerStates::decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn expiry_and_truncation() {
        let mut s = ProducerStates::default();
        s.record(1, 0, meta(0, 0, 10), 1_000);
        s.record(2, 0, meta(0, 0, 20), 5_000);
        s.expire(6_000, 2_000);
        assert!(s.get(1).is_none() && s.get(2).is_some());
        s.truncate_to(20);
        assert!(s.is_empty());
    }
}
