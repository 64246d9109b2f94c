//! Bad input against the real broker (ARCHITECTURE promise 5): a malformed
//! frame closes only its own connection, an invalid batch gets its Kafka
//! error code and stores nothing, and no input kills the process.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use common::{batch, produce_request, records_of, Broker, Client, PRODUCE_VERSION};
use sluice_codec::{decode_response, ApiKey, ErrorCode, RequestBody, ResponseBody};

const MAX_REQUEST_BYTES: usize = 1 << 20;

fn size_prefix(size: i32) -> [u8; 4] {
    size.to_be_bytes()
}

/// Sends `bytes` on a fresh connection (then, if `half_close`, shuts down
/// the write side), expects the broker to close it, and checks that the
/// broker still serves a new connection and the `bystander`.
fn refused(
    broker: &mut Broker,
    bystander: &mut Client,
    what: &str,
    bytes: &[u8],
    half_close: bool,
) {
    let mut client = broker.connect();
    // The broker may close before it has read everything: a failed write is
    // part of what is tested, not an error.
    let _ = client.send_raw(bytes);
    if half_close {
        let _ = client.stream.shutdown(std::net::Shutdown::Write);
    }
    client.assert_closed(what);
    broker.assert_serving();
    assert_eq!(
        bystander.api_versions().error_code,
        0,
        "bystander after {what}"
    );
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let max = MAX_REQUEST_BYTES.to_string();
    let mut broker = Broker::start(&["--max-request-bytes", &max]);
    let mut bystander = broker.connect();
    assert_eq!(bystander.api_versions().error_code, 0);

    // Garbage whose first four bytes read as a huge size.
    refused(
        &mut broker,
        &mut bystander,
        "HTTP request",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    );
    // Garbage inside a well-sized frame: an API key nobody knows, then noise.
    let mut garbage = size_prefix(60).to_vec();
    garbage.extend((0..60u8).map(|i| i.wrapping_mul(151).wrapping_add(0x7f)));
    refused(
        &mut broker,
        &mut bystander,
        "garbage frame",
        &garbage,
        false,
    );
    // Truncated: the size says 100, 10 bytes follow, then the client stops sending.
    let mut truncated = size_prefix(100).to_vec();
    truncated.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 7, 0, 0]);
    refused(
        &mut broker,
        &mut bystander,
        "truncated frame",
        &truncated,
        true,
    );
    // A declared size over --max-request-bytes: closed at once, without the
    // broker waiting for (or allocating) the 2 MiB that never come.
    let over = i32::try_from(2 * MAX_REQUEST_BYTES).expect("fits");
    refused(
        &mut broker,
        &mut bystander,
        "2 MiB frame over a 1 MiB limit",
        &size_prefix(over),
        false,
    );
    let just_over = i32::try_from(MAX_REQUEST_BYTES + 1).expect("fits");
    refused(
        &mut broker,
        &mut bystander,
        "frame one byte over the limit",
        &size_prefix(just_over),
        false,
    );
    // Negative sizes.
    for size in [-1, i32::MIN] {
        refused(
            &mut broker,
            &mut bystander,
            &format!("size {size}"),
            &size_prefix(size),
            false,
        );
    }
    // Frames too short for the request header prefix (8 bytes).
    for len in 0..=3u8 {
        let mut frame = size_prefix(i32::from(len)).to_vec();
        frame.extend((0..len).map(|_| 0u8));
        refused(
            &mut broker,
            &mut bystander,
            &format!("{len}-byte frame"),
            &frame,
            false,
        );
    }
    let mut seven = size_prefix(7).to_vec();
    seven.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0]);
    refused(&mut broker, &mut bystander, "7-byte frame", &seven, false);
}

#[test]
fn a_frame_of_exactly_max_request_bytes_is_accepted() {
    let max = MAX_REQUEST_BYTES.to_string();
    let broker = Broker::start(&["--max-request-bytes", &max]);
    let mut client = broker.connect();
    // ApiVersions v3 padded with trailing bytes (which decoding ignores) to
    // exactly the limit.
    let body = RequestBody::ApiVersions(common::api_versions_request());
    let mut frame = common::request_bytes(5, 3, &body);
    frame.resize(4 + MAX_REQUEST_BYTES, 0);
    let size = i32::try_from(MAX_REQUEST_BYTES).expect("fits");
    frame[..4].copy_from_slice(&size.to_be_bytes());
    client.send_raw(&frame).expect("send");
    let (correlation_id, response) = client.recv(ApiKey::ApiVersions, 3);
    assert_eq!(correlation_id, 5);
    let ResponseBody::ApiVersions(r) = response else {
        panic!("not ApiVersions")
    };
    assert_eq!(r.error_code, 0);
}

