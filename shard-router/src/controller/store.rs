//! Durable storage of the controller's Raft state, under
//! `<data dir>/controller/`:
//!
//! - `raft.log`: an append-only file of records `[len u32 BE][crc32 u32 BE]
//!   [JSON]`, each an appended entry, a truncation or a purge. It is fsynced
//!   before openraft is told an append is done. On open the records are
//!   replayed; a torn or corrupt tail (a crash during a write that was never
//!   acknowledged) is cut off and logged. When purges leave the file mostly
//!   dead it is rewritten (temp file, fsync, rename, fsync the directory).
//! - `vote`: the current vote, `[crc32][JSON]`, replaced atomically and
//!   durable before `save_vote` returns.
//! - `snapshot`: the latest state-machine snapshot, `[crc32][JSON]`, replaced
//!   atomically.
//!
//! The state machine itself lives in memory: on start it is the snapshot,
//! and openraft re-applies the committed entries after it.
//!
//! Plain blocking `std::fs` calls: the controller runs on its own thread and
//! nothing else waits on that thread, and the metadata log is small.
//! The `Arc<Mutex>`s here are what openraft's `Send + Sync` storage traits
//! ask for; they are taken only on the controller thread, never on a shard's
//! data path.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::metadata::ClusterMetadata;
use super::{RaftNodeId, Response, TypeConfig};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote";
const SNAPSHOT_FILE: &str = "snapshot";
/// Largest record accepted when reading the log back; a length beyond it is
/// a torn or corrupt tail, not a reason to allocate.
pub const MAX_LOG_RECORD_BYTES: usize = 64 << 20;
/// Rewrite the log file after a purge once it is this large.
const LOG_REWRITE_BYTES: u64 = 4 << 20;
const RECORD_HEADER_BYTES: usize = 8;

type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

fn io_err(e: &io::Error) -> StorageError<RaftNodeId> {
    StorageIOError::write_logs(e).into()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One record of `raft.log`.
#[derive(Serialize, Deserialize)]
enum LogRecord {
    Append(Entry<TypeConfig>),
    /// Entries from this index on were removed (conflict with a new leader).
    Truncate {
        since: u64,
    },
    /// Entries up to this id were removed (covered by a snapshot).
    Purge(LogId<RaftNodeId>),
}

fn encode_record(record: &LogRecord, out: &mut Vec<u8>) -> io::Result<()> {
    let body = serde_json::to_vec(record).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| (l as usize) <= MAX_LOG_RECORD_BYTES)
        .ok_or_else(|| io::Error::other("raft log record too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Records decoded from `bytes`, and the length of the valid prefix.
fn decode_records(bytes: &[u8]) -> (Vec<LogRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= RECORD_HEADER_BYTES {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let len = len as usize;
        let start = at + RECORD_HEADER_BYTES;
        if len > MAX_LOG_RECORD_BYTES || bytes.len() - start < len {
            break;
        }
        let body = &bytes[start..start + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        match serde_json::from_slice(body) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
        at = start + len;
    }
    (records, at)
}

/// `[crc32][body]` written to a temp file, fsynced, renamed over `path`, and
/// the directory fsynced.
fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&crc32fast::hash(body).to_be_bytes())?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The body of a file written by [`write_atomic`]; `None` if absent; an error
/// if its CRC does not match.
fn read_checked(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is truncated", path.display()),
        ));
    }
    let (crc, body) = bytes.split_at(4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} fails its CRC check", path.display()),
        ));
    }
    Ok(Some(body.to_vec()))
}

struct LogInner {
    dir: PathBuf,
    file: File,
    file_bytes: u64,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<RaftNodeId>>,
    vote: Option<Vote<RaftNodeId>>,
}

impl LogInner {
    fn write_records(&mut self, records: &[LogRecord]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            encode_record(r, &mut buf)?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.file_bytes += buf.len() as u64;
        Ok(())
    }

    /// Replace the file by one holding only the live state.
    fn rewrite(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        if let Some(p) = self.last_purged {
            encode_record(&LogRecord::Purge(p), &mut buf)?;
        }
        for e in self.entries.values() {
            encode_record(&LogRecord::Append(e.clone()), &mut buf)?;
        }
        let path = self.dir.join(LOG_FILE);
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&path)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.file_bytes = buf.len() as u64;
        Ok(())
    }
}

