//! Configuration errors: file, key path, line, and what is wrong.
//!
//! The build step records errors against key paths (`services[0].apis[2].path`); lines are
//! found afterwards by walking the same path through a span-keeping `toml_edit` parse of the
//! file, so the builder never carries spans around.

use std::fmt;

use toml_edit::{Document, Item, TableLike, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Key path such as `services[0].apis[2].path`; empty for whole-file errors.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error of one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based line of a byte offset.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of a key path in the document: the key itself if toml_edit kept its span, else
/// the nearest enclosing table or value that has one.
pub fn line_of(doc: &Document<&str>, text: &str, key: &str) -> Option<usize> {
    let mut table: &dyn TableLike = doc.as_table();
    let mut span = None;
    let mut segments = key.split('.').filter(|s| !s.is_empty()).peekable();
    while let Some(seg) = segments.next() {
        let (name, index) = split_index(seg);
        let Some((k, item)) = table.get_key_value(name) else {
            break;
        };
        span = k.span().or_else(|| item.span()).or(span);
        let item = match index {
            None => Step::Item(item),
            Some(i) => match item {
                Item::ArrayOfTables(a) => match a.get(i) {
                    Some(t) => {
                        span = t.span().or(span);
                        Step::Table(t)
                    }
                    None => break,
                },
                Item::Value(Value::Array(arr)) => match arr.get(i) {
                    Some(v) => {
                        span = v.span().or(span);
                        Step::Value(v)
                    }
                    None => break,
                },
                _ => break,
            },
        };
        if segments.peek().is_none() {
            break;
        }
        table = match item {
            Step::Table(t) => t,
            Step::Item(i) => match i.as_table_like() {
                Some(t) => t,
                None => break,
            },
            Step::Value(v) => match v.as_inline_table() {
                Some(t) => t,
                None => break,
            },
        };
    }
    span.map(|s| line_at(text, s.start))
}

enum Step<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

fn split_index(seg: &str) -> (&str, Option<usize>) {
    match seg.strip_suffix(']').and_then(|s| s.split_once('[')) {
        Some((name, idx)) => (name, idx.parse().ok()),
        None => (seg, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys() {
        let text = "[server]\nworkers = 2\n\n[[services]]\nname = \"a\"\n\n[[services]]\nname = \"b\"\nhosts = [\"x\",\n  \"y\"]\n[[services.apis]]\nname = \"n\"\npath = \"/p\"\n";
        let doc = Document::parse(text).unwrap();
        for (key, line) in [
            ("server.workers", 2),
            ("services[0].name", 5),
            ("services[1]", 7),
            ("services[1].hosts[1]", 10),
            ("services[1].apis[0].path", 13),
            ("services[1].apis[0].missing", 11),
            ("services[1].apis[5]", 11),
        ] {
            assert_eq!(line_of(&doc, text, key), Some(line), "{key}");
        }
        assert_eq!(line_of(&doc, text, "nothing"), None);
    }
}
