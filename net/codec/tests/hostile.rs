//! Hostile frames: tiny, and with length prefixes far beyond the frame. The
//! decoder must refuse them before allocating, so this test binary counts
//! the largest single allocation made while decoding.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_codec::{
    decode_request, decode_request_header_prefix, decode_response, ApiKey, DecodeError,
};

struct Counting;

thread_local! {
    static LARGEST_ALLOCATION_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST_ALLOCATION_BYTES.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Largest single allocation made by `f` on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION_BYTES.with(|l| l.set(0));
    let out = f();
    (out, LARGEST_ALLOCATION_BYTES.with(Cell::get))
}

/// No decode of these frames may allocate more than this.
const ALLOCATION_LIMIT_BYTES: usize = 1024;
const DECODE_TIME_LIMIT: Duration = Duration::from_secs(1);

fn assert_refused_cheaply(frame: &[u8]) -> DecodeError {
    let frame = Bytes::copy_from_slice(frame);
    let start = Instant::now();
    let (result, largest) = largest_allocation(|| decode_request(frame.clone()));
    assert!(start.elapsed() < DECODE_TIME_LIMIT);
    assert!(
        largest <= ALLOCATION_LIMIT_BYTES,
        "allocated {largest} bytes for a {}-byte frame",
        frame.len()
    );
    result.expect_err("hostile frame decoded")
}

#[test]
fn twelve_byte_produce_with_a_two_gib_array_is_refused() {
    // Produce v3: header (key 0, version 3, correlation id, null client id),
    // then a topic array count of 2^31 - 1 where the body should begin.
    let mut frame = vec![0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff];
    frame.extend_from_slice(&[0xff, 0xff]); // null transactional id
    frame.extend_from_slice(&[0, 1, 0, 0, 0x75, 0x30]); // acks, timeout
    frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]); // topics: 2^31 - 1
    assert!(matches!(
        assert_refused_cheaply(&frame),
        DecodeError::InvalidLength { .. }
    ));
    // The same count as an i32 with the top bit set is negative: refused.
    let n = frame.len();
    frame[n - 4..].copy_from_slice(&[0x80, 0, 0, 0]);
    assert!(matches!(
        assert_refused_cheaply(&frame),
        DecodeError::InvalidLength { .. }
    ));
    // Flexible (v9): a compact array length of 2^31 as a varint, and the
    // largest varint.
    for count in [
        [0x81, 0x80, 0x80, 0x80, 0x08],
        [0xff, 0xff, 0xff, 0xff, 0x0f],
    ] {
        let mut frame = vec![0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0]; // header v2
        frame.extend_from_slice(&[0]); // null transactional id
        frame.extend_from_slice(&[0, 1, 0, 0, 0x75, 0x30]);
        frame.extend_from_slice(&count);
        assert!(matches!(
            assert_refused_cheaply(&frame),
            DecodeError::InvalidLength { .. }
        ));
    }
    // The 12-byte form: header v0 layout read as Produce with a count right
    // after the correlation id.
    let frame = [0, 0, 0, 3, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff];
    assert_refused_cheaply(&frame);
}

#[test]
fn huge_string_and_bytes_lengths_are_refused() {
    // Metadata v4 with a client id claiming 32767 bytes.
    let frame = [0, 3, 0, 4, 0, 0, 0, 1, 0x7f, 0xff, b'a'];
    assert!(matches!(
        assert_refused_cheaply(&frame),
        DecodeError::InvalidLength { .. }
    ));
    // Produce v3 whose records claim 2^31 - 1 bytes.
    let mut frame = vec![
        0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30,
    ];
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0]);
    frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(matches!(
        assert_refused_cheaply(&frame),
        DecodeError::InvalidLength { .. }
    ));
}

#[test]
fn frames_shorter_than_the_header_prefix_are_errors() {
    for len in 0..=7 {
        let frame = vec![0u8; len];
        assert!(decode_request_header_prefix(&Bytes::from(frame.clone())).is_err());
        assert!(matches!(
            assert_refused_cheaply(&frame),
            DecodeError::Truncated { .. }
        ));
        for &api_key in ApiKey::ALL {
            if let Some((_, hi)) = api_key.valid_versions() {
                assert!(decode_response(api_key, hi, Bytes::from(frame.clone())).is_err());
            }
        }
    }
}

#[test]
fn unknown_keys_and_versions_keep_the_correlation_id() {
    let frame = Bytes::from_static(&[0x7f, 0x00, 0, 1, 0, 0, 0, 42]);
    assert_eq!(decode_request_header_prefix(&frame), Ok((0x7f00, 1, 42)));
    assert_eq!(
        decode_request(frame),
        Err(DecodeError::UnknownApiKey(0x7f00))
    );
    // ApiVersions v99: the prefix still reads, the body is refused.
    let frame = Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 43, 0xff, 0xff]);
    assert_eq!(decode_request_header_prefix(&frame), Ok((18, 99, 43)));
    assert_eq!(
        decode_request(frame),
        Err(DecodeError::UnsupportedVersion {
            api_key: 18,
            version: 99
        })
    );
    // A removed API (LeaderAndIsr) has no decodable version.
    let frame = Bytes::from_static(&[0, 4, 0, 0, 0, 0, 0, 44, 0xff, 0xff]);
    assert!(matches!(
        decode_request(frame),
        Err(DecodeError::UnsupportedVersion { api_key: 4, .. })
    ));
}

#[test]
fn the_allocation_counter_sees_allocations() {
    let (v, largest) = largest_allocation(|| vec![0u8; 4096]);
    assert_eq!(v.len(), 4096);
    assert!(largest >= 4096);
}
