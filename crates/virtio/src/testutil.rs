//! A fake guest driver for device tests: guest memory, split queues laid
//! out by `virtio_queue::mock::MockSplitQueue`, chains written into them
//! as a driver would, and a [`Signals`] that records every call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dma::{
    Direction, Dma, DmaError, FunctionContext, FunctionDma, GuestDma, HostRange, RequesterId,
};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::device::{Activation, Memory, QueueSetup, Signals};

/// Guest RAM size in tests.
pub const MEM_SIZE: u64 = 0x100_0000;
/// Where data buffers are allocated.
pub const DATA: u64 = 0x40_0000;
/// An address past guest RAM.
pub const OUTSIDE: u64 = 0x4000_0000;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// Where the fake IOMMU places guest RAM in bus address space: a device
/// that used a guest-physical address without translating it would fault.
pub const IOVA_OFFSET: u64 = 0x40_0000_0000;
/// The requester ID of the function the fake IOMMU serves (03:02.0).
pub const TEST_RID: RequesterId = RequesterId(0x0310);

/// An IOMMU for one function: bus address = guest-physical address +
/// [`IOVA_OFFSET`]; anything below the offset is a translation fault.
/// Records the requester ID and bus address of every access, as the
/// function's context gives them.
#[derive(Debug)]
pub struct FakeIommu {
    ctx: Arc<FunctionContext>,
    ram: GuestDma,
    log: Mutex<Vec<(RequesterId, u64)>>,
}

impl FakeIommu {
    /// The IOMMU of the function `ctx` describes, over `mem`.
    pub fn new(ctx: Arc<FunctionContext>, mem: Arc<GuestMemoryMmap>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            ram: GuestDma::new(mem),
            log: Mutex::new(Vec::new()),
        })
    }

    fn map(&self, addr: u64) -> Result<u64, DmaError> {
        let requester = self.ctx.requester();
        self.log.lock().unwrap().push((requester, addr));
        addr.checked_sub(IOVA_OFFSET)
            .ok_or(DmaError::TranslationFault { addr, requester })
    }

    /// Every access so far: (requester ID, bus address).
    pub fn accesses(&self) -> Vec<(RequesterId, u64)> {
        self.log.lock().unwrap().clone()
    }

    /// Whether some access started inside `iova..iova + len`.
    pub fn touched(&self, iova: u64, len: u64) -> bool {
        self.accesses()
            .iter()
            .any(|&(_, a)| (iova..iova + len).contains(&a))
    }
}

impl Dma for FakeIommu {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.ram.read(self.map(addr)?, buf)
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.ram.write(self.map(addr)?, buf)
    }

    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        self.ram.host_ranges(self.map(addr)?, len, dir, out)
    }

    fn translate(&self, addr: u64, len: u64, dir: Direction) -> Result<HostRange<'_>, DmaError> {
        self.ram.translate(self.map(addr)?, len, dir)
    }
}

/// Records what the device signalled.
#[derive(Debug, Default)]
pub struct FakeSignals {
    pub used: Mutex<Vec<u16>>,
    pub config_changed: AtomicUsize,
    pub needs_reset: AtomicUsize,
}

impl FakeSignals {
    pub fn used_calls(&self) -> Vec<u16> {
        self.used.lock().unwrap().clone()
    }

