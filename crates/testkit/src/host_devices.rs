//! Devices the test host's QEMU gives the test host besides its own, for
//! device-assignment tests (issue 19), under an emulated VT-d with
//! interrupt remapping so that the test host can bind them to `vfio-pci`
//! and iovm can assign them to its guest:
//!
//! - an emulated NVMe controller behind a PCIe root port (MSI-X, INTx);
//! - an emulated ICH9 AHCI controller with one disk behind a second root
//!   port (MSI with one vector, INTx: QEMU's NVMe has no MSI capability),
//!   as function 0 of a multi-function device whose function 1 is a
//!   virtio RNG the test host's `virtio_pci` drives. Neither function has
//!   ACS, so the two share an IOMMU group: while the RNG keeps its host
//!   driver, the group is not viable.
//!
//! Without any, the test host is booted as always.

use std::path::PathBuf;

/// Where the assignable NVMe controller appears in the test host: behind
/// the first root port, so on bus 1.
pub const ASSIGNABLE_NVME_BDF: &str = "0000:01:00.0";
/// Its serial number (what the guest's `nvme` driver reads).
pub const ASSIGNABLE_NVME_SERIAL: &str = "IOVMASSIGNED";
/// The AHCI disk's serial number (what the guest's `ahci` driver reads).
pub const ASSIGNABLE_AHCI_SERIAL: &str = "IOVMSATA";

/// The extra devices of one batch's test host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDevices {
    /// A raw image on this machine backing an NVMe controller the test host
    /// can assign.
    pub assignable_nvme: Option<PathBuf>,
    /// A raw image on this machine backing the disk of an AHCI controller
    /// the test host can assign.
    pub assignable_ahci: Option<PathBuf>,
}

impl HostDevices {
    /// Where the AHCI controller appears in the test host: behind its root
    /// port, which comes after the NVMe's (bus 2) when there is one.
    pub fn ahci_bdf(&self) -> String {
        let bus = if self.assignable_nvme.is_some() { 2 } else { 1 };
        format!("0000:{bus:02x}:00.0")
    }

    /// Where the AHCI controller's companion function (the virtio RNG in
    /// its IOMMU group) appears.
    pub fn ahci_companion_bdf(&self) -> String {
        let mut bdf = self.ahci_bdf();
        bdf.replace_range(bdf.len() - 1.., "1");
        bdf
    }

    fn any(&self) -> bool {
        self.assignable_nvme.is_some() || self.assignable_ahci.is_some()
    }

    /// QEMU's arguments for them.
    pub fn qemu_args(&self) -> Vec<String> {
        if !self.any() {
            return Vec::new();
        }
        let mut args = vec![
            "-device".to_owned(),
            "intel-iommu,intremap=on,caching-mode=on".to_owned(),
        ];
        let mut add = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
        if let Some(image) = &self.assignable_nvme {
            add(&[
                "-device",
                "pcie-root-port,id=assign-rp,chassis=9,bus=pcie.0,addr=0x10",
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=assign-nvme,cache=none,aio=io_uring",
                    image.display()
                ),
                "-device",
                &format!("nvme,drive=assign-nvme,serial={ASSIGNABLE_NVME_SERIAL},bus=assign-rp"),
            ]);
        }
        if let Some(image) = &self.assignable_ahci {
            add(&[
                "-device",
                "pcie-root-port,id=assign-rp2,chassis=10,bus=pcie.0,addr=0x11",
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=assign-sata,cache=none,aio=io_uring",
                    image.display()
                ),
                "-device",
                "ich9-ahci,id=assign-ahci,bus=assign-rp2,addr=0x0.0x0,multifunction=on",
                "-device",
                &format!(
                    "ide-hd,drive=assign-sata,bus=assign-ahci.0,serial={ASSIGNABLE_AHCI_SERIAL}"
                ),
                "-device",
                "virtio-rng-pci,bus=assign-rp2,addr=0x0.0x1",
            ]);
        }
        args
    }

    /// What the test host's kernel command line needs for them: the
    /// IOMMU on, and no check of the timer interrupt through the
    /// remapped IOAPIC, which under TCG is sometimes too slow to pass and
    /// panics the test host ("timer doesn't work through
    /// Interrupt-remapped IO-APIC", docs/test-host.md).
    pub fn append(&self) -> &'static str {
        if self.any() {
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
            ..HostDevices::default()
        };
        let args = d.qemu_args().join(" ");
        assert!(args.contains("intel-iommu,intremap=on"), "{args}");
        assert!(args.contains("file=/tmp/a.img,format=raw"), "{args}");
        assert!(
            args.contains("nvme,drive=assign-nvme,serial=IOVMASSIGNED,bus=assign-rp"),
            "{args}"
        );
        assert!(!args.contains("ahci"), "{args}");
        assert!(d.append().starts_with("intel_iommu=on"));
    }

    #[test]
    fn test_assignable_ahci_shares_its_slot_with_a_companion_and_follows_the_nvme() {
        let mut d = HostDevices {
            assignable_ahci: Some("/tmp/s.img".into()),
            ..HostDevices::default()
        };
        assert_eq!(d.ahci_bdf(), "0000:01:00.0");
        let args = d.qemu_args().join(" ");
        assert_eq!(args.matches("intel-iommu").count(), 1, "{args}");
        assert!(
            args.contains("ich9-ahci,id=assign-ahci,bus=assign-rp2,addr=0x0.0x0,multifunction=on")
        );
        assert!(
            args.contains("virtio-rng-pci,bus=assign-rp2,addr=0x0.0x1"),
            "{args}"
        );
        assert!(args.contains("file=/tmp/s.img"), "{args}");
        assert!(d.append().starts_with("intel_iommu=on"));

        d.assignable_nvme = Some("/tmp/a.img".into());
        assert_eq!(d.ahci_bdf(), "0000:02:00.0");
        assert_eq!(d.ahci_companion_bdf(), "0000:02:00.1");
        assert_eq!(d.qemu_args().join(" ").matches("intel-iommu").count(), 1);
    }
}
