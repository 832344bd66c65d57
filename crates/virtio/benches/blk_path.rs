//! The virtio-blk device path without a VM: a synthetic guest driver
//! activates a [`Block`] on the file directly through
//! [`VirtioDevice::activate`] (what the transport does at `DRIVER_OK`)
//! with one split queue, its descriptors written with `virtio_queue::mock`,
//! and keeps `--depth` 4 KiB reads or writes (random 4 KiB-aligned
//! sectors) in the avail ring, as Linux's `virtio_blk` would with `VIRTIO_RING_F_EVENT_IDX`
//! and `VIRTIO_BLK_F_FLUSH` negotiated (but direct descriptor chains, no
//! indirect tables):
//!
//! ```text
//!  slot s: descriptors 3s ─▶ 3s+1 ─▶ 3s+2
//!          header (16 B, read) │ data (4 KiB) │ status (1 B, write)
//!  queue():  header, data descriptor, status 0xff, avail ring entry
//!  notify(): avail idx, fence, kick the notify eventfd only if
//!            avail_event says the device waits for it
//!  reap():   used idx, each used entry's status; then used_event: the
//!            next completion (--reap irq) or half a ring ahead (poll)
//! ```
//!
//! The device serves the queue on its worker thread (`virtio-blk`) with
//! the io_uring backend, as in iovm; its interrupts reach a counting
//! [`Signals`].
//!
//! ```text
//! cargo bench -p virtio --bench blk_path -- --file PATH --seconds 10 \
//!     --depth 32 --rw randread --json OUT
//! ```

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use benchkit::{Args, DevicePath, Interrupts, Parser, Reap, Rw, IO_SIZE};
use dma::{Dma, FunctionContext, FunctionDma, GuestDma, RequesterId};
use virtio::blk::{Block, BlockConfig, SECTOR_SIZE, T_IN, T_OUT};
use virtio::features::{F_RING_EVENT_IDX, F_VERSION_1};
use virtio::{Activation, Memory, QueueSetup, Signals, VirtioDevice};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::DescriptorTable;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest RAM.
const RAM: u64 = 64 << 20;
/// The queue's descriptor table, then its avail ring, then its used ring
/// on the next 64-byte boundary (Linux's virtio-pci layout).
const RING: u64 = 0x10_0000;
const USED_ALIGN: u64 = 64;
/// Request headers: slot `s` at `HEADERS + s * SLOT_META`, its status
/// byte `STATUS_AT` further.
const HEADERS: u64 = 0x80_0000;
const SLOT_META: u64 = 32;
const STATUS_AT: u64 = 16;
/// Data buffers: slot `s` at `DATA + s * 4 KiB`.
const DATA: u64 = 0x100_0000;
/// Descriptors per request.
const DESCS: u16 = 3;
/// Smallest queue size used.
const MIN_QUEUE: u16 = 64;

/// `VIRTQ_DESC_F_NEXT`, `VIRTQ_DESC_F_WRITE` (virtio 1.2 §2.7.5).
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
/// The status byte before the device writes it.
const STATUS_UNSET: u8 = 0xff;
/// `used_event` this far past the last used entry seen: no interrupt.
const NO_INTERRUPT: u16 = 0x8000;

/// The transport's interrupts: counts each `used` signal.
#[derive(Debug)]
struct CountingSignals(Arc<Interrupts>);

impl Signals for CountingSignals {
    fn used(&self, _queue: u16) {
        self.0.send();
    }

    fn config_changed(&self) {}

    fn needs_reset(&self) {
        eprintln!("virtio-blk: the device asks for a reset");
    }
}

/// `vring_need_event` (virtio 1.2 §2.7.10): whether moving an index from
/// `old` to `new` passes `event`.
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

fn header_addr(slot: u16) -> u64 {
    HEADERS + u64::from(slot) * SLOT_META
}

fn status_addr(slot: u16) -> u64 {
    header_addr(slot) + STATUS_AT
}

fn data_addr(slot: u16) -> u64 {
    DATA + u64::from(slot) * IO_SIZE
}

