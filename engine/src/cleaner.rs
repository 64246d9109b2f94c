//! Log compaction (`cleanup.policy=compact`): a pass rewrites the sealed
//! segments of a log keeping, for every key, only its latest record.
//!
//! A pass, as Kafka's cleaner does it:
//!
//! 1. **Plan** (synchronous): the cleanable range is the sealed prefix of the
//!    log, up to the first segment younger than `min.compaction.lag.ms` (the
//!    active segment is never touched). Its part from the *first dirty offset*
//!    (the cleaner checkpoint: everything below was cleaned before) is dirty.
//! 2. **Key map**: the dirty batches are read, and each key's hash (128 bits)
//!    maps to its latest offset. The map has a fixed capacity (from the
//!    cleaner's memory budget); when it is full the pass stops at a batch
//!    boundary, the *end offset*, and the rest waits for the next pass.
//! 3. **Rewrite**: every segment below the end offset (clean ones too: they
//!    hold older values of keys seen again) is copied into `.cleaned` files,
//!    consecutive segments grouped into one while they fit `segment.bytes`.
//!    A record stays if it has a key, is the latest for it (or lies past the
//!    end offset), and is not a tombstone older than `delete.retention.ms`.
//!    Batches keep their offsets (with gaps), timestamps, headers and codec;
//!    a batch whose records all go disappears, except the last batch of a
//!    producer still tracked, which stays as an empty batch (as in Kafka).
//! 4. **Swap**: the outputs are fsynced; the new segments replace the old in
//!    memory (readers holding old files keep them); then a swap manifest
//!    (`cleaner-swap`: inputs and outputs) is written atomically: that is the
//!    commit point. The `.cleaned` files are renamed over their final names,
//!    the other inputs deleted, the manifest removed, and the checkpoint
//!    (`cleaner-offset`) advanced to the end offset.
//!
//! Recovery ([`recover_swap`]) redoes a swap whose manifest exists (every
//! step is idempotent) and deletes `.cleaned` files without one, so a crash
//! anywhere leaves the old segments or the new ones, never a mix.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_records::{BatchFilter, BatchHeader, Filtered};

use crate::error::LogError;
use crate::log::PartitionLog;
use crate::segment::{file_name, Segment, SegmentState};
use crate::storage::{align_down, align_up, read_file, write_file_atomic, Storage, StorageFile};

/// The swap manifest: its presence commits a swap.
pub const SWAP_MANIFEST: &str = "cleaner-swap";
/// The cleaner checkpoint: the first dirty offset.
pub const CHECKPOINT: &str = "cleaner-offset";
/// The suffix of a pass's output files until the swap.
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// Bytes of key map per entry: a 16-byte hash and an 8-byte offset in a
/// hash table kept at most 7/8 full, with its control bytes.
pub const MAP_BYTES_PER_ENTRY: usize = 32;

/// Limits of the cleaner.
#[derive(Clone, Debug)]
pub struct CleanerOptions {
    /// Memory of the key map; its capacity is this over [`MAP_BYTES_PER_ENTRY`].
    pub map_memory_bytes: usize,
    /// Size of each read and write the cleaner issues. Each one can hold a
    /// produce's `fdatasync` back for as long as it takes the disk, so
    /// smaller is kinder to the data path: 256 KiB measured produce p99
    /// +0.3 ms over no cleaner, 1 MiB +0.9-1.1 ms (`compaction_bench`).
    pub io_chunk_bytes: usize,
    /// Cap on one batch's decompressed records.
    pub max_decompressed_bytes: usize,
}

