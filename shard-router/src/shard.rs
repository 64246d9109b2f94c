//! The per-core runtime: one pinned glommio `LocalExecutor` per shard, the
//! cross-core channels between them, and orderly start and shutdown driven
//! from the calling thread.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{join_all, select, Either};
use glommio::channels::shared_channel::{self, ConnectedReceiver, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::env;
use crate::error::{BoxError, StartError};
use crate::ids::ShardId;
use crate::latch::Latch;
use crate::mesh::{self, Job, Router, StateSlot};

/// How the node's shards are laid out and sized.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of shards; `None` = one per CPU this process may use (its
    /// affinity mask, capped by a cgroup CPU quota). More shards than CPUs is
    /// allowed (they then share CPUs, with a warning).
    pub shards: Option<usize>,
    /// io_uring buffer memory per executor; `None` = glommio's 10 MiB, shrunk
    /// to fit the locked-memory limit. An explicit value that does not fit is
    /// refused.
    pub io_memory_bytes: Option<usize>,
    /// Busy-poll this long before an idle executor sleeps: cuts cross-core
    /// wake-up latency, costs CPU. Leave `None` when cores are shared.
    pub spin_before_park: Option<Duration>,
    /// The longest a shard runs tasks before it goes back to io_uring to
    /// submit queued I/O and reap completions (glommio's preempt timer;
    /// glommio's own default is 100 ms, see [`DEFAULT_PREEMPT_TIMER`]).
    pub preempt_timer: Duration,
    /// Executor threads are named `<prefix>-<shard>`.
    pub thread_name_prefix: String,
    /// Bound of each (from, to) cross-shard channel, in jobs.
    pub channel_capacity_jobs: usize,
}

/// A shard's preempt timer unless configured: glommio submits queued I/O
/// (a flush's writes) only between task-queue runs, and a shard busy with
/// appends could keep it in the submission queue for glommio's default
/// 100 ms while the disk idles. The engine bench's 16 KiB `flush=never`
/// appends ran 20-25% faster with 500 us (2026-12-03, PLATFORM notes).
pub const DEFAULT_PREEMPT_TIMER: Duration = Duration::from_micros(500);

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shards: None,
            io_memory_bytes: None,
            spin_before_park: None,
            preempt_timer: DEFAULT_PREEMPT_TIMER,
            thread_name_prefix: "sluice-shard".to_owned(),
            channel_capacity_jobs: mesh::DEFAULT_CHANNEL_CAPACITY_JOBS,
        }
    }
}

/// What a shard's main future returns.
pub type ShardResult = Result<(), BoxError>;

/// A shard's view of the runtime, handed to `init`.
pub struct ShardCtx<S> {
    shard: ShardId,
    cpu: usize,
    router: Router<S>,
    slot: Rc<StateSlot<S>>,
    inbound: RefCell<Vec<ConnectedReceiver<Job<S>>>>,
    shutdown: Shutdown,
    events: mpsc::Sender<Event>,
}

impl<S: 'static> ShardCtx<S> {
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn shards(&self) -> u16 {
        self.router.shards()
    }

    /// The CPU this shard's executor is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    pub fn router(&self) -> &Router<S> {
        &self.router
    }

    /// Makes `state` this shard's state and starts serving calls from other
    /// shards (queued until now). Call it once, early in `init`.
    ///
    /// Panics if called twice: a shard has exactly one state.
    pub fn install_state(&self, state: S) -> Rc<S> {
        let state = Rc::new(state);
        if self.slot.install(Rc::clone(&state)).is_err() {
            panic!("install_state called twice on {}", self.shard);
        }
        for rx in self.inbound.take() {
            glommio::spawn_local(mesh::serve_inbound(rx, Rc::clone(&state))).detach();
        }
        state
    }

    /// Resolves once the node is shutting down; shard code should then
    /// finish its work and let `init`'s future return.
    pub fn shutdown(&self) -> impl Future<Output = ()> + 'static {
        let s = self.shutdown.clone();
        async move { s.wait().await }
    }

    /// A handle on the shutdown flag that tasks of this shard can keep.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_set()
    }

    /// Asks the runtime to shut every shard down, as SIGTERM would.
    pub fn request_shutdown(&self) {
        // The main thread is gone only once every shard has exited.
        let _ = self.events.send(Event::ShutdownRequested);
    }
}

