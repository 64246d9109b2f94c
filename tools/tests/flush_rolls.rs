//! Segment rolls under a pipelined acks=all load with `flush=always`.
//!
//! Regression: with a flush job in flight and a roll pending (whose job must
//! run alone), the shard's flusher started empty group-commit rounds in a
//! loop; the spinning task kept glommio from reaping the job's completion and
//! the shard hung at 100% CPU (found by perf/compare.sh, W1 with flush=always).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const MESSAGES: i64 = 300_000;
const PARTITIONS: i32 = 6;
/// Far longer than the run takes (under a second on a quiet machine).
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn acks_all_load_across_many_segment_rolls_completes() {
    let broker = Broker::start(&[
        "--flush",
        "always",
        "--num-partitions",
        "6",
        "--topic-default",
        "segment.bytes=262144",
    ]);
    let bootstrap = broker.addr().to_string();
    let messages = MESSAGES.to_string();
    let mut bench = sluice_command(&[
        "bench",
        "produce",
        "--bootstrap",
        &bootstrap,
        "--topic",
        "rolls",
        "--partitions",
        "6",
        "--acks",
        "all",
        "--message-size",
        "100",
        "--batch-size",
        "16KiB",
        "--connections",
        "4",
        "--messages",
        &messages,
        "--quiet",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start sluice bench");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = bench.try_wait().expect("wait for sluice bench") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = bench.kill();
            panic!(
                "the load did not finish within {DEADLINE:?}: the broker hangs\n{}",
                broker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "sluice bench failed: {status}");

    let mut client = broker.connect();
    let total: i64 = (0..PARTITIONS)
        .map(|p| client.latest_offset("rolls", p))
        .sum();
    assert_eq!(total, MESSAGES, "every acknowledged message is in the log");
    let segments = std::fs::read_dir(broker.data_dir.join("rolls-0"))
        .expect("partition dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(segments > 3, "the load rolled segments: {segments}");
}