impl Default for CleanerOptions {
    fn default() -> Self {
        CleanerOptions {
            map_memory_bytes: 32 << 20,
            io_chunk_bytes: 256 << 10,
            max_decompressed_bytes: sluice_records::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

impl CleanerOptions {
    pub fn map_capacity(&self) -> usize {
        (self.map_memory_bytes / MAP_BYTES_PER_ENTRY).max(1)
    }
}

/// How the cleaner is paced. [`Pace::before_io`] is awaited before each disk
/// operation the cleaner issues (it may defer it); [`Pace::pace`] is called
/// with the bytes read or written after each batch and chunk (rate limit,
/// and a yield to the data path).
#[allow(async_fn_in_trait)]
pub trait Pace {
    /// Before a read or write of `bytes` (0 for a sync or truncate).
    async fn before_io(&mut self, _bytes: u64) {}
    async fn pace(&mut self, bytes: u64);
}

/// No pacing (tests, benchmarks of the cleaner alone).
pub struct NoPace;

impl Pace for NoPace {
    async fn pace(&mut self, _bytes: u64) {}
}

/// Limits of [`RatePace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaceOptions {
    /// At most this many bytes a second, reads and writes together (0: no limit).
    pub max_bytes_per_second: u64,
    /// The cleaner's guaranteed share while the data path has disk I/O in
    /// flight: it may still issue its I/O at this rate (0: it waits until the
    /// data path's disk is idle, however long that takes).
    pub min_bytes_per_second: u64,
    /// How long the cleaner waits before looking again when it defers an I/O
    /// to the data path's (`Duration::ZERO`: it never defers).
    pub defer_wait: Duration,
    /// The longest the cleaner works on the CPU before it parks, so the
    /// executor reaps the data path's I/O completions.
    pub cpu_slice: Duration,
}

impl Default for PaceOptions {
    fn default() -> Self {
        PaceOptions {
            max_bytes_per_second: DEFAULT_MAX_BYTES_PER_SECOND,
            min_bytes_per_second: DEFAULT_MIN_BYTES_PER_SECOND,
            defer_wait: DEFAULT_DEFER_WAIT,
            cpu_slice: DEFAULT_CPU_SLICE,
        }
    }
}

/// The default of [`PaceOptions::max_bytes_per_second`].
pub const DEFAULT_MAX_BYTES_PER_SECOND: u64 = 100 << 20;
/// The default of [`PaceOptions::min_bytes_per_second`].
pub const DEFAULT_MIN_BYTES_PER_SECOND: u64 = 8 << 20;
/// The default of [`PaceOptions::defer_wait`].
pub const DEFAULT_DEFER_WAIT: Duration = Duration::from_micros(200);
/// The default of [`PaceOptions::cpu_slice`]. With 1 ms slices (the first
/// choice) the produce p99 of `compaction_bench` rose by about half under a
/// cleaner at 16 MiB/s; with 250 us it stayed within the rounds' spread.
pub const DEFAULT_CPU_SLICE: Duration = Duration::from_micros(250);
/// The longest [`PaceOptions::defer_wait`] allowed: a cleaner that slept
/// longer would miss the data path's idle gaps.
pub const MAX_DEFER_WAIT: Duration = Duration::from_micros(500);

/// What a [`RatePace`] has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaceStats {
    /// Disk operations the cleaner issued (through [`Pace::before_io`]).
    pub ios: u64,
    /// Bytes those operations read or wrote: the cleaner's progress during
    /// a pass (the pass's own byte counts come only at its end).
    pub io_bytes: u64,
    /// Of those, how many waited for the data path's I/O first.
    pub ios_deferred: u64,
    /// Of those, how many went while the data path's I/O was still in
    /// flight, on the guaranteed share.
    pub ios_on_min_share: u64,
    /// Time spent waiting for the data path's disk I/O.
    pub deferred: Duration,
    /// Time spent sleeping to keep under the rate limit.
    pub throttled: Duration,
}

/// How a shard paces its cleaner (the broker and the benchmark use it):
///
/// - each cleaner I/O waits while the shard's data path has disk I/O in
///   flight ([`crate::log::data_io_in_flight`]), looking again every
///   `defer_wait`, except that one may always go once the last one's bytes
///   at `min_bytes_per_second` have had their time (the guaranteed share);
/// - at most `max_bytes_per_second`;
/// - a yield to other tasks after each batch, and a short park whenever the
///   cleaner's CPU slice is used up.
pub struct RatePace {
    opts: PaceOptions,
    window_start: Instant,
    window_bytes: u64,
    last_park: Instant,
    /// When the guaranteed share allows the next I/O.
    share_at: Instant,
    stats: PaceStats,
}

impl RatePace {
    pub fn new(opts: PaceOptions) -> Self {
        assert!(
            opts.defer_wait <= MAX_DEFER_WAIT,
            "defer wait {:?} over {MAX_DEFER_WAIT:?}",
            opts.defer_wait
        );
        let now = Instant::now();
        RatePace {
            opts,
            window_start: now,
            window_bytes: 0,
            last_park: now,
            share_at: now,
            stats: PaceStats::default(),
        }
    }

    pub fn stats(&self) -> PaceStats {
        self.stats
    }
}

impl Pace for RatePace {
    async fn before_io(&mut self, bytes: u64) {
        self.stats.ios += 1;
        self.stats.io_bytes += bytes;
        if !self.opts.defer_wait.is_zero() && crate::log::data_io_in_flight() > 0 {
            let start = Instant::now();
            let mut on_share = false;
            while crate::log::data_io_in_flight() > 0 {
                if self.opts.min_bytes_per_second > 0 && Instant::now() >= self.share_at {
                    on_share = true;
                    break;
                }
                glommio::timer::sleep(self.opts.defer_wait).await;
            }
            self.stats.ios_deferred += 1;
            self.stats.ios_on_min_share += u64::from(on_share);
            self.stats.deferred += start.elapsed();
            // It parked: the CPU slice starts over.
            self.last_park = Instant::now();
        }
        if self.opts.min_bytes_per_second > 0 {
            let spacing =
                Duration::from_secs_f64(bytes as f64 / self.opts.min_bytes_per_second as f64);
            self.share_at = Instant::now() + spacing;
        }
    }

