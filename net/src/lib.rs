//! net: the Kafka-facing broker. Framing, the generated codec, one module per
//! Kafka API, the connection loop. It must never know the file layout of logs.
