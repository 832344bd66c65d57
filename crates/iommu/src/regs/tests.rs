//! The register page driven as Linux 6.1's intel_iommu does, and as a
//! hostile guest might.

mod capability;
mod command;
mod fault;
mod hostile;
mod invalidate;
mod queue;

use super::*;

/// The default unit: 39- and 48-bit widths, interrupt remapping with x2APIC.
fn regs() -> Registers {
    Registers::new(&Capabilities::DEFAULT, &Options::DEFAULT)
}

fn read(r: &Registers, offset: usize, len: usize) -> u64 {
    let mut buf = [0u8; 8];
    r.read(offset, &mut buf[..len]);
    u64::from_le_bytes(buf)
}

fn read32(r: &Registers, offset: usize) -> u32 {
    read(r, offset, 4) as u32
}

fn read64(r: &Registers, offset: usize) -> u64 {
    read(r, offset, 8)
}

/// writel.
fn write32(r: &mut Registers, offset: usize, value: u32) -> Vec<Effect> {
    r.write(offset, &value.to_le_bytes())
}

/// writeq.
fn write64(r: &mut Registers, offset: usize, value: u64) -> Vec<Effect> {
    r.write(offset, &value.to_le_bytes())
}