    async fn pace(&mut self, bytes: u64) {
        if self.opts.max_bytes_per_second > 0 {
            self.window_bytes += bytes;
            let allowed = Duration::from_secs_f64(
                self.window_bytes as f64 / self.opts.max_bytes_per_second as f64,
            );
            let elapsed = self.window_start.elapsed();
            if allowed > elapsed {
                let t = Instant::now();
                glommio::timer::sleep(allowed - elapsed).await;
                self.stats.throttled += t.elapsed();
            }
            if self.window_start.elapsed() > Duration::from_secs(1) {
                self.window_start = Instant::now();
                self.window_bytes = 0;
            }
        }
        // Let the data path run. Yielding the task queue is not enough: I/O
        // completions (a produce's fdatasync) are reaped only when the
        // executor runs out of runnable tasks, so after each CPU slice the
        // cleaner parks briefly.
        if self.last_park.elapsed() >= self.opts.cpu_slice {
            glommio::timer::sleep(CLEANER_PARK).await;
            self.last_park = Instant::now();
        } else {
            glommio::executor().yield_task_queue_now().await;
        }
    }
}

/// How long it parks: long enough for the executor to poll for I/O.
const CLEANER_PARK: Duration = Duration::from_micros(50);

/// How much of a compacted log awaits the cleaner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dirtiness {
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    /// Bytes of segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of segments from the first dirty offset to the first uncleanable one.
    pub dirty_bytes: u64,
    /// `dirty / (clean + dirty)`, 0 when both are 0.
    pub ratio: f64,
    /// Age of the oldest dirty record (by the first batch timestamp of the
    /// first dirty segment), 0 when nothing is dirty.
    pub lag_ms: i64,
    /// The cleaner should take this log now: the ratio is over
    /// `min.cleanable.dirty.ratio` or the lag over `max.compaction.lag.ms`.
    pub due: bool,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub segments_in: usize,
    pub segments_out: usize,
    /// The new first dirty offset.
    pub end_offset: i64,
}

struct Input<F> {
    base: i64,
    next_offset: i64,
    size: u64,
    max_timestamp: i64,
    created_ms: i64,
    file: Rc<F>,
    path: PathBuf,
}

/// A planned pass: what it reads, decided under the log's borrow.
pub struct CleanJob<S: Storage> {
    storage: S,
    dir: PathBuf,
    inputs: Vec<Input<S::File>>,
    first_dirty: i64,
    segment_bytes: u64,
    index_interval_bytes: u64,
    tombstone_horizon_ms: i64,
    /// Producer id -> last offset of its last batch: that batch is kept even
    /// when empty, so the producer's sequence state survives.
    producer_last: HashMap<i64, i64>,
}

struct Output<F> {
    base: i64,
    next_offset: i64,
    size: u64,
    max_timestamp: i64,
    created_ms: i64,
    inputs: Vec<i64>,
    file: Rc<F>,
    index: crate::index::OffsetIndex,
    time_index: crate::index::TimeIndex,
}

fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::hash::DefaultHasher::new();
    a.write(key);
    let mut b = std::hash::DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(key);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// The final name of a file of segment `base`, and its `.cleaned` twin.
fn names(dir: &Path, base: i64, ext: &str) -> (PathBuf, PathBuf) {
    let fin = dir.join(file_name(base, ext));
    let cleaned = dir.join(format!("{}{CLEANED_SUFFIX}", file_name(base, ext)));
    (fin, cleaned)
}

const EXTS: [&str; 3] = ["log", "index", "timeindex"];

impl<S: Storage> PartitionLog<S> {
    /// How dirty this log is; `None` unless it is compacted.
    pub fn dirtiness(&self, now_ms: i64) -> Option<Dirtiness> {
        if !self.config.cleanup_policy.compact {
            return None;
        }
        let first_dirty = self.first_dirty_offset.max(self.log_start_offset);
        let min_lag = self.config.min_compaction_lag_ms;
        let active_base = *self.segments.keys().next_back()?;
        let first_uncleanable = self
            .segments
            .values()
            .take(self.segments.len() - 1)
            .find(|s| {
                s.state != SegmentState::Sealed
                    || (min_lag > 0 && s.max_timestamp > now_ms.saturating_sub(min_lag))
            })
            .map_or(active_base, |s| s.base_offset);
        let (mut clean, mut dirty, mut oldest) = (0u64, 0u64, None);
        for s in self.segments.range(..first_uncleanable).map(|(_, s)| s) {
            if s.next_offset <= first_dirty {
                clean += s.size;
            } else {
                dirty += s.size;
                if oldest.is_none() && s.size > 0 {
                    oldest = Some(
                        s.time_index
                            .entries()
                            .first()
                            .map_or(s.max_timestamp, |e| e.0),
                    );
                }
            }
        }
        let ratio = if clean + dirty == 0 {
            0.0
        } else {
            dirty as f64 / (clean + dirty) as f64
        };
        let lag_ms = oldest
            .filter(|&t| t >= 0)
            .map_or(0, |t| (now_ms - t).max(0));
        let max_lag = self.config.max_compaction_lag_ms;
        let due = dirty > 0
            && (ratio > self.config.min_cleanable_dirty_ratio
                || (max_lag != i64::MAX && lag_ms > max_lag));
        Some(Dirtiness {
            first_dirty,
            first_uncleanable,
            clean_bytes: clean,
            dirty_bytes: dirty,
            ratio,
            lag_ms,
            due,
        })
    }

