//! Where guests run on this machine (testkit's [`Mode`]), and why, in words.

use std::path::Path;

use anyhow::Result;
use testkit::{Mode, MODE_ENV};

/// `--mode` of `cargo xtask demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeChoice {
    /// Direct on hardware KVM, in the test host otherwise (or as `IOVM_TEST_MODE` says).
    Auto,
    /// Run iovm on this machine's /dev/kvm.
    Direct,
    /// Run iovm inside the nested test host (QEMU TCG with emulated AMD SVM).
    Testhost,
}

/// What this machine's `/dev/kvm` is, in words.
pub fn describe_kvm() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flag = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .filter_map(|l| l.split_once(':'))
        .flat_map(|(_, flags)| flags.split_whitespace())
        .find(|f| *f == "vmx" || *f == "svm")
        .map(str::to_owned);
    if !Path::new("/dev/kvm").exists() {
        "there is no /dev/kvm".into()
    } else if Path::new("/sys/module/kvm_pvm").exists() {
        "/dev/kvm is PVM (kvm_pvm is loaded), which cannot run a stock kernel".into()
    } else if let Some(flag) = flag {
        format!("/dev/kvm is hardware KVM (CPU flag {flag})")
    } else {
        "the CPU shows neither vmx nor svm: /dev/kvm is not hardware KVM".into()
    }
}

/// The mode for `choice`, with the reason.
pub fn decide(choice: ModeChoice) -> Result<(Mode, String)> {
    let kvm = describe_kvm();
    Ok(match choice {
        ModeChoice::Direct => (Mode::Direct, format!("forced by --mode direct; {kvm}")),
        ModeChoice::Testhost => (Mode::TestHost, format!("forced by --mode testhost; {kvm}")),
        ModeChoice::Auto => {
            let mode = Mode::from_host()?;
            let env = std::env::var(MODE_ENV).unwrap_or_default();
            let why = if matches!(env.trim(), "" | "auto") {
                kvm
            } else {
                format!("forced by {MODE_ENV}={env}; {kvm}")
            };
            (mode, why)
        }
    })
}

/// A sentence saying where iovm runs in `mode`.
pub fn where_iovm_runs(mode: Mode) -> &'static str {
    match mode {
        Mode::Direct => "running iovm directly on this machine's /dev/kvm",
        Mode::TestHost => {
            "running iovm inside the nested test host (QEMU 7.2 TCG with emulated AMD SVM, \
             KVM inside; see docs/test-host.md)"
        }
    }
}
