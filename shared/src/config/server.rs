//! `server.*`: listeners, timeouts, client deadlines and the connection cap, threads, the
//! upstream pool and the tokenizer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `server.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listener of the plane reading the file, `host:port` or `:port` (all interfaces): the
    /// data plane's public OpenAI-compatible API (default `:8080`) or the control plane's
    /// admin API and portal (default `:8090`). Read it with [`ServerConfig::listen_addr_or`].
    pub listen_addr: Option<String>,
    /// Admin listener for `/healthz`, `/readyz` and `/metrics`. Default `127.0.0.1:9091`;
    /// keep it off public interfaces.
    pub admin_listen_addr: String,
    /// Largest accepted request body in MiB (413 above it). Default 20.
    pub body_limit_mb: u64,
    /// Total time allowed for a non-streamed request, upstream included. Default 300s.
    #[serde(with = "crate::duration")]
    pub sync_timeout: Duration,
    /// Longest gap between two upstream chunks of a stream before it is cut. Default 30s.
    #[serde(with = "crate::duration")]
    pub stream_idle_timeout: Duration,
    /// Longest a stream may last. Default 300s.
    #[serde(with = "crate::duration")]
    pub stream_max_duration: Duration,
    /// Time allowed to the upstream for its response headers (and, when not streaming, its
    /// whole response). Default 280s.
    #[serde(with = "crate::duration")]
    pub provider_timeout: Duration,
    /// Data plane: total time a client has to send a request's head (request line and
    /// headers), from the connection's accept (on a kept-alive connection, from the next
    /// request's first byte); the connection is closed when it runs out, however steadily
    /// bytes trickle in (slowloris). Independent of per-read timeouts. Default 10s.
    #[serde(with = "crate::duration")]
    pub request_head_timeout: Duration,
    /// Data plane: total time a client has to send a request's body once its head is read;
    /// 408 and the connection closed when it runs out. Default 60s.
    #[serde(with = "crate::duration")]
    pub request_body_timeout: Duration,
    /// Data plane, cluster mode: total time a client has to send the body of a forwarded
    /// `/v1/files*` or `/v1/batches*` request (an upload), counted from the request's arrival;
    /// 408 and the connection closed when it runs out. Longer than `request_body_timeout`
    /// because uploads are large. Default 10m.
    #[serde(with = "crate::duration")]
    pub upload_body_timeout: Duration,
    /// Data plane: longest one write to a client may stay blocked (the client stopped
    /// reading and its socket buffers are full); the connection is then cut, a stream's
    /// parallel lease released and its usage recorded for what was delivered. Default 60s.
    #[serde(with = "crate::duration")]
    pub write_timeout: Duration,
    /// Data plane: most client connections open at once on the `/v1` listener; one more is
    /// closed at accept (logged, counted in `omg_downstream_connections_refused_total`).
    /// Keep it below the process's open-file limit minus the upstream connections.
    /// Default 4096.
    pub max_connections: usize,
    /// TCP + TLS connect timeout to upstreams. Default 5s.
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
    /// On SIGTERM, how long `/readyz` reports 503 while still accepting, so load balancers
    /// stop sending traffic before the listener closes. Default 5s.
    #[serde(with = "crate::duration")]
    pub graceful_shutdown_delay: Duration,
    /// After the listener closes, how long in-flight requests and streams may take to
    /// finish before the process exits anyway. Default 30s.
    #[serde(with = "crate::duration")]
    pub graceful_shutdown_timeout: Duration,
    /// Proxy worker threads. `0` = one per CPU. Default 0.
    pub threads: usize,
    /// Idle upstream connections the data plane keeps open for reuse, across all providers
    /// (each is closed after 60 s unused). `0` opens a connection per request. Default 512.
    pub upstream_idle_connections: usize,
    /// How the data plane counts prompt tokens it must estimate: the pre-flight reservation
    /// of token limits and budgets, and the usage of answers that report none. `bpe` (the
    /// default) counts with OpenAI's tokenizers (`o200k_base`, `cl100k_base` for the models
    /// that use it), loaded once a snapshot has a token limit or a budget, else when first
    /// needed (about 8 MB and 4 MB of memory once loaded, some 50 MB more for the moment
    /// of loading); `heuristic` assumes about four characters per token and loads nothing.
    pub tokenizer: TokenizerKind,
}

/// `server.tokenizer`: how estimated prompt tokens are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// OpenAI's byte-pair encodings (an approximation for other model families).
    #[default]
    Bpe,
    /// About four characters per token, never fewer tokens than words.
    Heuristic,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_addr: None,
            admin_listen_addr: "127.0.0.1:9091".to_owned(),
            body_limit_mb: 20,
            sync_timeout: Duration::from_secs(300),
            stream_idle_timeout: Duration::from_secs(30),
            stream_max_duration: Duration::from_secs(300),
            provider_timeout: Duration::from_secs(280),
            request_head_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(60),
            upload_body_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(60),
            max_connections: 4096,
            connect_timeout: Duration::from_secs(5),
            graceful_shutdown_delay: Duration::from_secs(5),
            graceful_shutdown_timeout: Duration::from_secs(30),
            threads: 0,
            upstream_idle_connections: 512,
            tokenizer: TokenizerKind::Bpe,
        }
    }
}

impl ServerConfig {
    /// The data plane's `server.listen_addr` when the file sets none.
    pub const DATAPLANE_LISTEN_ADDR: &'static str = ":8080";
    /// The control plane's `server.listen_addr` when the file sets none.
    pub const CONTROLPLANE_LISTEN_ADDR: &'static str = ":8090";

    /// `server.listen_addr`, or `default` (the plane's own) when unset.
    pub fn listen_addr_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.listen_addr.as_deref().unwrap_or(default)
    }
}
