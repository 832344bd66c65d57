//! `vfio-nvme`: a user-space NVMe driver that runs inside an iovm guest
//! booted with `--device intel-iommu` and `intel_iommu=on iommu.strict=1`,
//! to show a device handed to an untrusted driver through VFIO and the
//! emulated VT-d: the driver reaches only what it mapped.
//!
//! Steps (each prints `key=value` facts; the first unexpected result ends
//! the run with one `vfio-nvme: error: <step>: <why>` line and exit status 1):
//! 1. find the NVMe controller by class 01/08 in sysfs, load `vfio-pci` and
//!    `vfio_iommu_type1` if needed, move the controller from its driver to
//!    `vfio-pci` (`driver_override`, unbind, `drivers_probe`);
//! 2. open the container (API version, Type1v2), the group (viable), attach
//!    it, select Type1v2, read the usable IOVA ranges;
//! 3. map anonymous pages (admin and I/O queues, Identify and data buffers)
//!    with `VFIO_IOMMU_MAP_DMA` at I/O virtual addresses from 4 GiB up,
//!    none equal to its page's guest-physical address;
//! 4. map BAR0, turn on bus mastering, reset and enable the controller,
//!    Identify Controller and Namespace 1;
//! 5. enable MSI-X through `VFIO_DEVICE_SET_IRQS` with an eventfd per vector,
//!    create an I/O queue pair on vector 1, write a pattern to two pages'
//!    worth of blocks and read it back, each completion announced by its
//!    interrupt;
//! 6. unmap the data buffer and read again: the controller must complete
//!    with Data Transfer Error and leave the buffer alone (the guest kernel
//!    logs the DMAR fault); map it again and read once more;
//! 7. delete the queues, disable the controller, and give the function back
//!    to the kernel's driver.
//!
//! Usage: `vfio-nvme [--bdf 0000:00:03.0] [--allow-unsafe-interrupts]
//! [--lba N] [--nsid N] [--pattern-out FILE] [--keep-bound]`.
//! `--nsid` picks the namespace written and read (default 1; an SR-IOV
//! VF's private namespace has an NSID of its own in the PF's subsystem).
//! `--allow-unsafe-interrupts` sets vfio_iommu_type1's parameter of that
//! name, which it needs while the IOMMU has no interrupt remapping.
//! `--pattern-out` writes the pattern the run left at `--lba`, to compare
//! with what the kernel's driver reads there afterwards.

mod controller;
mod dma;
mod nvme;
mod sysfs;
mod vfio;

use std::mem::ManuallyDrop;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use controller::{wait_interrupt, wait_ready, Bar, DmaBuffer, IrqEvent, QueuePair};
use dma::{guest_physical, IovaAllocator, Pages, IOVA_BASE};
use nvme::{Cap, IdentifyController, IdentifyNamespace, Sqe, PAGE};
use vfio::{Container, Group, IovaRange, BAR0_REGION, CONFIG_REGION, MSIX_IRQ};

/// How long one command may take (the nested test host is slow).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Entries per queue.
const QUEUE_ENTRIES: u16 = 16;
/// The data buffer: two pages, so the commands carry PRP1 and PRP2.
const DATA_PAGES: usize = 2;
/// The seed of the written pattern.
const PATTERN_SEED: u32 = 0x5eed_f10d;
/// Byte the data buffer holds before a read that must not reach it.
const UNTOUCHED: u8 = 0xee;
/// The MSI-X vector of the I/O queue pair.
const IO_VECTOR: u16 = 1;

/// Command-line options.
#[derive(Debug, Default)]
struct Options {
    bdf: Option<String>,
    allow_unsafe_interrupts: bool,
    lba: u64,
    nsid: u32,
    pattern_out: Option<String>,
    keep_bound: bool,
}

