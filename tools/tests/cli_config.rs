//! `sluice serve` configuration: the TOML file, SLUICE_* variables and flags
//! in order of precedence, `--print-config`, refusal of bad config with exit
//! code 2 naming the key, and every key documented in `--help` and in
//! docs/configuration.md.

mod cli_support;
mod common;

use cli_support::{at, sluice, sluice_env};
use common::Broker;

/// `key = value` lines of a `--print-config` output (comments skipped).
fn keys(toml: &str) -> Vec<(String, String)> {
    toml.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains(" = "))
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("key = value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn print_config_shows_defaults_then_file_env_and_flags_in_precedence() {
    let defaults = sluice(&["serve", "--print-config"], None).ok();
    let d = keys(&defaults);
    assert!(
        d.contains(&("num_partitions".into(), "1".into())),
        "{defaults}"
    );
    assert!(d.contains(&("flush".into(), "always".into())), "{defaults}");
    assert!(defaults.contains("# shards: unset"), "{defaults}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "num_partitions = 3\nnode_id = 7\nflush = \"never\"\ncluster_id = \"from-file\"\n\
         [topic_defaults]\n\"retention.ms\" = \"1000\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // The file alone.
    let out = sluice(&["serve", "--config", f, "--print-config"], None).ok();
    let k = keys(&out);
    assert!(k.contains(&("num_partitions".into(), "3".into())), "{out}");
    assert!(k.contains(&("node_id".into(), "7".into())), "{out}");
    assert!(out.contains("\"retention.ms\" = \"1000\""), "{out}");
    // A variable beats the file; a flag beats both.
    let out = sluice_env(
        &["serve", "--config", f, "--print-config", "--node-id", "9"],
        None,
        &[("SLUICE_NUM_PARTITIONS", "5"), ("SLUICE_NODE_ID", "8")],
    )
    .ok();
    let k = keys(&out);
    assert!(k.contains(&("num_partitions".into(), "5".into())), "{out}");
    assert!(k.contains(&("node_id".into(), "9".into())), "{out}");
    assert!(k.contains(&("flush".into(), "never".into())), "{out}");
    assert!(
        k.contains(&("cluster_id".into(), "from-file".into())),
        "{out}"
    );
    // SLUICE_CONFIG names the file too, and the output reads back as a config.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &out).unwrap();
    let round = sluice_env(
        &["serve", "--print-config"],
        None,
        &[("SLUICE_CONFIG", again.to_str().unwrap())],
    )
    .ok();
    assert_eq!(keys(&round), keys(&out));
}

#[test]
fn bad_config_is_refused_with_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let unknown = write("unknown.toml", "num_partitons = 3\n");
    sluice(&["serve", "--config", &unknown], None).fails(2, &["num_partitons", "unknown field"]);
    let wrong_type = write("type.toml", "num_partitions = \"three\"\n");
    sluice(&["serve", "--config", &wrong_type], None).fails(2, &["num_partitions", "three"]);
    let malformed = write("malformed.toml", "listen = \n");
    sluice(&["serve", "--config", &malformed], None).fails(2, &["malformed.toml", "listen"]);
    let bad_value = write("value.toml", "listen = \"localhost\"\n");
    sluice(&["serve", "--config", &bad_value], None)
        .fails(2, &["listen = \"localhost\"", "SLUICE_LISTEN", "--listen"]);
    let missing = dir.path().join("missing.toml");
    sluice(&["serve", "--config", missing.to_str().unwrap()], None)
        .fails(2, &["missing.toml", "cannot read"]);
    sluice_env(
        &["serve", "--print-config"],
        None,
        &[("SLUICE_FLUSH", "sometimes")],
    )
    .fails(
        2,
        &["flush = \"sometimes\"", "always, never or interval.ms=N"],
    );
    sluice(&["serve", "--print-config", "--num-partitions", "0"], None)
        .fails(2, &["num_partitions = \"0\""]);
    sluice(
        &[
            "serve",
            "--print-config",
            "--log-cleaner-defer-wait-us",
            "501",
        ],
        None,
    )
    .fails(
        2,
        &["log_cleaner_defer_wait_us = \"501\"", "between 0 and 500"],
    );
    sluice(
        &["serve", "--print-config", "--topic-default", "retention.ms"],
        None,
    )
    .fails(2, &["retention.ms", "NAME=VALUE"]);
    let minmax = write(
        "sessions.toml",
        "group_min_session_timeout_ms = 10000\ngroup_max_session_timeout_ms = 5000\n",
    );
    sluice(&["serve", "--config", &minmax], None).fails(2, &["group_max_session_timeout_ms"]);
    sluice(
        &[
            "serve",
            "--print-config",
            "--broker-heartbeat-interval-ms",
            "3000",
            "--broker-session-timeout-ms",
            "3000",
        ],
        None,
    )
    .fails(
        2,
        &[
            "broker_session_timeout_ms = \"3000\"",
            "longer than broker_heartbeat_interval_ms",
        ],
    );
    sluice_env(
        &["serve", "--print-config", "--node-id", "4"],
        None,
        &[(
            "SLUICE_CONTROLLER_VOTERS",
            "1@127.0.0.1:9093,2@127.0.0.2:9093",
        )],
    )
    .fails(
        2,
        &[
            "controller_voters",
            "node_id 4 is not among the voters (1, 2)",
        ],
    );
    sluice(
        &[
            "serve",
            "--print-config",
            "--controller-voters",
            "1@127.0.0.1",
        ],
        None,
    )
    .fails(2, &["controller_voters = \"1@127.0.0.1\"", "HOST:PORT"]);
    let out = sluice(
        &[
            "serve",
            "--print-config",
            "--node-id",
            "2",
            "--controller-voters",
            "1@127.0.0.1:9093,2@127.0.0.2:9093",
        ],
        None,
    )
    .ok();
    assert!(
        keys(&out).contains(&(
            "controller_voters".into(),
            "1@127.0.0.1:9093,2@127.0.0.2:9093".into()
        )),
        "{out}"
    );
}

