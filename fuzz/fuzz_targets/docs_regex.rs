//! `ringway::docs::paths::regex_parts` (a regex path turned into an OpenAPI template) on
//! arbitrary text: it never panics, and when it converts, the result is sound:
//! - the first part is literal text starting with `/`, and no two literal parts are adjacent;
//! - parameter names are non-empty and appear in the source as `<name>`;
//! - for a regex with no group, the one literal part is the text the regex matches: the
//!   regex (compiled by regex-automata, as the router does) matches it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regex_automata::meta::Regex;
use ringway::docs::paths::{Part, regex_parts};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if source.len() > 512 {
        return;
    }
    let Some(parts) = regex_parts(source) else {
        return;
    };
    match parts.first() {
        Some(Part::Lit(l)) => assert!(l.starts_with('/'), "{source:?} -> {l:?}"),
        _ => panic!("{source:?}: the template does not start with a literal"),
    }
    for pair in parts.windows(2) {
        assert!(
            !matches!(pair, [Part::Lit(_), Part::Lit(_)]),
            "{source:?}: adjacent literals"
        );
    }
    for p in &parts {
        if let Part::Param(name) = p {
            assert!(!name.is_empty());
            assert!(source.contains(&format!("<{name}>")), "{source:?}: {name:?}");
        }
    }
    // Literal parts hold the unescaped text: the regex must match them where the template
    // has no parameter at all.
    if parts.len() == 1
        && let (Some(Part::Lit(path)), Ok(re)) = (parts.first(), Regex::new(source))
    {
        assert!(re.is_match(path.as_str()), "{source:?} does not match {path:?}");
    }
});
