//! Build -> validate -> read back, for random records and every codec.

use proptest::prelude::*;
use sluice_records::{
    decompress_records, validate, visit_records, BatchBuilder, BatchIter, Compression, RecordIter,
    ValidateOptions,
};

#[derive(Debug, Clone)]
struct Rec {
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes_opt(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..max))
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        // Around "now", with some far-apart values for wide varlong deltas.
        prop_oneof![
            1_600_000_000_000i64..1_800_000_000_000,
            Just(0i64),
            Just(-1i64),
            any::<i32>().prop_map(i64::from)
        ],
        bytes_opt(40),
        bytes_opt(300),
        prop::collection::vec(("[a-z\u{e9}]{0,8}", bytes_opt(16)), 0..4),
    )
        .prop_map(|(ts, key, value, headers)| Rec {
            ts,
            key,
            value,
            headers,
        })
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

fn build(c: Compression, recs: &[Rec], producer: Option<(i64, i16, i32)>) -> bytes::Bytes {
    let mut b = BatchBuilder::new(c);
    if let Some((id, epoch, seq)) = producer {
        b.producer(id, epoch, seq);
    }
    for r in recs {
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        b.push(r.ts, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    b.build()
}

fn same(r: &sluice_records::Record<'_>, e: &Rec, h: &sluice_records::BatchHeader) -> bool {
    r.timestamp(h) == e.ts
        && r.key == e.key.as_deref()
        && r.value == e.value.as_deref()
        && r.headers.len() == e.headers.len()
        && r.headers
            .iter()
            .zip(&e.headers)
            .all(|(h, (k, v))| h.key == k.as_bytes() && h.value == v.as_deref())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn built_batches_validate_and_read_back(
        c in codec(),
        recs in prop::collection::vec(rec(), 1..40),
        producer in prop::option::of((0i64..1 << 40, 0i16..100, 0i32..1 << 30)),
    ) {
        let batch = build(c, &recs, producer);
        let opts = ValidateOptions { require_keys: false, ..ValidateOptions::default() };
        let h = validate(&batch, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(h.compression(), Ok(c));
        prop_assert_eq!(h.record_count as usize, recs.len());
        prop_assert_eq!(h.last_offset(), recs.len() as i64 - 1);
        prop_assert_eq!(h.total_len(), batch.len());
        prop_assert_eq!(h.max_timestamp, recs.iter().map(|r| r.ts).max().unwrap());
        if let Some((id, epoch, seq)) = producer {
            prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (id, epoch, seq));
        }

        let mut scratch = Vec::new();
        let mut n = 0usize;
        visit_records(&batch, 1 << 20, &mut scratch, |i, r| {
            assert!(same(&r, &recs[i as usize], &h), "record {i} differs");
            n += 1;
            Ok(())
        }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n, recs.len());

        let mut out = Vec::new();
        decompress_records(&batch, 1 << 20, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: Vec<_> = RecordIter::new(&out, h.record_count).collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), recs.len());
        for (r, e) in got.iter().zip(&recs) {
            prop_assert!(same(r, e, &h));
        }

        // Keys are required: accepted exactly when no key is null.
        let compacted = ValidateOptions { require_keys: true, ..ValidateOptions::default() };
        prop_assert_eq!(validate(&batch, &compacted).is_ok(), recs.iter().all(|r| r.key.is_some()));
    }

    #[test]
    fn concatenated_batches_scan_back(
        batches in prop::collection::vec((codec(), prop::collection::vec(rec(), 1..5)), 1..6),
    ) {
        let mut log = Vec::new();
        let mut ranges = Vec::new();
        for (c, recs) in &batches {
            let b = build(*c, recs, None);
            ranges.push(log.len()..log.len() + b.len());
            log.extend_from_slice(&b);
        }
        let got: Vec<_> = BatchIter::new(&log).map(|r| r.map(|(_, range)| range)).collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, ranges);
    }
}

#[test]
fn builder_is_reusable_across_batches() {
    for c in Compression::ALL {
        let mut b = BatchBuilder::new(c);
        b.producer(1, 0, 0);
        for round in 0..3 {
            for i in 0..10 {
                b.push(1000 + i, Some(b"k"), Some(b"value value value"), &[]);
            }
            let batch = b.build();
            let h = validate(&batch, &ValidateOptions::default()).unwrap();
            assert_eq!(h.record_count, 10, "{c:?} round {round}");
            assert_eq!(h.base_timestamp, 1000);
            assert_eq!(h.max_timestamp, 1009);
            assert!(b.is_empty());
        }
    }
}
