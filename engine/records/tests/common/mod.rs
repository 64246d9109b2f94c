//! Helpers shared by the integration tests.
#![allow(dead_code)]

use sluice_records::{BatchBuilder, Compression, CRC_START};

/// Recomputes the CRC after a test edited CRC-covered bytes on purpose, so
/// the check under test is the one past the CRC.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A batch of `n` records with ~`value_len`-byte values.
pub fn sample(compression: Compression, n: usize, value_len: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression);
    let value = vec![b'v'; value_len];
    for i in 0..n {
        let key = format!("key-{i}");
        b.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[("h", Some(b"x"))],
        );
    }
    b.build().to_vec()
}