    /// The first offset the cleaner has not yet cleaned (its checkpoint).
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset
    }

    /// True while a cleaning pass runs on this log.
    pub fn is_cleaning(&self) -> bool {
        self.cleaning
    }

    /// Plans a pass when the log is due (or always, with `force`: then even
    /// a clean log is rewritten, which drops expired tombstones).
    pub fn plan_clean(&mut self, now_ms: i64, force: bool) -> Option<CleanJob<S>> {
        if self.cleaning || self.poisoned.is_some() || self.closed || self.cleaner_failed.is_some()
        {
            return None;
        }
        let d = self.dirtiness(now_ms)?;
        if !force && !d.due {
            return None;
        }
        let inputs: Vec<Input<S::File>> = self
            .segments
            .range(..d.first_uncleanable)
            .map(|(_, s)| s)
            .take_while(|s| s.state == SegmentState::Sealed && s.file.is_some())
            .filter_map(|s| {
                Some(Input {
                    base: s.base_offset,
                    next_offset: s.next_offset,
                    size: s.size,
                    max_timestamp: s.max_timestamp,
                    created_ms: s.created_ms,
                    file: s.file.clone()?,
                    path: s.path.clone(),
                })
            })
            .collect();
        if inputs.is_empty() {
            return None;
        }
        self.cleaning = true;
        let producer_last = self
            .producers
            .iter()
            .filter_map(|(&id, e)| e.batches.back().map(|b| (id, b.last_offset)))
            .collect();
        Some(CleanJob {
            storage: self.storage.clone(),
            dir: self.dir.clone(),
            inputs,
            first_dirty: d.first_dirty,
            segment_bytes: self.config.segment_bytes,
            index_interval_bytes: self.config.index_interval_bytes,
            tombstone_horizon_ms: now_ms.saturating_sub(self.config.delete_retention_ms),
            producer_last,
        })
    }
}

/// Reads a segment file batch by batch, in chunks.
struct BatchReader<'a, F: StorageFile> {
    file: &'a F,
    path: &'a Path,
    pos: u64,
    end: u64,
    buf: Bytes,
    buf_pos: u64,
    chunk: usize,
    /// Bytes read since the last [`BatchReader::take_read`].
    read: u64,
}

impl<'a, F: StorageFile> BatchReader<'a, F> {
    fn new(file: &'a F, path: &'a Path, end: u64, chunk: usize) -> Self {
        BatchReader {
            file,
            path,
            pos: 0,
            end,
            buf: Bytes::new(),
            buf_pos: 0,
            chunk,
            read: 0,
        }
    }

    fn take_read(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::Corrupt {
            path: self.path.to_path_buf(),
            position: self.pos,
            reason,
        }
    }

    async fn fill<P: Pace>(&mut self, need: usize, pace: &mut P) -> Result<(), LogError> {
        let want = (self.end - self.pos).min(need.max(self.chunk) as u64) as usize;
        pace.before_io(want as u64).await;
        self.buf = self
            .file
            .read_at(self.pos, want)
            .await
            .map_err(|e| LogError::io("read", self.path, &e))?;
        self.buf_pos = self.pos;
        self.read += self.buf.len() as u64;
        if self.buf.len() < need {
            return Err(self.corrupt("segment shorter than its batches".into()));
        }
        Ok(())
    }

    /// The next whole batch (CRC checked), or `None` at the end.
    async fn next<P: Pace>(
        &mut self,
        pace: &mut P,
    ) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let mut at = (self.pos - self.buf_pos) as usize;
        if self.pos < self.buf_pos || at + sluice_records::HEADER_LEN > self.buf.len() {
            self.fill(sluice_records::HEADER_LEN, pace).await?;
            at = 0;
        }
        let header =
            BatchHeader::parse(&self.buf[at..]).map_err(|e| self.corrupt(e.to_string()))?;
        let len = header.total_len();
        if self.pos + len as u64 > self.end {
            return Err(self.corrupt(format!("batch of {len} bytes runs past the end")));
        }
        if at + len > self.buf.len() {
            self.fill(len, pace).await?;
            at = 0;
        }
        let batch = self.buf.slice(at..at + len);
        crate::log::verify_crc(&batch).map_err(|r| self.corrupt(r))?;
        self.pos += len as u64;
        Ok(Some((header, batch)))
    }
}

/// Writes an output segment in aligned chunks and builds its indexes.
struct SegmentWriter<F: StorageFile> {
    file: F,
    path: PathBuf,
    written: u64,
    buf: Vec<u8>,
    chunk: usize,
    scratch: Segment<F>,
    interval: u64,
    size: u64,
}

impl<F: StorageFile> SegmentWriter<F> {
    fn push(&mut self, header: &BatchHeader, batch: &[u8]) {
        let len = batch.len() as u64;
        self.scratch.note_batch(
            header.base_offset,
            header.last_offset(),
            header.max_timestamp,
            self.size,
            len,
            self.interval,
        );
        self.buf.extend_from_slice(batch);
        self.size += len;
    }

    /// Writes the full aligned chunks buffered; returns the bytes written.
    async fn write_full<P: Pace>(&mut self, pace: &mut P) -> Result<u64, LogError> {
        let mut done = 0;
        while self.buf.len() >= self.chunk {
            pace.before_io(self.chunk as u64).await;
            let mut b = self.file.alloc_for_overwrite(self.chunk);
            b.as_mut().copy_from_slice(&self.buf[..self.chunk]);
            self.file
                .write_at(b, self.written)
                .await
                .map_err(|e| LogError::io("write", &self.path, &e))?;
            self.buf.drain(..self.chunk);
            self.written += self.chunk as u64;
            done += self.chunk as u64;
        }
        Ok(done)
    }

