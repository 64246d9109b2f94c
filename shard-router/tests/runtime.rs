//! End-to-end behaviour of the shard runtime with two shards (more shards
//! than CPUs is allowed, so this runs on any machine).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{select, try_join_all, Either, LocalBoxFuture};
use futures::FutureExt;
use shard_router::{
    bind_shared, run, RouterError, RuntimeConfig, ShardCtx, ShardId, ShardResult, StartError,
};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn cfg(shards: usize) -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(shards),
        io_memory_bytes: Some(256 * 1024),
        thread_name_prefix: "test-shard".to_owned(),
        ..RuntimeConfig::default()
    }
}

/// Runs the runtime on its own thread and fails the test if it hangs.
fn run_bounded<S, Init, Fut>(cfg: RuntimeConfig, init: Init) -> Result<(), StartError>
where
    S: 'static,
    Init: Fn(ShardCtx<S>) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ShardResult> + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(cfg, init));
    });
    rx.recv_timeout(TEST_TIMEOUT)
        .expect("the runtime did not finish in time")
}

#[derive(Default)]
struct State {
    seq: RefCell<Vec<u32>>,
}

type Fut<R> = LocalBoxFuture<'static, R>;

fn record(i: u32) -> impl FnOnce(&Rc<State>) -> Fut<u32> + Send + 'static {
    move |s: &Rc<State>| {
        s.seq.borrow_mut().push(i);
        async move { i }.boxed_local()
    }
}

fn read_seq(s: &Rc<State>) -> Fut<Vec<u32>> {
    let v = s.seq.borrow().clone();
    async move { v }.boxed_local()
}

#[test]
fn ten_thousand_calls_run_in_enqueue_order() {
    const CALLS: u32 = 10_000;
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            ctx.install_state(State::default());
            if ctx.shard() == ShardId(1) {
                ctx.shutdown().await;
                return Ok(());
            }
            let r = ctx.router().clone();
            let mut replies = Vec::with_capacity(CALLS as usize);
            for i in 0..CALLS {
                replies.push(r.submit(ShardId(1), record(i)).await?);
            }
            let answers = try_join_all(replies).await?;
            let seq = r.call(ShardId(1), read_seq).await?;
            out.send((answers, seq))?;
            Ok(())
        }
    });
    res.expect("runtime");
    let (answers, seq) = results.recv().expect("shard 0 reported");
    let expected: Vec<u32> = (0..CALLS).collect();
    assert_eq!(answers, expected);
    assert_eq!(seq, expected, "sync parts ran out of enqueue order");
}

#[test]
fn async_parts_run_concurrently() {
    const SLEEPS_MS: [u64; 8] = [160, 40, 120, 80, 200, 60, 140, 100];
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            ctx.install_state(State::default());
            if ctx.shard() == ShardId(1) {
                ctx.shutdown().await;
                return Ok(());
            }
            let r = ctx.router().clone();
            let start = Instant::now();
            let finished = Rc::new(RefCell::new(Vec::new()));
            let mut replies = Vec::new();
            for (i, ms) in SLEEPS_MS.into_iter().enumerate() {
                let f = move |s: &Rc<State>| -> Fut<usize> {
                    s.seq.borrow_mut().push(i as u32);
                    async move {
                        glommio::timer::sleep(Duration::from_millis(ms)).await;
                        i
                    }
                    .boxed_local()
                };
                let reply = r.submit(ShardId(1), f).await?;
                let finished = Rc::clone(&finished);
                replies.push(async move {
                    let i = reply.await?;
                    finished.borrow_mut().push(i);
                    Ok::<_, RouterError>(i)
                });
            }
            try_join_all(replies).await?;
            let elapsed = start.elapsed();
            let seq = r.call(ShardId(1), read_seq).await?;
            let finished = finished.borrow().clone();
            out.send((elapsed, seq, finished))?;
            Ok(())
        }
    });
    res.expect("runtime");
    let (elapsed, seq, finished) = results.recv().expect("shard 0 reported");
    let sum: u64 = SLEEPS_MS.iter().sum();
    assert!(
        elapsed < Duration::from_millis(sum / 2),
        "took {elapsed:?}; sequential would be {sum} ms"
    );
    assert_eq!(
        seq,
        (0..8).collect::<Vec<_>>(),
        "sync parts in enqueue order"
    );
    // Shortest sleep first: completions follow sleep time, not enqueue order.
    assert_eq!(finished, vec![1, 5, 3, 7, 2, 6, 0, 4]);
}

