//! Damaged input: every bit flip, every truncation, random edits behind a
//! fixed-up CRC, and random bytes. Never Ok where it must fail, never a panic.

mod common;

use common::{fix_crc, sample};
use proptest::prelude::*;
use sluice_records::{
    decompress_records, validate, visit_records, BatchError, BatchHeader, BatchIter, Compression,
    RecordIter, ScanError, ValidateOptions, CRC_START,
};

fn opts() -> ValidateOptions {
    ValidateOptions {
        require_keys: true,
        ..ValidateOptions::default()
    }
}

#[test]
fn every_bit_flip_in_the_crc_range_is_refused() {
    for c in Compression::ALL {
        let good = sample(c, 8, 30);
        validate(&good, &opts()).expect("pristine batch");
        let mut batch = good.clone();
        for byte in CRC_START..batch.len() {
            for bit in 0..8 {
                batch[byte] ^= 1 << bit;
                let r = validate(&batch, &opts());
                assert!(
                    r.is_err(),
                    "{c:?}: flip of bit {bit} at byte {byte} accepted"
                );
                // Also through the scanner, which recovery uses.
                let scan: Vec<_> = BatchIter::new(&batch).collect();
                assert!(
                    scan.iter().any(Result::is_err),
                    "{c:?}: scan accepted flip at {byte}"
                );
                batch[byte] ^= 1 << bit;
            }
        }
        assert_eq!(batch, good);
    }
}

#[test]
fn crc_field_flips_are_crc_mismatches() {
    let good = sample(Compression::None, 3, 10);
    for byte in 17..21 {
        let mut batch = good.clone();
        batch[byte] ^= 0x10;
        assert!(matches!(
            validate(&batch, &opts()),
            Err(BatchError::CrcMismatch { .. })
        ));
    }
}

#[test]
fn every_truncation_is_refused() {
    for c in Compression::ALL {
        let good = sample(c, 8, 30);
        for len in 0..good.len() {
            let cut = &good[..len];
            assert!(validate(cut, &opts()).is_err(), "{c:?} cut at {len}");
            let mut scratch = Vec::new();
            assert!(visit_records(cut, 1 << 20, &mut scratch, |_, _| Ok(())).is_err());
            let mut out = Vec::new();
            assert!(decompress_records(cut, 1 << 20, &mut out).is_err());
            match BatchIter::new(cut).next() {
                None => assert_eq!(len, 0),
                Some(Err(ScanError::Torn {
                    pos: 0,
                    needed,
                    have,
                })) => {
                    assert_eq!(have, len);
                    assert!(needed > have);
                }
                other => panic!("{c:?} cut at {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn scanner_tells_torn_tail_from_corrupt_batch() {
    let a = sample(Compression::None, 3, 10);
    let b = sample(Compression::Zstd, 3, 10);
    let mut log = [a.clone(), b.clone()].concat();

    // Whole log.
    let got: Vec<_> = BatchIter::new(&log).collect();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(Result::is_ok));

    // Torn second batch: one good batch, then Torn at its start.
    let torn = &log[..a.len() + b.len() - 1];
    let mut it = BatchIter::new(torn);
    assert_eq!(it.next().unwrap().unwrap().1, 0..a.len());
    assert!(matches!(it.next(), Some(Err(ScanError::Torn { pos, .. })) if pos == a.len()));
    assert!(it.next().is_none());
    assert_eq!(it.position(), a.len());

    // Zero padding after the last batch (preallocation, block padding): torn.
    let mut padded = log.clone();
    padded.extend_from_slice(&[0; 4096]);
    let last = BatchIter::new(&padded).last().unwrap();
    assert!(matches!(last, Err(ScanError::Torn { pos, .. }) if pos == log.len()));

    // Corrupt second batch (payload byte flipped): Corrupt with the CRC error.
    let n = log.len();
    log[n - 1] ^= 0xff;
    let last = BatchIter::new(&log).last().unwrap();
    match last {
        Err(ScanError::Corrupt {
            pos,
            err: BatchError::CrcMismatch { .. },
        }) => assert_eq!(pos, a.len()),
        other => panic!("{other:?}"),
    }
    // Without CRC checks the scanner only frames.
    assert!(BatchIter::new(&log).without_crc().all(|r| r.is_ok()));

    // Bad magic in the second batch: corrupt.
    log[a.len() + 16] = 1;
    let last = BatchIter::new(&log).last().unwrap();
    assert!(matches!(
        last,
        Err(ScanError::Corrupt {
            err: BatchError::BadMagic(1),
            ..
        })
    ));
}

/// Run everything that reads bytes; it may fail, it must not panic.
fn poke(bytes: &[u8]) {
    let _ = BatchHeader::parse(bytes);
    let _ = validate(bytes, &opts());
    let _ = validate(bytes, &ValidateOptions::default());
    let mut scratch = Vec::new();
    let _ = visit_records(bytes, 1 << 16, &mut scratch, |_, r| {
        let _ = r.headers.iter().count();
        Ok(())
    });
    let mut out = Vec::new();
    let _ = decompress_records(bytes, 1 << 16, &mut out);
    for r in BatchIter::new(bytes).without_crc() {
        let _ = r;
    }
    if bytes.len() >= 61 {
        let count = i32::from_be_bytes([bytes[57], bytes[58], bytes[59], bytes[60]]);
        // The iterator ends after its first error, so flatten() sees them all.
        for r in RecordIter::new(&bytes[61..], count).flatten() {
            let _ = r.headers.iter().count();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        poke(&bytes);
    }

    /// Edits behind a recomputed CRC reach the record and decompression
    /// code, which the CRC otherwise shields.
    #[test]
    fn edited_batches_with_fixed_crc_never_panic(
        c in prop::sample::select(Compression::ALL.to_vec()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut batch = sample(c, 6, 20);
        for (at, v) in &edits {
            let i = CRC_START + at.index(batch.len() - CRC_START);
            batch[i] = *v;
        }
        if do_cut {
            batch.truncate(CRC_START + cut.index(batch.len() - CRC_START));
            let len = (batch.len() as i32 - 12).to_be_bytes();
            batch[8..12].copy_from_slice(&len);
        }
        fix_crc(&mut batch);
        poke(&batch);
    }
}
