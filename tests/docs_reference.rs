//! The documentation against the code.
//!
//! - Every key the configuration parser accepts is in `docs/user_guide/configuration.md`,
//!   and every key documented there is one the parser accepts. The keys are not a list kept
//!   here: they are asked of the real binary. A file with an unknown key in some table makes
//!   `ringway check` fail with serde's "unknown field `x`, expected one of `a`, `b`", which
//!   names every key of that table; a key is itself a table (or an array of tables) when a
//!   probe one level below it gets the same answer. Starting from the top level, that walks
//!   the whole schema.
//! - The reference has one section per table, headed by the table's TOML header in
//!   backticks (`` ## `[server]` ``, `` ## `[[services.apis.params]]` ``); each plain key of
//!   the table is a row of the section's table whose first cell is the key in backticks.
//! - Every relative link in `README.md`, `docs/**/*.md` and `benches/README.md` points to a
//!   file that exists and, for a `#fragment` into a Markdown file, to one of its headings
//!   (GitHub's heading ids).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A key no table has, used to make the parser list the keys it does accept.
const PROBE: &str = "zz_not_a_ringway_key";

const REFERENCE: &str = "docs/user_guide/configuration.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `[a.b]`
    Table,
    /// `[[a.b]]`
    Array,
}

/// A table of the schema: the keys from the top level down to it.
type TablePath = Vec<(String, Kind)>;

/// `[server]`, `[[services.apis.params]]`.
fn header(path: &[(String, Kind)]) -> String {
    let name: Vec<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
    match path.last().map(|p| p.1) {
        Some(Kind::Array) => format!("[[{}]]", name.join(".")),
        _ => format!("[{}]", name.join(".")),
    }
}

/// The key path the loader names in its errors: `services[0].apis[0].backend`.
fn key_path(path: &[(String, Kind)]) -> String {
    path.iter()
        .map(|(n, k)| match k {
            Kind::Table => n.clone(),
            Kind::Array => format!("{n}[0]"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `ringway check` on `text`: its stderr.
fn check_stderr(dir: &Path, text: &str) -> String {
    let file = dir.join("probe.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run ringway check");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The keys of the table at `path`, or `None` when `path` is not a table of that kind.
fn keys_of(dir: &Path, path: &[(String, Kind)]) -> Option<Vec<String>> {
    let mut text = String::new();
    for i in 0..path.len() {
        text.push_str(&header(&path[..=i]));
        text.push('\n');
    }
    text.push_str(&format!("{PROBE} = 1\n"));
    let stderr = check_stderr(dir, &text);
    let unknown = format!("unknown field `{PROBE}`, expected ");
    let line = stderr.lines().find(|l| l.contains(&unknown))?;
    let want_key = if path.is_empty() {
        format!(": {PROBE}: ")
    } else {
        format!(": {}.{PROBE}: ", key_path(path))
    };
    assert!(
        line.contains(&want_key),
        "the probe under {} was reported at another key:\n{line}",
        header(path)
    );
    let expected = &line[line.find(&unknown).unwrap() + unknown.len()..];
    // serde lists one key as `a`, two as `a` or `b`, more as one of `a`, `b`, `c`.
    let expected = expected
        .strip_prefix("one of ")
        .unwrap_or(expected)
        .replace("` or `", "`, `");
    let keys: Vec<String> = expected
        .split(", ")
        .map(|k| {
            k.trim()
                .strip_prefix('`')
                .and_then(|k| k.strip_suffix('`'))
                .unwrap_or_else(|| panic!("cannot read the key list in {line:?}"))
                .to_string()
        })
        .collect();
    Some(keys)
}

/// One table of the schema: where it is, its plain keys, and all its keys (plain keys and
/// the tables under it).
struct Table {
    path: TablePath,
    plain: Vec<String>,
    all: Vec<String>,
}

/// Every table of the schema, walked from the top level.
fn schema() -> BTreeMap<String, Table> {
    let dir = tempfile::tempdir().unwrap();
    let mut tables = BTreeMap::new();
    let mut todo: Vec<TablePath> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let keys = keys_of(dir.path(), &path)
            .unwrap_or_else(|| panic!("{} is not a table after all", header(&path)));
        let mut plain = Vec::new();
        for key in keys.iter().cloned() {
            let mut found = None;
            for kind in [Kind::Table, Kind::Array] {
                let mut sub = path.clone();
                sub.push((key.clone(), kind));
                if keys_of(dir.path(), &sub).is_some() {
                    found = Some(sub);
                    break;
                }
            }
            match found {
                Some(sub) => todo.push(sub),
                None => plain.push(key),
            }
        }
        tables.insert(
            header(&path),
            Table {
                path,
                plain,
                all: keys,
            },
        );
    }
    tables
}

/// The lines of a Markdown text outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match fence {
            Some(f) if t.starts_with(f) => fence = None,
            Some(_) => {}
            None if t.starts_with("```") || t.starts_with("~~~") => fence = Some(&t[..3]),
            None => out.push((i + 1, line)),
        }
    }
    out
}

fn is_heading(line: &str) -> bool {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    (1..=6).contains(&hashes) && line[hashes..].starts_with(' ')
}

/// The reference's sections: a table header (`[server]`) → the rows' keys of that section.
fn reference_sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (_, line) in prose_lines(text) {
        if is_heading(line) {
            // `## `[server]`` → `[server]`: a heading that is one code span holding a header.
            let title = line.trim_start_matches('#').trim();
            current = title
                .strip_prefix('`')
                .and_then(|t| t.strip_suffix('`'))
                .filter(|t| t.starts_with('[') && t.ends_with(']'))
                .map(str::to_string);
            if let Some(h) = &current {
                assert!(
                    sections.insert(h.clone(), Vec::new()).is_none(),
                    "{REFERENCE}: two sections for {h}"
                );
            }
            continue;
        }
        let Some(h) = &current else { continue };
        // `| `key` | type | default | ... |`
        if let Some(key) = line
            .strip_prefix("| `")
            .and_then(|rest| rest.split_once("` |"))
            .map(|(k, _)| k)
        {
            sections.get_mut(h).unwrap().push(key.to_string());
        }
    }
    sections
}

