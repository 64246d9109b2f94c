//! Single-threaded primitives for one shard: a one-way latch and a FIFO
//! turnstile. No atomics, no locks: they never leave their executor.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Set once, awaited by any number of tasks of the same shard.
#[derive(Default)]
pub(crate) struct Latch {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Latch {
    pub(crate) fn is_set(&self) -> bool {
        self.set.get()
    }

    pub(crate) fn set(&self) {
        if self.set.replace(true) {
            return;
        }
        for w in self.waiters.take() {
            w.wake();
        }
    }

    pub(crate) fn wait(&self) -> LatchWait<'_> {
        LatchWait { latch: self }
    }
}

pub(crate) struct LatchWait<'a> {
    latch: &'a Latch,
}

impl Future for LatchWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.latch.is_set() {
            return Poll::Ready(());
        }
        let mut waiters = self.latch.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// First-come, first-served access to something only one task may wait on at
/// a time (a channel's send side). Tasks pass in the order they first polled
/// [`Turnstile::wait_turn`]; a cancelled waiter gives up its place.
#[derive(Default)]
pub(crate) struct Turnstile {
    queue: RefCell<VecDeque<(u64, Option<Waker>)>>,
    next_ticket: Cell<u64>,
}

impl Turnstile {
    /// No task holds or waits for a turn.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    pub(crate) fn wait_turn(&self) -> Turn<'_> {
        Turn {
            gate: self,
            ticket: None,
        }
    }

    fn leave(&self, ticket: u64) {
        let mut q = self.queue.borrow_mut();
        let was_front = q.front().is_some_and(|(t, _)| *t == ticket);
        q.retain(|(t, _)| *t != ticket);
        if was_front {
            if let Some((_, Some(w))) = q.front_mut() {
                w.wake_by_ref();
            }
        }
    }
}

pub(crate) struct Turn<'a> {
    gate: &'a Turnstile,
    ticket: Option<u64>,
}

impl<'a> Future for Turn<'a> {
    type Output = TurnGuard<'a>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TurnGuard<'a>> {
        let gate = self.gate;
        let ticket = match self.ticket {
            Some(t) => t,
            None => {
                let t = gate.next_ticket.get();
                gate.next_ticket.set(t + 1);
                gate.queue.borrow_mut().push_back((t, None));
                self.ticket = Some(t);
                t
            }
        };
        let mut q = gate.queue.borrow_mut();
        if q.front().is_some_and(|(t, _)| *t == ticket) {
            drop(q);
            self.ticket = None;
            return Poll::Ready(TurnGuard { gate, ticket });
        }
        if let Some(slot) = q.iter_mut().find(|(t, _)| *t == ticket) {
            slot.1 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            self.gate.leave(t);
        }
    }
}

/// Holds the turn; dropping it lets the next waiter in.
pub(crate) struct TurnGuard<'a> {
    gate: &'a Turnstile,
    ticket: u64,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.gate.leave(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn turns_are_fifo_and_cancellation_passes_the_turn() {
        let gate = Turnstile::default();
        let mut a = Box::pin(gate.wait_turn());
        let mut b = Box::pin(gate.wait_turn());
        let mut c = Box::pin(gate.wait_turn());
        let ga = a.as_mut().now_or_never().expect("first in line");
        assert!(b.as_mut().now_or_never().is_none());
        assert!(c.as_mut().now_or_never().is_none());
        drop(b); // cancelled while waiting
        assert!(
            c.as_mut().now_or_never().is_none(),
            "a still holds the turn"
        );
        drop(ga);
        let gc = c.as_mut().now_or_never().expect("c is next once b left");
        assert!(!gate.is_idle());
        drop(gc);
        assert!(gate.is_idle());
    }

    #[test]
    fn latch_releases_all_waiters() {
        let latch = Latch::default();
        let mut w1 = Box::pin(latch.wait());
        assert!(w1.as_mut().now_or_never().is_none());
        latch.set();
        assert!(w1.as_mut().now_or_never().is_some());
        assert!(latch.wait().now_or_never().is_some());
    }
}
