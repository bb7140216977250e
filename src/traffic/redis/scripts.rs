//! The fleet-wide counters as Lua scripts, and typed calls that send a batch of them in one
//! pipeline.
//!
//! Every decision is one script, so it is atomic in Redis: no read-then-write from the
//! gateway. Times come from Redis's own clock (`TIME`), never from the gateway's, so
//! instances with skewed clocks agree. Expiries are set with `PEXPIRE`/`PEXPIREAT`/`SET PX`,
//! always in milliseconds. Scripts are called with `EVALSHA` (SHA-1 computed here); a
//! `NOSCRIPT` answer (a restarted or flushed Redis) is retried with `EVAL`, which loads the
//! script for the next time.
//!
//! Lua numbers are doubles: microsecond timestamps (about 1.8e15) are exact, but Lua would
//! print them in exponent form, so numbers go back to Redis through `num` (`%.0f`) and every
//! returned number is floored first (Redis truncates numbers in replies).

use std::sync::OnceLock;

use monoio::time::Instant;

use super::conn::{Redis, StoreError};
use super::wire::{Cmd, Reply};

/// A script: its body and the SHA-1 `EVALSHA` names it by.
pub struct Script {
    pub name: &'static str,
    pub body: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(name: &'static str, body: &'static str) -> Script {
        Script {
            name,
            body,
            sha: OnceLock::new(),
        }
    }

    /// The lowercase hex SHA-1 of the body.
    pub fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            let d = ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                self.body.as_bytes(),
            );
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        })
    }
}

/// GCRA. KEYS[1]: the theoretical arrival time (TAT), microseconds of Redis's clock.
/// ARGV: emission interval T (µs), burst, want. Returns {granted, retry_after_us, backlog_us}.
pub static RATE_TAKE: Script = Script::new(
    "rate_take",
    r#"local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local room = math.floor((burst * T - (tat - now)) / T)
local granted = math.min(want, math.max(room, 0))
local retry_us = 0
if granted > 0 then
  tat = tat + granted * T
  local ttl_ms = math.ceil((tat - now) / 1000) + 1
  redis.call('SET', KEYS[1], num(tat), 'PX', num(ttl_ms))
elseif want > 0 then
  retry_us = math.max(tat + T - now - burst * T, 1)
end
return {math.floor(granted), math.floor(retry_us), math.floor(tat - now)}"#,
);

/// Gives tokens back to a GCRA key. ARGV: T (µs), n. The TAT moves back by n×T, never
/// below now. Returns the backlog (TAT − now, µs) after.
pub static RATE_GIVE_BACK: Script = Script::new(
    "rate_give_back",
    r#"local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
tat = math.max(tat - tonumber(ARGV[2]) * tonumber(ARGV[1]), now)
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
local ttl_ms = math.ceil((tat - now) / 1000) + 1
redis.call('SET', KEYS[1], num(tat), 'PX', num(ttl_ms))
return math.floor(tat - now)"#,
);

/// Sliding window with an exact bound. KEYS[1]: a hash, slot index → count, where a slot is
/// `slot_ms = ceil(window_ms / slots)` milliseconds of Redis's clock. Every slot overlapping
/// (now − window, now] counts whole. ARGV: limit, window_ms, slots, want. Returns
/// {granted, retry_after_ms, used}.
pub static WINDOW_TAKE: Script = Script::new(
    "window_take",
    r#"local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now_ms = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local slot_ms = math.ceil(window_ms / tonumber(ARGV[3]))
local want = tonumber(ARGV[4])
local current = math.floor(now_ms / slot_ms)
local first = math.floor((now_ms - window_ms) / slot_ms)
local used = 0
local oldest = nil
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local index = tonumber(fields[i])
  local n = tonumber(fields[i + 1]) or 0
  if index == nil or index < first then
    redis.call('HDEL', KEYS[1], fields[i])
  elseif n > 0 then
    used = used + n
    if oldest == nil or index < oldest then oldest = index end
  end
end
local granted = math.min(want, math.max(limit - used, 0))
local retry_ms = 0
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], num(current), num(granted))
  used = used + granted
  redis.call('PEXPIRE', KEYS[1], num(window_ms + slot_ms))
elseif want > 0 and oldest ~= nil then
  retry_ms = math.max((oldest + 1) * slot_ms + window_ms - now_ms, 1)
elseif want > 0 then
  retry_ms = math.max(slot_ms, 1)
end
return {math.floor(granted), math.floor(retry_ms), math.floor(used)}"#,
);

