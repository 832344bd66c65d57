//! What the benchmark runs, in which order, and the shell script that runs it where the
//! VMMs run (see [`testkit::Batch::run_script`] for the script's environment).

use testkit::guest_script_word;
use testkit::testhost::shell_quote;

use super::block::{self, Disk, Job, Storage};
use super::iommu::{self, Translation};
use super::net;
use super::vfio;
use super::vfio_host;
use super::vmm::{Files, Vmm};
use super::vmm_cpu;

/// The kernel command line every VMM gets, before the guest script word.
pub const CMDLINE: &str = "console=ttyS0 panic=-1";

/// The exit-path guest script: accesses per batch and batches (see guest-tools/exit-probe).
pub const EXIT_PROBE: &str = "exit-probe 2000 7";

/// What the guest's `/init` prints once user space is up (see `xtask/guest/init`).
pub const MARKER: &str = "IOVM-GUEST: boot done";

/// The kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The guest powers off right after its init marker: times to the marker and to exit.
    Boot,
    /// As [`Kind::Boot`], the kernel being the same kernel's ELF `vmlinux` started at its
    /// PVH entry point (no decompression; iovm and QEMU q35, whose `pvh.bin` option ROM
    /// does it; microvm runs without option ROMs).
    BootPvh,
    /// The guest waits after its marker, while the VMM's memory is sampled.
    Memory,
    /// The guest times its own exits with `exit-probe` (iovm and QEMU q35: the
    /// probe needs PCI configuration space, which microvm has none of).
    Exits,
    /// The guest runs fio on a disk of this kind with its image on this storage
    /// ([`block`]; iovm and QEMU q35).
    Block(Disk, Storage),
    /// The guest sends TCP to a peer over a TAP ([`net`]; iovm and QEMU q35).
    Net,
    /// The same over an emulated Intel 82574L (`e1000e`) on each VMM.
    NetE1000e,
    /// The guest runs fio on a disk of this kind, without or with the emulated IOMMU
    /// ([`iommu`]; iovm and QEMU q35).
    Iommu(Disk, Translation),
    /// The guest runs fio on the test host's NVMe controller assigned to it through VFIO
    /// ([`vfio`]; iovm and QEMU q35; the test host's own fio on it before each
    /// repetition).
    Vfio,
}

impl Kind {
    /// Name in run names.
    pub fn id(self) -> String {
        match self {
            Kind::Boot => "boot".into(),
            Kind::BootPvh => "boot-pvh".into(),
            Kind::Memory => "memory".into(),
            Kind::Exits => "exits".into(),
            Kind::Block(disk, storage) => format!("block-{}-{}", disk.id(), storage.id()),
            Kind::Net => "net".into(),
            Kind::NetE1000e => "net-e1000e".into(),
            Kind::Iommu(disk, t) => format!("iommu-{}-{}", disk.id(), t.id()),
            Kind::Vfio => "vfio".into(),
        }
    }

    /// The script the guest runs after its marker (then it powers off).
    pub fn guest_script(self, s: &Settings) -> String {
        match self {
            Kind::Boot | Kind::BootPvh => ":".into(),
            Kind::Memory => "sleep 2".into(),
            Kind::Exits => EXIT_PROBE.into(),
            Kind::Block(disk, _) => disk.guest_script(s.block_seconds, &Job::ALL),
            Kind::Net => net::guest_script(s.net_mib),
            Kind::NetE1000e => net::guest_script(s.net_mib.min(net::E1000E_MIB)),
            Kind::Iommu(disk, _) => disk.guest_script(s.block_seconds, &iommu::JOBS),
            Kind::Vfio => vfio::guest_script(s.block_seconds),
        }
    }

