//! The production backend: glommio `DmaFile`s (O_DIRECT through io_uring).
//! Must run inside a glommio executor.

use std::io;
use std::path::Path;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::{Storage, StorageFile};

/// The marker file [`prime_device`] opens.
pub const DEVICE_PROBE_FILE: &str = ".sluice-device-probe";

/// Works around glommio 0.9's I/O-poll probe (PLATFORM.md): the first `DmaFile`
/// an executor opens on a device decides whether the device is pollable, and an
/// empty file makes it answer wrongly, after which every `read_at` on that device
/// fails with `EOPNOTSUPP`. Call this in each executor, on each data directory's
/// device, before opening any log: it opens a small non-empty marker file in
/// `dir` (created if missing) with a `DmaFile`, so the probe sees data.
/// `dir` must not be a partition directory (the marker would be a foreign file there).
pub async fn prime_device(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(DEVICE_PROBE_FILE);
    let non_empty = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
    if !non_empty {
        // Plain buffered I/O: it must not be the first DmaFile of the device.
        std::fs::write(&path, [b's'; 4096])?;
    }
    let file = OpenOptions::new()
        .read(true)
        .dma_open(&path)
        .await
        .map_err(io::Error::from)?;
    file.close().await.map_err(io::Error::from)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DmaStorage;

pub struct DmaStorageFile {
    file: DmaFile,
}

fn open_options(create: bool) -> OpenOptions {
    // DmaFile::create opens write-only (PLATFORM.md): always ask for read+write.
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(create);
    o
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;

    async fn open(&self, path: &Path) -> io::Result<DmaStorageFile> {
        let file = open_options(false)
            .dma_open(path)
            .await
            .map_err(io::Error::from)?;
        Ok(DmaStorageFile { file })
    }

    async fn create(&self, path: &Path) -> io::Result<DmaStorageFile> {
        let file = open_options(true)
            .dma_open(path)
            .await
            .map_err(io::Error::from)?;
        Ok(DmaStorageFile { file })
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(path).await.map_err(io::Error::from)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(io::Error::from)
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        // Directory listings happen at open and at retention only: a blocking
        // readdir is cheaper than a thread hop.
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let dir = glommio::io::Directory::open(path)
            .await
            .map_err(io::Error::from)?;
        dir.sync().await.map_err(io::Error::from)?;
        dir.close().await.map_err(io::Error::from)
    }
}

impl StorageFile for DmaStorageFile {
    type Buf = DmaBuffer;

    fn alloc(&self, len_bytes: usize) -> DmaBuffer {
        let mut buf = self.file.alloc_dma_buffer(len_bytes);
        buf.as_bytes_mut().fill(0);
        buf
    }

    fn alloc_for_overwrite(&self, len_bytes: usize) -> DmaBuffer {
        // glommio hands out pooled or freshly allocated memory; the caller
        // writes all of it before it reaches the disk.
        self.file.alloc_dma_buffer(len_bytes)
    }

    async fn write_at(&self, buf: DmaBuffer, pos: u64) -> io::Result<()> {
        let len = buf.len();
        let written = self
            .file
            .write_at(buf, pos)
            .await
            .map_err(io::Error::from)?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short direct write: {written} of {len} bytes at {pos}"),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let r = self.file.read_at(pos, len).await.map_err(io::Error::from)?;
        // The read result is an Rc'd slice of a DMA buffer; the log hands bytes to
        // other shards and sockets, so one copy into `Bytes` here.
        Ok(Bytes::copy_from_slice(&r))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(io::Error::from)
    }

    async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        self.file.truncate(len_bytes).await.map_err(io::Error::from)
    }

    async fn preallocate(&self, len_bytes: u64) -> io::Result<()> {
        self.file
            .pre_allocate(len_bytes, false)
            .await
            .map_err(io::Error::from)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(io::Error::from)
    }

    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(io::Error::from)
    }
}
