//! The parameter stage (SPEC §3 "Parameters"): reads every declared param of the matched API
//! from the request, checks it, and lists the values the gateway itself must send to the
//! backend.
//!
//! [`apply`] is a pure function of the parsed head, the query string and the route's captures.
//! It does not rewrite the request: it fills a caller-owned [`ParamValues`] with the values to
//! *place* — a default for a missing param, or a present value that a mapping renames or
//! relocates — each with the index of its param, so the forwarder can send it at
//! [`backend_target`] and, for a moved value ([`is_moved`]), drop it from where it came.
//! Present values that stay where they are are not listed: the request carries them as sent.
//! After warm-up nothing allocates, except the message of an error.
//!
//! Rules, per param in configuration order:
//! - **header**: the first header whose name equals the param's, ignoring ASCII case; its value
//!   as sent (the head parser already trimmed it and refused control bytes). A value that is
//!   not UTF-8 fails every type, `string` included (400).
//! - **query**: the first pair whose *decoded* name equals the param's (exact case); a repeated
//!   name gives its first value. The value is percent-decoded (`+` is a space) before it is
//!   checked; a bad escape or a result that is not UTF-8 is a 400. `x` and `x=` are present
//!   with the empty value.
//! - **path**: the route's capture of that name, percent-decoded (`+` stays `+`) before it is
//!   checked. A capture that did not take part (an optional regex group) is missing.
//! - Missing and required: 403 `header X is required` / `querystring X is required` /
//!   `path variable X is required`. Missing with a default: the default is placed. Otherwise
//!   nothing.
//! - Present: checked by [`valid`], stricter than Rust's parsers (see there); failure is 400
//!   `<header|querystring|path variable> X is not a valid <int|long|float|double|boolean|string>`.
//!   The same message covers a value that cannot be decoded (bad `%XX`, not UTF-8).
//! - A placed value whose backend location is `header` must be a valid header value
//!   ([`header_value_ok`]: no control byte but HTAB, no leading or trailing SP/HTAB, which a
//!   receiver would strip). It is refused, not trimmed, so the backend never sees a value other
//!   than the one sent: 400 `<loc> X cannot be sent as a header`. Defaults are held to the same
//!   rule (the config loader should refuse such a default first).

use std::ops::Range;

use crate::config::{DataType, Location, Param};
use crate::error::{ErrorKind, GatewayError};
use crate::http::head::{RequestHead, header_values};
use crate::router::Captures;

use super::query;

/// What [`apply`] reads a request's params from.
pub struct ParamInput<'a> {
    /// The connection's read buffer: the head's spans point into it.
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    /// The raw query string, without its `?`.
    pub query: Option<&'a str>,
    /// The matched (dot-resolved) path that the captures index into.
    pub path: &'a str,
    pub captures: &'a Captures<'a>,
}

/// A value the gateway must send to the backend: the param's index in `params` and the range
/// of its (decoded) value in [`ParamValues`]' text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub param: usize,
    pub value: Range<usize>,
}

/// The values [`apply`] placed, in param order. Reuse one per connection (or worker):
/// [`ParamValues::clear`] keeps the capacity, so after warm-up nothing allocates.
#[derive(Debug, Default)]
pub struct ParamValues {
    /// Every placed value, decoded, one after the other.
    text: String,
    placed: Vec<Placed>,
    /// Where an encoded query or path value is decoded before it is checked.
    scratch: String,
}

impl ParamValues {
    pub fn clear(&mut self) {
        self.text.clear();
        self.placed.clear();
        self.scratch.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }

    pub fn len(&self) -> usize {
        self.placed.len()
    }

    /// `(param index, value)` for every placed value, in param order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.placed
            .iter()
            .map(|p| (p.param, &self.text[p.value.clone()]))
    }

    /// The placed value of the param at this index, if any.
    pub fn get(&self, param: usize) -> Option<&str> {
        self.iter().find(|(i, _)| *i == param).map(|(_, v)| v)
    }

    /// The placed entries; values are ranges of [`ParamValues::text`].
    pub fn placed(&self) -> &[Placed] {
        &self.placed
    }

    /// The text the [`Placed`] ranges index into.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn push(&mut self, param: usize, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.placed.push(Placed {
            param,
            value: start..self.text.len(),
        });
    }
}

/// Where a param goes at the backend: `(name, location)`, its `backend_name` /
/// `backend_location` where set, else its own.
pub fn backend_target(p: &Param) -> (&str, Location) {
    (
        p.backend_name.as_deref().unwrap_or(&p.name),
        p.backend_location.unwrap_or(p.location),
    )
}

/// Whether a param's value moves (renamed or relocated): then the forwarder removes it from
/// where it came and sends it at [`backend_target`]. A header renamed only in ASCII case does
/// not move (header names are case-insensitive). For a path param "removing" means nothing:
/// the backend path template decides whether `{name}` appears there.
pub fn is_moved(p: &Param) -> bool {
    let (name, location) = backend_target(p);
    location != p.location
        || match location {
            Location::Header => !name.eq_ignore_ascii_case(&p.name),
            Location::Query | Location::Path => name != p.name,
        }
}

