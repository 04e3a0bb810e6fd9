//! Starts the data plane binary with a generated config and talks to it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omg_mock_upstream::{MockConfig, MockUpstream};
use serde_json::Value;

pub const KEY: &str = "sk-demo.my-secret";
/// Aliases whose provider model scripts the mock upstream (the gateway forwards no client
/// headers upstream, so behaviour is chosen by the model name it sends).
pub const SCRIPTED: [(&str, &str); 7] = [
    ("up-fail-500", "gpt-test+fail-500"),
    ("up-fail-400", "gpt-test+fail-400"),
    ("up-slow", "gpt-test+slow-3000"),
    ("up-paced", "gpt-test+chunks-4+chunk-delay-300"),
    ("up-gated", "gpt-test+chunks-5+gated"),
    ("up-cut", "gpt-test+chunks-6+cut-after-2"),
    ("up-long", "gpt-test+chunks-20+chunk-delay-100"),
];

pub const UPSTREAM_KEY: &str = "upstream-secret-key-123";

/// A running data plane.
pub struct Gateway {
    pub child: Child,
    pub base: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub client: reqwest::Client,
}

/// Standard base64, decoded (embeddings and images in answers).
pub fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|error| panic!("not base64 ({error}): {text:.80}"))
}

/// Runs the data plane on `template` (a [`custom_config`]-style text) that it must refuse at
/// start-up; its log (stdout and stderr).
pub fn refused_config_log(template: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let text = template
        .replace("{PORT}", &free_port().to_string())
        .replace("{ADMIN}", &free_port().to_string())
        .replace("{DIR}", &dir.path().display().to_string());
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_omg-dataplane"))
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the config was accepted: {log}");
    log
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The standard catalog: mock provider aliases plus aliases forwarded to the mock upstream.
pub fn config(upstream: &MockUpstream, extra_server: &str) -> String {
    format!(
        r#"
server:
  listen_addr: "127.0.0.1:{{PORT}}"
  admin_listen_addr: "127.0.0.1:{{ADMIN}}"
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 20s
  threads: 2
{extra_server}
usage:
  jsonl_path: "{{DIR}}/usage.jsonl"
model_catalog:
  - alias: mock-chat
    provider: mock
    price_input: 0.001
    price_output: 0.002
    metadata: {{mock_chunks: "4"}}
  - alias: mock-slow
    provider: mock
    metadata: {{mock_chunks: "6", mock_chunk_interval_ms: "150"}}
  - alias: mock-embed
    provider: mock
    model_type: embedding
  - alias: gpt-up
    provider: openai-compatible
    provider_model: gpt-test
    endpoint: "{base}"
    api_key: "{UPSTREAM_KEY}"
    health_check: false
    price_input: 0.001
    price_output: 0.002
  - alias: embed-up
    provider: openai-compatible
    model_type: embedding
    provider_model: text-embedding-test
    endpoint: "{base}"
    api_key: "{UPSTREAM_KEY}"
    health_check: false
  - alias: secret-model
    provider: mock
{scripted}bootstrap:
  tenants:
    - name: demo
      allowed_models: [mock-chat, mock-slow, mock-embed, gpt-up, embed-up, {scripted_names}]
    - name: frozen
      status: suspended
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
    - tenant: frozen
      prefix: frozen
      secret: my-secret
"#,
        base = upstream.base_url(),
        scripted = SCRIPTED
            .iter()
            .map(|(alias, model)| format!(
                "  - alias: {alias}\n    provider: openai-compatible\n    provider_model: \"{model}\"\n    endpoint: \"{}\"\n    api_key: \"{UPSTREAM_KEY}\"\n    health_check: false\n",
                upstream.base_url()
            ))
            .collect::<String>(),
        scripted_names = SCRIPTED.iter().map(|(alias, _)| *alias).collect::<Vec<_>>().join(", "),
    )
}

/// One `model_catalog` entry of a [`custom_config`]: an `openai-compatible` deployment of
/// `alias` served by a mock upstream. Entries sharing an alias are its deployments.
#[derive(Debug, Clone)]
pub struct Entry {
    pub alias: String,
    /// The upstream's base URL (`MockUpstream::base_url`), or any unreachable one.
    pub endpoint: String,
    /// The model sent upstream: `gpt-test` plus mock directives.
    pub provider_model: String,
    pub priority: u32,
    pub weight: u32,
    /// Active health checks (`health_check`); off by default in tests.
    pub health_check: bool,
    /// `provider` (default `openai-compatible`).
    pub provider: String,
    /// More keys of the entry, YAML at the entry's indentation (`    deployment: x\n`).
    pub extra: String,
}

impl Entry {
    pub fn new(alias: &str, endpoint: &str, provider_model: &str) -> Entry {
        Entry {
            alias: alias.to_owned(),
            endpoint: endpoint.to_owned(),
            provider_model: provider_model.to_owned(),
            priority: 0,
            weight: 1,
            health_check: false,
            provider: "openai-compatible".to_owned(),
            extra: String::new(),
        }
    }

    /// Another provider kind.
    pub fn provider(mut self, provider: &str) -> Entry {
        self.provider = provider.to_owned();
        self
    }

    /// Adds a key of the catalog entry (`key`, its YAML value).
    pub fn with(mut self, key: &str, value: &str) -> Entry {
        self.extra.push_str(&format!("    {key}: {value}\n"));
        self
    }

    pub fn checked(mut self) -> Entry {
        self.health_check = true;
        self
    }

    pub fn priority(mut self, priority: u32) -> Entry {
        self.priority = priority;
        self
    }

    pub fn weight(mut self, weight: u32) -> Entry {
        self.weight = weight;
        self
    }
}

/// The id the data plane gives the deployment of `entries[index]` (`x-omg-deployment`, the
/// usage record): its alias and its position among the alias's entries.
pub fn deployment_id(entries: &[Entry], index: usize) -> String {
    let alias = &entries[index].alias;
    let ordinal = entries[..index]
        .iter()
        .filter(|e| &e.alias == alias)
        .count();
    format!("{alias}#{ordinal}")
}

/// A config whose catalog is exactly `entries` (active health checks off unless an entry
/// asks, so upstreams see only the requests a test sends), every alias allowed to [`KEY`], limits out of the way.
/// `server_extra` goes under `server:` (lines indented by two spaces); `extra` is appended at
/// the top level (`routing:`, …).
pub fn custom_config(entries: &[Entry], server_extra: &str, extra: &str) -> String {
    let mut aliases: Vec<&str> = entries.iter().map(|e| e.alias.as_str()).collect();
    aliases.sort_unstable();
    aliases.dedup();
    let catalog: String = entries
        .iter()
        .map(|e| {
            format!(
                "  - alias: {}\n    provider: {}\n    provider_model: \"{}\"\n    endpoint: \"{}\"\n    api_key: \"{UPSTREAM_KEY}\"\n    priority: {}\n    weight: {}\n    health_check: {}\n{}",
                e.alias, e.provider, e.provider_model, e.endpoint, e.priority, e.weight, e.health_check, e.extra
            )
        })
        .collect();
    format!(
        r#"
server:
  listen_addr: "127.0.0.1:{{PORT}}"
  admin_listen_addr: "127.0.0.1:{{ADMIN}}"
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 20s
  threads: 2
{server_extra}
usage:
  jsonl_path: "{{DIR}}/usage.jsonl"
rate_limits:
  default_requests_per_minute: 100000
  default_tokens_per_minute: 100000000
  default_parallel_requests_key: 1000
  default_parallel_requests_tenant: 1000
model_catalog:
{catalog}bootstrap:
  tenants:
    - name: demo
      allowed_models: [{allowed}]
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
{extra}
"#,
        allowed = aliases.join(", "),
    )
}

pub async fn upstream() -> MockUpstream {
    MockUpstream::start(MockConfig {
        api_key: Some(UPSTREAM_KEY.to_owned()),
        ..MockConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock upstream: {e}"))
}

impl Gateway {
    /// Starts the binary; `template` may use `{PORT}`, `{ADMIN}` and `{DIR}`. Retries with new
    /// ports if the process dies during start-up (a port taken between pick and bind).
    pub async fn start(template: &str) -> Gateway {
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let port = free_port();
            let admin_port = free_port();
            let text = template
                .replace("{PORT}", &port.to_string())
                .replace("{ADMIN}", &admin_port.to_string())
                .replace("{DIR}", &dir.path().display().to_string());
            let config_path = dir.path().join("gateway.yaml");
            std::fs::write(&config_path, text).unwrap_or_else(|e| panic!("write config: {e}"));
            let log = std::fs::File::create(dir.path().join("gateway.log"))
                .unwrap_or_else(|e| panic!("log: {e}"));
            let child = Command::new(env!("CARGO_BIN_EXE_omg-dataplane"))
                .arg("--config")
                .arg(&config_path)
                .stdout(Stdio::from(
                    log.try_clone().unwrap_or_else(|e| panic!("{e}")),
                ))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn omg-dataplane: {e}"));
            let mut gateway = Gateway {
                child,
                base: format!("http://127.0.0.1:{port}"),
                admin: format!("http://127.0.0.1:{admin_port}"),
                dir,
                config_path,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            };
            if gateway.wait_ready().await {
                return gateway;
            }
            last_log = gateway.log();
        }
        panic!("omg-dataplane did not start; last log:\n{last_log}");
    }

    /// Waits (up to 30 s) until `/healthz` answers 200 and the public listener accepts;
    /// `false` if the process exits first.
    pub async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let healthy = self
                .client
                .get(format!("{}/healthz", self.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            let serving = self
                .client
                .get(format!("{}/v1/models", self.base))
                .send()
                .await
                .is_ok();
            if healthy && serving {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn usage_path(&self) -> PathBuf {
        self.dir.path().join("usage.jsonl")
    }

    pub fn usage(&self) -> Vec<Value> {
        std::fs::read_to_string(self.usage_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until the usage record of a request id is written.
    pub async fn usage_of(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(record) = self
                .usage()
                .into_iter()
                .find(|r| r["request_id"] == request_id)
            {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "no usage record for {request_id}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chat body.
/// Posts a chat request until the gateway has the deployment's first token (minted by a
/// background refresher: until then the attempt fails as the deployment's, 502).
pub async fn first_answer(gateway: &Gateway, body: &Value) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = gateway
            .post("/v1/chat/completions")
            .json(body)
            .send()
            .await
            .unwrap();
        if response.status() != 502 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn chat(model: &str, stream: bool) -> Value {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

/// The request id header of a response.
pub fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Reads an SSE body into its `data:` payloads.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}
