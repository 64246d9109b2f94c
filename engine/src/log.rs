//! One partition's log: offsets, appends, group-commit flushes, reads.
//!
//! The log is driven by its shard through a `RefCell`, and no borrow is ever held
//! across an await: every I/O operation is split into a synchronous step that
//! decides (under a borrow), an async step that does the I/O on owned handles,
//! and a synchronous step that applies the result. The free functions at the end
//! ([`flush`], [`read`], ...) do that dance; shard code calls those.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{FutureExt, LocalBoxFuture, Shared};
use sluice_records::{BatchHeader, TimestampType as RecordTimestampType, ValidateOptions};

use crate::config::{FlushPolicy, LogConfig, TimestampType};
use crate::error::{AppendError, LogError, ReplicaAppendError};
use crate::producers::{BatchMeta, ProducerStates, SequenceCheck};
use crate::segment::{Segment, SegmentState};
use crate::storage::{align_down, align_up, Storage, StorageFile, BLOCK_SIZE};
use crate::tail_cache::{CacheBudget, TailCache};

pub use crate::timestamp::offset_for_timestamp;
pub use crate::truncate::{truncate_fully_and_start_at, truncate_to};

/// What an accepted append got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's append time when the topic uses `LogAppendTime`, else -1.
    pub log_append_time_ms: i64,
    /// The batch was a retry of one already in the log (idempotent producer);
    /// the offsets are the original ones.
    pub duplicate: bool,
}

