//! `cargo xtask`: builds the test guest and the nested test host, runs the demo and tests.

mod api_fuzz;
mod apt;
mod bench;
mod cpio;
mod demo;
mod elf;
mod fuzz;
mod guest;
mod hostmode;
mod image;
mod kmod;
mod libs;
mod paths;
mod rootfs;
mod run;
mod soak;
mod stamp;
mod test;
mod testhost;
mod vmlinux;

use clap::{Parser, Subcommand};

const LONG_ABOUT: &str = "\
Developer tasks for iovm: build the test images, boot a demo guest, run the tests.

Where guests run: on a machine whose /dev/kvm is hardware KVM (vmx/svm), iovm runs
directly; where /dev/kvm is PVM (kvm_pvm loaded) or missing, it runs inside the nested
test host, QEMU 7.2 TCG with emulated AMD SVM and KVM inside (much slower; see
docs/test-host.md). `demo`, `test` and `bench` decide this by themselves.

Everything is written under target/ of the workspace:
  target/guest/         test guest: vmlinuz, initramfs.cpio.gz, BUILD-INFO  (guest)
  target/testhost/      nested test host: qemu/, vmlinuz, initramfs.cpio.gz (testhost)
  target/debs/          downloaded Debian packages and their unpacked trees
  target/release/iovm   the VMM the demo runs                               (demo)
  target/testkit/       scratch directories of guest runs (kept with IOVM_TEST_KEEP=1)
  target/bench/         results.json and consoles of the benchmark            (bench)
                        (its tables go to docs/bench/RESULTS.md)

Debian packages come from `apt-get download`. When apt's package lists are stale (a version
they name is gone from the archive, a package is missing), xtask runs `apt-get update` once
and retries (as root; otherwise it says to run `sudo apt-get update`); a version still gone
is replaced by the one apt can download, and one line says which.

Start with `cargo xtask demo`; before pushing, `cargo xtask ci`.";

const AFTER_HELP: &str = "\
Environment (read by demo, test and the tests themselves):
  IOVM_TEST_MODE=auto|direct|testhost   where guests run (default auto)
  IOVM_TEST_VERBOSE=1                   stream guest consoles to stderr during tests
  IOVM_TEST_KEEP=1                      keep target/testkit/batch-* after a run";

/// Developer tasks for iovm.
#[derive(Debug, Parser)]
#[command(
    bin_name = "cargo xtask",
    about = "Developer tasks for iovm: build the test images, boot a demo guest, run the tests",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the test guest (Debian kernel + busybox initramfs) into target/guest/.
    #[command(long_about = "\
Build the test guest into target/guest/.

Downloads Debian 12 packages with apt (cached in target/debs/) and writes:
  target/guest/vmlinuz            Debian's generic kernel (linux-image-6.1.0-*-amd64-unsigned)
  target/guest/initramfs.cpio.gz  busybox, lspci/setpci, nvme, fio, hdparm, ethtool, pci.ids,
                                  the driver modules listed in xtask/src/guest.rs (virtio,
                                  nvme, ahci, e1000/e1000e/igb, vfio, uio, 8250_pci, pvpanic)
                                  with modules.dep,
                                  and /init from xtask/guest/init
  target/guest/BUILD-INFO         kernel release, package versions, modules
  target/guest/INPUTS             what it was built from (demo/test rebuild when it changes)

The guest's /init loads the drivers of the PCI, ACPI, platform and virtio devices present,
prints `IOVM-GUEST: boot done`, runs the script passed base64'ed as iovm.run=... on the
kernel command line (or a shell), prints `IOVM-GUEST: exit status=N` and powers off.")]
    Guest(guest::GuestArgs),

    /// Build the nested test host (QEMU 7.2 + kernel with kvm_amd) into target/testhost/.
    #[command(long_about = "\
Build the nested test host into target/testhost/, for machines without hardware KVM.

Downloads Debian 12 packages with apt (cached in target/debs/) and writes:
  target/testhost/qemu/               QEMU 7.2 (qemu-system-x86, its firmware) unpacked;
                                      its missing lib* dependencies are apt-installed
  target/testhost/vmlinuz             Debian's generic kernel
  target/testhost/initramfs.cpio.gz   busybox, KVM (kvm_amd) and 9p modules, /init from
                                      xtask/testhost/init
  target/testhost/INPUTS              what it was built from

testkit boots it once per batch of guest runs: QEMU TCG with `-cpu max` (emulated AMD SVM
with nested paging), sharing the batch's scratch directory and target/guest/ over 9p; its
/init loads KVM and runs the batch script, which runs iovm on the test host's /dev/kvm.")]
    Testhost(testhost::TestHostArgs),

    /// Boot the test guest with iovm and show what it sees (builds what is missing).
    #[command(long_about = "\
Boot the test guest with iovm and show what it sees.

