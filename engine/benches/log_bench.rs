//! `cargo bench -p engine`: the partition log's throughput against the disk's
//! own limits, in one run, inside one glommio executor, on the data disk
//! (`$SLUICE_BENCH_DIR`, else a temp dir under /work). Prints a table; asserts
//! nothing (STYLE.md: benchmarks are not tests).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::log::{flush_all, read, PartitionLog};
use engine::storage::dma::{prime_device, DmaStorage};
use engine::{CacheBudget, FlushPolicy, LogConfig};
use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};
use sluice_records::{BatchBuilder, Compression};

const NOW: i64 = 1_700_000_000_000;
const RECORD_VALUE_BYTES: usize = 100;
/// Registered I/O memory: one executor, three rings, memlock 8 MiB here.
const BENCH_IO_MEMORY_BYTES: usize = 2 << 20;
const RAW_BYTES: u64 = 512 << 20;
const RAW_BLOCK: usize = 1 << 20;
/// Bytes appended per append-throughput figure.
const APPEND_BYTES: u64 = 256 << 20;
/// Unacknowledged appends the producer keeps in flight, in bytes per partition.
const IN_FLIGHT_BYTES: usize = 8 << 20;
/// The broker's shards' default preempt timer (`preempt_timer_us`,
/// shard_router::DEFAULT_PREEMPT_TIMER; engine does not depend on
/// shard-router): how long the appending task may run before glommio
/// submits the flush's queued writes.
const PREEMPT_TIMER: Duration = Duration::from_micros(500);
/// The producer yields to the flusher after appending this many bytes.
const YIELD_EVERY_BYTES: u64 = 1 << 20;

struct Row {
    name: String,
    bytes: u64,
    records: u64,
    elapsed: Duration,
    /// CPU time the whole process used meanwhile (kernel I/O workers included):
    /// on a shared, loaded machine the wall-clock figures swing, this less so.
    cpu: Duration,
    /// The raw bandwidth this figure is compared with, MB/s.
    raw_mb_s: f64,
    note: String,
}

