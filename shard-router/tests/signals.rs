//! SIGTERM handling. Its own test binary (its own process), because the
//! signal is sent to the whole process.

use std::sync::mpsc;
use std::time::Duration;

use shard_router::{run, RuntimeConfig, ShardCtx, ShardId};

#[test]
fn sigterm_shuts_every_shard_down_and_run_returns_ok() {
    let (ready_tx, ready) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let cfg = RuntimeConfig {
            shards: Some(2),
            io_memory_bytes: Some(256 * 1024),
            ..RuntimeConfig::default()
        };
        run(cfg, move |ctx: ShardCtx<()>| {
            let ready_tx = ready_tx.clone();
            let done_tx = done_tx.clone();
            async move {
                ready_tx.send(ctx.shard())?;
                ctx.shutdown().await;
                done_tx.send(ctx.shard())?;
                Ok(())
            }
        })
    });
    for _ in 0..2 {
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("shards started");
    }
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise SIGTERM");
    let mut stopped = Vec::new();
    for _ in 0..2 {
        stopped.push(
            done.recv_timeout(Duration::from_secs(60))
                .expect("every shard saw the shutdown"),
        );
    }
    stopped.sort();
    assert_eq!(stopped, vec![ShardId(0), ShardId(1)]);
    runner
        .join()
        .expect("runner thread")
        .expect("run returns Ok after SIGTERM");
}
