//! Single-node placement: which shard owns a partition or a coordinator key.
//!
//! These functions are part of the on-disk contract: a partition's log lives
//! in the directory of the shard this returns. **Changing the hash, the seed,
//! or the arithmetic moves data** and needs a migration; the golden tests
//! below pin the current values.

use crate::ids::ShardId;

const FNV1A_32_OFFSET: u32 = 0x811c_9dc5;
const FNV1A_32_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a: tiny, well-known, and fixed forever (unlike `std`'s hasher).
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV1A_32_OFFSET, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(FNV1A_32_PRIME)
    })
}

/// Shard that owns `partition` of `topic` on a node with `shards` shards.
///
/// The topic's hash picks the shard of partition 0 (so topics do not all
/// start on shard 0), and consecutive partitions then go round-robin.
///
/// Panics if `shards` is 0 or `partition` is negative (both are caller bugs).
pub fn partition_shard(topic: &str, partition: i32, shards: u16) -> ShardId {
    assert!(shards > 0, "a node has at least one shard");
    assert!(partition >= 0, "partition index {partition} is negative");
    let start = u64::from(fnv1a_32(topic.as_bytes()));
    let index = (start + partition as u64) % u64::from(shards);
    ShardId(index as u16)
}

/// Shard that owns a coordinator key (a consumer group id, a transactional
/// id) on a node with `shards` shards. Panics if `shards` is 0.
pub fn key_shard(key: &[u8], shards: u16) -> ShardId {
    assert!(shards > 0, "a node has at least one shard");
    ShardId((fnv1a_32(key) % u32::from(shards)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn six_partitions_split_three_three_over_two_shards() {
        let shards: Vec<u16> = (0..6).map(|p| partition_shard("orders", p, 2).0).collect();
        assert_eq!(shards.iter().filter(|&&s| s == 0).count(), 3);
        assert_eq!(shards.iter().filter(|&&s| s == 1).count(), 3);
        // Consecutive partitions alternate.
        for w in shards.windows(2) {
            assert_ne!(w[0], w[1]);
        }
    }

    #[test]
    fn placement_is_stable_golden_values() {
        // If this test fails, placement changed: existing data would be found
        // on the wrong shard. Do not update the values without a migration.
        let orders: Vec<u16> = (0..6).map(|p| partition_shard("orders", p, 2).0).collect();
        assert_eq!(orders, vec![0, 1, 0, 1, 0, 1]);
        let events: Vec<u16> = (0..4).map(|p| partition_shard("events", p, 3).0).collect();
        assert_eq!(events, vec![2, 0, 1, 2]);
        assert_eq!(partition_shard("__consumer_offsets", 49, 8), ShardId(5));
        assert_eq!(key_shard(b"my-group", 4), ShardId(1));
        assert_eq!(key_shard(b"", 4), ShardId(1));
    }

    #[test]
    fn every_partition_lands_on_an_existing_shard() {
        for shards in 1..=17u16 {
            for p in 0..100 {
                assert!(partition_shard("t", p, shards).0 < shards);
            }
            assert!(key_shard(b"g", shards).0 < shards);
        }
    }

    #[test]
    fn partitions_balance_within_one() {
        for shards in 1..=9u16 {
            let mut counts = vec![0u32; usize::from(shards)];
            for p in 0..100 {
                counts[partition_shard("balanced", p, shards).index()] += 1;
            }
            let max = counts.iter().max().copied().unwrap_or(0);
            let min = counts.iter().min().copied().unwrap_or(0);
            assert!(max - min <= 1, "{counts:?}");
        }
    }
}
