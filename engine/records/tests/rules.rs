//! The validation rules one by one, the broker's in-place rewrites, and the
//! error classes.

mod common;

use common::{fix_crc, sample};
use sluice_records::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, validate, visit_records,
    BatchBuilder, BatchError, BatchErrorKind, BatchHeader, Compression, RecordIter, TimestampType,
    ValidateOptions, HEADER_LEN,
};

fn opts() -> ValidateOptions {
    ValidateOptions::default()
}

/// Three small records with equal timestamps, so record i starts with
/// [len][attr][ts delta 0][offset delta] at fixed single-byte positions.
fn three() -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for _ in 0..3 {
        b.push(5, Some(b"k"), Some(b"v"), &[("h", Some(b"x"))]);
    }
    b.build().to_vec()
}

fn record_starts(batch: &[u8]) -> Vec<usize> {
    let mut starts = vec![HEADER_LEN];
    while *starts.last().unwrap() < batch.len() {
        let at = *starts.last().unwrap();
        // single-byte length varint in these tests
        starts.push(at + 1 + (batch[at] >> 1) as usize);
    }
    starts.pop();
    starts
}

fn set_i32(batch: &mut [u8], at: usize, v: i32) {
    batch[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn assert_invalid(r: Result<BatchHeader, BatchError>, needle: &str) {
    match r {
        Err(e @ BatchError::InvalidRecord(_)) => {
            assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
            assert_eq!(e.kind(), BatchErrorKind::InvalidRecord);
        }
        other => panic!("expected InvalidRecord({needle}), got {other:?}"),
    }
}

#[test]
fn size_limit_is_inclusive() {
    let batch = sample(Compression::None, 100, 100);
    let at = |max| ValidateOptions {
        max_batch_bytes: max,
        ..opts()
    };
    validate(&batch, &at(batch.len())).unwrap();
    let err = validate(&batch, &at(batch.len() - 1)).unwrap_err();
    assert_eq!(
        err,
        BatchError::TooLarge {
            size: batch.len(),
            max: batch.len() - 1
        }
    );
    assert_eq!(err.kind(), BatchErrorKind::TooLarge);
}

#[test]
fn offset_deltas_must_be_dense() {
    let mut batch = three();
    let starts = record_starts(&batch);
    assert_eq!(starts.len(), 3);
    assert_eq!(batch[starts[1] + 3], 2, "offset delta 1, zig-zag encoded");
    batch[starts[1] + 3] = 4; // delta 2 at index 1
    fix_crc(&mut batch);
    assert_invalid(validate(&batch, &opts()), "offset deltas");
    // The plain iterator accepts gaps (compacted Kafka logs have them).
    let (_, it) = RecordIter::from_batch(&batch).unwrap();
    let deltas: Vec<i32> = it.map(|r| r.unwrap().offset_delta).collect();
    assert_eq!(deltas, [0, 2, 2]);
}

#[test]
fn dense_offsets_are_checked_in_compressed_batches_when_opened() {
    // A compressed batch with a gap, built by compressing edited records.
    let mut plain = three();
    let starts = record_starts(&plain);
    plain[starts[2] + 3] = 2; // delta 1 at index 2
    let records = plain[HEADER_LEN..].to_vec();
    let mut b = sluice_records::BatchBuilder::new(Compression::Zstd);
    b.push(5, Some(b"k"), Some(b"v"), &[]);
    let built = b.build();
    let mut batch = built[..HEADER_LEN].to_vec();
    batch.extend_from_slice(&zstd::bulk::compress(&records, 1).unwrap());
    let len = (batch.len() - 12) as i32;
    set_i32(&mut batch, 8, len);
    set_i32(&mut batch, 23, 2); // last_offset_delta
    set_i32(&mut batch, 57, 3); // record_count
    fix_crc(&mut batch);
    validate(&batch, &opts()).expect("compressed records are not opened by default");
    let compacted = ValidateOptions {
        require_keys: true,
        ..opts()
    };
    assert_invalid(validate(&batch, &compacted), "offset deltas");
}

#[test]
fn record_count_must_match() {
    let good = three();
    // count disagrees with last_offset_delta
    let mut b = good.clone();
    set_i32(&mut b, 57, 4);
    fix_crc(&mut b);
    assert_invalid(validate(&b, &opts()), "last_offset_delta");
    // both say 4, three records present
    set_i32(&mut b, 23, 3);
    fix_crc(&mut b);
    assert_invalid(validate(&b, &opts()), "fewer records");
    // both say 2, three records present
    set_i32(&mut b, 57, 2);
    set_i32(&mut b, 23, 1);
    fix_crc(&mut b);
    assert_invalid(validate(&b, &opts()), "bytes left");
    // zero and negative counts
    for n in [0, -1, i32::MIN] {
        set_i32(&mut b, 57, n);
        set_i32(&mut b, 23, n.wrapping_sub(1));
        fix_crc(&mut b);
        assert_invalid(validate(&b, &opts()), "record_count");
    }
}

#[test]
fn header_and_length_errors_are_corrupt() {
    let good = three();
    let mut b = good.clone();
    b[16] = 1;
    assert_eq!(validate(&b, &opts()), Err(BatchError::BadMagic(1)));
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        validate(&b, &opts()),
        Err(BatchError::LengthMismatch { .. })
    ));
    let mut b = good.clone();
    set_i32(&mut b, 8, 10); // shorter than the header itself
    assert!(matches!(
        validate(&b, &opts()),
        Err(BatchError::LengthMismatch { .. })
    ));
    assert!(matches!(
        validate(&good[..40], &opts()),
        Err(BatchError::Truncated {
            needed: 61,
            have: 40
        })
    ));
    for r in [
        validate(&b, &opts()),
        validate(&good[..40], &opts()),
        Err(BatchError::CrcMismatch {
            stored: 0,
            computed: 1,
        }),
        Err(BatchError::Decompression("x".into())),
    ] {
        assert_eq!(r.unwrap_err().kind(), BatchErrorKind::Corrupt);
    }
    assert_eq!(BatchErrorKind::Corrupt.kafka_error_code(), 2);
}