impl Row {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

fn print_row(r: &Row) {
    let msg_s = if r.records > 0 {
        format!("{:>12.0}", r.records as f64 / r.elapsed.as_secs_f64())
    } else {
        format!("{:>12}", "-")
    };
    // Below a millisecond the CPU figure is noise (and a tail-cache read is
    // nearly free): show none.
    let mb_per_cpu_s = if r.cpu >= Duration::from_millis(1) {
        format!("{:>8.0}", r.bytes as f64 / 1e6 / r.cpu.as_secs_f64())
    } else {
        format!("{:>8}", "-")
    };
    println!(
        "{:<52} {:>9.0} {} {:>6.0}% {} {}",
        r.name,
        r.mb_s(),
        msg_s,
        100.0 * r.mb_s() / r.raw_mb_s,
        mb_per_cpu_s,
        r.note
    );
}

/// On-CPU time of this process so far, all its threads (io_uring workers
/// included), from `/proc/self/task/*/schedstat`. Threads that exited are not
/// counted, so take differences over spans in which none does.
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

/// A batch of about `target_bytes` of ~100-byte records.
fn make_batch(target_bytes: usize) -> (Bytes, u64) {
    let mut b = BatchBuilder::new(Compression::None);
    let value = vec![b'v'; RECORD_VALUE_BYTES];
    while b.uncompressed_size() + RECORD_VALUE_BYTES + 70 < target_bytes {
        b.push(NOW, None, Some(&value), &[]);
    }
    let n = b.len() as u64;
    (b.build(), n)
}

async fn raw_write(path: &Path, queue_depth: usize) -> Duration {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .expect("open raw file");
    let file = Rc::new(file);
    let start = Instant::now();
    let blocks = RAW_BYTES / RAW_BLOCK as u64;
    let next = Rc::new(Cell::new(0u64));
    let workers = (0..queue_depth).map(|_| {
        let file = file.clone();
        let next = next.clone();
        async move {
            loop {
                let i = next.get();
                if i >= blocks {
                    break;
                }
                next.set(i + 1);
                let mut buf = file.alloc_dma_buffer(RAW_BLOCK);
                buf.as_bytes_mut().fill(0x5a);
                file.write_at(buf, i * RAW_BLOCK as u64)
                    .await
                    .expect("raw write");
            }
        }
    });
    futures::future::join_all(workers).await;
    file.fdatasync().await.expect("sync");
    let elapsed = start.elapsed();
    drop(file);
    elapsed
}

async fn raw_read(path: &Path, queue_depth: usize) -> Duration {
    let file = Rc::new(DmaFile::open(path).await.expect("open raw file"));
    let start = Instant::now();
    let blocks = RAW_BYTES / RAW_BLOCK as u64;
    let next = Rc::new(Cell::new(0u64));
    let workers = (0..queue_depth).map(|_| {
        let file = file.clone();
        let next = next.clone();
        async move {
            loop {
                let i = next.get();
                if i >= blocks {
                    break;
                }
                next.set(i + 1);
                let r = file
                    .read_at_aligned(i * RAW_BLOCK as u64, RAW_BLOCK)
                    .await
                    .expect("raw read");
                assert_eq!(r.len(), RAW_BLOCK);
            }
        }
    });
    futures::future::join_all(workers).await;
    start.elapsed()
}

type Log = Rc<RefCell<PartitionLog<DmaStorage>>>;

async fn open_log(dir: &Path, cfg: &LogConfig, budget: &CacheBudget) -> Log {
    let log = engine::recovery::open(
        DmaStorage,
        dir.to_path_buf(),
        cfg.clone(),
        budget.clone(),
        NOW,
    )
    .await
    .expect("open log");
    Rc::new(RefCell::new(log))
}

/// A shard: one producer task appending round-robin over `logs` with a bounded
/// window of unacknowledged appends, and one flusher task running `flush_all`
/// over every log as a group commit whenever there is work. Returns the time to
/// have `total_bytes` appended and acknowledged, and the CPU time it took.
async fn shard_append(logs: &[Log], batch: &Bytes, total_bytes: u64) -> (Duration, Duration) {
    // The flusher sleeps until the producer kicks it (no busy loop stealing the
    // core), then starts group-commit rounds while there is work, up to
    // MAX_FLUSH_JOBS_IN_FLIGHT at once, as a shard's flusher does.
    let done = Rc::new(Cell::new(false));
    let kicked = Rc::new(Cell::new(false));
    let (kick, mut kicks) = futures::channel::mpsc::unbounded::<()>();
    let flusher = {
        let logs = logs.to_vec();
        let (done, kicked) = (done.clone(), kicked.clone());
        let round_ended = kick.clone();
        glommio::spawn_local(async move {
            let rounds = Rc::new(Cell::new(0u32));
            loop {
                kicked.set(false);
                while rounds.get() < engine::log::MAX_FLUSH_JOBS_IN_FLIGHT
                    && logs.iter().any(|l| l.borrow().needs_flush(NOW))
                {
                    rounds.set(rounds.get() + 1);
                    let (logs, rounds, ended) = (logs.clone(), rounds.clone(), round_ended.clone());
                    glommio::spawn_local(async move {
                        flush_all(&logs, NOW).await;
                        rounds.set(rounds.get() - 1);
                        let _ = ended.unbounded_send(());
                    })
                    .detach();
                    // Let the round take its jobs before looking for more work.
                    futures_lite::future::yield_now().await;
                }
                if futures::StreamExt::next(&mut kicks).await.is_none() {
                    break;
                }
                if done.get() && rounds.get() == 0 {
                    break;
                }
            }
        })
    };
    let wake = |kick: &futures::channel::mpsc::UnboundedSender<()>| {
        if !kicked.get() {
            kicked.set(true);
            let _ = kick.unbounded_send(());
        }
    };
    let start = Instant::now();
    let cpu_start = cpu_time();
    let window = (IN_FLIGHT_BYTES / batch.len()).max(2) * logs.len();
    let mut waiters = VecDeque::new();
    let mut appended = 0u64;
    let mut yielded_at = 0u64;
    'outer: loop {
        for log in logs {
            if appended >= total_bytes {
                break 'outer;
            }
            let a = log.borrow_mut().append(batch, 0, NOW).expect("append");
            appended += batch.len() as u64;
            waiters.push_back(log.borrow_mut().wait_visible(a.last_offset + 1));
            while waiters.len() > window {
                wake(&kick);
                if let Some(w) = waiters.pop_front() {
                    w.await.expect("acknowledged");
                }
            }
        }
        wake(&kick);
        if appended - yielded_at >= YIELD_EVERY_BYTES {
            // As a network-fed shard would: let the flusher start a group commit
            // while more appends arrive.
            yielded_at = appended;
            futures_lite::future::yield_now().await;
        }
    }
    wake(&kick);
    for w in waiters {
        w.await.expect("acknowledged");
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);
    done.set(true);
    let _ = kick.unbounded_send(());
    drop(kick);
    flusher.await;
    (elapsed, cpu)
}

struct AppendCase {
    name: String,
    partitions: usize,
    batch_bytes: usize,
    flush: FlushPolicy,
    preallocate_bytes: u64,
}

