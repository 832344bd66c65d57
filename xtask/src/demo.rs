//! `cargo xtask demo`: boot the test guest with iovm and show what the guest sees.
//!
//! Builds what is missing (guest image, test host when needed, `target/release/iovm`), then
//! runs one guest through testkit (a one-run batch streamed to stdout): directly on hardware
//! KVM, inside the nested test host otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use testkit::{Batch, GuestRun, Mode, RunResult, Stream};

use crate::hostmode::{self, ModeChoice};
use crate::run::{cargo, is_root, run_status};
use crate::{guest, paths, testhost};

/// The guest script: each command under a `==> <command>` heading; the script fails if one
/// of them does.
const SCRIPT: &str = r#"rc=0
show() { echo; echo "==> $*"; eval "$*" || { echo "(failed: exit status $?)"; rc=1; }; }
show uname -a
show nproc
show "grep 'model name' /proc/cpuinfo"
show free -m
show cat /proc/interrupts
show lspci -tv
show lspci
pci_echo() {
  t=$(ls /sys/bus/pci/devices/0000:01:00.0/tty)
  stty -F /dev/$t raw -echo
  cat /dev/$t > /tmp/rx &
  p=$!
  sleep 0.5
  echo hello-over-pci > /dev/$t
  sleep 1
  grep " $t$" /proc/interrupts
  kill $p
  echo "sent hello-over-pci on $t (the PCI serial card behind root port 00:01.0, INTx), read back: $(cat /tmp/rx)"
}
show pci_echo
show "dmesg | grep -iE 'acpi|serial|rtc|mmconfig' | head -20"
show ls /sys/bus/platform/drivers/pvpanic-mmio
show nvme list
disk_rw() {
  printf "$2" | dd of=/dev/$1 bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null
  echo "wrote $2 at 1 MiB of /dev/$1, read back: $(dd if=/dev/$1 bs=512 skip=2048 count=1 iflag=direct 2>/dev/null | tr -d '\0')"
}
show disk_rw nvme0n1 IOVM-DEMO-NVME
show "lspci -d 1af4: -k 2>/dev/null | grep -v Subsystem"
vda() { echo "vda: serial $(cat /sys/block/vda/serial), $(ls /sys/block/vda/mq | wc -l) request queues"; }
show vda
show disk_rw vda IOVM-DEMO-VIRTIO-BLK
show "dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1"
net() {
  [ -e /sys/class/net/eth0 ] || { echo "no virtio NIC (see the demo's note)"; return 0; }
  ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && sleep 1 && ping -c 3 10.0.2.1
}
show net
"#;

/// The demo machine's PCI devices: a card behind a root port (echoing what
/// it gets), and a bridge behind a second root port with another card.
const DEVICES: [&str; 5] = [
    "root-port,id=rp0",
    "pci-serial,bus=rp0,loopback=on",
    "root-port,id=rp1",
    "pci-bridge,id=br0,bus=rp1",
    "pci-serial,bus=br0,addr=3",
];

/// The demo's disks and NIC: an NVMe namespace and a virtio disk on files in
/// [`DISK_DIR`], a virtio NIC whose TAP lives in a network namespace the demo
/// makes, and an entropy source.
const IO_DEVICES: [&str; 5] = [
    "nvme,id=nvme0,serial=IOVM-DEMO",
    "nvme-ns,bus=nvme0,path=/dev/shm/iovm-demo/nvme.img",
    "virtio-blk,path=/dev/shm/iovm-demo/vblk.img,serial=IOVM-DEMO-VBLK",
    "virtio-rng",
    "virtio-net,tap=iovmdemo0",
];

/// Where iovm runs, the disks live while it runs (tmpfs).
const DISK_DIR: &str = "/dev/shm/iovm-demo";

/// The network namespace the demo's iovm runs in.
const NETNS: &str = "/run/iovm-demo-netns";

/// Makes the disks and the namespace; once iovm has created the TAP there,
/// gives the host end 10.0.2.1.
const HOST_BEFORE: &str = r#"rm -rf /dev/shm/iovm-demo && mkdir -p /dev/shm/iovm-demo &&
truncate -s 64M /dev/shm/iovm-demo/nvme.img /dev/shm/iovm-demo/vblk.img &&
touch /run/iovm-demo-netns && unshare --net=/run/iovm-demo-netns true &&
nsenter --net=/run/iovm-demo-netns sh -c '( i=0
  while ! ip link show iovmdemo0 >/dev/null 2>&1 && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
  ip addr add 10.0.2.1/24 dev iovmdemo0 && ip link set iovmdemo0 up ) >/dev/null 2>&1 &'"#;

/// Copies the disks to the scratch directory, where the demo reads them,
/// and removes the namespace.
const HOST_AFTER: &str = "cp /dev/shm/iovm-demo/nvme.img /dev/shm/iovm-demo/vblk.img {scratch}/; \
rm -rf /dev/shm/iovm-demo; umount /run/iovm-demo-netns; rm -f /run/iovm-demo-netns";

