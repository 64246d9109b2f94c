//! `sluice group list | describe | reset-offsets | delete` against a real
//! broker: lag per partition, dry-run and executed resets, not-found errors.

mod cli_support;
mod common;

use cli_support::at;
use common::Broker;

/// (topic, partition, committed, log end, lag) rows of `group describe`.
fn lag_rows(describe: &str) -> Vec<(String, i32, i64, i64, i64)> {
    describe
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 5 {
                return None;
            }
            Some((
                f[0].to_string(),
                f[1].parse().ok()?,
                f[2].parse().ok()?,
                f[3].parse().ok()?,
                f[4].parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn groups_list_describe_with_lag_reset_and_delete() {
    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "t", "-p", "2"], None).ok();
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    at(&broker, &["produce", "t"], Some(input.as_bytes())).ok();
    // Read 3 of partition 0 and all of partition 1 in group "app".
    at(
        &broker,
        &["consume", "t", "-g", "app", "-p", "0", "--count", "3"],
        None,
    )
    .ok();
    at(
        &broker,
        &["consume", "t", "-g", "app", "-p", "1", "--exit"],
        None,
    )
    .ok();

    let list = at(&broker, &["group", "list"], None).ok();
    assert!(list.lines().any(|l| l == "app"), "{list}");
    let long = at(&broker, &["group", "list", "--long"], None).ok();
    assert!(long.lines().any(|l| l.starts_with("app\t")), "{long}");

    let d = at(&broker, &["group", "describe", "app"], None).ok();
    assert!(d.contains("Group: app") && d.contains("Members: 0"), "{d}");
    assert_eq!(
        lag_rows(&d),
        [("t".into(), 0, 3, 5, 2), ("t".into(), 1, 5, 5, 0)],
        "{d}"
    );
    assert!(d.contains("Total lag: 2"), "{d}");

    // A dry run shows the plan and changes nothing.
    let plan = at(
        &broker,
        &[
            "group",
            "reset-offsets",
            "app",
            "-t",
            "t",
            "--to",
            "beginning",
        ],
        None,
    );
    assert!(plan.stderr.contains("dry run"), "{plan:?}");
    let plan = plan.ok();
    assert!(
        plan.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["t", "0", "3", "0"]),
        "{plan}"
    );
    assert_eq!(
        lag_rows(&at(&broker, &["group", "describe", "app"], None).ok())[0].2,
        3
    );

    // Executed: shift back by 2 on partition 1 only, then to offset 1 everywhere.
    at(
        &broker,
        &[
            "group",
            "reset-offsets",
            "app",
            "-t",
            "t",
            "-p",
            "1",
            "--to",
            "shift:-2",
            "--execute",
        ],
        None,
    )
    .ok();
    let rows = lag_rows(&at(&broker, &["group", "describe", "app"], None).ok());
    assert_eq!((rows[0].2, rows[1].2), (3, 3), "{rows:?}");
    at(
        &broker,
        &[
            "group",
            "reset-offsets",
            "app",
            "-t",
            "t",
            "--to",
            "offset:1",
            "--execute",
        ],
        None,
    )
    .ok();
    let rows = lag_rows(&at(&broker, &["group", "describe", "app"], None).ok());
    assert_eq!((rows[0].2, rows[1].2), (1, 1), "{rows:?}");
    // The group's consumer resumes from the reset offsets.
    let out = at(&broker, &["consume", "t", "-g", "app", "--exit"], None).ok();
    assert_eq!(out.lines().count(), 8, "{out}");

    // Bad input.
    at(
        &broker,
        &[
            "group",
            "reset-offsets",
            "app",
            "-t",
            "t",
            "--to",
            "offset:50",
        ],
        None,
    )
    .fails(2, &["outside partition"]);
    at(
        &broker,
        &[
            "group",
            "reset-offsets",
            "app",
            "-t",
            "t",
            "--to",
            "sideways",
        ],
        None,
    )
    .fails(2, &["sideways"]);
    at(
        &broker,
        &["group", "reset-offsets", "app", "-t", "nope", "--to", "end"],
        None,
    )
    .fails(4, &["\"nope\" does not exist"]);
    at(&broker, &["group", "describe", "ghost"], None)
        .fails(4, &["group \"ghost\" does not exist"]);

    // Delete.
    let out = at(&broker, &["group", "delete", "app"], None).ok();
    assert!(out.contains("deleted group app"), "{out}");
    at(&broker, &["group", "delete", "app"], None).fails(4, &["app", "do not exist"]);
    let list = at(&broker, &["group", "list"], None).ok();
    assert!(!list.lines().any(|l| l == "app"), "{list}");
}
