//! Start-up errors: `sluice serve` exits non-zero with a message on stderr
//! that names what is wrong.
//!
//! Not covered: a locked-memory limit or io_uring refused by the kernel,
//! which cannot be simulated safely from a test running as root.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{free_port, sluice_command};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `sluice serve` with `data_dir`, `listen` and `extra`; it must exit
/// on its own with a failure status.
fn serve_fails(data_dir: &Path, listen: &str, extra: &[&str]) -> String {
    let data = data_dir.to_str().expect("UTF-8 path");
    let mut args = vec!["serve", "--data-dir", data, "--listen", listen];
    if !extra.contains(&"--shards") {
        args.extend(["--shards", "1"]);
    }
    args.extend(extra);
    let mut child = sluice_command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while child.try_wait().expect("poll sluice").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let Output { stderr, .. } = child.wait_with_output().expect("collect output");
            panic!(
                "sluice {args:?} still running after {EXIT_TIMEOUT:?}:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "sluice {args:?} succeeded:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "a start-up error is not a panic:\n{stderr}"
    );
    stderr
}

#[test]
fn port_in_use_names_the_port() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let stderr = serve_fails(&dir.path().join("data"), &format!("127.0.0.1:{port}"), &[]);
    assert!(
        stderr.contains(&port.to_string()),
        "message names port {port}:\n{stderr}"
    );
    drop(taken);
}

#[test]
fn data_dir_under_a_regular_file_names_the_dir() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write a file");
    let data = file.join("data");
    let stderr = serve_fails(&data, &format!("127.0.0.1:{}", free_port()), &[]);
    assert!(
        stderr.contains(&data.display().to_string()),
        "message names {}:\n{stderr}",
        data.display()
    );
}

#[test]
fn unwritable_data_dir_names_the_dir() {
    // /proc refuses new entries even to root.
    let data = Path::new("/proc/sluice-test-data");
    let stderr = serve_fails(data, &format!("127.0.0.1:{}", free_port()), &[]);
    assert!(
        stderr.contains("/proc/sluice-test-data"),
        "message names the dir:\n{stderr}"
    );

    // A read-only directory, when this test runs without the privilege to
    // write anyway (root ignores the mode).
    let dir = tempfile::tempdir().expect("temporary directory");
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).expect("create dir");
    let mut perms = std::fs::metadata(&read_only).expect("stat").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&read_only, perms).expect("chmod");
    if std::fs::write(read_only.join("probe"), b"x").is_ok() {
        eprintln!("running with privileges that ignore a read-only mode: case skipped");
        return;
    }
    let stderr = serve_fails(&read_only, &format!("127.0.0.1:{}", free_port()), &[]);
    assert!(
        stderr.contains(&read_only.display().to_string()),
        "message names the dir:\n{stderr}"
    );
}

#[test]
fn invalid_flush_policy_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let listen = format!("127.0.0.1:{}", free_port());
    for bad in ["sometimes", "interval.ms=", "interval.ms=abc"] {
        let stderr = serve_fails(&dir.path().join("data"), &listen, &["--flush", bad]);
        assert!(
            stderr.contains("--flush") && stderr.contains(bad),
            "message names the flag and {bad:?}:\n{stderr}"
        );
    }
}

#[test]
fn invalid_shard_counts_are_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let listen = format!("127.0.0.1:{}", free_port());
    for shards in ["0", "100000"] {
        let stderr = serve_fails(&dir.path().join("data"), &listen, &["--shards", shards]);
        assert!(
            stderr.contains("shards"),
            "--shards {shards}: message names shards:\n{stderr}"
        );
    }
}