    /// Writes the rest, trims the file to its length and syncs it.
    async fn finish<P: Pace>(&mut self, pace: &mut P) -> Result<u64, LogError> {
        let rest = self.buf.len();
        if rest > 0 {
            pace.before_io(rest as u64).await;
            let mut b = self.file.alloc(align_up(rest as u64) as usize);
            b.as_mut()[..rest].copy_from_slice(&self.buf);
            self.file
                .write_at(b, self.written)
                .await
                .map_err(|e| LogError::io("write", &self.path, &e))?;
            self.buf.clear();
        }
        pace.before_io(0).await;
        self.file
            .truncate(self.size)
            .await
            .map_err(|e| LogError::io("truncate", &self.path, &e))?;
        self.file
            .fdatasync()
            .await
            .map_err(|e| LogError::io("fdatasync", &self.path, &e))?;
        Ok(rest as u64)
    }
}

/// Creates `path` empty (a leftover of an earlier pass is removed first).
async fn create_empty<S: Storage>(storage: &S, path: &Path) -> Result<S::File, LogError> {
    match storage.remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io("remove", path, &e)),
    }
    storage
        .create(path)
        .await
        .map_err(|e| LogError::io("create", path, &e))
}

/// Writes a small file in place and syncs it (no rename: the swap renames it).
async fn write_synced<S: Storage, P: Pace>(
    storage: &S,
    path: &Path,
    body: &[u8],
    pace: &mut P,
) -> Result<(), LogError> {
    let file = create_empty(storage, path).await?;
    pace.before_io(body.len() as u64).await;
    if !body.is_empty() {
        let mut buf = file.alloc(align_up(body.len() as u64) as usize);
        buf.as_mut()[..body.len()].copy_from_slice(body);
        file.write_at(buf, 0)
            .await
            .map_err(|e| LogError::io("write", path, &e))?;
    }
    file.truncate(body.len() as u64)
        .await
        .map_err(|e| LogError::io("truncate", path, &e))?;
    file.fdatasync()
        .await
        .map_err(|e| LogError::io("fdatasync", path, &e))?;
    file.close()
        .await
        .map_err(|e| LogError::io("close", path, &e))
}

async fn remove_if_present<S: Storage>(storage: &S, path: &Path) -> Result<(), LogError> {
    match storage.remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("remove", path, &e)),
    }
}

impl<S: Storage> CleanJob<S> {
    /// Builds the key map over the dirty batches; returns the map and the end
    /// offset (the pass covers offsets below it).
    async fn build_map<P: Pace>(
        &self,
        opts: &CleanerOptions,
        pace: &mut P,
        stats: &mut CleanStats,
    ) -> Result<(HashMap<u128, i64>, i64), LogError> {
        let capacity = opts.map_capacity();
        let mut map: HashMap<u128, i64> = HashMap::with_capacity(capacity.min(1 << 20));
        let mut end = self.first_dirty;
        let mut scratch = Vec::new();
        'segments: for input in self
            .inputs
            .iter()
            .filter(|i| i.next_offset > self.first_dirty)
        {
            let mut reader =
                BatchReader::new(&*input.file, &input.path, input.size, opts.io_chunk_bytes);
            while let Some((header, batch)) = reader.next(pace).await? {
                // Paced after every batch (with 0 bytes when nothing was
                // read): the cleaner's CPU slices stay short.
                let read = reader.take_read();
                stats.bytes_read += read;
                pace.pace(read).await;
                if header.last_offset() < self.first_dirty {
                    continue;
                }
                // Stop at a batch boundary when the batch might not fit (a
                // lone batch larger than the map is taken whole).
                if !map.is_empty() && map.len() + header.record_count.max(0) as usize > capacity {
                    end = end.max(header.base_offset);
                    break 'segments;
                }
                if !header.is_control() {
                    sluice_records::visit_records(
                        &batch,
                        opts.max_decompressed_bytes,
                        &mut scratch,
                        |_, r| {
                            if let Some(key) = r.key {
                                map.insert(key_hash(key), r.offset(&header));
                            }
                            Ok(())
                        },
                    )
                    .map_err(|e| LogError::Corrupt {
                        path: input.path.clone(),
                        position: 0,
                        reason: e.to_string(),
                    })?;
                }
                end = header.next_offset();
            }
            end = end.max(input.next_offset);
        }
        Ok((map, end))
    }

