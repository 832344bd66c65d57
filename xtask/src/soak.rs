//! `cargo xtask soak`: the stability study of the nested test host
//! (docs/test-host.md). It runs `--jobs` jobs, each one test-host boot with
//! the guests that load it the way the tests do: NVMe and virtio-blk disks
//! written and read back by fio with crc32c verification on two vCPUs, and
//! a guest that reboots once. For each job it counts the test hosts lost
//! (the harness boots another one for the runs left), the guests lost (a
//! run whose script did not end with status 0: reset, hung, killed) and the
//! wall time. The test host runs as the `IOVM_TESTHOST_*` knobs say
//! (`testkit::knobs`), so candidates are compared by running it once per
//! setting; each job's line is appended to `target/soak/<label>.tsv`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use testkit::knobs::Knobs;
use testkit::{Batch, GuestRun, Mode};

use crate::hostmode::{self, ModeChoice};
use crate::run::{cargo, run_status};
use crate::{guest, paths, testhost};

/// Options of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Jobs to run (each one test-host boot of three guests, about 3 minutes).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub jobs: u32,
    /// Name of this candidate in the results file (default: the knobs in force).
    #[arg(long)]
    pub label: Option<String>,
}

/// Where a job's disks live in the test host (its memory, as the tests do).
const WORK: &str = "/dev/shm/iovm-soak";
/// Disk images and their sizes in MiB.
const DISKS: [(&str, u64); 2] = [("soak-nvme.img", 64), ("soak-vblk.img", 64)];

/// fio on `dev`: 16 MiB of random 4 KiB writes at depth 16, each block read
/// back and checked (crc32c), then the result line.
fn fio_script(dev: &str) -> String {
    format!(
        "i=0; until [ -b {dev} ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         fio --name=soak --filename={dev} --direct=1 --ioengine=io_uring --rw=randwrite \
         --bs=4k --iodepth=16 --size=16m --verify=crc32c --do_verify=1 \
         --output-format=terse --terse-version=3 > /tmp/fio 2>&1\n\
         rc=$?\n\
         echo \"fio=$rc errors=$(cut -d';' -f5 /tmp/fio | head -1)\"\n\
         exit $rc\n"
    )
}

const REBOOT_ONCE: &str = r#"
nv=/sys/bus/nvmem/devices/cmos_nvram0/nvmem
if [ "$(dd if=$nv bs=1 skip=30 count=1 2>/dev/null)" = S ]; then
  printf 'x' | dd of=$nv bs=1 seek=30 count=1 conv=notrunc 2>/dev/null
  echo "soak: second boot"
  exit 0
fi
printf 'S' | dd of=$nv bs=1 seek=30 count=1 conv=notrunc 2>/dev/null
reboot -f
"#;

/// The guests of one job.
fn runs() -> Vec<GuestRun> {
    let copy_in = DISKS
        .iter()
        .map(|(d, _)| format!(" && dd if={{scratch}}/{d} of={WORK}/{d} bs=1M 2>/dev/null"))
        .collect::<String>();
    let before = format!("rm -rf {WORK} && mkdir -p {WORK}{copy_in}");
    let after = format!("rm -rf {WORK}");
    vec![
        GuestRun::new("soak-nvme")
            .host_before(before.clone())
            .args(["--cpus", "2", "--memory", "1G", "--device", "nvme,id=n0"])
            .arg("--device")
            .arg(format!("nvme-ns,bus=n0,path={WORK}/{}", DISKS[0].0))
            .script(fio_script("/dev/nvme0n1")),
        GuestRun::new("soak-vblk")
            .args(["--cpus", "2", "--memory", "1G", "--device"])
            .arg(format!("virtio-blk,path={WORK}/{}", DISKS[1].0))
            .host_after(after)
            .script(fio_script("/dev/vda")),
        GuestRun::new("soak-reboot")
            .args(["--cpus", "2", "--on-reboot", "restart"])
            .script(REBOOT_ONCE),
    ]
}

