//! `cargo xtask rootfs`: a Debian 12 root file system with systemd as init, as a raw ext4
//! image, and the small initramfs that mounts it, for the guest tests that boot a real
//! distribution from a disk (`--device sata-disk`, `--device nvme`).
//!
//! Output in `target/rootfs/`:
//! - `rootfs.ext4`: `debootstrap --variant=minbase` of bookworm with `systemd-sysv`, `dbus`,
//!   `udev`, `kmod` and `e2fsprogs`, label `iovm-root`, no partition table; root has no
//!   password and is logged in on the serial console, or, when the kernel command line
//!   has `iovm.run=`, `iovm-run.service` runs that script once boot has finished and
//!   powers off; the guest kernel's modules for the devices iovm offers are in
//!   `/lib/modules/<release>`;
//! - `initrd.img`: busybox and the storage and ext4 modules of Debian's generic kernel
//!   (all modular there), whose `/init` (`xtask/rootfs/init`) mounts `root=` and
//!   switches to it;
//! - `BUILD-INFO` (kernel release, mirror, packages) and `INPUTS` (see [`crate::stamp`]).
//!
//! The kernel is the test guest's (`target/guest/vmlinuz`), whose release the image's
//! modules match. debootstrap needs root (it chroots into the new system).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::apt;
use crate::guest;
use crate::image::{self, add_busybox, mib};
use crate::kmod::Kernel;
use crate::paths;
use crate::rootfs::Tree;
use crate::run::{run_checked, run_output};
use crate::stamp::{self, Stamp, State};

/// The Debian release debootstrapped.
const SUITE: &str = "bookworm";

/// Packages on top of debootstrap's `minbase` (essential and required ones): systemd as
/// init, udev to load drivers, kmod for modprobe, e2fsprogs for the root's fsck, and D-Bus,
/// without which systemd-logind does not run and the ACPI power button does nothing.
const INCLUDE: &[&str] = &["systemd-sysv", "udev", "kmod", "e2fsprogs", "dbus"];

/// The file system label of the image (`root=LABEL=iovm-root` works too).
pub const LABEL: &str = "iovm-root";

/// Modules of the initramfs: the disk controllers a root can be on and ext4 (their
/// dependencies are added automatically).
const INITRD_MODULES: &[&str] = &[
    "ahci",
    "sd_mod",
    "nvme",
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "crc32c_generic",
];

/// Modules installed in the root file system besides the test guest's
/// ([`guest::MODULES`]), so that its udev finds the drivers of what iovm offers; systemd
/// loads `autofs4` itself (for the `binfmt_misc` automount).
const ROOTFS_MODULES: &[&str] = &["ext4", "crc32c_generic", "autofs4"];

/// Paths (in the root file system) removed to keep the image small: documentation,
/// manual pages, translations and apt's caches.
const TRIM: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
];

/// Free space left in the image beyond what its files take, in MiB.
const FREE_MIB: u64 = 96;

const INIT: &str = include_str!("../rootfs/init");
const IOVM_RUN: &str = include_str!("../rootfs/iovm-run");
const IOVM_RUN_SERVICE: &str = include_str!("../rootfs/iovm-run.service");
const AUTOLOGIN: &str = include_str!("../rootfs/serial-getty-autologin.conf");

/// Files of the image that the tests need.
pub const FILES: &[&str] = &["rootfs.ext4", "initrd.img"];

/// Fingerprint of what the image is made from: the files above, the lists, and the
/// guest kernel's release `kernel`.
fn inputs(kernel: &str) -> String {
    let mut parts = vec![INIT, IOVM_RUN, IOVM_RUN_SERVICE, AUTOLOGIN, SUITE, kernel];
    for list in [
        INCLUDE,
        INITRD_MODULES,
        ROOTFS_MODULES,
        guest::MODULES,
        TRIM,
    ] {
        parts.extend_from_slice(list);
        parts.push("\n");
    }
    stamp::fingerprint(&parts)
}

/// `target/rootfs`.
pub fn dir() -> std::path::PathBuf {
    paths::target().join("rootfs")
}

/// The test guest's kernel release (building the guest image first if needed).
fn guest_kernel() -> Result<String> {
    guest::ensure()?;
    let guest = paths::guest();
    Ok(Stamp::read(&guest)
        .with_context(|| format!("{} has no valid stamp", guest.display()))?
        .kernel)
}

/// Builds the root file system image unless `target/rootfs` holds one built from the
/// current inputs for the current guest kernel.
pub fn ensure() -> Result<()> {
    let kernel = guest_kernel()?;
    let out = dir();
    match stamp::state(&out, FILES, &inputs(&kernel)) {
        State::Current => {
            println!(
                "xtask: Debian root file system image is up to date: {}",
                out.display()
            );
            return Ok(());
        }
        State::Missing(path) => println!(
            "xtask: no Debian root file system image ({} is missing): building it (cargo xtask rootfs)",
            path.display()
        ),
        State::Stale(_) => println!(
            "xtask: the root file system image in {} was built from other inputs or another \
             guest kernel: rebuilding it (cargo xtask rootfs)",
            out.display()
        ),
    }
    build_for(&kernel)
}