/// The shard-local shutdown flag.
#[derive(Clone, Default)]
pub struct Shutdown(Rc<Latch>);

impl Shutdown {
    pub fn is_set(&self) -> bool {
        self.0.is_set()
    }

    pub async fn wait(&self) {
        self.0.wait().await
    }
}

pub(crate) enum Event {
    Started(ShardId),
    StartFailed {
        shard: ShardId,
        cpu: usize,
        reason: String,
    },
    Exited(ShardId),
    Signal(i32),
    ShutdownRequested,
}

/// Tells the main thread a shard thread ended, however it ended.
struct ExitGuard {
    shard: ShardId,
    events: mpsc::Sender<Event>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Exited(self.shard));
    }
}

struct ShardStart<S> {
    shard: ShardId,
    cpu: usize,
    shards: u16,
    io_memory_bytes: usize,
    spin_before_park: Option<Duration>,
    preempt_timer: Duration,
    senders: Vec<Option<SharedSender<Job<S>>>>,
    receivers: Vec<Option<SharedReceiver<Job<S>>>>,
    go: oneshot::Receiver<()>,
    shutdown: oneshot::Receiver<()>,
    events: mpsc::Sender<Event>,
}

/// Starts one executor per shard, runs `init(ctx)` on each, and blocks until
/// every shard has finished.
///
/// SIGTERM or SIGINT (or [`ShardCtx::request_shutdown`], or any shard's
/// `init` future returning) makes every shard's [`ShardCtx::shutdown`]
/// resolve; a second signal exits the process at once (status 128 + signal).
/// A shard that panics or returns an error stops the others and is returned
/// as the error.
pub fn run<S, Init, Fut>(cfg: RuntimeConfig, init: Init) -> Result<(), StartError>
where
    S: 'static,
    Init: Fn(ShardCtx<S>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ShardResult> + 'static,
{
    env::check_io_uring()?;
    let budget = env::cpu_budget()?;
    let shards = cfg.shards.unwrap_or_else(|| budget.usable());
    if shards == 0 || shards > usize::from(u16::MAX) {
        return Err(StartError::Config(format!(
            "shards = {shards}: must be between 1 and {}",
            u16::MAX
        )));
    }
    if cfg.channel_capacity_jobs == 0 {
        return Err(StartError::Config(
            "channel_capacity_jobs must be at least 1".to_owned(),
        ));
    }
    if shards > budget.usable() {
        tracing::warn!(
            shards,
            usable_cpus = budget.usable(),
            "more shards than usable CPUs: shards will share CPUs"
        );
    }
    let wanted = env::memlock_needed_bytes(
        shards,
        cfg.io_memory_bytes.unwrap_or(env::DEFAULT_IO_MEMORY_BYTES),
    );
    let limit = env::raise_memlock(wanted)?;
    let io_memory_bytes = env::plan_io_memory(limit, shards, cfg.io_memory_bytes)?;
    if cfg.io_memory_bytes.is_none() && io_memory_bytes < env::DEFAULT_IO_MEMORY_BYTES {
        tracing::warn!(
            io_memory_bytes,
            memlock_limit_bytes = limit,
            "locked-memory limit shrinks io_uring buffers below 10 MiB per shard; \
             raise it with `ulimit -l unlimited` or LimitMEMLOCK=infinity"
        );
    }
    let cpus = budget.cpus_for(shards);
    tracing::info!(shards, ?cpus, io_memory_bytes, "starting shards");

    // Channel (from, to) for every ordered pair of distinct shards.
    let mut senders: Vec<Vec<Option<SharedSender<Job<S>>>>> = (0..shards)
        .map(|_| (0..shards).map(|_| None).collect())
        .collect();
    let mut receivers: Vec<Vec<Option<SharedReceiver<Job<S>>>>> = (0..shards)
        .map(|_| (0..shards).map(|_| None).collect())
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(cfg.channel_capacity_jobs);
                senders[from][to] = Some(tx);
                receivers[to][from] = Some(rx);
            }
        }
    }

    let (events_tx, events) = mpsc::channel::<Event>();
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(StartError::Signals)?;
    let signals_handle = signals.handle();
    let signal_events = events_tx.clone();
    let signal_thread = std::thread::Builder::new()
        .name(format!("{}-signals", cfg.thread_name_prefix))
        .spawn(move || {
            for sig in signals.forever() {
                if signal_events.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .map_err(StartError::Signals)?;

    let mut go_txs = Vec::with_capacity(shards);
    let mut shutdown_txs = Vec::with_capacity(shards);
    let mut handles: Vec<Option<JoinHandle<ShardResult>>> = Vec::with_capacity(shards);
    let mut spawn_error = None;
    for (i, (tx_row, rx_row)) in senders.into_iter().zip(receivers).enumerate() {
        let shard = ShardId(i as u16);
        let (go_tx, go) = oneshot::channel();
        let (shutdown_tx, shutdown) = oneshot::channel();
        go_txs.push(Some(go_tx));
        shutdown_txs.push(Some(shutdown_tx));
        let start = ShardStart {
            shard,
            cpu: cpus[i],
            shards: shards as u16,
            io_memory_bytes,
            spin_before_park: cfg.spin_before_park,
            preempt_timer: cfg.preempt_timer,
            senders: tx_row,
            receivers: rx_row,
            go,
            shutdown,
            events: events_tx.clone(),
        };
        let init = init.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{i}", cfg.thread_name_prefix))
            .spawn(move || shard_thread(start, init));
        match spawned {
            Ok(h) => handles.push(Some(h)),
            Err(source) => {
                handles.push(None);
                spawn_error = Some(StartError::Thread { shard, source });
                break;
            }
        }
    }
    drop(events_tx);

    let outcome = supervise(
        &events,
        handles.len(),
        spawn_error,
        &mut go_txs,
        &mut shutdown_txs,
    );

    // Every shard is done or was told to stop: collect them.
    let mut first_error: Option<(usize, StartError)> = outcome.error.map(|e| (0, e));
    for (i, h) in handles.into_iter().enumerate() {
        let Some(h) = h else { continue };
        let shard = ShardId(i as u16);
        let err = match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(source)) => Some(StartError::ShardFailed { shard, source }),
            Err(payload) => Some(StartError::ShardPanicked {
                shard,
                message: panic_message(payload.as_ref()),
            }),
        };
        if let Some(err) = err {
            // Report the shard that stopped first: the others stopped
            // because of it.
            let rank = outcome
                .exit_order
                .iter()
                .position(|&s| s == shard)
                .map_or(usize::MAX, |p| p + 1);
            if first_error.as_ref().is_none_or(|(r, _)| rank < *r) {
                first_error = Some((rank, err));
            }
        }
    }
    signals_handle.close();
    let _ = signal_thread.join();
    match first_error {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

struct Outcome {
    error: Option<StartError>,
    exit_order: Vec<ShardId>,
}

/// The main thread's loop: wait for every shard to start, release them, then
/// turn signals and shard exits into shutdown.
fn supervise(
    events: &mpsc::Receiver<Event>,
    spawned: usize,
    spawn_error: Option<StartError>,
    go_txs: &mut [Option<oneshot::Sender<()>>],
    shutdown_txs: &mut [Option<oneshot::Sender<()>>],
) -> Outcome {
    let shutdown_all = |txs: &mut [Option<oneshot::Sender<()>>]| {
        for tx in txs.iter_mut().filter_map(Option::take) {
            let _ = tx.send(());
        }
    };
    let mut error = spawn_error;
    let mut exit_order = Vec::new();
    let mut starting = vec![true; spawned];
    let mut exited = vec![false; spawned];
    let mut signals_seen = 0u32;
    let on_signal = |sig: i32, seen: &mut u32| {
        *seen += 1;
        if *seen > 1 {
            tracing::error!(signal = sig, "second signal: exiting now");
            std::process::exit(128 + sig);
        }
        tracing::info!(signal = sig, "signal received: shutting down");
    };

    // Start: every executor reports that it is up (or why not).
    let mut abort = error.is_some();
    while starting.iter().any(|&s| s) {
        let Ok(ev) = events.recv() else { break };
        match ev {
            Event::Started(s) => starting[s.index()] = false,
            Event::StartFailed { shard, cpu, reason } => {
                starting[shard.index()] = false;
                abort = true;
                error.get_or_insert(StartError::ExecutorStart { shard, cpu, reason });
            }
            Event::Exited(s) => {
                exited[s.index()] = true;
                exit_order.push(s);
                if starting[s.index()] {
                    starting[s.index()] = false;
                    abort = true;
                }
            }
            Event::Signal(sig) => {
                on_signal(sig, &mut signals_seen);
                abort = true;
            }
            Event::ShutdownRequested => abort = true,
        }
    }
    if abort {
        // Dropping `go` makes started shards return before running `init`.
        go_txs.iter_mut().for_each(|g| drop(g.take()));
        shutdown_all(shutdown_txs);
    } else {
        for tx in go_txs.iter_mut().filter_map(Option::take) {
            let _ = tx.send(());
        }
    }

    while exited.iter().any(|&e| !e) {
        let Ok(ev) = events.recv() else { break };
        match ev {
            Event::Exited(s) => {
                if !exited[s.index()] {
                    exited[s.index()] = true;
                    exit_order.push(s);
                }
                // A shard that stops leaves its partitions unserved: stop all.
                shutdown_all(shutdown_txs);
            }
            Event::Signal(sig) => {
                on_signal(sig, &mut signals_seen);
                shutdown_all(shutdown_txs);
            }
            Event::ShutdownRequested => shutdown_all(shutdown_txs),
            Event::Started(_) | Event::StartFailed { .. } => {}
        }
    }
    Outcome { error, exit_order }
}

fn shard_thread<S, Init, Fut>(start: ShardStart<S>, init: Init) -> ShardResult
where
    S: 'static,
    Init: Fn(ShardCtx<S>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ShardResult> + 'static,
{
    let _exit = ExitGuard {
        shard: start.shard,
        events: start.events.clone(),
    };
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(start.cpu))
        .io_memory(start.io_memory_bytes)
        .preempt_timer(start.preempt_timer)
        .name(&format!("shard-{}", start.shard.0));
    if let Some(spin) = start.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    let ex = match builder.make() {
        Ok(ex) => ex,
        Err(e) => {
            let _ = start.events.send(Event::StartFailed {
                shard: start.shard,
                cpu: start.cpu,
                reason: e.to_string(),
            });
            return Ok(());
        }
    };
    let _ = start.events.send(Event::Started(start.shard));
    ex.run(shard_main(start, init))
}

async fn shard_main<S, Init, Fut>(start: ShardStart<S>, init: Init) -> ShardResult
where
    S: 'static,
    Init: Fn(ShardCtx<S>) -> Fut,
    Fut: Future<Output = ShardResult> + 'static,
{
    let ShardStart {
        shard,
        cpu,
        shards,
        senders,
        receivers,
        go,
        shutdown,
        events,
        ..
    } = start;
    let latch = Shutdown::default();
    let watcher = latch.clone();
    glommio::spawn_local(async move {
        // Sent, or dropped by the main thread: either way, stop.
        let _ = shutdown.await;
        watcher.0.set();
    })
    .detach();
    if go.await.is_err() {
        return Ok(());
    }

    // Both ends of a shared channel wait for each other to connect, so all
    // connections of a shard are made concurrently.
    let connect_tx = join_all(senders.into_iter().map(|s| async move {
        match s {
            Some(s) => Some(s.connect().await),
            None => None,
        }
    }));
    let connect_rx = join_all(
        receivers
            .into_iter()
            .flatten()
            .map(|r| async move { r.connect().await }),
    );
    let connect = futures::future::join(connect_tx, connect_rx);
    let stopping = latch.clone();
    let stop = stopping.wait();
    futures::pin_mut!(connect, stop);
    let (txs, rxs) = match select(connect, stop).await {
        Either::Left((pair, _)) => pair,
        Either::Right(_) => return Ok(()),
    };

    let slot = Rc::new(StateSlot::new());
    let router = Router::new(shard, shards, txs, Rc::clone(&slot));
    let ctx = ShardCtx {
        shard,
        cpu,
        router,
        slot,
        inbound: RefCell::new(rxs),
        shutdown: latch,
        events,
    };
    init(ctx).await
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    /// An executor that cannot start aborts the others before `init` runs
    /// and is reported with its shard and CPU.
    #[test]
    fn an_executor_start_failure_aborts_the_start() {
        let (tx, events) = mpsc::channel();
        let (go0, mut go0_rx) = oneshot::channel();
        let (go1, _go1_rx) = oneshot::channel();
        let (sd0, mut sd0_rx) = oneshot::channel();
        let (sd1, _sd1_rx) = oneshot::channel();
        for ev in [
            Event::Started(ShardId(0)),
            Event::StartFailed {
                shard: ShardId(1),
                cpu: 3,
                reason: "no such CPU".to_owned(),
            },
            Event::Exited(ShardId(1)),
            Event::Exited(ShardId(0)),
        ] {
            tx.send(ev).expect("send");
        }
        let outcome = supervise(
            &events,
            2,
            None,
            &mut [Some(go0), Some(go1)],
            &mut [Some(sd0), Some(sd1)],
        );
        match outcome.error {
            Some(StartError::ExecutorStart { shard, cpu, reason }) => {
                assert_eq!(
                    (shard, cpu, reason.as_str()),
                    (ShardId(1), 3, "no such CPU")
                );
            }
            other => panic!("expected ExecutorStart, got {other:?}"),
        }
        assert_eq!(
            go0_rx.try_recv(),
            Err(oneshot::Canceled),
            "shard 0 must not run init"
        );
        assert_eq!(sd0_rx.try_recv(), Ok(Some(())), "shard 0 is told to stop");
        let text = StartError::ExecutorStart {
            shard: ShardId(1),
            cpu: 3,
            reason: "x".to_owned(),
        }
        .to_string();
        assert_eq!(text, "shard 1 (CPU 3) failed to start its executor: x");
    }

    /// What `taskset -c 1 sluice ...` does: the default is one shard, on
    /// CPU 1 (or on the last allowed CPU when CPU 1 is not ours).
    #[test]
    fn a_single_cpu_mask_gives_one_shard_pinned_there() {
        let allowed = sys::thread_affinity().expect("affinity");
        let cpu = if allowed.contains(&1) {
            1
        } else {
            *allowed.last().expect("at least one CPU")
        };
        let (out, seen) = mpsc::channel();
        let runner = std::thread::spawn(move || {
            sys::set_thread_affinity(&[cpu]).expect("restrict like taskset");
            let cfg = RuntimeConfig {
                io_memory_bytes: Some(256 * 1024),
                ..RuntimeConfig::default()
            };
            run(cfg, move |ctx: ShardCtx<()>| {
                let out = out.clone();
                async move {
                    let mask = sys::thread_affinity()?;
                    out.send((ctx.shards(), ctx.cpu(), mask))?;
                    Ok(())
                }
            })
        });
        let (shards, shard_cpu, mask) = seen
            .recv_timeout(Duration::from_secs(60))
            .expect("the shard started");
        runner.join().expect("runner thread").expect("runtime");
        assert_eq!(shards, 1);
        assert_eq!(shard_cpu, cpu);
        assert_eq!(mask, vec![cpu]);
    }
}
