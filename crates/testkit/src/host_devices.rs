//! Devices the test host's QEMU gives the test host besides its own, for
//! device-assignment tests (issue 19): an emulated NVMe controller behind
//! a PCIe root port, under an emulated VT-d with interrupt remapping, so
//! that the test host can bind it to `vfio-pci` and iovm can assign it to
//! its guest. Without any, the test host is booted as always.

use std::path::PathBuf;

/// Where the assignable NVMe controller appears in the test host: behind
/// the only root port, so on bus 1.
pub const ASSIGNABLE_NVME_BDF: &str = "0000:01:00.0";
/// Its serial number (what the guest's `nvme` driver reads).
pub const ASSIGNABLE_NVME_SERIAL: &str = "IOVMASSIGNED";

/// The extra devices of one batch's test host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDevices {
    /// A raw image on this machine backing an NVMe controller the test host
    /// can assign.
    pub assignable_nvme: Option<PathBuf>,
}

impl HostDevices {
    /// QEMU's arguments for them.
    pub fn qemu_args(&self) -> Vec<String> {
        let Some(image) = &self.assignable_nvme else {
            return Vec::new();
        };
        [
            "-device",
            "intel-iommu,intremap=on,caching-mode=on",
            "-device",
            "pcie-root-port,id=assign-rp,chassis=9,bus=pcie.0,addr=0x10",
            "-drive",
            &format!(
                "file={},format=raw,if=none,id=assign-nvme,cache=none,aio=io_uring",
                image.display()
            ),
            "-device",
            &format!("nvme,drive=assign-nvme,serial={ASSIGNABLE_NVME_SERIAL},bus=assign-rp"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// What the test host's kernel command line needs for them: the
    /// IOMMU on, and no check of the timer interrupt through the
    /// remapped IOAPIC, which under TCG is sometimes too slow to pass and
    /// panics the test host ("timer doesn't work through
    /// Interrupt-remapped IO-APIC", docs/test-host.md).
    pub fn append(&self) -> &'static str {
        if self.assignable_nvme.is_some() {
            "intel_iommu=on no_timer_check"
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_no_devices_add_nothing() {
        let d = HostDevices::default();
        assert!(d.qemu_args().is_empty());
        assert_eq!(d.append(), "");
    }

    #[test]
    fn test_assignable_nvme_comes_with_an_iommu_and_a_root_port() {
        let d = HostDevices {
            assignable_nvme: Some("/tmp/a.img".into()),
        };
        let args = d.qemu_args().join(" ");
        assert!(args.contains("intel-iommu,intremap=on"), "{args}");
        assert!(args.contains("file=/tmp/a.img,format=raw"), "{args}");
        assert!(
            args.contains("nvme,drive=assign-nvme,serial=IOVMASSIGNED,bus=assign-rp"),
            "{args}"
        );
        assert!(d.append().starts_with("intel_iommu=on"));
    }
}
