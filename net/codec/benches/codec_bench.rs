//! Codec speed: prints ns/op for the hot paths (not a test; no assertions).
//! Run: `cargo bench -p sluice-codec --bench codec_bench`.
//!
//! Reference points measured with the `kafka-protocol` crate (PLATFORM.md):
//! ProduceRequest v9 decode with one 16 KiB batch ~270 ns; FetchResponse v12
//! encode ~590 ns copying, ~240 ns vectored.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sluice_codec::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_codec::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_codec::{
    decode_request, encode_request, encode_response, ApiKey, FetchResponse, ProduceRequest,
    Records, RequestBody, RequestHeader, ResponseBody,
};

const BATCH_BYTES: usize = 16 * 1024;

fn bench(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<52} {ns:>8.1} ns/op");
}

fn batch() -> Bytes {
    Bytes::from(vec![0x5a; BATCH_BYTES])
}

fn produce_frame(version: i16) -> Bytes {
    let header = RequestHeader {
        api_key: ApiKey::Produce.as_i16(),
        api_version: version,
        correlation_id: 7,
        client_id: Some("bench-producer".into()),
    };
    let body = RequestBody::Produce(ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench-topic".into(),
            partition_data: vec![PartitionProduceData {
                index: 3,
                records: Some(batch().into()),
            }],
            ..TopicProduceData::default()
        }],
    });
    // As a broker sees it: one buffer read from the socket, frozen once.
    let mut frame = BytesMut::new();
    for chunk in encode_request(&header, &body) {
        frame.extend_from_slice(&chunk);
    }
    frame.freeze().slice(4..)
}

fn fetch_response() -> ResponseBody {
    fetch_response_of(batch().into())
}

fn fetch_response_of(records: Records) -> ResponseBody {
    ResponseBody::Fetch(FetchResponse {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: 0,
        responses: vec![FetchableTopicResponse {
            topic: "bench-topic".into(),
            partitions: vec![PartitionData {
                partition_index: 3,
                high_watermark: 1_000,
                last_stable_offset: 1_000,
                log_start_offset: 0,
                records: Some(records),
                ..PartitionData::default()
            }],
            ..FetchableTopicResponse::default()
        }],
        ..FetchResponse::default()
    })
}

fn main() {
    let iterations = 1_000_000;
    for version in [9, 3] {
        let frame = produce_frame(version);
        bench(
            &format!("decode_request ProduceRequest v{version}, one 16 KiB batch"),
            iterations,
            || {
                let decoded = decode_request(black_box(frame.clone())).expect("valid frame");
                black_box(decoded);
            },
        );
    }

    let body = fetch_response();
    bench(
        "encode_response FetchResponse v12, vectored",
        iterations,
        || {
            black_box(encode_response(7, ApiKey::Fetch, 12, black_box(&body)));
        },
    );
    bench(
        "encode_response FetchResponse v12, copied flat",
        iterations / 4,
        || {
            let chunks = encode_response(7, ApiKey::Fetch, 12, black_box(&body));
            let mut flat = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in &chunks {
                flat.extend_from_slice(chunk);
            }
            black_box(flat);
        },
    );

    // A fetch of 1 MiB of cached batches: the chunks as they are, against
    // joining them into one buffer first (what the fetch path did before
    // records fields held several chunks).
    for (count, size) in [(1024, 1024), (64, 16 * 1024)] {
        let chunks: Vec<Bytes> = (0..count).map(|_| Bytes::from(vec![0x5a; size])).collect();
        let chunked = fetch_response_of(Records::from(chunks.clone()));
        let kib = size / 1024;
        bench(
            &format!("encode_response Fetch v12, {count} x {kib} KiB chunks"),
            iterations / 100,
            || {
                black_box(encode_response(7, ApiKey::Fetch, 12, black_box(&chunked)));
            },
        );
        bench(
            &format!("encode_response Fetch v12, {count} x {kib} KiB joined"),
            iterations / 100,
            || {
                let mut joined = BytesMut::with_capacity(count * size);
                for chunk in black_box(&chunks) {
                    joined.extend_from_slice(chunk);
                }
                let body = fetch_response_of(joined.freeze().into());
                black_box(encode_response(7, ApiKey::Fetch, 12, &body));
            },
        );
    }

    let header = RequestHeader {
        api_key: ApiKey::Produce.as_i16(),
        api_version: 9,
        correlation_id: 7,
        client_id: Some("bench-producer".into()),
    };
    let (_, body) = decode_request(produce_frame(9)).expect("valid frame");
    bench(
        "encode_request ProduceRequest v9, vectored",
        iterations,
        || {
            black_box(encode_request(&header, black_box(&body)));
        },
    );
}
