//! Bad user input: each case ends with one clear line on stderr naming what is
//! wrong, a non-zero exit status, and no panic or backtrace. These run iovm
//! directly on this host; none of them reaches a guest.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const IOVM: &str = env!("CARGO_BIN_EXE_iovm");

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn iovm(args: &[&str]) -> Outcome {
    iovm_as(None, args)
}

/// Runs iovm, as the unprivileged user `nobody` when `unprivileged` is set.
fn iovm_as(unprivileged: Option<()>, args: &[&str]) -> Outcome {
    let mut cmd = match unprivileged {
        Some(()) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", IOVM]);
            c
        }
        None => Command::new(IOVM),
    };
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run iovm");
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts one error line containing `needle`, exit status 1.
#[track_caller]
fn assert_error(o: &Outcome, needle: &str) {
    assert_eq!(o.code, Some(1), "stderr: {}", o.stderr);
    assert!(
        o.stderr.contains(needle),
        "expected {needle:?} in: {}",
        o.stderr
    );
    assert_eq!(
        o.stderr.trim_end().lines().count(),
        1,
        "one line, got: {}",
        o.stderr
    );
    assert!(o.stderr.starts_with("iovm: error: "), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

fn guest_kernel() -> PathBuf {
    testkit::images::require_guest()
        .expect("guest image")
        .join("vmlinuz")
}

/// `run` with the guest's kernel and initramfs, then `extra`.
fn run_guest_with(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--kernel",
        s(&guest_kernel()),
        "--initramfs",
        s(&guest_initramfs()),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn guest_initramfs() -> PathBuf {
    testkit::images::require_guest()
        .expect("guest image")
        .join("initramfs.cpio.gz")
}

/// A fresh world-readable temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iovm-bad-input-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn test_missing_kernel_names_the_path() {
    let o = iovm(&["run", "--kernel", "/nonexistent/vmlinuz"]);
    assert_error(
        &o,
        "cannot read kernel /nonexistent/vmlinuz: No such file or directory",
    );
}

#[test]
fn test_unreadable_kernel_says_permission_denied() {
    let dir = temp_dir("unreadable");
    let kernel = dir.join("vmlinuz");
    std::fs::copy(guest_kernel(), &kernel).unwrap();
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = iovm_as(Some(()), &["run", "--kernel", s(&kernel)]);
    assert_error(&o, "Permission denied");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_kernel_that_is_not_a_bzimage_is_refused() {
    let dir = temp_dir("notbz");
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, vec![0x7fu8; 8192]).unwrap();
    let o = iovm(&["run", "--kernel", s(&kernel)]);
    assert_error(&o, "is not a Linux kernel iovm can boot");
    let tiny = dir.join("tiny");
    std::fs::write(&tiny, b"#!/bin/sh\n").unwrap();
    assert_error(
        &iovm(&["run", "--kernel", s(&tiny)]),
        "is not a Linux kernel iovm can boot",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_missing_initramfs_names_the_path() {
    let o = iovm(&[
        "run",
        "--kernel",
        s(&guest_kernel()),
        "--initramfs",
        "/nonexistent/initrd",
    ]);
    assert_error(&o, "cannot read initramfs /nonexistent/initrd");
}

#[test]
fn test_a_disk_image_in_use_by_another_process_is_refused() {
    let dir = temp_dir("locked");
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    // Another VM's disk: the same lock iovm's devices take.
    let held = backend::BlockFile::open(&backend::DiskConfig {
        path: img.clone(),
        readonly: false,
        direct: false,
    })
    .unwrap();
    let device = format!("virtio-blk,path={}", s(&img));
    let o = iovm(&as_strs(&run_guest_with(&["--device", &device])));
    assert_error(&o, "is in use by another process");
    let ro = format!("{device},readonly=on");
    let o = iovm(&as_strs(&run_guest_with(&["--device", &ro])));
    assert_error(&o, "a read-only disk cannot share an image a writer holds");
    drop(held);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_a_qcow2_image_given_as_a_raw_disk_is_refused() {
    let dir = temp_dir("qcow2");
    let img = dir.join("disk.qcow2");
    let mut header = b"QFI\xfb\0\0\0\x03".to_vec();
    header.resize(1 << 16, 0);
    std::fs::write(&img, header).unwrap();
    let device = format!("nvme-ns,bus=n0,path={}", s(&img));
    let o = iovm(&as_strs(&run_guest_with(&[
        "--device",
        "nvme,id=n0",
        "--device",
        &device,
    ])));
    assert_error(&o, "is a qcow2 image, not a raw one");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_memory_too_small() {
    assert_error(
        &iovm(&["run", "--kernel", "k", "--memory", "16M"]),
        "too small",
    );
}

#[test]
fn test_memory_larger_than_host() {
    assert_error(
        &iovm(&["run", "--kernel", "k", "--memory", "64T"]),
        "more than this host's",
    );
}

#[test]
fn test_malformed_memory_is_a_usage_error() {
    let o = iovm(&["run", "--kernel", "k", "--memory", "lots"]);
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("'lots' is not a size"), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"));
}

#[test]
fn test_malformed_shutdown_timeout_is_a_usage_error() {
    for bad in ["soon", "0s", "1h"] {
        let o = iovm(&["run", "--kernel", "k", "--shutdown-timeout", bad]);
        assert_eq!(o.code, Some(2), "{bad}: {}", o.stderr);
        assert!(o.stderr.contains(bad), "{}", o.stderr);
        assert!(!o.stderr.contains("panicked"));
    }
}

#[test]
fn test_unknown_serial_backend_is_a_usage_error() {
    let o = iovm(&["run", "--kernel", "k", "--serial", "tcp:1234"]);
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("not a serial backend"), "{}", o.stderr);
}

#[test]
fn test_unknown_device_is_a_usage_error() {
    let o = iovm(&["run", "--kernel", "k", "--device", "floppy"]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("'floppy' is not a device iovm has"),
        "{}",
        o.stderr
    );
    let o = iovm(&["run", "--kernel", "k", "--device", "pci-serial,baud=9600"]);
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("not a pci-serial option"), "{}", o.stderr);
}

#[test]
fn test_device_on_an_unknown_bus_names_it() {
    assert_error(
        &iovm(&["run", "--kernel", "k", "--device", "pci-serial,bus=rp9"]),
        "pci-serial (device 1): bus 'rp9' is not the id of a root-port or pci-bridge given before it",
    );
}

#[test]
fn test_sriov_controller_off_a_root_port_and_a_missing_vf_are_named() {
    assert_error(
        &iovm(&["run", "--kernel", "k", "--device", "nvme,id=n0,sriov-vfs=2"]),
        "nvme 'n0': an nvme with sriov-vfs= must sit behind a root port",
    );
    assert_error(
        &iovm(&[
            "run",
            "--kernel",
            "k",
            "--device",
            "root-port,id=rp0",
            "--device",
            "nvme,id=n0,bus=rp0,sriov-vfs=2",
            "--device",
            "nvme-ns,bus=n0,vf=2,path=/dev/null",
        ]),
        "vf=2 but nvme 'n0' has 2 VFs",
    );
    let o = iovm(&["run", "--kernel", "k", "--device", "nvme,sriov-vfs=256"]);
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("1-255 virtual functions"), "{}", o.stderr);
}

#[test]
fn test_second_device_behind_a_root_port_is_refused() {
    assert_error(
        &iovm(&[
            "run",
            "--kernel",
            "k",
            "--device",
            "root-port,id=rp0",
            "--device",
            "pci-serial,bus=rp0",
            "--device",
            "pci-serial,id=late,bus=rp0",
        ]),
        "pci-serial 'late': bus 'rp0' has no free slot left",
    );
}

#[test]
fn test_taken_slot_and_duplicate_id_are_refused() {
    assert_error(
        &iovm(&[
            "run",
            "--kernel",
            "k",
            "--device",
            "pci-serial,addr=3",
            "--device",
            "pci-serial,addr=3.0",
        ]),
        "03.0 on bus 'pcie.0' is already taken",
    );
    assert_error(
        &iovm(&[
            "run",
            "--kernel",
            "k",
            "--device",
            "pci-bridge,id=b",
            "--device",
            "root-port,id=b",
        ]),
        "two devices have id 'b'",
    );
}

#[test]
fn test_intel_iommu_bad_options_are_usage_errors() {
    for (spec, needle) in [
        (
            "intel-iommu,aw-bits=40",
            "aw-bits=40: intel-iommu's address width is 39 or 48",
        ),
        (
            "intel-iommu,intremap=maybe",
            "intremap=maybe: use on or off",
        ),
        (
            "intel-iommu,addr=3",
            "'addr=3' is not an intel-iommu option",
        ),
    ] {
        let o = iovm(&["run", "--kernel", "k", "--device", spec]);
        assert_eq!(o.code, Some(2), "{spec}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{spec}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    }
}

#[test]
fn test_intel_iommu_given_twice_is_refused() {
    assert_error(
        &iovm(&[
            "run",
            "--kernel",
            "k",
            "--device",
            "intel-iommu",
            "--device",
            "intel-iommu,aw-bits=39",
        ]),
        "--device intel-iommu is given twice; a machine has one",
    );
}

#[test]
fn test_malformed_pci_address_is_a_usage_error() {
    let o = iovm(&["run", "--kernel", "k", "--device", "pci-serial,addr=3.x"]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("addr=3.x is not a PCI address"),
        "{}",
        o.stderr
    );
}

#[test]
fn test_zero_cpus() {
    assert_error(
        &iovm(&["run", "--kernel", "k", "--cpus", "0"]),
        "--cpus must be at least 1",
    );
}

#[test]
fn test_too_many_cpus() {
    assert_error(
        &iovm(&["run", "--kernel", "k", "--cpus", "255"]),
        "--cpus 255 is more than the 254 vCPUs",
    );
}

#[test]
fn test_missing_kvm_device() {
    let o = iovm(&as_strs(&run_guest_with(&[
        "--kvm-device",
        "/nonexistent/kvm",
    ])));
    assert_error(&o, "/nonexistent/kvm does not exist: this host has no KVM");
}

#[test]
fn test_kvm_device_without_permission() {
    let dir = temp_dir("kvmperm");
    let node = dir.join("kvm");
    let cpath = std::ffi::CString::new(s(&node)).unwrap();
    // SAFETY: mknod with a valid NUL-terminated path; creates the misc device 10:232 (/dev/kvm).
    let rc = unsafe {
        libc::mknod(
            cpath.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(10, 232),
        )
    };
    assert_eq!(
        rc,
        0,
        "mknod needs root: {}",
        std::io::Error::last_os_error()
    );
    let o = iovm_as(
        Some(()),
        &as_strs(&run_guest_with(&["--kvm-device", s(&node)])),
    );
    assert_error(&o, "no permission to open");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_kvm_without_hardware_virtualization_points_to_test_host() {
    let o = iovm(&as_strs(&run_guest_with(&[])));
    if vmm::host::detect() == vmm::host::KvmFlavor::Hardware {
        eprintln!(
            "this host has hardware KVM: the refusal path is covered by vmm::host's unit tests"
        );
        return;
    }
    assert_error(&o, "cannot run a stock Linux kernel");
    assert!(o.stderr.contains("test host"), "{}", o.stderr);
}

#[test]
fn test_serial_socket_in_use() {
    let dir = temp_dir("sock");
    let path = dir.join("console.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let serial = format!("socket={}", s(&path));
    let o = iovm(&["run", "--kernel", s(&guest_kernel()), "--serial", &serial]);
    assert_error(&o, "is in use by another process");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_help_teaches_usage_and_exit_codes() {
    let out = Command::new(IOVM).args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--kernel",
        "--initramfs",
        "--memory",
        "--cpus",
        "--serial",
        "--on-reboot",
        "--shutdown-timeout",
        "SIGTERM",
        "Exit status",
        "Ctrl-A x",
        "7  internal error",
        "intel-iommu",
        "intremap=on",
        "vfio-pci,host=DDDD:BB:DD.F",
        "mmap=off",
        "`ahci`",
        "`sata-disk`",
        "discard=off",
        "sriov-vfs=N",
        "vf=K",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    let top = Command::new(IOVM).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("I/O virtualization"));
}

#[test]
fn test_version_prints_package_version() {
    let out = Command::new(IOVM).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("iovm {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn test_root_port_hotplug_takes_on_or_off() {
    let o = iovm(&["run", "--kernel", "k", "--device", "root-port,hotplug=yes"]);

    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("'hotplug=yes' is not a root-port option"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("hotplug=on|off"), "{}", o.stderr);
}
