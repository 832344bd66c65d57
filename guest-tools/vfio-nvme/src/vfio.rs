//! The legacy VFIO container/group API of Linux 6.1 (`include/uapi/linux/vfio.h`),
//! as raw ioctls: the structures are declared here with the kernel's layout
//! (checked by tests), and each wrapper owns its file descriptor.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

/// `VFIO_API_VERSION`.
pub const API_VERSION: i32 = 0;
/// The Type1 IOMMU backend, version 2 (`VFIO_TYPE1v2_IOMMU`).
pub const TYPE1V2_IOMMU: u32 = 3;

/// `_IO(';', 100 + n)`: VFIO's ioctls carry no size or direction.
const fn io(n: u32) -> libc::c_ulong {
    ((b';' as u32) << 8 | (100 + n)) as libc::c_ulong
}

const GET_API_VERSION: libc::c_ulong = io(0);
const CHECK_EXTENSION: libc::c_ulong = io(1);
const SET_IOMMU: libc::c_ulong = io(2);
const GROUP_GET_STATUS: libc::c_ulong = io(3);
const GROUP_SET_CONTAINER: libc::c_ulong = io(4);
const GROUP_GET_DEVICE_FD: libc::c_ulong = io(6);
const DEVICE_GET_INFO: libc::c_ulong = io(7);
const DEVICE_GET_REGION_INFO: libc::c_ulong = io(8);
const DEVICE_GET_IRQ_INFO: libc::c_ulong = io(9);
const DEVICE_SET_IRQS: libc::c_ulong = io(10);
const IOMMU_GET_INFO: libc::c_ulong = io(12);
const IOMMU_MAP_DMA: libc::c_ulong = io(13);
const IOMMU_UNMAP_DMA: libc::c_ulong = io(14);

/// `VFIO_GROUP_FLAGS_VIABLE`: every device in the group is bound to a VFIO
/// driver or to none.
const GROUP_FLAGS_VIABLE: u32 = 1;
/// `VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE`.
const DMA_MAP_READ_WRITE: u32 = 0b11;
/// `VFIO_IOMMU_INFO_CAPS`.
const IOMMU_INFO_CAPS: u32 = 1 << 1;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
const CAP_IOVA_RANGE: u16 = 1;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const REGION_FLAG_MMAP: u32 = 1 << 2;
/// `VFIO_IRQ_SET_DATA_NONE`.
const IRQ_SET_DATA_NONE: u32 = 1;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// `VFIO_PCI_BAR0_REGION_INDEX`.
pub const BAR0_REGION: u32 = 0;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const CONFIG_REGION: u32 = 7;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const MSIX_IRQ: u32 = 2;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

/// `struct vfio_device_info` (with the padding 6.1 rounds it to).
#[repr(C)]
#[derive(Debug, Default)]
struct DeviceInfo {
    argsz: u32,
    flags: u32,
    num_regions: u32,
    num_irqs: u32,
    cap_offset: u32,
    pad: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RegionInfo {
    argsz: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// The region's index.
    pub index: u32,
    cap_offset: u32,
    /// Its size in bytes.
    pub size: u64,
    /// Its offset in the device file.
    pub offset: u64,
}

/// `struct vfio_irq_info`.
#[repr(C)]
#[derive(Debug, Default)]
struct IrqInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    count: u32,
}