/// What one job did.
#[derive(Debug)]
struct JobResult {
    hosts_lost: usize,
    guests_lost: Vec<String>,
    seconds: f64,
}

fn run_job(iovm: &std::path::Path) -> Result<JobResult> {
    let batch = Batch::new().context("setting up a batch")?;
    let scratch = batch.scratch_dir().to_path_buf();
    for (name, mib) in DISKS {
        let f = std::fs::File::create(scratch.join(name))
            .with_context(|| format!("creating {name}"))?;
        f.set_len(mib << 20)?;
    }
    let losses_dir = paths::target().join("testkit");
    let lost_before = testkit::losses::read(&losses_dir).len();
    let start = Instant::now();
    let results = batch.run(iovm, &runs()).context("running the job")?;
    let seconds = start.elapsed().as_secs_f64();
    let hosts_lost = testkit::losses::read(&losses_dir)
        .len()
        .saturating_sub(lost_before);
    let guests_lost = results
        .iter()
        .filter(|r| !r.succeeded())
        .map(|r| {
            let why = if r.timed_out {
                "timed out".to_owned()
            } else {
                format!("exit {:?}, guest {:?}", r.exit_code, r.guest_exit_status())
            };
            format!("{} ({why})", r.name)
        })
        .collect();
    Ok(JobResult {
        hosts_lost,
        guests_lost,
        seconds,
    })
}

/// Runs the study; the exit status is 0 when every job ran (losses are
/// results, not failures).
pub fn run(args: &SoakArgs) -> Result<i32> {
    let (mode, why) = hostmode::decide(ModeChoice::Auto)?;
    let knobs = Knobs::from_env().map_err(anyhow::Error::msg)?;
    println!(
        "xtask: soak: {} job(s) in mode {mode} ({why}); test host {}",
        args.jobs,
        knobs.describe()
    );
    guest::ensure()?;
    if mode == Mode::TestHost {
        testhost::ensure()?;
    }
    let status = run_status(cargo().args(["build", "-p", "iovm"]))?;
    if !status.success() {
        anyhow::bail!("cargo build -p iovm failed");
    }
    let iovm = paths::target().join("debug/iovm");
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| knobs.describe().replace(' ', "_"));
    let out_path: PathBuf = paths::target().join("soak").join(format!("{label}.tsv"));
    std::fs::create_dir_all(out_path.parent().unwrap_or(&out_path))?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("opening {}", out_path.display()))?;
    let (mut hosts, mut guests, mut total) = (0usize, 0usize, 0.0f64);
    for job in 1..=args.jobs {
        let r = run_job(&iovm)?;
        hosts += r.hosts_lost;
        guests += r.guests_lost.len();
        total += r.seconds;
        let line = format!(
            "{label}\tjob {job}\t{:.0} s\ttest hosts lost {}\tguests lost {}\t{}",
            r.seconds,
            r.hosts_lost,
            r.guests_lost.len(),
            r.guests_lost.join("; ")
        );
        println!("xtask: soak: {line}");
        writeln!(out, "{line}")?;
    }
    println!(
        "xtask: soak: {label}: {} job(s), {hosts} test host(s) lost, {guests} guest(s) lost, \
         {:.0} s per job; lines appended to {}",
        args.jobs,
        total / f64::from(args.jobs),
        out_path.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_job_guests_fit_the_kernel_command_line_and_use_every_disk() {
        let runs = runs();
        assert_eq!(runs.len(), 3);
        for r in &runs {
            assert!(
                r.kernel_cmdline().len() < testkit::MAX_CMDLINE,
                "{}",
                r.name
            );
        }
        let all: String = runs.iter().flat_map(|r| r.args.clone()).collect();
        for (d, _) in DISKS {
            assert!(all.contains(d), "{d} unused");
        }
        assert!(runs[0]
            .host_before
            .as_deref()
            .unwrap_or("")
            .contains("soak-vblk.img"));
    }
}
