//! Truncation of the log's end (a follower dropping divergent history, KIP-101),
//! and emptying a log to restart it at another offset (a follower whose log
//! ends below its leader's log start, Kafka's `truncateFullyAndStartAt`).
//!
//! The operations that take offsets back: every batch at or past the target
//! goes, the visible offset included. They run in the log's flush slot, so no
//! flush writes while files are cut; appends that arrive meanwhile were assigned
//! offsets past the cut and are failed, as if they had come just before it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use sluice_records::BatchHeader;

use crate::error::LogError;
use crate::log::PartitionLog;
use crate::producers::ProducerStates;
use crate::segment::{parse_file_name, Segment, SegmentState};
use crate::storage::{align_down, Storage, StorageFile};

/// Bytes read per step while looking for the batch that starts at the target.
const TRUNCATE_SCAN_READ_BYTES: usize = 64 << 10;

/// Rounds of "wait for the flush in flight, then flush" before giving up: each
/// round makes everything appended before it durable, so two suffice unless
/// flushes keep failing.
const TRUNCATE_MAX_FLUSH_ROUNDS: usize = 8;

/// What the synchronous planning step hands to the I/O.
struct Plan<F> {
    base_offset: i64,
    file: Option<Rc<F>>,
    path: PathBuf,
    scan_from: u64,
    scan_end: u64,
    /// The cut is at the written end: its position needs no scan (the batch
    /// there, if any, is still pending in memory).
    known_position: Option<u64>,
}

/// Removes every batch at or past `offset`, which must be a batch boundary (or
/// the log end: then nothing happens). Everything before `offset` is made
/// durable first; later segments are deleted, the containing segment is cut at
/// the batch boundary and synced, and its stale indexes and later producer
/// snapshots are removed, so a reopen (clean or after a crash) never brings a
/// truncated batch back. Offsets below the log start are refused.
///
/// A failure of the destructive steps poisons the log: the files' state is then
/// unknown.
pub async fn truncate_to<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    offset: i64,
) -> Result<(), LogError> {
    let mut rounds = 0;
    let plan = loop {
        let flush_now_ms = {
            let mut l = log.borrow_mut();
            if let Some(reason) = &l.poisoned {
                return Err(LogError::Poisoned(reason.clone()));
            }
            if offset < l.log_start_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: l.log_start_offset,
                    log_end: l.next_offset,
                });
            }
            if offset > l.next_offset {
                return Err(LogError::InvalidArgument(format!(
                    "truncate to {offset}: past the log end {}",
                    l.next_offset
                )));
            }
            if offset == l.next_offset {
                return Ok(());
            }
            if l.flush_busy() {
                None
            } else if l.durable_offset >= offset {
                // Everything kept is on disk and synced: take the flush slot and plan.
                l.exclusive = true;
                break l.plan_truncation(offset);
            } else {
                Some(l.last_sync_ms)
            }
        };
        rounds += 1;
        if rounds > TRUNCATE_MAX_FLUSH_ROUNDS {
            return Err(LogError::Abandoned(format!(
                "truncate to {offset}: the data before it could not be made durable"
            )));
        }
        match flush_now_ms {
            None => {
                let done = log.borrow_mut().flush_finished();
                done.await;
            }
            Some(now_ms) => {
                crate::log::flush(log, now_ms, true).await;
            }
        }
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            log.borrow_mut().end_flush();
            return Err(e);
        }
    };

    // Non-destructive reads: the byte position of the batch at `offset`, and the
    // partial block before it (kept in memory for the next direct-I/O write).
    let position = match (&plan.file, plan.known_position) {
        (_, Some(position)) => Ok(position),
        (Some(file), None) if offset > plan.base_offset => {
            find_batch_start(
                file.as_ref(),
                &plan.path,
                plan.scan_from,
                plan.scan_end,
                offset,
            )
            .await
        }
        _ => Ok(0),
    };
    let tail = match (&position, &plan.file) {
        (Ok(pos), Some(file)) => read_tail_block(file.as_ref(), &plan.path, *pos).await,
        _ => Ok(Vec::new()),
    };
    let (position, tail) = match position.and_then(|p| tail.map(|t| (p, t))) {
        Ok(v) => v,
        Err(e) => {
            log.borrow_mut().end_flush();
            return Err(e);
        }
    };

    let (storage, dir, removed) = {
        let mut l = log.borrow_mut();
        match l.apply_truncation(offset, plan.base_offset, position, tail) {
            Ok(removed) => (l.storage.clone(), l.dir.clone(), removed),
            Err(e) => {
                l.end_flush();
                return Err(e);
            }
        }
    };

    let io = cut_files(&storage, &dir, &plan, &removed, position, offset).await;
    {
        let mut l = log.borrow_mut();
        l.end_flush();
        if let Err(err) = io {
            tracing::error!(dir = %l.dir.display(), error = %err, "log poisoned: truncation failed midway");
            l.poisoned = Some(err.to_string());
            return Err(err);
        }
        tracing::info!(dir = %l.dir.display(), offset, "log truncated");
    }
    // Kafka truncates its leader-epoch-checkpoint with the log: a restart
    // must not bring back an epoch whose batches were cut.
    crate::recovery::checkpoint_leader_epochs(log).await
}

