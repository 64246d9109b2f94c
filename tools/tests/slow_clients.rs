//! Clients that stall (ARCHITECTURE promise 6): a client that never reads
//! its responses, or never finishes a frame, costs bounded memory and does
//! not hold up anyone else on the same shard.

mod common;

use std::time::Duration;

use common::{batch, records_of, Broker};
use sluice_codec::RequestBody;

/// Each stalled request is padded to this size, so the socket buffers fill
/// after a few thousand of them.
const PADDED_REQUEST_BYTES: usize = 4096;
/// Far more requests than socket buffers and the in-flight limit can take.
const MAX_STALLED_REQUESTS: usize = 100_000;
/// What the broker's resident memory may grow by while a client stalls.
const RSS_GROWTH_LIMIT_BYTES: u64 = 64 << 20;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

#[test]
fn a_client_that_never_reads_is_stopped_and_others_go_on() {
    let mut broker = Broker::start(&[]);
    let mut other = broker.connect();
    other.create_topic("t", 1, &[]);
    let rss_before = rss_bytes(broker.pid());

    let mut stalled = broker.connect();
    stalled.set_timeout(Duration::from_millis(500));
    let body = RequestBody::ApiVersions(common::api_versions_request());
    let mut request = common::request_bytes(1, 3, &body);
    request.resize(4 + PADDED_REQUEST_BYTES, 0);
    let size = i32::try_from(PADDED_REQUEST_BYTES).expect("small");
    request[..4].copy_from_slice(&size.to_be_bytes());
    let mut sent = 0;
    while sent < MAX_STALLED_REQUESTS && stalled.send_raw(&request).is_ok() {
        sent += 1;
    }
    assert!(
        sent < MAX_STALLED_REQUESTS,
        "the broker read {sent} requests of {PADDED_REQUEST_BYTES} bytes without their responses being read"
    );

    // The same shard still serves everyone else.
    for i in 0..20 {
        let key = format!("k{i}").into_bytes();
        let answer = other.produce("t", 0, batch(&[(&key, b"v")]));
        assert_eq!((answer.error_code, answer.base_offset), (0, i));
    }
    assert_eq!(records_of(&other.fetch("t", 0, 0).records).len(), 20);
    broker.assert_serving();
    let growth = rss_bytes(broker.pid()).saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_LIMIT_BYTES,
        "resident memory grew by {growth} bytes while one client stalled ({sent} requests sent)"
    );
    drop(stalled);
    broker.assert_serving();
}

#[test]
fn a_half_sent_frame_does_not_hold_up_other_connections() {
    let mut broker = Broker::start(&[]);
    let mut slow = broker.connect();
    // A frame that announces 1000 bytes and delivers 10.
    let mut partial = 1000i32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 0]);
    slow.send_raw(&partial).expect("send");
    let mut other = broker.connect();
    other.create_topic("t", 1, &[]);
    for i in 0..10 {
        let answer = other.produce("t", 0, batch(&[(b"k", b"v")]));
        assert_eq!((answer.error_code, answer.base_offset), (0, i));
    }
    broker.assert_serving();
    drop(slow);
    broker.assert_serving();
}