/// What a read returned: whole batches as stored, and the log's bounds.
#[derive(Clone, Debug, Default)]
pub struct ReadResult {
    /// Each chunk holds one or more whole batches, in offset order: a batch
    /// from the tail cache is its own chunk; adjacent batches of one disk
    /// read share one. They go to the socket as they are, never joined.
    pub chunks: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl ReadResult {
    pub fn len_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// The last offset of the last batch returned; `None` when the read
    /// returned nothing.
    pub fn last_offset(&self) -> Option<i64> {
        let last = self.chunks.last()?;
        sluice_records::BatchIter::new(last)
            .without_crc()
            .map_while(Result::ok)
            .last()
            .map(|(header, _)| header.last_offset())
    }
}

pub(crate) struct Waiter {
    pub(crate) end_offset: i64,
    pub(crate) tx: oneshot::Sender<Result<(), LogError>>,
}

pub struct PartitionLog<S: Storage> {
    pub(crate) storage: S,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: BTreeMap<i64, Segment<S::File>>,
    pub(crate) log_start_offset: i64,
    /// The next offset to assign (the log end offset).
    pub(crate) next_offset: i64,
    /// Every offset below this has been written to its file.
    pub(crate) written_offset: i64,
    /// Every offset below this has been `fdatasync`ed.
    pub(crate) durable_offset: i64,
    /// Readers see offsets below this (the flush policy is met up to here). Never goes back.
    pub(crate) visible_offset: i64,
    /// Flush jobs in flight. Several may be, so the disk sees a queue of
    /// writes; they are applied in the order they were prepared.
    pub(crate) jobs_in_flight: u32,
    /// A truncation, or a flush job that creates, seals or snapshots, holds
    /// the log alone: no other job starts meanwhile.
    pub(crate) exclusive: bool,
    /// Resolves once the newest job in flight has been applied: the next job
    /// waits for it before being applied itself.
    pub(crate) last_job: Option<Shared<oneshot::Receiver<()>>>,
    /// Resolves once the writes of the newest job in flight, and of every job
    /// before it, have completed: the next job waits for it before rewriting a
    /// block an earlier job wrote and before its `fdatasync` (a sync issued
    /// while an earlier write is still in flight need not cover that write).
    pub(crate) last_job_written: Option<Shared<oneshot::Receiver<()>>>,
    /// Bumped when unwritten appends are taken back: jobs prepared before are
    /// void, their outcome is dropped.
    pub(crate) flush_generation: u64,
    /// Woken when no flush job or truncation is in flight any more.
    pub(crate) flush_watchers: Vec<oneshot::Sender<()>>,
    pub(crate) poisoned: Option<String>,
    pub(crate) waiters: VecDeque<Waiter>,
    pub(crate) watchers: Vec<oneshot::Sender<()>>,
    pub(crate) tail: TailCache,
    pub(crate) producers: ProducerStates,
    pub(crate) last_sync_ms: i64,
    /// Set when a roll happened and the producer state must be snapshotted at the
    /// new active segment's base offset by the next flush.
    pub(crate) snapshot_due: Option<i64>,
    pub(crate) leader_epoch_cache: Vec<(i32, i64)>,
    /// The leader-epoch cache changed since its checkpoint was written
    /// (see [`crate::recovery::checkpoint_leader_epochs`]).
    pub(crate) leader_epochs_dirty: bool,
    /// The high watermark `high-watermark-checkpoint` held at open.
    pub(crate) high_watermark_checkpoint: Option<i64>,
    /// What that file holds now (so an unchanged value is not rewritten).
    pub(crate) high_watermark_written: Option<i64>,
    /// Files of dropped segments, deleted by [`delete_dropped_files`].
    pub(crate) pending_deletes: Vec<PathBuf>,
    /// Set by a clean close: appends are refused, as the clean-shutdown marker
    /// describes the log as it was then.
    pub(crate) closed: bool,
    /// The disk reads issued for where the last cold read stopped (catch-up
    /// readers read on: the disk works while the reader handles this fetch).
    pub(crate) read_ahead: ReadAheads<S::File>,
    /// A read used the read-ahead since the last
    /// [`PartitionLog::release_idle_read_ahead`].
    read_ahead_claimed: bool,
    /// The cleaner checkpoint: offsets below it were cleaned (compacted logs).
    pub(crate) first_dirty_offset: i64,
    /// A cleaning pass runs (see `cleaner`).
    pub(crate) cleaning: bool,
    /// A pass is swapping files: segment files must not be deleted or cut
    /// meanwhile (deletions wait, truncation waits).
    pub(crate) swapping: bool,
    /// Set when a swap failed half-way: no more cleaning until reopened.
    pub(crate) cleaner_failed: Option<String>,
}

impl<S: Storage> PartitionLog<S> {
    pub(crate) fn empty(storage: S, dir: PathBuf, config: LogConfig, budget: CacheBudget) -> Self {
        PartitionLog {
            storage,
            dir,
            config,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            next_offset: 0,
            written_offset: 0,
            durable_offset: 0,
            visible_offset: 0,
            jobs_in_flight: 0,
            exclusive: false,
            last_job: None,
            last_job_written: None,
            flush_generation: 0,
            flush_watchers: Vec::new(),
            poisoned: None,
            waiters: VecDeque::new(),
            watchers: Vec::new(),
            tail: TailCache::new(budget),
            producers: ProducerStates::default(),
            last_sync_ms: 0,
            snapshot_due: None,
            leader_epoch_cache: Vec::new(),
            leader_epochs_dirty: false,
            high_watermark_checkpoint: None,
            high_watermark_written: None,
            pending_deletes: Vec::new(),
            closed: false,
            read_ahead: ReadAheads::default(),
            read_ahead_claimed: false,
            first_dirty_offset: 0,
            cleaning: false,
            swapping: false,
            cleaner_failed: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Changes the configuration at runtime; the next append, roll, flush or
    /// retention pass uses it.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The log end offset: the next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }

    /// Readers may see offsets below this: the high watermark of a single node.
    pub fn visible_offset(&self) -> i64 {
        self.visible_offset
    }

    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    pub fn segments_first_base(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The high watermark checkpointed before the log was opened, as far
    /// as the log reaches (a crash may have cut what a follower had not
    /// made durable yet); None without a readable checkpoint.
    pub fn checkpointed_high_watermark(&self) -> Option<i64> {
        self.high_watermark_checkpoint
            .map(|hw| hw.min(self.log_end_offset()))
    }

    /// Whether a read-ahead is held for the next cold read.
    pub fn has_read_ahead(&self) -> bool {
        self.read_ahead.current.is_some()
    }

    /// Drops the read-ahead if no read claimed it since the last call (a
    /// second-chance sweep: call it every few seconds), giving its share of
    /// the shard's [`READ_AHEAD_BUDGET_BYTES`] back. Without it, a consumer
    /// that stops reading a partition leaves up to two read-aheads held
    /// until the log drops them (a truncation, a retention pass, a close),
    /// and enough idle partitions hold the whole budget: every other
    /// reader's reads are then fetch-sized. Returns whether it dropped one.
    pub fn release_idle_read_ahead(&mut self) -> bool {
        let claimed = std::mem::take(&mut self.read_ahead_claimed);
        if claimed || self.read_ahead.current.is_none() {
            return false;
        }
        self.read_ahead.clear();
        true
    }

    /// The base offset of each segment, oldest first.
    pub fn segment_bases(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// The size of each segment, oldest first.
    pub fn segment_sizes(&self) -> Vec<u64> {
        self.segments.values().map(|s| s.size).collect()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// Drops the idempotence state of producers idle past `producer.id.expiration.ms`.
    pub fn expire_producers(&mut self, now_ms: i64) {
        let expiration_ms = self.config.producer_id_expiration_ms;
        self.producers.expire(now_ms, expiration_ms);
    }

    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Offsets of the (leader epoch, start offset) pairs seen in appended batches.
    pub fn leader_epochs(&self) -> &[(i32, i64)] {
        &self.leader_epoch_cache
    }

    /// The leader-epoch cache has changes its checkpoint file lacks.
    pub fn leader_epochs_dirty(&self) -> bool {
        self.leader_epochs_dirty
    }

    /// True when appended data awaits a write or a sync this policy wants.
    /// False while no job may start (see [`PartitionLog::prepare_flush`]):
    /// a flusher that retried then would spin, and a spinning task keeps
    /// glommio from reaping the completions of the jobs in flight.
    pub fn needs_flush(&self, now_ms: i64) -> bool {
        if !self.job_may_start() {
            return false;
        }
        // Only the unsealed suffix can hold unwritten data: stop at the first
        // sealed segment so a 1,000-segment log costs what a 1-segment one does.
        let unwritten = self
            .segments
            .values()
            .rev()
            .take_while(|s| s.state != SegmentState::Sealed)
            .any(|s| !s.pending.is_empty() || s.state == SegmentState::Sealing);
        unwritten || self.sync_due(now_ms) || self.snapshot_due.is_some()
    }

    fn sync_due(&self, now_ms: i64) -> bool {
        if self.durable_offset >= self.written_offset {
            return false;
        }
        match self.config.flush {
            FlushPolicy::Always => true,
            FlushPolicy::IntervalMs(ms) => now_ms - self.last_sync_ms >= ms as i64,
            FlushPolicy::Never => false,
        }
    }

    fn active(&mut self) -> &mut Segment<S::File> {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Validates `batch`, assigns its offsets and queues it for the next flush.
    /// Offsets are assigned here, synchronously, so appends are ordered by call order.
    /// Await [`PartitionLog::wait_visible`] for the flush policy to be met.
    pub fn append(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        if let Some(reason) = &self.poisoned {
            return Err(AppendError::Poisoned(reason.clone()));
        }
        if self.closed {
            return Err(AppendError::Closed);
        }
        if batch.len() > self.config.max_message_bytes as usize {
            return Err(AppendError::TooLarge {
                size: batch.len(),
                max: self.config.max_message_bytes,
            });
        }
        let opts = ValidateOptions {
            max_batch_bytes: self.config.max_message_bytes as usize,
            // A compacted log keeps records by key: a keyless one is refused
            // (compressed batches are decompressed as a stream, with a limit).
            require_keys: self.config.cleanup_policy.compact,
            ..ValidateOptions::default()
        };
        let header = sluice_records::validate(batch, &opts)?;
        let idempotent = header.producer_id >= 0 && header.base_sequence >= 0;
        if idempotent {
            let check = self.producers.check(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.record_count,
            )?;
            if let SequenceCheck::Duplicate(meta) = check {
                return Ok(Appended {
                    base_offset: meta.base_offset,
                    last_offset: meta.last_offset,
                    log_append_time_ms: -1,
                    duplicate: true,
                });
            }
        }
        let len = batch.len() as u64;
        let roll = {
            let segment_bytes = self.config.segment_bytes;
            let segment_ms = self.config.roll_ms();
            let active = self.active();
            active.size > 0
                && (active.size + len > segment_bytes || now_ms - active.created_ms >= segment_ms)
        };
        if roll {
            self.roll(now_ms);
        }
        let base_offset = self.next_offset;
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        let mut stored = BytesMut::from(batch);
        sluice_records::set_base_offset(&mut stored, base_offset)?;
        sluice_records::set_partition_leader_epoch(&mut stored, leader_epoch)?;
        let mut max_timestamp = header.max_timestamp;
        let mut log_append_time_ms = -1;
        if self.config.timestamp_type == TimestampType::LogAppendTime {
            sluice_records::set_log_append_time(&mut stored, now_ms)?;
            max_timestamp = now_ms;
            log_append_time_ms = now_ms;
        } else if header.timestamp_type() == RecordTimestampType::LogAppendTime {
            // A LogAppendTime batch from a producer keeps its own timestamp only
            // on LogAppendTime topics: on CreateTime topics it is the broker's time.
            max_timestamp = header.max_timestamp;
        }
        let stored = stored.freeze();
        self.store(
            stored,
            base_offset,
            last_offset,
            max_timestamp,
            leader_epoch,
            idempotent.then_some(&header),
            now_ms,
        );
        Ok(Appended {
            base_offset,
            last_offset,
            log_append_time_ms,
            duplicate: false,
        })
    }

    /// Appends a batch copied from the partition leader (replication), as the
    /// leader stored it: its base offset must be the log end, and its offsets,
    /// leader epoch and timestamps are kept. The batch is validated (CRC, layout)
    /// but producer sequences are not checked, only recorded: the leader already
    /// judged them, and the follower must hold the same producer state to take
    /// over as leader.
    pub fn append_replica(
        &mut self,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<Appended, ReplicaAppendError> {
        if let Some(reason) = &self.poisoned {
            return Err(AppendError::Poisoned(reason.clone()).into());
        }
        if self.closed {
            return Err(AppendError::Closed.into());
        }
        let opts = ValidateOptions {
            // The leader accepted it (its limit may differ); it is our own data now.
            max_batch_bytes: batch.len().max(self.config.max_message_bytes as usize),
            from_client: false,
            ..ValidateOptions::default()
        };
        let header = sluice_records::validate(batch, &opts).map_err(AppendError::from)?;
        if header.base_offset != self.next_offset {
            return Err(ReplicaAppendError::NotAtLogEnd {
                base_offset: header.base_offset,
                log_end: self.next_offset,
            });
        }
        if self
            .leader_epoch_cache
            .last()
            .is_some_and(|&(e, _)| header.partition_leader_epoch < e)
        {
            return Err(ReplicaAppendError::EpochGoesBack {
                epoch: header.partition_leader_epoch,
                latest: self.leader_epoch_cache.last().map_or(-1, |&(e, _)| e),
            });
        }
        let len = batch.len() as u64;
        let roll = {
            let segment_bytes = self.config.segment_bytes;
            let segment_ms = self.config.segment_ms;
            let active = self.active();
            active.size > 0
                && (active.size + len > segment_bytes || now_ms - active.created_ms >= segment_ms)
        };
        if roll {
            self.roll(now_ms);
        }
        let base_offset = header.base_offset;
        let last_offset = header.last_offset();
        let idempotent = header.producer_id >= 0 && header.base_sequence >= 0;
        self.store(
            Bytes::copy_from_slice(batch),
            base_offset,
            last_offset,
            header.max_timestamp,
            header.partition_leader_epoch,
            idempotent.then_some(&header),
            now_ms,
        );
        let log_append_time_ms = if header.timestamp_type() == RecordTimestampType::LogAppendTime {
            header.max_timestamp
        } else {
            -1
        };
        Ok(Appended {
            base_offset,
            last_offset,
            log_append_time_ms,
            duplicate: false,
        })
    }

    /// Queues an accepted batch (offsets and header fields final) in the active
    /// segment, and records its leader epoch and producer state.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        stored: Bytes,
        base_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
        leader_epoch: i32,
        producer: Option<&BatchHeader>,
        now_ms: i64,
    ) {
        debug_assert_eq!(base_offset, self.next_offset, "offsets are dense");
        let len = stored.len() as u64;
        let interval = self.config.index_interval_bytes;
        let active = self.active();
        let position = active.size;
        active.note_batch(
            base_offset,
            last_offset,
            max_timestamp,
            position,
            len,
            interval,
        );
        active.pending.push_back(stored.clone());
        active.size += len;
        self.next_offset = last_offset + 1;
        if self
            .leader_epoch_cache
            .last()
            .is_none_or(|&(e, _)| e < leader_epoch)
        {
            self.leader_epoch_cache.push((leader_epoch, base_offset));
            self.leader_epochs_dirty = true;
        }
        if let Some(header) = producer {
            let meta = BatchMeta {
                first_seq: header.base_sequence,
                last_seq: header.base_sequence.wrapping_add(header.record_count - 1),
                base_offset,
                last_offset,
            };
            self.producers.record(
                header.producer_id,
                header.producer_epoch,
                meta,
                max_timestamp.max(now_ms),
            );
        }
        self.tail.push(base_offset, last_offset, stored);
    }

    fn roll(&mut self, now_ms: i64) {
        let base = self.next_offset;
        self.active().state = SegmentState::Sealing;
        let segment = Segment::new(&self.dir, base, now_ms);
        self.segments.insert(base, segment);
        self.snapshot_due = Some(base);
    }

    /// Rolls the active segment now if it holds data (tests, admin).
    pub fn force_roll(&mut self, now_ms: i64) {
        if self.active().size > 0 {
            self.roll(now_ms);
        }
    }

    /// A future that resolves once every offset below `end_offset` is visible
    /// (its flush policy met), or with the error that made that impossible.
    pub fn wait_visible(
        &mut self,
        end_offset: i64,
    ) -> impl std::future::Future<Output = Result<(), LogError>> + 'static {
        let (tx, rx) = oneshot::channel();
        if end_offset <= self.visible_offset {
            let _ = tx.send(Ok(()));
        } else if let Some(reason) = &self.poisoned {
            let _ = tx.send(Err(LogError::Poisoned(reason.clone())));
        } else {
            debug_assert!(end_offset <= self.next_offset);
            let at = self.waiters.partition_point(|w| w.end_offset <= end_offset);
            self.waiters.insert(at, Waiter { end_offset, tx });
        }
        async move {
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(LogError::Abandoned("the log was closed".into())),
            }
        }
    }

    /// A future that resolves when the visible offset next advances (long polls).
    pub fn visible_changed(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let (tx, rx) = oneshot::channel();
        self.watchers.push(tx);
        async move {
            let _ = rx.await;
        }
    }

    pub(crate) fn set_visible(&mut self, offset: i64) {
        if offset <= self.visible_offset {
            return;
        }
        self.visible_offset = offset;
        while self.waiters.front().is_some_and(|w| w.end_offset <= offset) {
            if let Some(w) = self.waiters.pop_front() {
                let _ = w.tx.send(Ok(()));
            }
        }
        for w in self.watchers.drain(..) {
            let _ = w.send(());
        }
    }

    /// Whether a flush job may start now: not poisoned, no exclusive job or
    /// truncation in flight, fewer than [`MAX_FLUSH_JOBS_IN_FLIGHT`] jobs, and
    /// none at all when the next job must run alone.
    fn job_may_start(&self) -> bool {
        self.poisoned.is_none()
            && !self.exclusive
            && self.jobs_in_flight < MAX_FLUSH_JOBS_IN_FLIGHT
            && (self.jobs_in_flight == 0 || !self.next_job_is_exclusive())
    }

    /// Creating, sealing (trim + fdatasync + index files) and snapshots are
    /// ordered against every other write of the log by running alone.
    fn next_job_is_exclusive(&self) -> bool {
        self.snapshot_due.is_some()
            || self
                .segments
                .values()
                .rev()
                .take_while(|s| s.state != SegmentState::Sealed)
                .any(|s| {
                    s.state == SegmentState::Sealing || (s.file.is_none() && !s.pending.is_empty())
                })
    }

    /// A flush job, a truncation or a cleaner's file swap is in flight.
    pub(crate) fn flush_busy(&self) -> bool {
        self.jobs_in_flight > 0 || self.exclusive || self.swapping
    }

    /// Releases the exclusive slot and wakes whoever waits for the log to be idle.
    pub(crate) fn end_flush(&mut self) {
        self.exclusive = false;
        self.wake_flush_watchers();
    }

    /// Files of dropped segments wait for deletion (a cleaner swap held them).
    pub fn has_pending_deletes(&self) -> bool {
        !self.pending_deletes.is_empty()
    }

    pub(crate) fn wake_flush_watchers(&mut self) {
        if self.flush_busy() {
            return;
        }
        self.last_job = None;
        self.last_job_written = None;
        for w in self.flush_watchers.drain(..) {
            let _ = w.send(());
        }
    }

    /// A future that resolves when every flush (or truncation) now in flight
    /// has ended; at once when none is.
    pub fn flush_finished(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let (tx, rx) = oneshot::channel();
        if self.flush_busy() {
            self.flush_watchers.push(tx);
        } else {
            let _ = tx.send(());
        }
        async move {
            let _ = rx.await;
        }
    }

    pub(crate) fn fail_waiters_above(&mut self, offset: i64, err: &LogError) {
        let keep = self.waiters.partition_point(|w| w.end_offset <= offset);
        for w in self.waiters.drain(keep..) {
            let _ = w.tx.send(Err(err.clone()));
        }
    }

    // ---- flushing (group commit) ----

    /// Takes what must be written and synced into a job, or `None` when there is
    /// nothing to do or no job may start now. Up to [`MAX_FLUSH_JOBS_IN_FLIGHT`]
    /// jobs per log are in flight, except that a job that creates or seals a
    /// segment file or writes a snapshot runs alone.
    pub fn prepare_flush(&mut self, now_ms: i64, force_sync: bool) -> Option<FlushJob<S::File>> {
        if !self.job_may_start() {
            return None;
        }
        let exclusive = self.next_job_is_exclusive();
        let mut writes = Vec::new();
        // Sealed segments form a prefix (segments seal in order): walk the
        // unsealed suffix only, newest first, so a flush is O(1) in the segment count.
        for seg in self
            .segments
            .values_mut()
            .rev()
            .take_while(|s| s.state != SegmentState::Sealed)
        {
            let sealing = seg.state == SegmentState::Sealing;
            if seg.pending.is_empty() && !sealing {
                continue;
            }
            // Earlier jobs may still be writing: this one starts where they end.
            let pending_bytes: u64 = seg.pending.iter().map(|c| c.len() as u64).sum();
            let queued = seg.size - pending_bytes;
            let write_pos = align_down(queued);
            let new_written = seg.size;
            let chunks: Vec<Bytes> = seg.pending.drain(..).collect();
            let tail = std::mem::take(&mut seg.tail_block);
            debug_assert_eq!(tail.len() as u64, queued - write_pos);
            let new_tail = tail_of(&tail, &chunks, write_pos, new_written);
            if !sealing {
                seg.tail_block = new_tail;
            }
            let preallocate_to = if seg.state == SegmentState::Active
                && self.config.preallocate_bytes > 0
                && new_written > seg.allocated
            {
                let chunk = self.config.preallocate_bytes;
                Some(new_written.div_ceil(chunk) * chunk)
            } else {
                None
            };
            let seal = sealing.then(|| SealInfo {
                final_len: new_written,
                index: seg.index.encode(),
                time_index: seg.time_index.encode(),
                index_path: seg.index_path(),
                time_index_path: seg.time_index_path(),
            });
            writes.push(SegmentWrite {
                base_offset: seg.base_offset,
                path: seg.path.clone(),
                file: seg.file.clone(),
                write_pos,
                tail,
                chunks,
                new_written,
                preallocate_to,
                seal,
            });
        }
        writes.reverse();
        let end_offset = self.next_offset;
        let sync = force_sync
            || match self.config.flush {
                FlushPolicy::Always => true,
                FlushPolicy::IntervalMs(ms) => now_ms - self.last_sync_ms >= ms as i64,
                FlushPolicy::Never => false,
            };
        let sync = sync && (end_offset > self.durable_offset || !writes.is_empty());
        let snapshot = self.snapshot_due.take().map(|offset| {
            (
                self.dir.join(crate::segment::file_name(offset, "snapshot")),
                // Recovery reads snapshots only with their CRC: without it
                // every restart replayed the log from the first segment.
                crate::recovery::with_crc(&self.producers.encode()),
            )
        });
        if writes.is_empty() && !sync && snapshot.is_none() {
            return None;
        }
        // A job that syncs covers every file written since the last sync, also
        // those it does not write itself (an earlier job wrote them).
        let mut sync_also = Vec::new();
        for seg in self
            .segments
            .values_mut()
            .rev()
            .take_while(|s| s.state != SegmentState::Sealed)
        {
            let in_job = writes.iter().any(|w| w.base_offset == seg.base_offset);
            if sync || seg.state == SegmentState::Sealing {
                if seg.unsynced && !in_job {
                    if let Some(file) = &seg.file {
                        sync_also.push((seg.path.clone(), file.clone()));
                    }
                }
                seg.unsynced = false;
            } else if in_job {
                seg.unsynced = true;
            }
        }
        let (prev, prev_written) = if self.jobs_in_flight > 0 {
            (self.last_job.clone(), self.last_job_written.clone())
        } else {
            (None, None)
        };
        let (done, applied) = oneshot::channel();
        self.last_job = Some(applied.shared());
        let (written, written_rx) = oneshot::channel();
        self.last_job_written = Some(written_rx.shared());
        self.jobs_in_flight += 1;
        self.exclusive = exclusive;
        Some(FlushJob {
            dir: self.dir.clone(),
            writes,
            sync,
            sync_also,
            end_offset,
            snapshot,
            order: JobOrder {
                prev,
                done,
                prev_written,
                written: Some(written),
                generation: self.flush_generation,
                exclusive,
            },
        })
    }

    /// Applies a finished job: advances the written and durable offsets and wakes
    /// appends whose policy is now met; on failure, poisons the log (failed
    /// fdatasync) or takes the unwritten appends back (full disk).
    /// Must be called in the order the jobs were prepared: await
    /// [`FlushOutcome::turn`] first.
    pub fn complete_flush(
        &mut self,
        job_end_offset: i64,
        outcome: FlushOutcome<S::File>,
        now_ms: i64,
    ) {
        let FlushOutcome {
            opened,
            written,
            written_before,
            synced,
            result,
            order,
        } = outcome;
        debug_assert!(self.jobs_in_flight > 0);
        self.jobs_in_flight -= 1;
        if order.exclusive {
            self.exclusive = false;
        }
        let void = order.generation != self.flush_generation || self.poisoned.is_some();
        // Whatever happens below, the next job may go on once this returns.
        let _ = order.done.send(());
        if void {
            // An earlier job failed: its failure took back every append this
            // job held (and failed their waiters); what it wrote is past the
            // logical end and gets overwritten.
            self.wake_flush_watchers();
            return;
        }
        self.apply_flush(
            job_end_offset,
            opened,
            written,
            written_before,
            synced,
            result,
            now_ms,
        );
        self.wake_flush_watchers();
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_flush(
        &mut self,
        job_end_offset: i64,
        opened: Vec<(i64, Rc<S::File>)>,
        written: Vec<WrittenSegment>,
        written_before: Vec<(i64, Vec<u8>)>,
        synced: bool,
        result: Result<(), FlushError>,
        now_ms: i64,
    ) {
        for (base, file) in opened {
            if let Some(seg) = self.segments.get_mut(&base) {
                seg.file = Some(file);
            }
        }
        match result {
            Ok(()) => {
                for done in written {
                    if let Some(seg) = self.segments.get_mut(&done.base_offset) {
                        seg.written = done.new_written;
                        seg.allocated = seg.allocated.max(done.allocated);
                        if done.sealed {
                            seg.state = SegmentState::Sealed;
                            seg.tail_block = Vec::new();
                        }
                    }
                }
                self.written_offset = job_end_offset;
                if synced {
                    self.durable_offset = job_end_offset;
                    self.last_sync_ms = now_ms;
                }
                let visible = match self.config.flush {
                    FlushPolicy::Always => self.durable_offset,
                    _ => self.written_offset,
                };
                self.set_visible(visible);
            }
            Err(FlushError::Fatal(err)) => {
                tracing::error!(dir = %self.dir.display(), error = %err, "log poisoned: it refuses writes from now on");
                self.poisoned = Some(err.to_string());
                let visible = self.visible_offset;
                self.fail_waiters_above(visible, &LogError::Poisoned(err.to_string()));
            }
            Err(FlushError::Retriable(err)) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "write failed; unwritten appends are taken back");
                // The failed job may have been the one to sync what earlier jobs wrote.
                for seg in self
                    .segments
                    .values_mut()
                    .rev()
                    .take_while(|s| s.state != SegmentState::Sealed)
                {
                    seg.unsynced |= seg.file.is_some();
                }
                self.take_back_unwritten(written_before, &err);
            }
        }
    }

    /// After a failed write: forget every append past what is on disk.
    fn take_back_unwritten(&mut self, restored: Vec<(i64, Vec<u8>)>, err: &LogError) {
        let keep = self.written_offset;
        // Jobs prepared after the failed one held appends past `keep`.
        self.flush_generation += 1;
        for (base, tail) in restored {
            if let Some(seg) = self.segments.get_mut(&base) {
                seg.tail_block = tail;
            }
        }
        // Segments that start past the written data never reached the disk.
        let first = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        let dropped: Vec<i64> = self
            .segments
            .keys()
            .copied()
            .filter(|&b| b > first && b >= keep)
            .collect();
        for b in dropped {
            self.segments.remove(&b);
        }
        let seg = self.active();
        seg.pending.clear();
        seg.size = seg.written;
        seg.state = SegmentState::Active;
        seg.index.truncate_to_position(seg.written as u32);
        let rel = (keep - seg.base_offset).max(0) as u32;
        seg.time_index.truncate_to_offset(rel);
        seg.next_offset = keep;
        seg.max_timestamp = seg.time_index.last().map_or(-1, |(t, _)| t);
        self.next_offset = keep;
        self.tail.truncate_from(keep);
        self.producers.truncate_to(keep);
        let epochs = self.leader_epoch_cache.len();
        self.leader_epoch_cache.retain(|&(_, start)| start < keep);
        self.leader_epochs_dirty |= self.leader_epoch_cache.len() != epochs;
        self.snapshot_due = None;
        self.fail_waiters_above(keep, err);
    }

    // ---- reads ----

    /// Decides how to serve a read of whole batches from `offset`, up to
    /// `max_bytes` (at least one batch), below the visible offset.
    pub fn plan_read(&self, offset: i64, max_bytes: usize) -> Result<ReadPlan<S::File>, LogError> {
        let high_watermark = self.visible_offset;
        let log_start_offset = self.log_start_offset;
        if offset < log_start_offset || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: log_start_offset,
                log_end: high_watermark,
            });
        }
        let done = |chunks| {
            ReadPlan::Done(ReadResult {
                chunks,
                high_watermark,
                log_start_offset,
            })
        };
        if offset == high_watermark {
            return Ok(done(Vec::new()));
        }
        if let Some(chunks) = self.tail.read(offset, high_watermark, max_bytes) {
            return Ok(done(chunks));
        }
        // The segment holding `offset`: the last one starting at or before it, or
        // (a gap left by compaction or retention) the next one.
        let seg = self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| offset < s.next_offset)
            .or_else(|| self.segments.range(offset..).next().map(|(_, s)| s));
        let Some(seg) = seg else {
            return Ok(done(Vec::new()));
        };
        let Some(file) = seg.file.clone() else {
            return Ok(done(Vec::new()));
        };
        let position = if offset > seg.base_offset {
            seg.index.lookup(seg.relative(offset))
        } else {
            0
        };
        Ok(ReadPlan::Disk(DiskRead {
            file,
            path: seg.path.clone(),
            offset,
            position: u64::from(position),
            end: seg.written,
            max_bytes,
            visible_end: high_watermark,
            high_watermark,
            log_start_offset,
        }))
    }