#[test]
fn unknown_codec_is_unsupported() {
    for id in 5..=7u8 {
        let mut b = three();
        b[22] = (b[22] & !0x07) | id;
        fix_crc(&mut b);
        let err = validate(&b, &opts()).unwrap_err();
        assert_eq!(err, BatchError::UnsupportedCompression(id));
        assert_eq!(err.kind(), BatchErrorKind::Unsupported);
        assert_eq!(err.kind().kafka_error_code(), 76);
    }
}

#[test]
fn null_header_key_is_invalid() {
    let mut b = three();
    let starts = record_starts(&b);
    // record: len attr ts off keylen 'k' vallen 'v' hcount hkeylen ...
    let hkey = starts[0] + 9;
    assert_eq!(b[hkey], 2);
    b[hkey] = 1; // -1: null
    fix_crc(&mut b);
    assert_invalid(validate(&b, &opts()), "null header key");
}

#[test]
fn timestamps() {
    let mut b = three();
    // max before base (CreateTime): refused.
    b[35..43].copy_from_slice(&4i64.to_be_bytes());
    fix_crc(&mut b);
    let err = validate(&b, &opts()).unwrap_err();
    assert_eq!(err.kind(), BatchErrorKind::InvalidTimestamp);
    assert_eq!(err.kind().kafka_error_code(), 32);
    // -1 on either side means "no timestamp": accepted.
    b[35..43].copy_from_slice(&(-1i64).to_be_bytes());
    fix_crc(&mut b);
    validate(&b, &opts()).unwrap();
    b[27..35].copy_from_slice(&(-1i64).to_be_bytes());
    b[35..43].copy_from_slice(&7i64.to_be_bytes());
    fix_crc(&mut b);
    validate(&b, &opts()).unwrap();
}

#[test]
fn producer_only_rules_apply_to_clients() {
    let stored = ValidateOptions {
        from_client: false,
        ..opts()
    };
    // control batch
    let mut b = three();
    b[22] |= 0x20;
    fix_crc(&mut b);
    assert_invalid(validate(&b, &opts()), "control");
    assert!(validate(&b, &stored).unwrap().is_control());
    // LogAppendTime set by the producer
    let mut b = three();
    b[22] |= 0x08;
    fix_crc(&mut b);
    assert_eq!(
        validate(&b, &opts()).unwrap_err().kind(),
        BatchErrorKind::InvalidTimestamp
    );
    validate(&b, &stored).unwrap();
    // producer id without a sequence
    let mut b = BatchBuilder::new(Compression::None);
    b.producer(9, 0, -1).push(1, None, None, &[]);
    let b = b.build();
    assert_invalid(validate(&b, &opts()), "sequence");
    validate(&b, &stored).unwrap();
}

#[test]
fn broker_rewrites() {
    for c in Compression::ALL {
        let mut b = sample(c, 5, 10);
        set_base_offset(&mut b, 1_000_000).unwrap();
        set_partition_leader_epoch(&mut b, 42).unwrap();
        let h = validate(&b, &opts()).expect("CRC untouched by offset and epoch");
        assert_eq!(h.base_offset, 1_000_000);
        assert_eq!(h.last_offset(), 1_000_004);
        assert_eq!(h.partition_leader_epoch, 42);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);

        set_log_append_time(&mut b, 1_800_000_000_000).unwrap();
        let stored = ValidateOptions {
            from_client: false,
            ..opts()
        };
        let h = validate(&b, &stored).expect("CRC recomputed");
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 1_800_000_000_000);
        assert_eq!(h.compression(), Ok(c));
        let mut scratch = Vec::new();
        visit_records(&b, 1 << 20, &mut scratch, |i, r| {
            assert_eq!(r.timestamp(&h), 1_800_000_000_000);
            assert_eq!(r.offset(&h), 1_000_000 + i64::from(i));
            Ok(())
        })
        .unwrap();
    }
    // Short or mismatched buffers are errors, not panics.
    let mut short = [0u8; 60];
    assert!(set_base_offset(&mut short, 1).is_err());
    assert!(set_partition_leader_epoch(&mut short, 1).is_err());
    assert!(set_log_append_time(&mut short, 1).is_err());
    let mut long = sample(Compression::None, 1, 1);
    long.push(0);
    assert!(set_log_append_time(&mut long, 1).is_err());
}

#[test]
fn header_accessors() {
    let mut b = BatchBuilder::new(Compression::Snappy);
    b.producer(77, 2, 1000).transactional(true);
    b.push(100, Some(b"a"), None, &[]);
    b.push(90, Some(b"b"), None, &[]);
    let batch = b.build();
    let h = BatchHeader::parse(&batch).unwrap();
    assert_eq!(h.compression(), Ok(Compression::Snappy));
    assert!(h.is_transactional());
    assert!(!h.is_control());
    assert_eq!((h.base_timestamp, h.max_timestamp), (100, 100));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (77, 2, 1000)
    );
    assert_eq!(h.total_len(), batch.len());
    assert_eq!(h.next_offset(), 2);
    let mut out = vec![0u8; HEADER_LEN];
    h.write(&mut out).unwrap();
    assert_eq!(&out[..], &batch[..HEADER_LEN]);
}
