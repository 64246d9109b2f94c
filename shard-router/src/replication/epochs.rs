//! Leader-epoch cache lookups (KIP-101, KIP-279). A cache is the engine's
//! `leader_epochs()`: (epoch, start offset) pairs, epochs increasing.

use super::{UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// Where epoch `requested` ends in a log with this cache, as Kafka's
/// `LeaderEpochFileCache.endOffsetFor` answers: the latest epoch ends at the
/// log end; an older one ends where the next larger epoch starts, reported
/// with the largest known epoch at or below it, or with `requested` itself
/// when every known epoch is larger (it then "ends" where the log's first
/// epoch starts); an epoch newer than all known, or none, gives (-1, -1).
pub fn end_offset_for(cache: &[(i32, i64)], requested: i32, log_end: i64) -> (i32, i64) {
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    }
    if cache.last().is_some_and(|&(e, _)| e == requested) {
        return (requested, log_end);
    }
    let Some(&(_, next_start)) = cache.iter().find(|&&(e, _)| e > requested) else {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    };
    match cache.iter().rev().find(|&&(e, _)| e <= requested) {
        Some(&(floor, _)) => (floor, next_start),
        None => (requested, next_start),
    }
}

/// A leader's cache as it answers queries: Kafka adds (epoch, log end) when a
/// leadership starts, before any batch of that epoch exists; the engine's
/// cache learns an epoch from its first batch, so it is added here.
pub fn with_current_epoch(cache: &[(i32, i64)], epoch: i32, log_end: i64) -> Vec<(i32, i64)> {
    let mut entries = cache.to_vec();
    if entries.last().is_none_or(|&(e, _)| e < epoch) {
        entries.push((epoch, log_end));
    }
    entries
}

/// Where a follower must cut its log, given the leader's answer to its
/// query for its latest epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to this offset; the logs then agree up to it.
    Final(i64),
    /// Truncate to this offset, then ask again (the leader answered an epoch
    /// this follower does not have).
    AskAgain(i64),
}

/// KIP-279: the follower asked about its latest epoch and the leader answered
/// `(leader_epoch, leader_end)`. `fallback` (the follower's high watermark)
/// is where to cut when the leader knows no epoch that old.
pub fn truncation_point(
    own_cache: &[(i32, i64)],
    own_log_end: i64,
    answer: (i32, i64),
    fallback: i64,
) -> Truncation {
    let (leader_epoch, leader_end) = answer;
    if leader_epoch == UNDEFINED_EPOCH || leader_end == UNDEFINED_OFFSET {
        return Truncation::Final(fallback.min(own_log_end));
    }
    let (own_epoch, own_end) = end_offset_for(own_cache, leader_epoch, own_log_end);
    if own_epoch == UNDEFINED_EPOCH {
        // We know no epochs to compare (Kafka's case of a follower without
        // a cache): trust the leader's end.
        return Truncation::Final(leader_end.min(own_log_end));
    }
    if own_epoch != leader_epoch {
        // We never saw the leader's epoch: cut to where our older epoch ends
        // and ask about that one.
        return Truncation::AskAgain(own_end.min(own_log_end));
    }
    Truncation::Final(own_end.min(leader_end).min(own_log_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_as_kafka_answers_them() {
        let cache = [(1, 0), (3, 10), (5, 20)];
        assert_eq!(end_offset_for(&cache, 5, 30), (5, 30));
        assert_eq!(end_offset_for(&cache, 7, 30), (-1, -1));
        assert_eq!(end_offset_for(&cache, 3, 30), (3, 20));
        assert_eq!(end_offset_for(&cache, 4, 30), (3, 20));
        assert_eq!(end_offset_for(&cache, 1, 30), (1, 10));
        assert_eq!(end_offset_for(&cache, 0, 30), (0, 0));
        assert_eq!(end_offset_for(&[(2, 5), (4, 9)], 1, 30), (1, 5));
        assert_eq!(end_offset_for(&cache, -1, 30), (-1, -1));
        assert_eq!(end_offset_for(&[], 2, 30), (-1, -1));
    }

    #[test]
    fn truncation_points_of_kip_101_and_279() {
        // Same epoch, follower longer: cut to the leader's end.
        let own = [(1, 0), (2, 10)];
        assert_eq!(
            truncation_point(&own, 25, (2, 18), 5),
            Truncation::Final(18)
        );
        // Same epoch, follower shorter: keep everything.
        assert_eq!(
            truncation_point(&own, 15, (2, 18), 5),
            Truncation::Final(15)
        );
        // The leader never had our epoch 2; its epoch 1 ended at 12 there.
        assert_eq!(
            truncation_point(&own, 25, (1, 12), 5),
            Truncation::Final(10)
        );
        // The leader answers epoch 1 where we jumped from 0 to 2: ask again.
        let own = [(0, 0), (2, 10)];
        assert_eq!(
            truncation_point(&own, 25, (1, 12), 5),
            Truncation::AskAgain(10)
        );
        // Nothing older known to the leader: the fallback.
        assert_eq!(
            truncation_point(&own, 25, (-1, -1), 5),
            Truncation::Final(5)
        );
        // All of ours newer than the leader's answer: none of it is the
        // leader's history (the regression the simulation found: a replica
        // that led epoch 3 alone kept its batches under a leader of epoch 4).
        let own = [(3, 0)];
        assert_eq!(truncation_point(&own, 2, (2, 26), 0), Truncation::Final(0));
        let own = [(4, 3)];
        assert_eq!(truncation_point(&own, 25, (2, 7), 0), Truncation::Final(3));
        // No cache at all: the leader's end.
        assert_eq!(truncation_point(&[], 25, (2, 7), 0), Truncation::Final(7));
    }
}
