//! Placeholder until the query module lands.
use std::ops::Range;
pub struct Pair<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub range: Range<usize>,
}
pub fn pairs(query: &str) -> impl Iterator<Item = Pair<'_>> {
    let base = query.as_ptr() as usize;
    query.split('&').filter(|p| !p.is_empty()).map(move |p| {
        let start = p.as_ptr() as usize - base;
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        Pair {
            name,
            value,
            range: start..start + p.len(),
        }
    })
}
pub fn name_is(raw: &str, name: &str) -> bool {
    raw == name
}
pub fn encode_into(v: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}
