//! `cargo xtask testhost`: the nested test host (see `shared/design/TEST-HOST.md`).
//!
//! Output under `target/testhost/`: `qemu/` (Debian's QEMU 7.2 unpacked: this machine's
//! preinstalled qemu-utils 10 forbids installing it), `vmlinuz`, `initramfs.cpio.gz`
//! (busybox, KVM and 9p modules, `/init` from `xtask/testhost/init`), `INPUTS` (see
//! [`crate::stamp`]).

use std::fs;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::apt::{self, PackageInfo};
use crate::image::{self, add_busybox, copy_file, mib};
use crate::kmod::Kernel;
use crate::paths;
use crate::rootfs::Tree;
use crate::run::{is_root, run_checked, run_output};
use crate::stamp::{self, Stamp, State};

/// Kernel modules of the test host (dependencies are added automatically).
pub const MODULES: &[&str] = &[
    "irqbypass",
    "kvm",
    "ccp",
    "kvm-amd",
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    // TAP interfaces for virtio-net tests, in namespaces the tests make.
    "tun",
    // A RAM block device (/dev/ram0) for the block benchmark: RAM like tmpfs, but it
    // takes O_DIRECT, which this kernel's tmpfs refuses.
    "brd",
    // The benchmark's disk: a virtio disk the test host's QEMU backs with a raw image on
    // this machine's disk (Batch::with_disk).
    "virtio_blk",
    // Device assignment: the test host gives its emulated NVMe to vfio-pci, and iovm
    // assigns it (Batch::with_assignable_nvme; loaded by the tests that need them).
    "vfio",
    "vfio_iommu_type1",
    "vfio-pci",
    // The benchmark's limit for device assignment: the test host's own driver on the
    // same NVMe (loaded by the bench script only, so it never takes the device first).
    "nvme",
];

/// The Debian packages of the outer QEMU.
const QEMU_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
];

const INIT: &str = include_str!("../testhost/init");

/// Options of `cargo xtask testhost`.
#[derive(Debug, clap::Args)]
pub struct TestHostArgs {
    /// Kernel ABI version, e.g. `6.1.0-56` (default: the newest apt knows).
    #[arg(long, value_name = "6.1.0-NN")]
    pub kernel_version: Option<String>,
}

/// Files of the test host that the harness needs.
const FILES: &[&str] = &[
    "vmlinuz",
    "initramfs.cpio.gz",
    "qemu/usr/bin/qemu-system-x86_64",
];

/// Fingerprint of what the test host is made from, besides the Debian packages.
fn inputs() -> String {
    let mut parts = vec![INIT];
    for list in [MODULES, QEMU_PACKAGES] {
        parts.extend_from_slice(list);
        parts.push("\n");
    }
    stamp::fingerprint(&parts)
}

/// Builds the test host unless `target/testhost` holds one built from the current inputs.
pub fn ensure() -> Result<()> {
    let dir = paths::testhost();
    let kernel_version = match stamp::state(&dir, FILES, &inputs()) {
        State::Current => {
            println!("xtask: test host is up to date: {}", dir.display());
            return Ok(());
        }
        State::Missing(path) => {
            println!(
                "xtask: no test host ({} is missing): building it (cargo xtask testhost)",
                path.display()
            );
            None
        }
        State::Stale(kernel) => {
            println!(
                "xtask: the test host in {} was built from another xtask/testhost/init or \
                 module/package list: rebuilding it (cargo xtask testhost)",
                dir.display()
            );
            kernel
        }
    };
    build(&TestHostArgs { kernel_version })
}

