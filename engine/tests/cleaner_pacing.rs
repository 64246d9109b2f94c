//! The cleaner's pacing against the data path of its shard: it defers its
//! I/O while produce or fetch disk I/O is in flight, yet keeps a guaranteed
//! share, so a pass still ends while produce never stops.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use engine::cleaner::{clean, CleanStats, CleanerOptions, PaceOptions, PaceStats, RatePace};
use engine::log::{data_io_in_flight, flush, DataIoGuard, PartitionLog};
use engine::storage::dma::{prime_device, DmaStorage};
use engine::storage::memory::MemStorage;
use engine::storage::Storage;
use engine::{CacheBudget, CleanupPolicy, FlushPolicy, LogConfig};
use glommio::{LocalExecutorBuilder, Placement};
use sluice_records::{BatchBuilder, Compression};

const NOW: i64 = 1_700_000_000_000;
/// Registered I/O memory per executor: tests run in parallel threads and
/// memlock is 8 MiB here (PLATFORM.md).
const TEST_IO_MEMORY_BYTES: usize = 512 << 10;
/// The bound on every wait for a pass to end: far above what it needs.
const PASS_TIMEOUT: Duration = Duration::from_secs(60);

fn on_executor<G, F>(f: G)
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
            f(root).await;
        })
        .expect("spawn executor")
        .join()
        .expect("executor ran");
    drop(tmp);
}

fn compact_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        flush: FlushPolicy::Never,
        cleanup_policy: CleanupPolicy::COMPACT,
        ..LogConfig::default()
    }
}

async fn open_at<S: Storage>(
    storage: S,
    dir: &Path,
    cfg: &LogConfig,
) -> Rc<RefCell<PartitionLog<S>>> {
    let log = engine::recovery::open(
        storage,
        dir.to_path_buf(),
        cfg.clone(),
        CacheBudget::new(1 << 20),
        NOW,
    )
    .await
    .expect("open log");
    Rc::new(RefCell::new(log))
}

/// Appends about `bytes` of updates over 500 keys, then seals everything.
async fn fill<S: Storage>(log: &RefCell<PartitionLog<S>>, bytes: u64) {
    let value = [b'v'; 200];
    let mut written = 0u64;
    let mut seq = 0u64;
    while written < bytes {
        let mut b = BatchBuilder::new(Compression::None);
        for _ in 0..32 {
            b.push(
                NOW,
                Some(format!("key-{}", seq % 500).as_bytes()),
                Some(&value),
                &[],
            );
            seq += 1;
        }
        let batch = b.build();
        written += batch.len() as u64;
        log.borrow_mut().append(&batch, 0, NOW).expect("append");
        if written % (1 << 20) < batch.len() as u64 {
            flush(log, NOW, false).await;
        }
    }
    log.borrow_mut().force_roll(NOW);
    while flush(log, NOW, false).await {}
}

type PassResult = (CleanStats, PaceStats);

/// Starts a forced pass of `log` paced by `opts`; `done` is set when it ends.
fn spawn_pass<S: Storage + 'static>(
    log: Rc<RefCell<PartitionLog<S>>>,
    opts: PaceOptions,
    cleaner: CleanerOptions,
    done: Rc<Cell<bool>>,
) -> glommio::task::JoinHandle<PassResult> {
    glommio::spawn_local(async move {
        let mut pace = RatePace::new(opts);
        let stats = clean(&log, NOW, true, &cleaner, &mut pace)
            .await
            .expect("clean")
            .expect("a pass");
        done.set(true);
        (stats, pace.stats())
    })
    .detach()
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    glommio::timer::timeout(PASS_TIMEOUT, async { Ok(f.await) })
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {PASS_TIMEOUT:?}"))
}

