//! What a run sends: the open-loop rate schedule, keys, payloads, and the
//! clock every latency is measured on.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{PerfError, Result};

/// Bytes at the start of every record value holding its intended send time
/// (unix nanoseconds, big-endian), read back by the end-to-end consumer.
pub const TIMESTAMP_BYTES: usize = 8;

/// One monotonic clock for the whole run, with its unix-time origin, so a
/// timestamp embedded by the producer and read by a consumer in the same
/// process compare exactly.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let start_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            start_unix_ns,
        }
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A run time (`now_ns` scale) as unix nanoseconds.
    pub fn to_unix_ns(&self, run_ns: u64) -> u64 {
        self.start_unix_ns.saturating_add(run_ns)
    }

    pub fn start_unix_ns(&self) -> u64 {
        self.start_unix_ns
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Open-loop schedule: message `k` is due at `start + k / rate`, whether or
/// not the broker kept up. A sender that falls behind finds many messages
/// already due, and their latency counts from when they were due, so
/// queueing delay is never hidden (no coordinated omission).
#[derive(Debug, Clone)]
pub struct RateSchedule {
    start_ns: u64,
    interval_ns: f64,
    next_index: u64,
}

impl RateSchedule {
    /// `rate_per_sec` messages a second from `start_ns`; the rate must be
    /// positive and finite (checked when arguments are parsed).
    pub fn new(rate_per_sec: f64, start_ns: u64) -> RateSchedule {
        assert!(
            rate_per_sec.is_finite() && rate_per_sec > 0.0,
            "rate must be positive and finite"
        );
        RateSchedule {
            start_ns,
            interval_ns: 1e9 / rate_per_sec,
            next_index: 0,
        }
    }

    /// When message `index` is due.
    pub fn intended_ns(&self, index: u64) -> u64 {
        self.start_ns + (index as f64 * self.interval_ns) as u64
    }

    /// When the next message is due.
    pub fn next_intended_ns(&self) -> u64 {
        self.intended_ns(self.next_index)
    }

    /// The next message's intended time if it is due at `now_ns`.
    pub fn next_due(&mut self, now_ns: u64) -> Option<u64> {
        let t = self.next_intended_ns();
        if t <= now_ns {
            self.next_index += 1;
            Some(t)
        } else {
            None
        }
    }

    /// Messages taken so far.
    pub fn taken(&self) -> u64 {
        self.next_index
    }
}

/// How record keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDist {
    /// Null keys; partitions are filled one batch at a time (sticky).
    None,
    /// A fresh random 16-character key per record.
    Random,
    /// Keys drawn uniformly from `count` distinct keys.
    Space { count: u64 },
}

impl KeyDist {
    pub fn parse(s: &str) -> Result<KeyDist> {
        match s {
            "none" => Ok(KeyDist::None),
            "random" => Ok(KeyDist::Random),
            _ => {
                let n = s.strip_prefix("space:").unwrap_or(s);
                match parse_count(n) {
                    Ok(count) if count > 0 => Ok(KeyDist::Space { count }),
                    _ => Err(PerfError::InvalidArg(format!(
                        "--keys {s:?}: use none, random, or space:N (N distinct keys, N > 0)"
                    ))),
                }
            }
        }
    }

    /// Writes the next key into `buf` (cleared first); false for a null key.
    pub fn next_key(&self, rng: &mut Rng, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let n = match *self {
            KeyDist::None => return false,
            KeyDist::Random => rng.next_u64(),
            KeyDist::Space { count } => rng.below(count),
        };
        write_hex16(buf, n);
        true
    }
}

fn write_hex16(buf: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        buf.push(HEX[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

/// The partition Kafka's Java producer picks for a keyed record
/// (`Utils.toPositive(murmur2(key)) % partitions`), so keys land where they
/// would with a stock client.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// A small, fast, seedable generator (splitmix64): keys and payload bytes
/// need speed and spread, not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A payload template of random upper-case letters (as Kafka's
/// `kafka-producer-perf-test` sends), so compressed runs see realistic
/// rather than trivially compressible data.
pub fn payload_template(size_bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..size_bytes)
        .map(|_| b'A' + rng.below(26) as u8)
        .collect()
}

/// Producer acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn parse(s: &str) -> Result<Acks> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            _ => Err(PerfError::InvalidArg(format!(
                "--acks {s:?}: use 0 (no response), 1 (leader) or all / -1 (all in-sync replicas)"
            ))),
        }
    }

    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// A rate in messages per second: `20000`, `20k`, `2.5M`; must be > 0.
