//! Regression: on a fresh data directory the broker's own device probe opened
//! an empty file first, so glommio marked the disk pollable and every later
//! disk read failed with EOPNOTSUPP. Tail-cache reads hid it until a consumer
//! fell behind the cache. Here the cache is tiny, so fetches go to disk.

mod common;

use bytes::Bytes;
use common::Broker;
use sluice_records::{BatchBuilder, Compression, RecordIter};

const TOPIC: &str = "cold";
const BATCHES: usize = 40;
const RECORDS_PER_BATCH: usize = 50;

#[test]
fn catch_up_reads_come_from_disk_on_a_fresh_data_dir() {
    let mut broker = Broker::start(&["--tail-cache-bytes", "65536"]);
    let mut client = broker.connect();
    client.create_topic(TOPIC, 1, &[]);
    for b in 0..BATCHES {
        let mut builder = BatchBuilder::new(Compression::None);
        for r in 0..RECORDS_PER_BATCH {
            let value = format!("batch {b} record {r} {}", "x".repeat(200));
            builder.push(0, None, Some(value.as_bytes()), &[]);
        }
        let answer = client.produce(TOPIC, 0, builder.build());
        assert_eq!(answer.error_code, 0, "produce: {:?}", answer.error_message);
    }
    // ~500 KiB written, the cache holds 64 KiB: reading from 0 must hit the disk.
    let mut offset = 0i64;
    let mut seen = 0usize;
    while offset < (BATCHES * RECORDS_PER_BATCH) as i64 {
        let p = client.fetch(TOPIC, 0, offset);
        assert_eq!(
            p.error_code,
            0,
            "fetch at {offset} failed; broker log:\n{}",
            broker.log()
        );
        let records = p.records.map(|r| r.contiguous()).unwrap_or_default();
        assert!(!records.is_empty(), "no data at {offset}");
        let mut at = 0;
        while at + 61 <= records.len() {
            let len = sluice_records::BatchHeader::parse(&records[at..])
                .expect("header")
                .total_len();
            if at + len > records.len() {
                break;
            }
            let batch: Bytes = records.slice(at..at + len);
            let (h, iter) = RecordIter::from_batch(&batch).expect("batch");
            for rec in iter {
                let rec = rec.expect("record");
                let o = rec.offset(&h);
                if o >= offset {
                    let (b, r) = (
                        o as usize / RECORDS_PER_BATCH,
                        o as usize % RECORDS_PER_BATCH,
                    );
                    let want = format!("batch {b} record {r} {}", "x".repeat(200));
                    assert_eq!(rec.value, Some(want.as_bytes()), "offset {o}");
                    seen += 1;
                }
            }
            offset = h.last_offset() + 1;
            at += len;
        }
    }
    assert_eq!(seen, BATCHES * RECORDS_PER_BATCH);
    broker.assert_serving();
}
