//! What the host offers: whether its `/dev/kvm` exists, may be opened, and can
//! run a stock Linux kernel.
//!
//! PVM ("Pagetable-based Virtual Machine", module `kvm_pvm`) provides a
//! `/dev/kvm` on hosts without VMX/SVM, but a stock kernel's privileged
//! instructions go through KVM's emulator there, which is far too slow and
//! stops on instructions it cannot emulate. iovm refuses such a device with an
//! explanation instead of starting a guest that cannot boot.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What kind of KVM the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmFlavor {
    /// Intel VT-x or AMD-V: stock kernels run.
    Hardware,
    /// PVM, or no VMX/SVM flag at all: stock kernels do not run.
    NoHardwareVirtualization,
}

/// Decides the flavor from `/proc/cpuinfo` and whether `kvm_pvm` is loaded.
pub fn classify(cpuinfo: &str, pvm_loaded: bool) -> KvmFlavor {
    let has_virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if has_virt && !pvm_loaded {
        KvmFlavor::Hardware
    } else {
        KvmFlavor::NoHardwareVirtualization
    }
}

/// Looks at this host.
pub fn detect() -> KvmFlavor {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    classify(&cpuinfo, Path::new("/sys/module/kvm_pvm").exists())
}

/// Why `/dev/kvm` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmAccessError {
    /// The device node is absent.
    #[error("{0} does not exist: this host has no KVM; load kvm_intel or kvm_amd (and enable virtualization in the firmware)")]
    Missing(PathBuf),
    /// The user may not open it.
    #[error(
        "no permission to open {0}: add your user to its group (usually 'kvm') or run iovm as root"
    )]
    PermissionDenied(PathBuf),
    /// Some other failure opening it.
    #[error("cannot open {0}")]
    Open(PathBuf, #[source] std::io::Error),
    /// It is PVM or otherwise lacks hardware virtualization.
    #[error("{0} cannot run a stock Linux kernel: this host has no hardware virtualization (no vmx/svm CPU flag; kvm_pvm loaded). Run guests inside the nested test host instead: `cargo xtask demo` and `cargo xtask test` do so automatically (see docs/test-host.md)")]
    NoHardwareVirtualization(PathBuf),
}

/// Opens the KVM device read-write, close-on-exec, with a clear error.
pub fn open_kvm(path: &Path, flavor: KvmFlavor) -> Result<File, KvmAccessError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => KvmAccessError::Missing(path.to_path_buf()),
            ErrorKind::PermissionDenied => KvmAccessError::PermissionDenied(path.to_path_buf()),
            _ => KvmAccessError::Open(path.to_path_buf(), e),
        })?;
    if flavor == KvmFlavor::NoHardwareVirtualization {
        return Err(KvmAccessError::NoHardwareVirtualization(path.to_path_buf()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx ept\n";
    const AMD: &str = "processor\t: 0\nflags\t\t: fpu svm npt\n";
    const NONE: &str = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor\n";

    #[test]
    fn test_classify_vmx_is_hardware() {
        assert_eq!(classify(INTEL, false), KvmFlavor::Hardware);
        assert_eq!(classify(AMD, false), KvmFlavor::Hardware);
    }

    #[test]
    fn test_classify_no_flag_or_pvm_is_not_hardware() {
        assert_eq!(classify(NONE, false), KvmFlavor::NoHardwareVirtualization);
        assert_eq!(classify(INTEL, true), KvmFlavor::NoHardwareVirtualization);
    }

    #[test]
    fn test_classify_ignores_flag_names_outside_flags_line() {
        let text = "model name\t: svm vmx marketing\nflags\t\t: fpu\n";
        assert_eq!(classify(text, false), KvmFlavor::NoHardwareVirtualization);
    }

    #[test]
    fn test_open_kvm_missing_path_names_it() {
        let err = open_kvm(Path::new("/nonexistent/kvm"), KvmFlavor::Hardware).unwrap_err();
        assert!(matches!(err, KvmAccessError::Missing(_)));
        assert!(err
            .to_string()
            .starts_with("/nonexistent/kvm does not exist"));
    }
}
