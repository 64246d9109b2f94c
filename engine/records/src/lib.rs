//! Kafka record batches (magic v2): parsing, validation, CRC-32C, building,
//! compression. Pure functions over bytes; no I/O.
