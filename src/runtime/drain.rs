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