/// Options of `cargo xtask rootfs`.
#[derive(Debug, clap::Args)]
pub struct RootfsArgs {}

/// `cargo xtask rootfs`: builds the image for the test guest's kernel.
pub fn build(_args: &RootfsArgs) -> Result<()> {
    let kernel = guest_kernel()?;
    build_for(&kernel)
}

/// The mirror apt uses for `suite`'s main component, from `apt-cache policy`'s lines
/// such as ` 500 http://deb.debian.org/debian bookworm/main amd64 Packages`.
pub fn mirror_from_policy(policy: &str, suite: &str) -> Option<String> {
    let want = format!("{suite}/main");
    policy.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [_, url, dist, _, "Packages"] if *dist == want && url.contains("://") => {
                Some(url.trim_end_matches('/').to_owned())
            }
            _ => None,
        }
    })
}

fn mirror() -> Result<String> {
    let policy = run_output(Command::new("apt-cache").env("LC_ALL", "C").arg("policy"))?;
    mirror_from_policy(&policy, SUITE).with_context(|| {
        format!("apt knows no mirror of Debian {SUITE}/main (apt-cache policy); add one to /etc/apt/sources.list.d/")
    })
}

fn build_for(release: &str) -> Result<()> {
    let start = Instant::now();
    let out = dir();
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // An interrupted build must not leave an image that looks current.
    let _ = fs::remove_file(out.join(stamp::FILE));
    if Command::new("debootstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("debootstrap is not installed: apt-get install debootstrap");
    }
    if !nix_is_root() {
        bail!("building the root file system needs root (debootstrap chroots): run as root");
    }
    let kernel = Kernel::fetch(Some(release))?;
    let mirror = mirror()?;

    let root = out.join("root");
    remove_root(&root)?;
    let cache = paths::debs().join("debootstrap");
    fs::create_dir_all(&cache)?;
    println!(
        "xtask: debootstrap {SUITE} from {mirror} into {}",
        root.display()
    );
    run_checked(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", INCLUDE.join(",")))
            .arg(format!("--cache-dir={}", cache.canonicalize()?.display()))
            .arg(SUITE)
            .arg(&root)
            .arg(&mirror),
    )?;
    configure(&root, &kernel)?;
    let packages = run_output(Command::new("chroot").arg(&root).args([
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version}\\n",
    ]))?;
    for path in TRIM {
        let p = root.join(path);
        if p.exists() {
            fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            fs::create_dir(&p)?;
        }
    }

    let image = out.join("rootfs.ext4");
    let used = du_bytes(&root)?;
    let size_mib = used.div_ceil(1 << 20) * 5 / 4 + FREE_MIB;
    make_ext4(&root, &image, size_mib)?;
    remove_root(&root)?;

    let initrd = out.join("initrd.img");
    let mut tree = Tree::skeleton();
    let busybox = apt::fetch(&["busybox-static"])?;
    add_busybox(&mut tree, image::package(&busybox, "busybox-static")?)?;
    let selection = kernel.select(INITRD_MODULES)?;
    kernel.install(&selection, &mut tree)?;
    tree.file_bytes("init", INIT.as_bytes(), 0o755);
    tree.check_links()?;
    tree.write_cpio_gz(&initrd)?;

    fs::write(
        out.join("BUILD-INFO"),
        format!(
            "kernel {release}\nmirror {mirror} {SUITE}\nimage {size_mib} MiB, files {}\npackages:\n{}",
            mib(used),
            packages
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ),
    )?;
    Stamp {
        inputs: inputs(release),
        kernel: release.to_owned(),
    }
    .write(&out)?;
    println!(
        "xtask: Debian root file system ready in {:.1}s: {} ({size_mib} MiB, {} of files, \
         label {LABEL}), {} ({} modules); kernel {}",
        start.elapsed().as_secs_f64(),
        image.display(),
        mib(used),
        initrd.display(),
        selection.modules.len(),
        paths::guest().join("vmlinuz").display(),
    );
    Ok(())
}

