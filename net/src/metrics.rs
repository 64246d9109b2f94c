//! Metrics: counters and histograms kept per shard in plain cells (the shard
//! owns them, so the data path never takes a lock or an atomic), copied into a
//! [`ShardSnapshot`] on each shard when scraped, merged, and rendered in the
//! Prometheus text format (version 0.0.4).
//!
//! Scrapes come from the HTTP thread ([`http`]) over a std channel; shard 0
//! serves them ([`serve_scrapes`]) by broadcasting to every shard.

pub mod http;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use sluice_codec::ApiKey;

use crate::state::ShardState;

/// Latency bucket bounds, in seconds: 50 us to 30 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];
/// Group-commit size bounds, in bytes: 512 B to 64 MiB, by 4x.
const BYTES_BUCKETS: &[f64] = &[
    512.0, 2048.0, 8192.0, 32768.0, 131072.0, 524288.0, 2097152.0, 8388608.0, 33554432.0,
    67108864.0,
];
/// Logs per group commit.
const LOGS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// How long shard 0 waits for every shard's snapshot before giving up.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(4);
/// How often shard 0 looks for a scrape from the HTTP thread. A std channel
/// cannot wake a glommio task, so the task polls; 20 ms is far below any
/// scrape interval and costs nothing measurable.
const SCRAPE_POLL: Duration = Duration::from_millis(20);

/// A histogram with fixed bucket bounds; `counts[i]` counts observations in
/// `(bounds[i-1], bounds[i]]`, the last slot those above every bound.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn latency() -> Self {
        Histogram::new(LATENCY_BUCKETS_SECONDS)
    }

    pub fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn merge(&mut self, other: &Histogram) {
        debug_assert_eq!(
            self.bounds, other.bounds,
            "merging histograms of one metric"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Bytes and records in (produce) and out (fetch) of one topic.
#[derive(Clone, Copy, Debug, Default)]
pub struct TopicIo {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

impl TopicIo {
    fn merge(&mut self, o: &TopicIo) {
        self.bytes_in += o.bytes_in;
        self.records_in += o.records_in;
        self.bytes_out += o.bytes_out;
        self.records_out += o.records_out;
    }
}

/// What the log cleaner of a shard did (counters) and how far behind it is (gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CleanerMetrics {
    pub passes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub errors: u64,
    /// The largest dirty ratio of this shard's compacted logs at the last check.
    pub max_dirty_ratio: f64,
    /// The longest a dirty record of this shard has waited, at the last check.
    pub max_lag_ms: i64,
    /// How the cleaner's I/O was paced (live, also during a pass).
    pub pace: engine::cleaner::PaceStats,
}

/// One shard's metrics. Only its own shard touches them.
pub struct ShardMetrics {
    pub cleaner: Cell<CleanerMetrics>,
    topics: RefCell<HashMap<String, TopicIo>>,
    /// Per Kafka API key: latency of completed requests (its count is the request count).
    apis: RefCell<BTreeMap<i16, Histogram>>,
    produce_latency: RefCell<Histogram>,
    fetch_latency: RefCell<Histogram>,
    flush_latency: RefCell<Histogram>,
    flush_bytes: RefCell<Histogram>,
    flush_logs: RefCell<Histogram>,
    /// Bytes appended since the flusher last started a group commit.
    unflushed_bytes: Cell<u64>,
    in_flight: Cell<u64>,
    connections_total: Cell<u64>,
    /// glommio hands out its executor stats as deltas: they add up here.
    busy: Cell<Duration>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            cleaner: Cell::default(),
            topics: RefCell::default(),
            apis: RefCell::default(),
            produce_latency: RefCell::new(Histogram::latency()),
            fetch_latency: RefCell::new(Histogram::latency()),
            flush_latency: RefCell::new(Histogram::latency()),
            flush_bytes: RefCell::new(Histogram::new(BYTES_BUCKETS)),
            flush_logs: RefCell::new(Histogram::new(LOGS_BUCKETS)),
            unflushed_bytes: Cell::new(0),
            in_flight: Cell::new(0),
            connections_total: Cell::new(0),
            busy: Cell::new(Duration::ZERO),
        }
    }
}

