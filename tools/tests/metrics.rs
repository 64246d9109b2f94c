//! The metrics and health endpoint of the real binary: counters and
//! histograms move consistently with what was produced and fetched; health
//! answers; a malformed HTTP request gets 400 and the broker stays up.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{batch, free_port, records_of, Broker};

/// Sends `request` as is and returns (status code, body).
fn http(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("send the HTTP request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the HTTP response");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// Every sample of a scrape: `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in the scrape"))
}

#[test]
fn counters_follow_produce_and_fetch_and_health_answers() {
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut broker = Broker::start(&["--shards", "2", "--metrics-listen", &metrics_addr]);
    let mut client = broker.connect();
    client.create_topic("m", 2, &[]);

    const BATCHES: usize = 6;
    const RECORDS_PER_BATCH: usize = 5;
    let value_bytes = [7u8; 300];
    let mut payload_bytes = 0;
    for i in 0..BATCHES {
        let records: Vec<(&[u8], &[u8])> = (0..RECORDS_PER_BATCH)
            .map(|_| (&b"key"[..], &value_bytes[..]))
            .collect();
        let b = batch(&records);
        payload_bytes += b.len();
        let answer = client.produce("m", (i % 2) as i32, b);
        assert_eq!(answer.error_code, 0);
    }
    let records_total = BATCHES * RECORDS_PER_BATCH;

    let mut fetched = 0;
    let mut fetches = 0;
    for partition in 0..2 {
        let mut offset = 0;
        loop {
            let got = records_of(&client.fetch("m", partition, offset).records);
            fetches += 1;
            let Some(last) = got.last() else { break };
            offset = last.0 + 1;
            fetched += got.len();
        }
    }
    assert_eq!(fetched, records_total);

    let (status, text) = get(metrics_port, "/metrics");
    assert_eq!(status, 200, "{text}");
    let s = samples(&text);
    assert_eq!(
        value(&s, "sluice_records_in_total{topic=\"m\"}") as usize,
        records_total,
        "{text}"
    );
    assert!(value(&s, "sluice_bytes_in_total{topic=\"m\"}") as usize >= payload_bytes);
    assert!(value(&s, "sluice_records_out_total{topic=\"m\"}") as usize >= records_total);
    assert!(value(&s, "sluice_bytes_out_total{topic=\"m\"}") as usize >= payload_bytes);
    for (api, sent) in [("Produce", BATCHES), ("Fetch", fetches)] {
        let requests = value(&s, &format!("sluice_requests_total{{api=\"{api}\"}}"));
        assert!(requests as usize >= sent, "{api}: {requests} < {sent}");
        let count = value(
            &s,
            &format!("sluice_request_latency_seconds_count{{api=\"{api}\"}}"),
        );
        assert_eq!(count, requests, "{api}: latency histogram count");
        let inf = value(
            &s,
            &format!("sluice_request_latency_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}}"),
        );
        assert_eq!(inf, count, "{api}: +Inf bucket");
    }
    assert!(value(&s, "sluice_produce_latency_seconds_count") as usize >= BATCHES);
    assert!(value(&s, "sluice_flush_latency_seconds_count") > 0.0);
    assert!(value(&s, "sluice_flush_batch_bytes_sum") as usize >= payload_bytes);
    assert!(value(&s, "sluice_flush_batch_logs_count") > 0.0);
    let hits: f64 = (0..2)
        .map(|shard| {
            value(
                &s,
                &format!("sluice_tail_cache_hits_total{{shard=\"{shard}\"}}"),
            )
        })
        .sum();
    assert!(
        hits >= 2.0,
        "fresh data is read from the tail cache: {text}"
    );
    let open: f64 = (0..2)
        .map(|shard| value(&s, &format!("sluice_connections_open{{shard=\"{shard}\"}}")))
        .sum();
    assert!(open >= 1.0, "{text}");
    assert!(text.contains("# TYPE sluice_consumer_group_lag gauge"));
    assert!(text.contains("sluice_shard_busy_seconds_total{shard=\"1\"}"));

    let (status, body) = get(metrics_port, "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(get(metrics_port, "/nothing").0, 404);
    assert_eq!(http(metrics_port, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);

    // Malformed requests are refused; neither the endpoint nor the broker dies.
    assert_eq!(http(metrics_port, b"garbage\r\n\r\n").0, 400);
    assert_eq!(http(metrics_port, b"GET /metrics HTTP/9\r\n\r\n").0, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(16 << 10)
    );
    assert_eq!(http(metrics_port, huge.as_bytes()).0, 431);
    broker.assert_serving();
    assert_eq!(get(metrics_port, "/health").0, 200);
    let (status, again) = get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    let produced = value(&samples(&again), "sluice_requests_total{api=\"Produce\"}");
    assert!(produced >= BATCHES as f64);
}

#[test]
fn off_disables_the_endpoint() {
    let broker = Broker::start(&["--metrics-listen", "off"]);
    assert!(
        !broker
            .log()
            .contains("metrics and health endpoint listening"),
        "{}",
        broker.log()
    );
}

/// A counter or histogram series: it may only grow.
fn is_cumulative(key: &str) -> bool {
    let name = key.split('{').next().unwrap_or(key);
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// Every cumulative series of `before` is in `after` and not smaller.
fn assert_monotonic(before: &HashMap<String, f64>, after: &HashMap<String, f64>, when: &str) {
    for (key, old) in before.iter().filter(|(k, _)| is_cumulative(k)) {
        let new = after
            .get(key)
            .unwrap_or_else(|| panic!("{when}: series {key} vanished"));
        assert!(new >= old, "{when}: {key} went from {old} to {new}");
    }
}

/// Within one scrape, each histogram's buckets are cumulative and its
/// `+Inf` bucket equals its count.
fn assert_histograms_consistent(s: &HashMap<String, f64>, name: &str, label: &str) {
    let (open, close) = if label.is_empty() {
        ("{".to_string(), "}".to_string())
    } else {
        (format!("{{{label},"), "}".to_string())
    };
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&format!("{name}_bucket{open}le=\""))?;
            let le = rest.strip_suffix(&format!("\"{close}"))?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    assert!(!buckets.is_empty(), "no buckets of {name}{{{label}}}");
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in buckets.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "{name}{{{label}}}: buckets not cumulative: {buckets:?}"
        );
    }
    let count_key = if label.is_empty() {
        format!("{name}_count")
    } else {
        format!("{name}_count{{{label}}}")
    };
    let last = buckets.last().expect("a bucket");
    assert_eq!(
        last.0,
        f64::INFINITY,
        "{name}{{{label}}} has no +Inf bucket"
    );
    assert_eq!(
        last.1,
        value(s, &count_key),
        "{name}{{{label}}}: +Inf != count"
    );
}