/// Parses the command line (without the program name).
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        lba: 2048,
        nsid: 1,
        ..Options::default()
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--bdf" => o.bdf = Some(value("--bdf")?),
            "--allow-unsafe-interrupts" => o.allow_unsafe_interrupts = true,
            "--lba" => {
                let v = value("--lba")?;
                o.lba = v
                    .parse()
                    .map_err(|_| format!("--lba {v:?} is not a number"))?;
            }
            "--nsid" => {
                let v = value("--nsid")?;
                o.nsid = v
                    .parse()
                    .ok()
                    .filter(|&n| n != 0 && n != u32::MAX)
                    .ok_or_else(|| format!("--nsid {v:?} is not a namespace ID"))?;
            }
            "--pattern-out" => o.pattern_out = Some(value("--pattern-out")?),
            "--keep-bound" => o.keep_bound = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// Prints one fact.
fn fact(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

/// A value with its spaces made underscores, so that a fact stays one word.
fn word(s: &str) -> String {
    s.replace(char::is_whitespace, "_")
}

/// Names the step an error came from.
fn step<T>(name: &'static str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| format!("{name}: {e}"))
}

/// True if `iova..iova+len` lies inside one of `ranges` (or there are none to check).
fn inside(ranges: &[IovaRange], iova: u64, len: u64) -> bool {
    ranges.is_empty()
        || ranges
            .iter()
            .any(|r| iova >= r.start && iova.saturating_add(len - 1) <= r.end)
}

/// Runs `modprobe name` unless `present` exists.
fn load_module(name: &str, present: &str) -> Result<(), String> {
    if Path::new(present).exists() {
        return Ok(());
    }
    let status = Command::new("modprobe")
        .arg(name)
        .status()
        .map_err(|e| format!("running modprobe {name}: {e}"))?;
    if !status.success() || !Path::new(present).exists() {
        return Err(format!(
            "modprobe {name} failed ({status}) or did not create {present}"
        ));
    }
    Ok(())
}

/// The NVMe function to drive: `--bdf`, else the first of class 01/08.
fn pick_device(o: &Options) -> Result<String, String> {
    let sys = Path::new(sysfs::SYSFS);
    let all = sysfs::nvme_functions(sys)?;
    match &o.bdf {
        Some(b) if all.contains(b) => Ok(b.clone()),
        Some(b) => Err(format!("{b} is not an NVMe function (found: {all:?})")),
        None => all
            .into_iter()
            .next()
            .ok_or_else(|| "no PCI function of class 01/08 (NVMe)".to_string()),
    }
}

/// Maps fresh pages at the next IOVAs and prints where they are.
fn dma_buffer(
    c: &Container,
    iovas: &mut IovaAllocator,
    ranges: &[IovaRange],
    name: &str,
    pages: usize,
) -> Result<DmaBuffer, String> {
    let mem = Pages::new(pages)?;
    let iova = iovas.take(pages as u64);
    let len = mem.len() as u64;
    if !inside(ranges, iova, len) {
        return Err(format!(
            "IOVA {iova:#x}+{len:#x} is outside the usable ranges {ranges:?}"
        ));
    }
    let gpa = guest_physical(mem.addr())?;
    if gpa == iova {
        return Err(format!(
            "{name}: IOVA {iova:#x} equals its guest-physical address"
        ));
    }
    // SAFETY: `mem` is this process's own memory, which the buffer never
    // gives back (ManuallyDrop) while the process lives.
    unsafe { c.map_dma(mem.addr(), iova, len)? };
    fact(&format!("iova_{name}"), format_args!("{iova:#x}"));
    fact(&format!("gpa_{name}"), format_args!("{gpa:#x}"));
    Ok(DmaBuffer {
        pages: ManuallyDrop::new(mem),
        iova,
    })
}

/// Runs one admin command and checks that it succeeded.
fn admin(q: &mut QueuePair, bar: &Bar, cap: &Cap, mut sqe: Sqe, what: &str) -> Result<(), String> {
    let cid = q.cid();
    sqe.set_dword(0, (sqe.dword(0) & 0xffff) | u32::from(cid) << 16);
    q.submit(bar, cap, &sqe)?;
    let c = q.wait(bar, cap, cid, COMMAND_TIMEOUT)?;
    if !c.ok() {
        return Err(format!("{what} failed with status {:#06x}", c.status));
    }
    Ok(())
}

/// Everything the run holds open, in the order it must be released: the
/// device and its BAR before the memory the device could still reach.
struct Session<'a> {
    bar: Bar<'a>,
    cap: Cap,
    admin: QueuePair,
}