#[test]
fn full_channel_makes_the_sender_wait_in_fifo_order() {
    const CAPACITY: usize = 8;
    let release = Arc::new(AtomicBool::new(false));
    let (out, results) = mpsc::channel();
    let mut config = cfg(2);
    config.channel_capacity_jobs = CAPACITY;
    let res = run_bounded(config, move |ctx: ShardCtx<State>| {
        let out = out.clone();
        let release = Arc::clone(&release);
        async move {
            if ctx.shard() == ShardId(1) {
                // A stalled consumer: nothing is taken off the channel until
                // shard 0 says so.
                while !release.load(Ordering::Acquire) {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                ctx.install_state(State::default());
                ctx.shutdown().await;
                return Ok(());
            }
            ctx.install_state(State::default());
            let r = ctx.router().clone();
            let mut replies = Vec::new();
            for i in 0..CAPACITY as u32 {
                let queued = r.submit(ShardId(1), record(i)).now_or_never();
                let reply = queued.expect("room in the channel: enqueued at once")?;
                replies.push(reply);
            }
            // The channel is full: the next submit must wait.
            let blocked = Box::pin(r.submit(ShardId(1), record(CAPACITY as u32)));
            let timer = Box::pin(glommio::timer::sleep(Duration::from_millis(100)));
            let blocked = match select(blocked, timer).await {
                Either::Left(_) => {
                    out.send(Err("submit into a full channel did not wait".to_owned()))?;
                    return Ok(());
                }
                Either::Right((_, blocked)) => blocked,
            };
            // Another task of this shard queues behind the waiting one.
            let r2 = r.clone();
            let later = glommio::spawn_local(async move {
                r2.submit(ShardId(1), record(CAPACITY as u32 + 1)).await
            });
            glommio::timer::sleep(Duration::from_millis(10)).await;
            release.store(true, Ordering::Release);
            replies.push(blocked.await?);
            replies.push(later.await?);
            try_join_all(replies).await?;
            let seq = r.call(ShardId(1), read_seq).await?;
            out.send(Ok(seq))?;
            Ok(())
        }
    });
    res.expect("runtime");
    let seq = results
        .recv()
        .expect("shard 0 reported")
        .expect("back-pressure");
    assert_eq!(seq, (0..=CAPACITY as u32 + 1).collect::<Vec<_>>());
}

#[test]
fn shutdown_reaches_every_shard() {
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            ctx.install_state(State::default());
            if ctx.shard() == ShardId(0) {
                // Make sure shard 1 is serving before asking for shutdown.
                ctx.router().call(ShardId(1), read_seq).await?;
                ctx.request_shutdown();
            }
            ctx.shutdown().await;
            assert!(ctx.is_shutting_down());
            out.send(ctx.shard())?;
            Ok(())
        }
    });
    res.expect("runtime");
    let mut got: Vec<ShardId> = results.try_iter().collect();
    got.sort();
    assert_eq!(got, vec![ShardId(0), ShardId(1)]);
}

#[test]
fn a_returning_shard_stops_the_others() {
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            if ctx.shard() == ShardId(1) {
                ctx.shutdown().await;
                out.send(ctx.shard())?;
            }
            Ok(())
        }
    });
    res.expect("runtime");
    assert_eq!(results.try_iter().collect::<Vec<_>>(), vec![ShardId(1)]);
}

