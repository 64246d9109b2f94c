//! Helpers of the CLI tests: run `sluice <command>` against a broker and
//! collect its exit code, stdout and stderr.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::io::Write;
use std::process::Stdio;

use crate::common::{sluice_command, Broker};

/// What a finished command left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self.stdout
    }

    /// Asserts exit `code` with every `needles` in stderr; returns stderr.
    pub fn fails(self, code: i32, needles: &[&str]) -> String {
        assert_eq!(self.code, code, "expected exit code {code}: {self:#?}");
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}: {self:#?}");
        }
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self.stderr
    }
}

/// Runs `sluice args...` with `stdin` (None: empty), environment `env`.
pub fn sluice_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = sluice_command(args);
    for var in [
        "SLUICE_BOOTSTRAP_SERVER",
        "SLUICE_DEFAULT_GROUP",
        "SLUICE_TIMEOUT_MS",
        "SLUICE_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sluice");
    let mut pipe = child.stdin.take().expect("stdin piped");
    let input = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for sluice");
    writer.join().expect("stdin writer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn sluice(args: &[&str], stdin: Option<&[u8]>) -> Run {
    sluice_env(args, stdin, &[])
}

/// Runs `sluice <command> -b <broker> args...`.
pub fn at(broker: &Broker, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let addr = broker.addr().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--bootstrap-server", &addr]);
    sluice(&all, stdin)
}

/// An address nothing listens on.
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", crate::common::free_port())
}
