//! The PCI device in sysfs: finding the NVMe controller by class, moving it
//! from its kernel driver to `vfio-pci` and back, and its IOMMU group.
//! Every function takes the sysfs root, so tests run on a fake tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The kernel's sysfs.
pub const SYSFS: &str = "/sys";

/// PCI base class 01h (mass storage), subclass 08h (non-volatile memory).
const CLASS_NVM: u32 = 0x0108;

/// Parses a `class` file (`0x010802`) into the 24-bit class code.
pub fn parse_class(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let hex = t
        .strip_prefix("0x")
        .ok_or_else(|| format!("class {t:?} is not 0x-prefixed hex"))?;
    let v = u32::from_str_radix(hex, 16).map_err(|e| format!("class {t:?}: {e}"))?;
    if v > 0xff_ffff {
        return Err(format!("class {t:?} is wider than 24 bits"));
    }
    Ok(v)
}

/// The addresses (`0000:00:03.0`) of the PCI functions whose class is NVM
/// Express storage (01/08/xx), in address order.
pub fn nvme_functions(sys: &Path) -> Result<Vec<String>, String> {
    let dir = sys.join("bus/pci/devices");
    let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let class_file = entry.path().join("class");
        let Ok(text) = fs::read_to_string(&class_file) else {
            continue;
        };
        if parse_class(&text)? >> 8 == CLASS_NVM {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    Ok(found)
}

/// The directory of function `bdf`.
pub fn device_dir(sys: &Path, bdf: &str) -> PathBuf {
    sys.join("bus/pci/devices").join(bdf)
}

/// The last component of the symbolic link `link` points to, if it exists.
fn link_name(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// The driver bound to `bdf`, if any.
pub fn driver(sys: &Path, bdf: &str) -> Option<String> {
    link_name(&device_dir(sys, bdf).join("driver"))
}

/// The IOMMU group number of `bdf` (its `iommu_group` link's last component).
pub fn iommu_group(sys: &Path, bdf: &str) -> Result<u32, String> {
    let link = device_dir(sys, bdf).join("iommu_group");
    let name = link_name(&link).ok_or_else(|| {
        format!(
            "{} has no IOMMU group: is the guest booted with --device intel-iommu and intel_iommu=on?",
            bdf
        )
    })?;
    name.parse()
        .map_err(|_| format!("{} points to {name:?}, not a group number", link.display()))
}

/// The functions in IOMMU group `group`, in address order.
pub fn group_members(sys: &Path, group: u32) -> Result<Vec<String>, String> {
    let dir = sys.join(format!("kernel/iommu_groups/{group}/devices"));
    let mut v: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// Writes `value` to the sysfs attribute `path`.
fn write_attr(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// Waits up to `timeout` for `bdf` to be bound to `want` (`None`: to no driver).
fn wait_driver(sys: &Path, bdf: &str, want: Option<&str>, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let now = driver(sys, bdf);
        if now.as_deref() == want {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{bdf} is bound to {}, not {}",
                now.as_deref().unwrap_or("no driver"),
                want.unwrap_or("no driver")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Moves `bdf` to driver `to`: sets `driver_override`, unbinds the current
/// driver, asks the PCI core to probe. Returns the driver it had before.
pub fn rebind(sys: &Path, bdf: &str, to: &str) -> Result<Option<String>, String> {
    let before = driver(sys, bdf);
    if before.as_deref() == Some(to) {
        return Ok(before);
    }
    let dev = device_dir(sys, bdf);
    write_attr(&dev.join("driver_override"), to)?;
    if before.is_some() {
        write_attr(&dev.join("driver/unbind"), bdf)?;
        wait_driver(sys, bdf, None, Duration::from_secs(10))?;
    }
    write_attr(&sys.join("bus/pci/drivers_probe"), bdf)?;
    wait_driver(sys, bdf, Some(to), Duration::from_secs(10))?;
    Ok(before)
}

/// Gives `bdf` back to the kernel's choice of driver: clears
/// `driver_override`, unbinds the current driver and probes. Returns the
/// driver bound within `timeout` (drivers such as nvme probe asynchronously).
pub fn release(sys: &Path, bdf: &str, timeout: Duration) -> Result<Option<String>, String> {
    let dev = device_dir(sys, bdf);
    write_attr(&dev.join("driver_override"), "\n")?;
    if driver(sys, bdf).is_some() {
        write_attr(&dev.join("driver/unbind"), bdf)?;
        wait_driver(sys, bdf, None, Duration::from_secs(10))?;
    }
    write_attr(&sys.join("bus/pci/drivers_probe"), bdf)?;
    let start = Instant::now();
    while driver(sys, bdf).is_none() && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(driver(sys, bdf))
}

/// True if the Intel IOMMU unit `dmar` (e.g. `dmar0`) offers interrupt
/// remapping: ECAP bit 3 in `class/iommu/<dmar>/intel-iommu/ecap`.
pub fn interrupt_remapping(sys: &Path, dmar: &str) -> Result<bool, String> {
    let path = sys.join(format!("class/iommu/{dmar}/intel-iommu/ecap"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ecap = u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|e| format!("{}: {text:?}: {e}", path.display()))?;
    Ok(ecap & (1 << 3) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A throw-away directory under the system's temporary directory.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("vfio-nvme-test-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn add_function(sys: &Path, bdf: &str, class: &str) {
        let dir = sys.join("devices/pci0000:00").join(bdf);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("class"), class).unwrap();
        let bus = sys.join("bus/pci/devices");
        fs::create_dir_all(&bus).unwrap();
        symlink(&dir, bus.join(bdf)).unwrap();
    }

    #[test]
    fn test_class_parsing() {
        assert_eq!(parse_class("0x010802\n"), Ok(0x010802));
        assert_eq!(parse_class(" 0x020000 "), Ok(0x020000));
        assert!(parse_class("010802").is_err());
        assert!(parse_class("0xzz").is_err());
        assert!(parse_class("0x1000000").is_err());
    }

    #[test]
    fn test_nvme_functions_are_found_by_class_in_address_order() {
        let s = Scratch::new("find");
        add_function(&s.0, "0000:00:05.0", "0x010802\n");
        add_function(&s.0, "0000:00:00.0", "0x060000\n");
        add_function(&s.0, "0000:00:04.0", "0x010000\n"); // SCSI storage, not NVM
        add_function(&s.0, "0000:00:03.0", "0x010802\n");
        add_function(&s.0, "0000:00:06.0", "0x010803\n"); // another NVM interface
        assert_eq!(
            nvme_functions(&s.0).unwrap(),
            ["0000:00:03.0", "0000:00:05.0", "0000:00:06.0"]
        );
    }

    #[test]
    fn test_a_malformed_class_is_an_error_not_a_miss() {
        let s = Scratch::new("badclass");
        add_function(&s.0, "0000:00:03.0", "nonsense\n");
        assert!(nvme_functions(&s.0).unwrap_err().contains("nonsense"));
    }

    #[test]
    fn test_driver_and_group_come_from_the_links() {
        let s = Scratch::new("links");
        add_function(&s.0, "0000:00:03.0", "0x010802\n");
        let dev = device_dir(&s.0, "0000:00:03.0");
        assert_eq!(driver(&s.0, "0000:00:03.0"), None);
        assert!(iommu_group(&s.0, "0000:00:03.0")
            .unwrap_err()
            .contains("no IOMMU group"));

        let drv = s.0.join("bus/pci/drivers/nvme");
        fs::create_dir_all(&drv).unwrap();
        symlink(&drv, dev.join("driver")).unwrap();
        let group = s.0.join("kernel/iommu_groups/7");
        fs::create_dir_all(group.join("devices")).unwrap();
        symlink(&group, dev.join("iommu_group")).unwrap();
        symlink(&dev, group.join("devices/0000:00:03.0")).unwrap();

        assert_eq!(driver(&s.0, "0000:00:03.0").as_deref(), Some("nvme"));
        assert_eq!(iommu_group(&s.0, "0000:00:03.0"), Ok(7));
        assert_eq!(group_members(&s.0, 7).unwrap(), ["0000:00:03.0"]);
    }

    #[test]
    fn test_rebind_leaves_a_function_already_on_the_driver_alone() {
        let s = Scratch::new("bound");
        add_function(&s.0, "0000:00:03.0", "0x010802\n");
        let drv = s.0.join("bus/pci/drivers/vfio-pci");
        fs::create_dir_all(&drv).unwrap();
        symlink(&drv, device_dir(&s.0, "0000:00:03.0").join("driver")).unwrap();
        assert_eq!(
            rebind(&s.0, "0000:00:03.0", "vfio-pci").unwrap().as_deref(),
            Some("vfio-pci")
        );
        assert!(!device_dir(&s.0, "0000:00:03.0")
            .join("driver_override")
            .exists());
    }

    #[test]
    fn test_release_clears_the_override_and_probes() {
        let s = Scratch::new("release");
        add_function(&s.0, "0000:00:03.0", "0x010802\n");
        let dev = device_dir(&s.0, "0000:00:03.0");
        fs::write(dev.join("driver_override"), "vfio-pci\n").unwrap();
        fs::write(s.0.join("bus/pci/drivers_probe"), "").unwrap();
        // nothing binds in a fake tree: the driver stays none
        assert_eq!(release(&s.0, "0000:00:03.0", Duration::ZERO), Ok(None));
        assert_eq!(
            fs::read_to_string(dev.join("driver_override")).unwrap(),
            "\n"
        );
        assert_eq!(
            fs::read_to_string(s.0.join("bus/pci/drivers_probe")).unwrap(),
            "0000:00:03.0"
        );
    }

    #[test]
    fn test_a_group_link_that_is_not_a_number_is_refused() {
        let s = Scratch::new("badgroup");
        add_function(&s.0, "0000:00:03.0", "0x010802\n");
        let dev = device_dir(&s.0, "0000:00:03.0");
        symlink(s.0.join("kernel/iommu_groups/x"), dev.join("iommu_group")).unwrap();
        assert!(iommu_group(&s.0, "0000:00:03.0")
            .unwrap_err()
            .contains("not a group number"));
    }

    #[test]
    fn test_interrupt_remapping_is_ecap_bit_3() {
        let s = Scratch::new("ecap");
        let dir = s.0.join("class/iommu/dmar0/intel-iommu");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ecap"), "f00f5a\n").unwrap();
        assert_eq!(interrupt_remapping(&s.0, "dmar0"), Ok(true));
        fs::write(dir.join("ecap"), "f00f52\n").unwrap();
        assert_eq!(interrupt_remapping(&s.0, "dmar0"), Ok(false));
        fs::write(dir.join("ecap"), "zz\n").unwrap();
        assert!(interrupt_remapping(&s.0, "dmar0").is_err());
        assert!(interrupt_remapping(&s.0, "dmar1").is_err());
    }
}