async fn append_case(root: &Path, case: &AppendCase, raw_write_mb_s: f64) -> Row {
    let dir = root.join(format!("append-{}", case.name.replace([' ', ','], "_")));
    let cfg = LogConfig {
        flush: case.flush,
        preallocate_bytes: case.preallocate_bytes,
        ..LogConfig::default()
    };
    let budget = CacheBudget::new(64 << 20);
    let mut logs = Vec::new();
    for p in 0..case.partitions {
        logs.push(open_log(&dir.join(format!("t-{p}")), &cfg, &budget).await);
    }
    let (batch, records) = make_batch(case.batch_bytes);
    let (elapsed, cpu) = shard_append(&logs, &batch, APPEND_BYTES).await;
    let batches = APPEND_BYTES.div_ceil(batch.len() as u64);
    for log in &logs {
        engine::recovery::close(log, NOW).await.expect("close");
    }
    drop(logs);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        name: case.name.clone(),
        bytes: batches * batch.len() as u64,
        records: batches * records,
        elapsed,
        cpu,
        raw_mb_s: raw_write_mb_s,
        note: String::new(),
    }
}

/// Reads the whole log from offset 0 with 1 MiB fetches.
async fn read_all(log: &Log) -> (u64, Duration, Duration) {
    let start = Instant::now();
    let cpu_start = cpu_time();
    let mut offset = 0;
    let mut bytes = 0u64;
    loop {
        let r = read(log, offset, 1 << 20).await.expect("read");
        let Some(last) = r.last_offset() else { break };
        offset = last + 1;
        bytes += r.len_bytes() as u64;
    }
    (bytes, start.elapsed(), cpu_time().saturating_sub(cpu_start))
}

async fn read_cases(root: &Path, raw_read_mb_s: f64, rows: &mut Vec<Row>) {
    let dir = root.join("reads");
    let cfg = LogConfig {
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    };
    let (batch, records) = make_batch(16 << 10);
    let records_per_byte = records as f64 / batch.len() as f64;
    // Hot: a cache big enough for everything written.
    let total = 192u64 << 20;
    let budget = CacheBudget::new(256 << 20);
    let log = open_log(&dir, &cfg, &budget).await;
    shard_append(std::slice::from_ref(&log), &batch, total).await;
    let (bytes, elapsed, cpu) = read_all(&log).await;
    rows.push(Row {
        name: "hot read (tail cache), 1 MiB fetches".into(),
        bytes,
        records: (bytes as f64 * records_per_byte) as u64,
        elapsed,
        cpu,
        raw_mb_s: raw_read_mb_s,
        note: "(vs raw read)".into(),
    });
    engine::recovery::close(&log, NOW).await.expect("close");
    drop(log);
    // Cold: reopened with an empty cache, so every read goes to the disk.
    let log = open_log(&dir, &cfg, &CacheBudget::new(1 << 20)).await;
    let (bytes, elapsed, cpu) = read_all(&log).await;
    rows.push(Row {
        name: "cold read (disk), 1 MiB fetches".into(),
        bytes,
        records: (bytes as f64 * records_per_byte) as u64,
        elapsed,
        cpu,
        raw_mb_s: raw_read_mb_s,
        note: "(vs raw read)".into(),
    });
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Append throughput (flush never) at a fresh log and at a 1,000-segment log,
/// and seek latency (a cold one-batch read at a random offset) in the latter.
async fn segment_count_cases(root: &Path, raw_write_mb_s: f64, rows: &mut Vec<Row>) {
    let (batch, records) = make_batch(16 << 10);
    let small = LogConfig {
        flush: FlushPolicy::Never,
        segment_bytes: 4 * batch.len() as u64,
        preallocate_bytes: 0,
        ..LogConfig::default()
    };
    let dir = root.join("many-segments");
    let budget = CacheBudget::new(64 << 20);
    let log = open_log(&dir, &small, &budget).await;
    shard_append(
        std::slice::from_ref(&log),
        &batch,
        4000 * batch.len() as u64,
    )
    .await;
    let segments = log.borrow().segment_count();
    // From now on no rolls: measure appends against the big segment map.
    log.borrow_mut().set_config(LogConfig {
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    });
    let total = 128u64 << 20;
    let fresh_dir = root.join("one-segment");
    let fresh = open_log(
        &fresh_dir,
        &LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        },
        &budget,
    )
    .await;
    for (name, l) in [
        ("append, 1-segment log", &fresh),
        ("append, 1,000-segment log", &log),
    ] {
        let (elapsed, cpu) = shard_append(std::slice::from_ref(l), &batch, total).await;
        let n = total.div_ceil(batch.len() as u64);
        rows.push(Row {
            name: format!("{name} (16 KiB, never, 1 part)"),
            bytes: n * batch.len() as u64,
            records: n * records,
            elapsed,
            cpu,
            raw_mb_s: raw_write_mb_s,
            note: if l.borrow().segment_count() > 1 {
                format!("({} segments)", l.borrow().segment_count())
            } else {
                String::new()
            },
        });
    }
    engine::recovery::close(&log, NOW).await.expect("close");
    drop(log);
    drop(fresh);
    let _ = std::fs::remove_dir_all(&fresh_dir);

    // Seeks: a cold read of one batch at pseudo-random offsets across the segments.
    let log = open_log(&dir, &small, &CacheBudget::new(64 << 10)).await;
    let end = log.borrow().visible_offset();
    let mut lat = Vec::with_capacity(2000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % end as u64) as i64;
        let t = Instant::now();
        let r = read(&log, offset, 1).await.expect("seek read");
        lat.push(t.elapsed());
        assert!(!r.chunks.is_empty());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "seek by offset (cold one-batch read) in a {segments}-segment log: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(d) => (PathBuf::from(d).join("sluice-engine-bench"), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("sluice-engine-bench")
                .tempdir_in("/work")
                .or_else(|_| tempfile::tempdir())
                .expect("temp dir");
            (t.path().to_path_buf(), Some(t))
        }
    }
}

