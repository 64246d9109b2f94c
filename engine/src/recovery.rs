//! Opening a partition log: recovery of the active segment, indexes, producer
//! state; and closing it cleanly so the next open can skip the scan.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use sluice_records::BatchHeader;

use crate::config::LogConfig;
use crate::error::LogError;
use crate::index::{OffsetIndex, TimeIndex};
use crate::log::PartitionLog;
use crate::producers::{BatchMeta, ProducerStates};
use crate::segment::{file_name, parse_file_name, Segment, SegmentState};
use crate::storage::{read_file, write_file_atomic, Storage, StorageFile};
use crate::tail_cache::CacheBudget;

const CLEAN_SHUTDOWN: &str = "clean-shutdown";
const LOG_START_CHECKPOINT: &str = "log-start-offset";
/// The last high watermark replication knew (Kafka keeps it in
/// `replication-offset-checkpoint`, one file per log dir): a body of one
/// big-endian i64 and its CRC.
pub const HIGH_WATERMARK_CHECKPOINT: &str = "high-watermark-checkpoint";
/// Kafka's name and format for the leader-epoch cache: a text file of a
/// version line (0), a count line, then one "epoch start_offset" line each.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// A small file of our own: the body, then its CRC-32 (IEEE).
pub(crate) fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out
}

fn check_crc(data: &[u8]) -> Option<&[u8]> {
    let (body, crc) = data.split_last_chunk::<4>()?;
    (crc32fast::hash(body) == u32::from_be_bytes(*crc)).then_some(body)
}

fn read_i64s<const N: usize>(body: &[u8]) -> Option<[i64; N]> {
    if body.len() != N * 8 {
        return None;
    }
    let mut out = [0i64; N];
    for (o, c) in out.iter_mut().zip(body.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *o = i64::from_be_bytes(b);
    }
    Some(out)
}