/// What is wrong between the parser's schema and the reference text, one line per fault.
fn reference_faults(schema: &BTreeMap<String, Table>, text: &str) -> Vec<String> {
    let sections = reference_sections(text);
    let mut faults = Vec::new();
    for (head, table) in schema {
        if table.path.is_empty() {
            // The top level holds only tables today; a plain key there needs a row somewhere.
            for key in &table.plain {
                if !text.contains(&format!("| `{key}` |")) {
                    faults.push(format!("top-level key `{key}` has no row"));
                }
            }
            continue;
        }
        let Some(rows) = sections.get(head) else {
            faults.push(format!("no section headed `{head}`"));
            continue;
        };
        for key in &table.plain {
            if !rows.contains(key) {
                faults.push(format!("`{head}`: key `{key}` has no row"));
            }
        }
        for row in rows {
            if !table.all.contains(row) {
                faults.push(format!(
                    "`{head}`: row `{row}` is not a key the parser accepts"
                ));
            }
        }
    }
    for head in sections.keys() {
        if !schema.contains_key(head) {
            faults.push(format!(
                "section `{head}` is not a table the parser accepts"
            ));
        }
    }
    faults
}

#[test]
fn every_configuration_key_is_in_the_reference() {
    let schema = schema();
    // The walk itself must have found the schema, or this test would pass on nothing.
    let count: usize = schema.values().map(|t| t.plain.len()).sum();
    assert!(
        schema.len() >= 10 && count >= 60,
        "the parser's schema came out too small ({} tables, {count} keys): {:?}",
        schema.len(),
        schema.keys()
    );
    for known in [
        "[server]",
        "[[services.apis.backend.constants]]",
        "[services.oauth2]",
    ] {
        assert!(
            schema.contains_key(known),
            "{known} not found: {:?}",
            schema.keys()
        );
    }
    assert!(
        schema["[services.apis.backend]"]
            .plain
            .contains(&"type".to_string()),
        "the renamed key `type` was not found"
    );

    let text = std::fs::read_to_string(root().join(REFERENCE)).unwrap();
    let faults = reference_faults(&schema, &text);
    assert!(
        faults.is_empty(),
        "{REFERENCE} does not match the configuration parser:\n{}",
        faults.join("\n")
    );

    // The check must fail when a key's row is missing: drop one row and one section.
    let without_row = text.replace("| `max_fails` |", "| max_fails |");
    assert_ne!(without_row, text);
    let faults = reference_faults(&schema, &without_row);
    assert_eq!(
        faults,
        ["`[[upstreams]]`: key `max_fails` has no row"],
        "a missing row went unnoticed"
    );
    let without_section = text.replace("## `[services.oauth2]`", "## OAuth 2.0 key");
    assert!(
        reference_faults(&schema, &without_section)
            .contains(&"no section headed `[services.oauth2]`".to_string()),
        "a missing section went unnoticed"
    );
}

