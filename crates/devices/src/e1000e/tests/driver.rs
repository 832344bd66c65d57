//! A fake guest driver: guest RAM, a socket-pair backend whose other end
//! plays the host network, recorded interrupts, and the register dance
//! Linux's `e1000e` does (reset, NVM and PHY reads, rings, IVAR).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use backend::net::{FrameIo, Offloads, VNET_HDR_LEN};
use dma::{Dma, GuestDma};
use irq::recording::{RecordingLine, RecordingVectors};
use pci::config::command;
use pci::message::MsiMessage;
use pci::testing::{BarDriver, ConfigDriver, MsiDriver, MsixDriver};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::e1000e::regs::{self, rctl, rfctl, tctl};
use crate::e1000e::{E1000e, E1000eConfig, MMIO_BAR};

/// Guest RAM size.
pub const RAM: u64 = 16 << 20;
/// Transmit ring.
pub const TX_RING: u64 = 0x1_0000;
/// Receive ring.
pub const RX_RING: u64 = 0x2_0000;
/// Transmit buffers (4 KiB each).
pub const TX_BUF: u64 = 0x10_0000;
/// Receive buffers (16 KiB each).
pub const RX_BUF: u64 = 0x40_0000;
/// An address past guest RAM (where a BAR might be).
pub const OUTSIDE: u64 = 0xfebc_0000;
/// Descriptors per ring.
pub const RING: u32 = 16;
/// The device's MAC address.
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A backend on one end of a datagram socket pair.
#[derive(Debug)]
pub struct Pipe(pub UnixDatagram);

impl AsRawFd for Pipe {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl FrameIo for Pipe {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
    fn write_frame(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.0.send(&all)
    }
    fn set_offloads(&self, _: Offloads) -> io::Result<()> {
        Ok(())
    }
    fn set_enabled(&self, _: bool) -> io::Result<()> {
        Ok(())
    }
}

/// How the device is built.
#[derive(Clone, Copy)]
pub struct Setup {
    pub msix: bool,
    pub msi: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            msix: true,
            msi: true,
        }
    }
}

/// The fake guest.
pub struct Driver {
    pub nic: E1000e,
    pub dma: Arc<dyn Dma>,
    pub vectors: Arc<RecordingVectors>,
    pub line: Arc<RecordingLine>,
    /// The host end of the backend.
    pub host: UnixDatagram,
    /// The function's I/O counters.
    pub counters: Arc<counters::FunctionCounters>,
    /// Next descriptor the driver fills.
    pub tx_next: u32,
}

impl Driver {
    pub fn new() -> Self {
        Self::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
        let (dev, host) = UnixDatagram::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        host.set_nonblocking(true).unwrap();
        let vectors = Arc::new(RecordingVectors::new());
        let line = Arc::new(RecordingLine::new());
        let cfg = E1000eConfig {
            mac: MAC,
            msix: setup.msix,
            msi: setup.msi,
            counters: Arc::default(),
        };
        let counters = cfg.counters.clone();
        let nic = E1000e::new(
            cfg,
            dma.clone(),
            vectors.clone(),
            line.clone(),
            Some(Arc::new(Pipe(dev))),
        )
        .unwrap();
        let mut d = Self {
            nic,
            dma,
            vectors,
            line,
            host,
            counters,
            tx_next: 0,
        };
        d.nic
            .set_command(command::MEMORY | command::IO | command::BUS_MASTER);
        d
    }

    pub fn r32(&mut self, off: usize) -> u32 {
        self.nic.bar_read32(MMIO_BAR, off as u64)
    }

    pub fn w32(&mut self, off: usize, v: u32) {
        self.nic.bar_write32(MMIO_BAR, off as u64, v);
    }

