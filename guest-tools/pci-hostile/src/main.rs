//! `pci-hostile`: a hostile driver, run as root inside the test guest.
//!
//! For each PCI function named, it takes the function from its kernel
//! driver, then makes random accesses for a while: writes of random
//! values at random offsets and widths of its configuration space, and
//! reads and writes of random values at random offsets of each memory BAR
//! (mapped through sysfs) and I/O BAR (through sysfs `resourceN` files).
//! Two bits are kept clear so that the attack cannot reach the guest's
//! own memory or interrupt vectors: Bus Master Enable in the Command
//! register (a device without it makes no DMA), and the enable bits of
//! the MSI and MSI-X capabilities. Everything else goes: BARs moved,
//! doorbells rung, queues enabled, resets, bridges renumbered.
//!
//! Usage: `pci-hostile SEED ACCESSES BDF...`. Output: one line per
//! function, `hostile BDF config_writes=N mmio_writes=N mmio_reads=N
//! io_writes=N`, then `hostile done`.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// PCI Command register offset and its Bus Master Enable bit.
const COMMAND: u64 = 0x04;
const BUS_MASTER: u32 = 1 << 2;
/// Capability IDs whose enable bits stay clear.
const CAP_MSI: u8 = 0x05;
const CAP_MSIX: u8 = 0x11;

/// xorshift64*: deterministic from the seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A BAR as sysfs describes it.
struct Bar {
    file: File,
    len: u64,
    io: bool,
    map: Option<*mut u8>,
}

/// Bits that must stay clear at each configuration byte: the Command
/// register's Bus Master Enable, MSI's enable (Message Control bit 0) and
/// MSI-X's enable (Message Control bit 15).
fn protected_bits(config: &[u8]) -> Vec<(u64, u8)> {
    let mut out = vec![(COMMAND, BUS_MASTER as u8)];
    let mut at = usize::from(config.get(0x34).copied().unwrap_or(0)) & !3;
    let mut seen = 0;
    while at >= 0x40 && at + 1 < config.len() && seen < 48 {
        match config[at] {
            CAP_MSI => out.push((at as u64 + 2, 0x01)),
            CAP_MSIX => out.push((at as u64 + 3, 0x80)),
            _ => {}
        }
        at = usize::from(config[at + 1]) & !3;
        seen += 1;
    }
    out
}

fn unbind(dir: &str) {
    let driver = format!("{dir}/driver/unbind");
    let name = dir.rsplit('/').next().unwrap_or_default();
    if fs::metadata(&driver).is_ok() {
        let _ = fs::write(&driver, name);
    }
    // Memory and I/O decoding on, so the BARs answer.
    let _ = fs::write(format!("{dir}/enable"), "1");
}

fn bars(dir: &str) -> Vec<Bar> {
    let table = fs::read_to_string(format!("{dir}/resource")).unwrap_or_default();
    let mut out = Vec::new();
    for (i, line) in table.lines().take(6).enumerate() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap_or(0))
            .collect();
        let (start, end, flags) = (f[0], f[1], f[2]);
        if start == 0 || end <= start {
            continue;
        }
        let len = end - start + 1;
        let io = flags & 0x100 != 0;
        let Ok(file) = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("{dir}/resource{i}"))
        else {
            continue;
        };
        let map = (!io).then(|| {
            // SAFETY: maps the BAR's sysfs file shared; the mapping is used
            // only through volatile accesses within `len`.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            (p != libc::MAP_FAILED).then_some(p.cast::<u8>())
        });
        out.push(Bar {
            file,
            len,
            io,
            map: map.flatten(),
        });
    }
    out
}

fn attack(rng: &mut Rng, accesses: u64, bdf: &str) {
    let dir = format!("/sys/bus/pci/devices/{bdf}");
    unbind(&dir);
    let Ok(config) = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("{dir}/config"))
    else {
        println!("hostile {bdf} missing");
        return;
    };
    let mut space = vec![0u8; 4096];
    let size = config.read_at(&mut space, 0).unwrap_or(0);
    space.truncate(size.max(64));
    let protected = protected_bits(&space);
    let bars = bars(&dir);
    let (mut cfg_w, mut mmio_w, mut mmio_r, mut io_w) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..accesses {
        let pick = rng.below(4);
        if pick == 0 || bars.is_empty() {
            let width = [1u64, 2, 4][rng.below(3) as usize];
            let offset = rng.below(space.len() as u64 / width) * width;
            let mut bytes = rng.next().to_le_bytes();
            for &(at, bits) in &protected {
                if (offset..offset + width).contains(&at) {
                    bytes[(at - offset) as usize] &= !bits;
                }
            }
            if config.write_at(&bytes[..width as usize], offset).is_ok() {
                cfg_w += 1;
            }
            continue;
        }
        let bar = &bars[rng.below(bars.len() as u64) as usize];
        let offset = rng.below(bar.len / 4) * 4;
        let value = rng.next() as u32;
        match bar.map {
            Some(base) => {
                // SAFETY: `offset + 4 <= len`, inside the live mapping.
                let p = unsafe { base.add(offset as usize) }.cast::<u32>();
                if pick == 1 {
                    // SAFETY: as above; a device read has no memory effect.
                    let _ = unsafe { p.read_volatile() };
                    mmio_r += 1;
                } else {
                    // SAFETY: as above.
                    unsafe { p.write_volatile(value) };
                    mmio_w += 1;
                }
            }
            None if bar.io && bar.file.write_at(&value.to_le_bytes(), offset).is_ok() => {
                io_w += 1;
            }
            None => {}
        }
    }
    // Leave the function quiet: decoding and bus mastering off.
    let _ = config.write_at(&[0, 0], COMMAND);
    println!(
        "hostile {bdf} config_writes={cfg_w} mmio_writes={mmio_w} mmio_reads={mmio_r} io_writes={io_w}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: pci-hostile SEED ACCESSES BDF...");
        std::process::exit(2);
    }
    let seed = args[1].parse::<u64>().unwrap_or(1).max(1);
    let accesses = args[2].parse::<u64>().unwrap_or(1000);
    let mut rng = Rng(seed);
    for bdf in &args[3..] {
        attack(&mut rng, accesses, bdf);
    }
    println!("hostile done");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_protected_bits_follow_the_capability_list() {
        let mut config = vec![0u8; 256];
        config[0x34] = 0x40;
        config[0x40] = CAP_MSI;
        config[0x41] = 0x50;
        config[0x50] = CAP_MSIX;
        config[0x51] = 0x00;
        assert_eq!(
            protected_bits(&config),
            vec![(COMMAND, BUS_MASTER as u8), (0x42, 0x01), (0x53, 0x80)]
        );
    }

    #[test]
    fn test_a_looping_capability_list_ends() {
        let mut config = vec![0u8; 256];
        config[0x34] = 0x40;
        config[0x40] = CAP_MSI;
        config[0x41] = 0x40;
        assert_eq!(protected_bits(&config).len(), 49);
    }
}