// ---------------------------------------------------------------------------------------
// Links

/// GitHub's id for a heading: lowercase, punctuation but `-` and `_` dropped, spaces to `-`.
fn slug(title: &str) -> String {
    title
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The ids of a Markdown file's headings (a repeated id gets `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        if !is_heading(line) {
            continue;
        }
        let base = slug(line.trim_start_matches('#'));
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// `[text](target)` targets on prose lines, inline code removed first.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        // Drop code spans (`...`): their text is not Markdown.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md"), root().join("benches/README.md")];
    walk(&root().join("docs"), &mut files);
    files.sort();
    files
}

/// What is wrong with the relative links of `file` (whose text is `text`).
fn link_faults(file: &Path, text: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let shown = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    for (line, target) in link_targets(text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap().join(path)
        };
        if !resolved.exists() {
            faults.push(format!("{shown}:{line}: {target}: no such file"));
            continue;
        }
        if let Some(fragment) = fragment
            && resolved.extension().is_some_and(|e| e == "md")
        {
            let target_text = std::fs::read_to_string(&resolved).unwrap();
            if !anchors(&target_text).contains(fragment) {
                faults.push(format!("{shown}:{line}: {target}: no such heading"));
            }
        }
    }
    faults
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = markdown_files();
    assert!(files.len() >= 10, "too few Markdown files found: {files:?}");
    let mut faults = Vec::new();
    let mut links = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        links += link_targets(&text).len();
        faults.extend(link_faults(file, &text));
    }
    assert!(links >= 50, "only {links} links found: the scan is broken");
    assert!(faults.is_empty(), "broken links:\n{}", faults.join("\n"));

    // The check must catch a missing file and a missing heading.
    let readme = root().join("README.md");
    let broken = "[a](docs/nowhere.md) [b](docs/quick_start.md#nowhere) `[c](not/a/link.md)`";
    assert_eq!(
        link_faults(&readme, broken),
        [
            "README.md:1: docs/nowhere.md: no such file",
            "README.md:1: docs/quick_start.md#nowhere: no such heading"
        ]
    );
}

#[test]
fn heading_ids_are_githubs() {
    assert_eq!(slug(" `[[services.apis.params]]`"), "servicesapisparams");
    assert_eq!(
        slug(" `[[services.apis.response.error_codes]]`"),
        "servicesapisresponseerror_codes"
    );
    assert_eq!(slug(" OAuth 2.0 (JWT)"), "oauth-20-jwt");
    assert_eq!(slug(" Key-pair (HMAC) auth"), "key-pair-hmac-auth");
    let ids = anchors("# A\n## A\n```sh\n# not a heading\n```\n#nope\n");
    assert_eq!(ids, BTreeSet::from(["a".to_string(), "a-1".to_string()]));
}