/// Empties the log and restarts it at `offset`, which becomes its log start
/// and log end (Kafka's `truncateFullyAndStartAt`). A follower calls it when
/// its leader no longer holds the offsets that would continue its log
/// (retention or DeleteRecords moved the leader's log start past this log's
/// end), or when its history diverges from below its own log start.
///
/// Every segment, index, producer snapshot and leader epoch goes. On disk the
/// segment files are deleted newest first, then the (now empty) leader-epoch
/// checkpoint and the new log start are written atomically, then the
/// directory is synced: a crash midway leaves a prefix of the old log, or an
/// empty log at the old start, both of which a follower empties again; after
/// it, a reopen of the empty directory starts at `offset`. Waiters for
/// appends not yet durable are failed. A failure of the file steps poisons
/// the log.
pub async fn truncate_fully_and_start_at<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    offset: i64,
    now_ms: i64,
) -> Result<(), LogError> {
    if offset < 0 {
        return Err(LogError::InvalidArgument(format!(
            "restart the log at {offset}: negative"
        )));
    }
    let mut rounds = 0;
    loop {
        let busy = {
            let mut l = log.borrow_mut();
            if let Some(reason) = &l.poisoned {
                return Err(LogError::Poisoned(reason.clone()));
            }
            if l.flush_busy() {
                Some(l.flush_finished())
            } else {
                // Nothing kept needs to be durable: take the flush slot now.
                l.exclusive = true;
                None
            }
        };
        let Some(done) = busy else {
            break;
        };
        rounds += 1;
        if rounds > TRUNCATE_MAX_FLUSH_ROUNDS {
            return Err(LogError::Abandoned(format!(
                "restart the log at {offset}: its flushes never paused"
            )));
        }
        done.await;
    }
    let (storage, dir, removed) = {
        let mut l = log.borrow_mut();
        let removed = l.start_at(offset, now_ms);
        (l.storage.clone(), l.dir.clone(), removed)
    };
    let io = async {
        for path in &removed {
            for ext in ["log", "index", "timeindex"] {
                remove_if_present(&storage, &path.with_extension(ext)).await?;
            }
        }
        // Anything else of the old log: snapshots, and segment files a
        // cleaner or an earlier deletion left behind.
        let names = storage
            .list_dir(&dir)
            .await
            .map_err(|e| LogError::io("list", &dir, &e))?;
        for name in names {
            let old = ["log", "index", "timeindex", "snapshot"]
                .iter()
                .any(|ext| parse_file_name(&name, ext).is_some());
            if old {
                remove_if_present(&storage, &dir.join(name)).await?;
            }
        }
        crate::recovery::checkpoint_leader_epochs(log).await?;
        crate::recovery::checkpoint_log_start(log).await?;
        storage
            .sync_dir(&dir)
            .await
            .map_err(|e| LogError::io("sync dir", &dir, &e))
    };
    let io = io.await;
    let mut l = log.borrow_mut();
    l.end_flush();
    if let Err(err) = io {
        tracing::error!(dir = %l.dir.display(), error = %err, "log poisoned: restarting it at a new offset failed midway");
        l.poisoned = Some(err.to_string());
        return Err(err);
    }
    tracing::info!(dir = %l.dir.display(), offset, "log emptied and restarted");
    Ok(())
}