/// What the guest writes at 1 MiB of each disk: (file, text).
const DISK_MARKS: [(&str, &str); 2] = [
    ("nvme.img", "IOVM-DEMO-NVME"),
    ("vblk.img", "IOVM-DEMO-VIRTIO-BLK"),
];

/// Appended with `--dmesg`.
const SCRIPT_DMESG: &str = "show dmesg\n";

/// Console lines about the machine's firmware (our ACPI tables) worth reporting, besides
/// testkit's [`RunResult::kernel_problems`].
const FIRMWARE_PROBLEMS: &[&str] = &[
    "Firmware Bug",
    "ACPI Error",
    "ACPI BIOS Error",
    "ACPI Warning",
    "ACPI BIOS Warning",
    "ACPI Exception",
];

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// vCPUs of the guest (`iovm run --cpus`).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cpus: u32,

    /// Guest RAM (`iovm run --memory`): a number with K, M, G or T.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: String,

    /// Where iovm runs: directly on this machine's /dev/kvm, inside the nested test host,
    /// or auto (direct only where /dev/kvm is hardware KVM; IOVM_TEST_MODE may force it).
    #[arg(long, value_enum, default_value_t = ModeChoice::Auto)]
    pub mode: ModeChoice,

    /// Also print the guest's whole kernel log (`dmesg`) at the end of the script.
    #[arg(long)]
    pub dmesg: bool,

    /// Seconds allowed for the guest run before iovm is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
}

/// What iovm's exit status means (see `iovm run --help`).
fn iovm_status(code: Option<i32>) -> &'static str {
    match code {
        Some(0) => "the guest powered off",
        Some(1) => "iovm could not build or run the machine",
        Some(2) => "iovm's command line was wrong",
        Some(3) => "the guest rebooted",
        Some(4) => "the guest kernel panicked or crashed",
        Some(5) => "ended from the console",
        Some(_) => "unexpected status",
        None => "killed or never finished",
    }
}

fn rule(title: &str) -> String {
    let head = format!("===== {title} ");
    let fill = 78usize.saturating_sub(head.chars().count());
    format!("{head}{}", "=".repeat(fill))
}

/// Builds what is missing, runs the demo guest and returns the exit status for xtask.
pub fn run(args: &DemoArgs) -> Result<i32> {
    let (mode, why) = hostmode::decide(args.mode)?;
    println!("xtask: demo: {} ({why})", hostmode::where_iovm_runs(mode));

    guest::ensure()?;
    if mode == Mode::TestHost {
        testhost::ensure()?;
    }
    let status = run_status(cargo().args(["build", "--release", "-p", "iovm"]))?;
    if !status.success() {
        bail!("building iovm failed: {status}");
    }
    let iovm = paths::target().join("release/iovm");

    let mut script = SCRIPT.to_owned();
    if args.dmesg {
        script.push_str(SCRIPT_DMESG);
    }
    script.push_str("exit $rc\n");
    let cpus = args.cpus.to_string();
    let mut iovm_args = vec!["--cpus", &cpus, "--memory", &args.memory, "--timing"];
    for d in DEVICES.iter().chain(&IO_DEVICES) {
        iovm_args.extend(["--device", d]);
    }
    let run = GuestRun::new("demo")
        .args(iovm_args)
        .script(script.as_str())
        .netns(NETNS)
        .host_before(HOST_BEFORE)
        .host_after(HOST_AFTER)
        .timeout(Duration::from_secs(args.timeout));
    if mode == Mode::Direct && !is_root() {
        bail!(
            "the demo makes a network namespace and a TAP interface for its virtio NIC: \
             run it as root (or where the nested test host is used)"
        );
    }
    let batch = Batch::with_mode(mode)?.stream_to(Stream::Stdout);

    print_header(&iovm, mode, args, &run);
    let start = Instant::now();
    let result = batch
        .run(&iovm, std::slice::from_ref(&run))
        .context("running the demo guest")?
        .into_iter()
        .next()
        .context("testkit returned no result")?;
    let total = start.elapsed();
    let disks_ok = check_disks(batch.scratch_dir());
    Ok(match print_footer(&result, mode, total) {
        0 if !disks_ok => 1,
        status => status,
    })
}

/// Prints whether each disk's host file holds what the guest wrote at
/// 1 MiB; returns whether all do.
fn check_disks(scratch: &Path) -> bool {
    let mut ok = true;
    for (file, text) in DISK_MARKS {
        let bytes = std::fs::read(scratch.join(file)).unwrap_or_default();
        let found = bytes.get(1 << 20..(1 << 20) + text.len()) == Some(text.as_bytes());
        ok &= found;
        println!(
            "host:    {DISK_DIR}/{file} at 1 MiB: {}",
            if found {
                format!("{text}, as the guest wrote it")
            } else {
                format!("NOT {text}")
            }
        );
    }
    ok
}