    // ---- start offset, retention ----

    /// DeleteRecords: makes `offset` the new log start offset. Returns the
    /// segments now wholly below it, to delete with [`delete_segments`].
    pub fn advance_log_start(&mut self, offset: i64) -> Result<Vec<Rc<S::File>>, LogError> {
        if offset > self.visible_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.visible_offset,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(Vec::new());
        }
        self.log_start_offset = offset;
        self.tail.drop_before(offset);
        Ok(self.drop_segments_below(offset))
    }

    /// Removes sealed segments whose every offset is below `offset`.
    fn drop_segments_below(&mut self, offset: i64) -> Vec<Rc<S::File>> {
        let mut dropped = Vec::new();
        loop {
            let mut it = self.segments.iter();
            let (Some((&first, seg)), Some(_)) = (it.next(), it.next()) else {
                break;
            };
            if seg.state != SegmentState::Sealed || seg.next_offset > offset {
                break;
            }
            if let Some(seg) = self.segments.remove(&first) {
                self.pending_deletes.push(seg.path);
                dropped.extend(seg.file);
                self.read_ahead.clear();
            }
        }
        dropped
    }

    /// Applies `retention.ms` and `retention.bytes`: drops whole sealed segments
    /// and advances the log start offset. The files are deleted by
    /// [`delete_dropped_files`]. For a log of one replica; a replicated one
    /// uses [`PartitionLog::plan_retention_below`].
    pub fn plan_retention(&mut self, now_ms: i64) -> usize {
        self.plan_retention_below(now_ms, i64::MAX)
    }

    /// [`PartitionLog::plan_retention`] that deletes only segments wholly
    /// below `upper_bound` (Kafka's rule for a replicated partition: only
    /// what is below the high watermark may go, so retention never takes
    /// a record a follower or a consumer has not been able to get).
    pub fn plan_retention_below(&mut self, now_ms: i64, upper_bound: i64) -> usize {
        let mut removed = 0;
        if !self.config.cleanup_policy.delete {
            return 0;
        }
        loop {
            let total = self.size_bytes() as i64;
            let mut it = self.segments.values();
            let (Some(first), Some(second)) = (it.next(), it.next()) else {
                break;
            };
            if first.state != SegmentState::Sealed {
                break;
            }
            let by_time = self.config.retention_ms >= 0
                && first.max_timestamp >= 0
                && now_ms - first.max_timestamp > self.config.retention_ms;
            let by_size = self.config.retention_bytes >= 0
                && total - first.size as i64 >= self.config.retention_bytes;
            if !(by_time || by_size) || second.base_offset > upper_bound {
                break;
            }
            let (first_base, next_base) = (first.base_offset, second.base_offset);
            self.log_start_offset = self.log_start_offset.max(next_base);
            self.tail.drop_before(next_base);
            if let Some(seg) = self.segments.remove(&first_base) {
                self.pending_deletes.push(seg.path);
                // Its file stays open while a read-ahead holds it.
                self.read_ahead.clear();
            }
            removed += 1;
        }
        removed
    }
}

