//! The side-by-side comparison report (`perf/compare.sh` collects the runs,
//! `perf-report` turns them into Markdown and an SVG percentile chart).
//!
//! Inputs are a manifest of runs (one tab-separated line each: pairing,
//! broker, workload, client, output file, load average, command) and the
//! output files: `sluice bench --json` summaries or the final lines of
//! Kafka's `kafka-producer-perf-test` / `kafka-consumer-perf-test`.

use std::fmt::Write as _;

use crate::report::{fmt_us, group};

/// Kafka's tools print MB as 2^20 bytes; the report uses 10^6.
const MIB_IN_MB: f64 = 1.048_576;

/// A latency distribution as (percentile, microseconds) points, ascending;
/// the maximum is the point at percentile 100.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub kind: String,
    pub points: Vec<(f64, f64)>,
}

impl Latency {
    pub fn at(&self, pct: f64) -> Option<f64> {
        self.points
            .iter()
            .find(|(p, _)| (p - pct).abs() < 1e-9)
            .map(|&(_, v)| v)
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub errors: u64,
    pub latency: Option<Latency>,
    /// Something the reader must know, e.g. that the run was cut short.
    pub note: Option<String>,
}

/// One line of the manifest with its parsed figures (or why there are none).
#[derive(Debug, Clone)]
pub struct Run {
    pub pairing: String,
    pub broker: String,
    pub workload: String,
    pub client: String,
    pub file: String,
    pub load: String,
    pub command: String,
    pub figures: Result<Figures, String>,
}

/// Parses one manifest line; `read` returns the content of an output file.
pub fn parse_manifest(text: &str, read: impl Fn(&str) -> Option<String>) -> Vec<Run> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.splitn(7, '\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("").to_string();
            let (client, file) = (get(3), get(4));
            let figures = match read(&file) {
                None => Err(format!("no output ({file})")),
                Some(out) => match client.as_str() {
                    "sluice-bench" => parse_bench_json(&out),
                    "kafka-producer-perf" => parse_producer_perf(&out),
                    "kafka-consumer-perf" => parse_consumer_perf(&out),
                    other => Err(format!("unknown client {other:?}")),
                },
            };
            Run {
                pairing: get(0),
                broker: get(1),
                workload: get(2),
                client,
                file,
                load: get(5),
                command: get(6),
                figures,
            }
        })
        .collect()
}

/// A `sluice bench --json` summary: produce figures for produce runs, the
/// consumer's for consume, the producer's rate with the e2e latency for e2e.
pub fn parse_bench_json(text: &str) -> Result<Figures, String> {
    let start = text.find('{').ok_or("no JSON summary")?;
    let v: serde_json::Value =
        serde_json::from_str(&text[start..]).map_err(|e| format!("bad JSON: {e}"))?;
    let role = |name: &str| v.get(name).filter(|r| !r.is_null());
    let (rate_role, lat_role) = match v["mode"].as_str() {
        Some("produce") => (role("produce"), role("produce")),
        Some("consume") => (role("consume"), None),
        Some("e2e") => (role("produce"), role("consume")),
        m => return Err(format!("unknown mode {m:?}")),
    };
    let rate_role = rate_role.ok_or("summary without figures")?;
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let latency = lat_role.and_then(|r| {
        let l = r.get("latency").filter(|l| !l.is_null())?;
        let points = [
            (50.0, "p50_us"),
            (99.0, "p99_us"),
            (99.9, "p999_us"),
            (99.99, "p9999_us"),
            (100.0, "max_us"),
        ]
        .iter()
        .map(|&(p, k)| (p, num(l, k)))
        .collect();
        Some(Latency {
            kind: r["latency_kind"].as_str().unwrap_or("ack").to_string(),
            points,
        })
    });
    let errors = [role("produce"), role("consume")]
        .iter()
        .flatten()
        .map(|r| r["errors"].as_u64().unwrap_or(0))
        .sum();
    Ok(Figures {
        msgs_per_sec: num(rate_role, "msgs_per_sec"),
        mb_per_sec: num(rate_role, "mb_per_sec"),
        errors,
        note: None,
        latency,
    })
}

