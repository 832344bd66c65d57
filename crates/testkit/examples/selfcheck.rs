//! Checks the harness without iovm: runs a batch whose "iovm" is this program itself.
//!
//! `cargo run -p testkit --example selfcheck` (add `IOVM_TEST_VERBOSE=1` to watch).
//! As the stand-in (`selfcheck run ...`) it reports `/dev/kvm`, the KVM lines of dmesg, the
//! size of the guest kernel it was given, prints the guest's boot marker, echoes the first
//! line of its stdin, writes `--out FILE`, hangs on `--hang` and exits with `--exit N`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::{Batch, GuestRun};

fn value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn stand_in(args: &[String]) -> i32 {
    println!("stand-in args: {}", args[1..].join(" "));
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg("ls -l /dev/kvm 2>&1; dmesg | grep -iE 'nested|svm' | head -5")
        .output()
    {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    if let Some(k) = value(args, "--kernel") {
        match std::fs::metadata(&k) {
            Ok(m) => println!("kernel {k}: {} bytes", m.len()),
            Err(e) => println!("kernel {k}: {e}"),
        }
    }
    // Like the guest's /init: the harness types a run's stdin only after this marker.
    println!("IOVM-GUEST: boot done uptime=0.00");
    let marked = std::time::Instant::now();
    let mut input = String::new();
    let _ = std::io::stdin().read_line(&mut input);
    println!(
        "stdin: {input:?} ({:.1}s after the boot marker)",
        marked.elapsed().as_secs_f64()
    );
    if let Some(out) = value(args, "--out") {
        if let Err(e) = std::fs::write(&out, "written by the stand-in\n") {
            println!("writing {out}: {e}");
        }
    }
    if args.iter().any(|a| a == "--hang") {
        std::thread::sleep(Duration::from_secs(3600));
    }
    print!("no newline at the end");
    value(args, "--exit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = if args.get(1).map(String::as_str) == Some("run") {
        stand_in(&args)
    } else {
        check(&args)
    };
    std::process::exit(code);
}

/// Runs the batch; returns the exit code (after the batch, and its scratch directory, are
/// dropped).
fn check(args: &[String]) -> i32 {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&args[0]));
    let batch = match Batch::new() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("selfcheck: {e}");
            return 1;
        }
    };
    println!("selfcheck: mode {}", batch.mode());
    let runs = [
        GuestRun::new("kvm").args(["--out", "{scratch}/out.txt"]),
        GuestRun::new("stdin").stdin("hello from stdin\n"),
        GuestRun::new("exit3").args(["--exit", "3"]),
        GuestRun::new("hang")
            .arg("--hang")
            .timeout(Duration::from_secs(5)),
    ];
    let start = std::time::Instant::now();
    let results = match batch.run(&me, &runs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("selfcheck: {e}");
            return 1;
        }
    };
    for r in &results {
        println!("{r}");
    }
    let out = std::fs::read_to_string(batch.scratch_dir().join("out.txt"));
    println!("scratch/out.txt: {out:?}");
    println!(
        "selfcheck: batch took {:.1}s",
        start.elapsed().as_secs_f64()
    );
    let ok = results[0].exit_code == Some(0)
        && results[0].harness_error.is_none()
        && results[1].console.contains("hello from stdin")
        && results[2].exit_code == Some(3)
        && results[3].timed_out
        && out.is_ok();
    println!("selfcheck: {}", if ok { "PASS" } else { "FAIL" });
    if ok {
        0
    } else {
        1
    }
}
