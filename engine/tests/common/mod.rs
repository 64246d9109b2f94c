#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use engine::log::{read, PartitionLog};
use engine::recovery::close;
use engine::storage::memory::{CrashKind, MemStorage};
use engine::storage::Storage;
use engine::{CacheBudget, LogConfig, LogError};
use sluice_records::{BatchBuilder, Compression, RecordIter};

pub const NOW: i64 = 1_700_000_000_000;

pub fn dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

/// A batch of `n` records whose values are `"v<id>-<i>"`, timestamps `ts`.
pub fn batch(id: u32, n: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        let key = format!("k{}", i % 7);
        let value = format!("v{id}-{i}-{}", "x".repeat((id as usize * 13) % 200));
        b.push(
            ts,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[("h", Some(b"1"))],
        );
    }
    b.build()
}

pub fn value_of(id: u32, i: usize) -> Vec<u8> {
    format!("v{id}-{i}-{}", "x".repeat((id as usize * 13) % 200)).into_bytes()
}

pub async fn open<S: Storage>(
    storage: &S,
    cfg: &LogConfig,
) -> Result<RefCell<PartitionLog<S>>, LogError> {
    engine::recovery::open(
        storage.clone(),
        dir(),
        cfg.clone(),
        CacheBudget::new(1 << 20),
        NOW,
    )
    .await
    .map(RefCell::new)
}

/// Every record readable from `from` to the visible end: (offset, value).
pub async fn read_all<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    from: i64,
) -> Result<Vec<(i64, Vec<u8>)>, LogError> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = read(log, offset, 64 << 10).await?;
        if r.chunks.is_empty() {
            return Ok(out);
        }
        for chunk in r.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let len = sluice_records::BatchHeader::parse(&chunk[at..])
                    .expect("a stored header parses")
                    .total_len();
                let (h, records) =
                    RecordIter::from_batch(&chunk[at..at + len]).expect("a stored batch parses");
                for rec in records {
                    let rec = rec.expect("a stored record parses");
                    let o = rec.offset(&h);
                    if o >= offset {
                        out.push((o, rec.value.unwrap_or_default().to_vec()));
                    }
                }
                at += h.total_len();
                offset = h.last_offset() + 1;
            }
        }
    }
}

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        index_interval_bytes: 1024,
        preallocate_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

pub fn path_of(name: &str) -> PathBuf {
    dir().join(name)
}

pub fn exists<P: AsRef<Path>>(p: P) -> bool {
    p.as_ref().exists()
}

/// How a test log ends before it is opened again: a clean close (`None`), a
/// killed process, a power loss.
pub const ENDINGS: [Option<CrashKind>; 3] = [
    None,
    Some(CrashKind::ProcessKill),
    Some(CrashKind::PowerLoss),
];

/// Runs `test` once for each of [`ENDINGS`].
pub fn for_each_ending<F, Fut>(mut test: F)
where
    F: FnMut(Option<CrashKind>) -> Fut,
    Fut: Future<Output = ()>,
{
    for ending in ENDINGS {
        futures::executor::block_on(test(ending));
    }
}

/// Ends `log` as `ending` says and returns the storage a reopen finds: after
/// a clean close, or as the crash left it.
pub async fn end_log(
    log: RefCell<PartitionLog<MemStorage>>,
    storage: &MemStorage,
    ending: Option<CrashKind>,
) -> MemStorage {
    match ending {
        None => {
            close(&log, NOW).await.expect("close");
            drop(log);
            storage.clone()
        }
        Some(kind) => {
            drop(log);
            storage.after_crash(kind)
        }
    }
}
