//! `exit-probe`: what one guest access that leaves the guest costs, timed
//! from inside the guest (run as root in the test guest's initramfs).
//!
//! Each figure is the median, over several batches, of the wall time of a
//! batch divided by its accesses:
//!
//! | figure          | access                                                        |
//! |-----------------|---------------------------------------------------------------|
//! | `pio_write`     | `outb` to port 0x80 (the POST port: no device state changes)  |
//! | `cf8_read`      | a configuration read of 00:00.0's vendor ID through 0xCF8/0xCFC (two exits) |
//! | `ecam_read`     | the same read through the ECAM window the ACPI MCFG names     |
//! | `kernel_cf8_read`  | `pread` of 00:00.0's config at offset 0: the kernel uses 0xCF8/0xCFC below 256 |
//! | `kernel_ecam_read` | `pread` at offset 0x100: the kernel uses ECAM for extended space |
//! | `ecam_write`    | a write of 00:00.0's read-only vendor ID through ECAM: an MMIO write that traps and changes nothing |
//! | `virtio_notify` | a queue notification of the first virtio-pci device (modern transport), written to its notify capability's doorbell: the VMM's ioeventfd where it has one |
//!
//! Output, one line: `exit-probe: pio_write_ns=N cf8_read_ns=N ecam_read_ns=N ecam_write_ns=N`
//! (a figure that could not be measured is `-`), then a line per problem.
//! Usage: `exit-probe [ACCESSES_PER_BATCH [BATCHES]]` (default 2000 and 7).
//! The ECAM figures need `/dev/mem` to reach the window, and `virtio_notify`
//! maps a BAR its driver owns through sysfs: boot Debian's kernel with
//! `iomem=relaxed` (it is built with `CONFIG_IO_STRICT_DEVMEM`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::time::Instant;

const POST_PORT: u16 = 0x80;
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS for bus 0, device 0, function 0, register 0, enabled.
const HOST_BRIDGE_ID: u32 = 0x8000_0000;
/// The host bridge's configuration space as the kernel serves it.
const SYSFS_CONFIG: &str = "/sys/bus/pci/devices/0000:00:00.0/config";

/// Writes `value` to `port`.
///
/// # Safety
/// The caller has access to the port (`ioperm`) and the port write is harmless.
unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees the privilege and the port's harmlessness.
    unsafe { std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack)) }
}

/// Writes `value` to `port`.
///
/// # Safety
/// As [`outb`].
unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller guarantees the privilege and the port's harmlessness.
    unsafe { std::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack)) }
}

/// Reads a dword from `port`.
///
/// # Safety
/// As [`outb`].
unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller guarantees the privilege and the port's harmlessness.
    unsafe { std::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nostack)) }
    value
}

/// Median over `batches` of the ns per access of `n` calls of `access`.
fn time(n: u32, batches: u32, what: &str, mut access: impl FnMut()) -> u64 {
    eprintln!("exit-probe: timing {what}");
    let mut per: Vec<u64> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                access();
            }
            (start.elapsed().as_nanos() / u128::from(n)) as u64
        })
        .collect();
    per.sort_unstable();
    per[per.len() / 2]
}

/// The ECAM base of segment 0 from the ACPI MCFG table (its first
/// allocation structure: base address at byte 44).
fn ecam_base() -> Result<u64, String> {
    let mcfg = std::fs::read("/sys/firmware/acpi/tables/MCFG")
        .map_err(|e| format!("no ACPI MCFG table: {e}"))?;
    let bytes: [u8; 8] = mcfg
        .get(44..52)
        .and_then(|b| b.try_into().ok())
        .ok_or("MCFG has no allocation structure")?;
    Ok(u64::from_le_bytes(bytes))
}

/// 00:00.0's configuration page of the ECAM window, mapped uncached from /dev/mem.
struct EcamPage {
    ptr: *mut u32,
    _file: File,
}

