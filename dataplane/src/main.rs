//! `omg-dataplane`: the Open Model Gateway data plane binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use omg_dataplane::config::{process_env, ConfigSource};
use omg_shared::secret::Secret;

/// Serves the OpenAI-compatible `/v1` API: from a gateway config file (standalone mode), or
/// from the snapshots a control plane publishes on Redis (cluster mode, when `redis.url` is
/// set). `ROUTER_*` environment variables override the file; these flags override both.
// No `Debug`: some fields are secrets.
#[derive(Parser)]
#[command(name = "omg-dataplane", version, about)]
struct Args {
    /// Gateway config file (YAML). Required in standalone mode; optional in cluster mode,
    /// where everything can come from the environment. See docs/configuration.md.
    #[arg(long, short, env = "OMG_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the config and exit (0 when valid).
    #[arg(long)]
    check: bool,
    /// Redis URL (`redis.url`); setting it selects cluster mode.
    #[arg(long, env = "ROUTER_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Redis key of the sealed snapshot (`cluster.snapshot_key`).
    #[arg(long, env = "ROUTER_CLUSTER_SNAPSHOT_KEY")]
    snapshot_key: Option<String>,
    /// Directory of the usage spool (`cluster.spool_dir`).
    #[arg(long, env = "ROUTER_CLUSTER_SPOOL_DIR")]
    spool_dir: Option<String>,
    /// Disk cache of the last good snapshot (`cluster.snapshot_cache_path`).
    #[arg(long, env = "ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH")]
    snapshot_cache: Option<String>,
    /// The control plane's snapshot keys, `VERSION:BASE64[,VERSION:BASE64…]`; replaces
    /// `security.encryption_keys` (a list, which `ROUTER_*` variables cannot set). Prefer the
    /// environment variable: command lines are visible to other users.
    #[arg(long, env = "OMG_ENCRYPTION_KEYS", hide_env_values = true)]
    encryption_keys: Option<String>,
    /// Log format.
    #[arg(long, env = "OMG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

impl Args {
    /// The configuration sources: the file, the environment, then these flags.
    fn source(&self) -> ConfigSource {
        let flags = [
            ("ROUTER_REDIS_URL", &self.redis_url),
            ("ROUTER_CLUSTER_SNAPSHOT_KEY", &self.snapshot_key),
            ("ROUTER_CLUSTER_SPOOL_DIR", &self.spool_dir),
            ("ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH", &self.snapshot_cache),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
        .collect();
        ConfigSource::new(
            self.config.clone(),
            process_env(),
            flags,
            self.encryption_keys.clone().map(Secret::new),
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    ignore_sighup_until_handled();
    let source = args.source();
    if args.check {
        return match source.load_for_start() {
            Ok(config) => {
                let mode = if config.redis.url.is_some() {
                    "cluster"
                } else {
                    "standalone"
                };
                tracing::info!(config = %source.describe(), mode, "config is valid");
                ExitCode::SUCCESS
            }
            Err(message) => {
                tracing::error!(config = %source.describe(), errors = %message, "config is invalid");
                report(&message);
                ExitCode::from(2)
            }
        };
    }
    match omg_dataplane::proxy::server::run(&source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "cannot start");
            report(&message);
            ExitCode::from(2)
        }
    }
}

/// Start-up errors also go to stderr in plain text, whatever the log format.
fn report(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "omg-dataplane: {message}");
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OMG_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
    });
    // yup-oauth2 logs token requests and answers (JWT assertions, access tokens) at debug:
    // never let them through, whatever `OMG_LOG` says.
    let filter = match "yup_oauth2=warn".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// SIGHUP's default action kills the process. Until the reload service takes it over, a
/// registered (and ignored) tokio handler keeps an early SIGHUP harmless.
fn ignore_sighup_until_handled() {
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        runtime.block_on(async {
            let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        });
    }
}