/// Checks one whole stored batch: frame and CRC-32C.
pub(crate) fn verify_crc(batch: &[u8]) -> Result<(), String> {
    match sluice_records::BatchIter::new(batch).next() {
        Some(Ok((_, range))) if range.end == batch.len() => Ok(()),
        Some(Ok(_)) => Err("batch length does not match its frame".into()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("empty batch".into()),
    }
}

/// The largest single write a flush submits: a job's bytes go out as several
/// writes of at most this size, all in flight together (the disk is faster at
/// queue depth > 1, and a buffer this size can come from the ring's registered
/// memory).
pub const WRITE_PIECE_BYTES: u64 = 512 << 10;

/// Flush jobs of one log in flight at once. A job's writes are small when
/// appends arrive slowly or no fdatasync stretches a round; with several in
/// flight the disk still sees a queue (PLATFORM.md: 16 KiB writes at queue
/// depth 1 reach a tenth of the sequential bandwidth).
pub const MAX_FLUSH_JOBS_IN_FLIGHT: u32 = 4;

/// Copies a sequence of byte slices into consecutive buffers.
struct PieceCursor<'a> {
    pieces: VecDeque<&'a [u8]>,
}

impl<'a> PieceCursor<'a> {
    fn new(pieces: VecDeque<&'a [u8]>) -> Self {
        PieceCursor { pieces }
    }

