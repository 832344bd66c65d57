//! The register state vCPU 0 starts `startup_64` with (or the PVH entry:
//! [`pvh_sregs`], [`pvh_regs`]), and the boot GDT.
//!
//! Segment descriptors follow Intel SDM Vol. 3A §3.4.5; the selectors are the
//! ones the 64-bit boot protocol names (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18).

use kvm_bindings::{kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::addresses::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, ZERO_PAGE_START};

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_RESERVED: u64 = 1 << 1;

/// Boot GDT: null, null, 64-bit code (0x10), data (0x18), busy TSS (0x20).
pub const BOOT_GDT: [u64; 5] = [
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
const CODE_INDEX: u16 = 2;
const DATA_INDEX: u16 = 3;
const TSS_INDEX: u16 = 4;

/// Encodes a segment descriptor from its flags word (type/S/DPL/P in the low
/// byte, AVL/L/D/G in bits 12–15), base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The hidden part of a segment register for descriptor `index` of `table`.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let limit_raw = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = bit(55);
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (limit_raw << 12) | 0xfff
        } else {
            limit_raw
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: bit(47),
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(bit(47) == 0),
        padding: 0,
    }
}

/// Writes the GDT and an empty IDT into guest memory.
pub fn write_gdt_idt(mem: &GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + i as u64 * 8))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
}

/// `sregs` with flat segments from the boot GDT (`code` in CS), its TSS,
/// and the boot GDT and empty IDT loaded.
fn flat_segments(mut sregs: kvm_sregs, code: kvm_segment) -> kvm_sregs {
    let data = segment_from_gdt(BOOT_GDT[usize::from(DATA_INDEX)], DATA_INDEX);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(BOOT_GDT[usize::from(TSS_INDEX)], TSS_INDEX);
    sregs.gdt = kvm_dtable {
        base: BOOT_GDT_START,
        limit: (BOOT_GDT.len() * 8 - 1) as u16,
        ..Default::default()
    };
    sregs.idt = kvm_dtable {
        base: BOOT_IDT_START,
        limit: 7,
        ..Default::default()
    };
    sregs
}

/// Long mode with paging through `cr3`, flat segments from the boot GDT.
pub fn long_mode_sregs(sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    let code = segment_from_gdt(BOOT_GDT[usize::from(CODE_INDEX)], CODE_INDEX);
    let mut sregs = flat_segments(sregs, code);
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// A flat 4 GiB 32-bit code segment (D = 1, L = 0) for the PVH entry,
/// with the boot code selector (the kernel loads its own GDT at once).
const PVH_CODE: u64 = gdt_entry(0xc09b, 0, 0xfffff);

/// 32-bit protected mode with paging off and flat segments: the PVH entry
/// state (Xen's HVM direct boot ABI, which Linux's `pvh_start_xen` expects).
pub fn pvh_sregs(sregs: kvm_sregs) -> kvm_sregs {
    let mut sregs = flat_segments(sregs, segment_from_gdt(PVH_CODE, CODE_INDEX));
    sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_ET) & !CR0_PG;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// General registers at the PVH entry: `%ebx` holds the start-of-day
/// structure's address.
pub fn pvh_regs(entry: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rflags: RFLAGS_RESERVED,
        rip: entry,
        rbx: start_info,
        ..Default::default()
    }
}

/// General registers at the 64-bit entry point.
pub fn entry_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: RFLAGS_RESERVED,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

/// x87 and SSE control words at their power-on values.
pub fn initial_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// MSRs every vCPU starts with: `(index, value)`.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    const IA32_SYSENTER_CS: u32 = 0x174;
    const IA32_SYSENTER_ESP: u32 = 0x175;
    const IA32_SYSENTER_EIP: u32 = 0x176;
    const STAR: u32 = 0xc000_0081;
    const LSTAR: u32 = 0xc000_0082;
    const CSTAR: u32 = 0xc000_0083;
    const SYSCALL_MASK: u32 = 0xc000_0084;
    const KERNEL_GS_BASE: u32 = 0xc000_0102;
    const IA32_MISC_ENABLE: u32 = 0x1a0;
    const MISC_ENABLE_FAST_STRING: u64 = 1;
    const MTRR_DEF_TYPE: u32 = 0x2ff;
    const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;
    vec![
        (IA32_SYSENTER_CS, 0),
        (IA32_SYSENTER_ESP, 0),
        (IA32_SYSENTER_EIP, 0),
        (STAR, 0),
        (LSTAR, 0),
        (CSTAR, 0),
        (SYSCALL_MASK, 0),
        (KERNEL_GS_BASE, 0),
        (IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ]
}

/// Wires the local APIC's LINT0 to ExtINT (the PIC) and LINT1 to NMI, as
/// PC firmware leaves them (Intel SDM Vol. 3A §11.5.1, "Local Vector Table").
pub fn wire_lint_pins(lapic: &mut kvm_bindings::kvm_lapic_state) {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const DELIVERY_MODE_MASK: u32 = 0x700;
    const DELIVERY_EXTINT: u32 = 0x700;
    const DELIVERY_NMI: u32 = 0x400;
    for (reg, mode) in [(APIC_LVT0, DELIVERY_EXTINT), (APIC_LVT1, DELIVERY_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !DELIVERY_MODE_MASK) | mode;
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_gdt_entry_encodes_flat_64bit_code() {
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn test_segment_from_gdt_decodes_code_segment() {
        let s = segment_from_gdt(BOOT_GDT[2], 2);
        assert_eq!(
            (s.selector, s.type_, s.l, s.db, s.g, s.present, s.s),
            (0x10, 0xb, 1, 0, 1, 1, 1)
        );
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.base, 0);
    }

    #[test]
    fn test_segment_from_gdt_null_is_unusable() {
        assert_eq!(segment_from_gdt(0, 0).unusable, 1);
    }

    #[test]
    fn test_long_mode_sregs_enables_paging_and_lma() {
        let s = long_mode_sregs(kvm_sregs::default(), 0x9000);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, 0x9000);
        assert_eq!(s.cs.selector, 0x10);
        assert_eq!(s.ss.selector, 0x18);
        assert_eq!(s.tr.type_, 0xb);
    }

    #[test]
    fn test_pvh_sregs_are_flat_32_bit_protected_mode_without_paging() {
        let old = kvm_sregs {
            cr0: CR0_PG | CR0_PE,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            ..Default::default()
        };
        let s = pvh_sregs(old);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!((s.cs.db, s.cs.l, s.cs.g), (1, 0, 1), "32-bit code, 4 GiB");
        assert_eq!((s.cs.base, s.cs.limit), (0, 0xffff_ffff));
        assert_eq!((s.ds.base, s.ds.limit, s.ds.type_), (0, 0xffff_ffff, 3));
        let r = pvh_regs(0x100_0850, 0x7000);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0850, 0x7000, 2));
    }

    #[test]
    fn test_entry_regs_point_rsi_at_zero_page() {
        let r = entry_regs(0x100200);
        assert_eq!((r.rip, r.rsi, r.rflags), (0x100200, ZERO_PAGE_START, 2));
    }
}
