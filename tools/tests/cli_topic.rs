//! `sluice topic` and `sluice cluster` against a real broker: output and exit
//! codes, including unknown topics, bad arguments and an unreachable broker.

mod cli_support;
mod common;

use cli_support::{at, dead_addr, sluice};
use common::Broker;

/// The (partition, leader, earliest, latest) rows of `topic describe`.
fn rows(describe: &str) -> Vec<(i32, i32, i64, i64)> {
    describe
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 6 {
                return None;
            }
            Some((
                f[0].parse().ok()?,
                f[1].parse().ok()?,
                f[4].parse().ok()?,
                f[5].parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn topic_lifecycle_create_list_describe_alter_delete() {
    let broker = Broker::start(&["--auto-create-topics", "false"]);
    let out = at(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=100000",
        ],
        None,
    )
    .ok();
    assert!(
        out.contains("created topic orders with 3 partition(s)"),
        "{out}"
    );
    // The broker's default partition count when none is given.
    at(&broker, &["topic", "create", "events"], None).ok();
    let list = at(&broker, &["topic", "list"], None).ok();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["events", "orders"],
        "{list}"
    );
    let all = at(&broker, &["topic", "list", "--internal"], None).ok();
    assert!(all.lines().count() >= 2, "{all}");

    // Describe: configs, a row per partition with leader and offsets.
    at(
        &broker,
        &["produce", "orders", "--partition", "1"],
        Some(b"a\nb\nc\n"),
    )
    .ok();
    let d = at(&broker, &["topic", "describe", "orders"], None).ok();
    assert!(
        d.contains("Partitions: 3") && d.contains("retention.ms=100000"),
        "{d}"
    );
    assert_eq!(rows(&d), [(0, 0, 0, 0), (1, 0, 0, 3), (2, 0, 0, 0)], "{d}");

    // Alter: more partitions, a config set and one removed.
    let out = at(
        &broker,
        &[
            "topic",
            "alter",
            "orders",
            "-p",
            "5",
            "-c",
            "retention.ms=5000",
            "-c",
            "segment.ms=600000",
        ],
        None,
    )
    .ok();
    assert!(out.contains("now has 5 partition(s)"), "{out}");
    at(
        &broker,
        &["topic", "alter", "orders", "--delete-config", "segment.ms"],
        None,
    )
    .ok();
    let d = at(&broker, &["topic", "describe", "orders"], None).ok();
    assert!(
        d.contains("Partitions: 5") && d.contains("retention.ms=5000"),
        "{d}"
    );
    assert!(!d.contains("segment.ms"), "{d}");
    assert_eq!(rows(&d).len(), 5, "{d}");
    at(&broker, &["topic", "alter", "orders", "-p", "2"], None)
        .fails(2, &["partitions can only be added"]);
    at(&broker, &["topic", "alter", "orders"], None).fails(2, &["nothing to alter"]);

    // Errors.
    at(&broker, &["topic", "create", "orders"], None)
        .fails(1, &["already exists", "--if-not-exists"]);
    at(
        &broker,
        &["topic", "create", "orders", "--if-not-exists"],
        None,
    )
    .ok();
    at(&broker, &["topic", "create", "bad", "-p", "0"], None).fails(2, &["at least 1 partition"]);
    at(&broker, &["topic", "create", "bad name!"], None).fails(2, &["bad name!"]);
    at(&broker, &["topic", "describe", "nope"], None)
        .fails(4, &["\"nope\" does not exist", "sluice topic create nope"]);
    at(&broker, &["topic", "alter", "nope", "-p", "2"], None).fails(4, &["does not exist"]);

    // Delete.
    let out = at(&broker, &["topic", "delete", "events"], None).ok();
    assert!(out.contains("deleted topic events"), "{out}");
    at(&broker, &["topic", "delete", "events"], None).fails(4, &["events", "--if-exists"]);
    at(&broker, &["topic", "delete", "events", "--if-exists"], None).ok();
    let list = at(&broker, &["topic", "list"], None).ok();
    assert_eq!(list.trim(), "orders");
}

#[test]
fn cluster_describe_lists_the_broker() {
    let broker = Broker::start(&["--cluster-id", "cli-test", "--node-id", "3"]);
    let out = at(&broker, &["cluster", "describe"], None).ok();
    assert!(out.contains("Cluster id: cli-test"), "{out}");
    assert!(out.contains("Brokers: 1"), "{out}");
    assert!(out.contains(&broker.addr().to_string()), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("3 ")),
        "{out}"
    );
}

#[test]
fn an_unreachable_broker_is_exit_3_with_advice() {
    let addr = dead_addr();
    for args in [
        vec!["topic", "list"],
        vec!["cluster", "describe"],
        vec!["group", "list"],
        vec!["consume", "t", "--exit"],
        vec!["produce", "t"],
    ] {
        let mut args = args;
        args.extend(["-b", &addr]);
        sluice(&args, Some(b"x\n")).fails(3, &["broker unreachable", &addr, "--bootstrap-server"]);
    }
    // Usage errors come before any connection.
    sluice(&["topic", "frobnicate"], None).fails(2, &[]);
    let help = sluice(&["topic", "--help"], None).ok();
    assert!(
        help.contains("Exit codes") && help.contains("3 broker unreachable"),
        "{help}"
    );
}
