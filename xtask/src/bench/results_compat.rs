//! results.json keeps its format across the move to serde: the inputs that the
//! hand-written writer turned into `xtask/testdata/results-hand-written.json` give the
//! same keys, kinds of value and values through [`report::results`].

use serde_json::Value;
use testkit::Mode;

use super::block::{FioResult, HostFio, Job, Metric as BlockMetric, Storage};
use super::boot::{evaluate, Outcome};
use super::device::{self, Metric, Pattern, Place, Run, Side};
use super::plan::{Kind, RunSpec};
use super::record::{Exit, Memory, Record};
use super::report::{self, Env, Guests};
use super::results::ResultsFile;
use super::vmm::Vmm;

const HAND_WRITTEN: &str = include_str!("../../testdata/results-hand-written.json");

fn boot_run(vmm: Vmm, rep: u32, marker: f64, ok: bool) -> Outcome {
    let console = "iovm: timing: first guest instruction 2.5 ms after start\n\
                   iovm: timing: init marker seen 9.25 ms after start\n\
                   IOVM-GUEST: exit status=0\n";
    let r = Record {
        name: format!("boot.{}.{rep}", vmm.id()),
        exit: if ok { Exit::Code(0) } else { Exit::TimedOut },
        marker_ms: Some(marker),
        exit_ms: Some(marker + 100.125),
        memory: Some(Memory {
            rss_kb: 20480,
            pss_kb: 18000,
            anon_kb: 9000,
            anon_huge_kb: 2048,
        }),
    };
    let spec = RunSpec {
        kind: Kind::Boot,
        vmm,
        rep,
    };
    evaluate(spec, Some(r), Some(console), &[])
}

/// The environment of the hand-written file's run.
pub fn env() -> Env {
    Env {
        date: "2025-01-02 03:04 UTC".into(),
        mode: Mode::TestHost,
        machine: "AMD EPYC 7B13, 2 CPUs; Linux 6.1.0-28-amd64; /dev/kvm: nested".into(),
        run_kernel: "6.1.0-28-amd64".into(),
        run_cpu: "QEMU Virtual CPU \"max\", 2 CPUs".into(),
        guest: "Linux 6.1.119 (linux-image-6.1.0-28-amd64-unsigned), busybox".into(),
        iovm: "iovm 0.1.0, a2f377f".into(),
        qemu: "QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)".into(),
        reps: 2,
        memory: "256M".into(),
        sample_after_ms: 1500,
        cmdline: "console=ttyS0 panic=-1 iovm.run=<base64 of the guest script: `:` for boot \
                  runs, `sleep 2`\tfor memory runs, \\ back>"
            .into(),
        commands: vec![
            (
                Vmm::Iovm,
                "$STAGE/iovm --memory 256M --kernel $STAGE/guest/vmlinuz --cmdline \
                 'console=ttyS0 panic=-1 iovm.run=Og=='"
                    .into(),
            ),
            (
                Vmm::QemuMicrovm,
                "$STAGE/qemu -M microvm -append \"q\"".into(),
            ),
            (Vmm::QemuQ35, "$STAGE/qemu -M q35".into()),
        ],
        io_commands: vec![],
        io_scripts: vec![],
        block_seconds: 10,
        net_mib: 64,
        block_images: vec![],
    }
}

fn host_fio() -> HostFio {
    let fio = |iops: f64| FioResult {
        ios: 10000.0,
        values: [
            (BlockMetric::P50Us, 470.0),
            (BlockMetric::P99Us, 820.5),
            (BlockMetric::Iops, iops),
            (BlockMetric::MBps, 8000.0 * 1024.0 / 1e6),
        ],
    };
    let mut runs = Vec::new();
    for job in Job::ALL {
        runs.push((Storage::Shm, job, 1, Ok(fio(2000.0))));
        let second = if job == Job::SeqReadQd8 {
            Err("host fio read128k-qd8 failed: `fio: \"x\" bad`".to_owned())
        } else {
            Ok(fio(2100.5))
        };
        runs.push((Storage::Shm, job, 2, second));
    }
    HostFio {
        version: Some("fio-3.33".into()),
        runs,
    }
}

fn device_path() -> device::Results {
    let mut runs = Vec::new();
    for place in Place::ALL {
        for rep in 1..=2 {
            for pattern in Pattern::ALL {
                for side in Side::ALL {
                    let failed = place == Place::Disk
                        && side == Side::VirtioBlk
                        && rep == 2
                        && pattern == Pattern::RandWrite;
                    let iops = 100000.0 + f64::from(rep) * 1000.5;
                    runs.push(Run {
                        place,
                        pattern,
                        side,
                        rep,
                        values: if failed {
                            vec![]
                        } else {
                            vec![
                                (Metric::Iops, iops),
                                (Metric::LatencyUs, 25.5),
                                (Metric::ThreadCpuNs, 1234.5),
                                (Metric::ProcessCpuNs, 4321.0),
                            ]
                        },
                        direct: (side != Side::Host).then_some(place == Place::Disk),
                        problem: failed.then(|| "no number `device_cpu_ns_per_io`".into()),
                    });
                }
            }
        }
    }
    device::Results {
        seconds: 5,
        reps: 2,
        runs,
        fio: "fio-3.33".into(),
        filesystems: vec![(Place::Tmpfs, "tmpfs".into()), (Place::Disk, "ext4".into())],
        cpu: 1,
    }
}

/// Every number as an f64, so that `700` and `700.0` compare equal.
fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
        }
        other => other,
    }
}

#[test]
fn test_serde_writer_gives_the_hand_written_file() {
    let env = env();
    let outcomes = vec![
        boot_run(Vmm::Iovm, 1, 500.5, true),
        boot_run(Vmm::QemuMicrovm, 1, 1000.0, true),
        boot_run(Vmm::QemuQ35, 1, 2400.25, true),
        boot_run(Vmm::Iovm, 2, 700.0, true),
        boot_run(Vmm::QemuMicrovm, 2, 1100.0, false),
        evaluate(
            RunSpec {
                kind: Kind::Boot,
                vmm: Vmm::QemuQ35,
                rep: 2,
            },
            None,
            None,
            &[],
        ),
    ];
    let host = host_fio();
    let dev = device_path();
    let guests = Guests {
        env: &env,
        outcomes: &outcomes,
        host_fio: Some(&host),
        translate: None,
        vfio_host: None,
    };

    let r = report::results(
        "cargo xtask bench --reps 2 --mode testhost",
        Some(guests),
        Some(&dev),
    );
    let text = r.to_json().unwrap();

    assert_eq!(
        r,
        serde_json::from_str::<ResultsFile>(HAND_WRITTEN).unwrap()
    );
    assert_eq!(
        numbers_as_f64(serde_json::from_str(&text).unwrap()),
        numbers_as_f64(serde_json::from_str(HAND_WRITTEN).unwrap())
    );
}
