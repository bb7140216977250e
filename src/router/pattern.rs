//! Frontend path patterns: the syntax of SPEC §2 and the per-pattern match primitives.
//!
//! A configured `path` string is parsed once, at configuration build time, into a
//! [`PathPattern`]: one of the four tiers (`=` exact, `^~` priority prefix, regex, plain
//! prefix), where `~`/`~*` regexes and `{name}` paths share the regex tier. Each pattern knows
//! its *literal prefix*: a string every matching path starts with, which the trie uses to
//! narrow regex-tier candidates. Matching a pattern against a path never allocates: captures
//! are written into a caller-provided [`Captures`] of fixed capacity.

use regex_automata::Input;
use regex_automata::meta::Regex;
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::util::syntax;

/// Most `{name}` parameters in one path, and most named groups in one regex.
pub const MAX_PATH_PARAMS: usize = 16;
/// Most capture groups (named or not) in one `~` regex; bounds the stack slot array.
pub const MAX_REGEX_GROUPS: usize = 32;
/// Longest configured path pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 2048;
const MAX_SLOTS: usize = 2 * (MAX_REGEX_GROUPS + 1);

/// The routing tier a pattern belongs to, in priority order (SPEC §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Exact,
    PriorityPrefix,
    Regex,
    Prefix,
}

impl Tier {
    /// The name used by `ringway route` and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Exact => "exact",
            Tier::PriorityPrefix => "priority_prefix",
            Tier::Regex => "regex",
            Tier::Prefix => "prefix",
        }
    }
}

/// A parsed frontend path.
#[derive(Clone, Debug)]
pub enum PathPattern {
    /// `=/user`: the whole path equals the literal.
    Exact(Box<str>),
    /// `^~/user`: character prefix; beats the regex tier.
    PriorityPrefix(Box<str>),
    /// `/user`: character prefix; lowest tier.
    Prefix(Box<str>),
    /// `/user/{id}`: literals separated by greedy `(.+)` captures, anchored at both ends.
    Params(ParamPath),
    /// `~ re` / `~* re`: an unanchored regex search; named groups become path params.
    Regex(RegexPath),
}

/// `L0 {p1} L1 {p2} ... Ln`: `literals.len() == names.len() + 1`.
#[derive(Clone, Debug)]
pub struct ParamPath {
    pub literals: Box<[Box<str>]>,
    pub names: Box<[Box<str>]>,
}

#[derive(Clone, Debug)]
pub struct RegexPath {
    pub source: Box<str>,
    pub case_insensitive: bool,
    regex: Regex,
    /// Named groups: their names and group indexes, in order of appearance.
    names: Box<[Box<str>]>,
    groups: Box<[u32]>,
    literal_prefix: Box<str>,
}

/// Captured path parameters of one match: ranges into the matched path, no allocation.
#[derive(Clone, Copy, Debug)]
pub struct Captures<'t> {
    names: &'t [Box<str>],
    ranges: [(u32, u32); MAX_PATH_PARAMS],
}

/// Marks a named regex group that did not take part in the match.
const ABSENT: (u32, u32) = (u32::MAX, u32::MAX);