#[test]
fn unknown_api_keys_and_versions() {
    let mut broker = Broker::start(&[]);
    let mut bystander = broker.connect();

    // API key 9999, otherwise a plausible header.
    let mut unknown = size_prefix(12).to_vec();
    unknown.extend_from_slice(&9999i16.to_be_bytes());
    unknown.extend_from_slice(&[0, 0, 0, 0, 0, 42, 0xff, 0xff, 0, 0]);
    refused(&mut broker, &mut bystander, "API key 9999", &unknown, false);

    // Produce v99: a header Kafka's clients never send.
    let mut produce = size_prefix(12).to_vec();
    produce.extend_from_slice(&[0, 0, 0, 99, 0, 0, 0, 43, 0xff, 0xff, 0, 0]);
    refused(&mut broker, &mut bystander, "Produce v99", &produce, false);

    // Produce v2 (removed by KIP-896, below the supported range).
    let mut old = common::request_bytes(44, 2, &produce_request("t", 0, batch(&[(b"k", b"v")])));
    old[6..8].copy_from_slice(&2i16.to_be_bytes());
    refused(&mut broker, &mut bystander, "Produce v2", &old, false);

    // ApiVersions v99: answered in v0 with UNSUPPORTED_VERSION and the list.
    let mut client = broker.connect();
    let mut frame = size_prefix(12).to_vec();
    frame.extend_from_slice(&[0, 18, 0, 99]);
    frame.extend_from_slice(&0x1234_5678i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0, 0]);
    client.send_raw(&frame).expect("send");
    let answer = client.read_frame().expect("an ApiVersions answer");
    let (correlation_id, body) =
        decode_response(ApiKey::ApiVersions, 0, answer).expect("a v0 ApiVersions response");
    assert_eq!(correlation_id, 0x1234_5678);
    let ResponseBody::ApiVersions(r) = body else {
        panic!("not ApiVersions")
    };
    assert_eq!(r.error_code, ErrorCode::UNSUPPORTED_VERSION.0);
    assert!(
        !r.api_keys.is_empty(),
        "the supported list comes with the error"
    );
    assert!(r.api_keys.iter().any(|k| k.api_key == 18));
    // The connection stays usable: the client retries with a version it shares.
    assert_eq!(client.api_versions().error_code, 0);

    // DescribeQuorum on a single node (no controller quorum): a clear error.
    let body = RequestBody::DescribeQuorum(
        sluice_codec::describe_quorum_request::DescribeQuorumRequest::default(),
    );
    let ResponseBody::DescribeQuorum(r) = client.call(2, &body) else {
        panic!("not DescribeQuorum")
    };
    assert_eq!(r.error_code, ErrorCode::INVALID_REQUEST.0);
    assert!(
        r.error_message
            .as_deref()
            .is_some_and(|m| m.contains("single node")),
        "{:?}",
        r.error_message
    );
    broker.assert_serving();
}

