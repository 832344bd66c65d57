//! The bench binaries' command line, common to every device path: [`Args`]
//! through clap's derive, and the values its options take.

use std::path::PathBuf;

use backend::EngineKind;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// Which requests the load generator issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// 4 KiB reads at random 4 KiB-aligned offsets.
    #[value(name = "randread")]
    RandRead,
    /// 4 KiB writes at random 4 KiB-aligned offsets.
    #[value(name = "randwrite")]
    RandWrite,
}

impl Rw {
    /// fio's name for it.
    pub fn id(self) -> &'static str {
        match self {
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
        }
    }
}

/// How the driver learns of completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reap {
    /// Spin on the completion ring (the driver thread burns a core).
    Poll,
    /// Sleep on the interrupt: each MSI the device sends writes an eventfd,
    /// as KVM's irqfd is written; the driver checks the ring when woken.
    Irq,
}

/// The PCI role an NVMe controller is built with (its I/O path is the same
/// in each; what differs is its identity and interrupts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// An ordinary function.
    #[default]
    Function,
    /// An SR-IOV physical function (with four virtual functions offered).
    Pf,
    /// An SR-IOV virtual function (MSI-X only, CMIC's VF bit).
    Vf,
}

impl Reap {
    /// Name in the report.
    pub fn id(self) -> &'static str {
        match self {
            Reap::Poll => "poll",
            Reap::Irq => "irq",
        }
    }
}

const USAGE: &str = "\
cargo bench -p devices --bench nvme_path -- --file PATH [OPTIONS]
       cargo bench -p virtio --bench blk_path -- --file PATH [OPTIONS]";

const ABOUT: &str = "\
One iovm device path without a VM: a synthetic guest driver keeps --depth 4 KiB requests in \
flight through the device's registers or rings, its worker thread and its backend, and reports \
IOPS, mean latency and CPU per I/O.";

const AFTER_HELP: &str = "\
Run it through cargo, which builds it optimized and passes --bench (ignored here):
  cargo bench -p devices --bench nvme_path -- --help
  cargo bench -p devices --bench nvme_path -- --file /dev/shm/x.img --depth 32 --json nvme.json
  cargo bench -p virtio --bench blk_path -- --file /dev/shm/x.img --rw randwrite --reap irq
The file must hold at least one 4 KiB block. `cargo xtask bench --only device-path` runs both \
device paths against the host's fio on the same file.";

/// Command-line options, common to every device path.
#[derive(Clone, Debug, Parser)]
#[command(override_usage = USAGE, about = ABOUT, after_help = AFTER_HELP)]
pub struct Args {
    /// The backing file or block device (its data is read, or overwritten
    /// with --rw randwrite).
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
    /// Seconds measured, after the warm-up.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10.0,
        value_parser = positive_seconds,
        allow_negative_numbers = true
    )]
    pub seconds: f64,
    /// Seconds of load before measuring.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1.0,
        value_parser = seconds_or_none,
        allow_negative_numbers = true
    )]
    pub warmup: f64,
    /// Requests kept in flight.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 32,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub depth: u16,
    /// Reads or writes.
    #[arg(long, value_enum, default_value_t = Rw::RandRead)]
    pub rw: Rw,
    /// Where to write the figures as JSON.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// The device's logical block size, where the bench can choose it
    /// (NVMe, default 512; virtio-blk reports the file's own); unset: the
    /// device's default.
    #[arg(long, value_name = "512|4096", value_parser = block_size)]
    pub block_size: Option<u32>,
    /// Polling or interrupts.
    #[arg(long, value_enum, default_value_t = Reap::Poll)]
    pub reap: Reap,
    /// NVMe only: the SR-IOV role the controller is built with, so that a
    /// PF and its VFs can be measured side by side (one process each).
    #[arg(long, value_enum, default_value_t = Role::Function)]
    pub role: Role,
    /// Backend engine: io_uring, or preadv2/pwritev2 on the worker thread.
    #[arg(long, value_name = "uring|sync", default_value = "uring", value_parser = engine())]
    pub engine: EngineKind,
    /// Ask for O_DIRECT (the backend falls back to buffered where refused);
    /// off with --buffered.
    #[arg(
        long = "buffered",
        action = ArgAction::SetFalse,
        help = "Do not ask for O_DIRECT (by default the backend asks, and falls back to \
                buffered I/O where it is refused)"
    )]
    pub direct: bool,
    /// Put the device's worker thread in its seccomp filter, as iovm does
    /// (`on`, the default), or not (`off`): the filters' cost on the path.
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub seccomp: sandbox::Mode,
    /// What `cargo bench` passes to every bench binary; ignored.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

/// A positive, finite number of seconds.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("a positive number of seconds".into()),
    }
}

/// A finite number of seconds, zero or more.
fn seconds_or_none(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("a number of seconds, zero or more".into()),
    }
}

/// 512 or 4096.
fn block_size(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err("512 or 4096".into()),
    }
}