fn descriptor(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// The synthetic guest driver of one virtio-blk device with one queue.
struct BlkDriver {
    device: Block,
    mem: Arc<GuestMemoryMmap>,
    notify: EventFd,
    reap_mode: Reap,
    size: u16,
    desc_table: u64,
    avail: u64,
    used: u64,
    /// The avail index including queued, unpublished requests.
    avail_idx: Wrapping<u16>,
    /// The avail index the device was last shown.
    published: Wrapping<u16>,
    /// The used index up to which completions were taken.
    last_used: Wrapping<u16>,
    /// What each slot's request is.
    rw: Vec<Rw>,
}

impl BlkDriver {
    fn used_event_addr(&self) -> u64 {
        self.avail + 4 + 2 * u64::from(self.size)
    }

    fn avail_event_addr(&self) -> u64 {
        self.used + 4 + 8 * u64::from(self.size)
    }

    /// Tells the device when to interrupt next: at the next completion
    /// (`--reap irq`), or not for half a ring of them (poll).
    fn set_used_event(&self) -> Result<()> {
        let v = match self.reap_mode {
            Reap::Irq => self.last_used.0,
            Reap::Poll => self.last_used.0.wrapping_add(NO_INTERRUPT),
        };
        self.mem
            .store(v, GuestAddress(self.used_event_addr()), Ordering::Relaxed)
            .context("guest RAM write")
    }

    /// Takes the used entries up to the device's used index.
    fn take_used(&mut self, done: &mut Vec<u16>) -> Result<()> {
        let used_idx: u16 = self
            .mem
            .load(GuestAddress(self.used + 2), Ordering::Acquire)
            .context("guest RAM read")?;
        while self.last_used.0 != used_idx {
            let at = self.used + 4 + 8 * u64::from(self.last_used.0 % self.size);
            let id: u32 = self.mem.read_obj(GuestAddress(at)).context("used ring")?;
            let len: u32 = self
                .mem
                .read_obj(GuestAddress(at + 4))
                .context("used ring")?;
            let head = u16::try_from(id).ok().filter(|h| h % DESCS == 0);
            let Some(slot) = head
                .map(|h| h / DESCS)
                .filter(|&s| (s as usize) < self.rw.len())
            else {
                bail!("used entry with head {id}, not a request's");
            };
            let status: u8 = self
                .mem
                .read_obj(GuestAddress(status_addr(slot)))
                .context("status byte")?;
            ensure!(status == 0, "request {slot} failed: status {status}");
            let want = match self.rw[usize::from(slot)] {
                Rw::RandRead => IO_SIZE as u32 + 1,
                Rw::RandWrite => 1,
            };
            ensure!(len == want, "request {slot}: used length {len}, not {want}");
            done.push(slot);
            self.last_used += 1;
        }
        Ok(())
    }
}

impl DevicePath for BlkDriver {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn worker_thread(&self) -> &'static str {
        "virtio-blk"
    }

    fn queue(&mut self, slot: u16, rw: Rw, offset: u64) -> Result<()> {
        let kind = match rw {
            Rw::RandRead => T_IN,
            Rw::RandWrite => T_OUT,
        };
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&(offset / SECTOR_SIZE).to_le_bytes());
        let mem = &self.mem;
        mem.write_slice(&header, GuestAddress(header_addr(slot)))
            .context("guest RAM write")?;
        mem.write_obj(STATUS_UNSET, GuestAddress(status_addr(slot)))
            .context("guest RAM write")?;
        let head = slot * DESCS;
        if self.rw[usize::from(slot)] != rw {
            let flags = match rw {
                Rw::RandRead => F_NEXT | F_WRITE,
                Rw::RandWrite => F_NEXT,
            };
            let d = descriptor(data_addr(slot), IO_SIZE as u32, flags, head + 2);
            mem.write_obj(d, GuestAddress(self.desc_table + 16 * u64::from(head + 1)))
                .context("guest RAM write")?;
            self.rw[usize::from(slot)] = rw;
        }
        let entry = self.avail + 4 + 2 * u64::from(self.avail_idx.0 % self.size);
        mem.write_obj(head, GuestAddress(entry))
            .context("guest RAM write")?;
        self.avail_idx += 1;
        Ok(())
    }

    fn notify(&mut self) -> Result<bool> {
        let (new, old) = (self.avail_idx.0, self.published.0);
        self.mem
            .store(new, GuestAddress(self.avail + 2), Ordering::Release)
            .context("guest RAM write")?;
        self.published = self.avail_idx;
        // The avail index before avail_event is read; the device's
        // enable_notification does the mirror image.
        fence(Ordering::SeqCst);
        let event: u16 = self
            .mem
            .load(GuestAddress(self.avail_event_addr()), Ordering::Relaxed)
            .context("guest RAM read")?;
        if !need_event(event, new, old) {
            return Ok(false);
        }
        self.notify.write(1).context("notify eventfd")?;
        Ok(true)
    }

    fn reap(&mut self, done: &mut Vec<u16>) -> Result<()> {
        let mut seen = done.len();
        self.take_used(done)?;
        while done.len() > seen {
            self.set_used_event()?;
            if self.reap_mode == Reap::Poll {
                break;
            }
            // used_event before the used index is read again: what the
            // device added before it saw the new used_event, and so did not
            // signal, is taken now (and used_event moved past it).
            fence(Ordering::SeqCst);
            seen = done.len();
            self.take_used(done)?;
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    benchkit::init_logging();
    let args = Args::parse();
    benchkit::sandbox(&args)?;
    if let Some(b) = args.block_size {
        bail!("--block-size {b}: virtio-blk reports the file's own logical block size");
    }
    let descs = u32::from(args.depth) * u32::from(DESCS);
    ensure!(descs <= 32768, "--depth at most {}", 32768 / DESCS);
    let size = u16::try_from(descs.next_power_of_two())
        .context("queue size")?
        .max(MIN_QUEUE);
    ensure!(
        DATA + u64::from(args.depth) * IO_SIZE <= RAM,
        "--depth too large for {} MiB of guest RAM",
        RAM >> 20
    );

    let mem = benchkit::guest_ram(RAM)?;
    let disk = benchkit::open_disk(&args)?;
    let (bytes, direct) = (disk.size(), disk.is_direct());
    let mut cfg = BlockConfig::new(Arc::new(disk), 1);
    cfg.queue_size = size;
    cfg.engine = args.engine;
    let device = Block::new(cfg).context("building the device")?;
    let block_size = device.config_space().blk_size;

    // The rings laid out as virtio 1.2 §2.7 says. Not MockSplitQueue's
    // layout: in virtio-queue 0.18 it puts the used ring inside the avail
    // ring's upper half (`SplitQueueRing::end` counts entries as bytes;
    // rust-vmm/vm-virtio#400), which a full ring overwrites.
    let n = u64::from(size);
    let avail = RING + 16 * n;
    let used = (avail + 6 + 2 * n).next_multiple_of(USED_ALIGN);
    ensure!(
        used + 6 + 8 * n <= HEADERS,
        "queue of {size} overlaps the headers"
    );
    let table = DescriptorTable::new(&*mem, GuestAddress(RING), size);
    for slot in 0..args.depth {
        let head = slot * DESCS;
        let chain = [
            descriptor(header_addr(slot), 16, F_NEXT, head + 1),
            descriptor(data_addr(slot), IO_SIZE as u32, F_NEXT | F_WRITE, head + 2),
            descriptor(status_addr(slot), 1, F_WRITE, 0),
        ];
        for (k, d) in (head..).zip(chain) {
            table.store(k, d).context("descriptor table")?;
        }
    }
    // The queue as the transport hands it over at DRIVER_OK.
    let mut queue = Queue::new(size).context("queue")?;
    queue.set_size(size);
    queue.set_desc_table_address(Some(RING as u32), Some((RING >> 32) as u32));
    queue.set_avail_ring_address(Some(avail as u32), Some((avail >> 32) as u32));
    queue.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
    queue.set_event_idx(true);
    queue.set_ready(true);
    ensure!(queue.is_valid(&*mem), "queue rings outside guest RAM");
    benchkit::fill_data(&mem, DATA, args.depth)?;

    let interrupts = Arc::new(Interrupts::new(args.reap)?);
    let notify = EventFd::new(EFD_NONBLOCK).context("notify eventfd")?;
    let mut driver = BlkDriver {
        device,
        notify: notify.try_clone().context("notify eventfd")?,
        mem: mem.clone(),
        reap_mode: args.reap,
        size,
        desc_table: RING,
        avail,
        used,
        avail_idx: Wrapping(0),
        published: Wrapping(0),
        last_used: Wrapping(0),
        rw: vec![Rw::RandRead; usize::from(args.depth)],
    };
    driver.set_used_event()?;
    // What Linux's virtio_blk accepts of the offer, and the ring features.
    let features = driver.device.features() | F_VERSION_1 | F_RING_EVENT_IDX;
    // The function's DMA as the VMM gives it: its context (Bus Master
    // Enable on, as the guest's driver leaves it) in front of guest RAM.
    let ctx = FunctionContext::new(RequesterId::new(0, 4, 0));
    ctx.set_bus_master(true);
    let dma: Arc<dyn Dma> = Arc::new(FunctionDma::new(ctx, Arc::new(GuestDma::new(mem))));
    driver
        .device
        .activate(Activation {
            features,
            memory: Arc::new(Memory::new(dma.clone())),
            dma,
            queues: vec![QueueSetup {
                index: 0,
                queue,
                notify,
            }],
            signals: Arc::new(CountingSignals(interrupts.clone())),
            counters: Arc::default(),
        })
        .context("activating the device")?;

    let m = benchkit::run(&mut driver, &interrupts, &args, bytes)?;
    driver.device.reset();
    let ctx = benchkit::RunInfo {
        device: driver.name(),
        direct,
        block_size,
    };
    benchkit::report(&args, &ctx, &m)
}
