//! `omg-mock-upstream`: runs the scriptable upstream (OpenAI, Anthropic, Azure OpenAI and
//! Bedrock routes) as a process.
//!
//! ```text
//! omg-mock-upstream [--listen ADDR] [--api-key KEY] [--threads N] [--port-file PATH] [--no-record]
//! ```
//!
//! Prints the bound address (`127.0.0.1:PORT`) on stdout, writes it atomically to
//! `--port-file` if given, and serves until SIGTERM or SIGINT (then exits 0).
//!
//! Behaviour is scripted per request (directives in the `model` or the `x-mock-behaviour`
//! header, see the library docs) and per instance: `POST /__mock/behaviour` with a spec as the
//! body (e.g. `fail-503`, or `fail-429+retry-after-5`) applies it before every later request's
//! own directives; an empty body clears it; `GET /__mock/behaviour` reads it. End-to-end tests
//! use it to make one deployment fail and then recover:
//!
//! ```text
//! curl -d 'fail-503' http://127.0.0.1:PORT/__mock/behaviour
//! curl -X POST http://127.0.0.1:PORT/__mock/behaviour   # recovered
//! ```
//!
//! `GET /__mock/requests` lists the requests received so far (method, path, headers, body as
//! text), unless `--no-record`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use omg_mock_upstream::{MockConfig, MockUpstream};

const USAGE: &str =
    "usage: omg-mock-upstream [--listen ADDR (default 127.0.0.1:0)] [--api-key KEY] \
                     [--threads N (default 1)] [--port-file PATH] [--no-record]";

struct Args {
    listen: String,
    api_key: Option<String>,
    threads: usize,
    port_file: Option<PathBuf>,
    record: bool,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:0".to_owned(),
        api_key: None,
        threads: 1,
        port_file: None,
        record: true,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if name == "--help" || name == "-h" {
            return Ok(Parsed::Help);
        }
        if name == "--no-record" {
            parsed.record = false;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--listen" => parsed.listen = value()?,
            "--api-key" => parsed.api_key = Some(value()?),
            "--threads" => {
                let text = value()?;
                parsed.threads = match text.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "--threads must be a positive integer, got {text:?}"
                        ))
                    }
                };
            }
            "--port-file" => parsed.port_file = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Parsed::Run(parsed))
}

/// Writes `contents` next to `path` and renames it into place, so readers never see a partial
/// file.
fn write_atomically(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let config = MockConfig {
        api_key: args.api_key,
        record: args.record,
        ..MockConfig::default()
    };
    let upstream = MockUpstream::start_on(listener, config)
        .await
        .map_err(|e| format!("cannot start: {e}"))?;
    let line = format!("{}\n", upstream.addr());
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);
    if let Some(path) = &args.port_file {
        write_atomically(path, &line)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    terminated()
        .await
        .map_err(|e| format!("cannot wait for signals: {e}"))?;
    upstream.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("omg-mock-upstream: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("omg-mock-upstream: cannot build the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("omg-mock-upstream: {problem}");
            ExitCode::FAILURE
        }
    }
}
