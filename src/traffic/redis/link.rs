//! One connection's pipeline: the bytes not yet written, the callers waiting for replies
//! in the order their commands went out, and the two tasks that move them.
//!
//! A caller [`Link::send`]s its commands (appended to the outbox) and gets a [`Slot`]; the
//! writer takes the whole outbox in one write whenever it has bytes, so the commands of
//! every caller that queued meanwhile go out together; the reader hands each reply to the
//! oldest waiter, which completes its slot when it has one reply per command. A caller that
//! stops waiting leaves its waiter queued: its replies are read and dropped, the order holds.
//! [`Link::close`] fails every waiter at once and ends both tasks.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::{Poll, Waker};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::conn::StoreError;
use super::wire::{Cmd, Reply, decode_frame, frame_len};

/// Reads ask for at least half of this much room.
pub(super) const READ_CHUNK: usize = 16 * 1024;

pub(super) fn reserve(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}

/// One connection: the bytes not yet written, and the calls waiting for replies in the
/// order their commands went out.
pub(super) struct Link {
    /// Dialled: the reader and writer run.
    pub(super) ready: Cell<bool>,
    pub(super) closed: Cell<bool>,
    outbox: RefCell<Vec<u8>>,
    waiting: RefCell<VecDeque<Waiter>>,
    wake_writer: RefCell<Option<Waker>>,
    wake_reader: RefCell<Option<Waker>>,
}

struct Waiter {
    want: usize,
    got: Vec<Reply>,
    slot: Rc<Slot>,
}

impl Link {
    pub(super) fn new() -> Link {
        Link {
            ready: Cell::new(false),
            closed: Cell::new(false),
            outbox: RefCell::new(Vec::new()),
            waiting: RefCell::new(VecDeque::new()),
            wake_writer: RefCell::new(None),
            wake_reader: RefCell::new(None),
        }
    }

    /// Queues `cmds` (written when the writer next runs) and a waiter for their replies.
    pub(super) fn send(&self, cmds: &[Cmd]) -> Result<Rc<Slot>, StoreError> {
        if self.closed.get() {
            return Err(StoreError::Unavailable);
        }
        let mut out = self.outbox.borrow_mut();
        for c in cmds {
            c.encode_into(&mut out);
        }
        let slot = Rc::new(Slot::default());
        self.waiting.borrow_mut().push_back(Waiter {
            want: cmds.len(),
            got: Vec::with_capacity(cmds.len()),
            slot: slot.clone(),
        });
        wake(&self.wake_writer);
        Ok(slot)
    }

    /// Gives the next reply to the oldest waiter (nobody reads it if that caller timed out).
    fn deliver(&self, reply: Reply) -> Result<(), String> {
        let mut waiting = self.waiting.borrow_mut();
        let Some(front) = waiting.front_mut() else {
            return Err("a reply to no command".to_string());
        };
        front.got.push(reply);
        if front.got.len() == front.want
            && let Some(done) = waiting.pop_front()
        {
            drop(waiting);
            done.slot.fill(Ok(done.got));
        }
        Ok(())
    }

    /// Fails every waiter with `why` and stops the reader and writer.
    pub(super) fn close(&self, why: StoreError) {
        if self.closed.replace(true) {
            return;
        }
        self.outbox.borrow_mut().clear();
        let waiters: Vec<Waiter> = self.waiting.borrow_mut().drain(..).collect();
        for w in waiters {
            w.slot.fill(Err(why.clone()));
        }
        wake(&self.wake_writer);
        wake(&self.wake_reader);
    }

    /// Completes when the link is closed (`waker`: the task's slot).
    fn closed<'a>(&'a self, waker: &'a RefCell<Option<Waker>>) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            if self.closed.get() {
                Poll::Ready(())
            } else {
                *waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

fn wake(slot: &RefCell<Option<Waker>>) {
    let w = slot.borrow_mut().take();
    if let Some(w) = w {
        w.wake();
    }
}

/// Where a call's result lands.
#[derive(Default)]
pub(super) struct Slot {
    result: RefCell<Option<Result<Vec<Reply>, StoreError>>>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    fn fill(&self, r: Result<Vec<Reply>, StoreError>) {
        *self.result.borrow_mut() = Some(r);
        wake(&self.waker);
    }

    pub(super) fn wait(&self) -> impl Future<Output = Result<Vec<Reply>, StoreError>> + '_ {
        poll_fn(move |cx| match self.result.borrow_mut().take() {
            Some(r) => Poll::Ready(r),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// Writes the outbox, all of it at once (counted in `writes`), whenever it has bytes.
/// Returns when the link is closed (`None`) or the write fails.
pub(super) async fn write_loop<W: AsyncWriteRent>(
    link: &Link,
    mut w: W,
    writes: &Cell<u64>,
) -> Option<StoreError> {
    let mut buf = Vec::new();
    loop {
        let more = poll_fn(|cx| {
            if link.closed.get() {
                Poll::Ready(false)
            } else if !link.outbox.borrow().is_empty() {
                Poll::Ready(true)
            } else {
                *link.wake_writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !more {
            return None;
        }
        buf.clear();
        std::mem::swap(&mut buf, &mut *link.outbox.borrow_mut());
        writes.set(writes.get() + 1);
        let wrote = monoio::select! {
            _ = link.closed(&link.wake_writer) => return None,
            (r, b) = w.write_all(buf) => {
                buf = b;
                r
            }
        };
        if let Err(e) = wrote {
            return Some(StoreError::Connection(format!("write: {e}")));
        }
    }
}

/// Reads replies (after those in `buf`) and hands them to the waiters in order. Returns
/// when the link is closed (`None`) or breaks.
pub(super) async fn read_loop<R: AsyncReadRent>(
    link: &Link,
    mut r: R,
    mut buf: Vec<u8>,
) -> Option<StoreError> {
    loop {
        if let Err(e) = take_replies(link, &mut buf) {
            return Some(StoreError::Connection(format!("protocol error: {e}")));
        }
        reserve(&mut buf);
        let len = buf.len();
        let (res, slice) = monoio::select! {
            _ = link.closed(&link.wake_reader) => return None,
            got = r.read(buf.slice_mut(len..)) => got,
        };
        buf = slice.into_inner();
        let why = match res {
            Ok(0) => "closed by the server".to_string(),
            Ok(_) => continue,
            Err(e) => format!("read: {e}"),
        };
        return Some(StoreError::Connection(why));
    }
}

/// Delivers every whole reply at the start of `buf` and removes it.
fn take_replies(link: &Link, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut at = 0;
    while let Some(n) = frame_len(&buf[at..])? {
        let reply = decode_frame(&buf[at..at + n])?;
        at += n;
        link.deliver(reply)?;
    }
    buf.drain(..at);
    if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
        *buf = Vec::with_capacity(READ_CHUNK);
    }
    Ok(())
}
