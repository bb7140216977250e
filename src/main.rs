//! The `ringway` binary: argument parsing and dispatch to the subcommands.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringway::cli::{self, Outcome};

const DEFAULT_CONFIG: &str = "conf/ringway.toml";

#[derive(Parser)]
#[command(
    name = "ringway",
    version,
    about = "A self-hosted API gateway for Linux edge hosts"
)]
struct Args {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default command).
    Run,
    /// Load and validate the configuration; print a summary or every error.
    Check,
    /// Print, as one JSON line, which API a request would reach.
    Route {
        /// The request's Host (port allowed). Without it only services with no hosts match.
        #[arg(long)]
        host: Option<String>,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request target: `/path?query` or `http://host/path?query`.
        target: String,
    },
    /// Make a running gateway reload its configuration (sends SIGHUP). Without --pid or
    /// --pid-file, the configuration's server.pid_file names the process.
    Reload {
        /// A file holding the gateway's process id.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// The gateway's process id.
        #[arg(long)]
        pid: Option<i32>,
    },
    /// Write the API documentation: an OpenAPI 3.0 document and an HTML page per service.
    Docs {
        /// Output directory (created if missing): index.html, index.json, <service>.html,
        /// openapi/<service>.json.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.command.unwrap_or(Command::Run) {
        Command::Run => return run(&args.config),
        Command::Check => cli::check(&args.config),
        Command::Route {
            host,
            method,
            target,
        } => cli::route(&args.config, host.as_deref(), &method, &target),
        Command::Reload { pid_file, pid } => cli::reload(&args.config, pid_file.as_deref(), pid),
        Command::Docs { out } => cli::docs(&args.config, &out),
    };
    emit(outcome)
}

fn emit(o: Outcome) -> ExitCode {
    if !o.stdout.is_empty() {
        println!("{}", o.stdout);
    }
    if !o.stderr.is_empty() {
        eprintln!("{}", o.stderr);
    }
    let _ = std::io::stdout().flush();
    ExitCode::from(o.code.clamp(0, 255) as u8)
}

/// `ringway run`: serve until SIGTERM/SIGINT (exit 0); exit 1 when the configuration does not
/// load or the listeners cannot start.
fn run(config: &std::path::Path) -> ExitCode {
    let cfg = match ringway::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(cli::EXIT_CONFIG as u8);
        }
    };
    ringway::say::set_json(cfg.server.log_json);
    ringway::say!(info, "{}", cfg.summary());
    match ringway::server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ringway::say!(error, "{e}");
            ExitCode::from(1)
        }
    }
}
