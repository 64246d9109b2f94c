//! Cross-core calls between the shards of one node.
//!
//! Each ordered pair of shards (from, to) has its own bounded single-producer
//! single-consumer glommio `shared_channel`. On the receiving shard one task
//! per sender drains that sender's channel and runs each job's synchronous
//! part before looking at the next job, so jobs from one sender start in the
//! order they were enqueued; the asynchronous part of each job is spawned, so
//! many run concurrently. Replies come back over a `futures` oneshot.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use glommio::{GlommioError, ResourceType};

use crate::error::RouterError;
use crate::ids::ShardId;
use crate::latch::{Latch, Turnstile};

/// Default bound of each (from, to) channel, in jobs. A full channel makes
/// the sender wait; nothing between shards grows without bound.
pub const DEFAULT_CHANNEL_CAPACITY_JOBS: usize = 1024;

/// A job as it crosses cores: runs on the target shard with its state.
pub(crate) type Job<S> = Box<dyn FnOnce(&Rc<S>) + Send + 'static>;

/// The per-shard state slot, filled once by `ShardCtx::install_state`.
pub(crate) struct StateSlot<S> {
    state: OnceCell<Rc<S>>,
    ready: Latch,
}

impl<S> StateSlot<S> {
    pub(crate) fn new() -> Self {
        Self {
            state: OnceCell::new(),
            ready: Latch::default(),
        }
    }

    pub(crate) fn install(&self, state: Rc<S>) -> Result<(), Rc<S>> {
        self.state.set(state)?;
        self.ready.set();
        Ok(())
    }

    pub(crate) async fn get(&self) -> Rc<S> {
        self.ready.wait().await;
        Rc::clone(self.state.get().expect("latch is set only after install"))
    }
}

struct Outbox<S> {
    tx: ConnectedSender<Job<S>>,
    /// Orders senders once the channel has been full: whoever waits first
    /// sends first, and nobody overtakes a waiter through the fast path.
    turns: Turnstile,
}

impl<S> Outbox<S> {
    async fn enqueue(&self, job: Job<S>, to: ShardId) -> Result<(), RouterError> {
        let stopped = RouterError::ShardStopped { shard: to };
        let job = if self.turns.is_idle() {
            match self.tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(GlommioError::WouldBlock(ResourceType::Channel(job))) => job,
                Err(_) => return Err(stopped),
            }
        } else {
            job
        };
        let _turn = self.turns.wait_turn().await;
        // Only the turn holder awaits `send`, so room seen by its waiter is
        // still there when it pushes.
        self.tx.send(job).await.map_err(|_| stopped)
    }
}

struct RouterInner<S> {
    me: ShardId,
    shards: u16,
    /// Indexed by target shard; `None` at `me`.
    outboxes: Vec<Option<Outbox<S>>>,
    local: Rc<StateSlot<S>>,
}

/// Handle for calling other shards of this node. Cheap to clone; lives on
/// one shard (it is `!Send`).
pub struct Router<S> {
    inner: Rc<RouterInner<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
        }
    }
}

/// The reply of a job already enqueued on its target shard.
pub struct Reply<R> {
    rx: oneshot::Receiver<R>,
    from: ShardId,
}

impl<R> Future for Reply<R> {
    type Output = Result<R, RouterError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let from = self.from;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| RouterError::ShardStopped { shard: from }))
    }
}

fn make_job<S: 'static, F, R>(f: F) -> (Job<S>, oneshot::Receiver<R>)
where
    F: FnOnce(&Rc<S>) -> LocalBoxFuture<'static, R> + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job<S> = Box::new(move |state: &Rc<S>| {
        let fut = f(state);
        glommio::spawn_local(async move {
            // The caller may have dropped its reply: nothing to do then.
            let _ = tx.send(fut.await);
        })
        .detach();
    });
    (job, rx)
}

impl<S: 'static> Router<S> {
    pub(crate) fn new(
        me: ShardId,
        shards: u16,
        senders: Vec<Option<ConnectedSender<Job<S>>>>,
        local: Rc<StateSlot<S>>,
    ) -> Self {
        assert_eq!(senders.len(), usize::from(shards));
        let outboxes = senders
            .into_iter()
            .map(|tx| {
                tx.map(|tx| Outbox {
                    tx,
                    turns: Turnstile::default(),
                })
            })
            .collect();
        Self {
            inner: Rc::new(RouterInner {
                me,
                shards,
                outboxes,
                local,
            }),
        }
    }

    /// Number of shards on this node.
    pub fn shards(&self) -> u16 {
        self.inner.shards
    }

    /// The shard this router lives on.
    pub fn my_shard(&self) -> ShardId {
        self.inner.me
    }

    /// Enqueues `f` on shard `to` and returns once it is queued there (it
    /// waits while that channel is full), with a [`Reply`] to await later.
    ///
    /// Ordering: jobs this shard enqueues to one target have their
    /// synchronous part (`f` itself) run there in enqueue order, i.e. in the
    /// order these futures complete; one task awaiting `submit` after
    /// `submit` therefore gets its program order. `f`'s future is then
    /// spawned on the target, so later jobs do not wait for earlier ones'
    /// async parts. On the caller's own shard `f` runs inline (no channel)
    /// before `submit` returns.
    pub async fn submit<F, R>(&self, to: ShardId, f: F) -> Result<Reply<R>, RouterError>
    where
        F: FnOnce(&Rc<S>) -> LocalBoxFuture<'static, R> + Send + 'static,
        R: Send + 'static,
    {
        let inner = &self.inner;
        if to.0 >= inner.shards {
            return Err(RouterError::NoSuchShard {
                shard: to,
                shards: inner.shards,
            });
        }
        let (job, rx) = make_job(f);
        match &inner.outboxes[to.index()] {
            None => {
                let state = inner.local.get().await;
                job(&state);
            }
            Some(outbox) => outbox.enqueue(job, to).await?,
        }
        Ok(Reply { rx, from: to })
    }

    /// [`Router::submit`] and await the reply.
    pub async fn call<F, R>(&self, to: ShardId, f: F) -> Result<R, RouterError>
    where
        F: FnOnce(&Rc<S>) -> LocalBoxFuture<'static, R> + Send + 'static,
        R: Send + 'static,
    {
        self.submit(to, f).await?.await
    }

    /// Calls every shard (this one included) with a clone of `f`; results in
    /// shard order.
    pub async fn broadcast<F, R>(&self, f: F) -> Result<Vec<R>, RouterError>
    where
        F: FnOnce(&Rc<S>) -> LocalBoxFuture<'static, R> + Send + Clone + 'static,
        R: Send + 'static,
    {
        let mut replies = Vec::with_capacity(usize::from(self.shards()));
        for s in 0..self.shards() {
            replies.push(self.submit(ShardId(s), f.clone()).await?);
        }
        futures::future::try_join_all(replies).await
    }
}

/// Runs jobs from one sender, in order, on the receiving shard.
pub(crate) async fn serve_inbound<S>(rx: ConnectedReceiver<Job<S>>, state: Rc<S>) {
    while let Some(job) = rx.recv().await {
        job(&state);
        glommio::yield_if_needed().await;
    }
}
