//! Round trips and truncation for every message at every version.

use bytes::Bytes;

use crate::{
    decode_request, decode_response, encode_request, encode_response, ApiKey, Decoder, Encoder,
    RequestBody, RequestHeader, ResponseBody,
};

fn versions(api_key: ApiKey) -> impl Iterator<Item = i16> {
    let (lo, hi) = api_key.valid_versions().unwrap_or((0, -1));
    lo..=hi
}

fn flat(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.iter().copied()).collect()
}

#[test]
fn every_request_round_trips_at_every_version() {
    let mut checked = 0;
    for &api_key in ApiKey::ALL {
        for version in versions(api_key) {
            let body = RequestBody::populated(api_key, version).expect("decodable api");
            let mut enc = Encoder::new();
            body.encode(&mut enc, version);
            let bytes = enc.finish_flat();
            let mut dec = Decoder::new(bytes.clone());
            let back = RequestBody::decode(api_key, version, &mut dec)
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
            assert_eq!(back, body, "{api_key:?} v{version}");
            assert_eq!(dec.remaining(), 0, "{api_key:?} v{version} left bytes");
            for cut in 0..bytes.len() {
                let mut dec = Decoder::new(bytes.slice(..cut));
                assert!(
                    RequestBody::decode(api_key, version, &mut dec).is_err(),
                    "{api_key:?} v{version} decoded from {cut} of {} bytes",
                    bytes.len()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} request versions");
}

#[test]
fn every_response_round_trips_at_every_version() {
    let mut checked = 0;
    for &api_key in ApiKey::ALL {
        for version in versions(api_key) {
            let body = ResponseBody::populated(api_key, version).expect("decodable api");
            let mut enc = Encoder::new();
            body.encode(&mut enc, version);
            let bytes = enc.finish_flat();
            let mut dec = Decoder::new(bytes.clone());
            let back = ResponseBody::decode(api_key, version, &mut dec)
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
            assert_eq!(back, body, "{api_key:?} v{version}");
            assert_eq!(dec.remaining(), 0, "{api_key:?} v{version} left bytes");
            for cut in 0..bytes.len() {
                let mut dec = Decoder::new(bytes.slice(..cut));
                assert!(
                    ResponseBody::decode(api_key, version, &mut dec).is_err(),
                    "{api_key:?} v{version} decoded from {cut} of {} bytes",
                    bytes.len()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} response versions");
}

#[test]
fn full_frames_round_trip_through_the_top_level_api() {
    for &api_key in ApiKey::ALL {
        for version in versions(api_key) {
            let header = RequestHeader {
                api_key: api_key.as_i16(),
                api_version: version,
                correlation_id: 77,
                client_id: Some("sluice-test".into()),
            };
            let body = RequestBody::populated(api_key, version).expect("decodable api");
            let frame = flat(&encode_request(&header, &body));
            let size = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
            assert_eq!(usize::try_from(size).ok(), Some(frame.len() - 4));
            let (h, b) = decode_request(Bytes::from(frame[4..].to_vec()))
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
            assert_eq!(h, header);
            assert_eq!(b, body);

            let body = ResponseBody::populated(api_key, version).expect("decodable api");
            let frame = flat(&encode_response(77, api_key, version, &body));
            let (correlation_id, b) =
                decode_response(api_key, version, Bytes::from(frame[4..].to_vec()))
                    .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
            assert_eq!(correlation_id, 77);
            assert_eq!(b, body);
        }
    }
}

#[test]
fn headers_round_trip_at_every_version() {
    use crate::ResponseHeader;
    for version in 0..=2 {
        let header = RequestHeader::populated(version);
        let mut enc = Encoder::new();
        header.encode(&mut enc, version);
        let bytes = enc.finish_flat();
        let back = RequestHeader::decode(&mut Decoder::new(bytes.clone()), version);
        assert_eq!(back, Ok(header), "request header v{version}");
        for cut in 0..bytes.len() {
            assert!(RequestHeader::decode(&mut Decoder::new(bytes.slice(..cut)), version).is_err());
        }
    }
    for version in 0..=1 {
        let header = ResponseHeader::populated(version);
        let mut enc = Encoder::new();
        header.encode(&mut enc, version);
        let bytes = enc.finish_flat();
        let back = ResponseHeader::decode(&mut Decoder::new(bytes.clone()), version);
        assert_eq!(back, Ok(header), "response header v{version}");
    }
}

#[test]
fn request_header_v2_keeps_the_client_id_non_compact() {
    let header = RequestHeader {
        api_key: 18,
        api_version: 3,
        correlation_id: 1,
        client_id: Some("ab".into()),
    };
    let mut enc = Encoder::new();
    header.encode(&mut enc, 2);
    assert_eq!(
        &enc.finish_flat()[..],
        &[0, 18, 0, 3, 0, 0, 0, 1, 0, 2, b'a', b'b', 0]
    );
}

#[test]
fn header_versions_follow_flexibility() {
    assert_eq!(ApiKey::Produce.request_header_version(8), 1);
    assert_eq!(ApiKey::Produce.request_header_version(9), 2);
    assert_eq!(ApiKey::Produce.response_header_version(8), 0);
    assert_eq!(ApiKey::Produce.response_header_version(9), 1);
    assert_eq!(ApiKey::ApiVersions.request_header_version(3), 2);
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    assert_eq!(ApiKey::ControlledShutdown.request_header_version(0), 0);
}

#[test]
fn advertised_versions_exclude_an_unstable_latest() {
    assert_eq!(ApiKey::InitProducerId.valid_versions(), Some((0, 6)));
    assert_eq!(ApiKey::InitProducerId.supported_versions(), (0, 5));
    assert_eq!(ApiKey::Produce.supported_versions(), (3, 13));
    assert_eq!(ApiKey::LeaderAndIsr.valid_versions(), None);
    assert_eq!(ApiKey::from_i16(0), Some(ApiKey::Produce));
    assert_eq!(ApiKey::from_i16(-1), None);
    assert_eq!(ApiKey::Fetch.name(), "Fetch");
}

#[test]
fn schema_defaults_are_honoured() {
    let fetch = crate::FetchRequest::default();
    assert_eq!(fetch.replica_id, -1);
    assert_eq!(fetch.max_bytes, 0x7fff_ffff);
    assert_eq!(fetch.session_epoch, -1);
    assert_eq!(fetch.cluster_id, None);
    let produce = crate::ProduceRequest::default();
    assert_eq!(produce.transactional_id, None);
}

#[test]
fn api_versions_response_v3_bytes_use_header_v0() {
    use crate::api_versions_response::ApiVersion;
    let body = ResponseBody::ApiVersions(crate::ApiVersionsResponse {
        error_code: 0,
        api_keys: vec![ApiVersion {
            api_key: 18,
            min_version: 0,
            max_version: 4,
        }],
        ..Default::default()
    });
    let frame = flat(&encode_response(5, ApiKey::ApiVersions, 3, &body));
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 19,        // size
        0, 0, 0, 5,         // correlation id; no tagged fields: header v0
        0, 0,               // error code
        2,                  // compact array of one
        0, 18, 0, 0, 0, 4,  // key, min, max
        0,                  // element's tagged fields
        0, 0, 0, 0,         // throttle time
        0,                  // tagged fields (FinalizedFeaturesEpoch -1 is the default)
    ];
    assert_eq!(frame, expected);
}

#[test]
fn error_codes_match_kafka() {
    use crate::ErrorCode;
    assert_eq!(ErrorCode::NONE.code(), 0);
    assert_eq!(ErrorCode::UNKNOWN_SERVER_ERROR.code(), -1);
    assert_eq!(ErrorCode::OFFSET_OUT_OF_RANGE.code(), 1);
    assert_eq!(ErrorCode::CORRUPT_MESSAGE.code(), 2);
    assert_eq!(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(), 3);
    assert_eq!(ErrorCode::NOT_LEADER_OR_FOLLOWER.code(), 6);
    assert_eq!(ErrorCode::MESSAGE_TOO_LARGE.code(), 10);
    assert_eq!(ErrorCode::UNSUPPORTED_VERSION.code(), 35);
    assert_eq!(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code(), 45);
    assert_eq!(ErrorCode::UNKNOWN_MEMBER_ID.code(), 25);
    assert_eq!(ErrorCode(35).name(), Some("UNSUPPORTED_VERSION"));
    assert_eq!(ErrorCode(-999).name(), None);
    assert_eq!(ErrorCode(3).to_string(), "UNKNOWN_TOPIC_OR_PARTITION(3)");
    let codes: Vec<i16> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
    assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    assert!(codes.len() > 130);
}

#[test]
fn an_api_versions_v0_answer_to_a_newer_request_is_read_as_v0() {
    use crate::api_versions_response::ApiVersion;
    use crate::{ApiVersionsResponse, ErrorCode};
    let v0 = ResponseBody::ApiVersions(ApiVersionsResponse {
        error_code: ErrorCode::UNSUPPORTED_VERSION.code(),
        api_keys: vec![ApiVersion {
            api_key: 18,
            min_version: 0,
            max_version: 3,
        }],
        ..Default::default()
    });
    let frame = flat(&encode_response(11, ApiKey::ApiVersions, 0, &v0));
    let (correlation_id, body) =
        decode_response(ApiKey::ApiVersions, 4, Bytes::from(frame[4..].to_vec()))
            .expect("read as v0");
    assert_eq!(correlation_id, 11);
    assert_eq!(body, v0);
}

/// A fetch response for one partition whose records are `records`.
fn fetch_response_with(records: crate::Records) -> ResponseBody {
    use crate::fetch_response::{FetchableTopicResponse, PartitionData};
    ResponseBody::Fetch(crate::FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "t".into(),
            topic_id: uuid::Uuid::from_u128(7),
            partitions: vec![PartitionData {
                partition_index: 1,
                high_watermark: 40,
                records: Some(records),
                ..Default::default()
            }],
        }],
        ..Default::default()
    })
}

/// Stored batches as the broker holds them: separate allocations, some
/// shorter than the copy threshold.
fn stored_chunks() -> Vec<Bytes> {
    [1000, 17, 300, crate::RECORDS_COPY_THRESHOLD_BYTES, 5, 4096]
        .iter()
        .enumerate()
        .map(|(i, &len)| Bytes::from(vec![u8::try_from(i).expect("few chunks"); len]))
        .collect()
}

#[test]
fn chunked_records_encode_to_the_bytes_of_the_joined_records() {
    let chunks = stored_chunks();
    let joined: Vec<u8> = flat(&chunks);
    for version in versions(ApiKey::Fetch) {
        let chunked = fetch_response_with(crate::Records::from(chunks.clone()));
        let whole = fetch_response_with(crate::Records::from(Bytes::from(joined.clone())));
        let got = flat(&encode_response(3, ApiKey::Fetch, version, &chunked));
        let want = flat(&encode_response(3, ApiKey::Fetch, version, &whole));
        assert_eq!(got, want, "v{version}");
        let (_, back) = decode_response(ApiKey::Fetch, version, Bytes::from(got[4..].to_vec()))
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
        let ResponseBody::Fetch(back) = back else {
            panic!("v{version}: not a fetch response");
        };
        let records = back.responses[0].partitions[0].records.as_ref();
        assert_eq!(
            records.map(|r| flat(r.chunks())),
            Some(joined.clone()),
            "v{version}"
        );
    }
}

#[test]
fn chunked_records_reach_the_output_without_a_copy() {
    let chunks = stored_chunks();
    let body = fetch_response_with(crate::Records::from(chunks.clone()));
    let pieces = encode_response(3, ApiKey::Fetch, 16, &body);
    for chunk in &chunks {
        let shared = pieces
            .iter()
            .any(|p| p.as_ptr_range() == chunk.as_ptr_range());
        let long = chunk.len() >= crate::RECORDS_COPY_THRESHOLD_BYTES;
        assert_eq!(
            shared,
            long,
            "chunk of {} bytes: shared {shared}, expected {long}",
            chunk.len()
        );
    }
    // Every piece outside the stored chunks is the encoder's own buffer:
    // the long chunks were not also copied into it.
    let stored: usize = chunks
        .iter()
        .filter(|c| c.len() >= crate::RECORDS_COPY_THRESHOLD_BYTES)
        .map(Bytes::len)
        .sum();
    let own: usize = pieces
        .iter()
        .filter(|p| !chunks.iter().any(|c| c.as_ptr_range() == p.as_ptr_range()))
        .map(Bytes::len)
        .sum();
    let total: usize = pieces.iter().map(Bytes::len).sum();
    assert_eq!(own + stored, total);
    assert!(own < 17 + 5 + 200, "{own} bytes of fields and short chunks");
}