/// Builds the test host.
pub fn build(args: &TestHostArgs) -> Result<()> {
    let start = Instant::now();
    // An interrupted build must not leave an image that looks current.
    let _ = fs::remove_file(paths::testhost().join(stamp::FILE));
    let out = paths::testhost();
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let qemu = install_qemu()?;

    let kernel = Kernel::fetch(args.kernel_version.as_deref())?;
    let packages = apt::fetch(&["busybox-static"])?;
    let mut tree = Tree::skeleton();
    add_busybox(&mut tree, image::package(&packages, "busybox-static")?)?;
    let selection = kernel.select(MODULES)?;
    kernel.install(&selection, &mut tree)?;
    tree.file_bytes("init", INIT.as_bytes(), 0o755);
    tree.dir("scratch");
    tree.dir("guest");
    tree.check_links()?;
    copy_file(&kernel.vmlinuz, &out.join("vmlinuz"))?;
    let initramfs = out.join("initramfs.cpio.gz");
    tree.write_cpio_gz(&initramfs)?;
    Stamp {
        inputs: inputs(),
        kernel: kernel.release.clone(),
    }
    .write(&out)?;
    println!(
        "xtask: test host ready in {:.1}s: {} ({}), {} ({}), kernel {}",
        start.elapsed().as_secs_f64(),
        qemu,
        out.join("qemu").display(),
        initramfs.display(),
        mib(fs::metadata(&initramfs)?.len()),
        kernel.release
    );
    Ok(())
}

/// Unpacks QEMU 7.2 into `target/testhost/qemu/` (unless the same versions are there) and
/// makes sure its shared libraries are installed. Returns QEMU's version line.
fn install_qemu() -> Result<String> {
    let packages = apt::fetch(QEMU_PACKAGES)?;
    let dir = paths::testhost().join("qemu");
    let stamp_path = dir.join(".packages");
    let stamp: String = packages
        .iter()
        .map(|p| format!("{}\n", p.info.deb_file_name()))
        .collect();
    if fs::read_to_string(&stamp_path).ok().as_deref() != Some(stamp.as_str()) {
        let tmp = paths::testhost().join("qemu.partial");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        for p in &packages {
            run_checked(Command::new("dpkg-deb").arg("-x").arg(&p.deb).arg(&tmp))?;
        }
        fs::write(tmp.join(".packages"), &stamp)?;
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::rename(&tmp, &dir).with_context(|| format!("renaming to {}", dir.display()))?;
    }
    let bin = dir.join("usr/bin/qemu-system-x86_64");
    let infos: Vec<PackageInfo> = packages.into_iter().map(|p| p.info).collect();
    ensure_libraries(&bin, &infos)?;
    let version = run_output(Command::new(&bin).arg("--version"))?;
    Ok(version.lines().next().unwrap_or("").to_owned())
}

fn missing_sonames(bin: &std::path::Path) -> Result<Vec<String>> {
    let text = run_output(Command::new("ldd").arg(bin))?;
    Ok(text
        .lines()
        .filter(|l| l.contains("not found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

/// Installs the `lib*` dependencies of the QEMU packages that are missing, if QEMU lacks
/// libraries. Only as root; otherwise says what to install.
fn ensure_libraries(bin: &std::path::Path, infos: &[PackageInfo]) -> Result<()> {
    let missing = missing_sonames(bin)?;
    if missing.is_empty() {
        return Ok(());
    }
    let mut wanted: Vec<&str> = infos
        .iter()
        .flat_map(|i| i.first_depends())
        .filter(|d| d.starts_with("lib") || d.starts_with("zlib"))
        .filter(|d| !installed(d))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() || !is_root() {
        bail!(
            "QEMU 7.2 lacks shared libraries {}; install its library dependencies as root: \
             apt-get install -y --no-install-recommends {}",
            missing.join(", "),
            wanted.join(" ")
        );
    }
    println!(
        "xtask: QEMU lacks {}; installing its library packages: apt-get install -y --no-install-recommends {}",
        missing.join(", "),
        wanted.join(" ")
    );
    run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&wanted),
    )?;
    let still = missing_sonames(bin)?;
    if !still.is_empty() {
        bail!("QEMU still lacks shared libraries: {}", still.join(", "));
    }
    Ok(())
}
