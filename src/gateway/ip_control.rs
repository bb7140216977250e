//! IP control (SPEC §8): an `allow` or `deny` list of addresses and CIDR ranges on a service
//! or an API, judged after the protocol stage and before everything else an API does.
//!
//! The list is compiled once, at configuration load, into two arrays of inclusive ranges,
//! IPv4 as `u32` and IPv6 as `u128`, each sorted by start with overlapping and adjacent
//! ranges merged. A check is one binary search in one of them: O(log n) comparisons, no
//! allocation, whatever the list's length. An API without `ip_control` pays one `None` test.
//!
//! The client is the peer the connection came from (or the PROXY protocol's source, which
//! arrives as the same peer). An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, from a dual-stack
//! `[::]` listener) is judged, and named in the 403, as the IPv4 address it carries. A
//! `::ffff:a.b.c.d/p` entry with `p` ≥ 96 is read as the IPv4 range `a.b.c.d/(p-96)`; other
//! IPv6 ranges never cover an IPv4 client (`::/0` is every IPv6 address, `0.0.0.0/0` every
//! IPv4 one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{ErrorKind, GatewayError};

/// `mode`: what a listed address means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpMode {
    /// Only listed addresses may call.
    Allow,
    /// Listed addresses may not call.
    Deny,
}

/// One `ips` entry: an address (`192.0.2.7`, a /32 or /128) or a CIDR range (`10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    /// The network's first address (no bits set past the prefix).
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses an entry. Refused: anything but an address with an optional `/prefix` of
    /// decimal digits, a prefix longer than the family's bits, an IPv6 zone (`%eth0`), and
    /// an address with bits set past its prefix (`10.0.0.1/8`: a typo for `10.0.0.0/8` or
    /// for the one address `10.0.0.1`, so neither is guessed).
    pub fn parse(entry: &str) -> Result<IpNet, String> {
        let (text, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let addr: IpAddr = text.parse().map_err(|_| {
            if text.contains('%') {
                format!(
                    "\"{entry}\" has an IPv6 zone; a zone is not part of a client address, give the address without it"
                )
            } else {
                format!("\"{entry}\" is not an IP address or a CIDR range (such as 10.0.0.0/8)")
            }
        })?;
        let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= bits => n,
                    _ => {
                        return Err(format!(
                            "\"{entry}\": the prefix length /{p} is out of range 0..={bits} for an IPv{} address",
                            if bits == 32 { 4 } else { 6 }
                        ));
                    }
                }
            }
            Some(p) => {
                return Err(format!(
                    "\"{entry}\": the prefix length \"{p}\" is not a number"
                ));
            }
        };
        let net = IpNet { addr, prefix };
        let first = net.first();
        if first != addr {
            return Err(format!(
                "\"{entry}\" has bits set past the /{prefix} prefix: write \"{first}/{prefix}\" for the range, or \"{addr}\" for the one address"
            ));
        }
        // `::ffff:a.b.c.d/p`: the IPv4 range the mapped addresses stand for.
        if let IpAddr::V6(v6) = addr
            && prefix >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Ok(IpNet {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(net)
    }

    /// The first address of the range `addr/prefix`.
    fn first(self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// A compiled `ip_control` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpControl {
    pub mode: IpMode,
    /// Inclusive ranges, sorted by start, disjoint and not adjacent.
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl IpControl {
    pub fn new(mode: IpMode, nets: &[IpNet]) -> IpControl {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net.addr {
                IpAddr::V4(a) => {
                    let start = u32::from(a) & mask32(net.prefix);
                    v4.push((start, start | !mask32(net.prefix)));
                }
                IpAddr::V6(a) => {
                    let start = u128::from(a) & mask128(net.prefix);
                    v6.push((start, start | !mask128(net.prefix)));
                }
            }
        }
        IpControl {
            mode,
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Whether the list covers `ip` (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => covers(&self.v4, u32::from(a)),
            IpAddr::V6(a) => covers(&self.v6, u128::from(a)),
        }
    }

    /// Whether `ip` may call.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.contains(ip) == (self.mode == IpMode::Allow)
    }

    /// How many disjoint ranges the list compiled to (IPv4, IPv6).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }
}

/// Sorts and merges inclusive ranges into disjoint, non-adjacent ones.
fn merge<T: Ord + Copy + Successor>(mut ranges: Vec<(T, T)>) -> Box<[(T, T)]> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            // Overlapping or adjacent (the last one ends right before `start`).
            Some(last) if last.1.successor().is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out.into_boxed_slice()
}

/// Whether one of `ranges` (sorted, disjoint) holds `x`: the last range starting at or
/// before `x` must end at or after it.
fn covers<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

trait Successor: Sized {
    fn successor(self) -> Option<Self>;
}

impl Successor for u32 {
    fn successor(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Successor for u128 {
    fn successor(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// The stage: `Ok` when the API has no IP control or it admits `client`; else 403
/// `client ip <ip> is not allowed`, the IP in its canonical form.
pub fn check(control: Option<&IpControl>, client: IpAddr) -> Result<(), GatewayError> {
    match control {
        Some(c) if !c.admits(client) => Err(GatewayError::new(ErrorKind::IpRefused(
            client.to_canonical(),
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
