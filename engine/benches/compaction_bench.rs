//! `cargo bench -p engine --bench compaction_bench`: the log cleaner's
//! throughput (MB/s of segments rewritten), and the produce and fetch latency
//! of other partitions on the same shard (one glommio executor) with the
//! cleaner off and on. On the data disk (`$SLUICE_BENCH_DIR`, else a temp dir
//! under /work). Prints figures; asserts nothing.
//!
//! The runs alternate, round after round: cleaner off; cleaner on with the
//! pacing of before the data-path deferral ("before": `defer_wait` 0, rate
//! limit and 1 ms CPU slices only); cleaner on with the default pacing. A shared VM swings
//! from run to run, so the summary gives the median over the rounds.
//! `SLUICE_BENCH_ROUNDS` sets the number of rounds (default 5). To try other
//! settings in place of the default pacing: `SLUICE_BENCH_MIN_SHARE_BYTES`
//! (bytes/s), `SLUICE_BENCH_DEFER_WAIT_US`, `SLUICE_BENCH_CPU_SLICE_US`,
//! `SLUICE_BENCH_IO_CHUNK_BYTES`.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine::cleaner::{
    clean, CleanStats, CleanerOptions, NoPace, PaceOptions, PaceStats, RatePace,
};
use engine::log::{flush, read, PartitionLog};
use engine::storage::dma::{prime_device, DmaStorage};
use engine::{CacheBudget, CleanupPolicy, FlushPolicy, LogConfig};
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use sluice_records::{BatchBuilder, BatchHeader, Compression};

const NOW: i64 = 1_700_000_000_000;
const BENCH_IO_MEMORY_BYTES: usize = 2 << 20;
/// Bytes of updates written before each cleaning pass.
const FILL_BYTES: u64 = 64 << 20;
const KEYS: u64 = 20_000;
const VALUE_BYTES: usize = 200;
const RECORDS_PER_BATCH: u64 = 64;
/// How long a round without the cleaner measures.
const OFF_WINDOW: Duration = Duration::from_secs(3);
/// Bytes the fetched partition holds (read from the start again at its end).
const FETCH_LOG_BYTES: u64 = 64 << 20;
/// A consumer reading from disk: one fetch of up to this every `FETCH_EVERY`.
const FETCH_MAX_BYTES: usize = 256 << 10;
const FETCH_EVERY: Duration = Duration::from_millis(2);
const DEFAULT_ROUNDS: usize = 5;

type Log = Rc<RefCell<PartitionLog<DmaStorage>>>;

async fn open_log(dir: &Path, cfg: &LogConfig, cache_bytes: usize) -> Log {
    let log = engine::recovery::open(
        DmaStorage,
        dir.to_path_buf(),
        cfg.clone(),
        CacheBudget::new(cache_bytes),
        NOW,
    )
    .await
    .expect("open log");
    Rc::new(RefCell::new(log))
}

/// Appends `bytes` of updates over `KEYS` keys (starting at `seq`), then
/// rolls so everything is sealed.
async fn fill(log: &Log, seq: &mut u64, bytes_wanted: u64) {
    let value = vec![b'v'; VALUE_BYTES];
    let mut b = BatchBuilder::new(Compression::None);
    let mut bytes = 0u64;
    while bytes < bytes_wanted {
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
        "{name:<28} {:>6.0} MB/s of segments rewritten ({:.0} MB/cpu-s); {:.0} MB read, {:.0} MB in -> {:.1} MB out, {} -> {} records, {} -> {} segments, {:.2} s",
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
/// `stop` is set (or `window` passed): latency of each append until
/// durable, in µs, sorted.
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

/// A consumer reading `log` from disk, one fetch every `FETCH_EVERY`, from
/// where it stopped (from the start again at the end): latency of each
/// fetch, in µs, sorted.
async fn fetch(
    log: Log,
    offset: Rc<Cell<i64>>,
    stop: Rc<Cell<bool>>,
    window: Duration,
) -> Vec<u64> {
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut next_at = Instant::now();
    while !stop.get() && start.elapsed() < window {
        next_at += FETCH_EVERY;
        let t = Instant::now();
        let r = read(&log, offset.get(), FETCH_MAX_BYTES)
            .await
            .expect("fetch");
        lat.push(t.elapsed().as_micros() as u64);
        let mut next = offset.get();
        for chunk in &r.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let h = BatchHeader::parse(&chunk[at..]).expect("batch header");
                next = h.next_offset();
                at += h.total_len();
            }
        }
        offset.set(if next >= r.high_watermark || r.chunks.is_empty() {
            0
        } else {
            next
        });
        let now = Instant::now();
        if next_at > now {
            glommio::timer::sleep(next_at - now).await;
        } else {
            next_at = now;
        }
    }
    lat.sort_unstable();
    lat
}

