//! A fake guest driver for virtio-net: guest RAM, split queues written
//! with `virtio_queue::mock`, a socket pair as the backend and a recording
//! [`Signals`]. Most tests drive [`Core`] directly (no thread); `device`
//! runs the whole device with its worker.

mod ctrl;
mod device;
mod function_dma;
mod hostile;
mod parse;
mod rx;
mod tx;

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use backend::net::{FrameIo, Offloads};
use dma::GuestDma;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::worker::{Core, Target};
use super::*;
use crate::device::{Activation, QueueSetup, Signals};

/// Size of every test queue.
const QSIZE: u16 = 64;
/// Where test buffers may go (queues live below).
const BUF: u64 = 0x10_0000;
/// Guest RAM size.
const RAM: u64 = 0x100_0000;
/// The device's MAC.
const MAC: [u8; 6] = [0x52, 0x54, 0, 0xab, 0xcd, 0xef];
/// Device-writable.
const W: bool = true;
/// Device-readable.
const R: bool = false;

/// What the device signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sig {
    Used(u16),
    Config,
    NeedsReset,
}

#[derive(Debug, Default)]
struct FakeSignals(Mutex<Vec<Sig>>);

impl FakeSignals {
    fn take(&self) -> Vec<Sig> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Signals for FakeSignals {
    fn used(&self, queue: u16) {
        self.0.lock().unwrap().push(Sig::Used(queue));
    }
    fn config_changed(&self) {
        self.0.lock().unwrap().push(Sig::Config);
    }
    fn needs_reset(&self) {
        self.0.lock().unwrap().push(Sig::NeedsReset);
    }
}

/// A backend on one end of a datagram socket pair (boundaries kept).
#[derive(Debug)]
struct Pipe {
    dev: UnixDatagram,
    offloads: Mutex<Vec<Offloads>>,
    enabled: Mutex<Vec<bool>>,
}

impl AsRawFd for Pipe {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

impl FrameIo for Pipe {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf)
    }
    fn write_frame(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.dev.send(&all)
    }
    fn set_offloads(&self, offloads: Offloads) -> io::Result<()> {
        self.offloads.lock().unwrap().push(offloads);
        Ok(())
    }
    fn set_enabled(&self, enabled: bool) -> io::Result<()> {
        self.enabled.lock().unwrap().push(enabled);
        Ok(())
    }
}

/// A backend and the peer end of it (the "host network").
fn pipe() -> (Arc<Pipe>, UnixDatagram) {
    let (dev, peer) = UnixDatagram::pair().unwrap();
    dev.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    let p = Pipe {
        dev,
        offloads: Mutex::default(),
        enabled: Mutex::default(),
    };
    (Arc::new(p), peer)
}

/// Where a queue's parts are in guest RAM.
#[derive(Clone, Copy)]
struct QAddr {
    desc: u64,
    avail: u64,
    used: u64,
}

/// Guest RAM and the driver's view of the queues.
struct Guest {
    mem: Arc<GuestMemoryMmap>,
    signals: Arc<FakeSignals>,
    next_desc: Vec<u16>,
    queues: Vec<Option<QAddr>>,
}

fn qbase(q: u16) -> GuestAddress {
    GuestAddress(0x1_0000 * (u64::from(q) + 1))
}