/// Produce errors: the connection stays open, nothing is stored.
#[test]
fn invalid_produce_requests_get_kafka_errors_and_store_nothing() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    client.create_topic("t", 1, &[]);
    client.create_topic("small", 1, &[("max.message.bytes", "1000")]);
    let good = client.produce("t", 0, batch(&[(b"k0", b"v0")]));
    assert_eq!((good.error_code, good.base_offset), (0, 0));
    let good = client.produce("small", 0, batch(&[(b"k0", b"v0")]));
    assert_eq!((good.error_code, good.base_offset), (0, 0));

    let mut expect =
        |topic: &str, partition: i32, records: Option<Bytes>, code: ErrorCode, what: &str| {
            let body = match records {
                Some(r) => produce_request(topic, partition, r),
                None => {
                    let RequestBody::Produce(mut req) =
                        produce_request(topic, partition, Bytes::new())
                    else {
                        unreachable!()
                    };
                    req.topic_data[0].partition_data[0].records = None;
                    RequestBody::Produce(req)
                }
            };
            let ResponseBody::Produce(r) = client.call(PRODUCE_VERSION, &body) else {
                panic!("not a Produce response")
            };
            let p = common::single_produce_answer(r, topic, partition);
            assert_eq!(p.error_code, code.0, "{what}: {:?}", p.error_message);
            assert_eq!(p.base_offset, -1, "{what}");
        };

    // A flipped bit in a record value: the CRC no longer matches.
    let mut corrupt = batch(&[(b"k1", b"value-1")]).to_vec();
    let last = corrupt.len() - 2;
    corrupt[last] ^= 0x01;
    expect(
        "t",
        0,
        Some(corrupt.into()),
        ErrorCode::CORRUPT_MESSAGE,
        "bad CRC",
    );

    // A CRC that is right for a batch whose length field lies.
    let mut short = batch(&[(b"k1", b"value-1")]).to_vec();
    short.truncate(short.len() - 3);
    expect(
        "t",
        0,
        Some(short.into()),
        ErrorCode::CORRUPT_MESSAGE,
        "truncated batch",
    );

    // Not a batch at all.
    expect(
        "t",
        0,
        Some(Bytes::from_static(&[0xab; 80])),
        ErrorCode::CORRUPT_MESSAGE,
        "noise as records",
    );

    // Over the topic's max.message.bytes (1000).
    let big = vec![b'x'; 2000];
    expect(
        "small",
        0,
        Some(batch(&[(b"k", &big)])),
        ErrorCode::MESSAGE_TOO_LARGE,
        "2000-byte batch",
    );

    // Partitions and topics that do not exist.
    for partition in [99, 1, -1] {
        expect(
            "t",
            partition,
            Some(batch(&[(b"k", b"v")])),
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            "missing partition",
        );
    }
    expect(
        "no-such-topic",
        0,
        Some(batch(&[(b"k", b"v")])),
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        "unknown topic",
    );

    // Two batches in one partition's records.
    let two = [batch(&[(b"a", b"1")]), batch(&[(b"b", b"2")])].concat();
    expect(
        "t",
        0,
        Some(two.into()),
        ErrorCode::INVALID_RECORD,
        "two batches",
    );
    // No records at all.
    expect("t", 0, None, ErrorCode::INVALID_RECORD, "null records");

    // Nothing of the above was stored.
    for topic in ["t", "small"] {
        assert_eq!(client.latest_offset(topic, 0), 1, "{topic}");
        assert!(
            records_of(&client.fetch(topic, 0, 1).records).is_empty(),
            "{topic}"
        );
        let all = records_of(&client.fetch(topic, 0, 0).records);
        assert_eq!(all, vec![(0, b"k0".to_vec(), b"v0".to_vec())], "{topic}");
    }
    // The topic still takes good batches, at the next offset.
    let next = client.produce("t", 0, batch(&[(b"k1", b"v1")]));
    assert_eq!((next.error_code, next.base_offset), (0, 1));
    broker.assert_serving();
}

/// The request that aborts a process decoding with the `kafka-protocol`
/// crate (a 2^31 array length sizes a `Vec`): here it closes the connection.
#[test]
fn huge_array_lengths_close_the_connection() {
    let mut broker = Broker::start(&[]);
    let mut bystander = broker.connect();
    let mut frames: Vec<(&str, Vec<u8>)> = Vec::new();
    // The 12-byte form: a count right after the correlation id.
    frames.push((
        "12-byte Produce",
        vec![0, 0, 0, 3, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff],
    ));
    // Produce v3 with a topic array of 2^31 - 1 and of -2^31.
    let mut v3 = vec![
        0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30,
    ];
    v3.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    frames.push(("Produce v3, 2^31-1 topics", v3.clone()));
    let n = v3.len();
    v3[n - 4..].copy_from_slice(&[0x80, 0, 0, 0]);
    frames.push(("Produce v3, -2^31 topics", v3));
    // Produce v9 (flexible) with a varint count of 2^31.
    let mut v9 = vec![
        0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0x75, 0x30,
    ];
    v9.extend_from_slice(&[0x81, 0x80, 0x80, 0x80, 0x08]);
    frames.push(("Produce v9, 2^31 topics", v9));
    // Metadata v4 whose client id claims 32767 bytes.
    frames.push((
        "Metadata v4, long client id",
        vec![0, 3, 0, 4, 0, 0, 0, 1, 0x7f, 0xff, b'a'],
    ));
    // Produce v3 whose records claim 2^31 - 1 bytes.
    let mut records = vec![
        0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30,
    ];
    records.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0]);
    records.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    frames.push(("Produce v3, 2 GiB records", records));
    for (what, body) in frames {
        let mut frame = size_prefix(i32::try_from(body.len()).expect("small")).to_vec();
        frame.extend_from_slice(&body);
        refused(&mut broker, &mut bystander, what, &frame, false);
    }
}

