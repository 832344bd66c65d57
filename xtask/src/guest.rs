//! `cargo xtask guest`: the test guest's kernel and initramfs from Debian packages.
//!
//! Output: `target/guest/vmlinuz` (and `vmlinux`, its ELF kernel, for PVH
//! boot), `target/guest/initramfs.cpio.gz`,
//! `target/guest/BUILD-INFO` (kernel release, packages, modules) and
//! `target/guest/INPUTS` (see [`crate::stamp`]).

use std::fs;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::apt;
use crate::image::{self, add_busybox, add_programs, copy_file, mib};
use crate::kmod::Kernel;
use crate::paths;
use crate::rootfs::Tree;
use crate::run::{cargo, run_status};
use crate::stamp::{self, Stamp, State};

/// Kernel modules in the guest image (their dependencies are added automatically).
/// Names may use `-` or `_`; built-in ones are skipped. Add drivers under test here.
pub const MODULES: &[&str] = &[
    // virtio
    "virtio",
    "virtio_ring",
    "virtio_pci",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_blk",
    "virtio_net",
    "net_failover",
    "failover",
    "virtio_console",
    "virtio_rng",
    // storage
    "nvme",
    "nvme-core",
    "ahci",
    "libahci",
    "libata",
    // SCSI disks (sd_mod) for libata's disks; loaded by the script that needs them
    "sd_mod",
    // network
    "e1000",
    "e1000e",
    "igb",
    "igbvf",
    // user-space drivers
    "vfio",
    "vfio-pci",
    "vfio_iommu_type1",
    "uio",
    "uio_pci_generic",
    // serial
    "8250_pci",
    // panic notification (ACPI QEMU0001, I/O port 0x505; bound by coldplug's ACPI pass)
    "pvpanic",
    "pvpanic-mmio",
    // the ACPI power button (PNP0C0C) iovm presses on SIGTERM, and the
    // event device a script reads its key press from
    "button",
    "evdev",
];

/// Packages whose files go into the guest (libraries are added as needed).
const PACKAGES: &[&str] = &[
    "busybox-static",
    "pciutils",
    "nvme-cli",
    "fio",
    "pci.ids",
    "libc6",
    "hdparm",
    "ethtool",
];

/// Programs copied with all their shared libraries.
const PROGRAMS: &[&str] = &[
    "usr/bin/lspci",
    "usr/bin/setpci",
    "usr/sbin/nvme",
    "usr/bin/fio",
    "usr/sbin/hdparm",
    "usr/sbin/ethtool",
];

/// The guest's `/init`.
const INIT: &str = include_str!("../guest/init");

/// Options of `cargo xtask guest`.
#[derive(Debug, clap::Args)]
pub struct GuestArgs {
    /// Kernel ABI version, e.g. `6.1.0-56` (default: the newest
    /// `linux-image-6.1.0-*-amd64-unsigned` apt knows).
    #[arg(long, value_name = "6.1.0-NN")]
    pub kernel_version: Option<String>,
}

/// The source of the guest's `exit-probe`, so that changing it rebuilds the image.
const EXIT_PROBE_SOURCE: &str = include_str!("../../guest-tools/exit-probe/src/main.rs");

/// The sources of the guest's `vfio-nvme`, so that changing them rebuilds the image.
const VFIO_NVME_SOURCES: &[&str] = &[
    include_str!("../../guest-tools/vfio-nvme/src/main.rs"),
    include_str!("../../guest-tools/vfio-nvme/src/controller.rs"),
    include_str!("../../guest-tools/vfio-nvme/src/dma.rs"),
    include_str!("../../guest-tools/vfio-nvme/src/nvme.rs"),
    include_str!("../../guest-tools/vfio-nvme/src/sysfs.rs"),
    include_str!("../../guest-tools/vfio-nvme/src/vfio.rs"),
];

/// The source of the guest's `pci-hostile`, so that changing it rebuilds the image.
const PCI_HOSTILE_SOURCE: &str = include_str!("../../guest-tools/pci-hostile/src/main.rs");

/// The guest's own tools: (cargo package, path in the image).
const GUEST_TOOLS: &[(&str, &str)] = &[
    ("exit-probe", "usr/bin/exit-probe"),
    ("vfio-nvme", "usr/bin/vfio-nvme"),
    ("pci-hostile", "usr/bin/pci-hostile"),
];

/// Builds the guest's own tools (`guest-tools/`) as static executables and
/// returns `(path in the image, host file)` for each.
fn guest_tools() -> Result<Vec<(&'static str, std::path::PathBuf)>> {
    let triple = "x86_64-unknown-linux-gnu";
    let mut build = cargo();
    build.args(["build", "--release", "--target", triple]);
    for (package, _) in GUEST_TOOLS {
        build.args(["-p", package]);
    }
    let status = run_status(build.env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "-C target-feature=+crt-static -C strip=symbols",
    ))?;
    if !status.success() {
        bail!("building the guest tools failed: {status}");
    }
    let release = paths::target().join(triple).join("release");
    Ok(GUEST_TOOLS
        .iter()
        .map(|(package, path)| (*path, release.join(package)))
        .collect())
}