    /// The full kernel command line of this kind of run.
    pub fn cmdline(self, s: &Settings) -> String {
        let extra = match self {
            // exit-probe maps the ECAM window from /dev/mem.
            Kind::Exits => " iomem=relaxed".into(),
            Kind::Iommu(_, t) => t.cmdline_extra(),
            _ => String::new(),
        };
        format!(
            "{CMDLINE}{extra} {}",
            guest_script_word(&self.guest_script(s))
        )
    }

    /// The VMMs this kind of run compares.
    pub fn vmms(self) -> &'static [Vmm] {
        match self {
            Kind::Boot | Kind::Memory => &Vmm::ALL,
            Kind::BootPvh
            | Kind::Exits
            | Kind::Block(..)
            | Kind::Net
            | Kind::NetE1000e
            | Kind::Iommu(..)
            | Kind::Vfio => &[Vmm::Iovm, Vmm::QemuQ35],
        }
    }

    /// Whether the probe reads KVM's exit counters and the VMM's CPU time at the guest's
    /// marks.
    fn counts_exits(self) -> bool {
        matches!(
            self,
            Kind::Block(..) | Kind::Net | Kind::NetE1000e | Kind::Iommu(..) | Kind::Vfio
        )
    }

    /// Where the disk's image of a block or IOMMU run lives.
    fn storage(self) -> Option<Storage> {
        match self {
            Kind::Block(_, st) => Some(st),
            Kind::Iommu(..) => Some(iommu::STORAGE),
            _ => None,
        }
    }

    /// The full command line of `vmm` for this kind of run: the boot run's with this
    /// kind's devices, and QEMU's machine as the kind needs it.
    pub fn vmm_command(self, vmm: Vmm, files: &Files, cmdline: &str, memory: &str) -> Vec<String> {
        let mut c = vmm.command(files, cmdline, memory);
        if self == Kind::BootPvh {
            if let Some(k) = c.iter_mut().find(|a| **a == files.kernel) {
                k.clone_from(&files.vmlinux);
            }
        }
        if let (Kind::Iommu(_, t), Vmm::QemuQ35) = (self, vmm) {
            if let Some(machine) = iommu::qemu_machine(t) {
                if let Some(at) = c.iter().position(|a| a == "-M") {
                    c[at + 1] = machine.into();
                }
            }
        }
        c.extend(self.device_args(vmm));
        c
    }

    /// The VMM arguments this kind adds to a boot run's: its device, and where the
    /// probe splits the VMM's CPU time by thread, names for QEMU's threads.
    pub fn device_args(self, vmm: Vmm) -> Vec<String> {
        let mut args = match self {
            Kind::Block(disk, storage) => disk.vmm_args(vmm, storage),
            Kind::Net => net::vmm_args(vmm),
            Kind::NetE1000e => net::e1000e_vmm_args(vmm),
            Kind::Iommu(disk, t) => iommu::vmm_args(disk, vmm, t),
            Kind::Vfio => vfio::vmm_args(vmm),
            // exit-probe times a queue notification of a virtio device: a virtio-rng,
            // the simplest with a queue the guest keeps live.
            Kind::Exits => match vmm {
                Vmm::Iovm => vec!["--device".into(), "virtio-rng".into()],
                _ => vec!["-device".into(), "virtio-rng-pci,romfile=".into()],
            },
            _ => Vec::new(),
        };
        if self.counts_exits() {
            args.extend(vmm_cpu::thread_name_args(vmm));
        }
        args
    }
}

/// One measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSpec {
    /// What is measured.
    pub kind: Kind,
    /// Which VMM.
    pub vmm: Vmm,
    /// Repetition, from 1.
    pub rep: u32,
}

impl RunSpec {
    /// `<kind>.<vmm>.<rep>`, also the log's file name.
    pub fn name(&self) -> String {
        format!("{}.{}.{}", self.kind.id(), self.vmm.id(), self.rep)
    }
}