#[test]
fn mutated_requests_never_kill_the_broker() {
    fuzz_broker("1", Duration::from_secs(4));
}

/// The same with two shards, so mutated requests also cross cores.
#[test]
fn mutated_requests_never_kill_a_two_shard_broker() {
    fuzz_broker("2", Duration::from_secs(3));
}

/// Random mutations of valid frames of every advertised API and version,
/// one to three per fresh connection, for `duration`: the broker never dies.
fn fuzz_broker(shards: &str, duration: Duration) {
    let max = MAX_REQUEST_BYTES.to_string();
    let mut broker = Broker::start(&["--max-request-bytes", &max, "--shards", shards]);
    let mut client = broker.connect();
    client.create_topic("fuzz", 2, &[]);
    assert_eq!(
        client.produce("fuzz", 0, batch(&[(b"k", b"v")])).error_code,
        0
    );
    let advertised = client.api_versions().api_keys;
    let seeds = fuzz::seeds(&advertised);
    for key in &advertised {
        assert!(
            seeds.iter().any(|s| s.api_key == key.api_key),
            "no valid frame for advertised API key {}",
            key.api_key
        );
    }
    // SLUICE_FUZZ_SEED replays a run (the same frames, as many as fit in the time).
    let seed = std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(fuzz::seed_from_clock);
    eprintln!(
        "{shards} shard(s): fuzz seed {seed} ({} frames of {} APIs)",
        seeds.len(),
        advertised.len()
    );
    let mut rng = fuzz::Rng(seed);
    let deadline = std::time::Instant::now() + duration;
    let mut sent = 0u32;
    let (mut answered, mut closed) = (0u32, 0u32);
    // Frames sent since the broker last proved it still answers.
    let mut recent: Vec<Vec<u8>> = Vec::new();
    let mut connections = 0u32;
    while std::time::Instant::now() < deadline {
        let frames = 1 + rng.below(3);
        let mut conn = broker.connect();
        conn.set_timeout(Duration::from_millis(100));
        for _ in 0..frames {
            let frame = fuzz::mutate(&seeds[rng.below(seeds.len())].frame, &mut rng);
            let failed = conn.send_raw(&frame).is_err();
            recent.push(frame);
            if failed {
                break;
            }
            sent += 1;
        }
        // Read whatever comes back (an answer, a close, or nothing yet).
        match conn.read_frame() {
            Ok(_) => answered += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => closed += 1,
        }
        drop(conn);
        connections += 1;
        if connections % PROBE_EVERY_CONNECTIONS == 0 {
            probe(&mut broker, seed, &mut recent);
        }
    }
    probe(&mut broker, seed, &mut recent);
    eprintln!("sent {sent} mutated frames: {answered} connections answered, {closed} closed");
    // The mutations must reach the handlers, not only the framing.
    assert!(
        answered > 0 && closed > 0,
        "answered {answered}, closed {closed}"
    );
    // Still a working broker, not just a live process.
    let mut client = broker.connect();
    client.create_topic("after-fuzz", 1, &[]);
    let p = client.produce("after-fuzz", 0, batch(&[(b"k", b"v")]));
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    assert_eq!(
        records_of(&client.fetch("after-fuzz", 0, 0).records).len(),
        1
    );
}

/// Fuzz connections between two checks that the broker still answers.
const PROBE_EVERY_CONNECTIONS: u32 = 50;