/// The final line of `kafka-producer-perf-test`: `N records sent, R
/// records/sec (M MB/sec), A ms avg latency, X ms max latency, a ms 50th, b
/// ms 95th, c ms 99th, d ms 99.9th.`
pub fn parse_producer_perf(text: &str) -> Result<Figures, String> {
    // Without a final line (the run was cut short), the last interim line
    // gives the rate and the maximum so far.
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("50th"))
        .or_else(|| text.lines().rev().find(|l| l.contains("records sent")))
        .ok_or("no producer-perf output")?;
    let note = (!line.contains("50th")).then(|| "cut short: last interim line".to_string());
    let number_before = |tag: &str| -> Option<f64> {
        let i = line.find(tag)?;
        line[..i].trim_end().rsplit([' ', '(']).next()?.parse().ok()
    };
    let rate = number_before(" records/sec").ok_or("no records/sec")?;
    let mb = number_before(" MB/sec").ok_or("no MB/sec")?;
    let mut points = Vec::new();
    for (p, tag) in [
        (50.0, " ms 50th"),
        (95.0, " ms 95th"),
        (99.0, " ms 99th"),
        (99.9, " ms 99.9th"),
        (100.0, " ms max latency"),
    ] {
        if let Some(ms) = number_before(tag) {
            points.push((p, ms * 1e3));
        }
    }
    Ok(Figures {
        msgs_per_sec: rate,
        mb_per_sec: mb * MIB_IN_MB,
        errors: 0,
        note,
        latency: Some(Latency {
            kind: "ack".into(),
            points,
        }),
    })
}

/// `kafka-consumer-perf-test` output: a header line naming the columns and
/// a data line; the fetch rates (without the group join) are used.
pub fn parse_consumer_perf(text: &str) -> Result<Figures, String> {
    let mut lines = text.lines().map(str::trim);
    let header = lines
        .by_ref()
        .find(|l| l.starts_with("start.time"))
        .ok_or("no consumer-perf header")?;
    let data = lines
        .find(|l| l.contains(',') && l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .ok_or("no consumer-perf data line")?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let vals: Vec<&str> = data.split(',').map(str::trim).collect();
    let col = |name: &str| -> Result<f64, String> {
        let i = cols
            .iter()
            .position(|c| *c == name)
            .ok_or(format!("no column {name}"))?;
        vals.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or(format!("bad value for {name}"))
    };
    Ok(Figures {
        msgs_per_sec: col("fetch.nMsg.sec")?,
        mb_per_sec: col("fetch.MB.sec")? * MIB_IN_MB,
        errors: 0,
        note: None,
        latency: None,
    })
}

/// What each workload is, for the report.
pub fn workload_title(w: &str) -> &'static str {
    match w {
        "W1" => "W1: 100-byte values, 6 partitions, acks=all, maximum throughput",
        "W2" => "W2: 1 KiB values, 6 partitions, acks=all, fixed rate (half of Kafka's W1 MB/s), latency",
        "W3-fill" => "W3-fill: writing the W3 topic (1 KiB values, 6 partitions, acks=all, as fast as possible)",
        "W3" => "W3: one consumer catching up from disk (page cache dropped first)",
        "W4" => "W4: 64 producer connections on 64 partitions, 100-byte values, acks=all",
        "W5" => "W5: end-to-end latency at 20,000 msg/s, 100-byte values, 6 partitions, acks=all",
        _ => "other",
    }
}

fn cell_us(l: Option<&Latency>, pct: f64) -> String {
    l.and_then(|l| l.at(pct))
        .map_or("-".into(), |v| fmt_us(v.round() as u64))
}

fn ratio(a: f64, b: f64) -> String {
    if !(a > 0.0 && b > 0.0) {
        return "-".into();
    }
    let r = a / b;
    if r < 0.1 {
        format!("{r:.3}x (1/{:.0})", 1.0 / r)
    } else {
        format!("{r:.2}x")
    }
}

