//! Backend path templates and their composition with a route match (SPEC §3).
//!
//! `/internal/user/{userid}` is parsed once into literal and parameter pieces. Composing
//! writes into a caller-owned `String`: each `{name}` takes the captured value, and for the
//! prefix tiers the part of the request path after the matched prefix is appended
//! (`/product/` → `/tencent/`: `/product/apigw/document` → `/tencent/apigw/document`).

use super::{RouteMatch, Tier};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    Param(Box<str>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPath {
    pieces: Box<[Piece]>,
}

impl BackendPath {
    pub fn parse(raw: &str) -> Result<BackendPath, String> {
        if !raw.starts_with('/') {
            return Err(format!("backend path must start with `/`, got `{raw}`"));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
        {
            return Err(format!(
                "backend path contains {c:?}; use [[services.apis.backend.constants]] for query values"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unbalanced `}}` in backend path `{raw}`"));
            }
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].into()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in backend path `{raw}`"))?;
            let name = &after[..close];
            if name.is_empty() || name.contains('{') {
                return Err(format!(
                    "bad parameter `{{{name}}}` in backend path `{raw}`"
                ));
            }
            pieces.push(Piece::Param(name.into()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.into()));
        }
        Ok(BackendPath {
            pieces: pieces.into(),
        })
    }

    /// The `{name}`s the template refers to.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(&**n),
            Piece::Literal(_) => None,
        })
    }

    /// Writes the backend path for a request whose resolved path is `path` into `out`.
    pub fn compose(&self, m: &RouteMatch<'_>, path: &str, out: &mut String) {
        out.clear();
        for piece in self.pieces.iter() {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Param(n) => out.push_str(m.captures.get(path, n).unwrap_or("")),
            }
        }
        if matches!(m.tier, Tier::Prefix | Tier::PriorityPrefix) {
            let mut rest = path.get(m.prefix_len..).unwrap_or("");
            if out.ends_with('/') && rest.starts_with('/') {
                rest = &rest[1..];
            }
            out.push_str(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Captures;

    fn compose(template: &str, tier: Tier, prefix_len: usize, path: &str) -> String {
        let bp = BackendPath::parse(template).unwrap();
        let m = RouteMatch {
            service: 0,
            api: 0,
            tier,
            prefix_len,
            captures: Captures::empty(),
        };
        let mut out = String::from("stale");
        bp.compose(&m, path, &mut out);
        out
    }

    #[test]
    fn prefix_remainder_is_appended() {
        assert_eq!(
            compose("/tencent/", Tier::Prefix, 9, "/product/apigw/document"),
            "/tencent/apigw/document"
        );
        assert_eq!(
            compose("/shop/", Tier::PriorityPrefix, 6, "/goods/a"),
            "/shop/a"
        );
        assert_eq!(compose("/shop", Tier::Prefix, 6, "/goods/a"), "/shop/a");
        assert_eq!(compose("/x", Tier::Prefix, 2, "/ab"), "/xb");
        assert_eq!(compose("/x", Tier::Exact, 0, "/ab"), "/x");
        assert_eq!(compose("/x", Tier::Regex, 0, "/ab"), "/x");
    }

    #[test]
    fn parse_errors_and_names() {
        let bp = BackendPath::parse("/a/{x}/b/{y}").unwrap();
        assert_eq!(bp.param_names().collect::<Vec<_>>(), ["x", "y"]);
        for (bad, frag) in [
            ("a/b", "must start with `/`"),
            ("/a?b=1", "constants"),
            ("/a/{x", "unclosed"),
            ("/a/x}", "unbalanced"),
            ("/a/{}", "bad parameter"),
            ("/a b", "constants"),
        ] {
            let e = BackendPath::parse(bad).unwrap_err();
            assert!(e.contains(frag), "{bad}: {e}");
        }
    }
}