    /// Fills `dst` from the front of the sequence; returns the bytes copied
    /// (less than `dst.len()` only when the sequence ran out).
    fn fill(&mut self, dst: &mut [u8]) -> usize {
        let mut at = 0;
        while at < dst.len() {
            let Some(piece) = self.pieces.front_mut() else {
                break;
            };
            let n = piece.len().min(dst.len() - at);
            dst[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
            *piece = &piece[n..];
            if piece.is_empty() {
                self.pieces.pop_front();
            }
        }
        at
    }

    fn is_empty(&self) -> bool {
        self.pieces.iter().all(|p| p.is_empty())
    }
}

/// The last partial block of the bytes `[write_pos, new_written)` made of
/// `tail` (bytes from `write_pos`) followed by `chunks`.
fn tail_of(tail: &[u8], chunks: &[Bytes], write_pos: u64, new_written: u64) -> Vec<u8> {
    let start = align_down(new_written);
    let mut out = Vec::with_capacity((new_written - start) as usize);
    let mut pos = write_pos;
    for piece in std::iter::once(tail).chain(chunks.iter().map(|c| c.as_ref())) {
        let end = pos + piece.len() as u64;
        if end > start {
            let from = start.saturating_sub(pos) as usize;
            out.extend_from_slice(&piece[from..]);
        }
        pos = end;
    }
    debug_assert_eq!(pos, new_written);
    out
}

pub(crate) struct SealInfo {
    final_len: u64,
    index: Vec<u8>,
    time_index: Vec<u8>,
    index_path: PathBuf,
    time_index_path: PathBuf,
}

pub(crate) struct SegmentWrite<F: StorageFile> {
    base_offset: i64,
    path: PathBuf,
    file: Option<Rc<F>>,
    write_pos: u64,
    tail: Vec<u8>,
    chunks: Vec<Bytes>,
    new_written: u64,
    preallocate_to: Option<u64>,
    seal: Option<SealInfo>,
}

/// The I/O of one flush of one log, run without borrowing the log.
pub struct FlushJob<F: StorageFile> {
    dir: PathBuf,
    writes: Vec<SegmentWrite<F>>,
    sync: bool,
    /// Files this job does not write but must sync (earlier jobs wrote them).
    sync_also: Vec<(PathBuf, Rc<F>)>,
    end_offset: i64,
    snapshot: Option<(PathBuf, Vec<u8>)>,
    order: JobOrder,
}

/// Where a job stands among the jobs of its log in flight.
pub(crate) struct JobOrder {
    /// Applied when the job prepared just before this one has been applied.
    prev: Option<Shared<oneshot::Receiver<()>>>,
    /// Sent once this job has been applied.
    done: oneshot::Sender<()>,
    /// Resolves when the writes of every job prepared before this one have
    /// completed (or failed).
    prev_written: Option<Shared<oneshot::Receiver<()>>>,
    /// Sent (or dropped) once this job's writes and those of every earlier
    /// job have completed.
    written: Option<oneshot::Sender<()>>,
    generation: u64,
    exclusive: bool,
}

pub(crate) struct WrittenSegment {
    base_offset: i64,
    new_written: u64,
    allocated: u64,
    sealed: bool,
}

pub enum FlushError {
    /// Nothing was lost: the unwritten appends can be failed and retried (full disk).
    Retriable(LogError),
    /// The state of the file is unknown (failed fdatasync): the log must refuse writes.
    Fatal(LogError),
}

pub struct FlushOutcome<F: StorageFile> {
    opened: Vec<(i64, Rc<F>)>,
    written: Vec<WrittenSegment>,
    written_before: Vec<(i64, Vec<u8>)>,
    synced: bool,
    result: Result<(), FlushError>,
    order: JobOrder,
}

impl<F: StorageFile> FlushOutcome<F> {
    /// Resolves when every job prepared before this one has been applied:
    /// then, and only then, [`PartitionLog::complete_flush`] may apply it.
    pub async fn turn(&self) {
        if let Some(prev) = &self.order.prev {
            let _ = prev.clone().await;
        }
    }
}

impl<F: StorageFile> FlushJob<F> {
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Writes every dirty segment (all submitted at once), then syncs them
    /// together: one group commit for every append the job holds.
    pub async fn execute<S: Storage<File = F>>(self, storage: &S) -> FlushOutcome<F> {
        let _in_flight = DataIoGuard::enter();
        let FlushJob {
            dir,
            writes,
            sync,
            sync_also,
            end_offset: _,
            snapshot,
            mut order,
        } = self;
        let mut opened = Vec::new();
        let mut outcome_written = Vec::new();
        let written_before: Vec<(i64, Vec<u8>)> = writes
            .iter()
            .map(|w| (w.base_offset, w.tail.clone()))
            .collect();
        let fail = |opened, written_before, e: FlushError, order| FlushOutcome {
            opened,
            written: Vec::new(),
            written_before,
            synced: false,
            result: Err(e),
            order,
        };
        let prev_written = order.prev_written.take();
        let written_tx = order.written.take();

        let mut created = false;
        let phase = write_all(
            storage,
            &writes,
            prev_written.clone(),
            &mut opened,
            &mut created,
        )
        .await;
        // This job's writes are done (or failed, with none left in flight);
        // the next job learns it once every earlier job's writes are done too.
        if let Some(earlier) = prev_written {
            let _ = earlier.await;
        }
        drop(written_tx);
        let (files, allocated) = match phase {
            Ok(done) => done,
            Err(e) => return fail(opened, written_before, e, order),
        };

        // One fdatasync per written file (and per file earlier jobs wrote
        // without syncing), all in flight together, after every earlier
        // job's writes have completed (awaited above).
        let must_sync = |w: &SegmentWrite<F>| sync || w.seal.is_some();
        let syncs = writes
            .iter()
            .zip(&files)
            .filter(|(w, _)| must_sync(w))
            .map(|(w, file)| (&w.path, file, w.seal.as_ref()))
            .chain(
                sync_also
                    .iter()
                    .filter(|_| sync)
                    .map(|(path, file)| (path, file, None)),
            )
            .map(|(path, file, seal)| async move {
                if let Some(seal) = seal {
                    file.truncate(seal.final_len)
                        .await
                        .map_err(|e| LogError::io("truncate", path, &e))?;
                }
                file.fdatasync()
                    .await
                    .map_err(|e| LogError::io("fdatasync", path, &e))
            });
        for r in futures::future::join_all(syncs).await {
            if let Err(err) = r {
                return fail(opened, written_before, FlushError::Fatal(err), order);
            }
        }
        if created {
            if let Err(e) = storage.sync_dir(&dir).await {
                return fail(
                    opened,
                    written_before,
                    FlushError::Fatal(LogError::io("sync dir", &dir, &e)),
                    order,
                );
            }
        }
        for w in &writes {
            if let Some(seal) = &w.seal {
                for (path, body) in [
                    (&seal.index_path, &seal.index),
                    (&seal.time_index_path, &seal.time_index),
                ] {
                    if let Err(e) = crate::storage::write_file_atomic(storage, path, body).await {
                        return fail(
                            opened,
                            written_before,
                            FlushError::Fatal(LogError::io("write index", path, &e)),
                            order,
                        );
                    }
                }
            }
        }
        if let Some((path, body)) = &snapshot {
            if let Err(e) = crate::storage::write_file_atomic(storage, path, body).await {
                return fail(
                    opened,
                    written_before,
                    FlushError::Fatal(LogError::io("write snapshot", path, &e)),
                    order,
                );
            }
        }
        for (w, allocated) in writes.into_iter().zip(allocated) {
            outcome_written.push(WrittenSegment {
                base_offset: w.base_offset,
                new_written: w.new_written,
                allocated,
                sealed: w.seal.is_some(),
            });
        }
        FlushOutcome {
            opened,
            written: outcome_written,
            written_before,
            synced: sync,
            result: Ok(()),
            order,
        }
    }
}

/// Opens (creates) the files of a job and submits all its writes; returns
/// the files and the space allocated ahead per write.
async fn write_all<S: Storage>(
    storage: &S,
    writes: &[SegmentWrite<S::File>],
    prev_written: Option<Shared<oneshot::Receiver<()>>>,
    opened: &mut Vec<(i64, Rc<S::File>)>,
    created: &mut bool,
) -> Result<(Vec<Rc<S::File>>, Vec<u64>), FlushError> {
    let as_flush_error = |err: LogError| {
        if err.is_no_space() {
            FlushError::Retriable(err)
        } else {
            FlushError::Fatal(err)
        }
    };
    // Open (create) files first: a new segment's file.
    let mut files = Vec::with_capacity(writes.len());
    for w in writes {
        match &w.file {
            Some(f) => files.push(f.clone()),
            None => {
                let f = storage
                    .create(&w.path)
                    .await
                    .map_err(|e| as_flush_error(LogError::io("create", &w.path, &e)))?;
                let f = Rc::new(f);
                opened.push((w.base_offset, f.clone()));
                files.push(f);
                *created = true;
            }
        }
    }
    let io = writes.iter().zip(&files).map(|(w, file)| {
        let prev = prev_written.clone();
        async move {
            let mut allocated = 0;
            if let Some(to) = w.preallocate_to {
                file.preallocate(to)
                    .await
                    .map_err(|e| LogError::io("fallocate", &w.path, &e))?;
                allocated = to;
            }
            // Large, aligned pieces, all in flight together: the disk gets a
            // queue of writes instead of one at a time.
            let end = align_up(w.new_written);
            let mut source = PieceCursor::new(
                std::iter::once(w.tail.as_slice())
                    .chain(w.chunks.iter().map(|c| c.as_ref()))
                    .collect(),
            );
            // The first block holds bytes an earlier job wrote (or is
            // writing): its rewrite waits for the earlier jobs' writes (not
            // their syncs), so the two writes of the block cannot reach the
            // disk in the wrong order. The blocks after it are this job's
            // alone and go out at once.
            let mut wait_first = if w.tail.is_empty() { None } else { prev };
            let mut pieces = Vec::new();
            let mut pos = w.write_pos;
            while pos < end {
                let max = if wait_first.is_some() {
                    BLOCK_SIZE
                } else {
                    WRITE_PIECE_BYTES
                };
                let len = (end - pos).min(max);
                // Every byte is overwritten below (data, then zero padding to
                // the block end): no need to zero the buffer first.
                let mut buf = file.alloc_for_overwrite(len as usize);
                let dst = buf.as_mut();
                let copied = source.fill(dst);
                dst[copied..].fill(0);
                let wait = wait_first.take();
                pieces.push(async move {
                    if let Some(earlier) = wait {
                        let _ = earlier.await;
                    }
                    file.write_at(buf, pos).await
                });
                pos += len;
            }
            debug_assert!(source.is_empty());
            for r in futures::future::join_all(pieces).await {
                r.map_err(|e| LogError::io("write", &w.path, &e))?;
            }
            Ok::<u64, LogError>(allocated)
        }
    });
    let results = futures::future::join_all(io).await;
    let mut allocated = Vec::with_capacity(results.len());
    for r in results {
        allocated.push(r.map_err(as_flush_error)?);
    }
    Ok((files, allocated))
}

/// How a read is served.
pub enum ReadPlan<F: StorageFile> {
    Done(ReadResult),
    Disk(DiskRead<F>),
}

pub struct DiskRead<F: StorageFile> {
    file: Rc<F>,
    path: PathBuf,
    offset: i64,
    position: u64,
    end: u64,
    max_bytes: usize,
    visible_end: i64,
    high_watermark: i64,
    log_start_offset: i64,
}

/// The smallest disk read: reads are large and aligned so catch-up consumers
/// run at disk bandwidth.
const MIN_DISK_READ_BYTES: usize = 64 << 10;
/// How much a sequential reader reads ahead at once when the shard's budget
/// allows: Kafka consumers fetch 1 MiB per partition, and this disk read a
/// catch-up topic at ~750 MB/s in 1 MiB reads, ~1,030 MB/s in 4 MiB ones
/// (`sluice bench consume`, 2026-12-03).
pub const READ_AHEAD_BYTES: usize = 4 << 20;
/// Most bytes a shard holds in read-aheads larger than the fetches asked for
/// (two per partition being read from disk); past it, reads are fetch-sized.
pub const READ_AHEAD_BUDGET_BYTES: usize = 64 << 20;

thread_local! {
    /// Bytes of this thread's (shard's) read-aheads beyond the fetch size.
    static READ_AHEAD_EXTRA: Cell<usize> = const { Cell::new(0) };
}

/// Bytes of this thread's (shard's) read-aheads counted against
/// [`READ_AHEAD_BUDGET_BYTES`].
pub fn read_ahead_budget_used() -> usize {
    READ_AHEAD_EXTRA.with(Cell::get)
}

/// A read submitted ahead of the reader: the bytes `[pos, pos + len)` of a file.
pub(crate) struct ReadAhead<F: StorageFile> {
    file: Rc<F>,
    /// Where the read starts (block aligned).
    pos: u64,
    /// Where the read ends: `pos` + its length.
    end: u64,
    /// The batch boundary where the reader stopped, `>= pos`.
    resume_pos: u64,
    /// Every batch before `resume_pos` ends below this offset.
    resume_offset: i64,
    /// The file's written end when the read was issued: bytes past it may be
    /// stale in the buffer, and are never used.
    valid_end: u64,
    /// Bytes counted in [`READ_AHEAD_EXTRA`], given back on drop.
    extra: usize,
    data: Shared<LocalBoxFuture<'static, Result<Bytes, Rc<std::io::Error>>>>,
}

impl<F: StorageFile> ReadAhead<F> {
    /// Reads `[align_down(resume_pos), +len)`, clipped to `valid_end`, and
    /// submits it at once; up to [`READ_AHEAD_BYTES`] when the shard's budget
    /// has room.
    async fn issue(
        file: Rc<F>,
        resume_pos: u64,
        resume_offset: i64,
        len: usize,
        valid_end: u64,
    ) -> Self {
        let pos = align_down(resume_pos);
        let extra = READ_AHEAD_EXTRA.with(|held| {
            let extra = READ_AHEAD_BYTES.saturating_sub(len);
            if held.get() + extra > READ_AHEAD_BUDGET_BYTES {
                return 0;
            }
            held.set(held.get() + extra);
            extra
        });
        let len = (valid_end - pos).min((len + extra) as u64) as usize;
        let reader = file.clone();
        let data = async move { reader.read_at(pos, len).await.map_err(Rc::new) }
            .boxed_local()
            .shared();
        // Submit it now; the reader awaits it on its next fetch.
        let _ = futures::future::poll_immediate(data.clone()).await;
        ReadAhead {
            file,
            pos,
            end: pos + len as u64,
            resume_pos,
            resume_offset,
            valid_end,
            extra,
            data,
        }
    }

