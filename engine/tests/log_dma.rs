//! The partition log on the real disk: glommio `DmaFile`s (O_DIRECT) in a temp dir.

mod common;

use std::cell::RefCell;
use std::future::Future;
use std::path::{Path, PathBuf};

use common::{batch, read_all, value_of, NOW};
use engine::log::{flush, offset_for_timestamp, read, truncate_to, PartitionLog};
use engine::recovery::close;
use engine::storage::dma::{prime_device, DmaStorage};
use engine::{CacheBudget, FlushPolicy, LogConfig, LogError};
use glommio::{LocalExecutorBuilder, Placement};

/// Registered I/O memory per executor: tests run in parallel threads and
/// memlock is 8 MiB here; each executor registers it in three rings (PLATFORM.md).
const TEST_IO_MEMORY_BYTES: usize = 512 << 10;

/// Runs `f` inside a glommio executor, on a fresh temp dir whose device is primed.
fn on_disk<G, F>(f: G)
where
    G: FnOnce(PathBuf) -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(TEST_IO_MEMORY_BYTES)
        .spawn(move || async move {
            prime_device(&root).await.expect("prime the device");
            f(root.join("topic-0")).await;
        })
        .expect("spawn executor")
        .join()
        .expect("executor ran");
    drop(tmp);
}

async fn open_at(
    dir: &Path,
    cfg: &LogConfig,
    cache_bytes: usize,
) -> Result<RefCell<PartitionLog<DmaStorage>>, LogError> {
    engine::recovery::open(
        DmaStorage,
        dir.to_path_buf(),
        cfg.clone(),
        CacheBudget::new(cache_bytes),
        NOW,
    )
    .await
    .map(RefCell::new)
}

/// Appends `count` batches of 3 records (flushing every `flush_every`), returns
/// the expected records.
async fn fill(
    log: &RefCell<PartitionLog<DmaStorage>>,
    ids: std::ops::Range<u32>,
    flush_every: u32,
) -> Vec<(i64, Vec<u8>)> {
    let mut expected = Vec::new();
    let mut last = None;
    for id in ids {
        let a = log
            .borrow_mut()
            .append(&batch(id, 3, NOW + i64::from(id)), 0, NOW)
            .expect("append");
        for i in 0..3 {
            expected.push((a.base_offset + i as i64, value_of(id, i)));
        }
        last = Some(a.last_offset);
        if id % flush_every == flush_every - 1 {
            flush(log, NOW, false).await;
        }
    }
    flush(log, NOW, false).await;
    if let Some(last) = last {
        let wait = log.borrow_mut().wait_visible(last + 1);
        wait.await.expect("visible");
    }
    expected
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn workload(flush_policy: FlushPolicy, preallocate_bytes: u64) {
    on_disk(move |dir| async move {
        let cfg = LogConfig {
            flush: flush_policy,
            segment_bytes: 256 << 10,
            preallocate_bytes,
            ..LogConfig::default()
        };
        let log = open_at(&dir, &cfg, 64 << 20).await.expect("open");
        let flush_every = if flush_policy == FlushPolicy::Always {
            8
        } else {
            64
        };
        let mut expected = fill(&log, 0..3000, flush_every).await;
        let segments = log.borrow().segment_count();
        assert!(segments >= 4, "rolled several times: {segments}");
        // Hot: from the tail cache.
        assert_eq!(read_all(&log, 0).await.expect("hot read"), expected);

        // Sealed segments are trimmed to their logical length on disk.
        let logs = files_with(&dir, "log");
        assert_eq!(logs.len(), segments);
        for p in &logs[..logs.len() - 1] {
            let len = std::fs::metadata(p).expect("stat").len();
            let data = std::fs::read(p).expect("read");
            let mut it = sluice_records::BatchIter::new(&data);
            for b in it.by_ref() {
                b.expect("a sealed segment holds only whole, valid batches");
            }
            assert_eq!(it.position() as u64, len, "{} trimmed", p.display());
        }
        if preallocate_bytes > 0 {
            let active = std::fs::metadata(&logs[logs.len() - 1])
                .expect("stat")
                .len();
            assert_eq!(active % preallocate_bytes, 0, "preallocated in chunks");
        }

        // Cold, after an unclean drop: the active segment is scanned (and its
        // preallocated zeros are not mistaken for corruption).
        drop(log);
        let log = open_at(&dir, &cfg, 1 << 20).await.expect("reopen unclean");
        assert_eq!(read_all(&log, 0).await.expect("cold read"), expected);
        expected.extend(fill(&log, 5000..5200, flush_every).await);
        close(&log, NOW).await.expect("close");
        drop(log);

        // Clean reopen: nothing scanned, everything there; offsets continue.
        let log = open_at(&dir, &cfg, 1 << 20).await.expect("reopen clean");
        assert_eq!(log.borrow().log_end_offset(), expected.len() as i64);
        assert_eq!(read_all(&log, 0).await.expect("cold read"), expected);
        assert_eq!(
            offset_for_timestamp(&log, NOW + 1500)
                .await
                .expect("lookup"),
            Some((4500, NOW + 1500)),
            "timestamp lookup from disk"
        );
        let a = log
            .borrow_mut()
            .append(&batch(9999, 2, NOW), 0, NOW)
            .expect("append");
        assert_eq!(a.base_offset, expected.len() as i64);
    });
}

#[test]
fn flush_always_across_rolls_hot_cold_clean_unclean() {
    workload(FlushPolicy::Always, 1 << 20);
}

#[test]
fn flush_never_across_rolls_hot_cold_clean_unclean() {
    workload(FlushPolicy::Never, 1 << 20);
}

#[test]
fn without_preallocation() {
    workload(FlushPolicy::Always, 0);
}

#[test]
fn flipped_bit_in_a_sealed_segment_file_is_detected_on_read() {
    on_disk(|dir| async move {
        let cfg = LogConfig {
            segment_bytes: 16 << 10,
            ..LogConfig::default()
        };
        let log = open_at(&dir, &cfg, 1 << 20).await.expect("open");
        fill(&log, 0..200, 10).await;
        close(&log, NOW).await.expect("close");
        drop(log);
        let first = dir.join("00000000000000000000.log");
        let mut data = std::fs::read(&first).expect("read segment");
        data[300] ^= 0x10;
        std::fs::write(&first, &data).expect("write segment");
        let log = open_at(&dir, &cfg, 1 << 20).await.expect("reopen");
        let err = read(&log, 0, 1 << 20)
            .await
            .expect_err("corruption is reported");
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
        // Later segments are still served.
        let later = read(&log, 150, 1 << 20)
            .await
            .expect("a later segment reads");
        assert!(!later.chunks.is_empty());
    });
}

#[test]
fn truncate_on_disk_rewrites_the_partial_tail_block() {
    on_disk(|dir| async move {
        let cfg = LogConfig {
            segment_bytes: 64 << 10,
            ..LogConfig::default()
        };
        let log = open_at(&dir, &cfg, 1 << 20).await.expect("open");
        let expected = fill(&log, 0..600, 16).await;
        // Record 3*250 starts batch 250: an unaligned position in some segment.
        truncate_to(&log, 750).await.expect("truncate");
        let mut want = expected[..750].to_vec();
        want.extend(fill(&log, 1000..1100, 16).await);
        drop(log);
        let log = open_at(&dir, &cfg, 1 << 20).await.expect("reopen");
        assert_eq!(read_all(&log, 0).await.expect("cold read"), want);
    });
}
