//! `cargo bench -p engine --bench compaction_bench`: the log cleaner's
//! throughput (MB/s of segments rewritten), and the produce latency of another
//! partition on the same shard (one glommio executor) without and with the
//! cleaner running. On the data disk (`$SLUICE_BENCH_DIR`, else a temp dir
//! under /work). Prints figures; asserts nothing.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine::cleaner::{clean, CleanStats, CleanerOptions, NoPace, RatePace};
use engine::log::{flush, PartitionLog};
use engine::storage::dma::{prime_device, DmaStorage};
use engine::{CacheBudget, CleanupPolicy, FlushPolicy, LogConfig};
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use sluice_records::{BatchBuilder, Compression};

const NOW: i64 = 1_700_000_000_000;
const BENCH_IO_MEMORY_BYTES: usize = 2 << 20;
/// Bytes of updates written before each cleaning pass.
const FILL_BYTES: u64 = 128 << 20;
const KEYS: u64 = 20_000;
const VALUE_BYTES: usize = 200;
const RECORDS_PER_BATCH: u64 = 64;
/// How long the produce latency is measured without the cleaner.
const PRODUCE_WINDOW: Duration = Duration::from_secs(3);

type Log = Rc<RefCell<PartitionLog<DmaStorage>>>;

async fn open_log(dir: &Path, cfg: &LogConfig) -> Log {
    let log = engine::recovery::open(
        DmaStorage,
        dir.to_path_buf(),
        cfg.clone(),
        CacheBudget::new(64 << 20),
        NOW,
    )
    .await
    .expect("open log");
    Rc::new(RefCell::new(log))
}

/// Appends `FILL_BYTES` of updates over `KEYS` keys (starting at `seq`), then
/// rolls so everything is sealed.
async fn fill(log: &Log, seq: &mut u64) {
    let value = vec![b'v'; VALUE_BYTES];
    let mut b = BatchBuilder::new(Compression::None);
    let mut bytes = 0u64;
    while bytes < FILL_BYTES {
        for _ in 0..RECORDS_PER_BATCH {
            let key = format!("key-{:08}", *seq % KEYS);
            b.push(NOW, Some(key.as_bytes()), Some(&value), &[]);
            *seq += 1;
        }
        let batch = b.build();
        bytes += batch.len() as u64;
        log.borrow_mut().append(&batch, 0, NOW).expect("append");
        if bytes % (8 << 20) < batch.len() as u64 {
            flush(log, NOW, false).await;
        }
    }
    log.borrow_mut().force_roll(NOW);
    while flush(log, NOW, false).await {}
}

/// On-CPU time of this process so far, all its threads, from
/// `/proc/self/task/*/schedstat`: on a loaded machine the wall-clock figures
/// swing, the CPU cost less so.
fn cpu_time() -> Duration {
    let ns: u64 = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// `input` is the bytes of the segments rewritten (each dirty byte is read
/// twice: key map, then rewrite).
fn report_clean(name: &str, s: &CleanStats, input: u64, elapsed: Duration, cpu: Duration) {
    println!(
        "{name:<44} {:>6.0} MB/s of segments rewritten ({:.0} MB/cpu-s); {:.0} MB read, {:.0} MB in -> {:.1} MB out, {} -> {} records, {} -> {} segments, {:.2} s",
        input as f64 / 1e6 / elapsed.as_secs_f64(),
        input as f64 / 1e6 / cpu.as_secs_f64().max(1e-9),
        s.bytes_read as f64 / 1e6,
        input as f64 / 1e6,
        s.bytes_written as f64 / 1e6,
        s.records_read,
        s.records_kept,
        s.segments_in,
        s.segments_out,
        elapsed.as_secs_f64()
    );
}

/// Closed-loop produce of 1 KiB batches with `flush=always` on `log` until
/// `stop` is set (or `window` passed when `stop` stays unset): latency of
/// each append until durable, in µs, sorted.
async fn produce(log: Log, stop: Rc<Cell<bool>>, window: Duration) -> Vec<u64> {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(NOW, Some(b"k"), Some(&[b'p'; 1000]), &[]);
    let batch = b.build();
    let mut lat = Vec::new();
    let start = Instant::now();
    while !stop.get() && start.elapsed() < window {
        let t = Instant::now();
        log.borrow_mut().append(&batch, 0, NOW).expect("append");
        flush(&log, NOW, false).await;
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    lat
}

fn report_produce(name: &str, lat: &[u64], elapsed: Duration) {
    if lat.is_empty() {
        println!("{name:<44} no appends");
        return;
    }
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<44} {:>7.0} appends/s  p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>6} us",
        lat.len() as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(0.999),
        p(1.0)
    );
}