    pub fn mem_read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.dma.read(addr, &mut b).unwrap();
        b
    }

    pub fn mem_write(&self, addr: u64, b: &[u8]) {
        self.dma.write(addr, b).unwrap();
    }

    /// A PHY register through MDIC.
    pub fn phy_read(&mut self, reg: u32) -> u16 {
        self.w32(regs::MDIC, reg << 16 | 1 << 21 | 2 << 26);
        let v = self.r32(regs::MDIC);
        assert_ne!(v & 1 << 28, 0, "MDIC ready");
        assert_eq!(v & 1 << 30, 0, "MDIC error");
        v as u16
    }

    pub fn phy_write(&mut self, reg: u32, val: u16) {
        self.w32(regs::MDIC, u32::from(val) | reg << 16 | 1 << 21 | 1 << 26);
    }

    /// An NVM word through EERD.
    pub fn nvm_read(&mut self, addr: u32) -> u16 {
        self.w32(regs::EERD, addr << 2 | 1);
        let v = self.r32(regs::EERD);
        assert_ne!(v & 2, 0, "EERD done");
        (v >> 16) as u16
    }

    /// MSI-X with vectors 0x40 + n, IVAR as Linux sets it (RX 0, TX 1,
    /// other 2), EIAC for the queues, EIAME.
    pub fn enable_msix(&mut self) {
        self.nic
            .enable_msix(5, |v| MsiMessage {
                address: 0xfee0_0000,
                data: 0x40 + u32::from(v),
            })
            .expect("MSI-X capability");
        self.w32(regs::IVAR, 0x8 | 0x9 << 8 | 0xa << 16 | 1 << 31);
        self.w32(regs::IAM, 0xffff_ffff);
        self.w32(regs::CTRL_EXT, 1 << 24);
        self.w32(regs::EIAC, regs::icr::RXQ0 | regs::icr::TXQ0);
    }

    pub fn enable_msi(&mut self) {
        let m = MsiMessage {
            address: 0xfee0_0000,
            data: 0x50,
        };
        self.nic.enable_msi(m, 1).expect("MSI capability");
    }

    pub fn sent(&self) -> Vec<u16> {
        self.vectors.sent_vectors()
    }

    /// Transmit ring of `RING` descriptors, enabled.
    pub fn setup_tx(&mut self) {
        self.w32(regs::TDBAL, TX_RING as u32);
        self.w32(regs::TDBAH, 0);
        self.w32(regs::TDLEN, RING * 16);
        self.w32(regs::TDH, 0);
        self.w32(regs::TDT, 0);
        self.w32(regs::TCTL, tctl::EN | 1 << 3);
    }

    /// Receive ring in `format` with every descriptor given to the device
    /// but one (RDT = RING - 1), broadcast and own address accepted.
    pub fn setup_rx(&mut self, extended: bool) {
        self.w32(regs::RDBAL, RX_RING as u32);
        self.w32(regs::RDLEN, RING * 16);
        self.w32(regs::RDH, 0);
        for i in 0..RING {
            self.set_rx_buffer(i, RX_BUF + u64::from(i) * 0x4000);
        }
        if extended {
            self.w32(regs::RFCTL, rfctl::EXSTEN);
        }
        self.w32(regs::RCTL, rctl::EN | rctl::BAM | rctl::SECRC);
        self.w32(regs::RDT, RING - 1);
    }

    pub fn set_rx_buffer(&self, i: u32, addr: u64) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        self.mem_write(RX_RING + u64::from(i) * 16, &d);
    }

    /// Writes a legacy descriptor at the next TX slot (data at a buffer of
    /// its own) and returns its index; does not ring the doorbell.
    pub fn put_legacy(&mut self, data: &[u8], cmd: u8) -> u32 {
        let i = self.tx_next;
        let buf = TX_BUF + u64::from(i) * 0x1_0000;
        self.mem_write(buf, data);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&buf.to_le_bytes());
        d[8..10].copy_from_slice(&(data.len() as u16).to_le_bytes());
        d[11] = cmd;
        self.put_raw(d);
        i
    }

    /// Writes raw descriptor bytes at the next TX slot.
    pub fn put_raw(&mut self, d: [u8; 16]) -> u32 {
        let i = self.tx_next;
        self.mem_write(TX_RING + u64::from(i) * 16, &d);
        self.tx_next = (i + 1) % RING;
        i
    }

    /// Rings the TX doorbell up to what was put.
    pub fn kick_tx(&mut self) {
        let t = self.tx_next;
        self.w32(regs::TDT, t);
    }

    /// A descriptor's status byte (DD in bit 0).
    pub fn tx_status(&self, i: u32) -> u8 {
        self.mem_read(TX_RING + u64::from(i) * 16 + 12, 1)[0]
    }

    /// Frames the device sent to the host, without their vnet header.
    pub fn host_frames(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = vec![0u8; 70_000];
        while let Ok(n) = self.host.recv(&mut b) {
            assert!(n >= VNET_HDR_LEN);
            out.push(b[VNET_HDR_LEN..n].to_vec());
        }
        out
    }

    /// The host sends a frame to the device.
    pub fn host_send(&self, frame: &[u8]) {
        let mut b = vec![0u8; VNET_HDR_LEN];
        b.extend_from_slice(frame);
        self.host.send(&b).unwrap();
    }

    /// Lets the device read what the host sent (no worker).
    pub fn poll(&mut self) -> usize {
        self.nic.with_core(|c| {
            let n = c.poll_backend();
            c.flush_interrupts();
            n
        })
    }

    /// Descriptor `i` of the RX ring (16 bytes).
    pub fn rx_desc(&self, i: u32) -> Vec<u8> {
        self.mem_read(RX_RING + u64::from(i) * 16, 16)
    }
}

/// A broadcast frame of `len` bytes with a recognisable payload.
pub fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_add(seed)));
    f
}

/// A frame addressed to the device.
pub fn unicast(len: usize) -> Vec<u8> {
    let mut f = frame(len, 7);
    f[..6].copy_from_slice(&MAC);
    f
}
