//! One PCI function's DMA: who it is on the bus (its requester ID, which an
//! IOMMU keys everything by) and whether it may master the bus at all.
//!
//! The VMM gives every function a [`FunctionContext`] when it builds it and
//! keeps it current: the requester ID follows the bus numbers the guest
//! programs into bridges (and the aliasing a conventional PCI bridge does),
//! Bus Master Enable follows the function's Command register. The device
//! model sees only the [`FunctionDma`] built on it, a [`Dma`] like any other.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use counters::FunctionCounters;

use crate::{Direction, Dma, DmaError, HostRange};

/// A requester ID (PCIe 4.0 §2.2.6.2): bus number, device and function
/// numbers as the transactions of a function carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequesterId(pub u16);

impl RequesterId {
    /// The ID of `bus`:`device`.`function`.
    pub fn new(bus: u8, device: u8, function: u8) -> Self {
        Self(u16::from(bus) << 8 | u16::from(device & 0x1f) << 3 | u16::from(function & 7))
    }

    /// The bus number.
    pub fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device and function number, as one byte (`device << 3 | function`).
    pub fn devfn(self) -> u8 {
        self.0 as u8
    }
}

impl fmt::Display for RequesterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.bus(),
            self.devfn() >> 3,
            self.devfn() & 7
        )
    }
}

/// What the VMM knows of one function on the bus, shared between the VMM
/// (which updates it) and the function's DMA and interrupt handles (which
/// read it on every access).
#[derive(Debug, Default)]
pub struct FunctionContext {
    requester: AtomicU16,
    bus_master: AtomicBool,
    counters: Arc<FunctionCounters>,
}

impl FunctionContext {
    /// A function at `requester`, Bus Master Enable off (as after reset).
    pub fn new(requester: RequesterId) -> Arc<Self> {
        Arc::new(Self {
            requester: AtomicU16::new(requester.0),
            bus_master: AtomicBool::new(false),
            counters: Arc::default(),
        })
    }

    /// The function's I/O counters; its DMA counts itself in them.
    pub fn counters(&self) -> &Arc<FunctionCounters> {
        &self.counters
    }

    /// The requester ID its transactions carry now.
    pub fn requester(&self) -> RequesterId {
        RequesterId(self.requester.load(Ordering::Acquire))
    }

    /// The guest renumbered a bus: the function's transactions carry `id`
    /// from now on.
    pub fn set_requester(&self, id: RequesterId) {
        self.requester.store(id.0, Ordering::Release);
    }

    /// Whether the function may start DMA.
    #[inline]
    pub fn bus_master(&self) -> bool {
        self.bus_master.load(Ordering::Acquire)
    }

    /// The guest set or cleared Bus Master Enable.
    pub fn set_bus_master(&self, on: bool) {
        self.bus_master.store(on, Ordering::Release);
    }
}

/// A function's [`Dma`]: refused while Bus Master Enable is off, otherwise
/// passed to `target`, the machine's view of memory for this function
/// (guest RAM directly, or an IOMMU's translation for its requester ID).
#[derive(Debug, Clone)]
pub struct FunctionDma {
    ctx: Arc<FunctionContext>,
    target: Arc<dyn Dma>,
}

impl FunctionDma {
    /// DMA of the function `ctx` describes, through `target`.
    pub fn new(ctx: Arc<FunctionContext>, target: Arc<dyn Dma>) -> Self {
        Self { ctx, target }
    }

    /// The function's context.
    pub fn context(&self) -> &Arc<FunctionContext> {
        &self.ctx
    }

    fn check(&self, addr: u64) -> Result<(), DmaError> {
        if self.ctx.bus_master() {
            Ok(())
        } else {
            self.ctx.counters.dma.dma_faults.inc();
            Err(DmaError::BusMasterOff { addr })
        }
    }

    /// Counts `len` bytes moved in `dir` if `result` is a success, a fault
    /// otherwise.
    fn count<T>(
        &self,
        dir: Direction,
        len: u64,
        result: Result<T, DmaError>,
    ) -> Result<T, DmaError> {
        let dma = &self.ctx.counters.dma;
        match (&result, dir) {
            (Err(_), _) => dma.dma_faults.inc(),
            (Ok(_), Direction::ToDevice) => dma.dma_read_bytes.add(len),
            (Ok(_), Direction::FromDevice) => dma.dma_write_bytes.add(len),
        }
        result
    }
}