impl<'t> Captures<'t> {
    pub fn empty() -> Captures<'t> {
        Captures {
            names: &[],
            ranges: [ABSENT; MAX_PATH_PARAMS],
        }
    }

    /// `(name, value)` pairs, where the value is cut from `path` (the path that was matched).
    pub fn iter<'p>(
        &self,
        path: &'p str,
    ) -> impl Iterator<Item = (&'t str, &'p str)> + use<'t, 'p> {
        let ranges = self.ranges;
        self.names
            .iter()
            .zip(ranges)
            .filter(|(_, r)| *r != ABSENT)
            .map(move |(n, (s, e))| (&**n, path.get(s as usize..e as usize).unwrap_or("")))
    }

    /// The value of one parameter.
    pub fn get<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        self.iter(path).find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl PathPattern {
    /// Parses a configured `path` value. The error is a sentence for the config error list.
    pub fn parse(raw: &str) -> Result<PathPattern, String> {
        if raw.len() > MAX_PATTERN_BYTES {
            return Err(format!("path is longer than {MAX_PATTERN_BYTES} bytes"));
        }
        if let Some(rest) = raw.strip_prefix("^~") {
            return literal(rest.trim_start(), "^~").map(PathPattern::PriorityPrefix);
        }
        if let Some(rest) = raw.strip_prefix('=') {
            return literal(rest.trim_start(), "=").map(PathPattern::Exact);
        }
        if let Some(rest) = raw.strip_prefix("~*") {
            return RegexPath::new(rest.trim_start(), true).map(PathPattern::Regex);
        }
        if let Some(rest) = raw.strip_prefix('~') {
            return RegexPath::new(rest.trim_start(), false).map(PathPattern::Regex);
        }
        if raw.contains(['{', '}']) {
            check_path_chars(raw)?;
            return ParamPath::parse(raw).map(PathPattern::Params);
        }
        literal(raw, "").map(PathPattern::Prefix)
    }

    pub fn tier(&self) -> Tier {
        match self {
            PathPattern::Exact(_) => Tier::Exact,
            PathPattern::PriorityPrefix(_) => Tier::PriorityPrefix,
            PathPattern::Params(_) | PathPattern::Regex(_) => Tier::Regex,
            PathPattern::Prefix(_) => Tier::Prefix,
        }
    }

    /// A string that every path this pattern matches starts with; for a `~*` regex, starts
    /// with up to ASCII case (see [`PathPattern::prefix_is_case_folded`]).
    pub fn literal_prefix(&self) -> &str {
        match self {
            PathPattern::Exact(s) | PathPattern::PriorityPrefix(s) | PathPattern::Prefix(s) => s,
            PathPattern::Params(p) => &p.literals[0],
            PathPattern::Regex(r) => &r.literal_prefix,
        }
    }

    /// Whether [`PathPattern::literal_prefix`] is lowercase, to be compared ignoring ASCII case.
    pub fn prefix_is_case_folded(&self) -> bool {
        matches!(self, PathPattern::Regex(r) if r.case_insensitive)
    }

    /// Names of the path parameters this pattern captures.
    pub fn param_names(&self) -> &[Box<str>] {
        match self {
            PathPattern::Params(p) => &p.names,
            PathPattern::Regex(r) => &r.names,
            _ => &[],
        }
    }

    /// Whether `path` matches; captures are filled for the regex tier.
    pub fn matches<'t>(&'t self, path: &str, caps: &mut Captures<'t>) -> bool {
        match self {
            PathPattern::Exact(s) => path == &**s,
            PathPattern::PriorityPrefix(s) | PathPattern::Prefix(s) => path.starts_with(&**s),
            PathPattern::Params(p) => p.captures(path.as_bytes(), caps),
            PathPattern::Regex(r) => r.captures(path, caps),
        }
    }
}

/// The literal of an `=`, `^~` or plain path.
fn literal(s: &str, modifier: &str) -> Result<Box<str>, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "path after `{modifier}` must start with `/`, got `{s}`"
        ));
    }
    if s.contains(['{', '}']) {
        return Err(format!(
            "`{{name}}` parameters are only allowed in plain paths, not after `{modifier}`"
        ));
    }
    check_path_chars(s)?;
    Ok(s.into())
}

/// Rejects characters that never reach the matcher and dot segments that resolution removes.
fn check_path_chars(s: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
    {
        return Err(format!(
            "path contains {c:?}, which never appears in a routed path"
        ));
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("path contains a `.` or `..` segment; requests are matched after dot-segment resolution, so it could never match".into());
    }
    Ok(())
}

