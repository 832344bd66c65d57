//! The `iovm` binary: parses the command line, builds the machine, runs it,
//! and turns the outcome into an exit status. Errors end here as one line.

mod cli;
mod managed;
mod panic_hook;
mod remote;
mod terminal;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use vmm::config::SerialConfig;
use vmm::console::{report_line, Console};
use vmm::signals::ShutdownSignals;
use vmm::vm::{self, ApiStop, Outcome};

use crate::cli::{Cli, Command, RunArgs};

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IOVM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Opens the console `cfg` names (raw mode while the guest runs on an
/// interactive terminal: keep the second value until the machine ends).
pub(crate) fn open_console(
    cfg: &vmm::config::VmConfig,
    args: &RunArgs,
    start: Instant,
) -> anyhow::Result<(Console, Option<terminal::RawModeGuard>)> {
    let interactive = cfg.serial == SerialConfig::Stdio && terminal::stdin_is_tty();
    let console = Console::open(&cfg.serial, interactive)?;
    if args.timing {
        console.watch_for(args.timing_marker.clone(), start);
    }
    let raw = if interactive {
        terminal::enter_raw_mode()
    } else {
        None
    };
    Ok((console, raw))
}

fn run(args: &RunArgs, start: Instant, signals: &ShutdownSignals) -> anyhow::Result<Outcome> {
    let cfg = args.vm_config().map_err(anyhow::Error::msg)?;
    vm::validate(&cfg, vm::host_memory())?;
    let (console, _raw) = open_console(&cfg, args, start)?;
    // Everything from here on may be reached by the guest.
    sandbox::enter(sandbox::ThreadKind::Main);
    let timing = args.timing;
    let outcome = vmm::lifecycle::run(&cfg, &console, signals, |t| {
        if timing {
            report_line(&format!(
                "iovm: timing: first guest instruction {:.1} ms after start",
                (t - start).as_secs_f64() * 1e3
            ));
        }
    })?;
    Ok(outcome)
}

pub(crate) fn describe(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::PowerOff => None,
        Outcome::Reboot => {
            Some("the guest rebooted (use --on-reboot restart to boot it again)".into())
        }
        Outcome::Panic => Some("the guest kernel panicked".into()),
        Outcome::Crash(why) => Some(format!("the guest stopped: {why}")),
        Outcome::UserQuit => Some("ended from the console".into()),
        Outcome::ForcedOff(why) => Some(format!("ended the guest: {why}")),
        Outcome::Stopped(ApiStop::Reboot) => Some("rebooted through the API".into()),
        Outcome::Stopped(_) => Some("the VM was shut down through the API".into()),
    }
}

fn main() -> ExitCode {
    let start = Instant::now();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                vm::EXIT_USAGE as u8
            } else {
                0
            });
        }
    };
    init_logging();
    panic_hook::install();
    if let Command::Run(args) = &cli.command {
        if let Err(e) = sandbox::configure(args.seccomp, args.seccomp_selftest, args.user) {
            eprintln!("iovm: error: {e}");
            return ExitCode::from(vm::EXIT_ERROR as u8);
        }
        if args.seccomp == sandbox::Mode::Off {
            tracing::warn!(
                "seccomp filters are off (--seccomp off): a bug in iovm that a guest reaches can do anything this process may"
            );
        }
    }
    // Before any other thread starts, so that every thread inherits the mask.
    let signals = match ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("iovm: error: cannot set up SIGTERM/SIGINT handling: {e}");
            return ExitCode::from(vm::EXIT_ERROR as u8);
        }
    };
    let args = match cli.command {
        Command::Run(args) => args,
        Command::Remote(remote) => return ExitCode::from(remote::run(&remote) as u8),
    };
    if let Some(socket) = args.api_socket.clone() {
        return match managed::run(&args, &socket, start, &signals) {
            Ok(status) => ExitCode::from(status as u8),
            Err(e) => {
                eprintln!("iovm: error: {e:#}");
                ExitCode::from(vm::EXIT_ERROR as u8)
            }
        };
    }
    match run(&args, start, &signals) {
        Ok(outcome) => {
            if let Some(text) = describe(&outcome) {
                report_line(&format!("\r\niovm: {text}"));
            }
            ExitCode::from(outcome.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("iovm: error: {e:#}");
            ExitCode::from(vm::EXIT_ERROR as u8)
        }
    }
}
