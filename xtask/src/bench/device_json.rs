//! The JSON the device-path group reads, as serde types: fio's
//! `--output-format=json` report, the figures a device-path bench writes with
//! `--json` (benchkit's `Figures`, the part the group uses), and the
//! `compiler-artifact` messages in which cargo names the bench executables.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads the first JSON value in `text`: what comes before its first `{` or
/// `[` is skipped (fio may print notes there), and so is what follows it.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T> {
    let start = text.find(['{', '[']).context("no JSON object or array")?;
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<T>()
        .next()
        .context("no JSON value")?
        .context("unexpected JSON")
}

/// What the group takes from a device-path bench's `--json` figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BenchFigures {
    /// Whether the backend got `O_DIRECT` (no if not said).
    #[serde(default)]
    pub direct: bool,
    /// I/Os per second.
    pub iops: Option<f64>,
    /// Mean completion latency, µs.
    pub mean_latency_us: Option<f64>,
    /// CPU per I/O of the device's worker thread, ns.
    pub device_cpu_ns_per_io: Option<f64>,
    /// CPU per I/O of the whole process, ns.
    pub cpu_ns_per_io: Option<f64>,
}

/// fio's JSON report, the part the group uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioReport {
    /// One per job; the group runs one.
    pub jobs: Vec<FioJob>,
}

/// One fio job's results.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioJob {
    /// Its reads.
    pub read: FioDirection,
    /// Its writes.
    pub write: FioDirection,
    /// How long it ran, ms.
    pub job_runtime: f64,
    /// User CPU, percent of its run time.
    pub usr_cpu: f64,
    /// System CPU, percent of its run time.
    pub sys_cpu: f64,
}

/// One direction (reads or writes) of a fio job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioDirection {
    /// I/Os per second.
    pub iops: f64,
    /// I/Os completed.
    pub total_ios: u64,
    /// Total latency, if any I/O went this way.
    pub lat_ns: Option<FioLatency>,
}

/// A latency distribution in fio's report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioLatency {
    /// Mean, ns.
    pub mean: f64,
}

/// One line of `cargo --message-format=json`, the part that names an
/// executable.
#[derive(Debug, Deserialize)]
struct CargoMessage {
    reason: String,
    target: Option<CargoTarget>,
    executable: Option<PathBuf>,
}

/// The target a cargo message is about.
#[derive(Debug, Deserialize)]
struct CargoTarget {
    name: String,
}

/// `(target name, executable)` of each executable that cargo's JSON messages
/// in `stdout` report built; lines that are no such message are skipped.
pub fn executables(stdout: &str) -> Vec<(String, PathBuf)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<CargoMessage>(l).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter_map(|m| Some((m.target?.name, m.executable?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What benchkit's hand-written writer wrote before benchkit wrote its
    /// `Figures` with serde: the format the group must keep reading.
    const HAND_WRITTEN: &str =
        include_str!("../../../crates/benchkit/testdata/figures-hand-written.json");
    const HAND_WRITTEN_NO_WORKER: &str =
        include_str!("../../../crates/benchkit/testdata/figures-no-worker-hand-written.json");

    #[test]
    fn test_parse_skips_notes_and_what_follows() {
        let text = r#"note: something
{"jobs": [{"read": {"iops": 1234.5, "total_ios": 7}, "write": {"iops": 0, "total_ios": 0},
           "job_runtime": 1, "usr_cpu": 0, "sys_cpu": 0}]}
fio: done"#;

        let r: FioReport = parse(text).unwrap();

        assert_eq!(r.jobs[0].read.iops, 1234.5);
        assert_eq!(r.jobs[0].read.lat_ns, None);
        assert!(parse::<FioReport>(r#"{"jobs": }"#).is_err());
        assert!(parse::<FioReport>("[1, 2").is_err());
        assert!(parse::<FioReport>("fio: no output").is_err());
    }

    #[test]
    fn test_bench_figures_of_the_hand_written_format() {
        let f: BenchFigures = parse(HAND_WRITTEN).unwrap();
        let no_worker: BenchFigures = parse(HAND_WRITTEN_NO_WORKER).unwrap();

        assert_eq!(
            f,
            BenchFigures {
                direct: false,
                iops: Some(122466.0),
                mean_latency_us: Some(261.2),
                device_cpu_ns_per_io: Some(3830.6),
                cpu_ns_per_io: Some(8145.2),
            }
        );
        assert_eq!(no_worker.device_cpu_ns_per_io, None);
        assert_eq!(no_worker.cpu_ns_per_io, Some(8145.2));
    }

    #[test]
    fn test_executables_from_cargo_messages() {
        let stdout = r#"{"reason":"compiler-artifact","target":{"name":"benchkit","kind":["lib"]},"executable":null,"fresh":true}
not json
{"reason":"compiler-artifact","target":{"name":"nvme_path","kind":["bench"]},"executable":"/t/release/deps/nvme_path-1"}
{"reason":"build-finished","success":true}"#;

        let exes = executables(stdout);

        assert_eq!(
            exes,
            vec![(
                "nvme_path".to_owned(),
                PathBuf::from("/t/release/deps/nvme_path-1")
            )]
        );
    }
}