impl<S: Storage> PartitionLog<S> {
    /// The in-memory half of [`truncate_fully_and_start_at`]: returns the
    /// paths of every segment that was in the log (or waiting for deletion),
    /// newest first.
    fn start_at(&mut self, offset: i64, now_ms: i64) -> Vec<PathBuf> {
        let mut removed: Vec<PathBuf> = self
            .segments
            .values()
            .rev()
            .map(|s| s.path.clone())
            .collect();
        removed.extend(std::mem::take(&mut self.pending_deletes));
        self.segments.clear();
        self.segments
            .insert(offset, Segment::new(&self.dir, offset, now_ms));
        let err = LogError::Abandoned(format!("the log was emptied and restarted at {offset}"));
        self.fail_waiters_above(i64::MIN, &err);
        self.log_start_offset = offset;
        self.next_offset = offset;
        self.written_offset = offset;
        self.durable_offset = offset;
        // Nothing below `offset` is readable any more, so the visible offset
        // may go either way here.
        self.visible_offset = offset;
        for w in self.watchers.drain(..) {
            let _ = w.send(());
        }
        self.tail.truncate_from(i64::MIN);
        self.producers = ProducerStates::default();
        self.leader_epoch_cache.clear();
        self.leader_epochs_dirty = true;
        self.snapshot_due = None;
        self.read_ahead.clear();
        self.first_dirty_offset = offset;
        removed
    }

    /// Finds the segment holding `offset` and where to look for its batch.
    fn plan_truncation(&self, offset: i64) -> Result<Plan<S::File>, LogError> {
        let (_, seg) = self.segments.range(..=offset).next_back().ok_or_else(|| {
            LogError::InvalidArgument(format!("truncate to {offset}: before the first segment"))
        })?;
        if offset > seg.next_offset {
            return Err(LogError::InvalidArgument(format!(
                "truncate to {offset}: not a batch boundary (a gap after {})",
                seg.next_offset
            )));
        }
        let scan_from = if offset > seg.base_offset {
            u64::from(seg.index.lookup(seg.relative(offset)))
        } else {
            0
        };
        Ok(Plan {
            base_offset: seg.base_offset,
            file: seg.file.clone(),
            path: seg.path.clone(),
            scan_from,
            scan_end: seg.written,
            known_position: (offset == self.written_offset).then_some(seg.written),
        })
    }

    /// The in-memory half of a truncation; returns the dropped segments' paths,
    /// newest first, for their files to be deleted.
    fn apply_truncation(
        &mut self,
        offset: i64,
        base_offset: i64,
        position: u64,
        tail: Vec<u8>,
    ) -> Result<Vec<PathBuf>, LogError> {
        // Retention or DeleteRecords may have run during the reads.
        if offset < self.log_start_offset || !self.segments.contains_key(&base_offset) {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.next_offset,
            });
        }
        let later: Vec<i64> = self
            .segments
            .range(base_offset + 1..)
            .map(|(&b, _)| b)
            .rev()
            .collect();
        let mut removed = Vec::with_capacity(later.len());
        for b in later {
            if let Some(seg) = self.segments.remove(&b) {
                removed.push(seg.path);
            }
        }
        let seg = self.segments.get_mut(&base_offset).expect("checked above");
        debug_assert!(position <= seg.written);
        seg.pending.clear();
        seg.size = position;
        seg.written = position;
        seg.allocated = position;
        seg.tail_block = tail;
        seg.state = SegmentState::Active;
        seg.index.truncate_to_position(position as u32);
        let rel = seg.relative(offset);
        seg.time_index.truncate_to_offset(rel);
        seg.max_timestamp = seg.time_index.last().map_or(-1, |(t, _)| t);
        seg.next_offset = offset;
        // The next batch gets an index entry: the spacing rule restarts here.
        seg.bytes_since_index = self.config.index_interval_bytes;
        self.next_offset = offset;
        self.written_offset = offset;
        self.durable_offset = self.durable_offset.min(offset);
        // The one place where the visible offset goes down.
        self.visible_offset = self.visible_offset.min(offset);
        self.tail.truncate_from(offset);
        // Offsets at or past the cut will be written anew: they are dirty.
        self.first_dirty_offset = self.first_dirty_offset.min(offset);
        self.producers.truncate_to(offset);
        let epochs = self.leader_epoch_cache.len();
        self.leader_epoch_cache.retain(|&(_, start)| start < offset);
        self.leader_epochs_dirty |= self.leader_epoch_cache.len() != epochs;
        self.snapshot_due = self.snapshot_due.filter(|&b| b <= offset);
        // Bytes read ahead may be from before the cut.
        self.read_ahead.clear();
        let err = LogError::Abandoned(format!("the log was truncated to {offset}"));
        self.fail_waiters_above(offset, &err);
        Ok(removed)
    }
}