/// The word for a location in messages: `header`, `querystring`, `path variable`.
pub fn location_word(l: Location) -> &'static str {
    match l {
        Location::Header => "header",
        Location::Query => "querystring",
        Location::Path => "path variable",
    }
}

/// The configuration word of a data type.
pub fn type_word(t: DataType) -> &'static str {
    match t {
        DataType::String => "string",
        DataType::Int => "int",
        DataType::Long => "long",
        DataType::Float => "float",
        DataType::Double => "double",
        DataType::Boolean => "boolean",
    }
}

/// Whether `v` (decoded) is of type `t` (the grammar is [`DataType::accepts`]'s, shared
/// with the configuration's check of defaults and samples).
pub fn valid(t: DataType, v: &str) -> bool {
    t.accepts(v)
}

/// Whether `v` can be sent as a header value unchanged: no control byte but HTAB (so no CR,
/// LF, NUL, DEL) and no leading or trailing SP / HTAB. Empty is fine; non-ASCII is fine.
pub fn header_value_ok(v: &str) -> bool {
    let b = v.as_bytes();
    let ws = |c: &u8| *c == b' ' || *c == b'\t';
    !b.first().is_some_and(ws)
        && !b.last().is_some_and(ws)
        && b.iter().all(|&c| (c >= 0x20 && c != 0x7f) || c == b'\t')
}

fn missing(p: &Param) -> GatewayError {
    GatewayError::new(ErrorKind::MissingParameter(format!(
        "{} {} is required",
        location_word(p.location),
        p.name
    )))
}

fn invalid(p: &Param) -> GatewayError {
    GatewayError::new(ErrorKind::BadParameter(format!(
        "{} {} is not a valid {}",
        location_word(p.location),
        p.name,
        type_word(p.data_type)
    )))
}

fn not_a_header(p: &Param) -> GatewayError {
    GatewayError::new(ErrorKind::BadParameter(format!(
        "{} {} cannot be sent as a header",
        location_word(p.location),
        p.name
    )))
}

/// A param's value in the request, decoded: `Ok(None)` when it is absent, `Err` when it is
/// present but cannot be decoded (bad `%XX`, not UTF-8): 400.
fn lookup<'s>(
    p: &Param,
    input: &'s ParamInput<'_>,
    scratch: &'s mut String,
) -> Result<Option<&'s str>, GatewayError> {
    match p.location {
        Location::Header => {
            let Some(value) =
                header_values(&input.head.headers, input.buf, p.name.as_bytes()).next()
            else {
                return Ok(None);
            };
            std::str::from_utf8(value).map(Some).map_err(|_| invalid(p))
        }
        Location::Query => match input.query.and_then(|q| query::first(q, &p.name)) {
            None => Ok(None),
            Some(raw) => query::decoded(raw, scratch)
                .map(Some)
                .ok_or_else(|| invalid(p)),
        },
        Location::Path => match input.captures.get(input.path, &p.name) {
            None => Ok(None),
            Some(raw) => query::decoded_path(raw, scratch)
                .map(Some)
                .ok_or_else(|| invalid(p)),
        },
    }
}

/// Reads, validates and places every declared param (the rules are in the module doc). `out`
/// is cleared first; on `Err` it holds what was placed before the failing param. Empty
/// `params` returns at once: no pass over the headers, no allocation.
pub fn apply(
    params: &[Param],
    input: &ParamInput<'_>,
    out: &mut ParamValues,
) -> Result<(), GatewayError> {
    apply_where(params, |_| true, input, out)
}

/// [`apply`] for the params that `judged` selects; the others are passed over as if they
/// were not declared (nothing read, nothing placed). Placed indices are still indices into
/// `params`. `ringway route` judges the path and query params this way: it has no headers.
pub fn apply_where(
    params: &[Param],
    judged: impl Fn(&Param) -> bool,
    input: &ParamInput<'_>,
    out: &mut ParamValues,
) -> Result<(), GatewayError> {
    out.clear();
    if params.is_empty() {
        return Ok(());
    }
    let mut scratch = std::mem::take(&mut out.scratch);
    let result = apply_each(params, judged, input, out, &mut scratch);
    out.scratch = scratch;
    result
}

fn apply_each(
    params: &[Param],
    judged: impl Fn(&Param) -> bool,
    input: &ParamInput<'_>,
    out: &mut ParamValues,
    scratch: &mut String,
) -> Result<(), GatewayError> {
    for (i, p) in params.iter().enumerate() {
        if !judged(p) {
            continue;
        }
        let value = match lookup(p, input, scratch)? {
            Some(v) => {
                if !valid(p.data_type, v) {
                    return Err(invalid(p));
                }
                if !is_moved(p) {
                    continue;
                }
                v
            }
            None if p.required => return Err(missing(p)),
            None => match p.default.as_deref() {
                Some(d) => d,
                None => continue,
            },
        };
        if backend_target(p).1 == Location::Header && !header_value_ok(value) {
            return Err(not_a_header(p));
        }
        out.push(i, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
