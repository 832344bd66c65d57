//! `cargo xtask test` and `cargo xtask ci`: the workspace's tests with the images they need.

use anyhow::Result;
use testkit::Mode;

use crate::hostmode::{self, ModeChoice};
use crate::run::{cargo, run_status};
use crate::{fuzz, guest, testhost};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Arguments after `--` go to `cargo test --workspace` (e.g. `-- --test guest_boot --
    /// --nocapture`).
    #[arg(last = true, value_name = "CARGO TEST ARGS")]
    pub cargo_args: Vec<String>,
}

/// Builds the images the tests need when missing or out of date, runs
/// `cargo test --workspace <args>` and returns cargo's exit status.
pub fn test(args: &TestArgs) -> Result<i32> {
    let (mode, why) = hostmode::decide(ModeChoice::Auto)?;
    println!(
        "xtask: test: guest tests in mode {mode}: {} ({why})",
        hostmode::where_iovm_runs(mode)
    );
    guest::ensure()?;
    if mode == Mode::TestHost {
        testhost::ensure()?;
    }
    let status = run_status(cargo().args(["test", "--workspace"]).args(&args.cargo_args))?;
    let code = status.code().unwrap_or(1);
    println!(
        "xtask: cargo test {} (exit status {code})",
        if status.success() { "passed" } else { "FAILED" }
    );
    Ok(code)
}

/// Format check, clippy, [`test`], a short run of every fuzz target, then a smoke run of
/// the benchmark; stops at the first failing step and returns its exit status. The log
/// ends with what the run lost to the nested test host (test hosts that died or stalled,
/// guests killed by its known fault; each retried).
pub fn ci(args: &TestArgs) -> Result<i32> {
    let dir = crate::paths::target().join("testkit");
    let _ = std::fs::remove_file(dir.join(testkit::losses::LOSSES_FILE));
    let code = ci_steps(args);
    let lost = testkit::losses::read(&dir);
    println!(
        "xtask: ci: lost to the nested test host (test hosts, and guests killed by its known fault): {}",
        lost.len()
    );
    for l in &lost {
        println!("xtask: ci:   {l}");
    }
    code
}

fn ci_steps(args: &TestArgs) -> Result<i32> {
    let steps: [(&str, &[&str]); 2] = [
        ("format check", &["fmt", "--all", "--", "--check"]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    for (i, (name, cargo_args)) in steps.iter().enumerate() {
        println!("xtask: ci step {}/6: {name}", i + 1);
        let status = run_status(cargo().args(*cargo_args))?;
        if !status.success() {
            let code = status.code().unwrap_or(1);
            println!("xtask: ci: {name} FAILED (exit status {code})");
            return Ok(code);
        }
    }
    println!("xtask: ci step 3/6: tests");
    let code = test(args)?;
    if code != 0 {
        return Ok(code);
    }
    println!(
        "xtask: ci step 4/6: fuzz smoke run ({} s per target, {} at a time)",
        fuzz::SECONDS,
        fuzz::smoke_jobs()
    );
    let code = fuzz::smoke()?;
    if code != 0 {
        println!("xtask: ci: fuzz smoke run FAILED (exit status {code})");
        return Ok(code);
    }
    println!(
        "xtask: ci step 5/6: API fuzz (schemathesis against docs/api/openapi.yaml, {} s)",
        crate::api_fuzz::MAX_TIME
    );
    let code = crate::api_fuzz::run(&crate::api_fuzz::ApiFuzzArgs {
        max_time: crate::api_fuzz::MAX_TIME,
    })?;
    if code != 0 {
        println!("xtask: ci: API fuzz FAILED (exit status {code})");
        return Ok(code);
    }
    println!(
        "xtask: ci step 6/6: benchmark smoke run (cargo xtask bench --quick; no speed is checked)"
    );
    let code = crate::bench::run(&crate::bench::BenchArgs {
        quick: true,
        reps: 1,
        mode: ModeChoice::Auto,
        timeout: 180,
        only: Vec::new(),
        storage: crate::bench::Storage::DEFAULT.to_vec(),
    })?;
    if code == 0 {
        println!("xtask: ci passed");
    } else {
        println!("xtask: ci: benchmark smoke run FAILED (exit status {code})");
    }
    Ok(code)
}