impl ShardMetrics {
    fn topic(&self, topic: &str, f: impl FnOnce(&mut TopicIo)) {
        let mut topics = self.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(io) => f(io),
            None => f(topics.entry(topic.to_string()).or_default()),
        }
    }

    /// A batch appended (not a duplicate) on this shard, the partition's owner.
    pub fn appended(&self, topic: &str, bytes: usize, records: u64) {
        self.topic(topic, |io| {
            io.bytes_in += bytes as u64;
            io.records_in += records;
        });
        self.unflushed_bytes
            .set(self.unflushed_bytes.get() + bytes as u64);
    }

    /// Record batches sent to a consumer by a connection of this shard.
    pub fn fetched(&self, topic: &str, bytes: usize, records: u64) {
        if bytes == 0 {
            return;
        }
        self.topic(topic, |io| {
            io.bytes_out += bytes as u64;
            io.records_out += records;
        });
    }

    /// A partition's append waited this long for its flush policy.
    pub fn produce_durable(&self, elapsed: Duration) {
        self.produce_latency
            .borrow_mut()
            .observe(elapsed.as_secs_f64());
    }

    /// Bytes appended since the last group commit started; resets the count.
    pub fn take_unflushed_bytes(&self) -> u64 {
        self.unflushed_bytes.replace(0)
    }

    /// One group commit of `logs` logs and `bytes` bytes took `elapsed`.
    pub fn flushed(&self, logs: usize, bytes: u64, elapsed: Duration) {
        self.flush_latency
            .borrow_mut()
            .observe(elapsed.as_secs_f64());
        self.flush_bytes.borrow_mut().observe(bytes as f64);
        self.flush_logs.borrow_mut().observe(logs as f64);
    }

    pub fn connection_opened(&self) {
        self.connections_total.set(self.connections_total.get() + 1);
    }

    /// A request was decoded; the guard counts it in flight until dropped and
    /// records its latency when [`InFlight::finish`]ed.
    pub fn request_started(self: &Rc<Self>, api: ApiKey) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight {
            metrics: self.clone(),
            api,
            start: Instant::now(),
        }
    }
}

/// A request in flight on this shard (see [`ShardMetrics::request_started`]).
pub struct InFlight {
    metrics: Rc<ShardMetrics>,
    api: ApiKey,
    start: Instant,
}

impl InFlight {
    /// The response is ready: record the request's latency.
    pub fn finish(self) {
        let secs = self.start.elapsed().as_secs_f64();
        let m = &self.metrics;
        m.apis
            .borrow_mut()
            .entry(self.api as i16)
            .or_insert_with(Histogram::latency)
            .observe(secs);
        // Produce latency is measured per partition on the owning shard
        // (`produce_durable`); a Produce request as a whole is in the per-API one.
        if self.api == ApiKey::Fetch {
            m.fetch_latency.borrow_mut().observe(secs);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics
            .in_flight
            .set(self.metrics.in_flight.get().saturating_sub(1));
    }
}

/// Counts the batches and records of `records` (whole v2 batches, as stored).
pub fn count_records(records: &[u8]) -> u64 {
    sluice_records::BatchIter::new(records)
        .without_crc()
        .map_while(Result::ok)
        .map(|(h, _)| u64::try_from(h.record_count).unwrap_or(0))
        .sum()
}

/// What one shard reports to a scrape. Plain data, sent across cores.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: u16,
    pub topics: Vec<(String, TopicIo)>,
    pub apis: Vec<(i16, Histogram)>,
    pub produce_latency: Histogram,
    pub fetch_latency: Histogram,
    pub flush_latency: Histogram,
    pub flush_bytes: Histogram,
    pub flush_logs: Histogram,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_used_bytes: u64,
    pub in_flight: u64,
    pub connections_open: u64,
    pub connections_total: u64,
    pub busy_seconds: f64,
    pub cleaner: CleanerMetrics,
    /// Committed offsets of the groups placed here: (group, topic, partition, offset).
    pub committed: Vec<(String, String, i32, i64)>,
    /// High watermarks of the partitions this shard owns.
    pub high_watermarks: Vec<(String, i32, i64)>,
}

/// Copies this shard's metrics (runs on the shard).
pub fn snapshot(s: &ShardState) -> ShardSnapshot {
    let m = &s.metrics;
    let stats = glommio::executor().executor_stats();
    m.busy.set(m.busy.get() + stats.executor_runtime());
    let (cache_hits, cache_misses, cache_used_bytes) = s.cache_stats();
    ShardSnapshot {
        shard: s.shard.0,
        topics: m
            .topics
            .borrow()
            .iter()
            .map(|(t, io)| (t.clone(), *io))
            .collect(),
        apis: m
            .apis
            .borrow()
            .iter()
            .map(|(k, h)| (*k, h.clone()))
            .collect(),
        produce_latency: m.produce_latency.borrow().clone(),
        fetch_latency: m.fetch_latency.borrow().clone(),
        flush_latency: m.flush_latency.borrow().clone(),
        flush_bytes: m.flush_bytes.borrow().clone(),
        flush_logs: m.flush_logs.borrow().clone(),
        cache_hits,
        cache_misses,
        cache_used_bytes,
        in_flight: m.in_flight.get(),
        connections_open: s.connections.get() as u64,
        connections_total: m.connections_total.get(),
        busy_seconds: m.busy.get().as_secs_f64(),
        cleaner: m.cleaner.get(),
        committed: s.groups.borrow().committed_offsets(),
        high_watermarks: s.high_watermarks(),
    }
}

