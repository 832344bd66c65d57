//! The only "firmware" iovm has: a reset vector stub.
//!
//! A PC starts (and warm-restarts) at physical 0xFFFF0, `F000:FFF0` in real
//! mode. Linux's last-resort reboot methods jump there (on a hardware-reduced
//! ACPI machine, Linux chooses `reboot=efi`, which without EFI falls through
//! to `reboot=bios`, a real-mode jump to the reset vector). Without firmware
//! that address holds zeros and the vCPU would run through them forever.
//! The stub turns the jump into a platform reset through the ACPI reset
//! register, then halts.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use devices::legacy::acpi_pm::{ACPI_PM_PORT, RESET_OFFSET, RESET_VALUE};

/// Physical address of the x86 reset vector.
pub const RESET_VECTOR: u64 = 0xf_fff0;

/// The stub's 16-bit code.
pub fn stub() -> [u8; 9] {
    let port = (ACPI_PM_PORT + RESET_OFFSET as u16).to_le_bytes();
    [
        0xb0,
        RESET_VALUE, // mov al, RESET_VALUE
        0xba,
        port[0],
        port[1], // mov dx, reset register
        0xee,    // out dx, al
        0xf4,    // hlt
        0xeb,
        0xfd, // jmp hlt
    ]
}

/// Writes the stub at the reset vector.
pub fn write(mem: &GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    mem.write_slice(&stub(), GuestAddress(RESET_VECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stub_writes_reset_value_to_reset_register() {
        let s = stub();
        assert_eq!(&s[0..2], &[0xb0, RESET_VALUE]);
        assert_eq!(u16::from_le_bytes([s[3], s[4]]), 0x602);
        assert_eq!(s[5], 0xee);
        // The jump lands back on the hlt: offset of jmp end (9) - 3 = 6.
        assert_eq!(9 + i32::from(s[8] as i8), 6);
        assert!(RESET_VECTOR + s.len() as u64 <= 0x10_0000);
    }
}