pub fn parse_rate(s: &str) -> Result<f64> {
    let bad = || {
        PerfError::InvalidArg(format!(
            "--rate {s:?}: give messages per second as a positive number, e.g. 20000, 20k or 2M"
        ))
    };
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1e3),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let rate = v * mult;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(bad());
    }
    Ok(rate)
}

/// A count: `1000000`, `1M`, `500k`.
pub fn parse_count(s: &str) -> Result<u64> {
    let bad = || PerfError::InvalidArg(format!("{s:?} is not a count (e.g. 1000, 500k, 2M)"));
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    let v: u64 = num.trim().parse().map_err(|_| bad())?;
    v.checked_mul(mult).ok_or_else(bad)
}

/// A size in bytes: `100`, `16KiB`, `1MiB`, `64k`, `1m`.
pub fn parse_size(s: &str) -> Result<usize> {
    let bad = || PerfError::InvalidArg(format!("{s:?} is not a size (e.g. 100, 16KiB, 1MiB)"));
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (n, 1usize << 10)
    } else if let Some(n) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (n, 1 << 20)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    let v: usize = num.trim().parse().map_err(|_| bad())?;
    v.checked_mul(mult).ok_or_else(bad)
}

/// A duration: `20s`, `500ms`, `2m`, or plain seconds `20`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || PerfError::InvalidArg(format!("{s:?} is not a duration (e.g. 20s, 500ms, 2m)"));
    let t = s.trim();
    let (num, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60e3)
    } else {
        (t, 1e3)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let ms = v * unit_ms;
    if !ms.is_finite() || ms <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(ms / 1e3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_gives_evenly_spaced_intended_times() {
        let s = RateSchedule::new(1000.0, 5_000);
        assert_eq!(s.intended_ns(0), 5_000);
        assert_eq!(s.intended_ns(1), 1_005_000);
        assert_eq!(s.intended_ns(1000), 1_000_005_000);
    }

    #[test]
    fn schedule_is_open_loop_a_late_sender_finds_every_missed_message_due() {
        let mut s = RateSchedule::new(1000.0, 0);
        // Nothing is due before its time.
        assert_eq!(s.next_due(0), Some(0));
        assert_eq!(s.next_due(999_999), None);
        // The sender stalls 10 ms: the ten messages it missed are all due,
        // each with its own intended time (not the time it finally sends).
        let due: Vec<u64> = std::iter::from_fn(|| s.next_due(10_500_000)).collect();
        assert_eq!(
            due,
            (1..=10).map(|k| k * 1_000_000).collect::<Vec<_>>(),
            "missed messages keep their schedule"
        );
        assert_eq!(s.taken(), 11);
        assert_eq!(s.next_intended_ns(), 11_000_000);
    }

    #[test]
    fn schedule_fractional_rates_do_not_drift() {
        let s = RateSchedule::new(3.0, 0);
        assert_eq!(s.intended_ns(3), 1_000_000_000);
        assert_eq!(s.intended_ns(3_000_000), 1_000_000_000_000_000);
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn key_space_stays_within_its_count() {
        let mut rng = Rng::new(1);
        let dist = KeyDist::Space { count: 3 };
        let mut buf = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            assert!(dist.next_key(&mut rng, &mut buf));
            seen.insert(buf.clone());
        }
        assert_eq!(seen.len(), 3);
        assert!(!KeyDist::None.next_key(&mut rng, &mut buf));
    }

    #[test]
    fn parsers_accept_units_and_refuse_nonsense() {
        assert_eq!(parse_rate("20000").unwrap(), 20000.0);
        assert_eq!(parse_rate("20k").unwrap(), 20000.0);
        assert_eq!(parse_rate("2.5M").unwrap(), 2_500_000.0);
        for bad in ["0", "-5", "abc", "", "inf", "NaN", "k"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("16KiB").unwrap(), 16384);
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("x").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("20").unwrap(), Duration::from_secs(20));
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_count("2M").unwrap(), 2_000_000);
        assert_eq!(Acks::parse("all").unwrap(), Acks::All);
        assert_eq!(Acks::parse("-1").unwrap().wire(), -1);
        assert!(Acks::parse("2").is_err());
    }
}