#[test]
fn the_cleaner_waits_for_data_io_unless_its_share_is_due() {
    on_executor(|_| async {
        let storage = MemStorage::new();
        let small_chunks = CleanerOptions {
            io_chunk_bytes: 16 << 10,
            ..CleanerOptions::default()
        };

        // No guaranteed share: while the data path holds the disk, the pass
        // makes no progress; once the disk is free, it ends.
        let log = open_at(
            storage.clone(),
            Path::new("/data/a-0"),
            &compact_config(64 << 10),
        )
        .await;
        fill(&log, 512 << 10).await;
        let busy = DataIoGuard::enter();
        assert_eq!(data_io_in_flight(), 1);
        let done = Rc::new(Cell::new(false));
        let opts = PaceOptions {
            max_bytes_per_second: 0,
            min_bytes_per_second: 0,
            defer_wait: Duration::from_micros(100),
            ..PaceOptions::default()
        };
        let pass = spawn_pass(log.clone(), opts, small_chunks.clone(), done.clone());
        // Absence of progress can only be watched for a while.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        assert!(!done.get(), "the pass went on while the data path was busy");
        assert!(log.borrow().is_cleaning());
        drop(busy);
        let (stats, pace) = bounded("the pass after the disk went idle", pass)
            .await
            .expect("joined");
        assert!(stats.bytes_read > 0);
        assert_eq!(pace.ios_deferred, 1, "{pace:?}");
        assert_eq!(pace.ios_on_min_share, 0, "{pace:?}");
        assert!(pace.deferred >= Duration::from_millis(200), "{pace:?}");

        // With a guaranteed share, the pass ends though the data path
        // never lets go of the disk.
        let log = open_at(
            storage.clone(),
            Path::new("/data/b-0"),
            &compact_config(64 << 10),
        )
        .await;
        fill(&log, 512 << 10).await;
        let _busy = DataIoGuard::enter();
        let opts = PaceOptions {
            min_bytes_per_second: 16 << 20,
            ..opts
        };
        let done = Rc::new(Cell::new(false));
        let pass = spawn_pass(log.clone(), opts, small_chunks, done);
        let (stats, pace) = bounded("the pass on the guaranteed share", pass)
            .await
            .expect("joined");
        assert!(stats.bytes_read >= 512 << 10, "{stats:?}");
        assert!(pace.ios_on_min_share > 0, "{pace:?}");
        assert_eq!(pace.ios_deferred, pace.ios, "every I/O waited: {pace:?}");
    });
}

#[test]
fn a_pass_ends_while_produce_never_stops() {
    on_executor(|root| async move {
        let compacted = open_at(
            DmaStorage,
            &root.join("compacted-0"),
            &compact_config(1 << 20),
        )
        .await;
        fill(&compacted, 8 << 20).await;
        let produced = open_at(
            DmaStorage,
            &root.join("produced-0"),
            &LogConfig {
                flush: FlushPolicy::Always,
                ..LogConfig::default()
            },
        )
        .await;

        // A producer that always has a write or an fdatasync in flight.
        let stop = Rc::new(Cell::new(false));
        let appends = Rc::new(Cell::new(0u64));
        let producer = {
            let (log, stop, appends) = (produced.clone(), stop.clone(), appends.clone());
            glommio::spawn_local(async move {
                let mut b = BatchBuilder::new(Compression::None);
                b.push(NOW, Some(b"k"), Some(&[b'p'; 1000]), &[]);
                let batch = b.build();
                while !stop.get() {
                    log.borrow_mut().append(&batch, 0, NOW).expect("append");
                    flush(&log, NOW, false).await;
                    appends.set(appends.get() + 1);
                }
            })
            .detach()
        };
        // Let produce get going before the pass starts.
        while appends.get() < 10 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let before = appends.get();
        let pass = spawn_pass(
            compacted.clone(),
            PaceOptions::default(),
            CleanerOptions::default(),
            Rc::new(Cell::new(false)),
        );
        let result = glommio::timer::timeout(PASS_TIMEOUT, async { Ok(pass.await) }).await;
        stop.set(true);
        producer.await;
        let (stats, pace) = result
            .unwrap_or_else(|_| panic!("no pass within {PASS_TIMEOUT:?} under constant produce"))
            .expect("joined");
        assert!(stats.bytes_read >= 8 << 20, "{stats:?}");
        assert!(stats.records_kept < stats.records_read, "{stats:?}");
        assert!(appends.get() > before, "produce stalled during the pass");
        // The producer kept the disk busy: the cleaner stood aside at least once.
        assert!(pace.ios_deferred > 0, "{pace:?}");
        assert_eq!(data_io_in_flight(), 0);
    });
}
