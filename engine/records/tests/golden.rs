//! Batches written by a real client (kafka-python's v2 batch builder, see
//! fixtures/make_fixtures.py): every codec validates and every record
//! reads back as the client was told to write it.

use sluice_records::{
    decompress_records, validate, visit_records, BatchHeader, Compression, RecordIter,
    ValidateOptions,
};

struct Expected {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn unhex(v: &serde_json::Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expected() -> (serde_json::Value, Vec<Expected>) {
    let json: serde_json::Value =
        serde_json::from_slice(&fixture("expected.json")).expect("expected.json");
    let records = json["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| Expected {
            timestamp: r["timestamp"].as_i64().expect("timestamp"),
            key: unhex(&r["key"]),
            value: unhex(&r["value"]),
            headers: r["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| (unhex(&h[0]).expect("header key"), unhex(&h[1])))
                .collect(),
        })
        .collect();
    (json, records)
}

fn check_record(h: &BatchHeader, index: u32, r: &sluice_records::Record<'_>, e: &Expected) {
    assert_eq!(r.offset_delta as u32, index);
    assert_eq!(r.offset(h), i64::from(index));
    assert_eq!(r.timestamp(h), e.timestamp, "record {index}");
    assert_eq!(r.key, e.key.as_deref(), "key of record {index}");
    assert_eq!(r.value, e.value.as_deref(), "value of record {index}");
    let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = r
        .headers
        .iter()
        .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(headers, e.headers, "headers of record {index}");
}

#[test]
fn every_codec_from_kafka_python_validates_and_reads_back() {
    let (json, records) = expected();
    let cases = [
        ("none.bin", Compression::None),
        ("gzip.bin", Compression::Gzip),
        ("snappy.bin", Compression::Snappy),
        ("snappy-raw.bin", Compression::Snappy),
        ("lz4.bin", Compression::Lz4),
        ("zstd.bin", Compression::Zstd),
    ];
    for (name, codec) in cases {
        let batch = fixture(name);
        let opts = ValidateOptions {
            require_keys: false,
            ..ValidateOptions::default()
        };
        let h = validate(&batch, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(h.compression(), Ok(codec), "{name}");
        assert_eq!(h.record_count as usize, records.len(), "{name}");
        assert_eq!(h.producer_id, json["producer_id"].as_i64().unwrap());
        assert_eq!(
            i64::from(h.producer_epoch),
            json["producer_epoch"].as_i64().unwrap()
        );
        assert_eq!(
            i64::from(h.base_sequence),
            json["base_sequence"].as_i64().unwrap()
        );
        assert_eq!(h.base_timestamp, json["base_timestamp"].as_i64().unwrap());
        assert_eq!(
            h.max_timestamp,
            records.iter().map(|r| r.timestamp).max().unwrap()
        );

        // Visitor over the stream.
        let mut seen = 0;
        let mut scratch = Vec::new();
        visit_records(&batch, 1 << 20, &mut scratch, |i, r| {
            check_record(&h, i, &r, &records[i as usize]);
            seen += 1;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(seen, records.len(), "{name}");

        // Owned buffer + RecordIter.
        let mut out = Vec::new();
        decompress_records(&batch, 1 << 20, &mut out).unwrap();
        let got: Vec<_> = RecordIter::new(&out, h.record_count)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.len(), records.len());
        for (i, (r, e)) in got.iter().zip(&records).enumerate() {
            check_record(&h, i as u32, r, e);
        }

        // Record 1 has a null key: a compacted topic refuses the batch,
        // compressed or not.
        let compacted = ValidateOptions {
            require_keys: true,
            ..ValidateOptions::default()
        };
        let err = validate(&batch, &compacted).expect_err(name);
        assert_eq!(
            err.kind(),
            sluice_records::BatchErrorKind::InvalidRecord,
            "{name}: {err}"
        );
    }
}

#[test]
fn kafka_python_snappy_is_xerial_framed() {
    let batch = fixture("snappy.bin");
    assert_eq!(&batch[61..69], b"\x82SNAPPY\0");
    let raw = fixture("snappy-raw.bin");
    assert_ne!(&raw[61..69], b"\x82SNAPPY\0");
}