    /// Whether it holds the start of `read`: the same file, no batch skipped
    /// at or above the offset asked for, and bytes at the read's position.
    fn serves(&self, read: &DiskRead<F>) -> bool {
        let from = read.position.max(self.resume_pos);
        Rc::ptr_eq(&self.file, &read.file)
            && self.resume_offset <= read.offset
            && from < self.valid_end.min(read.end).min(self.end)
    }

    /// Where the whole batches in the buffer from `from` (a batch boundary)
    /// end, and the offset after the last of them; `None` before the data is
    /// in or on a read error.
    fn whole_batches_end(&self, from: u64, visible_end: i64) -> Option<(u64, i64)> {
        let data = futures::FutureExt::now_or_never(self.data.clone())?.ok()?;
        let limit = self.valid_end.min(self.end);
        let (mut pos, mut next_offset) = (from, None);
        while pos < limit {
            let rest = &data[(pos - self.pos) as usize..(limit - self.pos) as usize];
            let Ok(header) = BatchHeader::parse(rest) else {
                break;
            };
            let len = header.total_len();
            if len < sluice_records::HEADER_LEN
                || rest.len() < len
                || header.base_offset >= visible_end
            {
                break;
            }
            pos += len as u64;
            next_offset = Some(header.last_offset() + 1);
        }
        next_offset.map(|o| (pos, o))
    }
}

impl<F: StorageFile> Drop for ReadAhead<F> {
    fn drop(&mut self) {
        READ_AHEAD_EXTRA.with(|held| held.set(held.get() - self.extra));
    }
}

/// A log's read-aheads: the one the next cold read is served from, and the
/// one after it, issued before the first runs out so that the disk is
/// never idle between them.
pub(crate) struct ReadAheads<F: StorageFile> {
    current: Option<ReadAhead<F>>,
    next: Option<ReadAhead<F>>,
}

impl<F: StorageFile> Default for ReadAheads<F> {
    fn default() -> Self {
        ReadAheads {
            current: None,
            next: None,
        }
    }
}

impl<F: StorageFile> ReadAheads<F> {
    /// Drops both (the bytes may be stale, or the file gone).
    pub(crate) fn clear(&mut self) {
        *self = ReadAheads::default();
    }
}

impl<F: StorageFile> DiskRead<F> {
    pub async fn execute(self) -> Result<ReadResult, LogError> {
        self.execute_with(ReadAheads::default(), false).await.0
    }