/// Open connections over both shards.
fn connections_open(s: &HashMap<String, f64>) -> f64 {
    (0..2)
        .map(|shard| value(s, &format!("sluice_connections_open{{shard=\"{shard}\"}}")))
        .sum()
}

#[test]
fn counters_and_histograms_stay_consistent_under_sustained_load() {
    const PARTITIONS: i32 = 4;
    const REQUESTS: usize = 400;
    const RECORDS_PER_REQUEST: usize = 10;
    const SCRAPE_EVERY: usize = 100;
    const N: usize = REQUESTS * RECORDS_PER_REQUEST;

    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let broker = Broker::start(&["--shards", "2", "--metrics-listen", &metrics_addr]);
    broker.connect().create_topic("load", PARTITIONS, &[]);
    let scrape = move || {
        let (status, text) = get(metrics_port, "/metrics");
        assert_eq!(status, 200, "{text}");
        samples(&text)
    };
    let baseline = scrape();

    // The producer scrapes after every SCRAPE_EVERY acknowledged requests, so
    // each of its scrapes knows a lower bound of what must be counted.
    let mut producer = broker.connect();
    let mut consumer = broker.connect();
    // Both connections are accepted before the load starts.
    producer.api_versions();
    consumer.api_versions();
    let produce = std::thread::spawn(move || {
        let value_bytes = [3u8; 200];
        let mut sent_bytes = 0usize;
        let mut during = Vec::new();
        for i in 0..REQUESTS {
            let records: Vec<(&[u8], &[u8])> = (0..RECORDS_PER_REQUEST)
                .map(|_| (&b"k"[..], &value_bytes[..]))
                .collect();
            let b = batch(&records);
            sent_bytes += b.len();
            let answer = producer.produce("load", i as i32 % PARTITIONS, b);
            assert_eq!(answer.error_code, 0, "produce {i}");
            if (i + 1) % SCRAPE_EVERY == 0 {
                during.push(((i + 1) * RECORDS_PER_REQUEST, scrape()));
            }
        }
        (sent_bytes, during)
    });
    // The consumer reads every partition round-robin until it has all N.
    let consume = std::thread::spawn(move || {
        let mut next = [0i64; PARTITIONS as usize];
        let mut consumed = 0usize;
        let mut fetches = 0usize;
        let mut seen_during = Vec::new();
        while consumed < N {
            let mut got_any = false;
            for p in 0..PARTITIONS {
                let got = records_of(&consumer.fetch("load", p, next[p as usize]).records);
                fetches += 1;
                if let Some(last) = got.last() {
                    next[p as usize] = last.0 + 1;
                    consumed += got.len();
                    got_any = true;
                }
            }
            if consumed > 0 && seen_during.len() < 3 && got_any {
                seen_during.push((consumed, scrape()));
            }
            if !got_any {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        (consumed, fetches, seen_during, consumer)
    });
    let (sent_bytes, during) = produce.join().expect("producer thread");
    let (consumed, fetches, consumer_scrapes, consumer) = consume.join().expect("consumer thread");
    assert_eq!(consumed, N);
    let after = scrape();

    // Counted at least what had been acknowledged (or read) when scraped.
    for (acked, s) in &during {
        let records_in = value(s, "sluice_records_in_total{topic=\"load\"}") as usize;
        assert!(
            (*acked..=N).contains(&records_in),
            "records in {records_in} after {acked} acknowledged"
        );
        assert!(
            connections_open(s) >= 2.0,
            "producer and consumer connected"
        );
    }
    for (read, s) in &consumer_scrapes {
        let records_out = value(s, "sluice_records_out_total{topic=\"load\"}") as usize;
        assert!(
            records_out >= *read,
            "records out {records_out} after {read} read"
        );
    }

    // Cumulative series never go down, in the order the scrapes were taken
    // by one thread, and from any scrape to the final one.
    let mut ordered = vec![&baseline];
    ordered.extend(during.iter().map(|(_, s)| s));
    ordered.push(&after);
    for pair in ordered.windows(2) {
        assert_monotonic(pair[0], pair[1], "between producer scrapes");
    }
    for (_, s) in &consumer_scrapes {
        assert_monotonic(s, &after, "consumer scrape to final scrape");
    }

    // What was produced and consumed, exactly where it can be exact.
    assert_eq!(
        value(&after, "sluice_records_in_total{topic=\"load\"}") as usize,
        N
    );
    assert_eq!(
        value(&after, "sluice_bytes_in_total{topic=\"load\"}") as usize,
        sent_bytes,
        "bytes in are the batches sent"
    );
    assert!(value(&after, "sluice_records_out_total{topic=\"load\"}") as usize >= N);
    assert!(value(&after, "sluice_bytes_out_total{topic=\"load\"}") as usize >= sent_bytes);

    let grew = |key: &str, by: usize| {
        let before = baseline.get(key).copied().unwrap_or(0.0);
        let now = value(&after, key);
        assert!(
            now - before >= by as f64,
            "{key} grew by {} < {by}",
            now - before
        );
    };
    grew("sluice_requests_total{api=\"Produce\"}", REQUESTS);
    grew(
        "sluice_request_latency_seconds_count{api=\"Produce\"}",
        REQUESTS,
    );
    grew("sluice_requests_total{api=\"Fetch\"}", fetches);
    grew(
        "sluice_request_latency_seconds_count{api=\"Fetch\"}",
        fetches,
    );
    grew("sluice_produce_latency_seconds_count", REQUESTS);
    grew("sluice_fetch_latency_seconds_count", fetches);
    // flush=always: every acknowledged produce waited for a group commit.
    grew("sluice_flush_latency_seconds_count", 1);
    grew("sluice_flush_batch_bytes_sum", sent_bytes);
    for s in ordered.iter().skip(1) {
        for api in ["Produce", "Fetch"] {
            assert_histograms_consistent(
                s,
                "sluice_request_latency_seconds",
                &format!("api=\"{api}\""),
            );
        }
        for name in [
            "sluice_produce_latency_seconds",
            "sluice_fetch_latency_seconds",
            "sluice_flush_latency_seconds",
        ] {
            assert_histograms_consistent(s, name, "");
        }
    }

    // The gauge follows connections closing.
    let total_before: f64 = (0..2)
        .map(|shard| {
            value(
                &after,
                &format!("sluice_connections_total{{shard=\"{shard}\"}}"),
            )
        })
        .sum();
    assert!(
        total_before >= 3.0,
        "the setup, producer and consumer connections"
    );
    drop(consumer);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape();
        if connections_open(&s) == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connections still open after the clients left: {}",
            connections_open(&s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of `name` over every shard.
fn over_shards(s: &HashMap<String, f64>, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    s.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn cleaner_metrics_move_when_a_compacted_topic_is_cleaned() {
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut broker = Broker::start(&[
        "--shards",
        "1",
        "--metrics-listen",
        &metrics_addr,
        "--log-cleaner-backoff-ms",
        "50",
    ]);
    let (status, before) = get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    let before = samples(&before);
    for name in [
        "sluice_cleaner_passes_total",
        "sluice_cleaner_ios_total",
        "sluice_cleaner_io_bytes_total",
        "sluice_cleaner_deferred_ios_total",
        "sluice_cleaner_deferred_seconds_total",
        "sluice_cleaner_throttled_seconds_total",
    ] {
        assert_eq!(
            over_shards(&before, name),
            0.0,
            "{name} before any cleaning"
        );
    }

    let mut client = broker.connect();
    client.create_topic(
        "c",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    // The same five keys over and over: every sealed segment is dirty.
    let value_bytes = [7u8; 300];
    for _ in 0..20 {
        let records: Vec<(&[u8], &[u8])> = [b"a", b"b", b"c", b"d", b"e"]
            .iter()
            .map(|k| (&k[..], &value_bytes[..]))
            .collect();
        assert_eq!(client.produce("c", 0, batch(&records)).error_code, 0);
    }

    // The cleaner looks every 50 ms; a pass of a few KiB takes milliseconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let s = samples(&get(metrics_port, "/metrics").1);
        if over_shards(&s, "sluice_cleaner_passes_total") >= 1.0 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cleaner pass within 30 s: {}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(over_shards(&after, "sluice_cleaner_ios_total") >= 2.0);
    // Every read and write the pass made went through the pacing.
    assert!(
        over_shards(&after, "sluice_cleaner_io_bytes_total")
            >= over_shards(&after, "sluice_cleaner_read_bytes_total")
    );
    assert!(over_shards(&after, "sluice_cleaner_read_bytes_total") > 0.0);
    assert!(over_shards(&after, "sluice_cleaner_written_bytes_total") > 0.0);
    assert!(over_shards(&after, "sluice_cleaner_removed_records_total") > 0.0);
    assert_monotonic(&before, &after, "after a cleaner pass");
    broker.assert_serving();
}