/// The whole run, up to giving the device back.
fn run(o: &Options, bdf: &str) -> Result<(), String> {
    let sys = Path::new(sysfs::SYSFS);

    step(
        "modules",
        load_module("vfio-pci", "/sys/bus/pci/drivers/vfio-pci"),
    )?;
    step(
        "modules",
        load_module("vfio_iommu_type1", "/sys/module/vfio_iommu_type1"),
    )?;
    match sysfs::interrupt_remapping(sys, "dmar0") {
        Ok(ir) => fact("interrupt_remapping", u8::from(ir)),
        Err(e) => {
            return Err(format!(
                "dmar0: {e} (is the guest booted with intel_iommu=on?)"
            ))
        }
    }
    if o.allow_unsafe_interrupts {
        step(
            "allow_unsafe_interrupts",
            std::fs::write(
                "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
                "1",
            )
            .map_err(|e| e.to_string()),
        )?;
    }
    fact(
        "allow_unsafe_interrupts",
        u8::from(o.allow_unsafe_interrupts),
    );

    let before = step("bind", sysfs::rebind(sys, bdf, "vfio-pci"))?;
    fact("driver_before", before.as_deref().unwrap_or("none"));
    fact("driver", "vfio-pci");

    let group_no = step("group", sysfs::iommu_group(sys, bdf))?;
    let members = step("group", sysfs::group_members(sys, group_no))?;
    fact("iommu_group", group_no);
    fact("group_devices", members.len());

    let container = step("container", Container::open())?;
    fact("vfio_api", vfio::API_VERSION);
    let group = step(
        "group",
        Group::open(group_no, &container, Duration::from_secs(5)),
    )?;
    step("set_iommu", container.set_iommu())?;
    fact("iommu", "type1v2");
    let info = step("iommu_info", container.iommu_info())?;
    let ranges: Vec<String> = info
        .ranges
        .iter()
        .map(|r| format!("{:#x}-{:#x}", r.start, r.end))
        .collect();
    fact("iova_ranges", ranges.join(","));
    fact("iova_page_sizes", format_args!("{:#x}", info.page_sizes));

    let device = step("device", group.device(bdf))?;
    if device.regions <= CONFIG_REGION || device.irqs <= MSIX_IRQ {
        return Err(format!(
            "device: {} regions and {} interrupt indexes, not a vfio-pci device",
            device.regions, device.irqs
        ));
    }
    let bar0 = step("bar0", device.region(BAR0_REGION))?;
    let config = step("config", device.region(CONFIG_REGION))?;
    fact("bar0_size", format_args!("{:#x}", bar0.size));

    // Memory space and bus mastering: vfio-pci enables the first, the
    // driver owns the second.
    let mut cmd = [0u8; 2];
    step("config", device.read_region(&config, 4, &mut cmd))?;
    let cmd = u16::from_le_bytes(cmd) | 0b110;
    step(
        "config",
        device.write_region(&config, 4, &cmd.to_le_bytes()),
    )?;

    let mut iovas = IovaAllocator::new(IOVA_BASE);
    let r = &info.ranges;
    let c = &container;
    let asq = step("dma", dma_buffer(c, &mut iovas, r, "asq", 1))?;
    let acq = step("dma", dma_buffer(c, &mut iovas, r, "acq", 1))?;
    let iosq = step("dma", dma_buffer(c, &mut iovas, r, "iosq", 1))?;
    let iocq = step("dma", dma_buffer(c, &mut iovas, r, "iocq", 1))?;
    let ident = step("dma", dma_buffer(c, &mut iovas, r, "identify", 1))?;
    let data = step("dma", dma_buffer(c, &mut iovas, r, "data", DATA_PAGES))?;
    fact("iova_ne_gpa", 1);

    let bar = step("bar0", Bar::open(&device, bar0))?;
    fact("bar0_mmap", u8::from(bar.mapped()));
    let cap = Cap::parse(step("cap", bar.read64(nvme::REG_CAP))?);
    if cap.mps_min > PAGE {
        return Err(format!("controller needs pages of {} bytes", cap.mps_min));
    }
    let vs = step("cap", bar.read32(nvme::REG_VS))?;
    fact(
        "nvme_version",
        format_args!("{}.{}.{}", vs >> 16, (vs >> 8) & 0xff, vs & 0xff),
    );
    let ready_timeout = Duration::from_millis(cap.timeout_ms.max(5000));
    step("reset", bar.write32(nvme::REG_CC, nvme::cc(false)))?;
    step("reset", wait_ready(&bar, false, ready_timeout))?;
    step(
        "enable",
        bar.write32(nvme::REG_AQA, nvme::aqa(QUEUE_ENTRIES)),
    )?;
    step("enable", bar.write64(nvme::REG_ASQ, asq.iova))?;
    step("enable", bar.write64(nvme::REG_ACQ, acq.iova))?;
    step("enable", bar.write32(nvme::REG_CC, nvme::cc(true)))?;
    step("enable", wait_ready(&bar, true, ready_timeout))?;
    fact("controller_ready", 1);

    let mut s = Session {
        bar,
        cap,
        admin: QueuePair::new(0, QUEUE_ENTRIES, asq, acq),
    };
    let result = drive(&mut s, &device, &container, &ident, &data, iosq, iocq, o);
    // Leave the controller disabled whatever happened, so that nothing it
    // still holds reaches memory that is about to be unmapped.
    let _ = s.bar.write32(nvme::REG_CC, nvme::cc(false));
    let _ = wait_ready(&s.bar, false, ready_timeout);
    let _ = device.disable_msix();
    result
}

