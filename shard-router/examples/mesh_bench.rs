//! Cross-shard call cost: round-trip latency with one call in flight, and
//! throughput with 64 in flight, with and without `spin_before_park`.
//! Prints numbers only. Run: `cargo run --release -p shard-router --example mesh_bench`.

use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use shard_router::{run, RuntimeConfig, ShardCtx, ShardId};

const LATENCY_CALLS: usize = 20_000;
const THROUGHPUT_CALLS: usize = 640_000;
const IN_FLIGHT: usize = 64;

struct Counter(std::cell::Cell<u64>);

fn bump(s: &Rc<Counter>) -> LocalBoxFuture<'static, u64> {
    let v = s.0.get() + 1;
    s.0.set(v);
    async move { v }.boxed_local()
}

struct Figures {
    p50: Duration,
    p99: Duration,
    calls_per_s: f64,
}

fn measure(spin: Option<Duration>) -> Result<Figures, Box<dyn std::error::Error>> {
    let (out, figures) = mpsc::channel();
    let cfg = RuntimeConfig {
        shards: Some(2),
        io_memory_bytes: Some(1 << 20),
        spin_before_park: spin,
        ..RuntimeConfig::default()
    };
    run(cfg, move |ctx: ShardCtx<Counter>| {
        let out = out.clone();
        async move {
            ctx.install_state(Counter(std::cell::Cell::new(0)));
            if ctx.shard() != ShardId(0) {
                ctx.shutdown().await;
                return Ok(());
            }
            let r = ctx.router().clone();
            let target = ShardId(1);
            for _ in 0..1000 {
                r.call(target, bump).await?;
            }
            let mut lat = Vec::with_capacity(LATENCY_CALLS);
            for _ in 0..LATENCY_CALLS {
                let t = Instant::now();
                r.call(target, bump).await?;
                lat.push(t.elapsed());
            }
            lat.sort();
            let p50 = lat[lat.len() / 2];
            let p99 = lat[lat.len() * 99 / 100];

            let start = Instant::now();
            let workers = (0..IN_FLIGHT).map(|_| {
                let r = r.clone();
                glommio::spawn_local(async move {
                    for _ in 0..THROUGHPUT_CALLS / IN_FLIGHT {
                        r.call(target, bump).await?;
                    }
                    Ok::<_, shard_router::RouterError>(())
                })
            });
            for w in join_all(workers).await {
                w?;
            }
            let calls_per_s = THROUGHPUT_CALLS as f64 / start.elapsed().as_secs_f64();
            out.send(Figures {
                p50,
                p99,
                calls_per_s,
            })?;
            Ok(())
        }
    })?;
    Ok(figures.recv()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cross-shard calls, shard 0 -> shard 1 (2 shards)");
    for spin in [None, Some(Duration::from_micros(50))] {
        let f = measure(spin)?;
        println!(
            "spin_before_park {:>8}: 1 in flight p50 {:>7.1} us  p99 {:>7.1} us | {} in flight {:>6.2} M calls/s",
            spin.map_or("off".to_owned(), |d| format!("{} us", d.as_micros())),
            f.p50.as_secs_f64() * 1e6,
            f.p99.as_secs_f64() * 1e6,
            IN_FLIGHT,
            f.calls_per_s / 1e6,
        );
    }
    Ok(())
}
