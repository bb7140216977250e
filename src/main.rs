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

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Write the process id here (replaces the configuration's server.pid_file).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Take over from a running gateway (its pid, or its pid file) without dropping a
    /// request: serve on the same addresses beside it, then tell it to hand over and drain.
    #[arg(long, value_name = "PID|PID_FILE")]
    upgrade_from: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default command).
    Run(RunArgs),
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
    let outcome = match args.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(run_args) => return run(&args.config, run_args),
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
fn run(config: &std::path::Path, run_args: RunArgs) -> ExitCode {
    let cfg = match ringway::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(cli::EXIT_CONFIG as u8);
        }
    };
    ringway::say::set_json(cfg.server.log_json);
    ringway::say!(info, "{}", cfg.summary());
    let options = ringway::server::RunOptions {
        pid_file: run_args.pid_file,
        upgrade_from: run_args.upgrade_from,
    };
    match ringway::server::run(cfg, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ringway::say!(error, "{e}");
            ExitCode::from(1)
        }
    }
}