First builds what is missing or out of date: the guest image (target/guest/), the test
host when it is needed (target/testhost/) and iovm (cargo build --release -p iovm:
target/release/iovm). Then runs `iovm run --timing` once, directly where /dev/kvm is
hardware KVM, inside the nested test host otherwise (it says which; a few minutes there).

The guest runs uname -a, nproc, the model name lines of /proc/cpuinfo, free -m,
/proc/interrupts, lspci -tv, lspci, the ACPI/serial/RTC lines of dmesg, and checks that
pvpanic-mmio bound; then powers off. Its console is streamed live to stdout between a
header and a footer; the footer gives iovm's exit status, its timing lines and any kernel
warnings. Nothing is written besides the builds (the run's scratch directory in
target/testkit/ is removed, unless IOVM_TEST_KEEP=1).

Exit status: 0 if iovm and the guest script succeeded, 1 otherwise.")]
    Demo(demo::DemoArgs),

    /// Build the images the tests need if missing, then run `cargo test --workspace`.
    #[command(long_about = "\
Build the images the tests need if missing, then run `cargo test --workspace`.

Builds target/guest/ (and target/testhost/ where guests run in the test host) when missing
or out of date, runs `cargo test --workspace` with the arguments after `--`, and exits with
cargo's exit status. Guest runs' scratch directories go to target/testkit/.

Examples:
  cargo xtask test
  cargo xtask test -- --lib --bins          (unit tests only: no guests)
  cargo xtask test -- --test guest_boot -- --nocapture
  IOVM_TEST_VERBOSE=1 cargo xtask test      (stream guest consoles to stderr)")]
    Test(test::TestArgs),

    /// What CI runs: format check, clippy (warnings denied), `cargo xtask test`, a bench smoke run.
    #[command(long_about = "\
What CI runs, stopping at the first failure:
  1. cargo fmt --all -- --check
  2. cargo clippy --workspace --all-targets -- -D warnings
  3. cargo xtask test (builds the images if missing, then cargo test --workspace)
  4. every cargo-fuzz target of fuzz/ for 20 s (nightly toolchain and cargo-fuzz, each
     installed first if missing, as .ci/run does); a target that fails says what it found
     and the input saved under fuzz/artifacts/<target>/, or that it saved none (its build
     or cargo-fuzz failed)
  5. cargo xtask api-fuzz (schemathesis from PyPI against docs/api/openapi.yaml and an
     empty iovm VMM, 120 s; installed into target/schemathesis-venv first if missing)
  6. cargo xtask bench --quick (the benchmark harness works; no speed is checked)
Arguments after `--` go to cargo test. Exits with the failing step's status, or 0 (1 when
the nightly toolchain or cargo-fuzz is missing and cannot be installed).")]
    Ci(test::TestArgs),

    /// The management API against its own spec: schemathesis (PyPI) fuzzes an empty iovm.
    #[command(long_about = "\
Runs schemathesis, a property-based API fuzzer from PyPI (installed into
target/schemathesis-venv when missing), against docs/api/openapi.yaml and an empty iovm
VMM (iovm run --api-socket, reached through a loopback TCP relay): no 5xx, only the
statuses, content types and shapes the document gives, schema-invalid bodies refused.
vmm.shutdown and vm.boot are left out. Fails when schemathesis finds something or iovm
does not survive the run.")]
    ApiFuzz(api_fuzz::ApiFuzzArgs),

    /// A fuzzing campaign: every cargo-fuzz target (or those named) in turn.
    #[command(long_about = "\
Runs each cargo-fuzz target of fuzz/fuzz_targets (or only those named) in turn for
--seconds (default one hour), on the nightly toolchain (installed with cargo-fuzz when
missing), feeding it its working corpus (fuzz/corpus/TARGET, not in git) and its seed
inputs (fuzz/seeds/TARGET). Goes on past a failing target; a crash's input is saved under
fuzz/artifacts/TARGET/. Exits 1 if any target failed. docs/fuzzing.md lists the targets.")]
    Fuzz(fuzz::FuzzArgs),

    /// iovm against QEMU 7.2 and the host, side by side: boot, memory, exits, disks, network.
    #[command(long_about = "\
iovm against QEMU 7.2 (-M microvm and -M q35) and the host's own limits, side by side.