impl Dma for FunctionDma {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.check(addr)?;
        let len = buf.len() as u64;
        let r = self.target.read(addr, buf);
        self.count(Direction::ToDevice, len, r)
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.check(addr)?;
        self.count(
            Direction::FromDevice,
            buf.len() as u64,
            self.target.write(addr, buf),
        )
    }

    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        self.check(addr)?;
        self.count(dir, len, self.target.host_ranges(addr, len, dir, out))
    }

    fn translate(&self, addr: u64, len: u64, dir: Direction) -> Result<HostRange<'_>, DmaError> {
        self.check(addr)?;
        let r = self.target.translate(addr, len, dir);
        let moved = r.as_ref().map_or(0, |h| (h.len() as u64).min(len));
        self.count(dir, moved, r)
    }

    fn direct(&self) -> Option<crate::Direct> {
        let d = self.target.direct()?;
        // One gate only: a target with a gate of its own translates.
        d.gate.is_none().then(|| crate::Direct {
            ram: d.ram,
            gate: Some(self.ctx.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::GuestDma;

    fn dma() -> (Arc<FunctionContext>, FunctionDma) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let ctx = FunctionContext::new(RequesterId::new(1, 2, 3));
        let dma = FunctionDma::new(ctx.clone(), Arc::new(GuestDma::new(Arc::new(mem))));
        (ctx, dma)
    }

    #[test]
    fn test_requester_id_packs_bus_device_function() {
        let id = RequesterId::new(0x12, 0x1f, 7);
        assert_eq!(id.0, 0x12ff);
        assert_eq!((id.bus(), id.devfn()), (0x12, 0xff));
        assert_eq!(id.to_string(), "12:1f.7");
        assert_eq!(RequesterId::new(3, 0x20, 8), RequesterId::new(3, 0, 0));
    }

    #[test]
    fn test_dma_counts_bytes_each_way_and_faults() {
        let (ctx, dma) = dma();
        let mut buf = [0u8; 16];
        dma.read(0x100, &mut buf).unwrap_err();
        ctx.set_bus_master(true);
        dma.write(0x100, &buf).unwrap();
        dma.read(0x100, &mut buf[..8]).unwrap();
        let mut ranges = Vec::new();
        dma.host_ranges(0x200, 64, Direction::FromDevice, &mut ranges)
            .unwrap();
        dma.translate(0x300, 32, Direction::ToDevice).unwrap();
        dma.read(0xfff8, &mut buf).unwrap_err();

        let c = &ctx.counters().dma;
        assert_eq!(c.dma_write_bytes.get(), 16 + 64);
        assert_eq!(c.dma_read_bytes.get(), 8 + 32);
        assert_eq!(c.dma_faults.get(), 2, "bus master off, then outside RAM");
    }

    #[test]
    fn test_no_dma_of_any_kind_while_bus_master_is_off() {
        let (ctx, dma) = dma();
        let mut buf = [0u8; 4];
        let off = Err(DmaError::BusMasterOff { addr: 0x100 });
        assert_eq!(dma.read(0x100, &mut buf), off);
        assert_eq!(dma.write(0x100, &buf), off);
        let mut ranges = Vec::new();
        assert_eq!(
            dma.host_ranges(0x100, 4, Direction::ToDevice, &mut ranges),
            off
        );
        assert!(ranges.is_empty());
        assert_eq!(
            dma.translate(0x100, 4, Direction::FromDevice).map(|_| ()),
            off
        );

        ctx.set_bus_master(true);
        dma.write(0x100, &[1, 2, 3, 4]).unwrap();
        dma.read(0x100, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        ctx.set_bus_master(false);
        assert_eq!(dma.read(0x100, &mut buf), off, "off again");
    }

    #[test]
    fn test_requester_id_changes_are_seen_by_the_handle() {
        let (ctx, dma) = dma();
        assert_eq!(dma.context().requester(), RequesterId::new(1, 2, 3));
        ctx.set_requester(RequesterId::new(5, 2, 3));
        assert_eq!(dma.context().requester(), RequesterId::new(5, 2, 3));
    }
}
