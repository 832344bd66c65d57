//! Device assignment on KVM (issue 19): the machine's VFIO container, one
//! per machine, with all guest RAM mapped for DMA at IOVA = guest-physical
//! address, the KVM VFIO device that knows its groups, and each assigned
//! host function opened through it ([`VfioHost`], the `vfio` crate's
//! [`HostDevice`] over a VFIO device file).
//!
//! Before VFIO is asked anything, [`check_host_function`] looks at sysfs
//! so that the usual mistakes get one clear line: no such function, bound
//! to another driver, no IOMMU group, a group some other function of which
//! a host driver still holds, and too little lockable memory for pinning
//! guest RAM.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use kvm_ioctls::VmFd;
use std::os::fd::AsRawFd;

use vfio::{HostDevice, IrqKind, MappedRegion, RegionInfo};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioDeviceFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

pub use crate::vfio_mirror::MirroredContainer;

/// `VFIO_REGION_INFO_FLAG_MMAP`.
const REGION_MMAP: u32 = 1 << 2;
/// `VFIO_PCI_INTX_IRQ_INDEX`.
const INTX: u32 = 0;

/// Why a host function cannot be assigned.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// No such PCI function.
    #[error("{0}: no such PCI function on this host (see lspci -D)")]
    NoSuchDevice(String),
    /// Bound to another driver.
    #[error(
        "{bdf} is bound to {driver}, not vfio-pci; give it to vfio-pci first: \
         echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; \
         echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind; \
         echo {bdf} > /sys/bus/pci/drivers_probe"
    )]
    WrongDriver {
        /// The function.
        bdf: String,
        /// Its driver.
        driver: String,
    },
    /// Bound to no driver.
    #[error(
        "{0} is bound to no driver; give it to vfio-pci (modprobe vfio-pci; \
         echo vfio-pci > /sys/bus/pci/devices/{0}/driver_override; \
         echo {0} > /sys/bus/pci/drivers_probe)"
    )]
    NoDriver(String),
    /// No IOMMU group.
    #[error("{0} has no IOMMU group: turn the host's IOMMU on (intel_iommu=on or amd_iommu=on)")]
    NoIommuGroup(String),
    /// Another function of the group is held by a host driver.
    #[error(
        "{bdf}'s IOMMU group {group} is not viable: {other} is bound to {driver}; \
         every function of the group must be bound to vfio-pci or to no driver"
    )]
    GroupNotViable {
        /// The function.
        bdf: String,
        /// Its group.
        group: String,
        /// The function that spoils it.
        other: String,
        /// That function's driver.
        driver: String,
    },
    /// Not enough lockable memory to pin guest RAM.
    #[error(
        "assigning a device pins all guest memory ({need} MiB) but RLIMIT_MEMLOCK allows \
         {have} MiB; raise it (ulimit -l) or run with CAP_IPC_LOCK"
    )]
    Memlock {
        /// MiB needed.
        need: u64,
        /// MiB allowed.
        have: u64,
    },
    /// VFIO refused.
    #[error("{what}: {source}")]
    Vfio {
        /// What was being done.
        what: String,
        /// VFIO's error.
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// KVM refused its VFIO device.
    #[error("KVM cannot create its VFIO device: {0}")]
    KvmDevice(#[source] kvm_ioctls::Error),
}

/// The function's name, `DDDD:BB:DD.F`, from its sysfs path.
fn bdf_of(sysfs: &Path) -> String {
    sysfs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| sysfs.display().to_string())
}

/// The name of the driver `dir` is bound to, if any.
fn driver_of(dir: &Path) -> Option<String> {
    let link = fs::read_link(dir.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Checks in sysfs that `sysfs` is a PCI function vfio-pci holds, in a
/// viable IOMMU group.
pub fn check_host_function(sysfs: &Path) -> Result<(), VfioError> {
    check_in(sysfs, Path::new("/sys/kernel/iommu_groups"))
}

/// [`check_host_function`] with the IOMMU groups under `groups`.
fn check_in(sysfs: &Path, groups: &Path) -> Result<(), VfioError> {
    let bdf = bdf_of(sysfs);
    if !sysfs.join("config").exists() {
        return Err(VfioError::NoSuchDevice(bdf));
    }
    match driver_of(sysfs) {
        Some(d) if d == "vfio-pci" => {}
        Some(driver) => return Err(VfioError::WrongDriver { bdf, driver }),
        None => return Err(VfioError::NoDriver(bdf)),
    }
    let group_link = fs::read_link(sysfs.join("iommu_group"))
        .map_err(|_| VfioError::NoIommuGroup(bdf.clone()))?;
    let group = group_link
        .file_name()
        .map(|g| g.to_string_lossy().into_owned())
        .unwrap_or_default();
    let members = groups.join(&group).join("devices");
    for member in fs::read_dir(&members).into_iter().flatten().flatten() {
        let path = member.path();
        match driver_of(&path) {
            None => {}
            Some(d) if d == "vfio-pci" || d == "pcieport" => {}
            Some(driver) => {
                return Err(VfioError::GroupNotViable {
                    bdf,
                    group,
                    other: bdf_of(&path),
                    driver,
                })
            }
        }
    }
    Ok(())
}

/// Checks that `bytes` of guest RAM can be pinned.
fn check_memlock(bytes: u64) -> Result<(), VfioError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives here.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if got != 0 || root || lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= bytes {
        return Ok(());
    }
    Err(VfioError::Memlock {
        need: bytes >> 20,
        have: lim.rlim_cur >> 20,
    })
}

/// The machine's VFIO container, created with its first assigned device.
pub struct VfioMachine {
    kvm_device: Arc<VfioDeviceFd>,
    container: Arc<VfioContainer>,
    memory: Arc<GuestMemoryMmap>,
    mapped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for VfioMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioMachine").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for VfioHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioHost").field("bdf", &self.bdf).finish()
    }
}