/// Files of the guest image that the harness needs.
const FILES: &[&str] = &["vmlinuz", "initramfs.cpio.gz"];

/// Fingerprint of what the image is made from, besides the Debian packages.
fn inputs() -> String {
    let mut parts = vec![INIT, EXIT_PROBE_SOURCE, PCI_HOSTILE_SOURCE];
    parts.extend_from_slice(VFIO_NVME_SOURCES);
    for list in [MODULES, PACKAGES, PROGRAMS] {
        parts.extend_from_slice(list);
        parts.push("\n");
    }
    stamp::fingerprint(&parts)
}

/// Builds the guest image unless `target/guest` holds one built from the current inputs.
pub fn ensure() -> Result<()> {
    let dir = paths::guest();
    let kernel_version = match stamp::state(&dir, FILES, &inputs()) {
        State::Current => {
            println!("xtask: guest image is up to date: {}", dir.display());
            return crate::vmlinux::ensure(&dir.join("vmlinuz"), &dir.join("vmlinux"));
        }
        State::Missing(path) => {
            println!(
                "xtask: no guest image ({} is missing): building it (cargo xtask guest)",
                path.display()
            );
            None
        }
        State::Stale(kernel) => {
            println!(
                "xtask: the guest image in {} was built from another xtask/guest/init or \
                 module/package list: rebuilding it (cargo xtask guest)",
                dir.display()
            );
            kernel
        }
    };
    build(&GuestArgs { kernel_version })
}

/// Builds the guest image.
pub fn build(args: &GuestArgs) -> Result<()> {
    let start = Instant::now();
    // An interrupted build must not leave an image that looks current.
    let _ = fs::remove_file(paths::guest().join(stamp::FILE));
    let kernel = Kernel::fetch(args.kernel_version.as_deref())?;
    let mut packages = apt::fetch(PACKAGES)?;

    let mut tree = Tree::skeleton();
    add_programs(&mut tree, &mut packages, PROGRAMS)?;
    add_busybox(&mut tree, image::package(&packages, "busybox-static")?)?;
    for (path, host) in guest_tools()? {
        tree.file_host(path, &host, 0o755);
    }

    // libpci reads /usr/share/misc/pci.ids.gz.
    let ids = image::package(&packages, "pci.ids")?
        .root
        .join("usr/share/misc/pci.ids");
    let gz = Command::new("gzip")
        .arg("-9c")
        .arg(&ids)
        .output()
        .context("could not run gzip")?;
    if !gz.status.success() {
        bail!("gzip -9c {} failed", ids.display());
    }
    tree.file_bytes("usr/share/misc/pci.ids.gz", &gz.stdout, 0o644);

    let selection = kernel.select(MODULES)?;
    kernel.install(&selection, &mut tree)?;

    tree.file_bytes("init", INIT.as_bytes(), 0o755);
    tree.file_bytes("etc/hostname", b"iovm-guest\n", 0o644);
    tree.check_links()?;

    let out = paths::guest();
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    copy_file(&kernel.vmlinuz, &out.join("vmlinuz"))?;
    let initramfs = out.join("initramfs.cpio.gz");
    let raw = tree.write_cpio_gz(&initramfs)?;

    let mut info = format!("kernel {}\npackages:\n", kernel.release);
    for p in std::iter::once(&kernel.package).chain(&packages) {
        info.push_str(&format!("  {} {}\n", p.info.name, p.info.version));
    }
    info.push_str("modules:\n");
    for (name, m) in &selection.modules {
        info.push_str(&format!("  {name} {}\n", m.path));
    }
    for name in &selection.builtin {
        info.push_str(&format!("  {name} (built in)\n"));
    }
    fs::write(out.join("BUILD-INFO"), info)?;
    crate::vmlinux::ensure(&out.join("vmlinuz"), &out.join("vmlinux"))?;
    Stamp {
        inputs: inputs(),
        kernel: kernel.release.clone(),
    }
    .write(&out)?;

    let gz_size = fs::metadata(&initramfs)?.len();
    println!(
        "xtask: guest image ready in {:.1}s: {} (kernel {}), {} ({} compressed, {} of files; {} modules, built in: {})",
        start.elapsed().as_secs_f64(),
        out.join("vmlinuz").display(),
        kernel.release,
        initramfs.display(),
        mib(gz_size),
        mib(raw),
        selection.modules.len(),
        selection.builtin.iter().cloned().collect::<Vec<_>>().join(", "),
    );
    Ok(())
}
