//! Configuration: from a TOML file to a validated running [`Config`].
//!
//! `load` reads the file, deserializes it into the [`file`] structs (unknown keys and type
//! mismatches stop here, with the key path from serde_path_to_error and the line from the
//! TOML span), then [`build`] turns them into the [`model`] structs in one pass that collects
//! every further error. Each error names the file, the key path and the line. Loading never
//! panics and has no side effect but reading the files the config names.

pub mod build;
mod build_service;
mod build_traffic;
pub mod error;
pub mod file;
pub mod model;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = read_limited(path, MAX_CONFIG_BYTES)
        .and_then(|b| String::from_utf8(b).map_err(|_| "it is not UTF-8 text".to_string()))
        .map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                key: String::new(),
                line: None,
                message: format!("cannot read the configuration: {e}"),
            }])
        })?;
    load_str(&text, path)
}

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
/// Largest certificate, key, CA or JWK file read.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a whole file, refusing one larger than `limit` (so that `cert = "/dev/zero"` is an
/// error, not a hang).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > limit {
        return Err(format!("it is larger than {limit} bytes"));
    }
    Ok(buf)
}

/// Parses and validates configuration text that came from `path` (used in messages and
/// kept in [`Config::file`]).
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let file = parse(text, &name)?;
    build::build(file, path).map_err(|errors| {
        // Spans are only needed to place errors: parse for them only then.
        let doc = toml_edit::Document::parse(text);
        ConfigErrors(
            errors
                .into_iter()
                .map(|(key, message)| ConfigError {
                    file: name.clone(),
                    line: doc
                        .as_ref()
                        .ok()
                        .and_then(|d| error::line_of(d, text, &key)),
                    key,
                    message,
                })
                .collect(),
        )
    })
}

fn parse(text: &str, name: &str) -> Result<file::FileConfig, ConfigErrors> {
    let one = |key: String, line, message: String| {
        ConfigErrors(vec![ConfigError {
            file: name.to_string(),
            key,
            line,
            message,
        }])
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let line = e.span().map(|s| error::line_at(text, s.start));
        one(
            String::new(),
            line,
            format!("TOML syntax: {}", e.message().trim()),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let line = e.inner().span().map(|s| error::line_at(text, s.start));
        one(key, line, e.inner().message().trim().to_string())
    })
}

impl Config {
    /// The line `ringway check` prints.
    /// What this configuration asks for that this version does not serve yet, and warnings
    /// (a certificate expiring soon); `check` and `run` print these lines.
    pub fn not_served_yet(&self) -> Vec<String> {
        let mut notes = Vec::new();
        notes.extend(self.warnings.iter().cloned());
        notes
    }

    pub fn summary(&self) -> String {
        let apis: usize = self.services.iter().map(|s| s.apis.len()).sum();
        format!(
            "{}: ok: {} services, {} APIs, {} upstreams, {} certificates, {} key pairs; listening http {:?} https {:?} admin {}",
            self.file.display(),
            self.services.len(),
            apis,
            self.upstreams.len(),
            self.certificates.len(),
            self.key_pairs.len(),
            self.server.listen_http,
            self.server.listen_https,
            self.server
                .admin_listen
                .map_or("off".to_string(), |a| a.to_string()),
        )
    }
}