/// What the HTTP thread asks shard 0.
pub enum Scrape {
    /// The metrics text, or `None` when some shard did not answer in time.
    Metrics(SyncSender<Option<String>>),
    /// `true` when every shard answered.
    Health(SyncSender<bool>),
}

/// Shard 0: answers scrapes from the HTTP thread until shutdown.
pub async fn serve_scrapes(state: Rc<ShardState>, rx: Receiver<Scrape>) {
    while !state.shutdown.is_set() {
        let scrape = match rx.try_recv() {
            Ok(s) => s,
            Err(TryRecvError::Empty) => {
                glommio::timer::sleep(SCRAPE_POLL).await;
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
        };
        let snapshots = collect(&state).await;
        // The HTTP thread may have given up waiting: nothing to do then.
        match scrape {
            Scrape::Metrics(reply) => {
                let _ = reply.try_send(snapshots.map(|s| render(&s)));
            }
            Scrape::Health(reply) => {
                let _ = reply.try_send(snapshots.is_some());
            }
        }
    }
}

/// Every shard's snapshot, or `None` if any shard fails to answer in time.
async fn collect(state: &Rc<ShardState>) -> Option<Vec<ShardSnapshot>> {
    let all = state.router.broadcast(|s: &Rc<ShardState>| {
        let snap = snapshot(s);
        Box::pin(async move { snap })
    });
    let timeout = glommio::timer::sleep(SCRAPE_TIMEOUT);
    futures::pin_mut!(all, timeout);
    match futures::future::select(all, timeout).await {
        futures::future::Either::Left((Ok(snaps), _)) => Some(snaps),
        _ => None,
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One histogram's series; `labels` is empty or `k="v",...` without braces.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

fn merged(snaps: &[ShardSnapshot], f: impl Fn(&ShardSnapshot) -> &Histogram) -> Histogram {
    let mut h = f(&snaps[0]).clone();
    for s in &snaps[1..] {
        h.merge(f(s));
    }
    h
}

/// A metric's name, help, and how to read it from `T`.
type Series<T> = (&'static str, &'static str, fn(&T) -> u64);
type HistogramSeries = (&'static str, &'static str, fn(&ShardSnapshot) -> &Histogram);
/// Name, type, help, value: one sample per shard.
type ShardSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardSnapshot) -> f64,
);

/// Renders the snapshots of every shard in the Prometheus text format.
/// Topic, API and group series are summed over shards; shard-level ones carry
/// a `shard` label.
pub fn render(snaps: &[ShardSnapshot]) -> String {
    let mut out = String::new();
    if snaps.is_empty() {
        return out;
    }
    let mut topics: BTreeMap<&str, TopicIo> = BTreeMap::new();
    for s in snaps {
        for (t, io) in &s.topics {
            topics.entry(t).or_default().merge(io);
        }
    }
    let topic_counters: [Series<TopicIo>; 4] = [
        (
            "sluice_bytes_in_total",
            "Bytes of record batches appended (produce), by topic.",
            |io| io.bytes_in,
        ),
        (
            "sluice_records_in_total",
            "Records appended (produce), by topic.",
            |io| io.records_in,
        ),
        (
            "sluice_bytes_out_total",
            "Bytes of record batches sent to consumers (fetch), by topic.",
            |io| io.bytes_out,
        ),
        (
            "sluice_records_out_total",
            "Records sent to consumers (fetch), by topic.",
            |io| io.records_out,
        ),
    ];
    for (name, help, get) in topic_counters {
        header(&mut out, name, "counter", help);
        for (t, io) in &topics {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", label(t), get(io));
        }
    }

    let mut apis: BTreeMap<i16, Histogram> = BTreeMap::new();
    for s in snaps {
        for (k, h) in &s.apis {
            match apis.get_mut(k) {
                Some(a) => a.merge(h),
                None => {
                    apis.insert(*k, h.clone());
                }
            }
        }
    }
    let api_name = |k: i16| ApiKey::from_i16(k).map_or("unknown", |a| a.name());
    header(
        &mut out,
        "sluice_requests_total",
        "counter",
        "Kafka requests answered, by API.",
    );
    for (k, h) in &apis {
        let _ = writeln!(
            out,
            "sluice_requests_total{{api=\"{}\"}} {}",
            api_name(*k),
            h.count
        );
    }
    header(
        &mut out,
        "sluice_request_latency_seconds",
        "histogram",
        "Time from decoding a request to its response being ready, by API.",
    );
    for (k, h) in &apis {
        let labels = format!("api=\"{}\"", api_name(*k));
        histogram(&mut out, "sluice_request_latency_seconds", &labels, h);
    }

    let histograms: [HistogramSeries; 5] = [
        (
            "sluice_produce_latency_seconds",
            "Time from appending a partition's batch to meeting its flush policy.",
            |s| &s.produce_latency,
        ),
        (
            "sluice_fetch_latency_seconds",
            "Time to answer a Fetch request, long-poll wait included.",
            |s| &s.fetch_latency,
        ),
        (
            "sluice_flush_latency_seconds",
            "Duration of one group commit (writes and fdatasync of every dirty log).",
            |s| &s.flush_latency,
        ),
        (
            "sluice_flush_batch_bytes",
            "Bytes appended since the previous group commit, per group commit.",
            |s| &s.flush_bytes,
        ),
        (
            "sluice_flush_batch_logs",
            "Partition logs flushed together, per group commit.",
            |s| &s.flush_logs,
        ),
    ];
    for (name, help, get) in histograms {
        header(&mut out, name, "histogram", help);
        histogram(&mut out, name, "", &merged(snaps, get));
    }

    let per_shard: [ShardSeries; 19] = [
        (
            "sluice_cleaner_passes_total",
            "counter",
            "Log cleaner passes completed, by shard.",
            |s| s.cleaner.passes as f64,
        ),
        (
            "sluice_cleaner_read_bytes_total",
            "counter",
            "Bytes of segments the log cleaner read, by shard.",
            |s| s.cleaner.bytes_read as f64,
        ),
        (
            "sluice_cleaner_written_bytes_total",
            "counter",
            "Bytes of cleaned segments the log cleaner wrote, by shard.",
            |s| s.cleaner.bytes_written as f64,
        ),
        (
            "sluice_cleaner_removed_records_total",
            "counter",
            "Records the log cleaner removed (superseded, expired tombstones, keyless), by shard.",
            |s| s.cleaner.records_removed as f64,
        ),
        (
            "sluice_cleaner_errors_total",
            "counter",
            "Log cleaner passes that failed, by shard.",
            |s| s.cleaner.errors as f64,
        ),
        (
            "sluice_cleaner_max_dirty_ratio",
            "gauge",
            "Largest dirty ratio of the shard's compacted logs.",
            |s| s.cleaner.max_dirty_ratio,
        ),
        (
            "sluice_cleaner_max_lag_seconds",
            "gauge",
            "Longest time a record of the shard's compacted logs has waited for the cleaner.",
            |s| s.cleaner.max_lag_ms as f64 / 1000.0,
        ),
        (
            "sluice_cleaner_ios_total",
            "counter",
            "Disk reads, writes and syncs the log cleaner issued, by shard.",
            |s| s.cleaner.pace.ios as f64,
        ),
        (
            "sluice_cleaner_io_bytes_total",
            "counter",
            "Bytes the log cleaner read and wrote, by shard (live, also during a pass).",
            |s| s.cleaner.pace.io_bytes as f64,
        ),
        (
            "sluice_cleaner_deferred_ios_total",
            "counter",
            "Log cleaner I/Os that first waited for the shard's data-path disk I/O, by shard.",
            |s| s.cleaner.pace.ios_deferred as f64,
        ),
        (
            "sluice_cleaner_deferred_seconds_total",
            "counter",
            "Time the log cleaner waited for the shard's data-path disk I/O, by shard.",
            |s| s.cleaner.pace.deferred.as_secs_f64(),
        ),
        (
            "sluice_cleaner_throttled_seconds_total",
            "counter",
            "Time the log cleaner slept to stay under its I/O rate limit, by shard.",
            |s| s.cleaner.pace.throttled.as_secs_f64(),
        ),
        (
            "sluice_tail_cache_hits_total",
            "counter",
            "Reads served from the tail cache, by shard.",
            |s| s.cache_hits as f64,
        ),
        (
            "sluice_tail_cache_misses_total",
            "counter",
            "Reads older than the tail cache (served from disk), by shard.",
            |s| s.cache_misses as f64,
        ),
        (
            "sluice_tail_cache_used_bytes",
            "gauge",
            "Bytes held by the tail caches, by shard.",
            |s| s.cache_used_bytes as f64,
        ),
        (
            "sluice_requests_in_flight",
            "gauge",
            "Requests decoded and not yet answered (queue depth), by shard.",
            |s| s.in_flight as f64,
        ),
        (
            "sluice_shard_busy_seconds_total",
            "counter",
            "Time the shard's executor spent running tasks, by shard.",
            |s| s.busy_seconds,
        ),
        (
            "sluice_connections_open",
            "gauge",
            "Open client connections, by shard.",
            |s| s.connections_open as f64,
        ),
        (
            "sluice_connections_total",
            "counter",
            "Client connections accepted, by shard.",
            |s| s.connections_total as f64,
        ),
    ];
    for (name, kind, help, get) in per_shard {
        header(&mut out, name, kind, help);
        for s in snaps {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }

    let hwm: HashMap<(&str, i32), i64> = snaps
        .iter()
        .flat_map(|s| s.high_watermarks.iter())
        .map(|(t, p, o)| ((t.as_str(), *p), *o))
        .collect();
    header(
        &mut out,
        "sluice_consumer_group_lag",
        "gauge",
        "Records between a group's committed offset and the partition's high watermark.",
    );
    let mut lags: Vec<(&str, &str, i32, i64)> = snaps
        .iter()
        .flat_map(|s| s.committed.iter())
        .filter_map(|(g, t, p, committed)| {
            let end = hwm.get(&(t.as_str(), *p))?;
            Some((g.as_str(), t.as_str(), *p, (end - committed).max(0)))
        })
        .collect();
    lags.sort_unstable();
    for (g, t, p, lag) in lags {
        let _ = writeln!(
            out,
            "sluice_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {lag}",
            label(g),
            label(t)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(shard: u16) -> ShardSnapshot {
        let m = ShardMetrics::default();
        let snapshot = ShardSnapshot {
            shard,
            topics: Vec::new(),
            apis: Vec::new(),
            produce_latency: m.produce_latency.borrow().clone(),
            fetch_latency: m.fetch_latency.borrow().clone(),
            flush_latency: m.flush_latency.borrow().clone(),
            flush_bytes: m.flush_bytes.borrow().clone(),
            flush_logs: m.flush_logs.borrow().clone(),
            cache_hits: 0,
            cache_misses: 0,
            cache_used_bytes: 0,
            in_flight: 0,
            connections_open: 0,
            connections_total: 0,
            busy_seconds: 0.0,
            cleaner: CleanerMetrics::default(),
            committed: Vec::new(),
            high_watermarks: Vec::new(),
        };
        snapshot
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let mut h = Histogram::latency();
        h.observe(0.001);
        h.observe(0.002);
        h.observe(100.0);
        let mut out = String::new();
        histogram(&mut out, "x", "api=\"Fetch\"", &h);
        assert!(
            out.contains("x_bucket{api=\"Fetch\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{api=\"Fetch\",le=\"0.0025\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{api=\"Fetch\",le=\"30\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{api=\"Fetch\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_count{api=\"Fetch\"} 3\n"), "{out}");
    }

    #[test]
    fn render_merges_shards_and_computes_lag() {
        let mut a = empty(0);
        let mut b = empty(1);
        a.topics.push((
            "t\"1".into(),
            TopicIo {
                bytes_in: 10,
                records_in: 2,
                ..Default::default()
            },
        ));
        b.topics.push((
            "t\"1".into(),
            TopicIo {
                bytes_in: 5,
                records_in: 1,
                ..Default::default()
            },
        ));
        let mut h = Histogram::latency();
        h.observe(0.01);
        a.apis.push((ApiKey::Produce as i16, h.clone()));
        b.apis.push((ApiKey::Produce as i16, h));
        a.committed.push(("g".into(), "t".into(), 0, 7));
        b.high_watermarks.push(("t".into(), 0, 10));
        let text = render(&[a, b]);
        assert!(
            text.contains("sluice_bytes_in_total{topic=\"t\\\"1\"} 15\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_records_in_total{topic=\"t\\\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_requests_total{api=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_request_latency_seconds_count{api=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_connections_open{shard=\"1\"} 0\n"),
            "{text}"
        );
    }
}
