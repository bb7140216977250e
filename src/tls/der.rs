//! The few bytes of an X.509 certificate `check` reads itself: its validity period
//! (RFC 5280 §4.1.2.5), from a minimal DER walk.

/// One DER element: `(tag, contents, rest)`.
fn element(b: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, b) = b.split_first().ok_or("truncated")?;
    let (&first, b) = b.split_first().ok_or("truncated")?;
    let (len, b) = if first < 0x80 {
        (first as usize, b)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return Err("bad length");
        }
        let len = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, &b[n..])
    };
    if b.len() < len {
        return Err("truncated");
    }
    Ok((tag, &b[..len], &b[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// `(notBefore, notAfter)` as Unix seconds.
pub fn validity(cert: &[u8]) -> Result<(i64, i64), &'static str> {
    let (tag, cert, _) = element(cert)?;
    if tag != SEQUENCE {
        return Err("not a certificate");
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return Err("not a certificate");
    }
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity.
    let (tag, _, r) = element(rest)?;
    if tag == 0xa0 {
        rest = r;
        rest = element(rest)?.2; // serialNumber
    } else {
        rest = r; // that was serialNumber
    }
    rest = element(rest)?.2; // signature
    rest = element(rest)?.2; // issuer
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return Err("no validity");
    }
    let (t1, nb, r) = element(validity)?;
    let (t2, na, _) = element(r)?;
    Ok((time(t1, nb)?, time(t2, na)?))
}

fn time(tag: u8, v: &[u8]) -> Result<i64, &'static str> {
    let digits = |s: &[u8]| -> Result<i64, &'static str> {
        s.iter().try_fold(0i64, |a, &c| {
            if c.is_ascii_digit() {
                Ok(a * 10 + (c - b'0') as i64)
            } else {
                Err("bad time")
            }
        })
    };
    let (year, rest) = match tag {
        UTC_TIME if v.len() == 13 => {
            let y = digits(&v[..2])?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, &v[2..])
        }
        GENERALIZED_TIME if v.len() == 15 => (digits(&v[..4])?, &v[4..]),
        _ => return Err("bad time"),
    };
    if rest[10] != b'Z' {
        return Err("bad time");
    }
    let (mo, d, h, mi, s) = (
        digits(&rest[0..2])?,
        digits(&rest[2..4])?,
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err("bad time");
    }
    Ok(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `YYYY-MM-DD` of Unix seconds.
pub fn date(secs: i64) -> String {
    let z = secs.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(days_from_civil(2036, 11, 22) * 86400), "2036-11-22");
        assert_eq!(time(UTC_TIME, b"261125030102Z"), Ok(1795575662));
        assert_eq!(time(GENERALIZED_TIME, b"20261125030102Z"), Ok(1795575662));
        assert!(validity(b"\x30\x03\x02\x01\x00").is_err());
    }
}
