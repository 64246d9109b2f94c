//! The storage interface the log is written against: the glommio DMA backend
//! (`dma`) in production, an in-memory disk that injects faults (`memory`) in tests.
//!
//! Every write is block aligned: the position and the length of a `write_at` are
//! multiples of [`BLOCK_SIZE`] (O_DIRECT demands it; the memory backend enforces
//! it too, so a misaligned write is caught in tests, not in production).

use std::io;
use std::path::Path;

use bytes::Bytes;

pub mod dma;
pub mod memory;

/// The alignment of every direct-I/O write, in bytes.
pub const BLOCK_SIZE: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(BLOCK_SIZE - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + BLOCK_SIZE - 1)
}

/// A directory tree of files. Futures are `!Send`: each shard drives its own.
#[allow(async_fn_in_trait)]
pub trait Storage: Clone + 'static {
    type File: StorageFile;

    /// Opens an existing file for reading and writing.
    async fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens a file for reading and writing, creating it empty when missing.
    async fn create(&self, path: &Path) -> io::Result<Self::File>;
    async fn remove_file(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// File names (not paths) directly inside `path`.
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals inside `path` durable.
    async fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

#[allow(async_fn_in_trait)]
pub trait StorageFile: 'static {
    /// An aligned buffer that `write_at` takes.
    type Buf: AsRef<[u8]> + AsMut<[u8]>;

    /// A zeroed, aligned buffer of `len_bytes` (a multiple of [`BLOCK_SIZE`]).
    fn alloc(&self, len_bytes: usize) -> Self::Buf;
    /// An aligned buffer of `len_bytes` whose initial content is unspecified:
    /// for callers that overwrite every byte (saves a pass over large buffers).
    fn alloc_for_overwrite(&self, len_bytes: usize) -> Self::Buf {
        self.alloc(len_bytes)
    }
    /// Writes all of `buf` at `pos`; both aligned.
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<()>;
    /// Reads up to `len` bytes at `pos` (no alignment needed); shorter at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    async fn fdatasync(&self) -> io::Result<()>;
    async fn truncate(&self, len_bytes: u64) -> io::Result<()>;
    /// Allocates disk blocks up to `len_bytes` (the file size becomes at least that).
    async fn preallocate(&self, len_bytes: u64) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    async fn close(self) -> io::Result<()>;
}

/// Writes a small file crash-safely: a temporary file, fsync, rename, fsync of
/// the directory. A reader sees the old content or the new, never a mix.
pub async fn write_file_atomic<S: Storage>(
    storage: &S,
    path: &Path,
    content: &[u8],
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = storage.create(&tmp).await?;
    let padded = align_up(content.len() as u64) as usize;
    if padded > 0 {
        let mut buf = file.alloc(padded);
        buf.as_mut()[..content.len()].copy_from_slice(content);
        file.write_at(buf, 0).await?;
    }
    file.truncate(content.len() as u64).await?;
    file.fdatasync().await?;
    file.close().await?;
    storage.rename(&tmp, path).await?;
    match path.parent() {
        Some(dir) => storage.sync_dir(dir).await,
        None => Ok(()),
    }
}

/// Reads a whole small file; `Ok(None)` when it does not exist.
pub async fn read_file<S: Storage>(storage: &S, path: &Path) -> io::Result<Option<Bytes>> {
    let file = match storage.open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.size().await?;
    let data = file.read_at(0, len as usize).await?;
    file.close().await?;
    Ok(Some(data))
}
