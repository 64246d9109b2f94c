//! Progress of long CLI work (`sluice produce` from a file, `group
//! reset-offsets`) is drawn when stderr is a terminal and absent when it is a
//! pipe. The terminal is a pseudo-terminal made by util-linux `script`, which
//! copies everything the command writes to it onto its own stdout.

mod cli_support;
mod common;

use std::process::{Command, Stdio};

use cli_support::{at, Run};
use common::Broker;

/// What a progress redraw starts with: carriage return, erase line.
const REDRAW: &str = "\r\x1b[2K";

/// Quotes `s` for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `sluice args...` with stdin, stdout and stderr on a pseudo-terminal;
/// returns its exit code and everything it wrote there.
fn on_terminal(args: &[&str]) -> Run {
    let mut line = sh_quote(env!("CARGO_BIN_EXE_sluice"));
    for a in args {
        line.push(' ');
        line.push_str(&sh_quote(a));
    }
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_LOG_LEVEL")
        .env_remove("SLUICE_BOOTSTRAP_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("run util-linux `script` (needed to give sluice a terminal)");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn produce_from_a_file_shows_progress_on_a_terminal_only() {
    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "big", "-p", "3"], None).ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    const LINES: usize = 20_000;
    let text: String = (0..LINES).map(|i| format!("record-{i:08}\n")).collect();
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let addr = broker.addr().to_string();

    let tty = on_terminal(&["produce", "big", f, "-b", &addr]);
    assert_eq!(tty.code, 0, "{tty:#?}");
    let shown = &tty.stdout;
    assert!(
        shown.contains(&format!("{REDRAW}produced ")),
        "no progress line on the terminal: {shown:?}"
    );
    assert!(
        shown.contains(&format!("produced {LINES} records to big (3 partitions)")),
        "no summary on the terminal: {shown:?}"
    );

    let piped = at(&broker, &["produce", "big", f], None);
    assert_eq!(piped.code, 0, "{piped:#?}");
    assert_eq!(piped.stderr, "", "piped stderr must carry no progress");
    assert_eq!(piped.stdout, "");

    // Both runs wrote every line.
    let out = at(
        &broker,
        &["consume", "big", "--no-group", "--exit", "-f", "%s\\n"],
        None,
    )
    .ok();
    assert_eq!(out.lines().count(), 2 * LINES);
}

#[test]
fn reset_offsets_shows_progress_on_a_terminal_only() {
    let broker = Broker::start(&[]);
    at(&broker, &["topic", "create", "many", "-p", "40"], None).ok();
    let input: String = (0..200).map(|i| format!("v{i}\n")).collect();
    at(&broker, &["produce", "many"], Some(input.as_bytes())).ok();
    at(
        &broker,
        &["consume", "many", "-g", "app", "--exit", "-f", "%s\\n"],
        None,
    )
    .ok();
    let addr = broker.addr().to_string();
    let reset = [
        "group",
        "reset-offsets",
        "app",
        "-t",
        "many",
        "--to",
        "beginning",
        "--execute",
    ];

    let mut args = reset.to_vec();
    args.extend(["-b", &addr]);
    let tty = on_terminal(&args);
    assert_eq!(tty.code, 0, "{tty:#?}");
    assert!(
        tty.stdout
            .contains(&format!("{REDRAW}reset 40 of 40 partitions")),
        "no progress line on the terminal: {:?}",
        tty.stdout
    );
    assert!(
        tty.stdout
            .contains("reset the offsets of group app on 40 partition(s) of many"),
        "{:?}",
        tty.stdout
    );

    let piped = at(&broker, &reset, None);
    assert_eq!(piped.code, 0, "{piped:#?}");
    assert_eq!(piped.stderr, "", "piped stderr must carry no progress");
    assert!(!piped.stdout.contains('\r'), "{:?}", piped.stdout);
    assert!(piped
        .stdout
        .contains("reset the offsets of group app on 40 partition(s) of many"));
}
