//! The figures of one run as the bench's `--json OUT` report holds them,
//! read back by `cargo xtask bench`'s device-path group.

use anyhow::{Context, Result};
use backend::EngineKind;
use serde::{Deserialize, Serialize};

use crate::{Args, Measured, Reap, RunInfo, Rw, IO_SIZE};

/// One run's report: what ran and what it measured. A figure that cannot be
/// computed (no I/O completed, the device worker's thread was not found) is
/// `None`, `null` in the JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Device path name (`nvme`, `virtio-blk`).
    pub device: String,
    /// The backing file, as given.
    pub file: String,
    /// Whether the backend got `O_DIRECT`.
    pub direct: bool,
    /// The backend engine.
    #[serde(with = "engine_name")]
    pub engine: EngineKind,
    /// Reads or writes.
    pub rw: Rw,
    /// Requests kept in flight.
    pub depth: u16,
    /// The logical block size the device reported to the driver.
    pub block_size: u32,
    /// Bytes per request.
    pub io_size: u64,
    /// Polling or interrupts.
    pub reap: Reap,
    /// Length of the measured window (ms precision).
    pub seconds: f64,
    /// Requests completed in it.
    pub ios: u64,
    /// Requests completed per second.
    pub iops: Option<f64>,
    /// Mean latency, queued in the ring to seen completed, µs.
    pub mean_latency_us: Option<f64>,
    /// CPU of the whole process per I/O, ns.
    pub cpu_ns_per_io: Option<f64>,
    /// CPU of the driver thread per I/O, ns.
    pub driver_cpu_ns_per_io: Option<f64>,
    /// CPU of the device's worker thread per I/O, ns: the device's own cost.
    pub device_cpu_ns_per_io: Option<f64>,
    /// CPU per I/O of the process's other threads (io_uring's io-wq
    /// workers), ns.
    pub other_cpu_ns_per_io: Option<f64>,
    /// CPU of the whole process, percent of one core.
    pub process_cpu_percent: Option<f64>,
    /// CPU of the device's worker thread, percent of one core.
    pub device_cpu_percent: Option<f64>,
    /// Interrupt messages per I/O.
    pub interrupts_per_io: Option<f64>,
    /// Submission doorbell writes (virtio: notifications) per I/O.
    pub sq_doorbells_per_io: Option<f64>,
    /// Batches of completions reaped (NVMe: completion doorbell writes) per
    /// I/O.
    pub cq_doorbells_per_io: Option<f64>,
    /// Mean wall time of a notify or reap call, µs.
    pub doorbell_wall_us_mean: Option<f64>,
}

/// `v` rounded to `decimals` places; `None` if it is not finite.
fn rounded(v: f64, decimals: i32) -> Option<f64> {
    let scale = 10f64.powi(decimals);
    v.is_finite().then(|| (v * scale).round() / scale)
}

/// `ns / ios`, or NaN when nothing completed.
fn per_io(ns: u64, ios: u64) -> f64 {
    if ios == 0 {
        f64::NAN
    } else {
        ns as f64 / ios as f64
    }
}

impl Figures {
    /// The figures of a run of `args` on the device `ctx` describes, which
    /// measured `m`: times and CPU to one decimal, seconds and counts per
    /// I/O to three.
    pub fn new(args: &Args, ctx: &RunInfo, m: &Measured) -> Self {
        let ios = m.ios;
        let iops = if m.seconds > 0.0 {
            ios as f64 / m.seconds
        } else {
            f64::NAN
        };
        let mean_latency_us = if ios > 0 {
            m.latency_ns as f64 / ios as f64 / 1000.0
        } else {
            f64::NAN
        };
        let worker = m.worker_ns.map_or(f64::NAN, |w| per_io(w, ios));
        let other = m.worker_ns.map_or(f64::NAN, |w| {
            per_io(m.process_ns.saturating_sub(w + m.driver_ns), ios)
        });
        let busy = |ns: f64| ns / 1e9 / m.seconds * 100.0;
        let one = |v: f64| rounded(v, 1);
        let three = |v: f64| rounded(v, 3);
        Self {
            device: ctx.device.to_owned(),
            file: args.file.display().to_string(),
            direct: ctx.direct,
            engine: args.engine,
            rw: args.rw,
            depth: args.depth,
            block_size: ctx.block_size,
            io_size: IO_SIZE,
            reap: args.reap,
            seconds: three(m.seconds).unwrap_or(0.0),
            ios,
            iops: one(iops),
            mean_latency_us: one(mean_latency_us),
            cpu_ns_per_io: one(per_io(m.process_ns, ios)),
            driver_cpu_ns_per_io: one(per_io(m.driver_ns, ios)),
            device_cpu_ns_per_io: one(worker),
            other_cpu_ns_per_io: one(other),
            process_cpu_percent: one(busy(m.process_ns as f64)),
            device_cpu_percent: one(m.worker_ns.map_or(f64::NAN, |w| busy(w as f64))),
            interrupts_per_io: three(per_io(m.interrupts, ios)),
            sq_doorbells_per_io: three(per_io(m.notifies, ios)),
            cq_doorbells_per_io: three(per_io(m.reaps, ios)),
            doorbell_wall_us_mean: one(m.doorbell_ns as f64
                / (m.notify_calls + m.reaps).max(1) as f64
                / 1000.0),
        }
    }

    /// The report's text: pretty-printed JSON (two-space indent) with a
    /// final newline.
    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self).context("writing the figures as JSON")?;
        text.push('\n');
        Ok(text)
    }
}

