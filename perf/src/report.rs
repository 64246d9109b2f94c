//! Live progress once a second, the final table, the JSON summary and the
//! HdrHistogram interval log.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use serde::Serialize;

use crate::error::{PerfError, Result};
use crate::histogram::{Percentiles, Stats};
use crate::workload::Clock;

const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A named series shown in progress lines and the log (`produce`, `e2e`, ...).
pub struct Series<'a> {
    pub name: &'static str,
    pub stats: &'a Stats,
    /// Whether latencies are recorded (a plain consume has none).
    pub has_latency: bool,
}

/// Prints a progress line per second to stderr and, given a path, writes
/// each second's histograms to an interval log, until `done` is set.
pub fn progress(
    clock: Clock,
    start_ns: u64,
    series: &[Series<'_>],
    done: &AtomicBool,
    quiet: bool,
    log_path: Option<&Path>,
) -> Result<()> {
    let mut file = match log_path {
        Some(p) => Some(BufWriter::new(File::create(p).map_err(|e| {
            PerfError::io(format!("creating the histogram log {}", p.display()), e)
        })?)),
        None => None,
    };
    let mut serializer = V2DeflateSerializer::new();
    let start_time = UNIX_EPOCH + Duration::from_nanos(clock.to_unix_ns(start_ns));
    let mut log = match file.as_mut() {
        Some(f) => Some(
            IntervalLogWriterBuilder::new()
                .add_comment("sluice bench: latency in microseconds")
                .with_start_time(start_time)
                .with_base_time(start_time)
                .with_max_value_divisor(1000.0)
                .begin_log_with(f, &mut serializer)
                .map_err(|e| PerfError::io("writing the histogram log", e))?,
        ),
        None => None,
    };
    let mut last: Vec<(u64, u64)> = vec![(0, 0); series.len()];
    let mut tick_ns = start_ns;
    let mut second = 0u64;
    loop {
        let next_tick = tick_ns + PROGRESS_INTERVAL.as_nanos() as u64;
        let finished = loop {
            if done.load(Ordering::Relaxed) {
                break true;
            }
            let now = clock.now_ns();
            if now >= next_tick {
                break false;
            }
            std::thread::sleep(
                Duration::from_nanos(next_tick - now).min(Duration::from_millis(50)),
            );
        };
        let now = clock.now_ns();
        let secs = (now - tick_ns) as f64 / 1e9;
        second += 1;
        let mut line = format!("[{second:>4}s]");
        for (i, s) in series.iter().enumerate() {
            let snap = s.stats.take_interval();
            let (msgs, bytes) = (snap.messages - last[i].0, snap.bytes - last[i].1);
            last[i] = (snap.messages, snap.bytes);
            let _ = write!(
                line,
                " {} {:>11} msg/s {:>8.1} MB/s",
                s.name,
                group(msgs as f64 / secs),
                bytes as f64 / secs / 1e6
            );
            if s.has_latency {
                let p = Percentiles::of(&snap.interval);
                let _ = write!(line, " p99 {:>9}", fmt_us(p.p99_us));
            }
            if snap.errors > 0 {
                let _ = write!(line, " errors {}", snap.errors);
            }
            if let (Some(log), true) = (log.as_mut(), s.has_latency) {
                let tag = Tag::new(s.name).expect("series names are valid tags");
                log.write_histogram(
                    &snap.interval,
                    Duration::from_nanos(tick_ns - start_ns),
                    Duration::from_nanos(now - tick_ns),
                    Some(tag),
                )
                .map_err(|e| {
                    PerfError::io(
                        "writing the histogram log",
                        std::io::Error::other(e.to_string()),
                    )
                })?;
            }
        }
        if !quiet && !finished {
            eprintln!("{line}");
        }
        tick_ns = now;
        if finished {
            break;
        }
    }
    drop(log);
    if let Some(mut f) = file {
        f.flush()
            .map_err(|e| PerfError::io("writing the histogram log", e))?;
    }
    Ok(())
}

/// One role's figures in the final summary.
#[derive(Debug, Clone, Serialize)]
pub struct RoleSummary {
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_secs: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// `ack` (send intent to acknowledgement), `e2e` (send intent to
    /// arrival at the consumer) or absent.
    pub latency_kind: Option<&'static str>,
    pub latency: Option<Percentiles>,
}

impl RoleSummary {
    pub fn of(stats: &Stats, start_ns: u64, latency_kind: Option<&'static str>) -> RoleSummary {
        stats.with(|s| {
            let elapsed_ns = s.last_ns.saturating_sub(start_ns).max(1);
            let elapsed_secs = elapsed_ns as f64 / 1e9;
            RoleSummary {
                messages: s.messages,
                bytes: s.bytes,
                errors: s.errors,
                first_error: s.first_error.clone(),
                elapsed_secs,
                msgs_per_sec: s.messages as f64 / elapsed_secs,
                mb_per_sec: s.bytes as f64 / elapsed_secs / 1e6,
                latency_kind,
                latency: latency_kind.map(|_| Percentiles::of(&s.total)),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: &'static str,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: u32,
    pub settings: serde_json::Value,
    pub produce: Option<RoleSummary>,
    pub consume: Option<RoleSummary>,
}

impl Summary {
    /// The machine-readable summary.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary always serializes")
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sluice bench {} -> {} topic {} ({} partitions)",
            self.mode, self.bootstrap, self.topic, self.partitions
        );
        let _ = writeln!(
            out,
            "{:<9} {:>12} {:>13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "", "messages", "msg/s", "MB/s", "p50", "p99", "p99.9", "p99.99", "max", "errors"
        );
        for (name, role) in [("produce", &self.produce), ("consume", &self.consume)] {
            let Some(r) = role else { continue };
            let lat = |f: fn(&Percentiles) -> u64| {
                r.latency.as_ref().map_or("-".to_string(), |p| fmt_us(f(p)))
            };
            let label = match r.latency_kind {
                Some("e2e") => "e2e",
                _ => name,
            };
            let _ = writeln!(
                out,
                "{:<9} {:>12} {:>13} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                label,
                group(r.messages as f64),
                group(r.msgs_per_sec),
                r.mb_per_sec,
                lat(|p| p.p50_us),
                lat(|p| p.p99_us),
                lat(|p| p.p999_us),
                lat(|p| p.p9999_us),
                lat(|p| p.max_us),
                r.errors
            );
            if let Some(e) = &r.first_error {
                let _ = writeln!(out, "  first error ({name}): {e}");
            }
        }
        let _ = writeln!(
            out,
            "latency: produce = ack time - intended send time; e2e = arrival - intended send time. \
             MB/s: produce = record values, consume = fetched batch bytes."
        );
        out
    }
}

/// Microseconds for people: `850us`, `3.21ms`, `1.20s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// A whole number with thousands separators.
pub fn group(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(group(1234567.4), "1,234,567");
        assert_eq!(group(999.0), "999");
        assert_eq!(fmt_us(850), "850us");
        assert_eq!(fmt_us(3210), "3.21ms");
        assert_eq!(fmt_us(1_200_000), "1.20s");
    }

    #[test]
    fn histogram_log_is_readable() {
        let stats = Stats::new();
        stats.with(|s| {
            s.count(1, 2, 200);
            s.record_latency_ns(1_000_000);
            s.record_latency_ns(2_000_000);
        });
        let dir = std::env::temp_dir().join(format!("perf-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.hlog");
        let done = AtomicBool::new(true);
        let series = [Series {
            name: "produce",
            stats: &stats,
            has_latency: true,
        }];
        progress(Clock::new(), 0, &series, &done, true, Some(&path)).unwrap();
        let text = std::fs::read(&path).unwrap();
        let intervals: Vec<_> =
            hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&text)
                .filter_map(|e| match e {
                    Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(h)) => {
                        Some(h.tag().map(|t| t.as_str().to_string()))
                    }
                    _ => None,
                })
                .collect();
        assert_eq!(intervals, vec![Some("produce".to_string())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
