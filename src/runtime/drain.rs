//! The per-worker "stop now" signal: a future that idle connections and accept loops race
//! against their reads, completed for all of them at once when the process starts draining.
//!
//! A worker is one thread, so this is plain `Cell`/`RefCell` state; waiters deregister when
//! their future is dropped, so a long-lived keepalive connection does not accumulate them.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Drain {
    fired: Cell<bool>,
    waiters: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Completes every current and future [`Drain::wait`].
    pub fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .wakers
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            slot: None,
        }
    }
}

pub struct DrainWait<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.fired.get() {
            return Poll::Ready(());
        }
        let mut slots = self.drain.waiters.borrow_mut();
        let waker = Some(cx.waker().clone());
        match self.slot {
            Some(i) => slots.wakers[i] = waker,
            None => {
                let i = match slots.free.pop() {
                    Some(i) => {
                        slots.wakers[i] = waker;
                        i
                    }
                    None => {
                        slots.wakers.push(waker);
                        slots.wakers.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut slots = self.drain.waiters.borrow_mut();
            slots.wakers[i] = None;
            slots.free.push(i);
        }
    }
}

/// Idle keep-alive connections waiting in their tasks (parked, holding no buffer), oldest
/// first, that the worker can ask to close: out of descriptors, they make room for new
/// clients ([`Evictions::evict`]). Each waiter is a future that completes when its
/// connection is chosen; dropping it (the client sent a request) takes it off the list.
#[derive(Default)]
pub struct Evictions {
    next: Cell<u64>,
    /// Waiters by age (ids grow), with the waker of each.
    waiting: RefCell<std::collections::BTreeMap<u64, Option<Waker>>>,
    chosen: RefCell<std::collections::HashSet<u64>>,
}

impl Evictions {
    pub fn wait(&self) -> EvictWait<'_> {
        EvictWait {
            evictions: self,
            id: None,
        }
    }

    /// Chooses up to `n` of the longest-waiting connections and wakes them; how many.
    pub fn evict(&self, n: usize) -> usize {
        let mut chosen = Vec::new();
        {
            let mut waiting = self.waiting.borrow_mut();
            while chosen.len() < n {
                let Some((id, waker)) = waiting.pop_first() else {
                    break;
                };
                self.chosen.borrow_mut().insert(id);
                chosen.push(waker);
            }
        }
        let count = chosen.len();
        for w in chosen.into_iter().flatten() {
            w.wake();
        }
        count
    }
}

pub struct EvictWait<'a> {
    evictions: &'a Evictions,
    id: Option<u64>,
}

impl Future for EvictWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let e = self.evictions;
        match self.id {
            Some(id) if e.chosen.borrow_mut().remove(&id) => {
                self.id = None;
                Poll::Ready(())
            }
            Some(id) => {
                e.waiting.borrow_mut().insert(id, Some(cx.waker().clone()));
                Poll::Pending
            }
            None => {
                let id = e.next.get();
                e.next.set(id + 1);
                e.waiting.borrow_mut().insert(id, Some(cx.waker().clone()));
                self.id = Some(id);
                Poll::Pending
            }
        }
    }
}

impl Drop for EvictWait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.evictions.waiting.borrow_mut().remove(&id);
            self.evictions.chosen.borrow_mut().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn evictions_choose_the_oldest_waiters_and_forget_dropped_ones() {
        let ev = Evictions::default();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waits: Vec<_> = (0..4).map(|_| Box::pin(ev.wait())).collect();
        for w in &mut waits {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        // The second one's client sent a request: it is no longer waiting.
        drop(waits.remove(1));
        assert_eq!(ev.evict(2), 2);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(waits[0].as_mut().poll(&mut cx).is_ready());
        assert!(waits[1].as_mut().poll(&mut cx).is_ready()); // the third made
        assert!(waits[2].as_mut().poll(&mut cx).is_pending());
        assert_eq!(ev.evict(5), 1);
        assert!(waits[2].as_mut().poll(&mut cx).is_ready());
        assert_eq!(ev.evict(5), 0);
        drop(waits);
        assert!(ev.waiting.borrow().is_empty() && ev.chosen.borrow().is_empty());
    }

    #[test]
    fn fire_wakes_waiters_and_dropped_waiters_free_their_slot() {
        let drain = Drain::default();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(drain.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        {
            let mut b = Box::pin(drain.wait());
            assert!(b.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.waiters.borrow().free, vec![1]);
        drain.fire();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(drain.wait()).as_mut().poll(&mut cx).is_ready());
    }
}