/// The Markdown report. `preamble` (machine, settings, notes) goes first;
/// `svg_name` is the chart's file name beside the report.
pub fn render_markdown(title: &str, preamble: &str, runs: &[Run], svg_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "{}\n", preamble.trim_end());
    let _ = writeln!(
        out,
        "Latency chart (ack latency for W2, end-to-end for W5, log scales): \
         [{svg_name}]({svg_name})\n\n![latency percentiles]({svg_name})\n"
    );
    let mut workloads: Vec<&str> = Vec::new();
    for r in runs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    for w in workloads {
        let _ = writeln!(out, "## {}\n", workload_title(w));
        let _ = writeln!(
            out,
            "| pairing | broker | client | msg/s | MB/s | p50 | p99 | p99.9 | p99.99 | max | errors | load avg |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        let rows: Vec<&Run> = runs.iter().filter(|r| r.workload == w).collect();
        for r in &rows {
            match &r.figures {
                Ok(f) => {
                    let l = f.latency.as_ref();
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
                        r.pairing,
                        r.broker,
                        r.client,
                        group(f.msgs_per_sec),
                        f.mb_per_sec,
                        cell_us(l, 50.0),
                        cell_us(l, 99.0),
                        cell_us(l, 99.9),
                        cell_us(l, 99.99),
                        cell_us(l, 100.0),
                        match &f.note {
                            Some(n) => format!("{} ({n})", f.errors),
                            None => f.errors.to_string(),
                        },
                        r.load
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | failed: {} | | | | | | | | {} |",
                        r.pairing,
                        r.broker,
                        r.client,
                        e.replace('|', "/"),
                        r.load
                    );
                }
            }
        }
        let _ = writeln!(out);
        // Ratios sluice / Kafka per pairing and client.
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for r in &rows {
            let k = (r.pairing.as_str(), r.client.as_str());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for (pairing, client) in keys {
            let find = |b: &str| {
                rows.iter()
                    .find(|r| r.pairing == pairing && r.client == client && r.broker.starts_with(b))
                    .and_then(|r| r.figures.as_ref().ok())
            };
            if let (Some(s), Some(k)) = (find("sluice"), find("kafka")) {
                let mut line = format!(
                    "- {pairing}, {client}: sluice/Kafka msg/s {}",
                    ratio(s.msgs_per_sec, k.msgs_per_sec)
                );
                if let (Some(sl), Some(kl)) = (&s.latency, &k.latency) {
                    for (p, name) in [(50.0, "p50"), (99.0, "p99"), (99.9, "p99.9")] {
                        if let (Some(a), Some(b)) = (sl.at(p), kl.at(p)) {
                            let _ = write!(line, ", {name} {}", ratio(a, b));
                        }
                    }
                }
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Exact commands\n");
    let _ = writeln!(out, "```");
    for r in runs {
        let _ = writeln!(
            out,
            "# {} {} {} ({})\n{}",
            r.workload, r.pairing, r.broker, r.client, r.command
        );
    }
    let _ = writeln!(out, "```");
    out
}

/// One line of a chart panel.
#[derive(Debug, Clone)]
pub struct ChartSeries {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel of the chart.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub series: Vec<ChartSeries>,
}

/// The panels of the report's chart: W2 and W5 latencies by the bench client.
pub fn chart_panels(runs: &[Run]) -> Vec<Panel> {
    ["W2", "W5"]
        .iter()
        .map(|w| Panel {
            title: format!(
                "{w}: {} latency",
                if *w == "W5" { "end-to-end" } else { "ack" }
            ),
            series: runs
                .iter()
                .filter(|r| r.workload == *w && r.client == "sluice-bench")
                .filter_map(|r| {
                    let l = r.figures.as_ref().ok()?.latency.as_ref()?;
                    Some(ChartSeries {
                        label: format!("{} ({})", r.broker, r.pairing),
                        points: l.points.clone(),
                    })
                })
                .collect(),
        })
        .collect()
}

const PANEL_W: f64 = 520.0;
const PANEL_H: f64 = 320.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 110.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// x position of a percentile: log10(1 / (1 - p)); the maximum sits one
/// decade right of 99.99.
fn pct_x(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        (1.0 / (1.0 - p / 100.0)).log10().min(5.0)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A log-log percentile chart (x: percentile, y: latency), panels side by side.
pub fn render_svg(panels: &[Panel]) -> String {
    let n = panels.len().max(1) as f64;
    let (w, h) = (
        PANEL_W * n + MARGIN_L + MARGIN_R,
        PANEL_H + MARGIN_T + MARGIN_B,
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, panel) in panels.iter().enumerate() {
        let x0 = MARGIN_L + i as f64 * PANEL_W;
        let pw = PANEL_W - 40.0;
        let vals = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1.max(1.0)));
        let (lo, hi) = vals.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (dlo, dhi) = if hi > 0.0 {
            (
                lo.log10().floor(),
                hi.log10().ceil().max(lo.log10().floor() + 1.0),
            )
        } else {
            (0.0, 1.0)
        };
        let px = |p: f64| x0 + (pct_x(p) - pct_x(50.0)) / (5.0 - pct_x(50.0)) * pw;
        let py = |us: f64| MARGIN_T + PANEL_H - (us.max(1.0).log10() - dlo) / (dhi - dlo) * PANEL_H;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
            x0,
            MARGIN_T - 15.0,
            esc(&panel.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{MARGIN_T}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
        );
        let mut d = dlo as i32;
        while d as f64 <= dhi {
            let y = py(10f64.powi(d));
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 5.0,
                y + 4.0,
                fmt_us(10u64.pow(d.max(0) as u32))
            );
            d += 1;
        }
        for (p, label) in [
            (50.0, "50%"),
            (90.0, "90%"),
            (99.0, "99%"),
            (99.9, "99.9%"),
            (99.99, "99.99%"),
            (100.0, "max"),
        ] {
            let x = px(p);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{MARGIN_T}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                MARGIN_T + PANEL_H,
                MARGIN_T + PANEL_H + 16.0
            );
        }
        for (j, series) in panel.series.iter().enumerate() {
            let color = COLORS[j % COLORS.len()];
            let pts: Vec<String> = series
                .points
                .iter()
                .map(|&(p, v)| format!("{:.1},{:.1}", px(p), py(v)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
            for &(p, v) in &series.points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{} {}: {}</title></circle>"#,
                    px(p),
                    py(v),
                    esc(&series.label),
                    if p >= 100.0 {
                        "max".to_string()
                    } else {
                        format!("p{p}")
                    },
                    fmt_us(v.round() as u64)
                );
            }
            let ly = MARGIN_T + PANEL_H + 36.0 + j as f64 * 16.0;
            let _ = writeln!(
                s,
                r#"<rect x="{x0}" y="{:.1}" width="12" height="4" fill="{color}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 5.0,
                x0 + 18.0,
                esc(&series.label)
            );
        }
        if panel.series.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no data</text>"#,
                x0 + pw / 2.0,
                MARGIN_T + PANEL_H / 2.0
            );
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH_E2E: &str = r#"{"mode":"e2e","bootstrap":"127.0.0.1:1","topic":"t","partitions":6,"settings":{},
      "produce":{"messages":100,"bytes":10000,"errors":0,"first_error":null,"elapsed_secs":1.0,"msgs_per_sec":20000.0,"mb_per_sec":2.0,"latency_kind":"ack","latency":{"count":100,"p50_us":900,"p99_us":2000,"p999_us":3000,"p9999_us":4000,"max_us":5000,"mean_us":1000.0}},
      "consume":{"messages":100,"bytes":10000,"errors":0,"first_error":null,"elapsed_secs":1.0,"msgs_per_sec":19999.0,"mb_per_sec":2.0,"latency_kind":"e2e","latency":{"count":100,"p50_us":1234,"p99_us":5678,"p999_us":9100,"p9999_us":12000,"max_us":15000,"mean_us":1500.0}}}"#;
    const PRODUCER: &str = "500 records sent, 100.0 records/sec\n\
        1000000 records sent, 654321.5 records/sec (62.40 MB/sec), 20.50 ms avg latency, 180.00 ms max latency, 12 ms 50th, 60 ms 95th, 90 ms 99th, 150 ms 99.9th.\n";
    const CONSUMER: &str = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
        2026-11-25 21:00:00:000, 2026-11-25 21:00:10:000, 953.6743, 95.3674, 1000000, 100000.0, 3000, 7000, 136.2392, 142857.1429\n";

    fn canned_runs() -> Vec<Run> {
        let manifest = "# comment\n\
            fsync\tkafka\tW5\tsluice-bench\te2e-k.json\t0.50\tsluice bench e2e --rate 20000\n\
            fsync\tsluice\tW5\tsluice-bench\te2e-s.json\t0.40\tsluice bench e2e --rate 20000\n\
            default\tkafka\tW1\tkafka-producer-perf\tprod.txt\t1.2\tjava ProducerPerformance\n\
            default\tkafka\tW3\tkafka-consumer-perf\tcons.txt\t1.3\tjava ConsumerPerformance\n\
            default\tsluice\tW3\tkafka-consumer-perf\tmissing.txt\t1.3\tjava ConsumerPerformance\n";
        parse_manifest(manifest, |f| match f {
            "e2e-k.json" => Some(BENCH_E2E.to_string()),
            "e2e-s.json" => Some(BENCH_E2E.replace("\"p999_us\":9100", "\"p999_us\":910")),
            "prod.txt" => Some(PRODUCER.to_string()),
            "cons.txt" => Some(CONSUMER.to_string()),
            _ => None,
        })
    }

    #[test]
    fn parses_every_client_output() {
        let runs = canned_runs();
        assert_eq!(runs.len(), 5);
        let e2e = runs[0].figures.as_ref().unwrap();
        assert_eq!(e2e.msgs_per_sec, 20000.0);
        let l = e2e.latency.as_ref().unwrap();
        assert_eq!(l.kind, "e2e");
        assert_eq!(l.at(99.9), Some(9100.0));
        let p = runs[2].figures.as_ref().unwrap();
        assert_eq!(p.msgs_per_sec, 654321.5);
        assert!((p.mb_per_sec - 62.40 * MIB_IN_MB).abs() < 1e-9);
        assert_eq!(p.latency.as_ref().unwrap().at(99.9), Some(150_000.0));
        assert_eq!(p.latency.as_ref().unwrap().at(100.0), Some(180_000.0));
        let c = runs[3].figures.as_ref().unwrap();
        assert!((c.msgs_per_sec - 142857.1429).abs() < 1e-6);
        assert!(runs[4].figures.is_err());
        let cut = parse_producer_perf(
            "442507 records sent, 88377.7 records/sec (86.31 MB/sec), 244.3 ms avg latency, 661.0 ms max latency.\n",
        )
        .unwrap();
        assert_eq!(cut.msgs_per_sec, 88377.7);
        assert!(cut.note.is_some());
        assert_eq!(cut.latency.unwrap().points, vec![(100.0, 661_000.0)]);
    }

    #[test]
    fn markdown_has_figures_ratios_and_commands() {
        let runs = canned_runs();
        let md = render_markdown("Compare", "machine: test", &runs, "c.svg");
        assert!(md.starts_with("# Compare"));
        assert!(md.contains("machine: test"));
        assert!(md.contains("](c.svg)"));
        assert!(md.contains("## W5"));
        assert!(md.contains("| fsync | kafka | sluice-bench | 20,000 |"));
        assert!(md.contains("9.10ms") && md.contains("910us"));
        // sluice p99.9 910 us vs Kafka 9100 us.
        assert!(md.contains("p99.9 0.10x"), "{md}");
        assert_eq!(ratio(1.0, 250.0), "0.004x (1/250)");
        assert!(md.contains("| 654,322 |"));
        assert!(md.contains("failed: no output"));
        assert!(md.contains("sluice bench e2e --rate 20000"));
    }

    #[test]
    fn svg_is_well_formed_and_labelled() {
        let runs = canned_runs();
        let panels = chart_panels(&runs);
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[1].series.len(), 2);
        let svg = render_svg(&panels);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Balanced elements: every opened non-self-closing tag is closed.
        for tag in ["text", "circle", "title", "svg"] {
            let open =
                svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count();
            let close = svg.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "{tag}");
        }
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("kafka (fsync)") && svg.contains("sluice (fsync)"));
        assert!(svg.contains("99.9%") && svg.contains(">max<"));
        assert!(svg.contains("9.10ms"));
        assert!(svg.contains("no data")); // W2 has no runs here
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