Builds what is missing (guest image, QEMU 7.2 and the test host, target/release/iovm), then
boots the same guest kernel and initramfs (target/guest/) with each VMM, in the same place:
inside ONE boot of the nested test host where /dev/kvm is not hardware KVM, directly where
it is. The VMMs are interleaved run by run, N repetitions each:
  boot runs    the guest powers off right after its init marker: process start -> marker
               `IOVM-GUEST: boot done`, process start -> exit; for iovm also its own
               --timing lines (first guest instruction, marker)
  PVH boots    the same, the kernel being its ELF vmlinux started at its PVH entry
               point, no decompression (iovm and QEMU q35 with its pvh.bin)
  memory runs  the guest sleeps 2 s after its marker; the VMM's RSS and PSS
               (/proc/PID/smaps_rollup) are sampled 1 s after the marker, --memory 512M
  exits        ns per guest access (port I/O write, trapped MMIO write, configuration
               reads through ECAM and 0xCF8/0xCFC), timed in the guest by exit-probe
  block        fio in the guest on NVMe and virtio-blk (against QEMU's -device nvme and
               virtio-blk-pci, cache=none,aio=io_uring, on the same RAM disk): 4k randread
               QD1 latency, QD32 IOPS, 4k randwrite QD32, 128k read QD8, KVM exits per
               I/O from the test host's counters; the host's own fio as the limit
  net          TCP throughput guest -> a peer in a network namespace over virtio-net and
               a TAP (against QEMU's virtio-net-pci, vhost=off), exits per MiB
  iommu        fio in the guest on NVMe and virtio-blk without and with the emulated VT-d
               (iovm --device intel-iommu, QEMU q35 -device intel-iommu) and
               intel_iommu=on iommu.strict=1: each VMM's cost of strict translation
  vfio         fio in the guest on the test host's NVMe assigned through VFIO (iovm
               --device vfio-pci against QEMU q35 -device vfio-pci; test host only): 4k
               randread QD1 latency, QD32 IOPS, MMIO exits per I/O; the test host's own
               fio on the same controller with its nvme driver as the limit
Each run is timed where it runs by `xtask bench-probe` (this binary), with a monotonic
clock. Progress lines are printed as it goes (a few minutes per repetition in the test host).

The device-path group runs directly on this machine, no VM: the nvme_path bench
(crates/devices/benches) and the blk_path bench (crates/virtio/benches) drive iovm's NVMe
controller and its virtio-blk device with a synthetic guest driver (it sleeps until the
device's interrupt), 32 4 KiB requests in flight, through their worker threads and io_uring
backend, against `fio --ioengine=io_uring --direct=1 --iodepth=32` on the same 1 GiB file
(in /dev/shm and under target/bench/), each run confined to the same single CPU: IOPS,
latency, CPU per I/O and the ratios iovm / host. It needs fio.
`--only GROUP[,GROUP]` (vm: boot, memory and exits; block; net; device-path; iommu; vfio)
runs only those; --quick runs iommu and vfio only when --only names them.

Writes target/bench/results.json (every sample), target/bench/logs/<run>.log (consoles) and
docs/bench/RESULTS.md (min/median/max per VMM and the ratios iovm / QEMU of the medians,
with the machine, kernels, versions, date and where it ran) with a figure of the ratios per
group beside it (docs/bench/<group>.png: boot-memory, exits, block, network, vmm-cpu,
device-path); a run with --only that leaves a group out writes
target/bench/RESULTS-partial.md and <group>-partial.png instead, --quick RESULTS-quick.md
and <group>-quick.png. Exit status 1 if any run did
not count (it did not reach the marker, power off, or exit 0; a device-path run failed).")]
    Bench(bench::BenchArgs),

    /// The nested test host's stability study: N jobs of guests, losses counted.
    #[command(long_about = "\
Run the nested test host's stability study (docs/test-host.md): --jobs jobs, each one
test-host boot with three guests (NVMe and virtio-blk written and verified by fio with
crc32c on two vCPUs, and a guest that reboots once), counting the test hosts lost, the
guests lost and the time per job.

The test host runs as the environment says, so candidates are compared by running this
once per setting:
  IOVM_TESTHOST_SMP=1|2...        the test host's vCPUs (default 2)
  IOVM_TESTHOST_TCG=multi|single  TCG threading (default multi)
  IOVM_TESTHOST_CPU=MODEL[,FLAGS] QEMU's -cpu (default max)
  IOVM_TESTHOST_APPEND='WORDS'    extra test-host kernel command line words
                                  (e.g. transparent_hugepage=never)
Each job's line goes to target/soak/<label>.tsv; the last line sums them up.

Examples:
  cargo xtask soak --jobs 20
  IOVM_TESTHOST_APPEND=transparent_hugepage=never cargo xtask soak --jobs 20 --label thp-never")]
    Soak(soak::SoakArgs),

    /// Time one VMM process (used by the bench script; not for direct use).
    #[command(hide = true)]
    BenchProbe(bench::probe::ProbeArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Guest(args) => guest::build(args).map(|()| 0),
        Cmd::Testhost(args) => testhost::build(args).map(|()| 0),
        Cmd::Demo(args) => demo::run(args),
        Cmd::Test(args) => test::test(args),
        Cmd::Ci(args) => test::ci(args),
        Cmd::ApiFuzz(args) => api_fuzz::run(args),
        Cmd::Fuzz(args) => fuzz::campaign(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::BenchProbe(args) => bench::probe::run(args),
        Cmd::Soak(args) => soak::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(1);
        }
    }
}
