//! Request frames captured from real clients (librdkafka 2.0 via kcat,
//! librdkafka 2.16 via confluent-kafka, kafka-python 3.0) by
//! `tests/capture/capture.py`: each must decode to the fields the client was
//! told to send and re-encode to the identical bytes.

use bytes::Bytes;
use sluice_codec::{
    decode_request, decode_request_header_prefix, encode_request, ApiKey, RequestBody,
    RequestHeader,
};

const TOPIC: &str = "golden";
const RECORDS_PER_CLIENT: i32 = 3;
/// Offsets inside a v2 record batch header.
const BATCH_LENGTH_OFFSET: usize = 8;
const BATCH_MAGIC_OFFSET: usize = 16;
const BATCH_RECORD_COUNT_OFFSET: usize = 57;
const BATCH_HEADER_BYTES: usize = 61;

fn fixture(client: &str, file: &str) -> Bytes {
    let path = format!(
        "{}/tests/golden/{client}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Decodes a fixture, checks the header, and checks that re-encoding gives
/// the same bytes.
fn decode_and_reencode(
    client: &str,
    file: &str,
    api_key: ApiKey,
    version: i16,
) -> (RequestBody, Bytes) {
    let frame = fixture(client, file);
    let (key, v, correlation_id) = decode_request_header_prefix(&frame).expect("prefix");
    assert_eq!((key, v), (api_key.as_i16(), version), "{client}/{file}");
    let (header, body) =
        decode_request(frame.clone()).unwrap_or_else(|e| panic!("{client}/{file}: {e}"));
    assert_eq!(
        header,
        RequestHeader {
            api_key: api_key.as_i16(),
            api_version: version,
            correlation_id,
            client_id: Some(format!("sluice-golden-{client}")),
        }
    );
    assert_eq!(body.api_key(), api_key);
    let encoded: Vec<u8> = encode_request(&header, &body)
        .iter()
        .flat_map(|c| c.iter().copied())
        .collect();
    assert_eq!(
        &encoded[4..],
        &frame[..],
        "{client}/{file} re-encodes differently"
    );
    assert_eq!(
        &encoded[..4],
        &i32::try_from(frame.len()).unwrap().to_be_bytes()
    );
    (body, frame)
}

fn check_api_versions(client: &str, file: &str, version: i16, software: &str) {
    let (RequestBody::ApiVersions(req), _) =
        decode_and_reencode(client, file, ApiKey::ApiVersions, version)
    else {
        panic!("not ApiVersions");
    };
    assert!(
        req.client_software_name.contains(software),
        "{client}: software name {:?}",
        req.client_software_name
    );
    assert!(!req.client_software_version.is_empty());
}

fn check_metadata(client: &str, file: &str, version: i16) {
    let (RequestBody::Metadata(req), _) =
        decode_and_reencode(client, file, ApiKey::Metadata, version)
    else {
        panic!("not Metadata");
    };
    // Clients ask for the topic they produce to (or for all topics, as null).
    if let Some(topics) = &req.topics {
        assert!(
            topics.iter().all(|t| t.name.as_deref() == Some(TOPIC)),
            "{client}: {topics:?}"
        );
    }
}

fn check_produce(client: &str, file: &str, version: i16) {
    let (RequestBody::Produce(req), frame) =
        decode_and_reencode(client, file, ApiKey::Produce, version)
    else {
        panic!("not Produce");
    };
    assert_eq!(req.acks, 1);
    assert_eq!(req.transactional_id, None);
    assert!(req.timeout_ms > 0);
    assert_eq!(req.topic_data.len(), 1);
    let topic = &req.topic_data[0];
    assert_eq!(topic.name, TOPIC);
    assert_eq!(topic.partition_data.len(), 1);
    let partition = &topic.partition_data[0];
    assert_eq!(partition.index, 0);
    // A decoded records value is one chunk.
    let [records] = partition.records.as_ref().expect("records").chunks() else {
        panic!("{client}: records not one chunk");
    };
    // One v2 batch holding the client's three records; its own length field
    // agrees with the slice the codec cut out of the frame.
    assert!(records.len() > BATCH_HEADER_BYTES);
    let batch_length = i32::from_be_bytes(
        records[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .try_into()
            .unwrap(),
    );
    assert_eq!(
        usize::try_from(batch_length).unwrap() + 12,
        records.len(),
        "{client}"
    );
    assert_eq!(records[BATCH_MAGIC_OFFSET], 2);
    let count = i32::from_be_bytes(
        records[BATCH_RECORD_COUNT_OFFSET..BATCH_RECORD_COUNT_OFFSET + 4]
            .try_into()
            .unwrap(),
    );
    assert_eq!(count, RECORDS_PER_CLIENT);
    // Zero copy: the records are a slice of the decoded frame.
    assert!(frame.as_ptr_range().contains(&records.as_ptr()));
}

#[test]
fn kcat_librdkafka_2_0() {
    check_api_versions("kcat", "ApiVersions_v3.bin", 3, "librdkafka");
    check_metadata("kcat", "Metadata_v4.bin", 4);
    check_produce("kcat", "Produce_v7.bin", 7);
}

#[test]
fn confluent_kafka_librdkafka_2_16() {
    check_api_versions(
        "confluent",
        "ApiVersions_v3.bin",
        3,
        "confluent-kafka-python",
    );
    check_metadata("confluent", "Metadata_v13.bin", 13);
    check_produce("confluent", "Produce_v10.bin", 10);
}

#[test]
fn kafka_python_3_0() {
    check_api_versions("kafka-python", "ApiVersions_v4.bin", 4, "kafka-python");
    check_metadata("kafka-python", "Metadata_v13.bin", 13);
    check_produce("kafka-python", "Produce_v9.bin", 9);
}

#[test]
fn corrupting_a_golden_frame_is_an_error_not_a_panic() {
    let frame = fixture("kafka-python", "Produce_v9.bin");
    for cut in 0..frame.len() {
        assert!(decode_request(frame.slice(..cut)).is_err(), "cut at {cut}");
    }
}
