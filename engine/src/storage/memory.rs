//! An in-memory disk for tests, with faults: a crash at any operation (with the
//! write in progress torn), a failing `fdatasync`, a full disk.
//!
//! Each file keeps two images: what reads see (`data`, everything written) and
//! what the last `fdatasync` made durable (`durable`). After a crash the test
//! reopens from [`MemStorage::after_crash`]: a killed process keeps every
//! completed write (direct I/O has left the process), a power loss keeps only
//! the durable images. Directory operations are durable at once (a simplification
//! a journaling filesystem nearly gives; `sync_dir` is still called where needed).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::{Storage, StorageFile, BLOCK_SIZE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The process died: completed writes survive, nothing else.
    ProcessKill,
    /// The machine lost power: only what `fdatasync` made durable survives.
    PowerLoss,
}

#[derive(Default)]
struct FileData {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Bytes `read_at` returned from this file.
    bytes_read: u64,
}

#[derive(Default)]
struct Fs {
    files: BTreeMap<PathBuf, Rc<RefCell<FileData>>>,
    dirs: BTreeSet<PathBuf>,
    /// Counts every write, sync, truncate and preallocate.
    ops: u64,
    /// The operation number at which the machine "crashes": that write is torn
    /// (only its first half is applied) and every later operation fails.
    crash_at_op: Option<u64>,
    crashed: bool,
    /// Every `fdatasync` fails while this is set.
    fail_fsync: bool,
    /// Total bytes the disk holds (sum of file lengths); writes past it fail with ENOSPC.
    capacity_bytes: Option<u64>,
    /// Directory operations (create, rename, remove, sync_dir) count as
    /// operations too, so a crash can fall between two renames.
    count_dir_ops: bool,
    /// Writes starting below this position stay in flight (parked before they
    /// land) until [`MemStorage::release_writes`]: tests order completions.
    hold_writes_below: Option<u64>,
    /// Bumped by every release; a held write lands once it moved.
    releases: u64,
    held: Vec<std::task::Waker>,
}

impl Fs {
    fn used_bytes(&self) -> u64 {
        self.files
            .values()
            .map(|f| f.borrow().data.len() as u64)
            .sum()
    }

    /// Accounts one mutating operation; `Err` once crashed.
    fn tick(&mut self) -> io::Result<bool> {
        if self.crashed {
            return Err(crashed());
        }
        self.ops += 1;
        if self.crash_at_op == Some(self.ops) {
            self.crashed = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// Accounts a directory operation when those are counted; `Err` when it
    /// is the crash point (the operation does not happen) or after.
    fn tick_dir(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed());
        }
        if self.count_dir_ops && self.tick()? {
            return Err(crashed());
        }
        Ok(())
    }
}

fn crashed() -> io::Error {
    io::Error::other("injected crash: the storage is gone")
}

/// The in-memory disk. Cheap to clone; clones share the files.
#[derive(Clone, Default)]
pub struct MemStorage {
    fs: Rc<RefCell<Fs>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Crash when the `n`-th mutating operation (1-based) runs.
    pub fn crash_at_op(&self, n: u64) {
        self.fs.borrow_mut().crash_at_op = Some(n);
    }

    /// Counts directory operations (create, rename, remove, sync_dir) as
    /// crash points too.
    pub fn count_dir_ops(&self, on: bool) {
        self.fs.borrow_mut().count_dir_ops = on;
    }

    pub fn ops(&self) -> u64 {
        self.fs.borrow().ops
    }

    /// Bytes the reads of the file at `path` have returned so far (what a
    /// recovery costs); 0 for a file that does not exist.
    pub fn bytes_read(&self, path: &Path) -> u64 {
        self.fs
            .borrow()
            .files
            .get(path)
            .map_or(0, |f| f.borrow().bytes_read)
    }

    pub fn has_crashed(&self) -> bool {
        self.fs.borrow().crashed
    }

    pub fn fail_fsync(&self, fail: bool) {
        self.fs.borrow_mut().fail_fsync = fail;
    }

    /// From now on, writes at positions below `limit` stay in flight until
    /// [`MemStorage::release_writes`] (as a slow disk would keep them).
    pub fn hold_writes_below(&self, limit: u64) {
        self.fs.borrow_mut().hold_writes_below = Some(limit);
    }

    /// Lets every held write land, and stops holding new ones.
    pub fn release_writes(&self) {
        let mut fs = self.fs.borrow_mut();
        fs.hold_writes_below = None;
        fs.releases += 1;
        for w in fs.held.drain(..) {
            w.wake();
        }
    }

    pub fn set_capacity(&self, capacity_bytes: Option<u64>) {
        self.fs.borrow_mut().capacity_bytes = capacity_bytes;
    }

    /// A fresh disk holding what survives a crash of `kind` at this moment.
    pub fn after_crash(&self, kind: CrashKind) -> MemStorage {
        let fs = self.fs.borrow();
        let files = fs
            .files
            .iter()
            .map(|(p, f)| {
                let f = f.borrow();
                let image = match kind {
                    CrashKind::ProcessKill => f.data.clone(),
                    CrashKind::PowerLoss => f.durable.clone(),
                };
                let file = FileData {
                    data: image.clone(),
                    durable: image,
                    bytes_read: 0,
                };
                (p.clone(), Rc::new(RefCell::new(file)))
            })
            .collect();
        MemStorage {
            fs: Rc::new(RefCell::new(Fs {
                files,
                dirs: fs.dirs.clone(),
                ..Fs::default()
            })),
        }
    }