fn valid_param_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ParamPath {
    fn parse(raw: &str) -> Result<ParamPath, String> {
        if !raw.starts_with('/') {
            return Err(format!(
                "path must start with `/`, `=`, `^~`, `~` or `~*`, got `{raw}`"
            ));
        }
        let mut literals: Vec<Box<str>> = Vec::new();
        let mut names: Vec<Box<str>> = Vec::new();
        let mut rest = raw;
        loop {
            let Some(open) = rest.find(['{', '}']) else {
                literals.push(rest.into());
                break;
            };
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unbalanced `}}` in path `{raw}`"));
            }
            let lit = &rest[..open];
            if lit.is_empty() && !literals.is_empty() {
                return Err(format!(
                    "two parameters touch in `{raw}`; put a literal between them"
                ));
            }
            literals.push(lit.into());
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("unclosed `{{` in path `{raw}`"));
            };
            let name = &after[..close];
            if !valid_param_name(name) {
                return Err(format!(
                    "bad parameter name `{{{name}}}` (letters, digits, `_` and `-` only)"
                ));
            }
            if names.iter().any(|n| &**n == name) {
                return Err(format!("parameter `{{{name}}}` appears twice in the path"));
            }
            names.push(name.into());
            rest = &after[close + 1..];
        }
        if names.len() > MAX_PATH_PARAMS {
            return Err(format!(
                "more than {MAX_PATH_PARAMS} parameters in one path"
            ));
        }
        Ok(ParamPath {
            literals: literals.into(),
            names: names.into(),
        })
    }

    /// Greedy `(.+)` captures with regex semantics, in linear time.
    ///
    /// `^L0(.+)L1(.+)…Ln$` is matched leftmost-first with greedy groups. The suffix pattern
    /// starting at capture i is feasible from every start `<= M[i]` (a capture can always grow
    /// to the left), so one right-to-left pass finds each capture's end `E[i]` = the last
    /// occurrence of `L[i+1]` that leaves the rest feasible, and the forward greedy choice is
    /// exactly `E[i]`. No backtracking, so no input makes it slow.
    pub fn captures<'t>(&'t self, path: &[u8], caps: &mut Captures<'t>) -> bool {
        let lits = &self.literals;
        let n = self.names.len();
        let last = lits[n].as_bytes();
        if !path.starts_with(lits[0].as_bytes()) || !path.ends_with(last) {
            return false;
        }
        let mut ends = [0usize; MAX_PATH_PARAMS];
        // Capture n-1 ends where the final literal begins.
        let mut limit = path.len() - last.len();
        ends[n - 1] = limit;
        // `limit` is the largest feasible start of the suffix pattern after capture i,
        // plus one: a capture needs at least one byte.
        let Some(mut max_start) = limit.checked_sub(1) else {
            return false;
        };
        for i in (0..n - 1).rev() {
            let lit = lits[i + 1].as_bytes();
            // Last occurrence of lit that ends at or before the next capture's latest start.
            let Some(e) = rfind(&path[..max_start], lit) else {
                return false;
            };
            ends[i] = e;
            limit = e;
            let Some(m) = limit.checked_sub(1) else {
                return false;
            };
            max_start = m;
        }
        let mut start = lits[0].len();
        if start > max_start {
            return false;
        }
        for i in 0..n {
            if ends[i] <= start {
                return false;
            }
            caps.ranges[i] = (start as u32, ends[i] as u32);
            start = ends[i] + lits[i + 1].len();
        }
        caps.names = &self.names;
        true
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(hay.len());
    }
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| &hay[i..i + needle.len()] == needle)
}

impl RegexPath {
    fn new(source: &str, case_insensitive: bool) -> Result<RegexPath, String> {
        if source.is_empty() {
            return Err("empty regex after `~`".into());
        }
        let regex = Regex::builder()
            .syntax(syntax::Config::new().case_insensitive(case_insensitive))
            .build(source)
            .map_err(|e| format!("regex `{source}` does not compile: {e}"))?;
        let info = regex.group_info();
        if info.group_len(regex_automata::PatternID::ZERO) > MAX_REGEX_GROUPS + 1 {
            return Err(format!("regex has more than {MAX_REGEX_GROUPS} groups"));
        }
        let mut names = Vec::new();
        let mut groups = Vec::new();
        for (idx, name) in info
            .pattern_names(regex_automata::PatternID::ZERO)
            .enumerate()
        {
            if let Some(name) = name {
                names.push(Box::<str>::from(name));
                groups.push(idx as u32);
            }
        }
        if names.len() > MAX_PATH_PARAMS {
            return Err(format!(
                "regex has more than {MAX_PATH_PARAMS} named groups"
            ));
        }
        Ok(RegexPath {
            literal_prefix: regex_literal_prefix(source, case_insensitive).into(),
            source: source.into(),
            case_insensitive,
            regex,
            names: names.into(),
            groups: groups.into(),
        })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    fn captures<'t>(&'t self, path: &str, caps: &mut Captures<'t>) -> bool {
        if self.names.is_empty() {
            caps.names = &[];
            return self.regex.is_match(path);
        }
        let mut slots: [Option<NonMaxUsize>; MAX_SLOTS] = [None; MAX_SLOTS];
        let len = self.regex.group_info().slot_len().min(MAX_SLOTS);
        if self
            .regex
            .search_slots(&Input::new(path), &mut slots[..len])
            .is_none()
        {
            return false;
        }
        for (i, g) in self.groups.iter().enumerate() {
            let (s, e) = (2 * *g as usize, 2 * *g as usize + 1);
            caps.ranges[i] = match (slots[s], slots[e]) {
                (Some(s), Some(e)) => (s.get() as u32, e.get() as u32),
                _ => ABSENT,
            };
        }
        caps.names = &self.names;
        true
    }
}