fn i64s_body(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// What a scan of a segment file found.
pub(crate) struct Scan {
    pub valid_len: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Reads a segment batch by batch, checking length, CRC and offset order, and
/// rebuilds its indexes. Stops at the first torn or corrupt batch.
pub(crate) async fn scan_segment<F: StorageFile>(
    file: &F,
    path: &Path,
    base_offset: i64,
    index_interval_bytes: u64,
    mut on_batch: impl FnMut(&BatchHeader),
) -> Result<Scan, LogError> {
    let file_len = file
        .size()
        .await
        .map_err(|e| LogError::io("stat", path, &e))?;
    let mut scratch: Segment<F> = Segment::new(path.parent().unwrap_or(path), base_offset, 0);
    let mut pos = 0u64;
    let mut buf = Bytes::new();
    let mut buf_pos = 0u64;
    let mut stopped = None;
    while pos < file_len {
        let at = (pos - buf_pos) as usize;
        if at + sluice_records::HEADER_LEN > buf.len() {
            let want = SCAN_CHUNK_BYTES.min((file_len - pos) as usize);
            buf = file
                .read_at(pos, want)
                .await
                .map_err(|e| LogError::io("read", path, &e))?;
            buf_pos = pos;
            if buf.len() < sluice_records::HEADER_LEN {
                stopped = Some(format!(
                    "{} trailing bytes are shorter than a batch header",
                    buf.len()
                ));
                break;
            }
            continue;
        }
        let header = match BatchHeader::parse(&buf[at..]) {
            Ok(h) => h,
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        };
        let len = header.total_len();
        if len < sluice_records::HEADER_LEN || pos + len as u64 > file_len {
            stopped = Some(format!(
                "torn batch: length {len} at byte {pos} runs past the end ({file_len})"
            ));
            break;
        }
        if at + len > buf.len() {
            buf = file
                .read_at(
                    pos,
                    len.max(SCAN_CHUNK_BYTES).min((file_len - pos) as usize),
                )
                .await
                .map_err(|e| LogError::io("read", path, &e))?;
            buf_pos = pos;
            continue;
        }
        let batch = &buf[at..at + len];
        if let Err(reason) = crate::log::verify_crc(batch) {
            stopped = Some(reason);
            break;
        }
        if header.base_offset < scratch.next_offset || header.last_offset() < header.base_offset {
            stopped = Some(format!(
                "offsets out of order: batch {}..={} after {}",
                header.base_offset,
                header.last_offset(),
                scratch.next_offset - 1
            ));
            break;
        }
        scratch.note_batch(
            header.base_offset,
            header.last_offset(),
            header.max_timestamp,
            pos,
            len as u64,
            index_interval_bytes,
        );
        on_batch(&header);
        pos += len as u64;
    }
    let mut dropped_nonzero = false;
    if pos < file_len {
        // Preallocated space reads as zeros: only non-zero bytes are a torn or corrupt tail.
        let rest = file
            .read_at(pos, (file_len - pos).min(SCAN_CHUNK_BYTES as u64) as usize)
            .await
            .map_err(|e| LogError::io("read", path, &e))?;
        dropped_nonzero = rest.iter().any(|&b| b != 0);
    }
    Ok(Scan {
        valid_len: pos,
        next_offset: scratch.next_offset,
        max_timestamp: scratch.max_timestamp,
        index: scratch.index,
        time_index: scratch.time_index,
        stopped: if dropped_nonzero { stopped } else { None },
    })
}

fn record_producer(states: &mut ProducerStates, h: &BatchHeader) {
    if h.producer_id >= 0 && h.base_sequence >= 0 {
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            // The last offset delta, not the record count: a compacted batch
            // keeps its sequence range with fewer records.
            last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        states.record(h.producer_id, h.producer_epoch, meta, h.max_timestamp);
    }
}

/// Opens (or creates) the log in `dir`, recovering from a crash if needed.
pub async fn open<S: Storage>(
    storage: S,
    dir: PathBuf,
    config: LogConfig,
    budget: CacheBudget,
    now_ms: i64,
) -> Result<PartitionLog<S>, LogError> {
    storage
        .create_dir_all(&dir)
        .await
        .map_err(|e| LogError::io("create dir", &dir, &e))?;
    crate::cleaner::recover_swap(&storage, &dir).await?;
    let first_dirty_offset = crate::cleaner::read_checkpoint(&storage, &dir).await?;
    let names = storage
        .list_dir(&dir)
        .await
        .map_err(|e| LogError::io("list", &dir, &e))?;
    let mut bases = Vec::new();
    let mut snapshots = Vec::new();
    for name in &names {
        if let Some(b) = parse_file_name(name, "log") {
            bases.push(b);
        } else if let Some(o) = parse_file_name(name, "snapshot") {
            snapshots.push(o);
        } else if name.ends_with(".tmp") {
            // A crash during an atomic write: the old file (if any) is intact.
            let p = dir.join(name);
            storage
                .remove_file(&p)
                .await
                .map_err(|e| LogError::io("remove", &p, &e))?;
        } else if parse_file_name(name, "index").is_none()
            && parse_file_name(name, "timeindex").is_none()
            && name != CLEAN_SHUTDOWN
            && name != LOG_START_CHECKPOINT
            && name != LEADER_EPOCH_CHECKPOINT
            && name != HIGH_WATERMARK_CHECKPOINT
            && !crate::cleaner::is_cleaner_file(name)
        {
            tracing::warn!(file = %dir.join(name).display(), "ignoring a foreign file in a partition directory");
        }
    }
    bases.sort_unstable();
    snapshots.sort_unstable();

    let clean_path = dir.join(CLEAN_SHUTDOWN);
    let clean = read_file(&storage, &clean_path)
        .await
        .map_err(|e| LogError::io("read", &clean_path, &e))?
        .and_then(|d| check_crc(&d).and_then(read_i64s::<4>));
    if names.iter().any(|n| n == CLEAN_SHUTDOWN) {
        // From now on a crash must be recovered by a scan.
        storage
            .remove_file(&clean_path)
            .await
            .map_err(|e| LogError::io("remove", &clean_path, &e))?;
        storage
            .sync_dir(&dir)
            .await
            .map_err(|e| LogError::io("sync dir", &dir, &e))?;
    }
    let start_path = dir.join(LOG_START_CHECKPOINT);
    let checkpoint_start = read_file(&storage, &start_path)
        .await
        .map_err(|e| LogError::io("read", &start_path, &e))?
        .and_then(|d| check_crc(&d).and_then(read_i64s::<1>))
        .map(|[o]| o);

    let epochs_path = dir.join(LEADER_EPOCH_CHECKPOINT);
    let mut epochs = match read_file(&storage, &epochs_path)
        .await
        .map_err(|e| LogError::io("read", &epochs_path, &e))?
    {
        Some(data) => match decode_leader_epochs(&data) {
            Some(entries) => entries,
            None => {
                tracing::warn!(file = %epochs_path.display(), "unreadable leader-epoch checkpoint; rebuilding what the scanned segments hold");
                Vec::new()
            }
        },
        None => Vec::new(),
    };

    let hw_path = dir.join(HIGH_WATERMARK_CHECKPOINT);
    let checkpoint_hw = read_file(&storage, &hw_path)
        .await
        .map_err(|e| LogError::io("read", &hw_path, &e))?
        .and_then(|d| check_crc(&d).and_then(read_i64s::<1>))
        .map(|[o]| o);

    let mut log = PartitionLog::empty(storage.clone(), dir.clone(), config, budget);
    log.first_dirty_offset = first_dirty_offset;
    log.high_watermark_checkpoint = checkpoint_hw;
    log.high_watermark_written = checkpoint_hw;
    if bases.is_empty() {
        let base = checkpoint_start.unwrap_or(0).max(0);
        log.segments.insert(base, Segment::new(&dir, base, now_ms));
        log.log_start_offset = base;
        log.next_offset = base;
        log.written_offset = base;
        log.durable_offset = base;
        log.visible_offset = base;
        log.last_sync_ms = now_ms;
        epochs.retain(|&(_, start)| start < base);
        log.leader_epoch_cache = epochs;
        return Ok(log);
    }

    // Producer state: the newest snapshot at or below the active segment's base,
    // then the batches of every segment from there on.
    let active_base = *bases.last().expect("non-empty");
    let snapshot = snapshots.iter().rev().find(|&&o| o <= active_base).copied();
    let mut producers = ProducerStates::default();
    let mut replay_from = bases[0];
    if let Some(o) = snapshot {
        let p = dir.join(file_name(o, "snapshot"));
        let data = read_file(&storage, &p)
            .await
            .map_err(|e| LogError::io("read", &p, &e))?;
        match data
            .as_deref()
            .and_then(check_crc)
            .and_then(ProducerStates::decode)
        {
            Some(states) => {
                producers = states;
                replay_from = o;
            }
            None => {
                tracing::warn!(file = %p.display(), "unreadable producer snapshot; rebuilding from the log")
            }
        }
    }

    let interval = log.config.index_interval_bytes;
    let mut segments = BTreeMap::new();
    // Epochs of the batches scanned (the segments recovery reads): they fill
    // in what the checkpoint missed (a crash before it was written).
    let mut scanned_epochs: Vec<(i32, i64)> = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(file_name(base, "log"));
        let file = storage
            .open(&path)
            .await
            .map_err(|e| LogError::io("open", &path, &e))?;
        let file_len = file
            .size()
            .await
            .map_err(|e| LogError::io("stat", &path, &e))?;
        let mut is_active = i + 1 == bases.len();
        let mut seg: Segment<S::File> = Segment::new(&dir, base, now_ms);
        let trusted = if is_active {
            // Trusted only if nothing was written after the clean close (which trimmed
            // the file to its logical size).
            clean.filter(|&[b, size, ..]| b == base && size as u64 == file_len)
        } else {
            Some([base, file_len as i64, bases[i + 1], -1])
        };
        let loaded = match trusted {
            Some([_, size, next, _]) => load_indexes(&storage, &seg, size as u64)
                .await
                .map(|(ix, tix)| (size as u64, next, ix, tix)),
            None => None,
        };
        match loaded {
            Some((size, next, index, time_index)) => {
                seg.size = size;
                seg.next_offset = next;
                seg.max_timestamp = time_index.last().map_or(-1, |(t, _)| t);
                seg.index = index;
                seg.time_index = time_index;
                if next > replay_from {
                    scan_segment(&file, &path, base, interval, |h| {
                        if h.base_offset >= replay_from {
                            record_producer(&mut producers, h);
                        }
                        note_epoch(&mut scanned_epochs, h);
                    })
                    .await?;
                }
            }
            _ => {
                let scan = scan_segment(&file, &path, base, interval, |h| {
                    if h.base_offset >= replay_from {
                        record_producer(&mut producers, h);
                    }
                    note_epoch(&mut scanned_epochs, h);
                })
                .await?;
                if let Some(reason) = &scan.stopped {
                    tracing::warn!(
                        file = %path.display(),
                        position = scan.valid_len,
                        bytes_dropped = file_len - scan.valid_len,
                        %reason,
                        "truncating a torn or corrupt tail"
                    );
                }
                if !is_active {
                    tracing::info!(file = %path.display(), "rebuilt the indexes of a sealed segment");
                }
                // A rolled segment whose sealing flush never completed (its
                // indexes are missing, its file was not trimmed) and whose
                // data stops short of the next segment: that flush failed, so
                // nothing past the torn point, in this segment or any later
                // one, was acknowledged. It becomes the active segment and the
                // later ones go; keeping them would leave offsets that no
                // batch holds, and a consumer there would read nothing forever.
                if !is_active && scan.valid_len < file_len && scan.next_offset < bases[i + 1] {
                    tracing::warn!(
                        file = %path.display(),
                        next_offset = scan.next_offset,
                        later_segments = bases.len() - i - 1,
                        "an unfinished seal: dropping the later segments"
                    );
                    is_active = true;
                    for &later in bases[i + 1..].iter().rev() {
                        for ext in ["log", "index", "timeindex"] {
                            let p = dir.join(file_name(later, ext));
                            match storage.remove_file(&p).await {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(e) => return Err(LogError::io("remove", &p, &e)),
                            }
                        }
                    }
                    storage
                        .sync_dir(&dir)
                        .await
                        .map_err(|e| LogError::io("sync dir", &dir, &e))?;
                }
                seg.size = scan.valid_len;
                seg.next_offset = if is_active {
                    scan.next_offset
                } else {
                    bases[i + 1].max(scan.next_offset)
                };
                seg.max_timestamp = scan.max_timestamp;
                seg.index = scan.index;
                seg.time_index = scan.time_index;
                if file_len != scan.valid_len {
                    file.truncate(scan.valid_len)
                        .await
                        .map_err(|e| LogError::io("truncate", &path, &e))?;
                }
            }
        }
        if is_active {
            // What a killed process left may not be durable yet: make it so before
            // anyone reads it (visibility follows durability).
            file.fdatasync()
                .await
                .map_err(|e| LogError::io("fdatasync", &path, &e))?;
            seg.written = seg.size;
            seg.allocated = file_len.max(seg.size);
            let tail_start = crate::storage::align_down(seg.size);
            seg.tail_block = file
                .read_at(tail_start, (seg.size - tail_start) as usize)
                .await
                .map_err(|e| LogError::io("read", &path, &e))?
                .to_vec();
            if seg.tail_block.len() as u64 != seg.size - tail_start {
                return Err(LogError::Corrupt {
                    path,
                    position: tail_start,
                    reason: "short read of the tail block".into(),
                });
            }
            seg.state = SegmentState::Active;
        } else {
            seg.written = seg.size;
            seg.state = SegmentState::Sealed;
        }
        seg.file = Some(Rc::new(file));
        segments.insert(base, seg);
        if is_active {
            break;
        }
    }
    let next = segments.values().next_back().map_or(0, |s| s.next_offset);
    let first = bases[0];
    log.segments = segments;
    log.producers = producers;
    log.log_start_offset = checkpoint_start.unwrap_or(first).clamp(first, next);
    if checkpoint_start.is_some_and(|c| c != log.log_start_offset) {
        // A power loss took back data past the checkpointed start: record the
        // start in force, or the stale one returns once offsets grow past it.
        let body = with_crc(&i64s_body(&[log.log_start_offset]));
        write_file_atomic(&storage, &start_path, &body)
            .await
            .map_err(|e| LogError::io("write", &start_path, &e))?;
    }
    log.next_offset = next;
    // Batches past the recovered end are gone, and so are their epochs.
    epochs.retain(|&(_, start)| start < next);
    scanned_epochs.retain(|&(_, start)| start < next);
    let from_checkpoint = epochs.len();
    for (e, start) in scanned_epochs {
        if epochs.last().is_none_or(|&(last, _)| last < e) {
            epochs.push((e, start));
        }
    }
    log.leader_epochs_dirty = epochs.len() != from_checkpoint;
    log.leader_epoch_cache = epochs;
    log.first_dirty_offset = log.first_dirty_offset.min(next);
    log.written_offset = next;
    log.durable_offset = next;
    log.visible_offset = next;
    log.last_sync_ms = now_ms;
    let expiration = log.config.producer_id_expiration_ms;
    log.producers.expire(now_ms, expiration);
    for &o in &snapshots {
        if Some(o) != snapshot && snapshot.is_some_and(|s| o < s) {
            let p = dir.join(file_name(o, "snapshot"));
            storage
                .remove_file(&p)
                .await
                .map_err(|e| LogError::io("remove", &p, &e))?;
        }
    }
    Ok(log)
}

async fn load_indexes<S: Storage, F: StorageFile>(
    storage: &S,
    seg: &Segment<F>,
    size: u64,
) -> Option<(OffsetIndex, TimeIndex)> {
    let index = read_file(storage, &seg.index_path()).await.ok()??;
    let time_index = read_file(storage, &seg.time_index_path()).await.ok()??;
    Some((
        OffsetIndex::decode(&index, size.max(1))?,
        TimeIndex::decode(&time_index)?,
    ))
}

/// Flushes and syncs everything, writes the active segment's indexes and a
/// producer snapshot, and marks the shutdown clean so the next open skips the scan.
pub async fn close<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    now_ms: i64,
) -> Result<(), LogError> {
    loop {
        if log.borrow().poisoned.is_some() {
            return Err(LogError::Poisoned(
                log.borrow().poisoned.clone().unwrap_or_default(),
            ));
        }
        // Jobs another task started must end first: they may hold the data
        // (or the file creation) this close has to sync.
        let busy = log.borrow().flush_busy();
        if busy {
            let idle = log.borrow_mut().flush_finished();
            idle.await;
            continue;
        }
        if !crate::log::flush(log, now_ms, true).await {
            break;
        }
    }
    let (storage, dir, active, producers_body, marker, active_file) = {
        let mut l = log.borrow_mut();
        l.closed = true;
        if l.flush_busy() {
            return Err(LogError::InvalidArgument(
                "close while a flush is in flight".into(),
            ));
        }
        let seg = l
            .segments
            .values()
            .next_back()
            .expect("a log always has a segment");
        let marker = with_crc(&i64s_body(&[
            seg.base_offset,
            seg.size as i64,
            seg.next_offset,
            seg.max_timestamp,
        ]));
        let active = (
            seg.index_path(),
            seg.index.encode(),
            seg.time_index_path(),
            seg.time_index.encode(),
        );
        let active_file = seg.file.clone().map(|f| (f, seg.size, seg.path.clone()));
        (
            l.storage.clone(),
            l.dir.clone(),
            active,
            with_crc(&l.producers.encode()),
            marker,
            active_file,
        )
    };
    // Drop the preallocated space past the logical end, so the marker's size is
    // the file's size: anything appended later makes them differ, and forces a scan.
    if let Some((file, size, path)) = active_file {
        file.truncate(size)
            .await
            .map_err(|e| LogError::io("truncate", &path, &e))?;
        file.fdatasync()
            .await
            .map_err(|e| LogError::io("fdatasync", &path, &e))?;
    }
    let next = log.borrow().next_offset;
    let io = |p: &Path, e: std::io::Error| LogError::io("write", p, &e);
    write_file_atomic(&storage, &active.0, &active.1)
        .await
        .map_err(|e| io(&active.0, e))?;
    write_file_atomic(&storage, &active.2, &active.3)
        .await
        .map_err(|e| io(&active.2, e))?;
    let snap = dir.join(file_name(next, "snapshot"));
    write_file_atomic(&storage, &snap, &producers_body)
        .await
        .map_err(|e| io(&snap, e))?;
    let start = dir.join(LOG_START_CHECKPOINT);
    let start_body = with_crc(&i64s_body(&[log.borrow().log_start_offset]));
    write_file_atomic(&storage, &start, &start_body)
        .await
        .map_err(|e| io(&start, e))?;
    checkpoint_leader_epochs(log).await?;
    let clean = dir.join(CLEAN_SHUTDOWN);
    write_file_atomic(&storage, &clean, &marker)
        .await
        .map_err(|e| io(&clean, e))?;
    Ok(())
}