    /// Flips one bit of a file, as a failing disk would.
    pub fn flip_bit(&self, path: &Path, byte: usize, bit: u8) -> bool {
        let fs = self.fs.borrow();
        let Some(f) = fs.files.get(path) else {
            return false;
        };
        let mut f = f.borrow_mut();
        match f.data.get_mut(byte) {
            Some(b) => {
                *b ^= 1 << bit;
                if let Some(d) = f.durable.get_mut(byte) {
                    *d ^= 1 << bit;
                }
                true
            }
            None => false,
        }
    }

    /// Replaces a file's content (both images): for tests that plant foreign files.
    pub fn put_file(&self, path: &Path, content: &[u8]) {
        let file = FileData {
            data: content.to_vec(),
            durable: content.to_vec(),
            bytes_read: 0,
        };
        self.fs
            .borrow_mut()
            .files
            .insert(path.to_path_buf(), Rc::new(RefCell::new(file)));
    }

    pub fn file_len(&self, path: &Path) -> Option<usize> {
        self.fs
            .borrow()
            .files
            .get(path)
            .map(|f| f.borrow().data.len())
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.fs.borrow().files.contains_key(path)
    }
}

pub struct MemFile {
    fs: Rc<RefCell<Fs>>,
    data: Rc<RefCell<FileData>>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Storage for MemStorage {
    type File = MemFile;

    async fn open(&self, path: &Path) -> io::Result<MemFile> {
        let fs = self.fs.borrow();
        if fs.crashed {
            return Err(crashed());
        }
        let data = fs.files.get(path).cloned().ok_or_else(|| not_found(path))?;
        Ok(MemFile {
            fs: self.fs.clone(),
            data,
        })
    }

    async fn create(&self, path: &Path) -> io::Result<MemFile> {
        let mut fs = self.fs.borrow_mut();
        fs.tick_dir()?;
        let data = fs.files.entry(path.to_path_buf()).or_default().clone();
        Ok(MemFile {
            fs: self.fs.clone(),
            data,
        })
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.tick_dir()?;
        fs.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.tick_dir()?;
        let f = fs.files.remove(from).ok_or_else(|| not_found(from))?;
        fs.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let fs = self.fs.borrow();
        if !fs.dirs.contains(path) {
            return Err(not_found(path));
        }
        let files = fs.files.keys().filter(|p| p.parent() == Some(path));
        let dirs = fs.dirs.iter().filter(|p| p.parent() == Some(path));
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        if fs.crashed {
            return Err(crashed());
        }
        for p in path.ancestors() {
            fs.dirs.insert(p.to_path_buf());
        }
        Ok(())
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        if fs.crashed {
            return Err(crashed());
        }
        fs.files.retain(|p, _| !p.starts_with(path));
        fs.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    async fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        self.fs.borrow_mut().tick_dir()
    }
}

impl StorageFile for MemFile {
    type Buf = Vec<u8>;

    fn alloc(&self, len_bytes: usize) -> Vec<u8> {
        vec![0; len_bytes]
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        if pos % BLOCK_SIZE != 0 || buf.len() as u64 % BLOCK_SIZE != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let held = {
            let fs = self.fs.borrow();
            fs.hold_writes_below
                .is_some_and(|limit| pos < limit)
                .then_some(fs.releases)
        };
        if let Some(seen) = held {
            std::future::poll_fn(|cx| {
                let mut fs = self.fs.borrow_mut();
                if fs.releases > seen {
                    std::task::Poll::Ready(())
                } else {
                    fs.held.push(cx.waker().clone());
                    std::task::Poll::Pending
                }
            })
            .await;
        }
        let mut fs = self.fs.borrow_mut();
        let end = pos as usize + buf.len();
        if let Some(capacity) = fs.capacity_bytes {
            let grow = end.saturating_sub(self.data.borrow().data.len()) as u64;
            if fs.used_bytes() + grow > capacity {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let torn = fs.tick()?;
        // A torn write lands its first half, block aligned, as a real disk may.
        let len = if torn {
            (buf.len() / 2) & !(BLOCK_SIZE as usize - 1)
        } else {
            buf.len()
        };
        let mut f = self.data.borrow_mut();
        if f.data.len() < pos as usize + len {
            f.data.resize(pos as usize + len, 0);
        }
        f.data[pos as usize..pos as usize + len].copy_from_slice(&buf[..len]);
        if torn {
            return Err(crashed());
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if self.fs.borrow().crashed {
            return Err(crashed());
        }
        let mut f = self.data.borrow_mut();
        let start = (pos as usize).min(f.data.len());
        let end = start.saturating_add(len).min(f.data.len());
        f.bytes_read += (end - start) as u64;
        Ok(Bytes::copy_from_slice(&f.data[start..end]))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        if fs.tick()? {
            return Err(crashed());
        }
        if fs.fail_fsync {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut f = self.data.borrow_mut();
        f.durable = f.data.clone();
        Ok(())
    }

    async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        if fs.tick()? {
            return Err(crashed());
        }
        self.data.borrow_mut().data.resize(len_bytes as usize, 0);
        Ok(())
    }

    async fn preallocate(&self, len_bytes: u64) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        let grow = (len_bytes as usize).saturating_sub(self.data.borrow().data.len()) as u64;
        if let Some(capacity) = fs.capacity_bytes {
            if fs.used_bytes() + grow > capacity {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        if fs.tick()? {
            return Err(crashed());
        }
        let mut f = self.data.borrow_mut();
        if f.data.len() < len_bytes as usize {
            f.data.resize(len_bytes as usize, 0);
        }
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.data.borrow().data.len() as u64)
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