    /// Groups the inputs below `end` into runs that fit one output segment.
    fn groups(&self, end: i64) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut size = 0u64;
        for (i, input) in self.inputs.iter().enumerate() {
            if input.base >= end {
                break;
            }
            let fits = groups.last().is_some_and(|g| {
                let base = self.inputs[g[0]].base;
                size + input.size <= self.segment_bytes
                    && input.next_offset - base <= i64::from(i32::MAX)
            });
            if fits {
                size += input.size;
                groups.last_mut().expect("checked").push(i);
            } else {
                size = input.size;
                groups.push(vec![i]);
            }
        }
        groups
    }

    /// Rewrites one group of inputs into a `.cleaned` output.
    async fn rewrite<P: Pace>(
        &self,
        group: &[usize],
        map: &HashMap<u128, i64>,
        end: i64,
        opts: &CleanerOptions,
        pace: &mut P,
        stats: &mut CleanStats,
    ) -> Result<Output<S::File>, LogError> {
        let first = &self.inputs[group[0]];
        let last = &self.inputs[group[group.len() - 1]];
        let (_, path) = names(&self.dir, first.base, "log");
        let file = create_empty(&self.storage, &path).await?;
        let mut w = SegmentWriter {
            file,
            path: path.clone(),
            written: 0,
            buf: Vec::new(),
            chunk: align_down(opts.io_chunk_bytes as u64).max(crate::storage::BLOCK_SIZE) as usize,
            scratch: Segment::new(&self.dir, first.base, 0),
            interval: self.index_interval_bytes,
            size: 0,
        };
        let mut filter = BatchFilter::new();
        let horizon = self.tombstone_horizon_ms;
        for &i in group {
            let input = &self.inputs[i];
            let mut reader =
                BatchReader::new(&*input.file, &input.path, input.size, opts.io_chunk_bytes);
            while let Some((header, batch)) = reader.next(pace).await? {
                // Paced after every batch (with 0 bytes when nothing was
                // read): the cleaner's CPU slices stay short.
                let read = reader.take_read();
                stats.bytes_read += read;
                pace.pace(read).await;
                if header.is_control() {
                    w.push(&header, &batch);
                    continue;
                }
                let mut read_records = 0u64;
                let (_, outcome) = filter
                    .filter(&batch, opts.max_decompressed_bytes, |h, offset, r| {
                        read_records += 1;
                        let Some(key) = r.key else {
                            // Keyless records have no place in a compacted log.
                            return false;
                        };
                        let latest = map.get(&key_hash(key)).copied();
                        if latest.is_some_and(|m| offset < m) {
                            return false;
                        }
                        // A tombstone goes once expired, if it is the latest
                        // of its key in the range this pass covers (so every
                        // older value goes with it).
                        let expired = r.value.is_none()
                            && offset < end
                            && r.timestamp(h) < horizon
                            && latest.is_none_or(|m| m == offset);
                        !expired
                    })
                    .map_err(|e| LogError::Corrupt {
                        path: input.path.clone(),
                        position: 0,
                        reason: e.to_string(),
                    })?;
                stats.records_read += read_records;
                // An empty batch kept earlier goes once its producer moved on.
                let outcome = if header.record_count == 0 {
                    Filtered::Empty
                } else {
                    outcome
                };
                match outcome {
                    Filtered::Unchanged => {
                        stats.records_kept += header.record_count.max(0) as u64;
                        w.push(&header, &batch);
                    }
                    Filtered::Rewritten => {
                        let out = filter.output();
                        let h = BatchHeader::parse(out).map_err(|e| LogError::Corrupt {
                            path: path.clone(),
                            position: w.size,
                            reason: e.to_string(),
                        })?;
                        stats.records_kept += h.record_count.max(0) as u64;
                        w.push(&h, out);
                    }
                    Filtered::Empty => {
                        let last_of_producer = header.has_producer_id()
                            && self.producer_last.get(&header.producer_id)
                                == Some(&header.last_offset());
                        if last_of_producer {
                            filter.empty_batch(&batch).map_err(|e| LogError::Corrupt {
                                path: input.path.clone(),
                                position: 0,
                                reason: e.to_string(),
                            })?;
                            let out = filter.output();
                            w.push(&header, out);
                        }
                    }
                }
                let written = w.write_full(pace).await?;
                if written > 0 {
                    stats.bytes_written += written;
                    pace.pace(written).await;
                }
            }
        }
        let written = w.finish(pace).await?;
        stats.bytes_written += written;
        let scratch = std::mem::replace(&mut w.scratch, Segment::new(&self.dir, first.base, 0));
        let (_, ix) = names(&self.dir, first.base, "index");
        let (_, tix) = names(&self.dir, first.base, "timeindex");
        write_synced(&self.storage, &ix, &scratch.index.encode(), pace).await?;
        write_synced(&self.storage, &tix, &scratch.time_index.encode(), pace).await?;
        Ok(Output {
            base: first.base,
            next_offset: last.next_offset,
            size: w.size,
            max_timestamp: group
                .iter()
                .map(|&i| self.inputs[i].max_timestamp)
                .max()
                .unwrap_or(-1),
            created_ms: first.created_ms,
            inputs: group.iter().map(|&i| self.inputs[i].base).collect(),
            file: Rc::new(w.file),
            index: scratch.index,
            time_index: scratch.time_index,
        })
    }
}

/// Runs one cleaning pass on `log` if it is due (or always, with `force`).
/// Returns what it did, or `None` when there was nothing to do.
pub async fn clean<S: Storage, P: Pace>(
    log: &RefCell<PartitionLog<S>>,
    now_ms: i64,
    force: bool,
    opts: &CleanerOptions,
    pace: &mut P,
) -> Result<Option<CleanStats>, LogError> {
    let Some(job) = log.borrow_mut().plan_clean(now_ms, force) else {
        return Ok(None);
    };
    let result = run(log, &job, opts, pace).await;
    let mut l = log.borrow_mut();
    l.cleaning = false;
    if l.swapping {
        l.swapping = false;
        l.wake_flush_watchers();
    }
    match result {
        Ok(stats) => {
            if let Some(s) = &stats {
                l.first_dirty_offset = l.first_dirty_offset.max(s.end_offset);
            }
            Ok(stats)
        }
        Err(RunError::BeforeCommit(e)) => Err(e),
        Err(RunError::AfterCommit(e)) => {
            tracing::error!(dir = %l.dir.display(), error = %e, "a cleaner swap failed; no more cleaning of this log until it is reopened");
            l.cleaner_failed = Some(e.to_string());
            Err(e)
        }
    }
}