fn note_epoch(epochs: &mut Vec<(i32, i64)>, h: &BatchHeader) {
    if epochs
        .last()
        .is_none_or(|&(e, _)| e < h.partition_leader_epoch)
    {
        epochs.push((h.partition_leader_epoch, h.base_offset));
    }
}

/// Kafka's `leader-epoch-checkpoint` text.
pub fn encode_leader_epochs(entries: &[(i32, i64)]) -> Vec<u8> {
    let mut out = format!("0\n{}\n", entries.len());
    for (e, start) in entries {
        out.push_str(&format!("{e} {start}\n"));
    }
    out.into_bytes()
}

/// Parses a `leader-epoch-checkpoint`; `None` if it is not one (or its
/// epochs or offsets do not increase).
pub fn decode_leader_epochs(data: &[u8]) -> Option<Vec<(i32, i64)>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out: Vec<(i32, i64)> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let e: i32 = parts.next()?.parse().ok()?;
        let start: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || out.last().is_some_and(|&(pe, ps)| pe >= e || ps > start) {
            return None;
        }
        out.push((e, start));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(out)
}

/// Writes the leader-epoch cache to `leader-epoch-checkpoint` (atomically)
/// if it changed since the last write. Replication calls it when a new epoch
/// starts, before acknowledging that epoch's first batch; truncation calls it
/// after the cut. Recovery loads it and adds the epochs of the batches it
/// scans.
pub async fn checkpoint_leader_epochs<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
) -> Result<(), LogError> {
    let (storage, path, body) = {
        let mut l = log.borrow_mut();
        if !l.leader_epochs_dirty {
            return Ok(());
        }
        l.leader_epochs_dirty = false;
        (
            l.storage.clone(),
            l.dir.join(LEADER_EPOCH_CHECKPOINT),
            encode_leader_epochs(&l.leader_epoch_cache),
        )
    };
    let written = write_file_atomic(&storage, &path, &body).await;
    if let Err(e) = written {
        log.borrow_mut().leader_epochs_dirty = true;
        return Err(LogError::io("write", &path, &e));
    }
    Ok(())
}

