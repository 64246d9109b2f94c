//! Fetch long polls must not hold their shard (KAFKA-NOTES, "Fetch").

mod common;

use std::time::{Duration, Instant};

use common::{batch, records_of, Broker, FETCH_VERSION};
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::{ApiKey, RequestBody, ResponseBody};

/// The long poll asked for; everything else must be answered well within it.
const MAX_WAIT_MS: i32 = 6_000;
/// How long a request on another connection may take meanwhile.
const OTHERS_ANSWERED_WITHIN: Duration = Duration::from_secs(2);
/// CPU the broker may burn in a second of an idle long poll.
const IDLE_CPU_LIMIT: Duration = Duration::from_millis(300);

/// User plus system CPU time of a process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports these in USER_HZ, 100 on every mainstream platform.
    Duration::from_millis(ticks * 10)
}

/// Regression: a long poll over a partition that has data, but less than
/// `min_bytes`, re-read the partition in a loop without waiting (its wait
/// returned at once because the log end was past the fetch offset), so the
/// shard spun until `max_wait_ms` and served nothing else meanwhile. Kafka
/// consumers hit this with `fetch.min.bytes` above what a partition holds.
#[test]
fn a_long_poll_below_min_bytes_does_not_hold_the_shard() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    client.create_topic("t", 1, &[]);
    assert_eq!(
        client
            .produce("t", 0, batch(&[(b"k", b"small")]))
            .error_code,
        0
    );

    let mut polling = broker.connect();
    let started = Instant::now();
    let poll = polling.send(
        FETCH_VERSION,
        &RequestBody::Fetch(FetchRequest {
            max_wait_ms: MAX_WAIT_MS,
            min_bytes: 1 << 20,
            max_bytes: 16 << 20,
            topics: vec![FetchTopic {
                topic: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 8 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    std::thread::sleep(Duration::from_millis(200));

    // The shard's other work goes on while the poll waits.
    let cpu_before = cpu_time(broker.pid());
    for i in 0..3 {
        let asked = Instant::now();
        let mut other = broker.connect();
        other.set_timeout(OTHERS_ANSWERED_WITHIN);
        let answer = other.produce("t", 0, batch(&[(b"k", b"more")]));
        assert_eq!((answer.error_code, answer.base_offset), (0, 1 + i));
        assert!(asked.elapsed() < OTHERS_ANSWERED_WITHIN);
    }
    std::thread::sleep(Duration::from_secs(1));
    let burnt = cpu_time(broker.pid()).saturating_sub(cpu_before);
    assert!(
        burnt < IDLE_CPU_LIMIT,
        "the broker burnt {burnt:?} of CPU while a long poll waited"
    );

    // The poll ends at its deadline, with what there is.
    let (correlation_id, body) = polling.recv(ApiKey::Fetch, FETCH_VERSION);
    assert_eq!(correlation_id, poll);
    assert!(started.elapsed() >= Duration::from_millis(MAX_WAIT_MS as u64 - 500));
    let ResponseBody::Fetch(r) = body else {
        panic!("not a Fetch response")
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(records_of(&p.records).len(), 4);
}