fn main() {
    // As `sluice serve` does: the flush and read buffers stay in the arenas.
    engine::sys::keep_freed_memory();
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    // SLUICE_BENCH_ONLY=TEXT runs only the append cases whose name holds
    // TEXT (after the raw figures), e.g. to profile one of them.
    let only = std::env::var("SLUICE_BENCH_ONLY").ok();
    let (root, guard) = bench_dir();
    let started = Instant::now();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(BENCH_IO_MEMORY_BYTES)
        .preempt_timer(PREEMPT_TIMER)
        .spawn(move || async move {
            prime_device(&root).await.expect("prime the device");
            println!("engine bench in {} (~100-byte records)", root.display());
            let raw_path = root.join("raw.bin");
            let w1 = raw_write(&raw_path, 1).await;
            let w4 = raw_write(&raw_path, 4).await;
            let r1 = raw_read(&raw_path, 1).await;
            let r4 = raw_read(&raw_path, 4).await;
            let _ = std::fs::remove_file(&raw_path);
            let mb = |d: Duration| RAW_BYTES as f64 / 1e6 / d.as_secs_f64();
            let raw_write_mb_s = mb(w1).max(mb(w4));
            let raw_read_mb_s = mb(r1).max(mb(r4));
            println!(
                "raw O_DIRECT 1 MiB: write QD1 {:.0} MB/s, QD4 {:.0} MB/s; read QD1 {:.0} MB/s, QD4 {:.0} MB/s",
                mb(w1),
                mb(w4),
                mb(r1),
                mb(r4)
            );
            println!(
                "{:<52} {:>9} {:>12} {:>7} {:>8}",
                "figure", "MB/s", "msg/s", "of raw", "MB/cpu-s"
            );
            let mut rows = Vec::new();
            let mut cases = Vec::new();
            for (batch_bytes, bl) in [(16usize << 10, "16 KiB"), (1 << 20, "1 MiB")] {
                for flush in [FlushPolicy::Never, FlushPolicy::Always] {
                    for partitions in [1usize, 8] {
                        cases.push(AppendCase {
                            name: format!("append {bl} batches, flush {flush}, {partitions} part"),
                            partitions,
                            batch_bytes,
                            flush,
                            preallocate_bytes: 16 << 20,
                        });
                    }
                }
            }
            cases.push(AppendCase {
                name: "append 16 KiB, always, 1 part, no preallocation".into(),
                partitions: 1,
                batch_bytes: 16 << 10,
                flush: FlushPolicy::Always,
                preallocate_bytes: 0,
            });
            let only = only.as_deref();
            for case in cases.iter().filter(|c| only.is_none_or(|o| c.name.contains(o))) {
                let row = append_case(&root, case, raw_write_mb_s).await;
                print_row(&row);
                rows.push(row);
            }
            let mut more = Vec::new();
            if only.is_none() {
                read_cases(&root, raw_read_mb_s, &mut more).await;
                segment_count_cases(&root, raw_write_mb_s, &mut more).await;
            }
            for r in &more {
                print_row(r);
            }
        })
        .expect("spawn executor")
        .join()
        .expect("bench ran");
    drop(guard);
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
