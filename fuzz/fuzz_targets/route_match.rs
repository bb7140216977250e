//! Differential fuzzing of the route table: the arena trie (`RouteTable::route`) against the
//! naive linear reference (`RouteTable::route_linear`), which must give the same answer for
//! every request: the same `RouteMiss`, or the same service, API, tier, prefix length and
//! captures.
//!
//! The input is decoded with `arbitrary` into a small structured world, so that patterns and
//! paths are mostly made of a tiny alphabet (`/`, `a`, `b`, `A`, `.`, `{x}`, `{y}`, the
//! modifiers `=`, `^~`, `~`, `~*` and small regex pieces) and therefore often share prefixes
//! and overlap, with a few fully arbitrary strings mixed in. Request paths are built from the
//! same alphabet or derived from the table's own patterns. Sizes are capped so that one
//! execution stays fast.
//!
//! A second, cheaper oracle rides along: every `{param}` pattern is also checked against the
//! regex engine (`(?s)^L0(.+)L1…Ln$`, leftmost-first greedy), since the trie and the linear
//! matcher share `ParamPath::captures` and could not disagree about it.
//!
//! Request paths go through `normalize_path` under either `path_normalization`, as the
//! gateway does; a "safe" result must hold no `\`, `%2F` or `%5C` and no dot segment, and
//! normalizing it again must give it back. The forwarder's `absolute_authority` must find
//! the authority `parse_target` found.

#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use regex_automata::meta::Regex;
use ringway::config::PathNormalization;
use ringway::router::target::{
    absolute_authority, normalize_path, parse_target, resolve_dot_segments,
};
use ringway::router::{
    ApiRoute, Captures, HostPattern, MethodSet, PathPattern, RouteMatch, RouteTable, ServiceRoutes,
};

const MAX_SERVICES: usize = 3;
const MAX_HOSTS: usize = 2;
const MAX_APIS: usize = 12;
const MAX_PIECES: usize = 16;
const MAX_REQUESTS: usize = 8;
const MAX_RAW_BYTES: usize = 48;

#[derive(Debug, Arbitrary)]
struct Input {
    services: Vec<Service>,
    requests: Vec<Request>,
}

