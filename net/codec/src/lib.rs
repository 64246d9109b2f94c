//! The Kafka protocol codec, generated from Kafka's message JSON schemas by
//! `net/codegen`. Decoding never trusts a length prefix further than the bytes left.