enum RunError {
    BeforeCommit(LogError),
    AfterCommit(LogError),
}

async fn run<S: Storage, P: Pace>(
    log: &RefCell<PartitionLog<S>>,
    job: &CleanJob<S>,
    opts: &CleanerOptions,
    pace: &mut P,
) -> Result<Option<CleanStats>, RunError> {
    let mut stats = CleanStats::default();
    let (map, end) = job
        .build_map(opts, pace, &mut stats)
        .await
        .map_err(RunError::BeforeCommit)?;
    stats.end_offset = end;
    let groups = job.groups(end);
    if groups.is_empty() {
        return Ok(None);
    }
    let mut outputs = Vec::with_capacity(groups.len());
    for group in &groups {
        match job.rewrite(group, &map, end, opts, pace, &mut stats).await {
            Ok(o) => outputs.push(o),
            Err(e) => {
                discard_outputs(&job.storage, &job.dir, &groups, &job.inputs).await;
                return Err(RunError::BeforeCommit(e));
            }
        }
    }
    drop(map);
    if let Err(e) = job.storage.sync_dir(&job.dir).await {
        discard_outputs(&job.storage, &job.dir, &groups, &job.inputs).await;
        return Err(RunError::BeforeCommit(LogError::io(
            "sync dir", &job.dir, &e,
        )));
    }
    stats.segments_in = groups.iter().map(Vec::len).sum();
    stats.segments_out = outputs.len();
    // The in-memory swap: only if every input is still what was read.
    let swapped = {
        let mut l = log.borrow_mut();
        l.swap_in(job, &outputs)
    };
    if !swapped {
        discard_outputs(&job.storage, &job.dir, &groups, &job.inputs).await;
        return Ok(None);
    }
    finish_swap(&job.storage, &job.dir, &outputs, end)
        .await
        .map_err(RunError::AfterCommit)?;
    Ok(Some(stats))
}

async fn discard_outputs<S: Storage, F>(
    storage: &S,
    dir: &Path,
    groups: &[Vec<usize>],
    inputs: &[Input<F>],
) {
    for g in groups {
        for ext in EXTS {
            let (_, cleaned) = names(dir, inputs[g[0]].base, ext);
            if let Err(e) = remove_if_present(storage, &cleaned).await {
                tracing::warn!(error = %e, "could not remove an unused cleaner output");
            }
        }
    }
}

impl<S: Storage> PartitionLog<S> {
    /// Replaces the inputs by the outputs in memory; false (and nothing
    /// changed) when retention, DeleteRecords, truncation or a close changed
    /// any input meanwhile.
    fn swap_in(&mut self, job: &CleanJob<S>, outputs: &[Output<S::File>]) -> bool {
        if self.closed || self.poisoned.is_some() {
            return false;
        }
        let intact = outputs.iter().flat_map(|o| &o.inputs).all(|b| {
            let input = job.inputs.iter().find(|i| i.base == *b);
            match (self.segments.get(b), input) {
                (Some(s), Some(i)) => {
                    s.state == SegmentState::Sealed
                        && s.size == i.size
                        && s.next_offset == i.next_offset
                        && s.file.as_ref().is_some_and(|f| Rc::ptr_eq(f, &i.file))
                }
                _ => false,
            }
        });
        if !intact {
            return false;
        }
        let mut covered_end = self.log_start_offset;
        for o in outputs {
            for b in &o.inputs {
                self.segments.remove(b);
            }
            let mut seg = Segment::new(&self.dir, o.base, o.created_ms);
            seg.file = Some(o.file.clone());
            seg.size = o.size;
            seg.written = o.size;
            seg.allocated = o.size;
            seg.index = o.index.clone();
            seg.time_index = o.time_index.clone();
            seg.next_offset = o.next_offset;
            seg.max_timestamp = o.max_timestamp;
            seg.state = SegmentState::Sealed;
            self.segments.insert(o.base, seg);
            covered_end = covered_end.max(o.next_offset);
        }
        // Cached copies of the old batches must not be served any more.
        self.tail.drop_before(covered_end);
        self.read_ahead.clear();
        self.swapping = true;
        true
    }
}

fn encode_manifest(outputs: &[(i64, Vec<i64>)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(outputs.len() as u32).to_be_bytes());
    for (base, inputs) in outputs {
        body.extend_from_slice(&base.to_be_bytes());
        body.extend_from_slice(&(inputs.len() as u32).to_be_bytes());
        for i in inputs {
            body.extend_from_slice(&i.to_be_bytes());
        }
    }
    body.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    body
}

fn decode_manifest(data: &[u8]) -> Option<Vec<(i64, Vec<i64>)>> {
    let (body, crc) = data.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
        return None;
    }
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let u32_of = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let i64_of = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        i64::from_be_bytes(a)
    };
    let n = u32_of(take(4)?);
    let mut out = Vec::new();
    for _ in 0..n {
        let base = i64_of(take(8)?);
        let k = u32_of(take(4)?);
        let mut inputs = Vec::new();
        for _ in 0..k {
            inputs.push(i64_of(take(8)?));
        }
        out.push((base, inputs));
    }
    (at == body.len()).then_some(out)
}

