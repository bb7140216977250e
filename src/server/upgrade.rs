//! `run --upgrade-from <pid | pid file>`: a hitless restart, possibly into a new binary.
//!
//! ```text
//! new: check the old one runs and listens on our addresses → bind the same addresses
//!      beside it (SO_REUSEPORT) → workers serve → SIGUSR2 to the old one
//! old: SIGUSR2 = hand over: close the admin listener (the new one answers there), stop
//!      accepting (what is already queued is served), drain like SIGTERM, exit 0
//! ```
//!
//! Every address the new configuration shares with a running process must be held by the
//! predecessor: a port held by anyone else is refused as it is without `--upgrade-from`.
//! Which process holds a listening socket is read from `/proc` (its descriptors' socket
//! inodes against `/proc/<pid>/net/tcp{,6}`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The addresses process `pid` listens on (TCP), or `None` when its descriptors cannot be
/// read (another user's process without the privilege to look).
pub fn listening(pid: i32) -> Option<Vec<SocketAddr>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            inodes.insert(inode);
        }
    }
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        addrs.extend(
            listeners_in_table(&text)
                .into_iter()
                .filter(|(_, inode)| inodes.contains(inode))
                .map(|(addr, _)| addr),
        );
    }
    addrs.sort();
    addrs.dedup();
    Some(addrs)
}

/// `(local address, inode)` of every listening socket in a `/proc/net/tcp` or `tcp6` table.
fn listeners_in_table(text: &str) -> Vec<(SocketAddr, u64)> {
    const LISTEN: &str = "0A";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != LISTEN {
                return None;
            }
            Some((parse_proc_addr(fields[1])?, fields[9].parse().ok()?))
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6): the address as the kernel prints
/// it, in 32-bit words of host byte order, and the port in hex.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Tells the predecessor to hand over (SIGUSR2).
pub fn hand_over(pid: i32) -> Result<(), String> {
    // SAFETY: kill(2) with a positive pid and a valid signal number.
    if unsafe { libc::kill(pid, libc::SIGUSR2) } != 0 {
        return Err(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_parse() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000:2383"),
            Some("0.0.0.0:9091".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_proc_addr("0100007F"), None);
        assert_eq!(parse_proc_addr("0100:0050"), None);
    }

    #[test]
    fn only_listening_sockets_are_taken_from_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(
            listeners_in_table(table),
            vec![("127.0.0.1:8080".parse().unwrap(), 4242)]
        );
    }

    #[test]
    fn this_process_listeners_are_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mine = listening(std::process::id() as i32).unwrap();
        assert!(mine.contains(&addr), "{addr} not in {mine:?}");
        drop(l);
        let mine = listening(std::process::id() as i32).unwrap();
        assert!(!mine.contains(&addr));
    }
}
