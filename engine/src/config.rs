//! Per-log configuration, with Kafka's names and defaults where Kafka has them.

/// When an append is acknowledged, and so when readers may see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Written and `fdatasync`ed before it is acknowledged (sluice's default).
    Always,
    /// Acknowledged once written; `fdatasync` at most every `interval_ms`.
    IntervalMs(u64),
    /// Acknowledged once the direct-I/O write completed; synced only at roll and close.
    Never,
}

impl FlushPolicy {
    /// Parses `always`, `never` or `interval.ms=N` (also a bare number of ms).
    pub fn parse(s: &str) -> Option<FlushPolicy> {
        match s.trim() {
            "always" => Some(FlushPolicy::Always),
            "never" => Some(FlushPolicy::Never),
            other => {
                let n = other.strip_prefix("interval.ms=").unwrap_or(other);
                n.parse().ok().map(FlushPolicy::IntervalMs)
            }
        }
    }
}

impl std::fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushPolicy::Always => f.write_str("always"),
            FlushPolicy::Never => f.write_str("never"),
            FlushPolicy::IntervalMs(ms) => write!(f, "interval.ms={ms}"),
        }
    }
}

/// `cleanup.policy`: `delete`, `compact`, or both (`compact,delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// `retention.ms` / `retention.bytes` drop old segments.
    pub delete: bool,
    /// The cleaner keeps the latest record of every key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Parses Kafka's list form: `delete`, `compact`, `compact,delete`
    /// (either order, spaces allowed). An empty list means neither, as in Kafka.
    pub fn parse(s: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return None,
            }
        }
        Some(p)
    }
}

impl std::fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            (false, true) => "delete",
            (false, false) => "",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty active segment older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`; negative keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; negative means no size limit.
    pub retention_bytes: i64,
    /// `flush` policy: see [`FlushPolicy`].
    pub flush: FlushPolicy,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// Disk space is allocated ahead in chunks of this many bytes (0: extend on write).
    pub preallocate_bytes: u64,
    /// `producer.id.expiration.ms`: idempotence state of an idle producer is dropped after this.
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone (null value) stays readable
    /// on a compacted log, counted from its timestamp.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the cleaner takes a log once its dirty
    /// (never cleaned) bytes are at least this share of its cleanable bytes.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record becomes cleanable after at most this
    /// long, whatever the dirty ratio (it also caps `segment.ms`).
    pub max_compaction_lag_ms: i64,
}

impl LogConfig {
    /// The age at which the active segment rolls: `segment.ms`, capped by
    /// `max.compaction.lag.ms` on compacted logs (as Kafka does), so a record
    /// in the active segment is not kept from the cleaner for longer than that.
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_policy.compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            flush: FlushPolicy::Always,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            preallocate_bytes: 16 << 20,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}