#[test]
fn every_key_is_documented_with_its_default_in_help_and_docs() {
    let help = sluice(&["serve", "--help"], None).ok();
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .expect("docs/configuration.md exists");
    let defaults = sluice(&["serve", "--print-config"], None).ok();
    let mut all: Vec<String> = keys(&defaults).into_iter().map(|(k, _)| k).collect();
    all.extend(
        [
            "shards",
            "advertised_host",
            "spin_before_park_us",
            "controller_voters",
            "controller_listen",
            "topic_defaults",
        ]
        .map(String::from),
    );
    // clap wraps long help lines; compare on one line.
    let flat_help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for key in &all {
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("SLUICE_{}", key.to_uppercase());
        let flag = if key == "topic_defaults" {
            "--topic-default".to_string()
        } else {
            flag
        };
        assert!(
            flat_help.contains(&format!("Key {key}")),
            "--help lacks key {key}"
        );
        assert!(flat_help.contains(&flag), "--help lacks {flag}");
        assert!(flat_help.contains(&env), "--help lacks {env}");
        assert!(docs.contains(&format!("`{key}`")), "docs lack key {key}");
        assert!(docs.contains(&env), "docs lack {env}");
    }
    for (key, value) in keys(&defaults) {
        assert!(
            flat_help.contains(&format!("Key {key}, default {value}")),
            "--help lacks the default {value} of {key}"
        );
        assert!(
            docs.contains(&format!("`{value}`")),
            "docs lack the default {value} of {key}"
        );
    }
    let top = sluice(&["--help"], None).ok();
    assert!(top.contains("Exit codes"), "{top}");
    assert!(docs.contains("Exit codes"), "docs lack exit codes");
}

#[test]
fn a_config_file_configures_the_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "num_partitions = 3\ncluster_id = \"cfg-test\"\n").unwrap();
    let f = file.to_str().unwrap().to_string();
    let broker = Broker::start(&["--config", &f]);
    // An auto-created topic gets the file's partition count.
    at(&broker, &["produce", "auto", "--auto-create"], Some(b"x\n")).ok();
    let out = at(&broker, &["topic", "describe", "auto"], None).ok();
    assert!(out.contains("Partitions: 3"), "{out}");
    let out = at(&broker, &["cluster", "describe"], None).ok();
    assert!(out.contains("Cluster id: cfg-test"), "{out}");
}

#[test]
fn the_log_level_is_a_config_key_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.toml");
    std::fs::write(&file, "log_level = \"warn\"\n").unwrap();
    let f = file.to_str().unwrap();
    let level = |out: &str| {
        keys(out)
            .into_iter()
            .find(|(k, _)| k == "log_level")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no log_level in {out}"))
    };
    let d = sluice(&["serve", "--print-config"], None).ok();
    assert_eq!(level(&d), "info");
    let out = sluice(&["serve", "--config", f, "--print-config"], None).ok();
    assert_eq!(level(&out), "warn");
    let env = [("SLUICE_LOG_LEVEL", "info,net=debug")];
    let out = sluice_env(&["serve", "--config", f, "--print-config"], None, &env).ok();
    assert_eq!(level(&out), "info,net=debug");
    let out = sluice_env(
        &[
            "serve",
            "--config",
            f,
            "--print-config",
            "--log-level",
            "error",
        ],
        None,
        &env,
    )
    .ok();
    assert_eq!(level(&out), "error");

    // A typo is refused, naming the key, the value and why, from any source.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "log_level = \"inf\"\n").unwrap();
    sluice(&["serve", "--config", typo.to_str().unwrap()], None).fails(
        2,
        &[
            "log_level = \"inf\"",
            "neither a level",
            "SLUICE_LOG_LEVEL",
            "--log-level",
        ],
    );
    sluice_env(
        &["serve", "--print-config"],
        None,
        &[("SLUICE_LOG_LEVEL", "net=loud")],
    )
    .fails(2, &["log_level = \"net=loud\""]);
    // The client commands refuse it too, before doing anything.
    sluice(&["topic", "list", "--log-level", "verbose"], None)
        .fails(2, &["--log-level", "verbose", "neither a level"]);
}

#[test]
fn the_broker_logs_at_the_configured_level() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quiet.toml");
    std::fs::write(&file, "log_level = \"warn\"\n").unwrap();
    let f = file.to_str().unwrap().to_string();
    let quiet = Broker::start(&["--config", &f]);
    let chatty = Broker::start(&[]);
    let (quiet_log, chatty_log) = (quiet.log(), chatty.log());
    assert!(chatty_log.contains("starting sluice"), "{chatty_log}");
    assert!(!quiet_log.contains("starting sluice"), "{quiet_log}");
    assert!(!quiet_log.contains(" INFO "), "{quiet_log}");
}