/// Reserves a block of a quota. KEYS[1]: units used. ARGV: max, want, expire_at_ms (Unix
/// ms for PEXPIREAT, or '' for none). The block is at most a quarter of what is left
/// (rounded up), so instances that each hold a block cannot strand the quota's end.
/// Returns {granted, used}.
pub static QUOTA_RESERVE: Script = Script::new(
    "quota_reserve",
    r#"local function num(x) return string.format('%.0f', x) end
local max = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1])) or 0
local left = max - used
local granted = math.max(math.min(want, math.ceil(left / 4)), 0)
if granted > 0 then
  used = tonumber(redis.call('INCRBY', KEYS[1], num(granted)))
end
if ARGV[3] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return {math.floor(granted), math.floor(used)}"#,
);

/// Gives unused quota back. KEYS[1]: units used. ARGV: n. Never below 0; the key's expiry
/// stays. Returns used after.
pub static QUOTA_RELEASE: Script = Script::new(
    "quota_release",
    r#"local function num(x) return string.format('%.0f', x) end
local used = tonumber(redis.call('GET', KEYS[1]))
if not used then return 0 end
local n = math.min(tonumber(ARGV[1]), used)
if n > 0 then
  used = tonumber(redis.call('DECRBY', KEYS[1], num(n)))
end
return math.floor(used)"#,
);

/// A GCRA take: `want` tokens of `key`, one per `emission_us`, `burst` at most at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateTake {
    pub key: String,
    pub emission_us: u64,
    pub burst: u64,
    pub want: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateGrant {
    pub granted: u64,
    /// 0 when granted (or nothing was wanted); else microseconds until one token fits (at
    /// least 1).
    pub retry_after_us: u64,
    /// How far the TAT is ahead of now after the take, in microseconds.
    pub backlog_us: u64,
}

/// A sliding-window take: at most `limit` in any `window_ms`, counted in `slots` slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTake {
    pub key: String,
    pub limit: u64,
    pub window_ms: u64,
    pub slots: u64,
    pub want: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowGrant {
    pub granted: u64,
    /// 0 when granted (or nothing was wanted); else milliseconds until the oldest counted
    /// slot stops counting (at least 1).
    pub retry_after_ms: u64,
    /// Admissions counted in the window after the take.
    pub used: u64,
}

/// A quota reservation: up to `want` units of `max`; the key expires at `expire_at_ms`
/// (Unix milliseconds) or never.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaTake {
    pub key: String,
    pub max: u64,
    pub want: u64,
    pub expire_at_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaGrant {
    pub granted: u64,
    /// Units used fleet-wide after the reservation.
    pub used: u64,
}

impl Redis {
    /// One GCRA take per entry, all in one pipeline.
    pub async fn rate_take(&self, takes: &[RateTake]) -> Result<Vec<RateGrant>, StoreError> {
        let calls = takes
            .iter()
            .map(|t| {
                let args = [t.emission_us.max(1), t.burst, t.want].map(|n| n.to_string());
                (t.key.as_str(), args.to_vec())
            })
            .collect::<Vec<_>>();
        let r = self.eval(&RATE_TAKE, &calls, self.deadline()).await;
        let r = r.and_then(|replies| {
            replies
                .iter()
                .map(|reply| {
                    let [granted, retry_after_us, backlog_us] = ints(&RATE_TAKE, reply)?;
                    Ok(RateGrant {
                        granted,
                        retry_after_us,
                        backlog_us,
                    })
                })
                .collect()
        });
        self.count(r)
    }

    /// Returns `n` unused tokens of `key`; the backlog (µs) after.
    pub async fn rate_give_back(
        &self,
        key: &str,
        emission_us: u64,
        n: u64,
    ) -> Result<u64, StoreError> {
        let args = vec![emission_us.max(1).to_string(), n.to_string()];
        let r = self
            .eval(&RATE_GIVE_BACK, &[(key, args)], self.deadline())
            .await;
        self.count(r.and_then(|replies| one_int(&RATE_GIVE_BACK, &replies)))
    }

    /// One sliding-window take per entry, all in one pipeline.
    pub async fn window_take(&self, takes: &[WindowTake]) -> Result<Vec<WindowGrant>, StoreError> {
        let calls = takes
            .iter()
            .map(|t| {
                let args = [t.limit, t.window_ms.max(1), t.slots.max(1), t.want];
                (t.key.as_str(), args.map(|n| n.to_string()).to_vec())
            })
            .collect::<Vec<_>>();
        let r = self.eval(&WINDOW_TAKE, &calls, self.deadline()).await;
        let r = r.and_then(|replies| {
            replies
                .iter()
                .map(|reply| {
                    let [granted, retry_after_ms, used] = ints(&WINDOW_TAKE, reply)?;
                    Ok(WindowGrant {
                        granted,
                        retry_after_ms,
                        used,
                    })
                })
                .collect()
        });
        self.count(r)
    }

