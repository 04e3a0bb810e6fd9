//! `omg-dataplane`: the Open Model Gateway data plane binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Serves the OpenAI-compatible `/v1` API from a gateway config file.
#[derive(Debug, Parser)]
#[command(name = "omg-dataplane", version, about)]
struct Args {
    /// Gateway config file (YAML). See docs/configuration.md.
    #[arg(long, short, env = "OMG_CONFIG")]
    config: PathBuf,
    /// Validate the config and exit (0 when valid).
    #[arg(long)]
    check: bool,
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

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    ignore_sighup_until_handled();
    if args.check {
        return match omg_shared::config::load_file(&args.config) {
            Ok(_) => {
                tracing::info!(config = %args.config.display(), "config is valid");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                tracing::error!(config = %args.config.display(), errors = %errors, "config is invalid");
                report(&format!(
                    "invalid config `{}`:\n{errors}",
                    args.config.display()
                ));
                ExitCode::from(2)
            }
        };
    }
    match omg_dataplane::proxy::server::run(&args.config) {
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