/// Identify, MSI-X, the I/O queue pair, the read/write check, the fault and
/// the recovery, then the queues' deletion.
#[allow(clippy::too_many_arguments)]
fn drive(
    s: &mut Session,
    device: &vfio::Device,
    container: &Container,
    ident: &DmaBuffer,
    data: &DmaBuffer,
    iosq: DmaBuffer,
    iocq: DmaBuffer,
    o: &Options,
) -> Result<(), String> {
    let (bar, cap) = (&s.bar, &s.cap);
    let q = &mut s.admin;
    step(
        "identify",
        admin(
            q,
            bar,
            cap,
            Sqe::identify(0, 1, 0, ident.iova),
            "Identify Controller",
        ),
    )?;
    let mut buf = vec![0u8; PAGE as usize];
    ident.pages.read(0, &mut buf);
    let id = step("identify", IdentifyController::parse(&buf))?;
    fact("identify_vid", format_args!("{:#06x}", id.vid));
    fact("identify_serial", word(&id.serial));
    fact("identify_model", word(&id.model));
    fact("identify_firmware", word(&id.firmware));
    fact("identify_namespaces", id.nn);
    ident.pages.fill(0);
    step(
        "identify",
        admin(
            q,
            bar,
            cap,
            Sqe::identify(0, 0, o.nsid, ident.iova),
            "Identify Namespace",
        ),
    )?;
    ident.pages.read(0, &mut buf);
    let ns = step("identify", IdentifyNamespace::parse(&buf))?;
    fact("ns_blocks", ns.blocks);
    fact("lba_bytes", ns.block_size);

    let vectors = step("msix", device.irq_count(MSIX_IRQ))?;
    fact("msix_vectors", vectors);
    if vectors <= u32::from(IO_VECTOR) {
        return Err(format!("msix: the device has {vectors} MSI-X vectors"));
    }
    let admin_irq = step("msix", IrqEvent::new())?;
    let mut io_irq = step("msix", IrqEvent::new())?;
    step("msix", device.enable_msix(&[admin_irq.raw(), io_irq.raw()]))?;

    let (sq_iova, cq_iova) = (iosq.iova, iocq.iova);
    let cq = Sqe::create_cq(0, 1, QUEUE_ENTRIES, cq_iova, IO_VECTOR);
    step("io_queue", admin(q, bar, cap, cq, "Create I/O CQ"))?;
    let sq = Sqe::create_sq(0, 1, QUEUE_ENTRIES, sq_iova, 1);
    step("io_queue", admin(q, bar, cap, sq, "Create I/O SQ"))?;
    fact("io_queue", 1);
    let mut io = QueuePair::new(1, QUEUE_ENTRIES, iosq, iocq);

    let len = data.pages.len() as u64;
    let blocks = len / u64::from(ns.block_size);
    if blocks == 0 || o.lba + blocks > ns.blocks {
        return Err(format!(
            "rw: {blocks} blocks at LBA {} do not fit the namespace",
            o.lba
        ));
    }
    let blocks = u16::try_from(blocks).map_err(|_| "rw: too many blocks")?;
    let prp = step("rw", nvme::prp_for(data.iova, len))?;
    let pattern = nvme::pattern(len as usize, PATTERN_SEED);
    let mut io_cmd = |write: bool, irq: &mut IrqEvent| -> Result<nvme::Cqe, String> {
        let cid = io.cid();
        let sqe = Sqe::read_write(write, cid, o.nsid, o.lba, blocks, prp);
        io.submit(bar, cap, &sqe)?;
        wait_interrupt(&mut io, bar, cap, irq, cid, COMMAND_TIMEOUT)
    };

    data.pages.write(0, &pattern);
    let c = step("write", io_cmd(true, &mut io_irq))?;
    if !c.ok() {
        return Err(format!("write: status {:#06x}", c.status));
    }
    data.pages.fill(0);
    let c = step("read", io_cmd(false, &mut io_irq))?;
    if !c.ok() {
        return Err(format!("read: status {:#06x}", c.status));
    }
    let mut back = vec![0u8; len as usize];
    data.pages.read(0, &mut back);
    if back != pattern {
        let at = back
            .iter()
            .zip(&pattern)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "read: the data differs from what was written at byte {at}"
        ));
    }
    fact("lba", o.lba);
    fact("rw_bytes", len);
    fact("rw_ok", 1);
    if let Some(path) = &o.pattern_out {
        step(
            "pattern_out",
            std::fs::write(path, &pattern).map_err(|e| format!("{path}: {e}")),
        )?;
    }

    // The negative case: the device loses its mapping of the data buffer.
    data.pages.fill(UNTOUCHED);
    let unmapped = step("unmap", container.unmap_dma(data.iova, len))?;
    if unmapped != len {
        return Err(format!("unmap: {unmapped} bytes unmapped, not {len}"));
    }
    fact("unmapped_iova", format_args!("{:#x}", data.iova));
    let c = step("fault", io_cmd(false, &mut io_irq))?;
    fact("fault_status", format_args!("{:#06x}", c.status));
    fact("fault_sct", c.sct());
    fact("fault_sc", format_args!("{:#04x}", c.sc()));
    fact("fault_dnr", u8::from(c.dnr()));
    data.pages.read(0, &mut back);
    let untouched = back.iter().all(|&b| b == UNTOUCHED);
    fact("fault_buffer_untouched", u8::from(untouched));
    if c.ok() {
        return Err("fault: a read into an unmapped IOVA completed successfully".into());
    }
    if c.sc() != nvme::SC_DATA_TRANSFER_ERROR || c.sct() != 0 {
        return Err(format!(
            "fault: status {:#06x}, expected Data Transfer Error (SCT 0, SC 0x04)",
            c.status
        ));
    }
    if !untouched {
        return Err("fault: the unmapped buffer was written".into());
    }

    // The same queue works again once the buffer is mapped again.
    // SAFETY: `data` is this process's own memory, never given back.
    step("remap", unsafe {
        container.map_dma(data.pages.addr(), data.iova, len)
    })?;
    let c = step("recover", io_cmd(false, &mut io_irq))?;
    data.pages.read(0, &mut back);
    if !c.ok() || back != pattern {
        return Err(format!(
            "recover: status {:#06x}, data {}",
            c.status,
            if back == pattern { "intact" } else { "wrong" }
        ));
    }
    fact("recovered", 1);
    fact("msix_irqs", io_irq.count);

    step(
        "teardown",
        admin(q, bar, cap, Sqe::delete_queue(0, true, 1), "Delete I/O SQ"),
    )?;
    step(
        "teardown",
        admin(q, bar, cap, Sqe::delete_queue(0, false, 1), "Delete I/O CQ"),
    )?;
    fact("teardown", 1);
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vfio-nvme: error: usage: {e}");
            return ExitCode::from(2);
        }
    };
    let bdf = match pick_device(&o) {
        Ok(b) => b,
        Err(e) => {
            println!("vfio-nvme: error: find: {e}");
            return ExitCode::FAILURE;
        }
    };
    fact("bdf", &bdf);
    let result = run(&o, &bdf);
    let mut code = ExitCode::SUCCESS;
    if let Err(e) = &result {
        println!("vfio-nvme: error: {e}");
        code = ExitCode::FAILURE;
    }
    if !o.keep_bound {
        match sysfs::release(Path::new(sysfs::SYSFS), &bdf, Duration::from_secs(10)) {
            Ok(d) => fact("driver_after", d.as_deref().unwrap_or("none")),
            Err(e) => {
                println!("vfio-nvme: error: release: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    if result.is_ok() {
        fact("vfio_nvme_ok", 1);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_arguments() {
        let o = parse_args(args(&[])).unwrap();
        assert_eq!(o.lba, 2048);
        assert_eq!(o.nsid, 1);
        assert!(!o.allow_unsafe_interrupts && !o.keep_bound);
        assert_eq!(parse_args(args(&["--nsid", "3"])).unwrap().nsid, 3);
        assert!(parse_args(args(&["--nsid", "0"])).is_err());
        let o = parse_args(args(&[
            "--bdf",
            "0000:00:04.0",
            "--allow-unsafe-interrupts",
            "--lba",
            "77",
            "--pattern-out",
            "/tmp/p",
            "--keep-bound",
        ]))
        .unwrap();
        assert_eq!(o.bdf.as_deref(), Some("0000:00:04.0"));
        assert!(o.allow_unsafe_interrupts && o.keep_bound);
        assert_eq!(o.lba, 77);
        assert_eq!(o.pattern_out.as_deref(), Some("/tmp/p"));
        assert!(parse_args(args(&["--lba"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_args(args(&["--lba", "x"])).is_err());
        assert!(parse_args(args(&["--frob"])).is_err());
    }

    #[test]
    fn test_iovas_are_checked_against_the_usable_ranges() {
        let ranges = [
            IovaRange {
                start: 0,
                end: 0xfedf_ffff,
            },
            IovaRange {
                start: 0xfef0_0000,
                end: 0xffff_ffff_ffff,
            },
        ];
        assert!(inside(&ranges, IOVA_BASE, 0x2000));
        assert!(!inside(&ranges, 0xfee0_0000, 0x1000), "the MSI window");
        assert!(
            !inside(&ranges, 0xfedf_f000, 0x2000),
            "straddles the MSI window"
        );
        assert!(!inside(&ranges, 0xffff_ffff_f000, 0x2000), "past the width");
        assert!(inside(&[], 0xfee0_0000, 0x1000), "nothing to check");
    }

    #[test]
    fn test_words_keep_a_fact_in_one_word() {
        assert_eq!(word("iovm NVMe"), "iovm_NVMe");
        assert_eq!(word("IOVM0001"), "IOVM0001");
    }
}
