//! Fuzzing with proptest (cargo-fuzz needs nightly): random bytes and
//! mutated valid frames for every API key and version go into
//! `decode_request` and `decode_response`, which must return, never panic.
//! Whatever decodes must re-encode stably.

use std::sync::OnceLock;

use bytes::Bytes;
use proptest::prelude::*;

use crate::{
    decode_request, decode_response, encode_request, encode_response, ApiKey, Encoder, RequestBody,
    RequestHeader, ResponseBody,
};

/// The byte the generated samples fill `records` values with.
const RECORDS_FILL_BYTE: u8 = 0x5a;

struct Sample {
    api_key: ApiKey,
    version: i16,
    /// Request frame without its size prefix.
    request: Bytes,
    /// Response frame without its size prefix.
    response: Bytes,
}

fn flat_without_prefix(chunks: &[Bytes]) -> Bytes {
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    Bytes::from(all[4..].to_vec())
}

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut out = Vec::new();
        for &api_key in ApiKey::ALL {
            let Some((lo, hi)) = api_key.valid_versions() else {
                continue;
            };
            for version in lo..=hi {
                let header = RequestHeader {
                    api_key: api_key.as_i16(),
                    api_version: version,
                    correlation_id: 9,
                    client_id: Some("fuzz".into()),
                };
                let request = RequestBody::populated(api_key, version).expect("has versions");
                let response = ResponseBody::populated(api_key, version).expect("has versions");
                out.push(Sample {
                    api_key,
                    version,
                    request: flat_without_prefix(&encode_request(&header, &request)),
                    response: flat_without_prefix(&encode_response(9, api_key, version, &response)),
                });
            }
        }
        out
    })
}

fn encode_body_request(body: &RequestBody, version: i16) -> Bytes {
    let mut enc = Encoder::new();
    body.encode(&mut enc, version);
    enc.finish_flat()
}

fn encode_body_response(body: &ResponseBody, version: i16) -> Bytes {
    let mut enc = Encoder::new();
    body.encode(&mut enc, version);
    enc.finish_flat()
}

/// Decodes a possibly hostile request frame; if it decodes, encoding the
/// result and decoding that must give the same encoding again.
fn check_request(frame: Bytes) {
    if let Ok((header, body)) = decode_request(frame) {
        let version = header.api_version;
        let once = encode_body_request(&body, version);
        let again = decode_request(flat_without_prefix(&encode_request(&header, &body)))
            .expect("re-encoded request decodes");
        assert_eq!(encode_body_request(&again.1, version), once);
    }
}

fn check_response(api_key: ApiKey, version: i16, frame: Bytes) {
    if let Ok((correlation_id, body)) = decode_response(api_key, version, frame) {
        let once = encode_body_response(&body, version);
        let frame = flat_without_prefix(&encode_response(correlation_id, api_key, version, &body));
        let again = decode_response(api_key, version, frame).expect("re-encoded response decodes");
        assert_eq!(encode_body_response(&again.1, version), once);
    }
}

/// A mutation of a frame: overwrite, insert or delete one byte, or truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(frame: &Bytes, mutations: &[Mutation]) -> Bytes {
    let mut bytes = frame.to_vec();
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Set(at, b) if len > 0 => bytes[at % len] = b,
            Mutation::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Mutation::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    Bytes::from(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_request(Bytes::from(bytes.clone()));
        let sample = &samples()[bytes.len() % samples().len()];
        check_response(sample.api_key, sample.version, Bytes::from(bytes));
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(
        index in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let sample = &samples()[index % samples().len()];
        // Keep a well-formed request header (14 bytes: key, version,
        // correlation id, the 4-byte client id) and randomise the rest.
        let mut frame = sample.request[..14].to_vec();
        if sample.api_key.request_header_version(sample.version) == 2 {
            frame.push(0);
        }
        frame.extend_from_slice(&tail);
        check_request(Bytes::from(frame));
        let mut frame = sample.response[..4].to_vec();
        if sample.api_key.response_header_version(sample.version) == 1 {
            frame.push(0);
        }
        frame.extend_from_slice(&tail);
        check_response(sample.api_key, sample.version, Bytes::from(frame));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        index in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let sample = &samples()[index % samples().len()];
        check_request(mutate(&sample.request, &mutations));
        check_response(sample.api_key, sample.version, mutate(&sample.response, &mutations));
    }
}

#[test]
fn every_sample_mutated_at_every_byte_never_panics() {
    // Exhaustive single-byte corruption, so that no API or version depends on
    // proptest's luck. 0xff turns a length into a huge or null one, 0x80 a
    // varint into an unfinished one. Decode only: the stability check above
    // would triple the cost.
    for sample in samples() {
        for (is_request, frame) in [(true, &sample.request), (false, &sample.response)] {
            for at in 0..frame.len() {
                // The samples' record payloads are runs of one byte, opaque
                // to the codec: corrupting them tells nothing and costs time.
                if frame[at] == RECORDS_FILL_BYTE {
                    continue;
                }
                for b in [0x80, 0xff] {
                    let mutated = mutate(frame, &[Mutation::Set(at, b)]);
                    if is_request {
                        let _ = decode_request(mutated);
                    } else {
                        let _ = decode_response(sample.api_key, sample.version, mutated);
                    }
                }
            }
        }
    }
}