/// Scans batch headers from `pos` (a batch start) to the batch starting at `offset`.
async fn find_batch_start<F: StorageFile>(
    file: &F,
    path: &Path,
    mut pos: u64,
    end: u64,
    offset: i64,
) -> Result<u64, LogError> {
    let corrupt = |position: u64, reason: String| LogError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    };
    let mut buf = Bytes::new();
    let mut buf_pos = pos;
    let mut next_offset = None;
    while pos < end {
        let at = (pos - buf_pos) as usize;
        if at + sluice_records::HEADER_LEN > buf.len() {
            let want = (end - pos).min(TRUNCATE_SCAN_READ_BYTES as u64) as usize;
            buf = file
                .read_at(pos, want)
                .await
                .map_err(|e| LogError::io("read", path, &e))?;
            buf_pos = pos;
            if buf.len() < sluice_records::HEADER_LEN {
                return Err(corrupt(pos, "a batch header runs past the end".into()));
            }
            continue;
        }
        let header = BatchHeader::parse(&buf[at..]).map_err(|e| corrupt(pos, e.to_string()))?;
        if header.base_offset == offset {
            return Ok(pos);
        }
        if header.base_offset > offset || header.last_offset() >= offset {
            return Err(LogError::InvalidArgument(format!(
                "truncate to {offset}: not a batch boundary (inside batch {}..={})",
                header.base_offset,
                header.last_offset()
            )));
        }
        let len = header.total_len();
        if len < sluice_records::HEADER_LEN {
            return Err(corrupt(pos, format!("batch length {len}")));
        }
        pos += len as u64;
        next_offset = Some(header.last_offset() + 1);
    }
    if next_offset == Some(offset) {
        return Ok(pos);
    }
    Err(LogError::InvalidArgument(format!(
        "truncate to {offset}: no batch starts there"
    )))
}

/// The bytes of the partial block before `pos`.
async fn read_tail_block<F: StorageFile>(
    file: &F,
    path: &Path,
    pos: u64,
) -> Result<Vec<u8>, LogError> {
    let start = align_down(pos);
    let len = (pos - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let data = file
        .read_at(start, len)
        .await
        .map_err(|e| LogError::io("read", path, &e))?;
    if data.len() != len {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            position: start,
            reason: "short read of the tail block".into(),
        });
    }
    Ok(data.to_vec())
}

async fn remove_if_present<S: Storage>(storage: &S, path: &Path) -> Result<(), LogError> {
    match storage.remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("remove", path, &e)),
    }
}

/// The destructive half. Later segments go newest first, so a crash midway
/// leaves a prefix of the log; then the cut, its sync, and the files that
/// describe the removed data.
async fn cut_files<S: Storage>(
    storage: &S,
    dir: &Path,
    plan: &Plan<S::File>,
    removed: &[PathBuf],
    position: u64,
    offset: i64,
) -> Result<(), LogError> {
    for path in removed {
        for ext in ["index", "timeindex", "log"] {
            remove_if_present(storage, &path.with_extension(ext)).await?;
        }
    }
    if let Some(file) = &plan.file {
        file.truncate(position)
            .await
            .map_err(|e| LogError::io("truncate", &plan.path, &e))?;
        file.fdatasync()
            .await
            .map_err(|e| LogError::io("fdatasync", &plan.path, &e))?;
    }
    // The cut segment is the active one now: its indexes are rebuilt by the scan
    // of the next open, and rewritten when it is sealed or closed.
    for ext in ["index", "timeindex"] {
        remove_if_present(storage, &plan.path.with_extension(ext)).await?;
    }
    // A snapshot past the cut holds producer state of removed batches; a later
    // open would start from it.
    let names = storage
        .list_dir(dir)
        .await
        .map_err(|e| LogError::io("list", dir, &e))?;
    for name in names {
        if parse_file_name(&name, "snapshot").is_some_and(|o| o > offset) {
            remove_if_present(storage, &dir.join(name)).await?;
        }
    }
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| LogError::io("sync dir", dir, &e))
}