/// Mount points at or under `dir` in `/proc/mounts` text, deepest first (`\040` and the
/// other octal escapes of the kernel undone).
pub fn mounts_under(mounts: &str, dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| std::path::PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a staging root left by an earlier build. debootstrap mounts `proc` and `sys`
/// (and may bind-mount devices) inside it; an interrupted run can leave them mounted, and
/// deleting through a mount would delete the host's files: unmount them first, and refuse
/// if any stays.
fn remove_root(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    let root = root.canonicalize()?;
    let read = || fs::read_to_string("/proc/mounts").context("reading /proc/mounts");
    for m in mounts_under(&read()?, &root) {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
    let left = mounts_under(&read()?, &root);
    if !left.is_empty() {
        bail!(
            "{} still has mounts inside ({}): unmount them, then build again",
            root.display(),
            left.iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))
}

fn nix_is_root() -> bool {
    run_output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// Writes `text` to `root/path` with permission bits `perm`, creating parents.
fn put(root: &Path, path: &str, text: &str, perm: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(perm))?;
    Ok(())
}

/// The system's settings: host name, fstab, root without a password, the serial
/// console's autologin, `iovm-run.service`, and the kernel's modules.
fn configure(root: &Path, kernel: &Kernel) -> Result<()> {
    put(root, "etc/hostname", "iovm-rootfs\n", 0o644)?;
    put(
        root,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tiovm-rootfs\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    put(
        root,
        "etc/fstab",
        &format!("# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\nLABEL={LABEL}\t/\text4\terrors=remount-ro\t0\t1\n"),
        0o644,
    )?;
    put(root, "usr/local/sbin/iovm-run", IOVM_RUN, 0o755)?;
    put(
        root,
        "etc/systemd/system/iovm-run.service",
        IOVM_RUN_SERVICE,
        0o644,
    )?;
    put(
        root,
        "etc/systemd/system/serial-getty@.service.d/autologin.conf",
        AUTOLOGIN,
        0o644,
    )?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    let link = wants.join("iovm-run.service");
    if !link.exists() {
        std::os::unix::fs::symlink("/etc/systemd/system/iovm-run.service", &link)?;
    }
    run_checked(
        Command::new("chroot")
            .arg(root)
            .args(["passwd", "-d", "root"]),
    )?;

    let mut names: Vec<&str> = guest::MODULES.to_vec();
    names.extend_from_slice(ROOTFS_MODULES);
    let selection = kernel.select(&names)?;
    let mut tree = Tree::default();
    kernel.install(&selection, &mut tree)?;
    tree.write_files(root)?;
    // depmod reads these two besides the modules.
    let moddir = format!("usr/lib/modules/{}", kernel.release);
    let order: String = selection
        .modules
        .values()
        .map(|m| format!("{}\n", m.path))
        .collect();
    put(root, &format!("{moddir}/modules.order"), &order, 0o644)?;
    let modinfo = Path::new(&kernel.vmlinuz).ancestors().nth(2).map(|pkg| {
        pkg.join(&moddir["usr/".len()..])
            .join("modules.builtin.modinfo")
    });
    if let Some(modinfo) = modinfo.filter(|p| p.is_file()) {
        fs::copy(&modinfo, root.join(&moddir).join("modules.builtin.modinfo"))?;
    }
    run_checked(
        Command::new("chroot")
            .arg(root)
            .args(["depmod", &kernel.release]),
    )?;
    Ok(())
}

/// Bytes the files under `dir` take (`du -sb`).
fn du_bytes(dir: &Path) -> Result<u64> {
    let text = run_output(Command::new("du").arg("-sb").arg(dir))?;
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du -sb {}: unexpected output {text:?}", dir.display()))
}

/// `mkfs.ext4 -d root` into a sparse file of `size_mib` MiB (via a temporary file and
/// rename), inode tables and journal written now so that the first boot does not.
fn make_ext4(root: &Path, image: &Path, size_mib: u64) -> Result<()> {
    let tmp = image.with_extension("partial");
    let _ = fs::remove_file(&tmp);
    fs::File::create(&tmp)
        .and_then(|f| f.set_len(size_mib << 20))
        .with_context(|| format!("creating {}", tmp.display()))?;
    run_checked(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", LABEL, "-E"])
            .arg("lazy_itable_init=0,lazy_journal_init=0")
            .arg("-d")
            .arg(root)
            .arg(&tmp),
    )
    .context("mkfs.ext4 (e2fsprogs) failed")?;
    fs::rename(&tmp, image).with_context(|| format!("renaming to {}", image.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mirror_from_policy_takes_the_suites_main_packages_line() {
        let policy = "Package files:\n 100 /var/lib/dpkg/status\n     release a=now\n \
                      500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n \
                      500 http://deb.debian.org/debian/ bookworm/main amd64 Packages\n     \
                      release v=12,o=Debian\n";

        assert_eq!(
            mirror_from_policy(policy, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(mirror_from_policy(policy, "trixie"), None);
    }

    #[test]
    fn test_mounts_under_finds_nested_mounts_deepest_first() {
        let mounts = "proc /proc proc rw 0 0\n\
                      proc /t/root/proc proc rw 0 0\n\
                      devpts /t/root/dev/pts devpts rw 0 0\n\
                      tmpfs /t/root\\040x tmpfs rw 0 0\n\
                      tmpfs /t/rootfs tmpfs rw 0 0\n";

        let got = mounts_under(mounts, Path::new("/t/root"));

        assert_eq!(
            got,
            [Path::new("/t/root/dev/pts"), Path::new("/t/root/proc")]
        );
        assert_eq!(
            mounts_under(mounts, Path::new("/t/root x")),
            [Path::new("/t/root x")]
        );
    }

    #[test]
    fn test_inputs_change_with_the_kernel() {
        assert_ne!(inputs("6.1.0-56-amd64"), inputs("6.1.0-57-amd64"));
    }
}