    /// One quota reservation per entry, all in one pipeline.
    pub async fn quota_reserve(&self, takes: &[QuotaTake]) -> Result<Vec<QuotaGrant>, StoreError> {
        let calls = takes
            .iter()
            .map(|t| {
                let expire = t.expire_at_ms.map_or(String::new(), |ms| ms.to_string());
                let args = vec![t.max.to_string(), t.want.to_string(), expire];
                (t.key.as_str(), args)
            })
            .collect::<Vec<_>>();
        let r = self.eval(&QUOTA_RESERVE, &calls, self.deadline()).await;
        let r = r.and_then(|replies| {
            replies
                .iter()
                .map(|reply| {
                    let [granted, used] = ints(&QUOTA_RESERVE, reply)?;
                    Ok(QuotaGrant { granted, used })
                })
                .collect()
        });
        self.count(r)
    }

    /// Gives back `n` unused units of a quota; the units used after.
    pub async fn quota_release(&self, key: &str, n: u64) -> Result<u64, StoreError> {
        self.quota_release_within(key, n, self.timeout()).await
    }

    /// [`Redis::quota_release`] with its own bound on the wait: giving quota back at exit
    /// holds no request, so it may wait longer than `redis_timeout_ms`.
    pub async fn quota_release_within(
        &self,
        key: &str,
        n: u64,
        wait: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let args = vec![n.to_string()];
        let deadline = Instant::now() + wait;
        let r = self.eval(&QUOTA_RELEASE, &[(key, args)], deadline).await;
        self.count(r.and_then(|replies| one_int(&QUOTA_RELEASE, &replies)))
    }

    /// The units used of each quota key (0 for a missing key).
    pub async fn quota_used(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mget = keys.iter().fold(Cmd::new("MGET"), |c, k| c.arg(k));
        let r = self.exchange(&[mget], self.deadline()).await;
        let r = r.and_then(|replies| match replies.first() {
            Some(Reply::Array(values)) if values.len() == keys.len() => {
                values.iter().map(counter).collect()
            }
            other => Err(StoreError::Reply(format!("MGET answered {other:?}"))),
        });
        self.count(r)
    }

    /// `EVALSHA` of `script` once per `(key, args)`, in one pipeline; the calls answered
    /// `NOSCRIPT` again with `EVAL`, in a second one. An error reply fails the whole batch.
    async fn eval(
        &self,
        script: &Script,
        calls: &[(&str, Vec<String>)],
        deadline: Instant,
    ) -> Result<Vec<Reply>, StoreError> {
        let invoke = |how: Cmd, key: &str, args: &[String]| {
            args.iter().fold(how.arg(1u32).arg(key), |c, a| c.arg(a))
        };
        let cmds: Vec<Cmd> = calls
            .iter()
            .map(|(key, args)| invoke(Cmd::new("EVALSHA").arg(script.sha()), key, args))
            .collect();
        let mut replies = self.exchange(&cmds, deadline).await?;
        let missing: Vec<usize> = (0..replies.len())
            .filter(|&i| matches!(&replies[i], Reply::Error(e) if e.starts_with("NOSCRIPT")))
            .collect();
        if !missing.is_empty() {
            let cmds: Vec<Cmd> = missing
                .iter()
                .map(|&i| invoke(Cmd::new("EVAL").arg(script.body), calls[i].0, &calls[i].1))
                .collect();
            let again = self.exchange(&cmds, deadline).await?;
            for (i, reply) in missing.into_iter().zip(again) {
                replies[i] = reply;
            }
        }
        if let Some(Reply::Error(e)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            return Err(StoreError::Reply(format!("{}: {e}", script.name)));
        }
        Ok(replies)
    }
}

/// A script's `{a, b, ...}` of non-negative integers.
fn ints<const N: usize>(script: &Script, reply: &Reply) -> Result<[u64; N], StoreError> {
    let bad = || StoreError::Reply(format!("{} answered {reply:?}", script.name));
    let Reply::Array(items) = reply else {
        return Err(bad());
    };
    if items.len() != N {
        return Err(bad());
    }
    let mut out = [0u64; N];
    for (o, item) in out.iter_mut().zip(items) {
        *o = match item {
            Reply::Int(i) => u64::try_from(*i).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
    }
    Ok(out)
}

/// The one integer of a one-call batch.
fn one_int(script: &Script, replies: &[Reply]) -> Result<u64, StoreError> {
    match replies {
        [Reply::Int(i)] => u64::try_from(*i)
            .map_err(|_| StoreError::Reply(format!("{} answered {i}", script.name))),
        other => Err(StoreError::Reply(format!(
            "{} answered {other:?}",
            script.name
        ))),
    }
}

/// A counter's value from `GET`/`MGET`: nil is 0.
fn counter(value: &Reply) -> Result<u64, StoreError> {
    match value {
        Reply::Bulk(None) => Ok(0),
        Reply::Bulk(Some(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| StoreError::Reply(format!("not a counter: {value:?}"))),
        other => Err(StoreError::Reply(format!("not a counter: {other:?}"))),
    }
}
