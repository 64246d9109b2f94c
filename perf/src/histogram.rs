//! Latency histograms (microseconds) and the counters beside them.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency recorded exactly: one hour, in microseconds. Larger
/// values are clamped to it (and would show as the max).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits kept: values are exact to 0.1%.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram in microseconds, 1 us to one hour.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid")
}

/// Records a latency given in nanoseconds.
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, latency_ns: u64) {
    h.saturating_record((latency_ns / 1_000).clamp(1, MAX_LATENCY_US));
}

/// The percentiles every report shows, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// Counters and histograms of one role (producer acks, consumer arrivals),
/// shared by its workers: each takes the lock once per response, not per
/// message, and the progress reporter once a second.
pub struct Stats {
    inner: Mutex<StatsInner>,
}

pub struct StatsInner {
    pub total: Histogram<u64>,
    pub interval: Histogram<u64>,
    pub messages: u64,
    pub bytes: u64,
    /// Messages the broker refused (per-partition error codes) or requests failed.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Run time of the last counted message, for the throughput denominator.
    pub last_ns: u64,
    /// Run time of the first counted message.
    pub first_ns: Option<u64>,
}

/// What the progress reporter takes each second.
#[derive(Debug)]
pub struct Snapshot {
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub interval: Histogram<u64>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            inner: Mutex::new(StatsInner {
                total: new_histogram(),
                interval: new_histogram(),
                messages: 0,
                bytes: 0,
                errors: 0,
                first_error: None,
                last_ns: 0,
                first_ns: None,
            }),
        }
    }

    /// Runs `f` under the lock. A worker that panicked while holding it
    /// leaves counters that are still meaningful, so poisoning is ignored.
    pub fn with<R>(&self, f: impl FnOnce(&mut StatsInner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Counters so far and the interval histogram since the last call.
    pub fn take_interval(&self) -> Snapshot {
        self.with(|s| {
            let interval = std::mem::replace(&mut s.interval, new_histogram());
            Snapshot {
                messages: s.messages,
                bytes: s.bytes,
                errors: s.errors,
                interval,
            }
        })
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl StatsInner {
    /// Counts `messages` of `bytes` arriving at `now_ns`, with latencies
    /// recorded separately by the caller.
    pub fn count(&mut self, now_ns: u64, messages: u64, bytes: u64) {
        self.messages += messages;
        self.bytes += bytes;
        self.last_ns = self.last_ns.max(now_ns);
        self.first_ns.get_or_insert(now_ns);
    }

    pub fn record_latency_ns(&mut self, latency_ns: u64) {
        record_ns(&mut self.total, latency_ns);
        record_ns(&mut self.interval, latency_ns);
    }

    pub fn error(&mut self, messages: u64, what: impl FnOnce() -> String) {
        self.errors += messages;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within_precision(actual: u64, expected: u64) -> bool {
        let tolerance = (expected / 1000).max(1);
        actual.abs_diff(expected) <= tolerance
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_ns(&mut h, us * 1_000);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 10_000);
        assert!(within_precision(p.p50_us, 5_000), "{p:?}");
        assert!(within_precision(p.p99_us, 9_900), "{p:?}");
        assert!(within_precision(p.p999_us, 9_990), "{p:?}");
        assert!(within_precision(p.p9999_us, 9_999), "{p:?}");
        assert!(within_precision(p.max_us, 10_000), "{p:?}");
        assert!((p.mean_us - 5_000.5).abs() < 10.0, "{p:?}");
    }

    #[test]
    fn one_slow_outlier_shows_only_in_the_far_tail() {
        let mut h = new_histogram();
        for _ in 0..9_999 {
            record_ns(&mut h, 100_000); // 100 us
        }
        record_ns(&mut h, 2_000_000_000); // 2 s
        let p = Percentiles::of(&h);
        assert!(within_precision(p.p50_us, 100));
        assert!(within_precision(p.p99_us, 100));
        assert!(within_precision(p.p999_us, 100));
        assert!(within_precision(p.max_us, 2_000_000), "{p:?}");
        assert!(within_precision(p.p9999_us, 100) || within_precision(p.p9999_us, 2_000_000));
    }

    #[test]
    fn sub_microsecond_and_huge_values_are_clamped_not_lost() {
        let mut h = new_histogram();
        record_ns(&mut h, 10);
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(within_precision(h.max(), MAX_LATENCY_US));
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn take_interval_resets_only_the_interval() {
        let stats = Stats::new();
        stats.with(|s| {
            s.count(5, 3, 300);
            s.record_latency_ns(1_000_000);
        });
        let first = stats.take_interval();
        assert_eq!(
            (first.messages, first.bytes, first.interval.len()),
            (3, 300, 1)
        );
        let second = stats.take_interval();
        assert_eq!(second.interval.len(), 0);
        assert_eq!(stats.with(|s| s.total.len()), 1);
    }
}