/// `struct vfio_irq_set` without its flexible data.
#[repr(C)]
#[derive(Debug, Default)]
struct IrqSetHeader {
    argsz: u32,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Debug, Default)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap` without its flexible data.
#[repr(C)]
#[derive(Debug, Default)]
struct DmaUnmap {
    argsz: u32,
    flags: u32,
    iova: u64,
    size: u64,
}

/// One usable I/O virtual address range, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First address.
    pub start: u64,
    /// Last address.
    pub end: u64,
}

/// What `VFIO_IOMMU_GET_INFO` says about the container's IOMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuInfo {
    /// Bitmap of the supported page sizes.
    pub page_sizes: u64,
    /// The usable IOVA ranges (empty when the kernel gives none).
    pub ranges: Vec<IovaRange>,
}

/// Reads a little-endian integer of `N` bytes at `at`, if it is inside `b`.
fn le<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Decodes the `VFIO_IOMMU_GET_INFO` answer in `b`: the page size bitmap and,
/// when it has capabilities, the IOVA range capability's ranges. The chain
/// is followed at most 16 links and never outside `b`.
pub fn parse_iommu_info(b: &[u8]) -> Result<IommuInfo, String> {
    let flags = u32::from_le_bytes(le(b, 4).ok_or("IOMMU info too short")?);
    let page_sizes = u64::from_le_bytes(le(b, 8).ok_or("IOMMU info too short")?);
    let mut ranges = Vec::new();
    if flags & IOMMU_INFO_CAPS != 0 {
        let mut at = u32::from_le_bytes(le(b, 16).ok_or("IOMMU info has no cap_offset")?) as usize;
        let mut links = 0;
        while at != 0 {
            links += 1;
            if links > 16 {
                return Err("IOMMU info capability chain loops".into());
            }
            let bad = || format!("IOMMU info capability at {at} lies outside the answer");
            let id = u16::from_le_bytes(le(b, at).ok_or_else(bad)?);
            let next = u32::from_le_bytes(le(b, at + 4).ok_or_else(bad)?) as usize;
            if id == CAP_IOVA_RANGE {
                let n = u32::from_le_bytes(le(b, at + 8).ok_or_else(bad)?) as usize;
                for i in 0..n {
                    let r = at + 16 + 16 * i;
                    ranges.push(IovaRange {
                        start: u64::from_le_bytes(le(b, r).ok_or_else(bad)?),
                        end: u64::from_le_bytes(le(b, r + 8).ok_or_else(bad)?),
                    });
                }
            }
            at = next;
        }
    }
    Ok(IommuInfo { page_sizes, ranges })
}

/// Runs an ioctl whose argument is a pointer and returns its result.
///
/// # Safety
/// `arg` must point to what `request` expects, valid for the call.
unsafe fn ioctl_ptr<T>(fd: RawFd, request: libc::c_ulong, arg: *mut T) -> io::Result<i32> {
    // SAFETY: the caller guarantees `arg` suits `request`.
    let r = unsafe { libc::ioctl(fd, request, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Runs an ioctl whose argument is an integer.
fn ioctl_int(fd: RawFd, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: the requests used with this take an integer argument and touch no memory of ours.
    let r = unsafe { libc::ioctl(fd, request, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Adds the failing step's name to an I/O error.
fn ctx(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A VFIO container (`/dev/vfio/vfio`).
#[derive(Debug)]
pub struct Container(File);

impl Container {
    /// Opens the container and checks the API version and Type1v2 support.
    pub fn open() -> Result<Self, String> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/vfio/vfio")
            .map_err(ctx("open /dev/vfio/vfio"))?;
        let v =
            ioctl_int(f.as_raw_fd(), GET_API_VERSION, 0).map_err(ctx("VFIO_GET_API_VERSION"))?;
        if v != API_VERSION {
            return Err(format!("VFIO API version {v}, expected {API_VERSION}"));
        }
        let ok = ioctl_int(f.as_raw_fd(), CHECK_EXTENSION, TYPE1V2_IOMMU.into())
            .map_err(ctx("VFIO_CHECK_EXTENSION"))?;
        if ok != 1 {
            return Err(
                "the container does not offer VFIO_TYPE1v2_IOMMU (is vfio_iommu_type1 loaded?)"
                    .into(),
            );
        }
        Ok(Self(f))
    }

    /// Selects the Type1v2 IOMMU backend (after a group joined).
    pub fn set_iommu(&self) -> Result<(), String> {
        ioctl_int(self.0.as_raw_fd(), SET_IOMMU, TYPE1V2_IOMMU.into())
            .map(drop)
            .map_err(ctx("VFIO_SET_IOMMU(TYPE1v2) (without interrupt remapping vfio_iommu_type1 needs allow_unsafe_interrupts=1)"))
    }

    /// The IOMMU's page sizes and IOVA ranges.
    pub fn iommu_info(&self) -> Result<IommuInfo, String> {
        let mut buf = vec![0u64; 512];
        let len = buf.len() * 8;
        buf[0] = len as u64; // argsz in the low half of the first word
                             // SAFETY: `buf` is `len` bytes, as argsz says; the kernel writes at most that.
        unsafe { ioctl_ptr(self.0.as_raw_fd(), IOMMU_GET_INFO, buf.as_mut_ptr()) }
            .map_err(ctx("VFIO_IOMMU_GET_INFO"))?;
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        parse_iommu_info(&bytes)
    }

    /// Maps `size` bytes of this process at `vaddr` to I/O virtual address
    /// `iova`, readable and writable by the device.
    ///
    /// # Safety
    /// `vaddr..vaddr+size` must be memory this process owns for as long as
    /// the mapping lasts: the device may write it at any time.
    pub unsafe fn map_dma(&self, vaddr: u64, iova: u64, size: u64) -> Result<(), String> {
        let mut m = DmaMap {
            argsz: std::mem::size_of::<DmaMap>() as u32,
            flags: DMA_MAP_READ_WRITE,
            vaddr,
            iova,
            size,
        };
        // SAFETY: `m` is a dma_map structure with its argsz.
        unsafe { ioctl_ptr(self.0.as_raw_fd(), IOMMU_MAP_DMA, &mut m) }
            .map(drop)
            .map_err(ctx("VFIO_IOMMU_MAP_DMA"))
    }

    /// Unmaps the mapping at `iova` of `size` bytes; returns the bytes the kernel unmapped.
    pub fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64, String> {
        let mut u = DmaUnmap {
            argsz: std::mem::size_of::<DmaUnmap>() as u32,
            flags: 0,
            iova,
            size,
        };
        // SAFETY: `u` is a dma_unmap structure with its argsz and no data.
        unsafe { ioctl_ptr(self.0.as_raw_fd(), IOMMU_UNMAP_DMA, &mut u) }
            .map_err(ctx("VFIO_IOMMU_UNMAP_DMA"))?;
        Ok(u.size)
    }
}

/// A VFIO group (`/dev/vfio/<n>`), attached to a container.
#[derive(Debug)]
pub struct Group(File);

impl Group {
    /// Opens group `n`, waiting up to `wait` for its device node to appear,
    /// checks it is viable and attaches it to `container`.
    pub fn open(n: u32, container: &Container, wait: std::time::Duration) -> Result<Self, String> {
        let path = format!("/dev/vfio/{n}");
        let start = std::time::Instant::now();
        let f = loop {
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && start.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(format!("open {path}: {e}")),
            }
        };
        let mut st = GroupStatus {
            argsz: std::mem::size_of::<GroupStatus>() as u32,
            flags: 0,
        };
        // SAFETY: `st` is a group_status structure with its argsz.
        unsafe { ioctl_ptr(f.as_raw_fd(), GROUP_GET_STATUS, &mut st) }
            .map_err(ctx("VFIO_GROUP_GET_STATUS"))?;
        if st.flags & GROUP_FLAGS_VIABLE == 0 {
            return Err(format!(
                "group {n} is not viable: a device in it is bound to a non-VFIO driver"
            ));
        }
        let mut fd: libc::c_int = container.0.as_raw_fd();
        // SAFETY: the argument is a pointer to the container's descriptor.
        unsafe { ioctl_ptr(f.as_raw_fd(), GROUP_SET_CONTAINER, &mut fd) }
            .map_err(ctx("VFIO_GROUP_SET_CONTAINER"))?;
        Ok(Self(f))
    }

    /// The device `bdf` of this group.
    pub fn device(&self, bdf: &str) -> Result<Device, String> {
        let name = CString::new(bdf).map_err(|_| format!("{bdf:?} holds a NUL"))?;
        // SAFETY: the argument is a NUL-terminated string the kernel only reads.
        let fd = unsafe {
            ioctl_ptr(
                self.0.as_raw_fd(),
                GROUP_GET_DEVICE_FD,
                name.as_ptr().cast_mut(),
            )
        }
        .map_err(ctx("VFIO_GROUP_GET_DEVICE_FD"))?;
        // SAFETY: the ioctl returned a new descriptor that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut info = DeviceInfo {
            argsz: std::mem::size_of::<DeviceInfo>() as u32,
            ..DeviceInfo::default()
        };
        // SAFETY: `info` is a device_info structure with its argsz.
        unsafe { ioctl_ptr(file.as_raw_fd(), DEVICE_GET_INFO, &mut info) }
            .map_err(ctx("VFIO_DEVICE_GET_INFO"))?;
        Ok(Device {
            file,
            regions: info.num_regions,
            irqs: info.num_irqs,
        })
    }
}

/// A VFIO device file.
#[derive(Debug)]
pub struct Device {
    file: File,
    /// Number of regions.
    pub regions: u32,
    /// Number of interrupt indexes.
    pub irqs: u32,
}

impl Device {
    /// The raw descriptor, for mmap.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Region `index`'s flags, size and file offset.
    pub fn region(&self, index: u32) -> Result<RegionInfo, String> {
        let mut r = RegionInfo {
            argsz: std::mem::size_of::<RegionInfo>() as u32,
            index,
            ..RegionInfo::default()
        };
        // SAFETY: `r` is a region_info structure with its argsz.
        unsafe { ioctl_ptr(self.fd(), DEVICE_GET_REGION_INFO, &mut r) }
            .map_err(ctx("VFIO_DEVICE_GET_REGION_INFO"))?;
        Ok(r)
    }

    /// Reads `buf.len()` bytes at `offset` of `region`.
    pub fn read_region(
        &self,
        region: &RegionInfo,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), String> {
        self.file
            .read_exact_at(buf, region.offset + offset)
            .map_err(|e| format!("reading region {} at {offset:#x}: {e}", region.index))
    }

    /// Writes `buf` at `offset` of `region`.
    pub fn write_region(&self, region: &RegionInfo, offset: u64, buf: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(buf, region.offset + offset)
            .map_err(|e| format!("writing region {} at {offset:#x}: {e}", region.index))
    }

    /// The number of vectors of interrupt index `index`.
    pub fn irq_count(&self, index: u32) -> Result<u32, String> {
        let mut i = IrqInfo {
            argsz: std::mem::size_of::<IrqInfo>() as u32,
            index,
            ..IrqInfo::default()
        };
        // SAFETY: `i` is an irq_info structure with its argsz.
        unsafe { ioctl_ptr(self.fd(), DEVICE_GET_IRQ_INFO, &mut i) }
            .map_err(ctx("VFIO_DEVICE_GET_IRQ_INFO"))?;
        Ok(i.count)
    }

    /// Enables MSI-X vectors `0..fds.len()`, each signalling its eventfd.
    pub fn enable_msix(&self, fds: &[RawFd]) -> Result<(), String> {
        let header = IrqSetHeader {
            argsz: 0,
            flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            index: MSIX_IRQ,
            start: 0,
            count: fds.len() as u32,
        };
        let bytes = irq_set_bytes(header, fds);
        let mut words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte chunks")))
            .collect();
        // SAFETY: `words` holds an irq_set structure followed by `count` descriptors, argsz long.
        unsafe { ioctl_ptr(self.fd(), DEVICE_SET_IRQS, words.as_mut_ptr()) }
            .map(drop)
            .map_err(ctx("VFIO_DEVICE_SET_IRQS(MSI-X, eventfd trigger)"))
    }

    /// Disables every MSI-X vector.
    pub fn disable_msix(&self) -> Result<(), String> {
        let mut h = IrqSetHeader {
            argsz: std::mem::size_of::<IrqSetHeader>() as u32,
            flags: IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
            index: MSIX_IRQ,
            start: 0,
            count: 0,
        };
        // SAFETY: `h` is an irq_set structure without data, argsz long.
        unsafe { ioctl_ptr(self.fd(), DEVICE_SET_IRQS, &mut h) }
            .map(drop)
            .map_err(ctx("VFIO_DEVICE_SET_IRQS(MSI-X off)"))
    }
}

/// The bytes of a `vfio_irq_set` with eventfd data: the header (its argsz
/// filled in) followed by one 32-bit descriptor per vector.
fn irq_set_bytes(mut header: IrqSetHeader, fds: &[RawFd]) -> Vec<u8> {
    header.argsz = (std::mem::size_of::<IrqSetHeader>() + 4 * fds.len()) as u32;
    let mut b = Vec::with_capacity(header.argsz as usize);
    for w in [
        header.argsz,
        header.flags,
        header.index,
        header.start,
        header.count,
    ] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    for fd in fds {
        b.extend_from_slice(&fd.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn test_ioctl_numbers_match_the_uapi_header() {
        assert_eq!(GET_API_VERSION, 0x3b64);
        assert_eq!(CHECK_EXTENSION, 0x3b65);
        assert_eq!(SET_IOMMU, 0x3b66);
        assert_eq!(GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(IOMMU_UNMAP_DMA, 0x3b72);
    }

    #[test]
    fn test_structures_have_the_kernel_layout() {
        assert_eq!(size_of::<GroupStatus>(), 8);
        assert_eq!(size_of::<RegionInfo>(), 32);
        assert_eq!(offset_of!(RegionInfo, size), 16);
        assert_eq!(offset_of!(RegionInfo, offset), 24);
        assert_eq!(size_of::<IrqInfo>(), 16);
        assert_eq!(size_of::<IrqSetHeader>(), 20);
        assert_eq!(size_of::<DmaMap>(), 32);
        assert_eq!(offset_of!(DmaMap, vaddr), 8);
        assert_eq!(offset_of!(DmaMap, iova), 16);
        assert_eq!(size_of::<DmaUnmap>(), 24);
        assert_eq!(offset_of!(DeviceInfo, num_irqs), 12);
    }

    #[test]
    fn test_irq_set_carries_one_descriptor_per_vector() {
        let h = IrqSetHeader {
            flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            index: MSIX_IRQ,
            count: 2,
            ..IrqSetHeader::default()
        };
        let b = irq_set_bytes(h, &[5, 9]);
        assert_eq!(b.len(), 28);
        let w = |i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(w(0), 28, "argsz");
        assert_eq!(w(1), 0x24, "DATA_EVENTFD | ACTION_TRIGGER");
        assert_eq!(w(2), 2, "MSI-X");
        assert_eq!((w(3), w(4)), (0, 2));
        assert_eq!((w(5), w(6)), (5, 9));
    }

    /// An info answer as the kernel lays it out: header, then capabilities.
    fn info_with_ranges(ranges: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[0..4].copy_from_slice(&4096u32.to_le_bytes());
        b[4..8].copy_from_slice(&(1u32 | IOMMU_INFO_CAPS).to_le_bytes());
        b[8..16].copy_from_slice(&0x4020_1000u64.to_le_bytes());
        b[16..20].copy_from_slice(&24u32.to_le_bytes());
        // an unrelated capability first (id 2, migration), then the ranges
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&48u32.to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        assert_eq!(b.len(), 48);
        b.extend_from_slice(&CAP_IOVA_RANGE.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (s, e) in ranges {
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
        }
        b
    }

    #[test]
    fn test_iommu_info_ranges_are_read_through_the_chain() {
        let b = info_with_ranges(&[(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)]);
        let info = parse_iommu_info(&b).unwrap();
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(
            info.ranges,
            [
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0xffff_ffff_ffff
                }
            ]
        );
    }

    #[test]
    fn test_iommu_info_without_caps_has_no_ranges() {
        let mut b = info_with_ranges(&[(0, 1)]);
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(parse_iommu_info(&b).unwrap().ranges, []);
    }

    #[test]
    fn test_hostile_iommu_info_is_refused_not_followed() {
        // a range count past the end of the answer
        let mut b = info_with_ranges(&[(0, 1)]);
        b[48 + 8..48 + 12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse_iommu_info(&b).unwrap_err().contains("outside"));
        // a chain pointing at itself
        let mut b = info_with_ranges(&[]);
        b[24 + 4..24 + 8].copy_from_slice(&24u32.to_le_bytes());
        assert!(parse_iommu_info(&b).unwrap_err().contains("loops"));
        // an offset past the end
        let mut b = info_with_ranges(&[]);
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_iommu_info(&b).is_err());
        assert!(parse_iommu_info(&[0; 8]).is_err());
    }
}