/// The Raft log and vote. Cloning gives another handle to the same log
/// (openraft reads through one while it appends through the other).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Open (or create) the log under `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (records, valid) = decode_records(&bytes);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid,
                cut_bytes = bytes.len() - valid,
                "controller log has a torn or corrupt tail; cutting it off"
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        for record in records {
            match record {
                LogRecord::Append(e) => {
                    entries.insert(e.log_id.index, e);
                }
                LogRecord::Truncate { since } => {
                    entries.split_off(&since);
                }
                LogRecord::Purge(id) => {
                    entries = entries.split_off(&(id.index + 1));
                    last_purged = Some(id);
                }
            }
        }
        let vote = match read_checked(&dir.join(VOTE_FILE))? {
            Some(body) => Some(
                serde_json::from_slice(&body)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            ),
            None => None,
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                file_bytes: valid as u64,
                entries,
                last_purged,
                vote,
            })),
        })
    }

    /// Number of entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let inner = lock(&self.inner);
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = lock(&self.inner);
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StorageResult<()> {
        let mut inner = lock(&self.inner);
        let body = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_atomic(&inner.dir.join(VOTE_FILE), &body)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        Ok(lock(&self.inner).vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = lock(&self.inner);
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let records: Vec<LogRecord> = entries.iter().cloned().map(LogRecord::Append).collect();
        // The entries count as written only once fsynced: report the result
        // to openraft either way, and fail the call too on error.
        let result = inner.write_records(&records);
        if result.is_ok() {
            for e in entries {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        let err = result.as_ref().err().map(io_err);
        callback.log_io_completed(result);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        let mut inner = lock(&self.inner);
        inner
            .write_records(&[LogRecord::Truncate {
                since: log_id.index,
            }])
            .map_err(|e| io_err(&e))?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        let mut inner = lock(&self.inner);
        inner
            .write_records(&[LogRecord::Purge(log_id)])
            .map_err(|e| io_err(&e))?;
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        if inner.file_bytes > LOG_REWRITE_BYTES {
            inner.rewrite().map_err(|e| io_err(&e))?;
        }
        Ok(())
    }
}

/// What `snapshot` holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<RaftNodeId, openraft::BasicNode>,
    metadata: ClusterMetadata,
}

struct StateInner {
    dir: PathBuf,
    metadata: ClusterMetadata,
    last_applied: Option<LogId<RaftNodeId>>,
    last_membership: StoredMembership<RaftNodeId, openraft::BasicNode>,
    snapshot: Option<(SnapshotMeta<RaftNodeId, openraft::BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine: [`ClusterMetadata`] plus what openraft needs to know
/// about it. Every applied change is published to `published` as a new
/// `Arc` (whole table, never patched in place).
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<StateInner>>,
    published: Arc<watch::Sender<Arc<ClusterMetadata>>>,
}

impl StateMachineStore {
    /// Open the state machine under `dir`: the latest snapshot, if any.
    pub fn open(
        dir: &Path,
        published: Arc<watch::Sender<Arc<ClusterMetadata>>>,
    ) -> io::Result<StateMachineStore> {
        fs::create_dir_all(dir)?;
        let mut inner = StateInner {
            dir: dir.to_path_buf(),
            metadata: ClusterMetadata::new(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        if let Some(body) = read_checked(&dir.join(SNAPSHOT_FILE))? {
            let file: SnapshotFile = serde_json::from_slice(&body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let data = serde_json::to_vec(&file.metadata).map_err(io::Error::other)?;
            inner.last_applied = file.meta.last_log_id;
            inner.last_membership = file.meta.last_membership.clone();
            inner.metadata = file.metadata;
            inner.snapshot = Some((file.meta, data));
        }
        published.send_replace(Arc::new(inner.metadata.clone()));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(inner)),
            published,
        })
    }

    fn save_snapshot(
        inner: &mut StateInner,
        meta: SnapshotMeta<RaftNodeId, openraft::BasicNode>,
        metadata: &ClusterMetadata,
    ) -> io::Result<Vec<u8>> {
        let file = SnapshotFile {
            meta: meta.clone(),
            metadata: metadata.clone(),
        };
        let body = serde_json::to_vec(&file).map_err(io::Error::other)?;
        write_atomic(&inner.dir.join(SNAPSHOT_FILE), &body)?;
        let data = serde_json::to_vec(metadata).map_err(io::Error::other)?;
        inner.snapshot = Some((meta, data.clone()));
        Ok(data)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let mut inner = lock(&self.inner);
        inner.snapshots_built += 1;
        let snapshot_id = match inner.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, inner.snapshots_built),
            None => format!("none-{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            snapshot_id,
        };
        let metadata = inner.metadata.clone();
        let data = Self::save_snapshot(&mut inner, meta.clone(), &metadata)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<RaftNodeId>>,
        StoredMembership<RaftNodeId, openraft::BasicNode>,
    )> {
        let inner = lock(&self.inner);
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = lock(&self.inner);
        let mut responses = Vec::new();
        let mut changed = false;
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(None),
                EntryPayload::Normal(command) => {
                    let result = inner.metadata.apply(&command);
                    changed |= result.is_ok();
                    responses.push(Some(result));
                }
                EntryPayload::Membership(m) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    responses.push(None);
                }
            }
        }
        if changed {
            self.published
                .send_replace(Arc::new(inner.metadata.clone()));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let metadata: ClusterMetadata = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut inner = lock(&self.inner);
        Self::save_snapshot(&mut inner, meta.clone(), &metadata)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        inner.metadata = metadata;
        self.published
            .send_replace(Arc::new(inner.metadata.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let inner = lock(&self.inner);
        Ok(inner.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::metadata::Command;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command::DeleteTopic {
                name: format!("t{index}"),
            }),
        }
    }

    fn append_raw(store: &LogStore, entries: Vec<Entry<TypeConfig>>) {
        let mut inner = lock(&store.inner);
        let records: Vec<LogRecord> = entries.iter().cloned().map(LogRecord::Append).collect();
        inner.write_records(&records).expect("write");
        for e in entries {
            inner.entries.insert(e.log_id.index, e);
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        lock(&store.inner).entries.keys().copied().collect()
    }

    #[test]
    fn log_survives_reopen_with_truncate_and_purge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        append_raw(&store, (1..=6).map(|i| entry(1, i)).collect());
        {
            let mut inner = lock(&store.inner);
            inner
                .write_records(&[
                    LogRecord::Truncate { since: 5 },
                    LogRecord::Purge(LogId::new(CommittedLeaderId::new(1, 1), 2)),
                ])
                .expect("write");
        }
        append_raw(&store, vec![entry(2, 5)]);
        drop(store);
        let reopened = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&reopened), vec![3, 4, 5]);
        let inner = lock(&reopened.inner);
        assert_eq!(inner.entries[&5].log_id.leader_id.term, 2);
        assert_eq!(inner.last_purged.map(|l| l.index), Some(2));
    }

    #[test]
    fn torn_tail_is_cut_at_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        append_raw(&store, vec![entry(1, 1), entry(1, 2)]);
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let full = fs::read(&path).expect("read");
        let (_, first_len) = decode_records(&full[..full.len() - 1]);
        assert!(first_len > 0 && first_len < full.len());
        for cut in 0..full.len() {
            fs::write(&path, &full[..cut]).expect("write");
            let store = LogStore::open(dir.path()).expect("reopen");
            let want: Vec<u64> = if cut >= first_len { vec![1] } else { vec![] };
            assert_eq!(indexes(&store), want, "cut at {cut}");
            drop(store);
            let len = fs::metadata(&path).expect("stat").len() as usize;
            assert_eq!(len, if cut >= first_len { first_len } else { 0 });
        }
    }

    #[test]
    fn corrupt_record_ends_the_log_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        append_raw(&store, vec![entry(1, 1), entry(1, 2), entry(1, 3)]);
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let (_, first_len) = decode_records(&bytes[..bytes.len() / 2]);
        bytes[first_len + RECORD_HEADER_BYTES + 3] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![1]);
    }

    #[test]
    fn huge_length_prefix_is_a_torn_tail_not_an_allocation() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        bytes.extend_from_slice(b"{}");
        let (records, valid) = decode_records(&bytes);
        assert!(records.is_empty());
        assert_eq!(valid, 0);
    }

    #[test]
    fn vote_and_snapshot_files_detect_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(VOTE_FILE);
        write_atomic(&path, b"{\"x\":1}").expect("write");
        assert_eq!(
            read_checked(&path).expect("read"),
            Some(b"{\"x\":1}".to_vec())
        );
        let mut bytes = fs::read(&path).expect("read");
        bytes[5] ^= 1;
        fs::write(&path, &bytes).expect("write");
        assert_eq!(
            read_checked(&path).map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidData)
        );
        fs::write(&path, [1, 2]).expect("write");
        assert!(read_checked(&path).is_err());
        assert_eq!(
            read_checked(&dir.path().join("absent")).expect("absent is fine"),
            None
        );
    }
}