    /// Like [`DiskRead::execute`], first serving what it can from `aheads`
    /// (reads issued by the previous calls) and, when `read_on`, keeping the
    /// read-ahead while it holds more and issuing the next one from where
    /// its whole batches end once less than two fetches of them are left
    /// (or from where this read stopped, when none served).
    pub(crate) async fn execute_with(
        self,
        aheads: ReadAheads<F>,
        read_on: bool,
    ) -> (Result<ReadResult, LogError>, ReadAheads<F>) {
        let ReadAheads { current, next } = aheads;
        let (current, mut next) = match (current, next) {
            (Some(c), n) if c.serves(&self) => (Some(c), n),
            (_, Some(n)) if n.serves(&self) => (Some(n), None),
            _ => (None, None),
        };
        let mut last_offset = None;
        let result = self.run(current.as_ref(), &mut last_offset).await;
        let (stop, last) = match (&result, last_offset) {
            (Ok((_, stop)), Some(last)) if read_on && *stop < self.end => (*stop, last),
            _ => return (result.map(|(r, _)| r), ReadAheads::default()),
        };
        let want = self.max_bytes.max(MIN_DISK_READ_BYTES);
        let mut current = match current {
            Some(mut c) => match c.whole_batches_end(stop, self.visible_end) {
                Some((whole_end, after)) => {
                    c.resume_pos = stop;
                    c.resume_offset = last + 1;
                    // The next fetch or the one after it runs this one out.
                    let runs_out_soon = whole_end - stop < 2 * want as u64;
                    if next.is_none() && runs_out_soon && whole_end < self.end {
                        let file = self.file.clone();
                        next = Some(ReadAhead::issue(file, whole_end, after, want, self.end).await);
                    }
                    Some(c)
                }
                None => None,
            },
            None => None,
        };
        if current.is_none() {
            // This read used up the current one (or none served): the next
            // one, if it starts where this read stopped, else a new one.
            current = match next.take() {
                Some(n) if n.resume_pos == stop => Some(n),
                _ => {
                    let file = self.file.clone();
                    Some(ReadAhead::issue(file, stop, last + 1, want, self.end).await)
                }
            };
        }
        (result.map(|(r, _)| r), ReadAheads { current, next })
    }

