//! `sluice produce` and `sluice consume` against a real broker: key
//! partitioning as Kafka's Java client does it, headers, compression,
//! format templates, start positions, the default group carrying offsets
//! between runs, and bad input.

mod cli_support;
mod common;

use cli_support::{at, sluice_env};
use common::Broker;

/// Keys and their partition of 3 under Kafka 4.4's default partitioner
/// (`Utils.toPositive(Utils.murmur2(key)) % 3`, computed with kafka-clients).
const JAVA_PARTITION_OF_3: &[(&str, i32)] = &[
    ("a", 1),
    ("ab", 2),
    ("abc", 0),
    ("key-0", 1),
    ("key-1", 0),
    ("user-1234", 1),
    ("a-little-bit-long-string", 2),
];

#[test]
fn keyed_records_land_where_java_puts_them_with_headers_and_compression() {
    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "keys", "-p", "3"], None).ok();
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let input: String = JAVA_PARTITION_OF_3
            .iter()
            .map(|(k, _)| format!("{k}:{codec}-{i}\n"))
            .collect();
        at(
            &broker,
            &[
                "produce", "keys", "-K", ":", "-H", "src=cli", "-H", "n=1", "-z", codec,
            ],
            Some(input.as_bytes()),
        )
        .ok();
    }
    let out = at(
        &broker,
        &[
            "consume",
            "keys",
            "--no-group",
            "--exit",
            "-f",
            "%t %p %k %s %h\\n",
        ],
        None,
    )
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), JAVA_PARTITION_OF_3.len() * 5, "{out}");
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], "keys");
        let want = JAVA_PARTITION_OF_3
            .iter()
            .find(|(k, _)| *k == f[2])
            .unwrap()
            .1;
        assert_eq!(f[1], want.to_string(), "key {} in partition {}", f[2], f[1]);
        assert_eq!(f[4], "src=cli,n=1", "{line}");
    }
    // Every codec's records came back.
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        assert!(out.contains(&format!(" {codec}-")), "{codec}: {out}");
    }
}

#[test]
fn round_robin_explicit_partition_files_and_positions() {
    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "t", "-p", "2"], None).ok();
    // Round-robin spreads unkeyed lines evenly.
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    at(&broker, &["produce", "t"], Some(input.as_bytes())).ok();
    let d = at(&broker, &["topic", "describe", "t"], None).ok();
    assert!(
        d.lines().filter(|l| l.trim_end().ends_with(" 5")).count() == 2,
        "{d}"
    );
    // Files, in order, to one partition; acks=1.
    let dir = tempfile::tempdir().unwrap();
    let f1 = dir.path().join("a.txt");
    let f2 = dir.path().join("b.txt");
    std::fs::write(&f1, "f1-a\nf1-b\n").unwrap();
    std::fs::write(&f2, "f2-a\r\nf2-b").unwrap();
    at(
        &broker,
        &[
            "produce",
            "t",
            f1.to_str().unwrap(),
            f2.to_str().unwrap(),
            "-p",
            "1",
            "--acks",
            "1",
        ],
        None,
    )
    .ok();
    let fmt = ["-f", "%p/%o=%s\\n"];
    let p1 = at(
        &broker,
        &[
            "consume",
            "t",
            "--no-group",
            "-e",
            "-p",
            "1",
            fmt[0],
            fmt[1],
            "--from",
            "offset:5",
        ],
        None,
    )
    .ok();
    assert_eq!(p1, "1/5=f1-a\n1/6=f1-b\n1/7=f2-a\n1/8=f2-b\n");
    // Negative offsets count from the end; end reads nothing; --count stops early.
    let tail = at(
        &broker,
        &[
            "consume",
            "t",
            "--no-group",
            "-e",
            "-p",
            "1",
            "--from",
            "offset:-2",
        ],
        None,
    )
    .ok();
    assert_eq!(tail, "f2-a\nf2-b\n");
    let none = at(
        &broker,
        &["consume", "t", "--no-group", "-e", "--from", "end"],
        None,
    )
    .ok();
    assert_eq!(none, "");
    let two = at(
        &broker,
        &["consume", "t", "--no-group", "-p", "0", "--count", "2"],
        None,
    )
    .ok();
    assert_eq!(two.lines().count(), 2, "{two}");
    // A timestamp after every record: nothing; at 0: everything.
    let future = format!("timestamp:{}", 4_000_000_000_000u64);
    let none = at(
        &broker,
        &["consume", "t", "--no-group", "-e", "--from", &future],
        None,
    )
    .ok();
    assert_eq!(none, "");
    let all = at(
        &broker,
        &["consume", "t", "--no-group", "-e", "--from", "timestamp:0"],
        None,
    )
    .ok();
    assert_eq!(all.lines().count(), 14, "{all}");
    // %T is the record's timestamp (ms, near now).
    let ts = at(
        &broker,
        &[
            "consume",
            "t",
            "--no-group",
            "-e",
            "--count",
            "1",
            "-f",
            "%T",
        ],
        None,
    )
    .ok();
    let ts: i64 = ts.parse().unwrap();
    assert!(ts > 1_600_000_000_000, "{ts}");
}