/// The broker is alive and answers a new connection within a few seconds;
/// if not, the frames sent since the last probe are printed (hex, one per
/// line) to replay the culprit.
fn probe(broker: &mut Broker, seed: u64, recent: &mut Vec<Vec<u8>>) {
    let dump = |recent: &[Vec<u8>]| {
        let lines: Vec<String> = recent
            .iter()
            .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        lines.join("\n")
    };
    assert!(
        broker.is_running(),
        "sluice died (fuzz seed {seed}); frames since the last probe:\n{}",
        dump(recent)
    );
    let mut client = broker.connect();
    client.set_timeout(Duration::from_secs(5));
    let body = RequestBody::ApiVersions(common::api_versions_request());
    let answered = client
        .send_raw(&common::request_bytes(1, 3, &body))
        .and_then(|()| client.read_frame())
        .is_ok();
    if !answered {
        if let Some(hold_s) = std::env::var("SLUICE_FUZZ_HOLD_S")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            // For a debugger: keep the hung broker for a while.
            eprintln!("hung broker pid {}, held {hold_s} s", broker.pid());
            std::thread::sleep(Duration::from_secs(hold_s));
        }
    }
    assert!(
        answered,
        "sluice stopped answering (fuzz seed {seed}); frames since the last probe:\n{}",
        dump(recent)
    );
    recent.clear();
}

mod fuzz {
    use bytes::Bytes;
    use sluice_codec::api_versions_response::ApiVersion;
    use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use sluice_codec::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    };
    use sluice_codec::metadata_request::{MetadataRequest, MetadataRequestTopic};
    use sluice_codec::{
        decode_request, encode_request, ApiKey, Encoder, RequestBody, RequestHeader,
    };

    use crate::common::{batch, produce_request};

    pub struct Seed {
        pub api_key: i16,
        /// A valid request frame, size prefix included.
        pub frame: Vec<u8>,
    }

    fn header(api_key: ApiKey, version: i16) -> RequestHeader {
        RequestHeader {
            api_key: api_key.as_i16(),
            api_version: version,
            correlation_id: 7,
            client_id: Some("fuzz".into()),
        }
    }

    /// A request the codec accepts, built from a header and filler bytes
    /// (zeros read as empty strings and arrays in non-flexible versions,
    /// ones as empty compact ones in flexible versions) and re-encoded: a
    /// valid frame for any API, including ones added after this test.
    fn filler_request(api_key: ApiKey, version: i16) -> Option<Vec<u8>> {
        let header = header(api_key, version);
        for fill in [0u8, 1] {
            let mut enc = Encoder::new();
            header.encode(&mut enc, api_key.request_header_version(version));
            let mut frame = enc.finish_flat().to_vec();
            frame.resize(frame.len() + 256, fill);
            if let Ok((header, body)) = decode_request(Bytes::from(frame)) {
                return Some(encode_request(&header, &body).concat());
            }
        }
        None
    }

    /// Requests with content that reaches past the first checks.
    fn rich_request(api_key: ApiKey) -> Option<RequestBody> {
        Some(match api_key {
            ApiKey::Produce => {
                produce_request("fuzz", 0, batch(&[(b"key", b"value"), (b"k2", b"v2")]))
            }
            ApiKey::Fetch => RequestBody::Fetch(FetchRequest {
                max_wait_ms: 50,
                topics: vec![FetchTopic {
                    topic: "fuzz".into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        partition_max_bytes: 1 << 20,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ApiKey::ListOffsets => RequestBody::ListOffsets(ListOffsetsRequest {
                replica_id: -1,
                topics: vec![ListOffsetsTopic {
                    name: "fuzz".into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: 0,
                        current_leader_epoch: -1,
                        timestamp: -2,
                    }],
                }],
                ..Default::default()
            }),
            ApiKey::Metadata => RequestBody::Metadata(MetadataRequest {
                topics: Some(vec![MetadataRequestTopic {
                    name: Some("fuzz".into()),
                    ..Default::default()
                }]),
                allow_auto_topic_creation: false,
                ..Default::default()
            }),
            _ => return None,
        })
    }

    pub fn seeds(advertised: &[ApiVersion]) -> Vec<Seed> {
        let mut seeds = Vec::new();
        for av in advertised {
            let Some(api_key) = ApiKey::from_i16(av.api_key) else {
                continue;
            };
            for version in av.min_version..=av.max_version {
                if let Some(frame) = filler_request(api_key, version) {
                    seeds.push(Seed {
                        api_key: av.api_key,
                        frame,
                    });
                }
                if let Some(body) = rich_request(api_key) {
                    let frame = encode_request(&header(api_key, version), &body).concat();
                    seeds.push(Seed {
                        api_key: av.api_key,
                        frame,
                    });
                }
            }
        }
        seeds
    }

    pub fn seed_from_clock() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        (nanos as u64) | 1
    }

    /// xorshift64*: enough randomness for mutations, reproducible by seed.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const INTERESTING: &[u8] = &[0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe];

    /// One to four mutations of `frame` past its size prefix (and, rarely,
    /// of the prefix); the prefix is then fixed to the new length unless it
    /// was the thing mutated.
    pub fn mutate(frame: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut out = frame.to_vec();
        // Mostly leave the 8-byte request header prefix alone, so the
        // mutations reach the API's decoder and handler.
        let body_start = if rng.below(8) == 0 {
            4
        } else {
            12.min(out.len())
        };
        for _ in 0..1 + rng.below(4) {
            let len = out.len();
            let at = body_start + rng.below(len.saturating_sub(body_start).max(1));
            match rng.below(7) {
                0 if at < len => out[at] ^= 1 << rng.below(8),
                1 if at < len => out[at] = INTERESTING[rng.below(INTERESTING.len())],
                2 if at + 4 <= len => {
                    let v: [u8; 4] = match rng.below(4) {
                        0 => [0x7f, 0xff, 0xff, 0xff],
                        1 => [0x80, 0, 0, 0],
                        2 => [0xff, 0xff, 0xff, 0xff],
                        _ => (rng.next() as u32).to_be_bytes(),
                    };
                    out[at..at + 4].copy_from_slice(&v);
                }
                3 => out.truncate(at.max(4)),
                4 => {
                    let n = 1 + rng.below(16);
                    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    let at = at.min(out.len());
                    out.splice(at..at, bytes);
                }
                5 if at < len => {
                    let end = (at + 1 + rng.below(8)).min(len);
                    out.drain(at..end);
                }
                _ => {
                    let at = at.min(len.saturating_sub(1));
                    if at < len {
                        out[at] = rng.next() as u8;
                    }
                }
            }
        }
        let size = (out.len() - 4) as i32;
        if rng.below(16) != 0 || out.len() < 4 {
            out.resize(out.len().max(4), 0);
            let size = (out.len() - 4) as i32;
            out[..4].copy_from_slice(&size.to_be_bytes());
        } else if rng.below(2) == 0 {
            out[..4].copy_from_slice(&(size + 1 - rng.below(3) as i32).to_be_bytes());
        }
        out
    }
}