/// Persists the log start offset (after DeleteRecords).
pub async fn checkpoint_log_start<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
) -> Result<(), LogError> {
    let (storage, path, body) = {
        let l = log.borrow();
        (
            l.storage.clone(),
            l.dir.join(LOG_START_CHECKPOINT),
            with_crc(&i64s_body(&[l.log_start_offset])),
        )
    };
    write_file_atomic(&storage, &path, &body)
        .await
        .map_err(|e| LogError::io("write", &path, &e))
}

/// Writes `high_watermark` to the partition's `high-watermark-checkpoint`
/// (atomically) unless it is what the file already holds; returns whether
/// it wrote. Replication calls it now and then and at a clean close, so a
/// restarted replica starts from a high watermark instead of knowing none
/// ([`PartitionLog::checkpointed_high_watermark`]).
pub async fn checkpoint_high_watermark<S: Storage>(
    log: &RefCell<PartitionLog<S>>,
    high_watermark: i64,
) -> Result<bool, LogError> {
    let (storage, path, body) = {
        let l = log.borrow();
        if l.high_watermark_written == Some(high_watermark) {
            return Ok(false);
        }
        (
            l.storage.clone(),
            l.dir.join(HIGH_WATERMARK_CHECKPOINT),
            with_crc(&i64s_body(&[high_watermark])),
        )
    };
    write_file_atomic(&storage, &path, &body)
        .await
        .map_err(|e| LogError::io("write", &path, &e))?;
    log.borrow_mut().high_watermark_written = Some(high_watermark);
    Ok(true)
}

/// Deletes a log and all its files (topic deletion).
pub async fn delete<S: Storage>(storage: &S, dir: &Path) -> Result<(), LogError> {
    storage
        .remove_dir_all(dir)
        .await
        .map_err(|e| LogError::io("remove dir", dir, &e))
}