impl VfioMachine {
    /// A container for the machine `vm` with guest RAM `memory`, known to
    /// KVM through its VFIO device.
    pub fn new(vm: &VmFd, memory: Arc<GuestMemoryMmap>) -> Result<Self, VfioError> {
        let mut dev = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let kvm_dev = vm.create_device(&mut dev).map_err(VfioError::KvmDevice)?;
        let handle = Arc::new(VfioDeviceFd::new_from_kvm(kvm_dev));
        let container = Self::new_container(&handle)?;
        Ok(Self {
            kvm_device: handle,
            container,
            memory,
            mapped: false.into(),
        })
    }

    fn new_container(handle: &Arc<VfioDeviceFd>) -> Result<Arc<VfioContainer>, VfioError> {
        let container =
            VfioContainer::new(Some(handle.clone())).map_err(|source| VfioError::Vfio {
                what:
                    "opening /dev/vfio/vfio (is vfio_iommu_type1 loaded? modprobe vfio_iommu_type1)"
                        .into(),
                source,
            })?;
        Ok(Arc::new(container))
    }

    /// Opens the host function at `sysfs` in a container of its own whose
    /// DMA mappings the caller keeps (the function is behind iovm's
    /// emulated VT-d: [`MirroredContainer`] mirrors the guest's tables);
    /// it maps nothing yet.
    pub fn open_mirrored(
        &self,
        sysfs: &Path,
    ) -> Result<(VfioHost, Arc<MirroredContainer>), VfioError> {
        check_host_function(sysfs)?;
        let bdf = bdf_of(sysfs);
        let ram: u64 = self.memory.iter().map(GuestMemoryRegion::len).sum();
        check_memlock(ram)?;
        let container = Self::new_container(&self.kvm_device)?;
        let device = VfioDevice::new(sysfs, container.clone(), false).map_err(|source| {
            VfioError::Vfio {
                what: format!("opening {bdf} through VFIO (is another function of its IOMMU group assigned too? behind intel-iommu each group needs a container of its own)"),
                source,
            }
        })?;
        let mirrored = Arc::new(MirroredContainer::new(container, self.memory.clone()));
        Ok((VfioHost { device, bdf }, mirrored))
    }

    /// Opens the host function at `sysfs` in this container; the first one
    /// also maps all guest RAM for DMA (the container's IOMMU exists only
    /// once a group is in it).
    pub fn open(&self, sysfs: &Path) -> Result<VfioHost, VfioError> {
        check_host_function(sysfs)?;
        let bdf = bdf_of(sysfs);
        let ram: u64 = self.memory.iter().map(GuestMemoryRegion::len).sum();
        check_memlock(ram)?;
        let device = VfioDevice::new(sysfs, self.container.clone(), false).map_err(|source| {
            VfioError::Vfio {
                what: format!("opening {bdf} through VFIO (does the host have interrupt remapping, or vfio_iommu_type1 allow_unsafe_interrupts?)"),
                source,
            }
        })?;
        if !self.mapped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: guest RAM stays mapped as long as the machine, and
            // the machine ends its devices (and so this container's DMA)
            // before it unmaps its RAM; iovm only touches guest RAM
            // through volatile accesses (vm-memory), never references.
            unsafe { self.container.vfio_map_guest_memory(self.memory.as_ref()) }.map_err(
                |source| VfioError::Vfio {
                    what: "mapping guest memory for the device's DMA".into(),
                    source,
                },
            )?;
        }
        Ok(VfioHost { device, bdf })
    }
}

/// One host function under VFIO.
pub struct VfioHost {
    device: VfioDevice,
    bdf: String,
}

/// A range of a VFIO region mapped into iovm (shared, read-write).
#[derive(Debug)]
struct MappedBar {
    addr: usize,
    len: usize,
}