impl Guest {
    fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        Self {
            mem: Arc::new(mem),
            signals: Arc::default(),
            next_desc: vec![0; 16],
            queues: vec![None; 16],
        }
    }

    fn q(&self, q: u16) -> QAddr {
        self.queues[usize::from(q)].expect("queue set up")
    }

    /// The activation of queues `queues` with `features` (each queue laid
    /// out and zeroed by `MockSplitQueue`); also returns a copy of each
    /// queue's notification eventfd.
    fn activation(&mut self, features: u64, queues: &[u16]) -> (Activation, Vec<EventFd>) {
        let mut setups = Vec::new();
        let mut kicks = Vec::new();
        for &q in queues {
            // `MockSplitQueue` lays out and zeroes the rings; the used ring
            // is moved past the whole available ring (the mock's own
            // placement overlaps the available ring's tail once more than
            // QSIZE / 2 entries are in it).
            let mock = MockSplitQueue::create(&*self.mem, qbase(q), QSIZE);
            let a = QAddr {
                desc: mock.desc_table_addr().0,
                avail: mock.avail_addr().0,
                used: (mock.avail_addr().0 + 6 + 2 * u64::from(QSIZE) + 3) & !3,
            };
            let zero = vec![0u8; 8 + 8 * usize::from(QSIZE)];
            self.mem.write_slice(&zero, GuestAddress(a.used)).unwrap();
            let mut queue: Queue = mock.create_queue().unwrap();
            queue.set_used_ring_address(Some(a.used as u32), Some(0));
            self.queues[usize::from(q)] = Some(a);
            self.next_desc[usize::from(q)] = 0;
            let notify = EventFd::new(EFD_NONBLOCK).unwrap();
            kicks.push(notify.try_clone().unwrap());
            setups.push(QueueSetup {
                index: q,
                queue,
                notify,
            });
        }
        let dma: Arc<dyn dma::Dma> = Arc::new(GuestDma::new(self.mem.clone()));
        let act = Activation {
            features,
            memory: Arc::new(crate::Memory::new(dma.clone())),
            dma,
            queues: setups,
            signals: self.signals.clone(),
            counters: Arc::default(),
        };
        (act, kicks)
    }

    /// Makes a chain of `segs` (address, length, device-writable)
    /// available on queue `q`; returns its head.
    fn post(&mut self, q: u16, segs: &[(u64, u32, bool)]) -> u16 {
        let start = self.next_desc[usize::from(q)];
        let descs: Vec<(u64, u32, u16, u16)> = segs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let mut flags = if w { 2 } else { 0 };
                if i + 1 < segs.len() {
                    flags |= 1;
                }
                (addr, len, flags, start + i as u16 + 1)
            })
            .collect();
        self.post_raw(q, start, &descs);
        start
    }

    /// Writes descriptors (address, length, flags, next) at table index
    /// `start` and makes `start` available as one chain head.
    fn post_raw(&mut self, q: u16, start: u16, descs: &[(u64, u32, u16, u16)]) {
        let a = self.q(q);
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let raw = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
            let at = a.desc + 16 * u64::from((start + i as u16) % QSIZE);
            self.mem.write_obj(raw, GuestAddress(at)).unwrap();
        }
        let idx: u16 = self.mem.read_obj(GuestAddress(a.avail + 2)).unwrap();
        let slot = a.avail + 4 + 2 * u64::from(idx % QSIZE);
        self.mem
            .write_obj(start % QSIZE, GuestAddress(slot))
            .unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(a.avail + 2))
            .unwrap();
        self.next_desc[usize::from(q)] = (start + descs.len() as u16) % QSIZE;
    }

    /// The used ring of `q`: (head, length) pairs.
    fn used(&self, q: u16) -> Vec<(u32, u32)> {
        let a = self.q(q);
        let n: u16 = self.mem.read_obj(GuestAddress(a.used + 2)).unwrap();
        (0..u64::from(n))
            .map(|i| {
                let at = a.used + 4 + 8 * (i % u64::from(QSIZE));
                let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect()
    }

    fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}

/// A frame to `dst` of `len` bytes (after the header), payload a counter.
fn frame(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; header::HDR_LEN];
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend((0..len - 14).map(|i| i as u8));
    f
}

/// The features a modern Linux driver accepts of a one-pair device.
const BASE: u64 = F_CSUM | F_GUEST_CSUM | F_MAC | F_STATUS | F_CTRL_VQ | F_CTRL_RX;

/// A core over one pair (rx 0, tx 1, ctrl 2) with `features`.
fn one_pair(features: u64) -> (Guest, Core, UnixDatagram, Arc<Pipe>) {
    let mut g = Guest::new();
    let (io, peer) = pipe();
    let cfg = NetConfig::new(MAC, vec![io.clone()]);
    let (act, _) = g.activation(features, &[0, 1, 2]);
    let core = Core::new(act, &cfg, Arc::default()).unwrap();
    (g, core, peer, io)
}

/// A core over two pairs with MQ (rx0 tx0 rx1 tx1 ctrl 4).
fn two_pairs(features: u64) -> (Guest, Core, [UnixDatagram; 2], [Arc<Pipe>; 2]) {
    let mut g = Guest::new();
    let (io0, peer0) = pipe();
    let (io1, peer1) = pipe();
    let cfg = NetConfig::new(MAC, vec![io0.clone(), io1.clone()]);
    let (act, _) = g.activation(features | F_MQ, &[0, 1, 2, 3, 4]);
    let core = Core::new(act, &cfg, Arc::default()).unwrap();
    (g, core, [peer0, peer1], [io0, io1])
}

fn recv(peer: &UnixDatagram) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    match peer.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}
