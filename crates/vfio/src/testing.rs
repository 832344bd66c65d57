//! A fake host function for the tests: configuration space and BAR bytes
//! in memory, every write and every `set_irqs` recorded.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

use crate::host::{HostDevice, IrqKind, RegionInfo, VectorTriggers, CONFIG_REGION};

/// An NVMe-like host function: vendor 0x1b36 device 0x0010, class 010802,
/// BAR 0 64-bit 16 KiB, MSI-X with 65 vectors (table at BAR 0 0x2000, PBA
/// at 0x3000) at 0x40, MSI at 0x60, a PCIe capability at 0x80, an
/// extended capability at 0x100 (it must not show), an expansion ROM.
pub fn nvme_config() -> [u8; 256] {
    let mut c = [0u8; 256];
    c[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
    c[2..4].copy_from_slice(&0x0010u16.to_le_bytes());
    c[6] = 0x10; // capability list
    c[8] = 2; // revision
    c[9..12].copy_from_slice(&[0x02, 0x08, 0x01]);
    c[0x0e] = 0x80; // multi-function bit set on the host
    c[0x10] = 0x04; // 64-bit memory
    c[0x2c..0x2e].copy_from_slice(&0x1af4u16.to_le_bytes());
    c[0x2e..0x30].copy_from_slice(&0x1100u16.to_le_bytes());
    c[0x30] = 1; // ROM enabled
    c[0x34] = 0x40;
    c[0x3d] = 1; // INTA
    c[0x40] = 0x11;
    c[0x41] = 0x60;
    c[0x42..0x44].copy_from_slice(&64u16.to_le_bytes());
    c[0x44..0x48].copy_from_slice(&0x2000u32.to_le_bytes());
    c[0x48..0x4c].copy_from_slice(&0x3000u32.to_le_bytes());
    c[0x60] = 0x05;
    c[0x61] = 0x80;
    c[0x62..0x64].copy_from_slice(&(0x80u16 | 0x100 | 5 << 1).to_le_bytes());
    c[0x80] = 0x10;
    c[0x81] = 0;
    c
}

/// The fake's interrupt programming, as VFIO would have received it:
/// vectors set, or the kind disabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrqCall {
    /// So many eventfds for the kind.
    Set(IrqKind, usize),
    /// The kind off.
    Disable(IrqKind),
}

/// A host function in memory.
#[derive(Debug)]
pub struct FakeHost {
    /// Its configuration space.
    pub config: Mutex<[u8; 256]>,
    /// BAR 0's bytes.
    pub bar0: Mutex<Vec<u8>>,
    /// Every configuration write: offset and bytes.
    pub config_writes: Mutex<Vec<(u64, Vec<u8>)>>,
    /// Every `set_irqs`.
    pub irqs: Mutex<Vec<IrqCall>>,
    /// How many resets.
    pub resets: Mutex<u32>,
    /// Region sizes by index.
    pub sizes: BTreeMap<u32, u64>,
    /// Whether the BARs may be mapped.
    pub mmap: bool,
}

impl FakeHost {
    /// A function with `config` and [`FakeHost`]'s regions.
    pub fn new(config: [u8; 256]) -> Self {
        Self {
            config: Mutex::new(config),
            bar0: Mutex::new(vec![0; 0x4000]),
            config_writes: Mutex::new(Vec::new()),
            irqs: Mutex::new(Vec::new()),
            resets: Mutex::new(0),
            sizes: BTreeMap::from([(0, 0x4000), (6, 0x1_0000), (CONFIG_REGION, 0x1000)]),
            mmap: true,
        }
    }
}

impl HostDevice for FakeHost {
    fn region(&self, index: u32) -> Option<RegionInfo> {
        self.sizes.get(&index).map(|&size| RegionInfo {
            size,
            mmap: self.mmap && index < 6,
        })
    }

    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        let off = offset as usize;
        match index {
            CONFIG_REGION => {
                let c = self.config.lock().unwrap();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = c.get(off + i).copied().unwrap_or(0);
                }
            }
            0 => {
                let bar = self.bar0.lock().unwrap();
                data.copy_from_slice(&bar[off..off + data.len()]);
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        let off = offset as usize;
        match index {
            CONFIG_REGION => {
                self.config_writes
                    .lock()
                    .unwrap()
                    .push((offset, data.to_vec()));
                self.config.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
            }
            0 => self.bar0.lock().unwrap()[off..off + data.len()].copy_from_slice(data),
            _ => {}
        }
    }

    fn set_irqs(&self, kind: IrqKind, fds: &[&EventFd]) -> io::Result<()> {
        let call = if fds.is_empty() {
            IrqCall::Disable(kind)
        } else {
            IrqCall::Set(kind, fds.len())
        };
        self.irqs.lock().unwrap().push(call);
        Ok(())
    }

    fn reset(&self) {
        *self.resets.lock().unwrap() += 1;
    }
}

/// Eventfds per vector, kept so a test can signal one, and their masks.
#[derive(Debug, Default)]
pub struct FakeTriggers {
    /// The vectors asked for, in order.
    pub asked: Mutex<Vec<u16>>,
    /// Each vector's eventfd, created when first asked for.
    pub fds: Mutex<BTreeMap<u16, EventFd>>,
    /// The vectors masked now.
    pub masked: Mutex<std::collections::BTreeSet<u16>>,
    /// Signals delivered on unmask, by vector.
    pub delivered_on_unmask: Mutex<Vec<u16>>,
}

impl FakeTriggers {
    /// Signals `vector` as the device would (its eventfd must exist).
    pub fn fire(&self, vector: u16) {
        self.fds.lock().unwrap()[&vector].write(1).unwrap();
    }
}

impl VectorTriggers for FakeTriggers {
    fn trigger(&self, vector: u16) -> io::Result<EventFd> {
        self.asked.lock().unwrap().push(vector);
        let mut fds = self.fds.lock().unwrap();
        if let std::collections::btree_map::Entry::Vacant(e) = fds.entry(vector) {
            e.insert(EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK)?);
        }
        fds[&vector].try_clone()
    }

    fn set_masked(&self, vector: u16, masked: bool) -> io::Result<()> {
        let mut set = self.masked.lock().unwrap();
        if masked {
            set.insert(vector);
        } else if set.remove(&vector) {
            let fds = self.fds.lock().unwrap();
            if fds.get(&vector).is_some_and(|fd| fd.read().is_ok()) {
                self.delivered_on_unmask.lock().unwrap().push(vector);
            }
        }
        Ok(())
    }

    fn pending(&self, vector: u16) -> bool {
        self.masked.lock().unwrap().contains(&vector)
            && self
                .fds
                .lock()
                .unwrap()
                .get(&vector)
                .is_some_and(|fd| fd.read().and_then(|n| fd.write(n)).is_ok())
    }
}
