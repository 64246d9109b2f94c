//! SIGTERM: the broker stops within seconds, exits 0, says it stopped
//! cleanly, and keeps everything it acknowledged.

mod common;

use std::time::Duration;

use common::{batch, records_of, Broker, FETCH_VERSION};
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::RequestBody;

const TOPIC: &str = "durable";
const PARTITIONS: i32 = 4;
const BATCHES: usize = 20;
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn sigterm_stops_cleanly_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut broker = Broker::start_in(dir.path(), &["--shards", "2"]);
    let mut client = broker.connect();
    client.create_topic(TOPIC, PARTITIONS, &[]);
    let mut acknowledged = vec![Vec::new(); PARTITIONS as usize];
    for b in 0..BATCHES {
        let p = (b % PARTITIONS as usize) as i32;
        let key = format!("key{b}").into_bytes();
        let value = format!("value{b}").into_bytes();
        let answer = client.produce(TOPIC, p, batch(&[(&key, &value)]));
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        acknowledged[p as usize].push((answer.base_offset, key, value));
    }

    // An idle connection and a long-poll fetch stay open across the signal:
    // neither may hold the shutdown up.
    let idle = broker.connect();
    let mut polling = broker.connect();
    polling.send(
        FETCH_VERSION,
        &RequestBody::Fetch(FetchRequest {
            max_wait_ms: 30_000,
            min_bytes: 1,
            topics: vec![FetchTopic {
                topic: TOPIC.into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 1_000,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    std::thread::sleep(Duration::from_millis(100));

    let status = broker.terminate(SHUTDOWN_TIMEOUT);
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        broker.log()
    );
    let log = broker.log();
    assert_eq!(
        log.matches("stopped cleanly").count(),
        2,
        "both shards stopped cleanly:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    drop((idle, polling, client));

    let restarted = Broker::start_in(dir.path(), &["--shards", "2"]);
    let mut client = restarted.connect();
    for p in 0..PARTITIONS {
        let expected = &acknowledged[p as usize];
        assert_eq!(
            client.latest_offset(TOPIC, p),
            expected.len() as i64,
            "partition {p}"
        );
        assert_eq!(
            &records_of(&client.fetch(TOPIC, p, 0).records),
            expected,
            "partition {p}"
        );
    }
    // And the log goes on at the next offset.
    let next = client.produce(TOPIC, 0, batch(&[(b"after", b"restart")]));
    assert_eq!(
        (next.error_code, next.base_offset),
        (0, acknowledged[0].len() as i64)
    );
}