/// `uring` or `sync`.
fn engine() -> impl TypedValueParser<Value = EngineKind> {
    PossibleValuesParser::new(["uring", "sync"]).map(|s| match s.as_str() {
        "sync" => EngineKind::Sync,
        _ => EngineKind::IoUring,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn args(list: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("nvme_path").chain(list.iter().copied()))
    }

    fn error(list: &[&str]) -> (ErrorKind, String) {
        let e = args(list).unwrap_err();
        (e.kind(), e.to_string())
    }

    #[test]
    fn test_args_role_defaults_to_a_plain_function_and_reads_pf_and_vf() {
        assert_eq!(args(&["--file", "f"]).unwrap().role, Role::Function);
        assert_eq!(
            args(&["--file", "f", "--role", "vf"]).unwrap().role,
            Role::Vf
        );
        assert_eq!(
            args(&["--file", "f", "--role", "pf"]).unwrap().role,
            Role::Pf
        );
        assert!(args(&["--file", "f", "--role", "x"]).is_err());
    }

    #[test]
    fn test_args_only_file_gives_defaults() {
        let a = args(&["--bench", "--file", "/tmp/x"]).unwrap();

        assert_eq!(a.file, PathBuf::from("/tmp/x"));
        assert_eq!((a.depth, a.rw, a.reap), (32, Rw::RandRead, Reap::Poll));
        assert_eq!(a.block_size, None);
        assert!(a.direct);
        assert_eq!((a.seconds, a.warmup), (10.0, 1.0));
        assert_eq!((a.engine, a.json), (EngineKind::IoUring, None));
    }

    #[test]
    fn test_args_block_size_given_is_kept() {
        let a = args(&["--file", "f", "--block-size", "4096", "--rw", "randwrite"]).unwrap();

        assert_eq!((a.block_size, a.rw), (Some(4096), Rw::RandWrite));
    }

    #[test]
    fn test_args_without_file_or_with_depth_zero_fail() {
        assert!(args(&["--depth", "4"]).is_err());
        assert!(args(&["--file", "f", "--depth", "0"]).is_err());
    }

    #[test]
    fn test_args_every_option_is_read() {
        let a = args(&[
            "--file",
            "f",
            "--seconds",
            "2.5",
            "--warmup",
            "0",
            "--depth",
            "4",
            "--json",
            "out.json",
            "--block-size",
            "512",
            "--reap",
            "irq",
            "--engine",
            "sync",
            "--buffered",
            "--bench",
        ])
        .unwrap();

        assert_eq!((a.seconds, a.warmup, a.depth), (2.5, 0.0, 4));
        assert_eq!(a.json, Some(PathBuf::from("out.json")));
        assert_eq!((a.block_size, a.reap), (Some(512), Reap::Irq));
        assert_eq!(a.engine, EngineKind::Sync);
        assert!(!a.direct);
    }

    #[test]
    fn test_args_as_xtask_runs_the_benches() {
        let a = args(&[
            "--file",
            "/dev/shm/f",
            "--seconds",
            "5",
            "--warmup",
            "1",
            "--depth",
            "32",
            "--rw",
            "randwrite",
            "--reap",
            "irq",
            "--json",
            "o.json",
        ])
        .unwrap();

        assert_eq!(
            (a.rw, a.reap, a.depth, a.seconds),
            (Rw::RandWrite, Reap::Irq, 32, 5.0)
        );
    }

    #[test]
    fn test_args_bad_values_name_the_option_and_what_it_takes() {
        use ErrorKind::{InvalidValue, ValueValidation};
        for (list, kind, option, takes) in [
            (
                &["--block-size", "1024"][..],
                ValueValidation,
                "--block-size",
                "512 or 4096",
            ),
            (
                &["--rw", "read"],
                InvalidValue,
                "--rw",
                "randread, randwrite",
            ),
            (&["--reap", "spin"], InvalidValue, "--reap", "poll, irq"),
            (
                &["--engine", "aio"],
                InvalidValue,
                "--engine",
                "uring, sync",
            ),
            (
                &["--seconds", "0"],
                ValueValidation,
                "--seconds",
                "positive",
            ),
            (
                &["--seconds", "inf"],
                ValueValidation,
                "--seconds",
                "positive",
            ),
            (
                &["--seconds", "-2"],
                ValueValidation,
                "--seconds",
                "positive",
            ),
            (
                &["--warmup", "-1"],
                ValueValidation,
                "--warmup",
                "zero or more",
            ),
            (&["--depth", "0"], ValueValidation, "--depth", "1.."),
            (
                &["--depth", "x"],
                ValueValidation,
                "--depth",
                "invalid digit",
            ),
        ] {
            let list: Vec<&str> = ["--file", "f"].iter().chain(list).copied().collect();

            let (got, text) = error(&list);

            assert_eq!(got, kind, "{list:?}: {text}");
            assert!(
                text.contains(option) && text.contains(takes),
                "{list:?}: {text}"
            );
        }
    }

    #[test]
    fn test_args_missing_or_unknown_are_errors() {
        assert_eq!(error(&[]).0, ErrorKind::MissingRequiredArgument);
        assert_eq!(error(&["--file"]).0, ErrorKind::InvalidValue);
        let (kind, text) = error(&["--file", "f", "--size", "1"]);

        assert_eq!(kind, ErrorKind::UnknownArgument);
        assert!(text.contains("--size"), "{text}");
    }

    #[test]
    fn test_help_teaches_how_to_run_it() {
        let (kind, text) = error(&["--help"]);

        assert_eq!(kind, ErrorKind::DisplayHelp);
        assert!(text.contains("cargo bench -p devices --bench nvme_path -- --help"));
        assert!(text.contains("cargo bench -p virtio --bench blk_path"));
        for option in [
            "--file",
            "--seconds",
            "--warmup",
            "--depth",
            "--rw",
            "--json",
            "--block-size",
            "--reap",
            "--engine",
            "--buffered",
        ] {
            assert!(text.contains(option), "{option} missing from:\n{text}");
        }
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("--bench")),
            "{text}"
        );
    }
}
