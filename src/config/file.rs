//! The configuration file as written: serde structs mirroring SPEC §1 key for key.
//!
//! Every table denies unknown keys. Fields that SPEC marks required are still `Option` here,
//! and enum-like values are still strings, so that the build step can report *every*
//! missing key and bad value in one pass instead of serde stopping at the first.

use serde::Deserialize;

/// A TOML scalar written where a string is meant (`default = 0` as well as `default = "0"`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub certificates: Vec<FileCertificate>,
    #[serde(default)]
    pub upstreams: Vec<FileUpstream>,
    #[serde(default)]
    pub services: Vec<FileService>,
    #[serde(default)]
    pub key_pairs: Vec<FileKeyPair>,
    #[serde(default)]
    pub usage_plans: Vec<FileUsagePlan>,
    pub traffic: Option<FileTraffic>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub listen_http: Option<Vec<String>>,
    pub listen_https: Option<Vec<String>>,
    pub admin_listen: Option<String>,
    pub workers: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_uri_bytes: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub header_timeout_ms: Option<u64>,
    pub client_idle_timeout_ms: Option<u64>,
    pub ws_idle_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub access_log: Option<String>,
    pub pid_file: Option<String>,
    pub log_format: Option<String>,
    pub request_buffer_bytes: Option<u64>,
    pub client_body_timeout_ms: Option<u64>,
    pub client_body_min_rate: Option<u64>,
    pub client_body_rate_window_ms: Option<u64>,
    pub path_normalization: Option<String>,
    pub proxy_protocol: Option<bool>,
    pub h2c: Option<bool>,
    pub h2_max_concurrent_streams: Option<u64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    pub hosts: Option<Vec<String>>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub name: Option<String>,
    pub url: Option<String>,
    pub targets: Option<Vec<String>>,
    pub keepalive: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_fails: Option<u64>,
    pub fail_timeout_ms: Option<u64>,
    pub tls_server_name: Option<String>,
    pub ca: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    pub name: Option<String>,
    pub description: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub protocol: Option<String>,
    #[serde(default)]
    pub apis: Vec<FileApi>,
    pub oauth2: Option<FileOAuth2>,
    pub ip_control: Option<FileIpControl>,
    #[serde(default)]
    pub limits: Vec<FileLimit>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileApi {
    pub name: Option<String>,
    pub frontend_type: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub auth: Option<String>,
    pub cors: Option<bool>,
    pub description: Option<String>,
    #[serde(default)]
    pub params: Vec<FileParam>,
    pub backend: Option<FileBackend>,
    pub response: Option<FileResponse>,
    pub ip_control: Option<FileIpControl>,
    #[serde(default)]
    pub limits: Vec<FileLimit>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileParam {
    pub name: Option<String>,
    pub location: Option<String>,
    pub data_type: Option<String>,
    pub required: Option<bool>,
    pub default: Option<Scalar>,
    pub sample: Option<Scalar>,
    pub description: Option<String>,
    pub backend_name: Option<String>,
    pub backend_location: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileBackend {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub upstream: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub timeout_ms: Option<u64>,
    pub mock_status: Option<u64>,
    pub mock_body: Option<String>,
    pub mock_content_type: Option<String>,
    #[serde(default)]
    pub constants: Vec<FileConstant>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileConstant {
    pub name: Option<String>,
    pub location: Option<String>,
    pub value: Option<Scalar>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileResponse {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub success_sample: Option<String>,
    pub failure_sample: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<FileErrorCode>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileErrorCode {
    pub code: Option<i64>,
    pub message: Option<String>,
    pub description: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileKeyPair {
    pub secret_id: Option<String>,
    pub secret_key: Option<String>,
    pub secret_key_env: Option<String>,
    pub services: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileIpControl {
    pub mode: Option<String>,
    pub ips: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth2 {
    pub public_key: Option<String>,
    pub public_key_file: Option<String>,
    pub token_location: Option<String>,
    pub token_name: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileUsagePlan {
    pub name: Option<String>,
    pub max_requests_per_second: Option<i64>,
    pub max_requests: Option<i64>,
    pub quota_period: Option<String>,
    pub secret_ids: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileLimit {
    pub key: Option<String>,
    pub requests: Option<i64>,
    pub per: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileTraffic {
    pub store: Option<String>,
    pub state_file: Option<String>,
    pub redis_url: Option<String>,
    pub redis_timeout_ms: Option<u64>,
    pub on_store_failure: Option<String>,
    pub max_keys: Option<u64>,
}