    /// Waits until at least `n` interrupts were sent (the worker signals
    /// just after it fills the used ring); panics after 5 s.
    pub fn wait_used_calls(&self, n: usize) -> Vec<u16> {
        let start = Instant::now();
        loop {
            let calls = self.used_calls();
            if calls.len() >= n {
                return calls;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{calls:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn resets(&self) -> usize {
        self.needs_reset.load(Ordering::SeqCst)
    }
}

impl Signals for FakeSignals {
    fn used(&self, queue: u16) {
        self.used.lock().unwrap().push(queue);
    }

    fn config_changed(&self) {
        self.config_changed.fetch_add(1, Ordering::SeqCst);
    }

    fn needs_reset(&self) {
        self.needs_reset.fetch_add(1, Ordering::SeqCst);
    }
}

/// Guest RAM as the fake driver writes it (the device reaches it through
/// a `Dma` and [`Memory`] over it).
pub fn memory() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap())
}

/// One descriptor as the test writes it: address, length, device-writable.
pub type Desc = (u64, u32, bool);

/// The driver side of one split queue.
#[derive(Debug)]
pub struct FakeQueue {
    pub mem: Arc<GuestMemoryMmap>,
    pub size: u16,
    pub desc_table: u64,
    pub avail: u64,
    pub used: u64,
    /// Added to every address the device is given (rings, descriptors):
    /// 0, or [`IOVA_OFFSET`] behind the fake IOMMU.
    pub iova: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl FakeQueue {
    /// Queue `index` of a device: its rings at `index * 0x10000`, the
    /// device given bus addresses `iova` above the guest-physical ones.
    pub fn with_iova(
        mem: &Arc<GuestMemoryMmap>,
        index: u16,
        size: u16,
        iova: u64,
    ) -> (Self, Queue) {
        let mock = MockSplitQueue::create(&**mem, GuestAddress(u64::from(index) * 0x1_0000), size);
        let mut queue: Queue = mock.create_queue().unwrap();
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = split(mock.desc_table_addr().0 + iova);
        queue.set_desc_table_address(lo, hi);
        let (lo, hi) = split(mock.avail_addr().0 + iova);
        queue.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(mock.used_addr().0 + iova);
        queue.set_used_ring_address(lo, hi);
        let fq = Self {
            mem: mem.clone(),
            size,
            desc_table: mock.desc_table_addr().0,
            avail: mock.avail_addr().0,
            used: mock.used_addr().0,
            iova,
            next_desc: 0,
            avail_idx: 0,
        };
        (fq, queue)
    }

    pub fn write_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let raw = RawDescriptor::from(Descriptor::new(
            addr.wrapping_add(self.iova),
            len,
            flags,
            next,
        ));
        self.mem
            .write_obj(raw, GuestAddress(self.desc_table + 16 * u64::from(index)))
            .unwrap();
    }

    /// Makes the chain starting at descriptor `head` available.
    pub fn publish(&mut self, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Writes `descs` as a linked chain and makes it available; returns
    /// the head index.
    pub fn add_chain(&mut self, descs: &[Desc]) -> u16 {
        let n = descs.len() as u16;
        let head = self.next_desc;
        for (k, &(addr, len, writable)) in descs.iter().enumerate() {
            let idx = (head + k as u16) % self.size;
            let mut flags = if writable { F_WRITE } else { 0 };
            if (k as u16) + 1 < n {
                flags |= F_NEXT;
            }
            self.write_desc(idx, addr, len, flags, (idx + 1) % self.size);
        }
        self.next_desc = (head + n) % self.size;
        self.publish(head);
        head
    }

    /// Writes `descs` as an indirect table at `table` and makes a chain
    /// of one indirect descriptor available.
    pub fn add_indirect_chain(&mut self, table: u64, descs: &[Desc]) -> u16 {
        for (k, &(addr, len, writable)) in descs.iter().enumerate() {
            let mut flags = if writable { F_WRITE } else { 0 };
            if k + 1 < descs.len() {
                flags |= F_NEXT;
            }
            let raw =
                RawDescriptor::from(Descriptor::new(addr + self.iova, len, flags, k as u16 + 1));
            self.mem
                .write_obj(raw, GuestAddress(table + 16 * k as u64))
                .unwrap();
        }
        let head = self.next_desc;
        self.write_desc(head, table, 16 * descs.len() as u32, F_INDIRECT, 0);
        self.next_desc = (head + 1) % self.size;
        self.publish(head);
        head
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// The used element `n`: (descriptor id, length).
    pub fn used_elem(&self, n: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(n % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (id, len)
    }

    /// Sets `used_event` (event index: interrupt when used idx passes it).
    pub fn set_used_event(&self, v: u16) {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        self.mem.write_obj(v, GuestAddress(at)).unwrap();
    }

    /// Waits until the used index reaches `n`; panics after 5 s.
    pub fn wait_used(&self, n: u16) {
        let start = Instant::now();
        while self.used_idx() != n {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "used idx stuck at {} (want {n})",
                self.used_idx()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
        b
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }
}

/// The driver: memory, queues, notification eventfds, signals.
#[derive(Debug)]
pub struct FakeDriver {
    pub queues: Vec<FakeQueue>,
    pub notify: Vec<EventFd>,
    pub signals: Arc<FakeSignals>,
}

impl FakeDriver {
    /// `sizes.len()` queues; returns the driver and the activation to
    /// hand to the device.
    pub fn new(sizes: &[u16], features: u64, event_idx: bool) -> (Self, Activation) {
        let mem = memory();
        let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(mem.clone()));
        Self::build(mem, dma, 0, sizes, features, event_idx)
    }

    /// As [`FakeDriver::new`], with the device behind a [`FakeIommu`] for
    /// a function at [`TEST_RID`] with Bus Master Enable on, through that
    /// function's [`FunctionDma`]: every address it is given is a bus
    /// address [`IOVA_OFFSET`] above guest-physical.
    pub fn translated(
        sizes: &[u16],
        features: u64,
        event_idx: bool,
    ) -> (Self, Activation, Arc<FakeIommu>) {
        let mem = memory();
        let ctx = FunctionContext::new(TEST_RID);
        ctx.set_bus_master(true);
        let iommu = FakeIommu::new(ctx.clone(), mem.clone());
        let dma: Arc<dyn Dma> = Arc::new(FunctionDma::new(ctx, iommu.clone()));
        let (drv, act) = Self::build(mem, dma, IOVA_OFFSET, sizes, features, event_idx);
        (drv, act, iommu)
    }

    /// As [`FakeDriver::new`], the device's DMA through a function
    /// context whose Bus Master Enable is off (a driver that never set it).
    pub fn bus_master_off(sizes: &[u16], features: u64) -> (Self, Activation) {
        let mem = memory();
        let ctx = FunctionContext::new(TEST_RID);
        let dma: Arc<dyn Dma> =
            Arc::new(FunctionDma::new(ctx, Arc::new(GuestDma::new(mem.clone()))));
        Self::build(mem, dma, 0, sizes, features, false)
    }

    fn build(
        mem: Arc<GuestMemoryMmap>,
        dma: Arc<dyn Dma>,
        iova: u64,
        sizes: &[u16],
        features: u64,
        event_idx: bool,
    ) -> (Self, Activation) {
        let signals = Arc::new(FakeSignals::default());
        let mut queues = Vec::new();
        let mut notify = Vec::new();
        let mut setups = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let (fq, mut q) = FakeQueue::with_iova(&mem, i as u16, size, iova);
            q.set_event_idx(event_idx);
            let fd = EventFd::new(EFD_NONBLOCK).unwrap();
            notify.push(fd.try_clone().unwrap());
            queues.push(fq);
            setups.push(QueueSetup {
                index: i as u16,
                queue: q,
                notify: fd,
            });
        }
        let act = Activation {
            features,
            memory: Arc::new(Memory::new(dma.clone())),
            dma,
            queues: setups,
            signals: signals.clone(),
            counters: Arc::default(),
        };
        (
            Self {
                queues,
                notify,
                signals,
            },
            act,
        )
    }

    pub fn kick(&self, q: usize) {
        self.notify[q].write(1).unwrap();
    }
}
