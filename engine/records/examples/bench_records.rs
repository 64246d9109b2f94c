//! Prints rough speeds of the hot paths: CRC-32C, validating an uncompressed
//! 16 KiB batch, building batches. Run with
//! `cargo run --release -p sluice-records --example bench_records`.
//! Figures only; nothing here is asserted.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice_records::{
    validate, visit_records, BatchBuilder, Compression, ValidateOptions, HEADER_LEN,
};

/// Runs `f` repeatedly for about `budget`, returns ns per call.
fn time_per_op(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..100 {
        f();
    }
    let mut iters = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        iters += 100;
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn batch(compression: Compression, records: usize, value_len: usize) -> bytes::Bytes {
    let mut b = BatchBuilder::new(compression);
    let value: Vec<u8> = (0..value_len).map(|i| (i % 251) as u8).collect();
    for i in 0..records {
        let key = format!("key-{i:06}");
        b.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    b.build()
}

fn main() {
    let budget = Duration::from_millis(500);

    let data = vec![0xa5u8; 16 * 1024];
    let ns = time_per_op(budget, || {
        black_box(crc32c::crc32c(black_box(&data)));
    });
    println!(
        "crc32c 16 KiB:                  {:>9.0} ns/op  {:>6.2} GB/s",
        ns,
        data.len() as f64 / ns
    );

    // ~100-byte records (10-byte key, 80-byte value, ~10 bytes of framing)
    // filling about 16 KiB.
    let b16 = batch(Compression::None, 160, 80);
    let per_record = (b16.len() - HEADER_LEN) as f64 / 160.0;
    let opts = ValidateOptions::default();
    let ns = time_per_op(budget, || {
        black_box(validate(black_box(&b16), &opts).expect("valid"));
    });
    println!(
        "validate {} B, 160 records:  {:>9.0} ns/op  {:>6.2} GB/s  ({per_record:.0} B/record)",
        b16.len(),
        ns,
        b16.len() as f64 / ns
    );
    let compacted = ValidateOptions {
        require_keys: true,
        ..opts.clone()
    };
    let ns = time_per_op(budget, || {
        black_box(validate(black_box(&b16), &compacted).expect("valid"));
    });
    println!("  same, require_keys:           {ns:>9.0} ns/op");

    let values: Vec<Vec<u8>> = (0..160)
        .map(|i| (0..100).map(|j| ((i * 7 + j) % 251) as u8).collect())
        .collect();
    for c in Compression::ALL {
        let mut b = BatchBuilder::new(c);
        let mut size = 0;
        let ns = time_per_op(budget, || {
            for (i, v) in values.iter().enumerate() {
                b.push(1_700_000_000_000 + i as i64, None, Some(v), &[]);
            }
            size = black_box(b.build()).len();
        });
        println!("build 160 x 100 B, {c:<7?}      {ns:>9.0} ns/op  ({size} B)");
    }

    let mut scratch = Vec::new();
    for c in [Compression::Lz4, Compression::Zstd] {
        let compressed = batch(c, 160, 80);
        let ns = time_per_op(budget, || {
            visit_records(black_box(&compressed), 1 << 20, &mut scratch, |_, r| {
                black_box(r.key);
                Ok(())
            })
            .expect("valid");
        });
        println!("visit 160 records, {c:<7?}      {ns:>9.0} ns/op");
    }
}
