//! Decompression bombs: small payloads that expand far past the limit must
//! stop at the limit, quickly, with memory bounded by it.

mod common;

use std::io::Write;

use common::{fix_crc, sample};
use sluice_records::{
    decompress_records, validate, visit_records, BatchError, BatchHeader, Compression,
    ValidateOptions, HEADER_LEN,
};

const LIMIT: usize = 256 * 1024;
/// Each bomb expands to this many bytes: 256 times the limit.
const EXPANDED: usize = 64 * 1024 * 1024;
/// One compressed unit is this much output; bombs repeat the unit.
const UNIT: usize = 1024 * 1024;

/// The records region of a one-record batch whose value is `n` zero bytes.
fn one_record(value_len: usize) -> Vec<u8> {
    let mut b = sluice_records::BatchBuilder::new(Compression::None);
    b.push(0, Some(b"k"), Some(&vec![0u8; value_len]), &[]);
    b.build()[HEADER_LEN..].to_vec()
}

/// A CRC-valid batch around an arbitrary (compressed) payload.
fn wrap(codec: Compression, payload: &[u8], record_count: i32) -> Vec<u8> {
    let mut batch = vec![0u8; HEADER_LEN];
    batch.extend_from_slice(payload);
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (batch.len() - 12) as i32,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: i16::from(codec.id()),
        last_offset_delta: record_count - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count,
    };
    h.write(&mut batch).unwrap();
    fix_crc(&mut batch);
    batch
}

/// `unit` (about UNIT bytes) compressed once, repeated until it expands to
/// EXPANDED: concatenated gzip members / zstd frames / lz4 frames, or
/// repeated xerial blocks for snappy.
fn bomb_payload(codec: Compression, unit: &[u8]) -> Vec<u8> {
    let copies = EXPANDED / unit.len();
    match codec {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(unit).unwrap();
            e.finish().unwrap().repeat(copies)
        }
        Compression::Zstd => zstd::bulk::compress(unit, 1).unwrap().repeat(copies),
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(unit).unwrap();
            e.finish().unwrap().repeat(copies)
        }
        Compression::Snappy => {
            let mut framed = Vec::new();
            for chunk in unit.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
                framed.extend_from_slice(&block);
            }
            let mut out = b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01".to_vec();
            out.extend_from_slice(&framed.repeat(copies));
            out
        }
        Compression::None => unreachable!(),
    }
}

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn stream_of_zeros_stops_at_the_limit() {
    let zeros = vec![0u8; UNIT];
    for codec in CODECS {
        let payload = bomb_payload(codec, &zeros);
        // Snappy cannot beat ~21:1; the others reach far more.
        assert!(payload.len() < EXPANDED / 16, "{codec:?} bomb is small");
        let batch = wrap(codec, &payload, 1);
        let mut out = Vec::new();
        let err = decompress_records(&batch, LIMIT, &mut out).unwrap_err();
        assert_eq!(
            err,
            BatchError::DecompressionLimit { limit: LIMIT },
            "{codec:?}"
        );
        assert!(
            out.capacity() <= LIMIT,
            "{codec:?}: buffered {}",
            out.capacity()
        );
        assert_eq!(err.kind(), sluice_records::BatchErrorKind::TooLarge);
    }
}