#[test]
fn a_panicking_shard_is_an_error_and_stops_the_others() {
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            ctx.install_state(State::default());
            if ctx.shard() == ShardId(1) {
                glommio::timer::sleep(Duration::from_millis(20)).await;
                panic!("boom on purpose");
            }
            ctx.shutdown().await;
            out.send(ctx.shard())?;
            Ok(())
        }
    });
    match res {
        Err(StartError::ShardPanicked { shard, message }) => {
            assert_eq!(shard, ShardId(1));
            assert!(message.contains("boom on purpose"), "{message}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(results.try_iter().collect::<Vec<_>>(), vec![ShardId(0)]);
}

#[test]
fn a_call_into_a_shard_that_panics_fails_instead_of_hanging() {
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            ctx.install_state(State::default());
            if ctx.shard() == ShardId(0) {
                let r = ctx
                    .router()
                    .call(ShardId(1), |_s: &Rc<State>| -> Fut<()> {
                        panic!("job panics on purpose")
                    })
                    .await;
                out.send(r)?;
            }
            ctx.shutdown().await;
            Ok(())
        }
    });
    assert!(
        matches!(
            res,
            Err(StartError::ShardPanicked {
                shard: ShardId(1),
                ..
            })
        ),
        "{res:?}"
    );
    let r = results.recv().expect("shard 0 reported");
    assert_eq!(r, Err(RouterError::ShardStopped { shard: ShardId(1) }));
}

#[test]
fn a_shard_error_is_returned() {
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| async move {
        if ctx.shard() == ShardId(0) {
            return Err("disk on fire".into());
        }
        ctx.shutdown().await;
        Ok(())
    });
    match res {
        Err(StartError::ShardFailed { shard, source }) => {
            assert_eq!(shard, ShardId(0));
            assert_eq!(source.to_string(), "disk on fire");
        }
        other => panic!("expected a shard error, got {other:?}"),
    }
}

#[test]
fn local_calls_broadcast_and_bad_targets() {
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            let me = ctx.shard();
            ctx.install_state(State::default());
            if me == ShardId(0) {
                let r = ctx.router();
                assert_eq!(r.shards(), 2);
                assert_eq!(r.my_shard(), me);
                let local = r.call(me, record(7)).await?;
                let all = r
                    .broadcast(|s: &Rc<State>| -> Fut<usize> {
                        let n = s.seq.borrow().len();
                        async move { n }.boxed_local()
                    })
                    .await?;
                let bad = r.call(ShardId(2), record(0)).await;
                out.send((local, all, bad))?;
                ctx.request_shutdown();
            }
            ctx.shutdown().await;
            Ok(())
        }
    });
    res.expect("runtime");
    let (local, all, bad) = results.recv().expect("shard 0 reported");
    assert_eq!(local, 7);
    assert_eq!(all, vec![1, 0], "shard 0 saw its own call, shard 1 none");
    assert_eq!(
        bad,
        Err(RouterError::NoSuchShard {
            shard: ShardId(2),
            shards: 2
        })
    );
}

#[test]
fn every_shard_binds_the_same_port_and_a_taken_port_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    let taken_addr = taken.local_addr().expect("probe address");
    let free_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
        probe.local_addr().expect("probe address")
    };
    let (out, results) = mpsc::channel();
    let res = run_bounded(cfg(2), move |ctx: ShardCtx<State>| {
        let out = out.clone();
        async move {
            // SO_REUSEPORT: both shards bind one port; keep the listener
            // until both have bound it.
            let shared = bind_shared(free_addr).map_err(|e| e.to_string());
            let taken = bind_shared(taken_addr)
                .map(|_| ())
                .map_err(|e| e.to_string());
            ctx.install_state(State::default());
            let other = ShardId(1 - ctx.shard().0);
            ctx.router().call(other, read_seq).await?;
            out.send((shared.map(|_| ()), taken))?;
            if ctx.shard() == ShardId(0) {
                ctx.request_shutdown();
            }
            ctx.shutdown().await;
            Ok(())
        }
    });
    res.expect("runtime");
    let got: Vec<_> = results.try_iter().collect();
    assert_eq!(got.len(), 2);
    for (shared, taken) in got {
        shared.expect("both shards bind the same port");
        let text = taken.expect_err("a port held without SO_REUSEPORT is refused");
        assert!(
            text.contains(&format!("port {} is already in use", taken_addr.port())),
            "{text}"
        );
    }
    drop(taken);
}
