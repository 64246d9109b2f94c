//! Regression: with the default, relative data dir (`./sluice-data`) every
//! write of a small metadata file failed (glommio cannot open a relative
//! directory to fsync it: EBADF), so no topic could be created and the README's
//! own run command served nothing. Every other test uses an absolute path.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, sluice_command, Client};

/// Kills the broker when the test ends, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_default_relative_data_dir_works() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log_path = dir.path().join("broker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = sluice_command(&[
        "serve",
        "--listen",
        &listen,
        "--shards",
        "1",
        "--metrics-listen",
        "off",
    ])
    .current_dir(dir.path())
    .stdout(log.try_clone().expect("clone"))
    .stderr(log)
    .spawn()
    .expect("spawn sluice");
    let mut child = KillOnDrop(child);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "sluice exited:\n{}",
            read_log()
        );
        if let Ok(stream) = TcpStream::connect(&listen) {
            let mut c = Client::new(stream);
            c.set_timeout(Duration::from_secs(5));
            if c.try_api_versions().is_ok() {
                break c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "sluice did not start:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // CreateTopics writes topics.json crash-safely (write, fsync, rename, fsync dir).
    let created = client.create_topic("relative", 2, &[]);
    assert_eq!(created.num_partitions, 2);
    assert!(
        dir.path().join("sluice-data/topics.json").exists(),
        "{}",
        read_log()
    );
    let mut batch = sluice_records::BatchBuilder::new(sluice_records::Compression::None);
    batch.push(0, Some(b"k"), Some(b"v"), &[]);
    let answer = client.produce("relative", 1, batch.build());
    assert_eq!(
        answer.error_code,
        0,
        "{:?}\n{}",
        answer.error_message,
        read_log()
    );
    drop(child);
    assert!(
        !read_log().contains("Bad file descriptor"),
        "{}",
        read_log()
    );
}