#[test]
fn stream_of_valid_records_stops_at_the_limit() {
    // ~1 KiB records, repeated: every record parses, the total does not fit.
    let rec = one_record(1000);
    let unit = rec.repeat(UNIT / rec.len());
    for codec in CODECS {
        let batch = wrap(codec, &bomb_payload(codec, &unit), i32::MAX);
        let mut scratch = Vec::new();
        let mut seen = 0u32;
        let err = visit_records(&batch, LIMIT, &mut scratch, |_, r| {
            assert_eq!(r.key, Some(&b"k"[..]));
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(
            err,
            BatchError::DecompressionLimit { limit: LIMIT },
            "{codec:?}"
        );
        assert!(
            seen > 0 && (seen as usize) <= LIMIT / 1000,
            "{codec:?}: {seen}"
        );
        assert!(
            scratch.capacity() <= 64 * 1024,
            "{codec:?}: {}",
            scratch.capacity()
        );
    }
}

#[test]
fn a_record_declared_past_the_limit_is_refused_before_buffering() {
    // One record whose value is 4 MiB of zeros, limit 256 KiB: validate on a
    // compacted topic must refuse it without holding the record.
    let rec = one_record(4 * 1024 * 1024);
    for codec in CODECS {
        let mut payload = Vec::new();
        sluice_test_compress(codec, &rec, &mut payload);
        let batch = wrap(codec, &payload, 1);
        let opts = ValidateOptions {
            require_keys: true,
            max_decompressed_bytes: LIMIT,
            ..ValidateOptions::default()
        };
        let err = validate(&batch, &opts).unwrap_err();
        assert_eq!(
            err,
            BatchError::DecompressionLimit { limit: LIMIT },
            "{codec:?}"
        );
        // Without require_keys the compressed payload is not opened at all.
        let opts = ValidateOptions {
            max_decompressed_bytes: LIMIT,
            ..ValidateOptions::default()
        };
        validate(&batch, &opts).unwrap();
    }
}

fn sluice_test_compress(codec: Compression, src: &[u8], out: &mut Vec<u8>) {
    // Compress through the builder's codecs by building a one-off batch is
    // not possible for arbitrary bytes, so use the codec crates directly.
    match codec {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            e.write_all(src).unwrap();
            e.finish().unwrap();
        }
        Compression::Zstd => out.extend_from_slice(&zstd::bulk::compress(src, 1).unwrap()),
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(out);
            e.write_all(src).unwrap();
            e.finish().unwrap();
        }
        Compression::Snappy => {
            // Raw snappy: one block whose header declares the whole size.
            out.extend_from_slice(&snap::raw::Encoder::new().compress_vec(src).unwrap());
        }
        Compression::None => unreachable!(),
    }
}

#[test]
fn raw_snappy_declaring_a_huge_size_is_refused_up_front() {
    // A raw snappy block's header is the uncompressed length as a varint:
    // claim 3.75 GiB and give nothing.
    let payload = [0x80, 0x80, 0x80, 0x80, 0x0f, 0x00];
    let batch = wrap(Compression::Snappy, &payload, 1);
    let mut out = Vec::new();
    assert_eq!(
        decompress_records(&batch, LIMIT, &mut out),
        Err(BatchError::DecompressionLimit { limit: LIMIT })
    );
}

#[test]
fn zstd_frame_demanding_a_huge_window_is_refused() {
    // Frame header: magic, FHD 0 (no single segment, no size), window
    // descriptor for a 2 GiB window, then a last raw block of one byte.
    let payload = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x09, 0x00, 0x00, b'x'];
    let batch = wrap(Compression::Zstd, &payload, 1);
    let mut out = Vec::new();
    assert!(matches!(
        decompress_records(&batch, LIMIT, &mut out),
        Err(BatchError::Decompression(_))
    ));
}

#[test]
fn output_exactly_at_the_limit_is_accepted() {
    for codec in CODECS {
        let built = sample(codec, 20, 50);
        let mut out = Vec::new();
        decompress_records(&built, 1 << 20, &mut out).unwrap();
        let exact = out.len();
        let mut again = Vec::new();
        decompress_records(&built, exact, &mut again).unwrap();
        assert_eq!(again, out, "{codec:?}");
        assert_eq!(
            decompress_records(&built, exact - 1, &mut again),
            Err(BatchError::DecompressionLimit { limit: exact - 1 }),
            "{codec:?}"
        );
        let mut scratch = Vec::new();
        visit_records(&built, exact, &mut scratch, |_, _| Ok(())).unwrap();
        assert!(visit_records(&built, exact - 1, &mut scratch, |_, _| Ok(())).is_err());
    }
}
