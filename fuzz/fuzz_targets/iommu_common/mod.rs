//! What the VT-d fuzz targets share: 64 KiB of guest RAM from address 0,
//! filled from the input (the rest zero), where the guest's tables live.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Bytes of guest RAM.
pub const RAM: usize = 0x1_0000;

/// Guest RAM holding `bytes` from address 0 (cut at [`RAM`]).
pub fn guest_ram(bytes: &[u8]) -> Option<GuestMemoryMmap<()>> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).ok()?;
    mem.write_slice(&bytes[..bytes.len().min(RAM)], GuestAddress(0))
        .ok()?;
    Some(mem)
}