#[derive(Debug, Arbitrary)]
struct Service {
    hosts: Vec<HostSel>,
    apis: Vec<Api>,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum HostSel {
    A,
    WildA,
    BA,
}

impl HostSel {
    fn text(self) -> &'static str {
        match self {
            HostSel::A => "a.com",
            HostSel::WildA => "*.a.com",
            HostSel::BA => "b.a.com",
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Api {
    pattern: Pattern,
    method: MethodSel,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum MethodSel {
    Get,
    Post,
    Any,
}

impl MethodSel {
    fn text(self) -> &'static str {
        match self {
            MethodSel::Get => "GET",
            MethodSel::Post => "POST",
            MethodSel::Any => "ANY",
        }
    }
}

/// A configured `path` value.
#[derive(Debug, Arbitrary)]
enum Pattern {
    /// `/…`: a plain prefix, or a `{param}` path when a parameter piece is in it.
    Plain(Vec<PathPiece>),
    /// `=/…` (`= /…` when the flag is set).
    Exact(bool, Vec<PathPiece>),
    /// `^~/…` (`^~ /…` when the flag is set).
    Priority(bool, Vec<PathPiece>),
    /// `~ …` / `~* …`; `^/` is put in front when `anchored`.
    Regex {
        case_insensitive: bool,
        anchored: bool,
        pieces: Vec<RegexPiece>,
    },
    /// Anything at all.
    Raw(String),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum PathPiece {
    Slash,
    A,
    B,
    UpperA,
    Dot,
    ParamX,
    ParamY,
    /// One printable ASCII byte (taken modulo the range).
    Ascii(u8),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum RegexPiece {
    Slash,
    A,
    B,
    UpperA,
    /// `.`
    AnyChar,
    /// `.*`
    DotStar,
    /// `\.`
    EscDot,
    Caret,
    Dollar,
    Plus,
    Star,
    Question,
    Pipe,
    /// `(?P<x>[^/]+)`
    GroupX,
    /// `(?P<y>.*)`
    GroupY,
    /// `(a|b)`
    Alt,
    /// `[ab]`
    Class,
    /// `\d`
    Digit,
    /// `\`
    Backslash,
    /// `\` and one ASCII punctuation character (taken modulo the set): the escape branch of
    /// the literal-prefix extraction, and the few escapes that are not literals.
    EscPunct(u8),
    Ascii(u8),
}

#[derive(Debug, Arbitrary)]
struct Request {
    host: ReqHost,
    method: ReqMethod,
    target: Target,
    /// `path_normalization = "none"` instead of `"safe"`.
    no_normalization: bool,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum ReqHost {
    None,
    A,
    XA,
    UpperBAPort,
    Zzz,
}

impl ReqHost {
    fn text(self) -> Option<&'static str> {
        match self {
            ReqHost::None => None,
            ReqHost::A => Some("a.com"),
            ReqHost::XA => Some("x.a.com"),
            ReqHost::UpperBAPort => Some("B.A.COM:80"),
            ReqHost::Zzz => Some("zzz"),
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum ReqMethod {
    Get,
    Post,
    Put,
}

impl ReqMethod {
    fn text(self) -> &'static str {
        match self {
            ReqMethod::Get => "GET",
            ReqMethod::Post => "POST",
            ReqMethod::Put => "PUT",
        }
    }
}

/// A raw request-target, before `parse_target` and dot-segment resolution.
#[derive(Debug, Arbitrary)]
enum Target {
    Pieces {
        /// Absolute-form (`http://authority/…`): its authority replaces the Host.
        authority: ReqHost,
        absolute: bool,
        pieces: Vec<ReqPiece>,
        query: bool,
    },
    /// A path made from one of the table's patterns (so that requests actually reach the
    /// routes): the pattern without its modifier, `{name}` replaced by `v`, regex operators
    /// dropped, cut after `cut % (len + 1)` characters when `cut < 128`, then `suffix`
    /// appended. Without this, requests rarely got past `/` in practice.
    FromPattern {
        api: u8,
        cut: u8,
        suffix: Vec<ReqPiece>,
    },
    Raw(String),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum ReqPiece {
    Slash,
    A,
    B,
    UpperA,
    Dot,
    DotDot,
    X,
    Y,
    /// `%2e`
    PctDot,
    /// `%2E`
    PctUpperDot,
    /// `%61` (`a`)
    PctA,
    /// `%2f`
    PctSlash,
    /// `%25` (`%`)
    PctPercent,
    /// `\`
    Backslash,
    Ascii(u8),
    Char(char),
}

fn printable(b: u8) -> char {
    (b'!' + b % (b'~' - b'!' + 1)) as char
}

fn punctuation(b: u8) -> char {
    const SET: &[u8] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    SET[b as usize % SET.len()] as char
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_RAW_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn render_path_pieces(out: &mut String, pieces: &[PathPiece]) {
    for p in pieces.iter().take(MAX_PIECES) {
        match p {
            PathPiece::Slash => out.push('/'),
            PathPiece::A => out.push('a'),
            PathPiece::B => out.push('b'),
            PathPiece::UpperA => out.push('A'),
            PathPiece::Dot => out.push('.'),
            PathPiece::ParamX => out.push_str("{x}"),
            PathPiece::ParamY => out.push_str("{y}"),
            PathPiece::Ascii(b) => out.push(printable(*b)),
        }
    }
}

impl Pattern {
    fn render(&self) -> String {
        let mut s = String::new();
        match self {
            Pattern::Plain(p) => {
                s.push('/');
                render_path_pieces(&mut s, p);
            }
            Pattern::Exact(space, p) | Pattern::Priority(space, p) => {
                s.push_str(if matches!(self, Pattern::Exact(..)) {
                    "="
                } else {
                    "^~"
                });
                if *space {
                    s.push(' ');
                }
                s.push('/');
                render_path_pieces(&mut s, p);
            }
            Pattern::Regex {
                case_insensitive,
                anchored,
                pieces,
            } => {
                s.push_str(if *case_insensitive { "~* " } else { "~ " });
                if *anchored {
                    s.push_str("^/");
                }
                for p in pieces.iter().take(MAX_PIECES) {
                    match p {
                        RegexPiece::Slash => s.push('/'),
                        RegexPiece::A => s.push('a'),
                        RegexPiece::B => s.push('b'),
                        RegexPiece::UpperA => s.push('A'),
                        RegexPiece::AnyChar => s.push('.'),
                        RegexPiece::DotStar => s.push_str(".*"),
                        RegexPiece::EscDot => s.push_str("\\."),
                        RegexPiece::Caret => s.push('^'),
                        RegexPiece::Dollar => s.push('$'),
                        RegexPiece::Plus => s.push('+'),
                        RegexPiece::Star => s.push('*'),
                        RegexPiece::Question => s.push('?'),
                        RegexPiece::Pipe => s.push('|'),
                        RegexPiece::GroupX => s.push_str("(?P<x>[^/]+)"),
                        RegexPiece::GroupY => s.push_str("(?P<y>.*)"),
                        RegexPiece::Alt => s.push_str("(a|b)"),
                        RegexPiece::Class => s.push_str("[ab]"),
                        RegexPiece::Digit => s.push_str("\\d"),
                        RegexPiece::Backslash => s.push('\\'),
                        RegexPiece::EscPunct(b) => {
                            s.push('\\');
                            s.push(punctuation(*b));
                        }
                        RegexPiece::Ascii(b) => s.push(printable(*b)),
                    }
                }
            }
            Pattern::Raw(r) => s.push_str(clip(r)),
        }
        s
    }
}

fn render_req_pieces(s: &mut String, pieces: &[ReqPiece]) {
    for p in pieces.iter().take(MAX_PIECES) {
        match p {
            ReqPiece::Slash => s.push('/'),
            ReqPiece::A => s.push('a'),
            ReqPiece::B => s.push('b'),
            ReqPiece::UpperA => s.push('A'),
            ReqPiece::Dot => s.push('.'),
            ReqPiece::DotDot => s.push_str(".."),
            ReqPiece::X => s.push('x'),
            ReqPiece::Y => s.push('y'),
            ReqPiece::PctDot => s.push_str("%2e"),
            ReqPiece::PctUpperDot => s.push_str("%2E"),
            ReqPiece::PctA => s.push_str("%61"),
            ReqPiece::PctSlash => s.push_str("%2f"),
            ReqPiece::PctPercent => s.push_str("%25"),
            ReqPiece::Backslash => s.push('\\'),
            ReqPiece::Ascii(b) => s.push(printable(*b)),
            ReqPiece::Char(c) => s.push(*c),
        }
    }
}

/// The path-like part of a pattern text: see [`Target::FromPattern`].
fn path_from_pattern(text: &str) -> String {
    let body = text
        .strip_prefix("^~")
        .or_else(|| text.strip_prefix('='))
        .or_else(|| text.strip_prefix("~*"))
        .or_else(|| text.strip_prefix('~'))
        .unwrap_or(text)
        .trim_start();
    let mut out = String::new();
    let mut in_param = false;
    for c in body.chars() {
        match c {
            '{' if text.starts_with('/') => {
                in_param = true;
                out.push('v');
            }
            '}' if in_param => in_param = false,
            _ if in_param => {}
            '\\' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '|' | '[' | ']' | '<' | '>' | '{'
            | '}' => {}
            c => out.push(c),
        }
    }
    out
}

impl Target {
    fn render(&self, patterns: &[String]) -> String {
        match self {
            Target::Raw(r) => clip(r).to_string(),
            Target::Pieces {
                authority,
                absolute,
                pieces,
                query,
            } => {
                let mut s = String::new();
                if *absolute {
                    // `ReqHost::None` stands for an empty authority, which parse_target refuses.
                    s.push_str("http://");
                    s.push_str(authority.text().unwrap_or(""));
                }
                s.push('/');
                render_req_pieces(&mut s, pieces);
                if *query {
                    s.push_str("?a=/b");
                }
                s
            }
            Target::FromPattern { api, cut, suffix } => {
                let mut s = match patterns.len() {
                    0 => String::new(),
                    n => path_from_pattern(&patterns[*api as usize % n]),
                };
                // Half the time the whole path, else a cut of it.
                if *cut < 128 {
                    let keep = *cut as usize % (s.chars().count() + 1);
                    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
                    s.truncate(end);
                }
                if !s.starts_with('/') {
                    s.insert(0, '/');
                }
                render_req_pieces(&mut s, suffix);
                s
            }
        }
    }
}

/// A parsed pattern plus, for `{param}` paths, the regex that defines its semantics.
#[derive(Clone)]
struct Parsed {
    pattern: PathPattern,
    param_reference: Option<Regex>,
}

thread_local! {
    /// Parsing (regex compilation above all) dominates an execution; patterns repeat a lot
    /// between executions, and parsing is a pure function of the text.
    static CACHE: RefCell<HashMap<String, Option<Parsed>>> = RefCell::new(HashMap::new());
}

fn parse_cached(text: &str) -> Option<Parsed> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(p) = c.get(text) {
            return p.clone();
        }
        if c.len() >= 8192 {
            c.clear();
        }
        let parsed = PathPattern::parse(text).ok().map(|pattern| {
            let param_reference = match &pattern {
                PathPattern::Params(pp) => {
                    let mut re = String::from("(?s)^");
                    for (i, l) in pp.literals.iter().enumerate() {
                        re.push_str(&regex_escape(l));
                        if i < pp.names.len() {
                            re.push_str("(.+)");
                        }
                    }
                    re.push('$');
                    Some(Regex::new(&re).expect("escaped param reference regex compiles"))
                }
                _ => None,
            };
            Parsed {
                pattern,
                param_reference,
            }
        });
        c.insert(text.to_string(), parsed.clone());
        parsed
    })
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_punctuation() && c != '<' && c != '>' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

type Caps<'a> = Vec<(&'a str, &'a str)>;

fn summary<'a>(m: &RouteMatch<'a>, path: &'a str) -> (usize, usize, &'static str, usize, Caps<'a>) {
    (
        m.service,
        m.api,
        m.tier.as_str(),
        m.prefix_len,
        m.captures.iter(path).collect(),
    )
}

fuzz_target!(|input: Input| {
    let mut world = String::new();
    let mut services = Vec::new();
    let mut params: Vec<(String, Parsed)> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for (s, svc) in input.services.iter().take(MAX_SERVICES).enumerate() {
        let hosts: Vec<HostPattern> = svc
            .hosts
            .iter()
            .take(MAX_HOSTS)
            .map(|h| HostPattern::parse(h.text()).expect("fixed host patterns parse"))
            .collect();
        let _ = writeln!(world, "service {s} hosts {hosts:?}");
        let mut apis = Vec::new();
        for api in svc.apis.iter().take(MAX_APIS) {
            let text = api.pattern.render();
            let Some(parsed) = parse_cached(&text) else {
                continue;
            };
            let _ = writeln!(
                world,
                "  api {} {:?} {}",
                apis.len(),
                text,
                api.method.text()
            );
            if parsed.param_reference.is_some() {
                params.push((text.clone(), parsed.clone()));
            }
            texts.push(text);
            apis.push(ApiRoute {
                pattern: parsed.pattern,
                methods: MethodSet::from_config(api.method.text()).expect("fixed methods parse"),
            });
        }
        services.push(ServiceRoutes { hosts, apis });
    }
    let Ok(table) = RouteTable::build(&services) else {
        return;
    };

    let mut buf = String::new();
    for req in input.requests.iter().take(MAX_REQUESTS) {
        let raw = req.target.render(&texts);
        let Ok(t) = parse_target(&raw) else {
            continue;
        };
        assert_eq!(
            absolute_authority(raw.as_bytes()),
            t.authority.map(str::as_bytes),
            "forwarder and router disagree on the authority of {raw:?}"
        );
        // As the real callers do: an absolute-form authority replaces the Host header.
        let host = t.authority.or(req.host.text());
        let mode = if req.no_normalization {
            PathNormalization::None
        } else {
            PathNormalization::Safe
        };
        if !t.path.contains(['%', '\\']) {
            let (mut a, mut b) = (String::new(), String::new());
            assert_eq!(
                normalize_path(t.path, PathNormalization::Safe, &mut a),
                normalize_path(t.path, PathNormalization::None, &mut b),
                "without escapes both settings agree on {:?}",
                t.path
            );
        }
        let Ok(path) = normalize_path(t.path, mode, &mut buf) else {
            continue;
        };
        if mode == PathNormalization::Safe {
            let lower = path.to_ascii_lowercase();
            assert!(
                !path.contains('\\') && !lower.contains("%2f") && !lower.contains("%5c"),
                "{path:?} from {raw:?}"
            );
            let mut again = String::new();
            assert_eq!(
                normalize_path(path, mode, &mut again),
                Ok(path),
                "normalizing {path:?} again (from {raw:?})"
            );
            assert_eq!(
                resolve_dot_segments(path, &mut again),
                Ok(path),
                "dot segments left in {path:?} (from {raw:?})"
            );
        }
        let method = req.method.text();

        let fast = table.route(host, method, path);
        let slow = table.route_linear(host, method, path);
        let ctx =
            || format!("request {method} host={host:?} target={raw:?} path={path:?}\n{world}");
        match (&fast, &slow) {
            (Err(a), Err(b)) => assert_eq!(a, b, "trie vs linear miss differ\n{}", ctx()),
            (Ok(a), Ok(b)) => assert_eq!(
                summary(a, path),
                summary(b, path),
                "trie vs linear match differ (service, api, tier, prefix_len, captures)\n{}",
                ctx()
            ),
            _ => panic!(
                "trie vs linear differ: trie {:?} linear {:?}\n{}",
                fast.as_ref().map(|m| summary(m, path)),
                slow.as_ref().map(|m| summary(m, path)),
                ctx()
            ),
        }
        // The `{param}` primitive against its definition through the regex engine.
        for (text, p) in &params {
            let re = p.param_reference.as_ref().unwrap();
            let mut caps = Captures::empty();
            let ours: Option<Vec<&str>> = p
                .pattern
                .matches(path, &mut caps)
                .then(|| caps.iter(path).map(|(_, v)| v).collect());
            let mut rc = re.create_captures();
            re.captures(path, &mut rc);
            let want: Option<Vec<&str>> = rc.is_match().then(|| {
                (1..rc.group_len())
                    .map(|g| &path[rc.get_group(g).expect("(.+) groups take part").range()])
                    .collect()
            });
            assert_eq!(ours, want, "param pattern {text:?} on path {path:?}");
        }
    }
});