/// The kinds of the VM group: boot, memory, exit paths.
pub const VM_KINDS: [Kind; 4] = [Kind::Boot, Kind::BootPvh, Kind::Memory, Kind::Exits];
/// The kinds of the IOMMU group: disk by disk, without then with the IOMMU.
pub fn iommu_kinds() -> Vec<Kind> {
    Disk::ALL
        .iter()
        .flat_map(|&d| Translation::ALL.map(|t| Kind::Iommu(d, t)))
        .collect()
}

/// The kinds of the block group on `storages`: storage by storage, NVMe then virtio-blk.
pub fn block_kinds(storages: &[Storage]) -> Vec<Kind> {
    storages
        .iter()
        .flat_map(|&st| Disk::ALL.map(|d| Kind::Block(d, st)))
        .collect()
}

/// The runs of `kinds` in that order; within each kind, repetition by repetition with
/// the VMMs interleaved, the first VMM rotating from one repetition to the next so that
/// none always runs first.
pub fn runs(reps: u32, kinds: &[Kind]) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for &kind in kinds {
        let vmms = kind.vmms();
        let n = vmms.len();
        for rep in 1..=reps {
            let first = (rep as usize - 1) % n;
            for i in 0..n {
                let vmm = vmms[(first + i) % n];
                out.push(RunSpec { kind, vmm, rep });
            }
        }
    }
    out
}

/// Settings of a benchmark.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Repetitions per VMM and kind.
    pub reps: u32,
    /// Seconds before a run is killed.
    pub timeout_s: u64,
    /// Guest RAM, as `--memory`/`-m` take it.
    pub memory: String,
    /// Milliseconds after the marker at which memory runs sample the VMM's memory.
    pub sample_after_ms: u64,
    /// Seconds per fio job of block runs.
    pub block_seconds: u32,
    /// MiB sent by net runs.
    pub net_mib: u32,
    /// fio staged for the host's own runs on the block image and on the assignable
    /// NVMe, as the script names it.
    pub host_fio: Option<String>,
}

/// Where the VMMs run: debugfs KVM counters (block and net runs), the block image and
/// the VFIO group's drivers and functions.
fn setup(runs: &[RunSpec], s: &Settings) -> String {
    let mut out = String::new();
    if runs.iter().any(|r| r.kind.counts_exits()) {
        out.push_str(&format!(
            "grep -q ' /sys/kernel/debug ' /proc/mounts || \
             mount -t debugfs debugfs /sys/kernel/debug\n\
             [ -f {KVM_STATS}/exits ] || echo 'bench: no KVM exit counters in {KVM_STATS}'\n\
             mkdir -p \"$B/marks\"\n"
        ));
    }
    let storages = storages(runs);
    if !storages.is_empty() {
        for st in &storages {
            out.push_str(&st.setup());
        }
        if let Some(fio) = &s.host_fio {
            out.push_str(&format!(
                "mkdir -p \"$B/host-fio\"\n{} --version >\"$B/host-fio/version.txt\" 2>&1\n",
                word(fio)
            ));
        }
    }
    if runs.iter().any(|r| r.kind == Kind::Vfio) {
        out.push_str(&vfio_host::setup(
            s.host_fio.as_deref().map(word).as_deref(),
        ));
    }
    out
}

/// The debugfs directory of KVM's counters.
const KVM_STATS: &str = "/sys/kernel/debug/kvm";

/// The storages of the block and IOMMU runs among `runs`, in order of first use.
fn storages(runs: &[RunSpec]) -> Vec<Storage> {
    let mut out = Vec::new();
    for r in runs {
        if let Some(st) = r.kind.storage() {
            if !out.contains(&st) {
                out.push(st);
            }
        }
    }
    out
}

/// The host's own fio jobs on `storage`'s image for repetition `rep`.
fn host_fio(s: &Settings, storage: Storage, rep: u32) -> String {
    let Some(fio) = &s.host_fio else {
        return String::new();
    };
    let mut out = format!(
        "echo 'bench: host fio on the {} image, repetition {rep}'\n",
        storage.id()
    );
    for job in Job::ALL {
        let file = format!("\"$B\"/{}", block::host_fio_file(storage, job, rep));
        out.push_str(&job.host_command(&word(fio), storage, s.block_seconds, &file));
        out.push('\n');
    }
    out
}