impl EcamPage {
    fn map() -> Result<Self, String> {
        let base = ecam_base()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/mem")
            .map_err(|e| format!("/dev/mem: {e}"))?;
        let offset = libc::off_t::try_from(base).map_err(|_| "ECAM base out of range")?;
        // SAFETY: a fresh shared mapping of one page of device memory; the
        // kernel checks that /dev/mem allows it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of ECAM at {base:#x}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self {
            ptr: ptr.cast(),
            _file: file,
        })
    }

    fn read_id(&self) -> u32 {
        // SAFETY: `ptr` maps 4096 bytes; offset 0 is the aligned vendor/device ID.
        unsafe { self.ptr.read_volatile() }
    }

    fn write_id(&self, value: u32) {
        // SAFETY: as `read_id`; the register is read-only, so the write changes nothing.
        unsafe { self.ptr.write_volatile(value) }
    }
}

impl Drop for EcamPage {
    fn drop(&mut self) {
        // SAFETY: unmaps the page this value mapped.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

/// A shared mapping of a whole BAR through sysfs (`resourceN`).
struct BarMap {
    ptr: *mut u8,
    len: usize,
    _file: File,
}

impl BarMap {
    fn map(dev: &std::path::Path, bar: u8) -> Result<Self, String> {
        let path = dev.join(format!("resource{bar}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len() as usize;
        // SAFETY: a fresh shared mapping of the BAR's `len` bytes; the kernel
        // checks that the resource may be mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED || len == 0 {
            return Err(format!(
                "mmap of {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
            _file: file,
        })
    }

    /// The 2-byte register at `offset`, if it lies in the BAR.
    fn reg16(&self, offset: u64) -> Result<*mut u16, String> {
        let at = usize::try_from(offset).map_err(|_| "offset out of range")?;
        if at % 2 != 0 || at + 2 > self.len {
            return Err(format!(
                "offset {offset:#x} outside the {} byte BAR",
                self.len
            ));
        }
        // SAFETY: `at + 2 <= len`, within the mapping, and 2-byte aligned.
        Ok(unsafe { self.ptr.add(at) }.cast())
    }
}

impl Drop for BarMap {
    fn drop(&mut self) {
        // SAFETY: unmaps the BAR this value mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A virtio-pci vendor capability (virtio 1.2 §4.1.4): its `cfg_type`, BAR,
/// offset, and for the notify capability the notify offset multiplier.
#[derive(Debug, Clone, Copy)]
struct VirtioCap {
    cfg_type: u8,
    bar: u8,
    offset: u32,
    multiplier: u32,
}

/// The virtio vendor capabilities in the first 256 bytes of `config`.
fn virtio_caps(config: &[u8]) -> Vec<VirtioCap> {
    let u32_at = |i: usize| {
        config
            .get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let mut out = Vec::new();
    let mut p = usize::from(config.get(0x34).copied().unwrap_or(0) & 0xfc);
    for _ in 0..48 {
        if p < 0x40 || p + 16 > config.len().min(256) {
            break;
        }
        if config[p] == 0x09 {
            out.push(VirtioCap {
                cfg_type: config[p + 3],
                bar: config[p + 4],
                offset: u32_at(p + 8),
                multiplier: if p + 20 <= config.len() {
                    u32_at(p + 16)
                } else {
                    0
                },
            });
        }
        p = usize::from(config[p + 1] & 0xfc);
    }
    out
}

/// The notify doorbell of the queue the driver last selected, of the first
/// virtio-pci device with the modern capabilities: (its BAR mapping, the
/// register, the queue index to write). Only reads the common
/// configuration (`queue_select` and that queue's `queue_notify_off`).
fn virtio_doorbell() -> Result<(BarMap, *mut u16, u16), String> {
    const COMMON: u8 = 1;
    const NOTIFY: u8 = 2;
    const QUEUE_SELECT: u64 = 0x16;
    const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    let mut devs: Vec<_> = std::fs::read_dir("/sys/bus/pci/devices")
        .map_err(|e| format!("/sys/bus/pci/devices: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    devs.sort();
    for dev in devs {
        let vendor = std::fs::read_to_string(dev.join("vendor")).unwrap_or_default();
        if vendor.trim() != "0x1af4" {
            continue;
        }
        let config = std::fs::read(dev.join("config")).unwrap_or_default();
        let caps = virtio_caps(&config);
        let (Some(common), Some(notify)) = (
            caps.iter().find(|c| c.cfg_type == COMMON),
            caps.iter().find(|c| c.cfg_type == NOTIFY),
        ) else {
            continue;
        };
        let common_bar = BarMap::map(&dev, common.bar)?;
        // SAFETY: `reg16` checked both registers lie in the mapped BAR.
        let (queue, notify_off) = unsafe {
            (
                common_bar
                    .reg16(u64::from(common.offset) + QUEUE_SELECT)?
                    .read_volatile(),
                common_bar
                    .reg16(u64::from(common.offset) + QUEUE_NOTIFY_OFF)?
                    .read_volatile(),
            )
        };
        let bar = BarMap::map(&dev, notify.bar)?;
        let at = u64::from(notify.offset) + u64::from(notify_off) * u64::from(notify.multiplier);
        let reg = bar.reg16(at)?;
        eprintln!(
            "exit-probe: virtio doorbell of {} queue {queue}: BAR {} + {at:#x}",
            dev.display(),
            notify.bar
        );
        return Ok((bar, reg, queue));
    }
    Err("no virtio-pci device with a notify capability".into())
}

/// A 4-byte configuration read of 00:00.0 at `offset` through sysfs, timed:
/// the kernel's own access path. Linux on x86 reads offsets below 256
/// through 0xCF8/0xCFC and extended ones through ECAM (`raw_pci_read`), so
/// offset 0 times the port mechanism and 0x100 the ECAM one, each plus a
/// system call, in any guest.
fn sysfs_read(n: u32, batches: u32, offset: u64) -> Result<u64, String> {
    use std::os::unix::fs::FileExt;
    let f = File::open(SYSFS_CONFIG).map_err(|e| format!("{SYSFS_CONFIG}: {e}"))?;
    let mut buf = [0u8; 4];
    f.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("{SYSFS_CONFIG} at {offset:#x}: {e}"))?;
    let what = if offset < 0x100 {
        "kernel_cf8_read"
    } else {
        "kernel_ecam_read"
    };
    Ok(time(n, batches, what, || {
        let _ = f.read_exact_at(&mut buf, offset);
        std::hint::black_box(buf);
    }))
}

/// One figure, measured in a child process so that a fault in one access
/// kind (seen: a general protection fault on port I/O in some guests) costs
/// only that figure. Returns the ns per access, or why there is none.
fn isolated(name: &str, measure: impl FnOnce() -> Result<u64, String>) -> Result<u64, String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() returns.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return measure();
    }
    let [rd, wr] = fds;
    // SAFETY: this program is single-threaded; the child only measures,
    // writes to the pipe and exits.
    match unsafe { libc::fork() } {
        0 => {
            let out = match measure() {
                Ok(ns) => format!("ok {ns}"),
                Err(e) => format!("err {e}"),
            };
            // SAFETY: writes the bytes of `out` to the pipe's write end.
            unsafe { libc::write(wr, out.as_ptr().cast(), out.len()) };
            // SAFETY: ends the child without running the parent's exit path.
            unsafe { libc::_exit(0) }
        }
        -1 => {
            // SAFETY: closes the pipe this function opened.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
            measure()
        }
        child => {
            // SAFETY: closes the parent's copy of the write end.
            unsafe { libc::close(wr) };
            let mut buf = [0u8; 512];
            // SAFETY: reads into `buf`, within its length.
            let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
            let mut status = 0;
            // SAFETY: waits for the child forked above; closes the read end.
            unsafe {
                libc::waitpid(child, &mut status, 0);
                libc::close(rd);
            }
            let text = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
            if libc::WIFSIGNALED(status) {
                return Err(format!(
                    "{name}: the access faulted (signal {})",
                    libc::WTERMSIG(status)
                ));
            }
            match text.split_once(' ') {
                Some(("ok", ns)) => ns.parse().map_err(|_| format!("{name}: bad result {text}")),
                Some(("err", e)) => Err(e.to_string()),
                _ => Err(format!("{name}: no result")),
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let batches: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7).max(1);
    // ioperm for the ports used only. Under QEMU q35 in the test host, port
    // accesses from user space fault (#GP) after iopl(3) and after ioperm
    // alike (not under iovm); each figure runs in its own child process.
    let port_io = || {
        for (from, count) in [(u64::from(POST_PORT), 1), (u64::from(CONFIG_ADDRESS), 8)] {
            // SAFETY: grants this process access to the named ports; needs
            // CAP_SYS_RAWIO.
            if unsafe { libc::ioperm(from as libc::c_ulong, count, 1) } != 0 {
                return Err(format!("ioperm: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    };
    let figures: Vec<(&str, Result<u64, String>)> = vec![
        (
            "pio_write",
            isolated("pio_write", || {
                port_io()?;
                // SAFETY: I/O privilege was granted; the POST port has no effect.
                Ok(time(n, batches, "pio_write", || unsafe {
                    outb(POST_PORT, 0)
                }))
            }),
        ),
        (
            "cf8_read",
            isolated("cf8_read", || {
                port_io()?;
                // SAFETY: I/O privilege was granted; reading a vendor ID
                // through the configuration mechanism changes nothing.
                let id = unsafe {
                    outl(CONFIG_ADDRESS, HOST_BRIDGE_ID);
                    inl(CONFIG_DATA)
                };
                if id == u32::MAX {
                    return Err("00:00.0 reads all-ones through 0xCF8/0xCFC".into());
                }
                Ok(time(n, batches, "cf8_read", || {
                    // SAFETY: as above.
                    unsafe {
                        outl(CONFIG_ADDRESS, HOST_BRIDGE_ID);
                        std::hint::black_box(inl(CONFIG_DATA));
                    }
                }))
            }),
        ),
        (
            "ecam_read",
            isolated("ecam_read", || {
                let page = EcamPage::map()?;
                if page.read_id() == u32::MAX {
                    return Err("00:00.0 reads all-ones through ECAM".into());
                }
                Ok(time(n, batches, "ecam_read", || {
                    std::hint::black_box(page.read_id());
                }))
            }),
        ),
        (
            "kernel_cf8_read",
            isolated("kernel_cf8_read", || sysfs_read(n, batches, 0)),
        ),
        (
            "kernel_ecam_read",
            isolated("kernel_ecam_read", || sysfs_read(n, batches, 0x100)),
        ),
        (
            "ecam_write",
            isolated("ecam_write", || {
                let page = EcamPage::map()?;
                let id = page.read_id();
                Ok(time(n, batches, "ecam_write", || page.write_id(id)))
            }),
        ),
        (
            "virtio_notify",
            isolated("virtio_notify", || {
                let (_bar, reg, queue) = virtio_doorbell()?;
                Ok(time(n, batches, "virtio_notify", || {
                    // SAFETY: `reg` lies in the BAR `_bar` keeps mapped; a
                    // notification with nothing new available changes nothing.
                    unsafe { reg.write_volatile(queue) }
                }))
            }),
        ),
    ];

    let line: Vec<String> = figures
        .iter()
        .map(|(name, v)| match v {
            Ok(ns) => format!("{name}_ns={ns}"),
            Err(_) => format!("{name}_ns=-"),
        })
        .collect();
    println!("exit-probe: {}", line.join(" "));
    let problems: Vec<&String> = figures
        .iter()
        .filter_map(|(_, v)| v.as_ref().err())
        .collect();
    for p in &problems {
        println!("exit-probe: problem: {p}");
    }
    std::process::exit(i32::from(!problems.is_empty()));
}
