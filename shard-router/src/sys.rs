//! Thin wrappers over the few Linux calls the runtime needs before any
//! executor exists. This is the only module allowed to use `unsafe`; every
//! block is a plain libc call on memory owned by the caller.
#![allow(unsafe_code)]

use std::io;

/// Soft and hard `RLIMIT_MEMLOCK`, in bytes; `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockLimit {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
}

fn from_rlim(v: libc::rlim_t) -> Option<u64> {
    if v == libc::RLIM_INFINITY {
        None
    } else {
        Some(v)
    }
}

fn to_rlim(v: Option<u64>) -> libc::rlim_t {
    v.unwrap_or(libc::RLIM_INFINITY)
}

pub fn memlock_limit() -> io::Result<MemlockLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(MemlockLimit {
        soft_bytes: from_rlim(lim.rlim_cur),
        hard_bytes: from_rlim(lim.rlim_max),
    })
}

pub fn set_memlock_limit(limit: MemlockLimit) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: to_rlim(limit.soft_bytes),
        rlim_max: to_rlim(limit.hard_bytes),
    };
    // SAFETY: `lim` is a valid rlimit read by the kernel only.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// CPUs the calling thread may run on (what `taskset` sets), ascending.
pub fn thread_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and its exact size is passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max_cpus = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set within its bounds (cpu < max_cpus).
    Ok((0..max_cpus)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Restricts the calling thread to `cpus` (tests use it to act like `taskset`).
#[cfg(test)]
pub fn set_thread_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes within the set's bounds for cpu < CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid set of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates and closes a one-entry io_uring: the cheapest way to learn whether
/// the kernel (or a seccomp filter) lets this process use io_uring at all.
pub fn probe_io_uring() -> io::Result<()> {
    // struct io_uring_params is 120 bytes of integers; zero means defaults.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup(entries, params) writes at most
    // sizeof(io_uring_params) = 120 bytes into `params`, which is 120 bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1 as libc::c_uint,
            params.as_mut_ptr(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the ring descriptor we just created and own.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Hands a bound, listening std socket to glommio (which has no safe
/// conversion; `TcpListener::bind` would set `SO_REUSEPORT`).
pub(crate) fn glommio_listener(listener: std::net::TcpListener) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket that nothing else owns
    // (`into_raw_fd` gave up ownership).
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}
