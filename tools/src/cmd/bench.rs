//! `sluice bench`: the load generator of the `perf` crate against any
//! Kafka-compatible broker.

pub use perf::BenchArgs;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let cfg = args.validate()?;
    let summary = perf::run(&cfg)?;
    if cfg.json {
        eprint!("{}", summary.table());
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}
