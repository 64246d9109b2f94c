//! `perf-report DIR OUT.md OUT.svg [TITLE]`: turns the runs `perf/compare.sh`
//! collected in DIR (`manifest.tsv`, the run outputs, `preamble.md`) into the
//! comparison report and its latency chart.

use std::path::Path;
use std::process::ExitCode;

use perf::compare::{chart_panels, parse_manifest, render_markdown, render_svg};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: perf-report DIR OUT.md OUT.svg [TITLE]");
        return ExitCode::from(2);
    }
    let dir = Path::new(&args[0]);
    let (md_path, svg_path) = (Path::new(&args[1]), Path::new(&args[2]));
    let title = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "sluice vs Apache Kafka".into());
    let manifest = match std::fs::read_to_string(dir.join("manifest.tsv")) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("perf-report: reading {}/manifest.tsv: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let preamble = std::fs::read_to_string(dir.join("preamble.md")).unwrap_or_default();
    let runs = parse_manifest(&manifest, |f| std::fs::read_to_string(dir.join(f)).ok());
    let svg_name = svg_path
        .file_name()
        .map_or("chart.svg".into(), |n| n.to_string_lossy().into_owned());
    let md = render_markdown(&title, &preamble, &runs, &svg_name);
    let svg = render_svg(&chart_panels(&runs));
    for (path, text) in [(md_path, md), (svg_path, svg)] {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("perf-report: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{}\n{}", md_path.display(), svg_path.display());
    ExitCode::SUCCESS
}