/// Member metadata past the broker's limit (1 MiB per protocol) is refused
/// with MESSAGE_TOO_LARGE and not kept: the group has no member afterwards,
/// and a member of normal size joins it.
#[test]
fn oversized_member_metadata_is_refused_not_kept() {
    use sluice_codec::describe_groups_request::DescribeGroupsRequest;
    use sluice_codec::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};

    let mut broker = Broker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    let mut client = broker.connect();
    let join = |client: &mut Client, metadata: Bytes| {
        let body = RequestBody::JoinGroup(JoinGroupRequest {
            group_id: "big".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            member_id: String::new(),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata,
            }],
            ..Default::default()
        });
        // v3: a new member joins at once, without MEMBER_ID_REQUIRED.
        let ResponseBody::JoinGroup(r) = client.call(3, &body) else {
            panic!("not a JoinGroup response")
        };
        r
    };
    let members = |client: &mut Client| {
        let body = RequestBody::DescribeGroups(DescribeGroupsRequest {
            groups: vec!["big".into()],
            include_authorized_operations: false,
        });
        let ResponseBody::DescribeGroups(r) = client.call(5, &body) else {
            panic!("not a DescribeGroups response")
        };
        r.groups[0].members.len()
    };
    // Wait until the coordinator has loaded (a fresh broker creates
    // __consumer_offsets at start).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = join(&mut client, Bytes::from(vec![0u8; (1 << 20) + 1]));
        if r.error_code != ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.0
            && r.error_code != ErrorCode::COORDINATOR_NOT_AVAILABLE.0
            || std::time::Instant::now() > deadline
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.error_code, ErrorCode::MESSAGE_TOO_LARGE.0, "{r:?}");
    assert_eq!(members(&mut client), 0, "refused metadata is not kept");
    let ok = join(&mut client, Bytes::from(vec![0u8; 1 << 20]));
    assert_eq!(ok.error_code, 0, "metadata at the limit is accepted");
    assert_eq!(members(&mut client), 1);
    broker.assert_serving();
}
