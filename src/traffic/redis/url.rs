//! `redis://` URLs: `redis://[[user]:password@]host[:port][/db]`.
//!
//! Parsing checks the shape only; a host name is resolved when the client connects (with
//! std's `ToSocketAddrs`), so a configuration naming a host that is down or not yet in DNS
//! still loads. Errors quote the URL with its password masked.

use std::fmt;

pub const DEFAULT_PORT: u16 = 6379;

/// Where a Redis server is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A name or an IP address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
    /// The ACL user of `AUTH user password`; `None`: `AUTH password` (the default user).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The database `SELECT`ed after connecting (0: none sent).
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        parse(text).map_err(|why| format!("\"{}\": {why}", masked(text)))
    }
}

fn parse(text: &str) -> Result<RedisUrl, String> {
    let Some(rest) = text.strip_prefix("redis://") else {
        return Err(match text.split_once("://") {
            Some((scheme, _)) => {
                format!("scheme \"{scheme}://\" is not supported (only redis://; no TLS)")
            }
            None => "not a URL: expected redis://host:port/db".to_string(),
        });
    };
    // The last '@' ends the credentials: a password may hold '@', ':' or '/' unescaped.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    if rest.contains(['?', '#']) {
        return Err("query and fragment parts are not supported".to_string());
    }
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (host, port) = host_port(hostport)?;
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => credentials(info)?,
    };
    let db = match path.strip_suffix('/').unwrap_or(path) {
        "" => 0,
        d => d
            .parse::<u32>()
            .map_err(|_| format!("database \"{d}\" is not a number (redis://host:port/0)"))?,
    };
    Ok(RedisUrl {
        host,
        port,
        username,
        password,
        db,
    })
}

fn host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err("IPv6 address without its closing ']'".to_string());
        };
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected \"{p}\" after the IPv6 address")),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("an IPv6 address needs brackets: redis://[::1]:6379".to_string());
            }
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host".to_string());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some("") => return Err("empty port after ':'".to_string()),
        Some(p) => match p.parse::<u64>() {
            Ok(n) if (1..=65535).contains(&n) => n as u16,
            Ok(n) => return Err(format!("port {n} is out of range (1-65535)")),
            Err(_) => return Err(format!("port \"{p}\" is not a number")),
        },
    };
    Ok((host.to_string(), port))
}

/// `:password`, `user:password` (percent-escapes decoded).
fn credentials(info: &str) -> Result<(Option<String>, Option<String>), String> {
    let Some((user, password)) = info.split_once(':') else {
        return Err(
            "credentials without a password: use redis://:password@host or redis://user:password@host"
                .to_string(),
        );
    };
    if password.is_empty() {
        return Err("empty password".to_string());
    }
    let user = match user {
        "" => None,
        u => Some(unescape(u)?),
    };
    Ok((user, Some(unescape(password)?)))
}

fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => out.push(v),
                None => return Err("bad percent-escape in the credentials".to_string()),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8 once unescaped".to_string())
}

/// `text` with the password (between the scheme's `//` and the last '@') replaced.
fn masked(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            let user = info.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => text.to_string(),
    }
}

/// The URL with its password masked (for logs and errors).
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.username.as_deref().unwrap_or(""))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// As [`Display`](fmt::Display): never prints the password.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, user: Option<&str>, pass: Option<&str>, db: u32) -> RedisUrl {
        RedisUrl {
            host: host.to_string(),
            port,
            username: user.map(str::to_string),
            password: pass.map(str::to_string),
            db,
        }
    }

    #[test]
    fn good_urls() {
        let cases = [
            (
                "redis://127.0.0.1:6380/2",
                url("127.0.0.1", 6380, None, None, 2),
            ),
            ("redis://localhost", url("localhost", 6379, None, None, 0)),
            ("redis://localhost/", url("localhost", 6379, None, None, 0)),
            ("redis://h:1/0/", url("h", 1, None, None, 0)),
            ("redis://[::1]:6379", url("::1", 6379, None, None, 0)),
            ("redis://[::1]/3", url("::1", 6379, None, None, 3)),
            (
                "redis://:s3cret@h:7000/1",
                url("h", 7000, None, Some("s3cret"), 1),
            ),
            (
                "redis://bob:pw@h:7000/15",
                url("h", 7000, Some("bob"), Some("pw"), 15),
            ),
            (
                "redis://:p@ss:w/rd@h",
                url("h", 6379, None, Some("p@ss:w/rd"), 0),
            ),
            ("redis://:a%40b%3A@h", url("h", 6379, None, Some("a@b:"), 0)),
        ];
        for (text, want) in cases {
            assert_eq!(RedisUrl::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            (
                "redis://h:99999",
                "\"redis://h:99999\": port 99999 is out of range (1-65535)",
            ),
            ("redis://h:0", "port 0 is out of range (1-65535)"),
            ("redis://h:http", "port \"http\" is not a number"),
            ("redis://h:", "empty port"),
            ("rediss://h", "scheme \"rediss://\" is not supported"),
            ("http://h:6379", "scheme \"http://\" is not supported"),
            ("h:6379", "not a URL"),
            ("redis://", "no host"),
            ("redis://:6379", "no host"),
            ("redis://h/x", "database \"x\" is not a number"),
            ("redis://h/-1", "database \"-1\" is not a number"),
            ("redis://::1:6379", "needs brackets"),
            ("redis://[::1:6379", "closing ']'"),
            ("redis://[::1]x", "unexpected \"x\""),
            ("redis://pw@h", "credentials without a password"),
            ("redis://u:@h", "empty password"),
            ("redis://:a%4@h", "bad percent-escape"),
            ("redis://h/0?timeout=1", "query"),
        ];
        for (text, want) in cases {
            let err = RedisUrl::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let err = RedisUrl::parse("redis://bob:hunter2@h:99999").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("redis://bob:***@h:99999"), "{err}");
        let u = RedisUrl::parse("redis://:hunter2@[::1]:7/1").unwrap();
        assert_eq!(u.to_string(), "redis://:***@[::1]:7/1");
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
