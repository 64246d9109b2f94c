//! shard-router: the thread-per-core shard runtime, placement of partitions on
//! shards, and cross-core channels. It must never parse Kafka requests.