/// Commits and completes a swap on disk: manifest, renames, deletions,
/// manifest removal, checkpoint.
async fn finish_swap<S: Storage, F>(
    storage: &S,
    dir: &Path,
    outputs: &[Output<F>],
    end: i64,
) -> Result<(), LogError> {
    let plan: Vec<(i64, Vec<i64>)> = outputs.iter().map(|o| (o.base, o.inputs.clone())).collect();
    let manifest = dir.join(SWAP_MANIFEST);
    write_file_atomic(storage, &manifest, &encode_manifest(&plan))
        .await
        .map_err(|e| LogError::io("write", &manifest, &e))?;
    apply_swap(storage, dir, &plan).await?;
    write_checkpoint(storage, dir, end).await
}

/// The idempotent half of a swap, run after the manifest is written and
/// again by recovery: every `.cleaned` file replaces its final name, every
/// input that is not also an output goes, then the manifest goes.
async fn apply_swap<S: Storage>(
    storage: &S,
    dir: &Path,
    plan: &[(i64, Vec<i64>)],
) -> Result<(), LogError> {
    let outputs: Vec<i64> = plan.iter().map(|(b, _)| *b).collect();
    for &base in &outputs {
        // The log last: recovery trusts a sealed segment's indexes when they
        // fit its log, so the indexes must never be older than the log.
        for ext in ["index", "timeindex", "log"] {
            let (fin, cleaned) = names(dir, base, ext);
            match storage.rename(&cleaned, &fin).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("rename", &cleaned, &e)),
            }
        }
    }
    for (_, inputs) in plan {
        for b in inputs.iter().filter(|b| !outputs.contains(b)) {
            for ext in EXTS {
                remove_if_present(storage, &dir.join(file_name(*b, ext))).await?;
            }
        }
    }
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| LogError::io("sync dir", dir, &e))?;
    let manifest = dir.join(SWAP_MANIFEST);
    remove_if_present(storage, &manifest).await?;
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| LogError::io("sync dir", dir, &e))
}

async fn write_checkpoint<S: Storage>(storage: &S, dir: &Path, end: i64) -> Result<(), LogError> {
    let path = dir.join(CHECKPOINT);
    let mut body = end.to_be_bytes().to_vec();
    body.extend_from_slice(&crc32fast::hash(&end.to_be_bytes()).to_be_bytes());
    write_file_atomic(storage, &path, &body)
        .await
        .map_err(|e| LogError::io("write", &path, &e))
}

/// Reads the cleaner checkpoint (the first dirty offset); 0 when absent or unreadable.
pub(crate) async fn read_checkpoint<S: Storage>(storage: &S, dir: &Path) -> Result<i64, LogError> {
    let path = dir.join(CHECKPOINT);
    let data = read_file(storage, &path)
        .await
        .map_err(|e| LogError::io("read", &path, &e))?;
    Ok(data
        .as_deref()
        .and_then(|d| d.split_last_chunk::<4>())
        .filter(|(body, crc)| crc32fast::hash(body) == u32::from_be_bytes(**crc))
        .and_then(|(body, _)| <[u8; 8]>::try_from(body).ok())
        .map_or(0, i64::from_be_bytes))
}

/// Recovery: finishes a swap whose manifest was written, then deletes every
/// `.cleaned` file left (outputs of a pass that never committed).
pub(crate) async fn recover_swap<S: Storage>(storage: &S, dir: &Path) -> Result<(), LogError> {
    let manifest = dir.join(SWAP_MANIFEST);
    let data = read_file(storage, &manifest)
        .await
        .map_err(|e| LogError::io("read", &manifest, &e))?;
    if let Some(data) = data {
        match decode_manifest(&data) {
            Some(plan) => {
                tracing::info!(dir = %dir.display(), outputs = plan.len(), "finishing an interrupted cleaner swap");
                apply_swap(storage, dir, &plan).await?;
            }
            None => {
                // Written atomically, so this is damage, not a torn write:
                // the old segments are still all there only if no rename ran.
                return Err(LogError::Corrupt {
                    path: manifest,
                    position: 0,
                    reason: "unreadable cleaner swap manifest".into(),
                });
            }
        }
    }
    let names = storage
        .list_dir(dir)
        .await
        .map_err(|e| LogError::io("list", dir, &e))?;
    let mut removed = false;
    for name in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        remove_if_present(storage, &dir.join(name)).await?;
        removed = true;
    }
    if removed {
        storage
            .sync_dir(dir)
            .await
            .map_err(|e| LogError::io("sync dir", dir, &e))?;
    }
    Ok(())
}

/// True for the names of files the cleaner owns in a partition directory.
pub(crate) fn is_cleaner_file(name: &str) -> bool {
    name == SWAP_MANIFEST || name == CHECKPOINT || name.ends_with(CLEANED_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_refuses_damage() {
        let plan = vec![(0, vec![0, 10, 20]), (30, vec![30])];
        let enc = encode_manifest(&plan);
        assert_eq!(decode_manifest(&enc), Some(plan));
        for cut in 0..enc.len() {
            assert_eq!(decode_manifest(&enc[..cut]), None, "cut at {cut}");
        }
        let mut bad = enc.clone();
        bad[5] ^= 1;
        assert_eq!(decode_manifest(&bad), None);
    }

    #[test]
    fn key_hashes_differ() {
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_eq!(key_hash(b"a"), key_hash(b"a"));
    }
}