/// Produce on `other` while the cleaner cleans `compacted` (in a task queue of
/// its own, 100 shares against the default queue's 1000, as `sluice serve`
/// runs it), paced at `rate` bytes/s (0: unpaced, yielding only).
async fn with_cleaner(compacted: &Log, other: &Log, rate: u64, name: &str) {
    let stop = Rc::new(Cell::new(false));
    let queue = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "bench-cleaner",
    );
    let (log, done) = (compacted.clone(), stop.clone());
    let cleaner = glommio::spawn_local_into(
        async move {
            let mut pace = RatePace::new(rate);
            let input = log.borrow().size_bytes();
            let (t, cpu) = (Instant::now(), cpu_time());
            let s = clean(&log, NOW, true, &CleanerOptions::default(), &mut pace)
                .await
                .expect("clean")
                .expect("a pass");
            done.set(true);
            (s, input, t.elapsed(), cpu_time() - cpu)
        },
        queue,
    )
    .expect("spawn cleaner");
    let t = Instant::now();
    let lat = produce(other.clone(), stop.clone(), Duration::from_secs(600)).await;
    let elapsed = t.elapsed();
    let (s, input, ce, cpu) = cleaner.await;
    // The CPU figure includes the producer's here.
    report_clean(&format!("cleaner {name}, with produce"), &s, input, ce, cpu);
    report_produce(&format!("produce p99 while cleaner {name}"), &lat, elapsed);
}

fn main() {
    let root = match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(d) => (
            std::path::PathBuf::from(d).join("sluice-compaction-bench"),
            None,
        ),
        None => {
            let t = tempfile::Builder::new()
                .prefix("sluice-compaction-bench")
                .tempdir_in("/work")
                .or_else(|_| tempfile::tempdir())
                .expect("temp dir");
            (t.path().to_path_buf(), Some(t))
        }
    };
    let (root, guard) = root;
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(BENCH_IO_MEMORY_BYTES)
        .spawn(move || async move {
            std::fs::create_dir_all(&root).expect("bench dir");
            prime_device(&root).await.expect("prime the device");
            println!(
                "compaction bench in {}: {} MiB of updates over {KEYS} keys, {VALUE_BYTES}-byte values, {RECORDS_PER_BATCH} records a batch",
                root.display(),
                FILL_BYTES >> 20
            );
            let compacted_cfg = LogConfig {
                segment_bytes: 16 << 20,
                flush: FlushPolicy::Never,
                cleanup_policy: CleanupPolicy::COMPACT,
                ..LogConfig::default()
            };
            let compacted = open_log(&root.join("compacted-0"), &compacted_cfg).await;
            let other = open_log(
                &root.join("other-0"),
                &LogConfig {
                    flush: FlushPolicy::Always,
                    ..LogConfig::default()
                },
            )
            .await;
            let mut seq = 0;

            fill(&compacted, &mut seq).await;
            let input = compacted.borrow().size_bytes();
            let (t, cpu) = (Instant::now(), cpu_time());
            let s = clean(&compacted, NOW, true, &CleanerOptions::default(), &mut NoPace)
                .await
                .expect("clean")
                .expect("a pass");
            report_clean("cleaner alone, unpaced", &s, input, t.elapsed(), cpu_time() - cpu);

            let t = Instant::now();
            let lat = produce(other.clone(), Rc::new(Cell::new(false)), PRODUCE_WINDOW).await;
            report_produce("produce p99, no cleaner", &lat, t.elapsed());

            fill(&compacted, &mut seq).await;
            with_cleaner(&compacted, &other, 100 << 20, "at 100 MiB/s").await;
            fill(&compacted, &mut seq).await;
            with_cleaner(&compacted, &other, 0, "unpaced").await;
            fill(&compacted, &mut seq).await;
            with_cleaner(&compacted, &other, 20 << 20, "at 20 MiB/s").await;
        })
        .expect("spawn executor")
        .join()
        .expect("bench ran");
    drop(guard);
}
