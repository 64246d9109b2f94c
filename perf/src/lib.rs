//! perf: a Kafka-protocol load generator and benchmark reports.