impl MappedRegion for MappedBar {
    fn host_addr(&self) -> u64 {
        self.addr as u64
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: `addr..addr+len` is the mapping `VfioHost::map` made,
        // unmapped once, here; the machine removed its memory slot first.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

impl HostDevice for VfioHost {
    fn map(&self, index: u32, offset: u64, len: u64) -> io::Result<Option<Box<dyn MappedRegion>>> {
        if self.device.get_region_flags(index) & REGION_MMAP == 0 {
            return Ok(None);
        }
        let size = self.device.get_region_size(index);
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Ok(None);
        }
        let file_offset = self.device.get_region_offset(index) + offset;
        let (Ok(len), Ok(file_offset)) = (usize::try_from(len), libc::off_t::try_from(file_offset))
        else {
            return Ok(None);
        };
        // SAFETY: a fresh shared mapping of the device file at a region's
        // offset, which VFIO allows for regions with FLAG_MMAP; nothing
        // else in iovm uses that address range, and it is only reached by
        // the guest (through its memory slot) until `MappedBar` unmaps it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.device.as_raw_fd(),
                file_offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Box::new(MappedBar {
            addr: addr as usize,
            len,
        })))
    }

    fn region(&self, index: u32) -> Option<RegionInfo> {
        let size = self.device.get_region_size(index);
        (size > 0).then(|| RegionInfo {
            size,
            mmap: self.device.get_region_flags(index) & REGION_MMAP != 0,
        })
    }

    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        self.device.region_read(index, data, offset);
    }

    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        self.device.region_write(index, data, offset);
    }

    fn set_irqs(&self, kind: IrqKind, fds: &[&EventFd]) -> io::Result<()> {
        let result = match (kind, fds.is_empty()) {
            (IrqKind::Msix, true) => self.device.disable_msix(),
            (IrqKind::Msix, false) => self.device.enable_msix(fds.to_vec()),
            (IrqKind::Msi, true) => self.device.disable_msi(),
            (IrqKind::Msi, false) => self.device.enable_msi(fds.to_vec()),
            (IrqKind::Intx, true) => self.device.disable_irq(INTX),
            (IrqKind::Intx, false) => self
                .device
                .enable_irq(INTX, vec![fds[0]])
                .and_then(|()| self.device.set_irq_resample_fd(INTX, fds[1..].to_vec())),
        };
        result.map_err(|e| io::Error::other(format!("{}: {e}", self.bdf)))
    }

    fn reset(&self) {
        self.device.reset();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    use super::*;

    /// A fake sysfs: `devices/<bdf>` with `config`, a `driver` link and
    /// an `iommu_group` link into `groups/<n>/devices`.
    struct Sysfs(PathBuf);

    impl Sysfs {
        fn new() -> Self {
            let root = std::env::temp_dir().join(format!(
                "iovm-vfio-sysfs-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("drivers/vfio-pci")).unwrap();
            fs::create_dir_all(root.join("drivers/nvme")).unwrap();
            Self(root)
        }

        fn function(&self, bdf: &str, driver: Option<&str>, group: Option<&str>) -> PathBuf {
            let dir = self.0.join("devices").join(bdf);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("config"), [0u8; 64]).unwrap();
            if let Some(d) = driver {
                symlink(self.0.join("drivers").join(d), dir.join("driver")).unwrap();
            }
            if let Some(g) = group {
                let gdir = self.0.join("groups").join(g);
                fs::create_dir_all(gdir.join("devices")).unwrap();
                symlink(&gdir, dir.join("iommu_group")).unwrap();
                symlink(&dir, gdir.join("devices").join(bdf)).unwrap();
            }
            dir
        }

        fn check(&self, f: &Path) -> Result<(), VfioError> {
            check_in(f, &self.0.join("groups"))
        }
    }

    impl Drop for Sysfs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn test_sysfs_checks_give_one_clear_reason_each() {
        let s = Sysfs::new();
        let good = s.function("0000:01:00.0", Some("vfio-pci"), Some("7"));
        let nvme = s.function("0000:02:00.0", Some("nvme"), Some("8"));
        let unbound = s.function("0000:03:00.0", None, Some("9"));
        let no_group = s.function("0000:04:00.0", Some("vfio-pci"), None);
        let spoiled = s.function("0000:05:00.0", Some("vfio-pci"), Some("10"));
        s.function("0000:05:00.1", Some("nvme"), Some("10"));

        assert!(s.check(&good).is_ok());
        assert!(matches!(
            s.check(&s.0.join("devices/0000:09:00.0")),
            Err(VfioError::NoSuchDevice(b)) if b == "0000:09:00.0"
        ));
        let wrong = s.check(&nvme).unwrap_err().to_string();
        assert!(
            wrong.starts_with("0000:02:00.0 is bound to nvme, not vfio-pci"),
            "{wrong}"
        );
        assert!(matches!(s.check(&unbound), Err(VfioError::NoDriver(_))));
        assert!(matches!(
            s.check(&no_group),
            Err(VfioError::NoIommuGroup(_))
        ));
        let e = s.check(&spoiled).unwrap_err().to_string();
        assert!(
            e.contains("group 10 is not viable: 0000:05:00.1 is bound to nvme"),
            "{e}"
        );
    }
}
