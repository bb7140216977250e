//! An API's configured path, as the docs show it: an OpenAPI path template and a concrete
//! sample path for the `curl` example.
//!
//! The four tiers of SPEC §2 map to templates like this:
//! - `=/hello` (exact), `^~/static/` and `/orders` (prefixes): the literal. A prefix API
//!   also answers every longer path; the renderers say so next to the template.
//! - `/user/{userid}`: the same template (a `{name}` may match `/` too, as SPEC §2.3 says).
//! - `~ ^/v(?P<version>\d+)/status$`: a fully anchored regex made of literals and named
//!   groups becomes `/v{version}/status`; any other regex becomes its literal prefix followed
//!   by one catch-all parameter (`/{path}`), and its named groups are listed apart.
//!
//! Literal `{` and `}` (possible only inside a regex) are percent-encoded in templates, since
//! OpenAPI would read them as parameters.

use crate::config::{Api, DataType, Location, Param};
use crate::router::PathPattern;

/// An API's path as an OpenAPI path template.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    /// The template, e.g. `/user/{userid}`; always starts with `/`.
    pub path: String,
    /// The name of the catch-all parameter this template adds (regex that did not convert);
    /// the API's own path params are then not in the template.
    pub catch_all: Option<String>,
}

/// A piece of a path: literal text, or a path parameter.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Param(String),
}

/// The API's path as literals and parameters, or `None` for a regex that is not a plain
/// template.
pub fn parts(api: &Api) -> Option<Vec<Part>> {
    match &api.path {
        PathPattern::Exact(s) | PathPattern::PriorityPrefix(s) | PathPattern::Prefix(s) => {
            Some(vec![Part::Lit(s.to_string())])
        }
        PathPattern::Params(p) => {
            let mut out = Vec::new();
            for (i, lit) in p.literals.iter().enumerate() {
                if !lit.is_empty() {
                    out.push(Part::Lit(lit.to_string()));
                }
                if let Some(name) = p.names.get(i) {
                    out.push(Part::Param(name.to_string()));
                }
            }
            Some(out)
        }
        PathPattern::Regex(r) => regex_parts(&r.source),
    }
}

/// The OpenAPI template of an API's path (see the module docs).
pub fn template(api: &Api) -> Template {
    match parts(api) {
        Some(parts) => Template {
            path: parts
                .iter()
                .map(|p| match p {
                    Part::Lit(s) => literal(s),
                    Part::Param(n) => format!("{{{n}}}"),
                })
                .collect(),
            catch_all: None,
        },
        None => {
            let name = free_name(api, "path");
            Template {
                path: format!("{}{{{name}}}", literal(&regex_prefix(api))),
                catch_all: Some(name),
            }
        }
    }
}

/// The literal prefix of a regex path, starting with `/`.
fn regex_prefix(api: &Api) -> String {
    let mut p = api.path.literal_prefix().to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    p
}

/// Whether the API also answers paths longer than its template (the two prefix tiers).
pub fn is_prefix(api: &Api) -> bool {
    matches!(
        api.path,
        PathPattern::PriorityPrefix(_) | PathPattern::Prefix(_)
    )
}

/// `base`, or `base_2`, `base_3`, ... : a name no path param of the API has.
fn free_name(api: &Api, base: &str) -> String {
    let taken = |n: &str| {
        api.params
            .iter()
            .any(|p| p.location == Location::Path && p.name == n)
    };
    let mut name = base.to_string();
    let mut i = 1;
    while taken(&name) {
        i += 1;
        name = format!("{base}_{i}");
    }
    name
}

/// A literal path part, with `{` and `}` percent-encoded.
fn literal(s: &str) -> String {
    s.replace('{', "%7B").replace('}', "%7D")
}

/// Characters a regex must escape to mean themselves.
const REGEX_META: &str = "\\.+*?()|[]{}^$#&-~";

/// `^<literals and named groups>$` as parts, or `None` for any other regex: every
/// character outside the groups must be a literal (escaped punctuation is one), and each
/// group must be a named group `(?P<n>...)` / `(?<n>...)` with no quantifier after it.
pub fn regex_parts(source: &str) -> Option<Vec<Part>> {
    let body = source.strip_prefix('^')?.strip_suffix('$')?;
    let mut out: Vec<Part> = Vec::new();
    let mut lit = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let e = chars.next()?;
                // Only escaped ASCII punctuation means itself; `\<` and `\>` are word
                // boundaries, and letters, digits, spaces and the rest are classes or errors.
                if !e.is_ascii_punctuation() || e == '<' || e == '>' {
                    return None;
                }
                lit.push(e);
            }
            '(' => {
                let rest: String = chars.clone().collect();
                let after = rest
                    .strip_prefix("?P<")
                    .or_else(|| rest.strip_prefix("?<"))?;
                let end = after.find('>')?;
                let name = &after[..end];
                if name.is_empty() {
                    return None;
                }
                let skip = rest.len() - after.len() + end + 1;
                for _ in 0..rest[..skip].chars().count() {
                    chars.next();
                }
                skip_group(&mut chars)?;
                if !lit.is_empty() {
                    out.push(Part::Lit(std::mem::take(&mut lit)));
                }
                out.push(Part::Param(name.to_string()));
            }
            c if REGEX_META.contains(c) && !matches!(c, '#' | '&' | '-' | '~') => return None,
            c if c.is_whitespace() => return None, // meaningful only with the `x` flag
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Part::Lit(lit));
    }
    match out.first() {
        Some(Part::Lit(l)) if l.starts_with('/') => Some(out),
        _ => None,
    }
}

