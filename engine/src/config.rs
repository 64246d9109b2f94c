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
        }
    }
}