fn pct(lat: &[u64], q: f64) -> u64 {
    if lat.is_empty() {
        return 0;
    }
    lat[((lat.len() - 1) as f64 * q) as usize]
}

/// One round's figures of one mode.
#[derive(Clone, Copy, Default)]
struct Round {
    produce_per_s: f64,
    produce_p50: u64,
    produce_p99: u64,
    produce_p999: u64,
    fetch_p50: u64,
    fetch_p99: u64,
    fetch_p999: u64,
    cleaner_mb_s: f64,
    cleaner_s: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    /// As before the data-path deferral: rate limit and 1 ms CPU slices only.
    NoDefer,
    Default,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "cleaner off",
            Mode::NoDefer => "cleaner on, before",
            Mode::Default => "cleaner on, default pacing",
        }
    }

    fn pace(self) -> PaceOptions {
        match self {
            Mode::NoDefer => PaceOptions {
                defer_wait: Duration::ZERO,
                min_bytes_per_second: 0,
                cpu_slice: Duration::from_millis(1),
                ..PaceOptions::default()
            },
            _ => tried_pace(),
        }
    }

    fn cleaner(self) -> CleanerOptions {
        match self {
            Mode::Default => CleanerOptions {
                io_chunk_bytes: env_or(
                    "SLUICE_BENCH_IO_CHUNK_BYTES",
                    CleanerOptions::default().io_chunk_bytes as u64,
                ) as usize,
                ..CleanerOptions::default()
            },
            // The pacing of before, with its 1 MiB chunks.
            _ => CleanerOptions {
                io_chunk_bytes: 1 << 20,
                ..CleanerOptions::default()
            },
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default pacing, or the settings to try from the environment.
fn tried_pace() -> PaceOptions {
    let d = PaceOptions::default();
    PaceOptions {
        min_bytes_per_second: env_or("SLUICE_BENCH_MIN_SHARE_BYTES", d.min_bytes_per_second),
        defer_wait: Duration::from_micros(env_or(
            "SLUICE_BENCH_DEFER_WAIT_US",
            d.defer_wait.as_micros() as u64,
        )),
        cpu_slice: Duration::from_micros(env_or(
            "SLUICE_BENCH_CPU_SLICE_US",
            d.cpu_slice.as_micros() as u64,
        )),
        ..d
    }
}

struct Logs {
    compacted: Log,
    produced: Log,
    fetched: Log,
    fetch_offset: Rc<Cell<i64>>,
}

/// Runs produce and fetch on the other partitions, and (unless `mode` is
/// off) a forced cleaning pass of the compacted log in a task queue of its
/// own (100 shares against the default queue's 1000, as `sluice serve` runs
/// it), until the pass ends.
async fn round(logs: &Logs, mode: Mode, n: usize) -> Round {
    let stop = Rc::new(Cell::new(false));
    let cleaner = (mode != Mode::Off).then(|| {
        let queue = glommio::executor().create_task_queue(
            Shares::Static(100),
            Latency::NotImportant,
            "bench-cleaner",
        );
        let (log, done) = (logs.compacted.clone(), stop.clone());
        glommio::spawn_local_into(
            async move {
                let mut pace = RatePace::new(mode.pace());
                let input = log.borrow().size_bytes();
                let (t, cpu) = (Instant::now(), cpu_time());
                let s = clean(&log, NOW, true, &mode.cleaner(), &mut pace)
                    .await
                    .expect("clean")
                    .expect("a pass");
                done.set(true);
                (s, input, t.elapsed(), cpu_time() - cpu, pace.stats())
            },
            queue,
        )
        .expect("spawn cleaner")
    });
    let window = if cleaner.is_some() {
        Duration::from_secs(600)
    } else {
        OFF_WINDOW
    };
    let t = Instant::now();
    let fetcher = glommio::spawn_local(fetch(
        logs.fetched.clone(),
        logs.fetch_offset.clone(),
        stop.clone(),
        window,
    ));
    let lat = produce(logs.produced.clone(), stop.clone(), window).await;
    let elapsed = t.elapsed();
    stop.set(true);
    let fetch_lat = fetcher.await;
    let mut r = Round {
        produce_per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        produce_p50: pct(&lat, 0.5),
        produce_p99: pct(&lat, 0.99),
        produce_p999: pct(&lat, 0.999),
        fetch_p50: pct(&fetch_lat, 0.5),
        fetch_p99: pct(&fetch_lat, 0.99),
        fetch_p999: pct(&fetch_lat, 0.999),
        ..Round::default()
    };
    let mut extra = String::new();
    if let Some(c) = cleaner {
        let (s, input, ce, _cpu, ps): (CleanStats, u64, Duration, Duration, PaceStats) = c.await;
        r.cleaner_mb_s = input as f64 / 1e6 / ce.as_secs_f64();
        r.cleaner_s = ce.as_secs_f64();
        extra = format!(
            "  cleaner {:>5.1} MB/s ({:.0} MB in {:.1} s; {} I/Os, {} deferred, {} on the min share, {:.1} s deferred, {:.1} s throttled)",
            r.cleaner_mb_s,
            input as f64 / 1e6,
            r.cleaner_s,
            ps.ios,
            ps.ios_deferred,
            ps.ios_on_min_share,
            ps.deferred.as_secs_f64(),
            ps.throttled.as_secs_f64(),
        );
        debug_assert!(s.bytes_read > 0);
    }
    println!(
        "round {n} {:<27} produce {:>5.0}/s p50 {:>5} p99 {:>6} p99.9 {:>6} us | fetch p50 {:>5} p99 {:>6} p99.9 {:>6} us{extra}",
        mode.name(),
        r.produce_per_s,
        r.produce_p50,
        r.produce_p99,
        r.produce_p999,
        r.fetch_p50,
        r.fetch_p99,
        r.fetch_p999,
    );
    r
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn summary(mode: Mode, rounds: &[Round]) {
    let m = |f: fn(&Round) -> u64| median(rounds.iter().map(f).collect());
    let cleaner = if mode == Mode::Off {
        String::new()
    } else {
        format!(
            "  cleaner {:>5.1} MB/s, pass {:.1} s",
            median(rounds.iter().map(|r| r.cleaner_mb_s).collect()),
            median(rounds.iter().map(|r| r.cleaner_s).collect()),
        )
    };
    println!(
        "median of {} {:<27} produce {:>5.0}/s p50 {:>5} p99 {:>6} p99.9 {:>6} us | fetch p50 {:>5} p99 {:>6} p99.9 {:>6} us{cleaner}",
        rounds.len(),
        mode.name(),
        median(rounds.iter().map(|r| r.produce_per_s).collect()),
        m(|r| r.produce_p50),
        m(|r| r.produce_p99),
        m(|r| r.produce_p999),
        m(|r| r.fetch_p50),
        m(|r| r.fetch_p99),
        m(|r| r.fetch_p999),
    );
}

fn main() {
    // As `sluice serve` does: the flush and read buffers stay in the arenas.
    engine::sys::keep_freed_memory();
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS)
        .max(1);
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
            let pace = tried_pace();
            println!(
                "compaction bench in {}: {} MiB of updates over {KEYS} keys, {VALUE_BYTES}-byte values, {RECORDS_PER_BATCH} records a batch; \"default pacing\": max {} MiB/s, min share {} MiB/s, defer wait {} us, CPU slice {} us, I/O chunk {} KiB",
                root.display(),
                FILL_BYTES >> 20,
                pace.max_bytes_per_second >> 20,
                pace.min_bytes_per_second >> 20,
                pace.defer_wait.as_micros(),
                pace.cpu_slice.as_micros(),
                Mode::Default.cleaner().io_chunk_bytes >> 10,
            );
            let compacted_cfg = LogConfig {
                segment_bytes: 16 << 20,
                flush: FlushPolicy::Never,
                cleanup_policy: CleanupPolicy::COMPACT,
                ..LogConfig::default()
            };
            let always = LogConfig {
                flush: FlushPolicy::Always,
                ..LogConfig::default()
            };
            let logs = Logs {
                compacted: open_log(&root.join("compacted-0"), &compacted_cfg, 64 << 20).await,
                produced: open_log(&root.join("produced-0"), &always, 64 << 20).await,
                // No tail cache to speak of: its fetches go to the disk.
                fetched: open_log(&root.join("fetched-0"), &LogConfig::default(), 0).await,
                fetch_offset: Rc::new(Cell::new(0)),
            };
            let mut seq = 0;
            fill(&logs.fetched, &mut seq, FETCH_LOG_BYTES).await;

            fill(&logs.compacted, &mut seq, FILL_BYTES).await;
            let input = logs.compacted.borrow().size_bytes();
            let (t, cpu) = (Instant::now(), cpu_time());
            let s = clean(&logs.compacted, NOW, true, &CleanerOptions::default(), &mut NoPace)
                .await
                .expect("clean")
                .expect("a pass");
            report_clean("cleaner alone, unpaced", &s, input, t.elapsed(), cpu_time() - cpu);

            let modes = [Mode::Off, Mode::NoDefer, Mode::Default];
            let mut results: Vec<Vec<Round>> = vec![Vec::new(); modes.len()];
            for n in 1..=rounds {
                for (i, &mode) in modes.iter().enumerate() {
                    if mode != Mode::Off {
                        fill(&logs.compacted, &mut seq, FILL_BYTES).await;
                    }
                    results[i].push(round(&logs, mode, n).await);
                }
            }
            for (i, &mode) in modes.iter().enumerate() {
                summary(mode, &results[i]);
            }
        })
        .expect("spawn executor")
        .join()
        .expect("bench ran");
    drop(guard);
}