#[test]
fn the_default_group_carries_offsets_between_runs() {
    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "g", "-p", "2"], None).ok();
    let input: String = (0..6).map(|i| format!("r{i}\n")).collect();
    at(&broker, &["produce", "g"], Some(input.as_bytes())).ok();
    // First run: 4 records, committed in the default group.
    let first = at(&broker, &["consume", "g", "--count", "4"], None).ok();
    assert_eq!(first.lines().count(), 4, "{first}");
    // Second run continues: the other 2, then nothing.
    let second = at(&broker, &["consume", "g", "--exit"], None).ok();
    assert_eq!(second.lines().count(), 2, "{second}");
    let mut seen: Vec<&str> = first.lines().chain(second.lines()).collect();
    seen.sort();
    assert_eq!(seen, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(at(&broker, &["consume", "g", "--exit"], None).ok(), "");
    // The default group's name is configurable; a new one starts over.
    let addr = broker.addr().to_string();
    let other = sluice_env(
        &["consume", "g", "--exit", "-b", &addr],
        None,
        &[("SLUICE_DEFAULT_GROUP", "other")],
    )
    .ok();
    assert_eq!(other.lines().count(), 6, "{other}");
    // An explicit group, and --from overriding its commits.
    assert_eq!(
        at(&broker, &["consume", "g", "-g", "mine", "-e"], None)
            .ok()
            .lines()
            .count(),
        6
    );
    assert_eq!(
        at(&broker, &["consume", "g", "-g", "mine", "-e"], None).ok(),
        ""
    );
    let again = at(
        &broker,
        &["consume", "g", "-g", "mine", "-e", "--from", "beginning"],
        None,
    )
    .ok();
    assert_eq!(again.lines().count(), 6, "{again}");
    // --no-group commits nothing: the default group named "fresh" is
    // never created.
    let all = sluice_env(
        &["consume", "g", "--no-group", "-e", "-b", &addr],
        None,
        &[("SLUICE_DEFAULT_GROUP", "fresh")],
    )
    .ok();
    assert_eq!(all.lines().count(), 6, "{all}");
    let groups = at(&broker, &["group", "list"], None).ok();
    assert!(
        groups.contains("sluice-default") && groups.contains("mine"),
        "{groups}"
    );
    assert!(!groups.contains("fresh"), "{groups}");
}

#[test]
fn bad_input_is_refused_with_the_right_exit_code() {
    let broker = Broker::start(&["--auto-create-topics", "false"]);
    at(&broker, &["topic", "create", "t", "-p", "2"], None).ok();
    at(&broker, &["produce", "t"], Some(b"a\nb\n")).ok();
    // Unknown topic: 4, for both commands.
    at(&broker, &["produce", "missing"], Some(b"x\n")).fails(
        4,
        &["\"missing\" does not exist", "sluice topic create missing"],
    );
    at(&broker, &["consume", "missing", "--exit"], None).fails(4, &["does not exist"]);
    // A partition the topic lacks: 4.
    at(&broker, &["produce", "t", "-p", "7"], Some(b"x\n")).fails(4, &["partition 7", "0..=1"]);
    at(&broker, &["consume", "t", "-p", "9", "--exit"], None).fails(4, &["partition 9"]);
    // Offsets: malformed or outside the log: 2.
    at(&broker, &["consume", "t", "--from", "offset:abc"], None).fails(2, &["offset:abc"]);
    at(&broker, &["consume", "t", "--from", "yesterday"], None).fails(2, &["yesterday"]);
    at(
        &broker,
        &[
            "consume",
            "t",
            "--no-group",
            "--from",
            "offset:99",
            "--exit",
        ],
        None,
    )
    .fails(2, &["offset 99 is outside partition"]);
    // Format, acks, compression, missing separator, missing file: 2.
    at(&broker, &["consume", "t", "-f", "%q"], None).fails(2, &["%q"]);
    at(&broker, &["produce", "t", "--acks", "2"], Some(b"x\n")).fails(2, &["acks"]);
    at(&broker, &["produce", "t", "-z", "brotli"], Some(b"x\n")).fails(2, &["brotli"]);
    at(&broker, &["produce", "t", "-K", "="], Some(b"k=v\nnokey\n"))
        .fails(2, &["line 2", "key separator"]);
    at(&broker, &["produce", "t", "/nonexistent/input.txt"], None)
        .fails(2, &["/nonexistent/input.txt"]);
    // The line before the bad one was written.
    let out = at(
        &broker,
        &["consume", "t", "--no-group", "-e", "-f", "%k=%s\\n"],
        None,
    )
    .ok();
    assert!(out.contains("k=v"), "{out}");
}

#[test]
fn ctrl_c_while_following_commits_what_was_printed() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;

    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "f", "-p", "1"], None).ok();
    at(&broker, &["produce", "f"], Some(b"one\ntwo\n")).ok();
    let addr = broker.addr().to_string();
    let mut child = common::sluice_command(&["consume", "f", "-g", "follow", "-b", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice consume");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "one");
    assert_eq!(lines.next().unwrap().unwrap(), "two");
    // Following: a record produced now shows up too.
    at(&broker, &["produce", "f"], Some(b"three\n")).ok();
    assert_eq!(lines.next().unwrap().unwrap(), "three");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("poll consume") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consume ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "clean exit on Ctrl-C");
    let d = at(&broker, &["group", "describe", "follow"], None).ok();
    assert!(
        d.contains("Total lag: 0"),
        "all three printed records committed:\n{d}"
    );
}