/// Characters that stand for themselves when escaped with `\` in a regex.
const ESCAPED_LITERALS: &str = "\\.+*?()|[]{}^$#&-~/";

/// A literal every match of `re` starts with: only for `^`-anchored regexes without
/// alternation, and only up to the first character that is not a plain literal. Being too
/// short is safe (more candidates are tried); being too long would lose matches, hence the
/// caution.
///
/// For case-insensitive regexes the prefix is ASCII-lowercased, to be compared
/// ASCII-case-insensitively, and stops before `k` and `s`: their simple Unicode case folds
/// include non-ASCII characters (KELVIN SIGN, LATIN SMALL LETTER LONG S) that an ASCII
/// comparison would miss. It also stops at the first non-ASCII character.
fn regex_literal_prefix(re: &str, case_insensitive: bool) -> String {
    let mut out = String::new();
    let Some(body) = re.strip_prefix('^') else {
        return out;
    };
    if re.contains('|') {
        return out;
    }
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        let mut lit = match c {
            // Only escaped meta characters are literals: `\<` and `\>` are word boundaries
            // in regex-syntax (found by fuzzing), and other escapes are classes or assertions.
            '\\' => match chars.next() {
                Some(e) if ESCAPED_LITERALS.contains(e) => e,
                _ => break,
            },
            '/' | '-' | '_' | '~' | '%' | '!' | '@' | '&' | '=' | ',' | ';' | ':' | '\'' | '"' => c,
            c if c.is_ascii_alphanumeric() => c,
            _ => break,
        };
        if case_insensitive {
            if matches!(lit, 'k' | 'K' | 's' | 'S') {
                break;
            }
            lit = lit.to_ascii_lowercase();
        }
        // A quantifier makes the last literal optional or repeatable.
        if matches!(chars.peek(), Some('*' | '?' | '{' | '+')) {
            if chars.peek() == Some(&'+') {
                out.push(lit);
            }
            break;
        }
        out.push(lit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_of(pat: &str, path: &str) -> Option<Vec<(String, String)>> {
        let p = PathPattern::parse(pat).unwrap();
        let mut c = Captures::empty();
        p.matches(path, &mut c).then(|| {
            c.iter(path)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
    }

    /// The same match through the regex engine: `(?s-u)^L0(.+)L1…$`.
    fn reference(pat: &str, path: &str) -> Option<Vec<String>> {
        let PathPattern::Params(p) = PathPattern::parse(pat).unwrap() else {
            panic!()
        };
        let mut re = String::from("(?s)^");
        for (i, l) in p.literals.iter().enumerate() {
            re.push_str(&regex_syntax_escape(l));
            if i < p.names.len() {
                re.push_str("(.+)");
            }
        }
        re.push('$');
        let r = Regex::new(&re).unwrap();
        let mut c = r.create_captures();
        r.captures(path.as_bytes(), &mut c);
        c.is_match().then(|| {
            (1..=p.names.len())
                .map(|g| path[c.get_group(g).unwrap().range()].to_string())
                .collect()
        })
    }

    fn regex_syntax_escape(s: &str) -> String {
        s.chars()
            .flat_map(|c| {
                let esc = "\\.+*?()|[]{}^$#&-~".contains(c);
                esc.then_some('\\').into_iter().chain([c])
            })
            .collect()
    }

    #[test]
    fn spec_greedy_examples() {
        assert_eq!(
            caps_of("/{A}/product/{B}", "/middleware/product/apigw/detail").unwrap(),
            vec![
                ("A".into(), "middleware".into()),
                ("B".into(), "apigw/detail".into())
            ]
        );
        assert_eq!(
            caps_of("/{A}/{B}", "/middleware/apigw/detail").unwrap(),
            vec![
                ("A".into(), "middleware/apigw".into()),
                ("B".into(), "detail".into())
            ]
        );
    }

    #[test]
    fn param_matcher_agrees_with_regex_engine() {
        let pats = [
            "/{a}",
            "/{a}/",
            "/x/{a}",
            "/{a}/{b}",
            "/{a}/{b}/{c}",
            "/{a}.json",
            "/{a}/x/{b}/x",
            "/u/{id}/items/{item}",
            "/{a}ab{b}ab",
            "/{a}/{b}/x/{c}",
        ];
        let paths = [
            "/",
            "//",
            "///",
            "/a",
            "/a/",
            "/a/b",
            "/a/b/c",
            "/a/b/c/d/e",
            "/x/y",
            "/x/",
            "/a.json",
            "/a/b.json",
            "/.json",
            "/a/x/b/x",
            "/a/x/x/x/x",
            "/u/1/items/2",
            "/u/1/items/2/items/3",
            "/abab",
            "/aabab",
            "/ababab",
            "/abababab",
            "/a/b/x/c",
            "/x/x/x/x",
        ];
        for pat in pats {
            for path in paths {
                let ours = caps_of(pat, path).map(|v| v.into_iter().map(|(_, v)| v).collect());
                assert_eq!(ours, reference(pat, path), "{pat} on {path}");
            }
        }
    }

    #[test]
    fn parse_errors() {
        for (raw, frag) in [
            ("user", "must start with"),
            ("=user", "must start with `/`"),
            ("=/u/{id}", "only allowed in plain paths"),
            ("^~/u/{id}", "only allowed in plain paths"),
            ("/u/{id", "unclosed"),
            ("/u/id}", "unbalanced"),
            ("/u/{a}{b}", "touch"),
            ("/u/{a}/{a}", "twice"),
            ("/u/{a.b}", "bad parameter name"),
            ("~ (", "does not compile"),
            ("~", "empty regex"),
            ("/a/../b", "dot"),
            ("/a b", "never appears"),
            ("/a?b=1", "never appears"),
        ] {
            let err = PathPattern::parse(raw).unwrap_err();
            assert!(err.contains(frag), "{raw}: {err}");
        }
    }

    #[test]
    fn tiers_and_prefixes() {
        for (raw, tier, prefix) in [
            ("=/user", Tier::Exact, "/user"),
            ("= /user", Tier::Exact, "/user"),
            ("^~/static/", Tier::PriorityPrefix, "/static/"),
            ("/user", Tier::Prefix, "/user"),
            ("/user/{id}", Tier::Regex, "/user/"),
            ("~ ^/api/v\\d+/", Tier::Regex, "/api/v"),
            ("~ ^/api/vx?", Tier::Regex, "/api/v"),
            ("~ ^/api/vx+", Tier::Regex, "/api/vx"),
            ("~ \\.php$", Tier::Regex, ""),
            ("~ ^/a|^/b", Tier::Regex, ""),
            ("~* ^/Api/x", Tier::Regex, "/api/x"),
            ("~* ^/ASK", Tier::Regex, "/a"),
            ("~* ^/oK", Tier::Regex, "/o"),
            ("~* ^/é", Tier::Regex, "/"),
            ("~ ^/file\\.txt", Tier::Regex, "/file.txt"),
            ("~ ^/a\\>", Tier::Regex, "/a"),
            ("~ ^/\\<a", Tier::Regex, "/"),
            ("~ ^/a\\/b", Tier::Regex, "/a/b"),
            ("~ ^/a\\Ab", Tier::Regex, "/a"),
        ] {
            let p = PathPattern::parse(raw).unwrap();
            assert_eq!(p.tier(), tier, "{raw}");
            assert_eq!(p.literal_prefix(), prefix, "{raw}");
        }
    }

    #[test]
    fn regex_named_groups_capture() {
        let c = caps_of("~ ^/v(?P<ver>\\d+)/(?P<rest>.*)$", "/v2/a/b").unwrap();
        assert_eq!(
            c,
            vec![("ver".into(), "2".into()), ("rest".into(), "a/b".into())]
        );
        assert!(caps_of("~* ^/API/", "/api/x").is_some());
        assert!(caps_of("~ ^/API/", "/api/x").is_none());
    }
}