/// Consumes a group's body up to and including its closing `)`, honouring escapes, nested
/// groups and character classes.
fn skip_group(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<()> {
    let mut depth = 1usize;
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return Some(());
                }
            }
            _ => {}
        }
    }
    None
}

/// A value to show for a param in a sample request: its sample, its default, or an example
/// of its type.
pub fn sample_value(p: &Param) -> String {
    if let Some(v) = p.sample.as_deref().or(p.default.as_deref()) {
        return v.to_string();
    }
    match p.data_type {
        DataType::Int | DataType::Long => "1".into(),
        DataType::Float | DataType::Double => "1.5".into(),
        DataType::Boolean => "true".into(),
        DataType::String => format!("my-{}", p.name),
    }
}

/// A concrete request path for the API and whether it is complete: path params take
/// [`sample_value`]s (percent-encoded but for `/`), prefixes are shown as they are, and a
/// regex that is not a plain template yields its literal prefix (incomplete: the reader must
/// finish it).
pub fn sample_path(api: &Api) -> (String, bool) {
    let Some(parts) = parts(api) else {
        return (regex_prefix(api), false);
    };
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Lit(s) => out.push_str(&s),
            Part::Param(name) => {
                let value = api
                    .params
                    .iter()
                    .find(|p| p.location == Location::Path && p.name == name)
                    .map_or_else(|| name.clone(), sample_value);
                out.push_str(&percent_encode(&value, b"/"));
            }
        }
    }
    (out, true)
}

/// Percent-encodes every byte but RFC 3986 unreserved ones and those in `keep`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::tests::config;

    #[test]
    fn regex_templates() {
        let cases: [(&str, Option<&str>); 17] = [
            (r"^/v(?P<version>\d+)/status$", Some("/v{version}/status")),
            (r"^/a/(?<x>[^/]+)/b/(?P<y>.*)$", Some("/a/{x}/b/{y}")),
            (
                r"^/files/(?P<name>[a-z()]+\))\.json$",
                Some("/files/{name}.json"),
            ),
            (r"^/g/(?P<n>[)(])$", Some("/g/{n}")),
            (r"^/x\{y\}$", Some("/x%7By%7D")),
            (r"^/a-b_c~d$", Some("/a-b_c~d")),
            (r"/v(?P<version>\d+)/status$", None), // not anchored at the start
            (r"^/v(?P<version>\d+)/status", None), // not anchored at the end
            (r"^/v(?P<version>\d+)?/s$", None),    // a quantified group
            (r"^/a|/b$", None),
            (r"^/a\d$", None),
            (r"^/(a)/b$", None), // an unnamed group
            (r"^/a.b$", None),
            (r"\.(png|jpe?g|gif)$", None),
            (r"^/a\<b$", None), // `\<` is a word boundary, not `<` (found by fuzzing)
            (r"^/a\ b$", None),
            (r"^/a\/b\.c$", Some("/a/b.c")),
        ];
        for (re, want) in cases {
            let got = regex_parts(re).map(|parts| {
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Lit(s) => literal(s),
                        Part::Param(n) => format!("{{{n}}}"),
                    })
                    .collect::<String>()
            });
            assert_eq!(got.as_deref(), want, "{re}");
        }
    }

    fn api_config(path: &str, params: &str) -> crate::config::Config {
        config(&format!(
            "[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"a\"\npath = '{path}'\n{params}\n[services.apis.backend]\ntype = \"mock\"\n"
        ))
    }

    fn path_param(name: &str, extra: &str) -> String {
        format!("[[services.apis.params]]\nname = \"{name}\"\nlocation = \"path\"\n{extra}\n")
    }

    #[test]
    fn templates_and_samples_per_tier() {
        let id = path_param("id", "data_type = \"int\"\nsample = \"42\"");
        let cases = [
            ("=/hello", String::new(), "/hello", None, "/hello", true),
            (
                "^~/static/",
                String::new(),
                "/static/",
                None,
                "/static/",
                true,
            ),
            ("/orders", String::new(), "/orders", None, "/orders", true),
            (
                "/user/{id}",
                id.clone(),
                "/user/{id}",
                None,
                "/user/42",
                true,
            ),
            (
                "/f/{name}.json",
                path_param("name", "sample = \"a b/c\""),
                "/f/{name}.json",
                None,
                "/f/a%20b/c.json",
                true,
            ),
            (
                r"~ ^/v(?P<id>\d+)/x$",
                id.clone(),
                "/v{id}/x",
                None,
                "/v42/x",
                true,
            ),
            (
                r"~* \.(png|gif)$",
                String::new(),
                "/{path}",
                Some("path"),
                "/",
                false,
            ),
            (
                r"~ ^/files/(?P<path>.+)\.txt",
                path_param("path", ""),
                "/files/{path_2}",
                Some("path_2"),
                "/files/",
                false,
            ),
        ];
        for (path, params, want, catch_all, sample, complete) in cases {
            let cfg = api_config(path, &params);
            let api = &cfg.services[0].apis[0];
            let t = template(api);
            assert_eq!(t.path, want, "{path}");
            assert_eq!(t.catch_all.as_deref(), catch_all, "{path}");
            assert_eq!(sample_path(api), (sample.to_string(), complete), "{path}");
        }
    }

    #[test]
    fn sample_values_fall_back_to_the_type() {
        let cfg = api_config(
            "/u/{a}/{b}/{c}",
            &[
                path_param("a", "data_type = \"long\""),
                path_param("b", "data_type = \"boolean\""),
                path_param("c", ""),
            ]
            .concat(),
        );
        assert_eq!(sample_path(&cfg.services[0].apis[0]).0, "/u/1/true/my-c");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("a b&c=d/é", b""), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_encode("a/b", b"/"), "a/b");
    }
}
