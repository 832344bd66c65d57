//! Direct mode: spawn iovm on this machine, one run after another, each under its timeout.

use std::io::Write;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::capture::{Capture, Stream};
use crate::error::{Error, IoContext};
use crate::markers::GUEST_BOOT_DONE;
use crate::run::{GuestRun, RunResult, STDIN_DELAY};

/// Types `input` into iovm's standard input as a person would: once the guest's console
/// shows its boot marker and [`STDIN_DELAY`] more have passed; then keeps the pipe open
/// until iovm closes its output (exits). Returns early, input untyped, if iovm's output
/// ends without the marker.
fn type_input(mut pipe: ChildStdin, capture: &Capture, input: &str) {
    if !capture.wait_for(GUEST_BOOT_DONE) {
        return;
    }
    std::thread::sleep(STDIN_DELAY);
    // iovm may exit before reading it all: ignore write errors.
    let _ = pipe.write_all(input.as_bytes());
    let _ = pipe.flush();
    capture.wait_closed();
}

/// Runs a hook of `run` with `sh -c`, reporting a failure on stderr.
fn host_hook(
    run: &GuestRun,
    commands: Option<&String>,
    (scratch, guest, iovm): (&Path, &Path, &Path),
    what: &str,
) {
    let Some(cmd) = run.hook(
        commands,
        &scratch.to_string_lossy(),
        &guest.to_string_lossy(),
        &iovm.to_string_lossy(),
    ) else {
        return;
    };
    match Command::new("sh").arg("-c").arg(&cmd).status() {
        Ok(s) if s.success() => {}
        other => eprintln!("testkit: {what} of {} failed: {other:?}", run.name),
    }
}

/// Runs one guest; the child is killed when `run.timeout` expires.
pub(crate) fn run_one(
    iovm: &Path,
    run: &GuestRun,
    guest_dir: &Path,
    scratch: &Path,
    stream: Stream,
) -> Result<RunResult, Error> {
    let args = run.iovm_args(&guest_dir.to_string_lossy(), &scratch.to_string_lossy());
    host_hook(
        run,
        run.host_before.as_ref(),
        (scratch, guest_dir, iovm),
        "host_before",
    );
    let start = Instant::now();
    let launcher = run.launcher(&iovm.to_string_lossy());
    let mut child = Command::new(&launcher[0])
        .args(&launcher[1..])
        .args(&args)
        .stdin(if run.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| format!("starting {} for run {}", iovm.display(), run.name))?;
    let capture = Capture::default();
    let prefix = format!("[{}] ", run.name);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(capture.pump(out, None, stream, prefix.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(capture.pump(err, None, stream, prefix));
    }
    // Started after the pumps: it waits on what they capture.
    let feeder = match (child.stdin.take(), &run.stdin) {
        (Some(pipe), Some(input)) => {
            let (capture, input) = (capture.clone(), input.clone());
            Some(std::thread::spawn(move || {
                type_input(pipe, &capture, &input)
            }))
        }
        _ => None,
    };
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .ctx(|| format!("waiting for iovm (run {})", run.name))?
        {
            break status;
        }
        if start.elapsed() >= run.timeout {
            timed_out = true;
            // Already exited in between is fine.
            let _ = child.kill();
            break child
                .wait()
                .ctx(|| format!("waiting for killed iovm (run {})", run.name))?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for p in pumps {
        let _ = p.join();
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    host_hook(
        run,
        run.host_after.as_ref(),
        (scratch, guest_dir, iovm),
        "host_after",
    );
    Ok(RunResult {
        name: run.name.clone(),
        exit_code: status.code(),
        timed_out,
        console: capture.text(),
        duration: Some(start.elapsed()),
        harness_error: None,
    })
}
