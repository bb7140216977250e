//! A bounded table of per-key counter states (per client IP or per caller), shared by the
//! process's workers.
//!
//! The table is split into [`SHARDS`] shards, each a short mutex over a hash map from key to
//! slot and a vector of slots: a lookup locks one shard for a hash probe and an update of a
//! few words, so two workers rarely meet and never wait long. Each shard holds at most
//! `max_keys / SHARDS` keys (at least 16). Past that, a new key takes the slot of an old one,
//! chosen by CLOCK: the hand sweeps the slots, skipping (and clearing the mark of) slots used
//! since it last passed; a slot whose counter is at rest (its state says nothing a fresh one
//! would not) is taken first. A key whose counter was not at rest when it was taken comes
//! back with a fresh counter: it can pass at most one more window's worth of requests, once
//! its limit, and only when the table is full of active keys.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

pub const SHARDS: usize = 16;

/// The least a shard holds, whatever `max_keys` says.
const MIN_SHARD_KEYS: usize = 16;

/// How many slots the hand looks at for one at rest before it takes a marked-off one.
const REST_SCAN: usize = 32;

/// Longest key held inline.
pub const INLINE_KEY: usize = 30;

/// Keys a table allocates room for at once, at most (past it, shards grow as they fill).
pub const PREALLOCATED_KEYS: usize = 1 << 20;

/// A key: inline up to [`INLINE_KEY`] bytes, boxed past it. Hashes and compares as its
/// bytes, so a map of keys is searched with a `&[u8]`.
#[derive(Clone)]
enum Key {
    Inline(u8, [u8; INLINE_KEY]),
    Boxed(Box<[u8]>),
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        if bytes.len() <= INLINE_KEY {
            let mut b = [0u8; INLINE_KEY];
            b[..bytes.len()].copy_from_slice(bytes);
            Key::Inline(bytes.len() as u8, b)
        } else {
            Key::Boxed(bytes.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline(n, b) => &b[..usize::from(*n)],
            Key::Boxed(b) => b,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.bytes().hash(h);
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

struct Slot<S> {
    key: Key,
    state: S,
    used: bool,
}

struct Shard<S> {
    index: HashMap<Key, usize>,
    slots: Vec<Slot<S>>,
    hand: usize,
}

pub struct Table<S> {
    shards: Vec<Mutex<Shard<S>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl<S: Default> Table<S> {
    pub fn new(max_keys: usize) -> Table<S> {
        let per_shard = (max_keys / SHARDS).max(MIN_SHARD_KEYS);
        // Pages of the room allocated here are touched only as keys arrive.
        let room = per_shard.min(PREALLOCATED_KEYS / SHARDS);
        Table {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        index: HashMap::with_capacity(room),
                        slots: Vec::with_capacity(room),
                        hand: 0,
                    })
                })
                .collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// The most keys the table holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Runs `f` on `key`'s state (a fresh one for a new key). `at_rest` says which states a
    /// new key may replace first.
    pub fn with<R>(
        &self,
        key: &[u8],
        at_rest: impl Fn(&S) -> bool,
        f: impl FnOnce(&mut S) -> R,
    ) -> R {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut g = shard.lock().unwrap_or_else(|p| p.into_inner());
        let sh = &mut *g;
        if let Some(&i) = sh.index.get(key) {
            let slot = &mut sh.slots[i];
            slot.used = true;
            return f(&mut slot.state);
        }
        let i = if sh.slots.len() < self.per_shard {
            sh.slots.push(Slot {
                key: Key::new(key),
                state: S::default(),
                used: true,
            });
            sh.slots.len() - 1
        } else {
            let i = victim(sh, &at_rest);
            let old = std::mem::replace(&mut sh.slots[i].key, Key::new(key));
            sh.index.remove(old.bytes());
            sh.slots[i].state = S::default();
            sh.slots[i].used = true;
            i
        };
        sh.index.insert(Key::new(key), i);
        f(&mut sh.slots[i].state)
    }

    /// Runs `f` on `key`'s state if the table has it.
    pub fn peek<R>(&self, key: &[u8], f: impl FnOnce(&S) -> R) -> Option<R> {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let g = shard.lock().unwrap_or_else(|p| p.into_inner());
        g.index.get(key).map(|&i| f(&g.slots[i].state))
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).slots.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The slot a new key takes in a full shard (see the module docs).
fn victim<S>(sh: &mut Shard<S>, at_rest: &impl Fn(&S) -> bool) -> usize {
    let n = sh.slots.len();
    for _ in 0..REST_SCAN.min(n) {
        let i = sh.hand;
        sh.hand = (sh.hand + 1) % n;
        if at_rest(&sh.slots[i].state) {
            return i;
        }
    }
    // CLOCK: the first slot not used since the hand last passed it.
    loop {
        let i = sh.hand;
        sh.hand = (sh.hand + 1) % n;
        if !sh.slots[i].used {
            return i;
        }
        sh.slots[i].used = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_state_until_the_table_is_full() {
        // Room for 64 a shard: 100 keys hashed over 16 shards never fill one (with 16 a
        // shard, one in a few hundred runs puts 17 keys in a shard and evicts one).
        let t: Table<u64> = Table::new(SHARDS * 64);
        for k in 0..100u32 {
            t.with(&k.to_be_bytes(), |_| false, |s| *s += u64::from(k));
        }
        for k in 0..100u32 {
            assert_eq!(t.peek(&k.to_be_bytes(), |s| *s), Some(u64::from(k)));
        }
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn the_table_stays_bounded_and_takes_keys_at_rest_first() {
        let t: Table<u64> = Table::new(SHARDS * 16);
        // Key 0..8 are active (state 1); every other key is at rest (state 0).
        for k in 0..100_000u32 {
            let active = k < 8;
            t.with(&k.to_be_bytes(), |s| *s == 0, |s| *s = u64::from(active));
            // Touch the active keys now and then, as a client that keeps calling would.
            if k % 64 == 0 {
                for a in 0..8u32 {
                    t.with(&a.to_be_bytes(), |s| *s == 0, |s| *s = 1);
                }
            }
        }
        assert!(t.len() <= t.capacity());
        for a in 0..8u32 {
            assert_eq!(
                t.peek(&a.to_be_bytes(), |s| *s),
                Some(1),
                "active key {a} lost"
            );
        }
    }

    #[test]
    fn a_full_table_of_active_keys_still_admits_new_ones() {
        let t: Table<u64> = Table::new(SHARDS * 16);
        for k in 0..10_000u32 {
            t.with(&k.to_be_bytes(), |_| false, |s| *s = 1);
        }
        assert_eq!(t.len(), t.capacity());
    }
}
