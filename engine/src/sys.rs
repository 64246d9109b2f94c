//! Process-wide settings of the platform under the engine. The only module
//! of the engine allowed to use `unsafe`; every block says why it is sound.
#![allow(unsafe_code)]

/// glibc malloc settings for the data path (the broker and the benches):
/// buffers of up to 32 MiB come from the arenas rather than their own
/// `mmap`, and an arena keeps up to 64 MiB of free memory at its top instead
/// of handing it back at every `free`.
/// Without them a 1 MiB read buffer was mapped, faulted in page by page,
/// zeroed by the kernel and unmapped (`madvise(MADV_DONTNEED)` in a shard's
/// arena) on every disk read: a fifth of a shard's CPU in a catch-up read
/// (perf, 2026-12-03). An operator's `MALLOC_MMAP_THRESHOLD_` or
/// `MALLOC_TRIM_THRESHOLD_` wins (glibc read it at start). A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = 64 << 20;
        let set = |name: &str| std::env::var_os(name).is_some();
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before the shards start allocating from their own arenas.
        unsafe {
            if !set("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            }
            if !set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
            }
        }
    }
}
