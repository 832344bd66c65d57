//! Checks typing into a real guest's console: boots the test guest with iovm (directly or in
//! the test host, per [`testkit::Mode`]) once with an interactive shell fed through stdin and
//! once with a script and no stdin.
//!
//! `cargo run -p testkit --example guest_stdin [-- PATH/TO/IOVM]` (default
//! `target/debug/iovm`; build it with `cargo build -p iovm`; add `IOVM_TEST_VERBOSE=1` to
//! watch). The stdin run passes if the shell computed `hello-42` and iovm exited 0.

use std::path::PathBuf;
use std::time::Duration;

use testkit::{images, Batch, GuestRun};

fn main() {
    // After `check` returns, so that the batch's scratch directory is removed first.
    std::process::exit(check());
}

/// Runs the batch and returns the exit code.
fn check() -> i32 {
    let iovm = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| images::workspace().join("target/debug/iovm"));
    let batch = match Batch::new() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("guest_stdin: {e}");
            return 1;
        }
    };
    println!(
        "guest_stdin: mode {}, iovm {}",
        batch.mode(),
        iovm.display()
    );
    let runs = [
        GuestRun::new("stdin-shell")
            .stdin("echo hello-$((6*7))\npoweroff -f\n")
            .timeout(Duration::from_secs(300)),
        GuestRun::new("script-no-stdin")
            .script("echo script-$((6*7))")
            .timeout(Duration::from_secs(300)),
    ];
    let start = std::time::Instant::now();
    let results = match batch.run(&iovm, &runs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guest_stdin: {e}");
            return 1;
        }
    };
    for r in &results {
        println!("{r}");
    }
    let typed = &results[0];
    let typed_ok = typed.harness_error.is_none()
        && !typed.timed_out
        && typed.exit_code == Some(0)
        && typed.console.lines().any(|l| l.trim() == "hello-42");
    let script_ok = results[1].succeeded() && results[1].script_output().contains("script-42");
    println!(
        "guest_stdin: stdin run {}, script run {}, batch took {:.1}s",
        if typed_ok { "PASS" } else { "FAIL" },
        if script_ok { "PASS" } else { "FAIL" },
        start.elapsed().as_secs_f64()
    );
    if typed_ok && script_ok {
        0
    } else {
        1
    }
}