fn print_header(iovm: &Path, mode: Mode, args: &DemoArgs, run: &GuestRun) {
    let guest = paths::guest();
    let kernel = std::fs::read_to_string(guest.join("BUILD-INFO"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "kernel ?".into());
    println!();
    println!("{}", rule("iovm demo"));
    println!("mode:    {mode}: {}", hostmode::where_iovm_runs(mode));
    if mode == Mode::TestHost {
        println!(
            "         the test host boots under TCG first; expect a few minutes in all, and \
             every guest step to be ~10-100x slower than on hardware"
        );
    }
    println!(
        "command: {} run --kernel {g}/vmlinuz --initramfs {g}/initramfs.cpio.gz \
         --serial stdio --cpus {} --memory {} --timing {} --cmdline '<below>'",
        iovm.display(),
        args.cpus,
        args.memory,
        DEVICES
            .iter()
            .chain(&IO_DEVICES)
            .map(|d| format!("--device {d}"))
            .collect::<Vec<_>>()
            .join(" "),
        g = guest.display(),
    );
    let cmdline = run.kernel_cmdline();
    let shown = match cmdline.find(" iovm.run=") {
        Some(at) => format!("{} iovm.run=<the script, base64>", &cmdline[..at]),
        None => cmdline,
    };
    println!("cmdline: {shown}");
    println!("guest:   {kernel}; busybox /init loads drivers, prints `IOVM-GUEST: boot done`,");
    println!("         runs the script (uname, nproc, cpuinfo, free, interrupts, lspci, dmesg,");
    println!("         NVMe and virtio disks written and read back, hwrng, ping over virtio-net),");
    println!("         prints `IOVM-GUEST: exit status=N` and powers off");
    println!(
        "console: streamed live below, each line prefixed with [{}]",
        match mode {
            Mode::Direct => "demo",
            Mode::TestHost => "testhost",
        }
    );
    println!("{}", rule("console"));
}

/// Prints the summary after the console; returns xtask's exit status.
fn print_footer(r: &RunResult, mode: Mode, total: Duration) -> i32 {
    println!("{}", rule("end of console"));
    let ok = r.succeeded();
    if let Some(e) = &r.harness_error {
        // The rest of the message repeats the test host console, streamed above.
        println!(
            "harness: {}",
            e.split(" Test host console").next().unwrap_or(e)
        );
    }
    if r.timed_out {
        println!(
            "iovm:    killed after its timeout ({} s; see --timeout)",
            r.duration.map_or(0, |d| d.as_secs())
        );
    } else {
        println!(
            "iovm:    exit status {} ({})",
            r.exit_code
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            iovm_status(r.exit_code)
        );
    }
    match r.guest_exit_status() {
        Some(0) => println!("guest:   script exit status 0"),
        Some(n) => println!("guest:   script exit status {n} (a command above failed)"),
        None => println!("guest:   the script did not finish (no `IOVM-GUEST: exit status`)"),
    }
    println!("timing:");
    let timing: Vec<&str> = r
        .console
        .lines()
        .filter(|l| l.contains("iovm: timing:"))
        .map(str::trim)
        .collect();
    if timing.is_empty() {
        println!("  (iovm printed no timing lines)");
    }
    for line in timing {
        println!("  {line}");
    }
    if let Some(up) = r.boot_uptime() {
        println!("  guest uptime at `boot done` (kernel, /init, driver loading): {up:.2} s");
    }
    if let Some(d) = r.duration {
        println!(
            "  iovm run, wall time{}: {:.1} s",
            if mode == Mode::TestHost {
                " inside the test host"
            } else {
                ""
            },
            d.as_secs_f64()
        );
    }
    if mode == Mode::TestHost {
        println!(
            "  whole test host batch (copy iovm in, boot the test host, run, power off): {:.1} s",
            total.as_secs_f64()
        );
    }
    let mut problems = r.kernel_problems();
    problems.extend(
        r.console
            .lines()
            .filter(|l| FIRMWARE_PROBLEMS.iter().any(|p| l.contains(p)))
            .filter(|l| !problems.iter().any(|p| p == l))
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    if problems.is_empty() {
        println!(
            "kernel:  no WARNING/BUG/Oops/Call Trace/panic, firmware bug or ACPI error lines \
             on the guest console"
        );
    } else {
        println!("kernel:  problems on the guest console:");
        for p in problems {
            println!("  {p}");
        }
    }
    println!(
        "{}",
        rule(if ok { "demo succeeded" } else { "demo FAILED" })
    );
    if ok {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_demo_script_fits_the_kernel_command_line() {
        let script = format!("{SCRIPT}{SCRIPT_DMESG}exit $rc\n");
        let run = GuestRun::new("demo").script(script);

        assert!(run.kernel_cmdline().len() <= testkit::MAX_CMDLINE);
    }

    #[test]
    fn test_rule_is_78_wide() {
        assert_eq!(rule("x").chars().count(), 78);
    }
}