    /// The read itself; returns the result and the position where it stopped
    /// (a batch boundary), and sets `last_offset` to the last offset returned.
    async fn run(
        &self,
        ahead: Option<&ReadAhead<F>>,
        last_offset: &mut Option<i64>,
    ) -> Result<(ReadResult, u64), LogError> {
        // A read issued ahead is not counted until a fetch waits for it here:
        // it may sit done and unclaimed for as long as the consumer is idle.
        let _in_flight = DataIoGuard::enter();
        let mut chunks = Vec::new();
        let mut pos = self.position;
        let mut total = 0usize;
        let mut first = match ahead {
            Some(a) => {
                let data = a
                    .data
                    .clone()
                    .await
                    .map_err(|e| LogError::io("read", &self.path, &e))?;
                pos = pos.max(a.resume_pos);
                let from = (pos - a.pos) as usize;
                let to = (a.valid_end.min(self.end) - a.pos) as usize;
                (from < data.len()).then(|| data.slice(from..to.min(data.len())))
            }
            None => None,
        };
        let from_ahead = first.is_some();
        'outer: while pos < self.end {
            let want =
                (self.end - pos).min(self.max_bytes.max(MIN_DISK_READ_BYTES) as u64) as usize;
            let data = match first.take() {
                Some(data) => data,
                // The read-ahead ran out: return what it held rather than
                // wait for the disk again (the next fetch has its own).
                None if from_ahead && !chunks.is_empty() => break,
                None => self
                    .file
                    .read_at(pos, want)
                    .await
                    .map_err(|e| LogError::io("read", &self.path, &e))?,
            };
            let mut at = 0usize;
            // Where the chunk last pushed starts in `data`, while the batches
            // taken from `data` are adjacent: they grow that one chunk, so a
            // read of many small batches is one piece of the response.
            let mut run_start: Option<usize> = None;
            while at < data.len() {
                let rest = &data[at..];
                if rest.len() < sluice_records::HEADER_LEN {
                    break;
                }
                let header = BatchHeader::parse(rest)
                    .map_err(|e| self.corrupt(pos + at as u64, e.to_string()))?;
                let len = header.total_len();
                if len < sluice_records::HEADER_LEN {
                    return Err(self.corrupt(pos + at as u64, format!("batch length {len}")));
                }
                if header.base_offset >= self.visible_end {
                    break 'outer;
                }
                if rest.len() < len {
                    if at == 0 && (pos + len as u64) <= self.end {
                        // One batch larger than the buffer: read exactly it next.
                        let data = self
                            .file
                            .read_at(pos, len)
                            .await
                            .map_err(|e| LogError::io("read", &self.path, &e))?;
                        if data.len() < len {
                            return Err(
                                self.corrupt(pos, "batch runs past the end of the file".into())
                            );
                        }
                        self.check_crc(&data, pos)?;
                        if header.last_offset() >= self.offset {
                            total += len;
                            chunks.push(data);
                            *last_offset = Some(header.last_offset());
                        }
                        pos += len as u64;
                        if total >= self.max_bytes {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                    break;
                }
                if header.last_offset() >= self.offset {
                    if !chunks.is_empty() && total + len > self.max_bytes {
                        break 'outer;
                    }
                    self.check_crc(&data[at..at + len], pos + at as u64)?;
                    total += len;
                    match (run_start, chunks.last_mut()) {
                        (Some(start), Some(last)) => *last = data.slice(start..at + len),
                        _ => {
                            run_start = Some(at);
                            chunks.push(data.slice(at..at + len));
                        }
                    }
                    *last_offset = Some(header.last_offset());
                } else {
                    run_start = None;
                }
                at += len;
            }
            if at == 0 {
                break;
            }
            pos += at as u64;
            if total >= self.max_bytes {
                break;
            }
        }
        Ok((
            ReadResult {
                chunks,
                high_watermark: self.high_watermark,
                log_start_offset: self.log_start_offset,
            },
            pos,
        ))
    }

    fn check_crc(&self, batch: &[u8], position: u64) -> Result<(), LogError> {
        verify_crc(batch).map_err(|reason| self.corrupt(position, reason))
    }

    fn corrupt(&self, position: u64, reason: String) -> LogError {
        tracing::error!(path = %self.path.display(), position, %reason, "corrupt batch on disk; not served");
        LogError::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }
}

// ---- data-path disk I/O in flight (the cleaner steps aside for it) ----

thread_local! {
    /// Per thread, and so per shard: a shard is one executor on one thread.
    static DATA_IO_IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// Data-path disk operations (flush jobs: writes, syncs, index files; disk
/// reads of fetches) in flight on this thread's shard. The log cleaner defers
/// its own I/O while this is non-zero: glommio 0.9 sends every disk I/O to
/// the executor's main ring whatever the task queue's latency class, so a
/// cleaner read or write issued first would queue in front of a produce's
/// write and `fdatasync`.
pub fn data_io_in_flight() -> usize {
    DATA_IO_IN_FLIGHT.with(Cell::get)
}

/// Counts one data-path disk operation as in flight while it lives (see
/// [`data_io_in_flight`]). Public so that other data paths of a shard
/// (replication, tests standing in for a busy disk) can mark theirs.
#[must_use = "the operation counts as in flight only while the guard lives"]
pub struct DataIoGuard(());

impl DataIoGuard {
    pub fn enter() -> Self {
        DATA_IO_IN_FLIGHT.with(|n| n.set(n.get() + 1));
        DataIoGuard(())
    }
}

impl Drop for DataIoGuard {
    fn drop(&mut self) {
        DATA_IO_IN_FLIGHT.with(|n| {
            debug_assert!(n.get() > 0, "data I/O count underflow");
            n.set(n.get().saturating_sub(1));
        });
    }
}

// ---- the borrow-safe entry points shard code calls ----

/// Runs one flush of `log` (a group commit of everything appended so far).
pub async fn flush<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    now_ms: i64,
    force_sync: bool,
) -> bool {
    let (job, storage) = {
        let mut l = log.borrow_mut();
        match l.prepare_flush(now_ms, force_sync) {
            Some(job) => (job, l.storage.clone()),
            None => return false,
        }
    };
    let end = job.end_offset();
    let outcome = job.execute(&storage).await;
    outcome.turn().await;
    log.borrow_mut().complete_flush(end, outcome, now_ms);
    true
}

/// Flushes several logs as one group commit: all writes submitted, then all syncs.
pub async fn flush_all<S: Storage>(logs: &[Rc<RefCell<PartitionLog<S>>>], now_ms: i64) -> usize {
    let jobs: Vec<_> = logs
        .iter()
        .filter_map(|log| {
            let mut l = log.borrow_mut();
            let job = l.prepare_flush(now_ms, false)?;
            Some((log.clone(), job, l.storage.clone()))
        })
        .collect();
    let n = jobs.len();
    let runs = jobs.into_iter().map(|(log, job, storage)| async move {
        let end = job.end_offset();
        let outcome = job.execute(&storage).await;
        outcome.turn().await;
        log.borrow_mut().complete_flush(end, outcome, now_ms);
    });
    futures::future::join_all(runs).await;
    n
}

/// Reads whole batches from `offset`, up to `max_bytes` (at least one batch).
pub async fn read<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    offset: i64,
    max_bytes: usize,
) -> Result<ReadResult, LogError> {
    let mut offset = offset;
    loop {
        let (plan, ahead) = {
            let mut l = log.borrow_mut();
            let plan = l.plan_read(offset, max_bytes)?;
            let ahead = match plan {
                ReadPlan::Disk(_) => std::mem::take(&mut l.read_ahead),
                ReadPlan::Done(_) => ReadAheads::default(),
            };
            (plan, ahead)
        };
        let result = match plan {
            ReadPlan::Done(r) => return Ok(r),
            ReadPlan::Disk(d) => {
                let (result, next) = d.execute_with(ahead, true).await;
                if next.current.is_some() {
                    let mut l = log.borrow_mut();
                    l.read_ahead = next;
                    l.read_ahead_claimed = true;
                }
                result?
            }
        };
        // Compaction may leave the end of a segment without batches: go on
        // in the next segment rather than answer nothing forever.
        if result.chunks.is_empty() && offset < result.high_watermark {
            let next = log
                .borrow()
                .segments
                .range(offset + 1..)
                .next()
                .map(|(&b, _)| b);
            if let Some(next) = next.filter(|&n| n < result.high_watermark) {
                offset = next;
                continue;
            }
        }
        return Ok(result);
    }
}

/// Deletes the files of segments dropped by retention or DeleteRecords, and the
/// producer snapshots older than the log start.
pub async fn delete_dropped_files<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
) -> Result<usize, LogError> {
    // The cleaner is renaming files: delete after it (the next call), but
    // make the new log start durable now.
    let (swapping, due) = {
        let l = log.borrow();
        (l.swapping, !l.pending_deletes.is_empty())
    };
    if swapping {
        if due {
            crate::recovery::checkpoint_log_start(log).await?;
        }
        return Ok(0);
    }
    let (storage, paths, dir) = {
        let mut l = log.borrow_mut();
        (
            l.storage.clone(),
            std::mem::take(&mut l.pending_deletes),
            l.dir.clone(),
        )
    };
    if !paths.is_empty() {
        // Persist the start first: if every segment file goes and the active one
        // was never written, a reopen must not restart offsets at 0.
        crate::recovery::checkpoint_log_start(log).await?;
    }
    let mut removed = 0;
    for path in &paths {
        for ext in ["log", "index", "timeindex"] {
            let p = path.with_extension(ext);
            match storage.remove_file(&p).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", p, &e)),
            }
        }
    }
    if !paths.is_empty() {
        storage
            .sync_dir(&dir)
            .await
            .map_err(|e| LogError::io("sync dir", &dir, &e))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::BLOCK_SIZE;

    #[test]
    fn tail_of_takes_the_last_partial_block() {
        let bs = BLOCK_SIZE as usize;
        let tail = vec![1u8; 100];
        let chunks = vec![Bytes::from(vec![2u8; bs]), Bytes::from(vec![3u8; 10])];
        let t = tail_of(&tail, &chunks, 0, 100 + bs as u64 + 10);
        assert_eq!(t.len(), 110);
        assert!(t[..100].iter().all(|&b| b == 2));
        assert!(t[100..].iter().all(|&b| b == 3));
        assert!(tail_of(&[], &[Bytes::from(vec![0u8; bs])], 0, bs as u64).is_empty());
    }
}
