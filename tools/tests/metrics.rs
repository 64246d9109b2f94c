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