/// A shell word for `s`: quoted, except that a leading `$STAGE/`, `$S/` or `$B/` stays a
/// variable.
fn word(s: &str) -> String {
    for var in ["STAGE", "S", "B"] {
        if let Some(rest) = s.strip_prefix(&format!("${var}/")) {
            return format!("\"${var}\"/{}", shell_quote(rest));
        }
    }
    shell_quote(s)
}

fn words<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| word(s.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A file in the scratch directory that makes the bench script resume: keep what the
/// last boot measured and skip the runs that have a record.
pub const RESUME: &str = "bench-resume";

/// The bench script. `files` and `probe` (the `xtask` binary) are named as the script sees
/// them; the guest's kernel and initramfs are copied from `$G` to `$STAGE/guest/` first
/// (in the test host's memory), so `files.kernel` and `files.initramfs` should be there.
/// Writes into `$S/bench/`: `records.txt`, `logs/<run>.log`, and facts about where it ran
/// (`kernel.txt`, `cpuinfo.txt`, `qemu-version.txt`, `iovm-version.txt`).
pub fn script(runs: &[RunSpec], s: &Settings, files: &Files, probe: &str) -> String {
    let mut out = format!(
        "# Written by cargo xtask bench: each run under bench-probe, which times it.\n\
         B=\"$S/bench\"\n\
         if [ -f \"$S/{RESUME}\" ]; then echo 'bench: resuming: runs with a record are skipped'; \
         else rm -rf \"$B\"; fi\n\
         mkdir -p \"$B/logs\" \"$STAGE/guest\"\n\
         cp \"$G/vmlinuz\" \"$G/vmlinux\" \"$G/initramfs.cpio.gz\" \"$STAGE/guest/\" || exit 1\n\
         uname -r >\"$B/kernel.txt\"\n\
         cat /proc/cpuinfo >\"$B/cpuinfo.txt\"\n",
    );
    out.push_str(&format!(
        "{} --version >\"$B/qemu-version.txt\" 2>&1\n\
         {} --version >\"$B/iovm-version.txt\" 2>&1\n",
        word(&files.qemu),
        word(&files.iovm)
    ));
    out.push_str(&setup(runs, s));
    let mut kinds: Vec<String> = runs.iter().map(|r| r.kind.id()).collect();
    kinds.dedup();
    out.push_str(&format!(
        "echo 'bench: {} runs: {}; VMMs interleaved, {} repetitions each'\n",
        runs.len(),
        kinds.join(", "),
        s.reps
    ));
    let mut host_fio_done = Vec::new();
    let mut vfio_limit_done = Vec::new();
    for run in runs {
        let name = run.name();
        if let Kind::Block(_, st) = run.kind {
            if !host_fio_done.contains(&(st, run.rep)) {
                host_fio_done.push((st, run.rep));
                let last = Job::ALL[Job::ALL.len() - 1];
                out.push_str(&format!(
                    "if [ ! -s \"$B\"/{} ]; then\n{}fi\n",
                    block::host_fio_file(st, last, run.rep),
                    host_fio(s, st, run.rep)
                ));
            }
        }
        if run.kind == Kind::Vfio && !vfio_limit_done.contains(&run.rep) {
            vfio_limit_done.push(run.rep);
            if let Some(fio) = &s.host_fio {
                out.push_str(&vfio_host::host_fio(&word(fio), s.block_seconds, run.rep));
            }
        }
        let mut probe_cmd = vec![
            probe.to_owned(),
            "bench-probe".into(),
            "--name".into(),
            name.clone(),
            "--timeout".into(),
            s.timeout_s.to_string(),
            "--marker".into(),
            MARKER.into(),
        ];
        if run.kind == Kind::Memory {
            probe_cmd.push("--sample-after".into());
            probe_cmd.push(s.sample_after_ms.to_string());
        }
        if run.kind.counts_exits() {
            probe_cmd.extend([
                "--kvm-stats".into(),
                KVM_STATS.into(),
                "--marks".into(),
                format!("$B/marks/{name}.txt"),
            ]);
        }
        probe_cmd.extend([
            "--log".into(),
            format!("$B/logs/{name}.log"),
            "--record".into(),
            "$B/records.txt".into(),
            "--".into(),
        ]);
        // A resumed script skips the runs that have their record.
        out.push_str(&format!(
            "if ! grep -q '^name={name} ' \"$B/records.txt\" 2>/dev/null; then\n"
        ));
        if matches!(run.kind, Kind::Net | Kind::NetE1000e) {
            probe_cmd.extend(["nsenter".into(), format!("--net={}", net::NETNS)]);
            out.push_str(&net::before());
        }
        if run.kind == Kind::Vfio {
            out.push_str(&vfio_host::bind_vfio());
        }
        let vmm_cmd = run
            .kind
            .vmm_command(run.vmm, files, &run.kind.cmdline(s), &s.memory);
        out.push_str(&format!(
            "echo {}\n{} {}\n",
            shell_quote(&format!(
                "bench: {}, {}, repetition {} of {}",
                run.kind.id(),
                run.vmm.label(),
                run.rep,
                s.reps
            )),
            words(&probe_cmd),
            words(&vmm_cmd)
        ));
        if matches!(run.kind, Kind::Net | Kind::NetE1000e) {
            out.push_str(&net::after());
        }
        out.push_str("fi\n");
    }
    out.push_str("echo 'bench: all runs done'\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_runs_interleave_and_rotate() {
        let r = runs(2, &VM_KINDS);

        let names: Vec<String> = r.iter().map(RunSpec::name).collect();
        assert_eq!(
            names,
            [
                "boot.iovm.1",
                "boot.qemu-microvm.1",
                "boot.qemu-q35.1",
                "boot.qemu-microvm.2",
                "boot.qemu-q35.2",
                "boot.iovm.2",
                "boot-pvh.iovm.1",
                "boot-pvh.qemu-q35.1",
                "boot-pvh.qemu-q35.2",
                "boot-pvh.iovm.2",
                "memory.iovm.1",
                "memory.qemu-microvm.1",
                "memory.qemu-q35.1",
                "memory.qemu-microvm.2",
                "memory.qemu-q35.2",
                "memory.iovm.2",
                "exits.iovm.1",
                "exits.qemu-q35.1",
                "exits.qemu-q35.2",
                "exits.iovm.2",
            ]
        );
    }

    #[test]
    fn test_word_keeps_variables() {
        assert_eq!(word("$STAGE/bin/iovm"), "\"$STAGE\"/'bin/iovm'");
        assert_eq!(word("$B/logs/a.log"), "\"$B\"/'logs/a.log'");
        assert_eq!(word("a b"), "'a b'");
        assert_eq!(word("$SX/a"), "'$SX/a'");
    }

    fn settings() -> Settings {
        Settings {
            reps: 1,
            timeout_s: 60,
            memory: "512M".into(),
            sample_after_ms: 1000,
            block_seconds: 2,
            net_mib: 16,
            host_fio: Some("$STAGE/bin/fio".into()),
        }
    }

    fn files() -> Files {
        Files {
            iovm: "$STAGE/bin/iovm".into(),
            qemu: "$STAGE/bin/qemu-system-x86_64".into(),
            firmware: vec![],
            kernel: "$STAGE/guest/vmlinuz".into(),
            vmlinux: "$STAGE/guest/vmlinux".into(),
            initramfs: "$STAGE/guest/initramfs.cpio.gz".into(),
        }
    }

    #[test]
    fn test_cmdline_carries_the_guest_script() {
        assert_eq!(
            Kind::Memory.cmdline(&settings()),
            "console=ttyS0 panic=-1 iovm.run=c2xlZXAgMg=="
        );
    }

    #[test]
    fn test_block_and_net_runs_count_exits_and_add_devices() {
        let r = runs(1, &[Kind::Block(Disk::VirtioBlk, Storage::Ram), Kind::Net]);

        let s = script(&r, &settings(), &files(), "$STAGE/bin/xtask");

        assert_eq!(s.matches(" 'bench-probe' ").count(), 4);
        assert_eq!(
            s.matches("'--kvm-stats' '/sys/kernel/debug/kvm'").count(),
            4
        );
        assert!(s.contains("'--marks' \"$B\"/'marks/block-virtio-blk-ram.iovm.1.txt'"));
        assert!(s.contains("'--device' 'virtio-blk,path=/run/iovm-bench-ram'"));
        assert!(s.contains(
            "'-device' 'virtio-net-pci,netdev=n,romfile=' '-name' 'guest=bench,debug-threads=on'"
        ));
        assert_eq!(s.matches("debug-threads=on").count(), 2, "QEMU's runs only");
        assert!(s.contains("'--' 'nsenter' '--net=/run/iovm-bench-netns' \"$STAGE\"/'bin/iovm'"));
        assert_eq!(s.matches("unshare --net=").count(), 2);
        assert_eq!(
            s.matches("--name=randread-qd1 ").count(),
            1,
            "host fio once per rep"
        );
        assert!(s.find("modprobe brd").unwrap() < s.find("'bench-probe'").unwrap());
        assert!(
            !s.contains("iovm-bench-shm"),
            "only the storage that runs is made"
        );
    }

    #[test]
    fn test_host_fio_runs_once_per_storage_and_repetition() {
        let kinds = block_kinds(&[Storage::Shm, Storage::Disk]);
        let r = runs(2, &kinds);

        let s = script(&r, &settings(), &files(), "$STAGE/bin/xtask");

        assert_eq!(kinds.len(), 4);
        assert_eq!(s.matches("--name=randread-qd1 ").count(), 4);
        assert!(s.contains(">\"$B\"/host-fio/shm.randread-qd1.2.txt "));
        assert!(s.contains(">\"$B\"/host-fio/disk.read128k-qd8.1.txt "));
        assert!(s.contains("if [ ! -s \"$B\"/host-fio/shm.read128k-qd8.2.txt ]; then\n"));
        assert!(s.contains("readlink /run/iovm-bench-shm"));
        assert!(s.contains("readlink /run/iovm-bench-disk"));
        assert!(
            s.find("readlink /run/iovm-bench-disk").unwrap() < s.find("'bench-probe'").unwrap()
        );
    }

    #[test]
    fn test_script_probes_each_run() {
        let s = script(
            &runs(1, &VM_KINDS),
            &settings(),
            &files(),
            "$STAGE/bin/xtask",
        );

        assert!(s.contains("echo 'bench: boot, iovm, repetition 1 of 1'\n"));
        assert!(
            s.contains("if ! grep -q '^name=boot.iovm.1 ' \"$B/records.txt\" 2>/dev/null; then\n")
        );
        assert!(s.contains("if [ -f \"$S/bench-resume\" ]; then"));
        assert_eq!(
            s.matches("\nfi\n").count(),
            10,
            "each run is skipped once recorded"
        );
        assert!(
            s.contains("'boot-pvh.iovm.1'") && s.contains("'--kernel' \"$STAGE\"/'guest/vmlinux'"),
            "the PVH runs boot the ELF vmlinux"
        );
        assert!(s.contains("'-kernel' \"$STAGE\"/'guest/vmlinux'"));
        assert!(s.contains("cp \"$G/vmlinuz\" \"$G/vmlinux\""));
        assert!(s.contains(
            "\"$STAGE\"/'bin/xtask' 'bench-probe' '--name' 'boot.iovm.1' '--timeout' '60' \
             '--marker' 'IOVM-GUEST: boot done' '--log' \"$B\"/'logs/boot.iovm.1.log' \
             '--record' \"$B\"/'records.txt' '--' \"$STAGE\"/'bin/iovm' 'run'"
        ));
        assert!(s.contains(
            "'memory.qemu-q35.1' '--timeout' '60' '--marker' \
                            'IOVM-GUEST: boot done' '--sample-after' '1000'"
        ));
        assert_eq!(s.matches(" 'bench-probe' ").count(), 10);
        assert!(s.contains("'exits.qemu-q35.1'"));
    }

    #[test]
    fn test_iommu_runs_add_the_unit_the_guest_options_and_qemus_split_irqchip() {
        let r = runs(1, &iommu_kinds());

        let s = script(&r, &settings(), &files(), "$STAGE/bin/xtask");

        assert_eq!(r.len(), 8, "two disks, with and without, two VMMs");
        assert_eq!(s.matches(" 'bench-probe' ").count(), 8);
        assert_eq!(s.matches("'--device' 'intel-iommu'").count(), 2);
        assert_eq!(
            s.matches("'-M' 'q35,kernel-irqchip=split' ").count(),
            2,
            "QEMU's runs with the IOMMU"
        );
        assert_eq!(s.matches("'-M' 'q35' ").count(), 2);
        assert_eq!(s.matches("'-device' 'intel-iommu,intremap=on'").count(), 2);
        assert_eq!(s.matches("iommu_platform=on,disable-legacy=on").count(), 1);
        assert_eq!(
            s.matches(" intel_iommu=on iommu.strict=1 iovm.run=")
                .count(),
            4
        );
        assert!(s.contains("'--name' 'iommu-virtio-blk-strict.qemu-q35.1'"));
        assert!(s.contains("modprobe brd"), "the image is made: {s}");
        assert!(
            !s.contains("--name=randread-qd1 "),
            "the host's fio jobs are the block group's"
        );
        let guest = Kind::Iommu(Disk::Nvme, Translation::Off).guest_script(&settings());
        assert!(guest.contains("j randread-qd1 randread 1 4k\nj randread-qd32 randread 32 4k\n"));
        assert!(!guest.contains("randwrite"));
    }

    #[test]
    fn test_vfio_runs_assign_the_function_after_the_host_limit_of_their_repetition() {
        let r = runs(2, &[Kind::Vfio]);

        let s = script(&r, &settings(), &files(), "$STAGE/bin/xtask");

        assert_eq!(r.len(), 4, "two repetitions, two VMMs");
        assert_eq!(
            s.matches("'--kvm-stats' '/sys/kernel/debug/kvm'").count(),
            4
        );
        assert_eq!(
            s.matches("'--device' 'vfio-pci,host=0000:01:00.0'").count(),
            2
        );
        assert_eq!(
            s.matches("'-device' 'vfio-pci,host=0000:01:00.0'").count(),
            2
        );
        assert_eq!(s.matches("bench_vfio_bind vfio-pci ||").count(), 4);
        assert_eq!(
            s.matches("--name=randread-qd32 ").count(),
            2,
            "once per rep"
        );
        let limit2 = s
            .find("if [ ! -s \"$B\"/vfio-host/randread-qd32.2.txt ]")
            .unwrap();
        assert!(s.find("'vfio.iovm.1'").unwrap() < limit2);
        assert!(limit2 < s.find("'vfio.qemu-q35.2'").unwrap());
        assert!(s.find("modprobe vfio-pci").unwrap() < s.find("'bench-probe'").unwrap());
        assert!(s.contains("\"$STAGE\"/'bin/fio' --version >\"$B/vfio-host/version.txt\""));
        assert!(!s.contains("modprobe brd"), "no block image");
    }
}
