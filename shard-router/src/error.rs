//! Typed errors of the runtime. Display texts say what is wrong and how to
//! fix it, because they end up in front of an operator at start-up.

use std::net::SocketAddr;

use crate::ids::ShardId;

/// Boxed error a shard's main future may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can stop [`crate::run`]: refusing to start, or a shard
/// failing once running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid runtime configuration: {0}")]
    Config(String),

    #[error(
        "locked-memory limit is {limit_kib} KiB; sluice needs at least {needed_kib} KiB for \
         {shards} shards: run `ulimit -l unlimited` or set LimitMEMLOCK=infinity in the systemd unit"
    )]
    MemlockTooLow {
        limit_kib: u64,
        needed_kib: u64,
        shards: usize,
    },

    #[error(
        "io_memory_bytes = {requested} per shard does not fit the locked-memory limit of \
         {limit_kib} KiB ({shards} shards x 3 rings x io_memory must fit): lower io_memory_bytes \
         to at most {max_fit}, or raise the limit (`ulimit -l unlimited`, LimitMEMLOCK=infinity)"
    )]
    IoMemoryTooLarge {
        requested: usize,
        max_fit: usize,
        limit_kib: u64,
        shards: usize,
    },

    #[error("cannot read or change RLIMIT_MEMLOCK: {0}")]
    Rlimit(std::io::Error),

    #[error(
        "io_uring is disabled on this host (/proc/sys/kernel/io_uring_disabled = 2): set it to 0 \
         with `sysctl kernel.io_uring_disabled=0`"
    )]
    IoUringDisabled,

    #[error(
        "io_uring is not available ({0}): sluice needs Linux >= 5.8 with io_uring enabled; in a \
         container, allow the io_uring_setup/io_uring_enter/io_uring_register syscalls in the \
         seccomp profile; check /proc/sys/kernel/io_uring_disabled"
    )]
    IoUringUnavailable(std::io::Error),

    #[error("cannot determine the CPUs this process may use: {0}")]
    Affinity(std::io::Error),

    #[error("{shard} (CPU {cpu}) failed to start its executor: {reason}")]
    ExecutorStart {
        shard: ShardId,
        cpu: usize,
        reason: String,
    },

    #[error("cannot start the thread for {shard}: {source}")]
    Thread {
        shard: ShardId,
        source: std::io::Error,
    },

    #[error("cannot install the SIGTERM/SIGINT handler: {0}")]
    Signals(std::io::Error),

    #[error(
        "port {port} is already in use ({addr}): stop the other process listening on it or \
         choose another port"
    )]
    AddressInUse { addr: SocketAddr, port: u16 },

    #[error("not allowed to listen on {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE")]
    ListenDenied { addr: SocketAddr },

    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },

    #[error("{shard} panicked: {message}")]
    ShardPanicked { shard: ShardId, message: String },

    #[error("{shard} failed: {source}")]
    ShardFailed { shard: ShardId, source: BoxError },
}

/// Failure of a cross-shard call.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RouterError {
    #[error("{shard} does not exist: this node runs {shards} shards")]
    NoSuchShard { shard: ShardId, shards: u16 },

    #[error("{shard} has stopped (shutdown or failure); the call was not completed")]
    ShardStopped { shard: ShardId },
}
