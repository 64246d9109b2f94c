//! engine: storage only. Partition logs, segments, indexes, group commit,
//! recovery and retention. It must never know about sockets or Kafka requests.