/// The engine by the name the report gives it (`io_uring`, `sync`).
mod engine_name {
    use backend::EngineKind;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(e: &EngineKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match e {
            EngineKind::IoUring => "io_uring",
            EngineKind::Sync => "sync",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EngineKind, D::Error> {
        match String::deserialize(d)?.as_str() {
            "io_uring" => Ok(EngineKind::IoUring),
            "sync" => Ok(EngineKind::Sync),
            other => Err(de::Error::unknown_variant(other, &["io_uring", "sync"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::PathBuf;

    /// What the hand-written writer this type replaced wrote for
    /// [`measured`] on NVMe (`--reap irq`, `O_DIRECT` refused).
    const HAND_WRITTEN: &str = include_str!("../testdata/figures-hand-written.json");
    /// The same, on virtio-blk with `--rw randwrite --engine sync --buffered`
    /// and no worker thread found.
    const HAND_WRITTEN_NO_WORKER: &str =
        include_str!("../testdata/figures-no-worker-hand-written.json");

    fn measured() -> Measured {
        Measured {
            seconds: 5.000123,
            ios: 612345,
            latency_ns: 612345 * 261_234,
            process_ns: 4_987_654_321,
            driver_ns: 1_234_567_890,
            worker_ns: Some(2_345_678_901),
            interrupts: 301_234,
            notifies: 150_000,
            notify_calls: 300_000,
            reaps: 301_000,
            doorbell_ns: 900_000_000,
        }
    }

    fn nvme_run() -> (Args, RunInfo) {
        let args = Args::try_parse_from([
            "nvme_path",
            "--bench",
            "--file",
            "/dev/shm/iovm-bench-device-path-123.img",
            "--seconds",
            "5",
            "--reap",
            "irq",
        ])
        .unwrap();
        let ctx = RunInfo {
            device: "nvme",
            direct: false,
            block_size: 512,
        };
        (args, ctx)
    }

    /// The keys of a pretty-printed object's top level, in order.
    fn keys(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("  \"")?.split_once("\": ").map(|(k, _)| k))
            .collect()
    }

    #[test]
    fn test_hand_written_report_reads_with_its_values() {
        let f: Figures = serde_json::from_str(HAND_WRITTEN).unwrap();

        assert_eq!(
            (f.device.as_str(), f.file.as_str(), f.direct),
            ("nvme", "/dev/shm/iovm-bench-device-path-123.img", false)
        );
        assert_eq!(
            (f.engine, f.rw, f.reap),
            (EngineKind::IoUring, Rw::RandRead, Reap::Irq)
        );
        assert_eq!((f.depth, f.block_size, f.io_size), (32, 512, 4096));
        assert_eq!((f.seconds, f.ios), (5.0, 612345));
        assert_eq!(f.iops, Some(122466.0));
        assert_eq!(f.mean_latency_us, Some(261.2));
        assert_eq!(f.device_cpu_ns_per_io, Some(3830.6));
        assert_eq!(f.interrupts_per_io, Some(0.492));
        assert_eq!(f.doorbell_wall_us_mean, Some(1.5));
    }

    #[test]
    fn test_hand_written_nulls_read_as_none() {
        let f: Figures = serde_json::from_str(HAND_WRITTEN_NO_WORKER).unwrap();

        assert_eq!(
            (f.engine, f.rw, f.reap),
            (EngineKind::Sync, Rw::RandWrite, Reap::Poll)
        );
        assert_eq!(f.device_cpu_ns_per_io, None);
        assert_eq!(f.other_cpu_ns_per_io, None);
        assert_eq!(f.device_cpu_percent, None);
        assert_eq!(f.cpu_ns_per_io, Some(8145.2));
    }

    #[test]
    fn test_new_gives_the_hand_written_values_and_keys() {
        let (args, ctx) = nvme_run();

        let f = Figures::new(&args, &ctx, &measured());

        assert_eq!(f, serde_json::from_str(HAND_WRITTEN).unwrap());
        assert_eq!(keys(&f.to_json().unwrap()), keys(HAND_WRITTEN));
    }

    #[test]
    fn test_report_text_reads_back_equal() {
        let (mut args, ctx) = nvme_run();
        args.file = PathBuf::from("/tmp/a \"quoted\" \\ name");

        let f = Figures::new(&args, &ctx, &measured());
        let text = f.to_json().unwrap();

        assert!(text.starts_with("{\n  \"device\": \"nvme\",\n"));
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Figures>(&text).unwrap(), f);
    }

    #[test]
    fn test_no_io_gives_nulls_not_nan() {
        let (args, ctx) = nvme_run();
        let m = Measured {
            seconds: 1.0,
            ..Measured::default()
        };

        let text = Figures::new(&args, &ctx, &m).to_json().unwrap();
        let back: Figures = serde_json::from_str(&text).unwrap();

        assert!(!text.contains("NaN"));
        assert_eq!(back.ios, 0);
        assert_eq!((back.iops, back.interrupts_per_io), (Some(0.0), None));
        assert_eq!((back.mean_latency_us, back.cpu_ns_per_io), (None, None));
    }

    #[test]
    fn test_unknown_engine_name_is_an_error() {
        let text = HAND_WRITTEN.replace("\"io_uring\"", "\"aio\"");

        let err = serde_json::from_str::<Figures>(&text).unwrap_err();

        assert!(err.to_string().contains("unknown variant `aio`"), "{err}");
    }
}
