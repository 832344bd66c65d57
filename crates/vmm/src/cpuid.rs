//! CPUID as the guest sees it: KVM's supported set made coherent for the
//! machine iovm builds (one socket, `cpus` cores, one thread per core, APIC ID
//! = vCPU index).
//!
//! - Leaf 0x1: APIC ID, addressable logical processors, hypervisor bit.
//! - Leaf 0x4 (Intel caches): cores per package, sharing per cache level.
//! - Leaves 0xB / 0x1F (Intel SDM Vol. 2A, "V2 Extended Topology"): SMT and
//!   core levels with x2APIC IDs.
//! - Leaf 0xD (XSAVE, Intel SDM Vol. 1 §13.2): only state components that
//!   have a sub-leaf describing them are offered, and the reported sizes are
//!   recomputed from those sub-leaves, so the guest's own size check agrees.
//! - Leaves 0x8000_0001/0x8000_0008/0x8000_001E (AMD APM Vol. 3, App. E):
//!   legacy CMP bit, core count, extended APIC ID.
//!
//! Pure functions over `kvm_cpuid_entry2`, unit-tested without KVM.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: the package has more than one logical processor.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// AMD leaf 0x8000_0001 ECX: core multi-processing legacy mode.
const EXT1_ECX_CMP_LEGACY: u32 = 1 << 1;
/// Size of the legacy XSAVE area (x87 + SSE) plus the XSAVE header.
const XSAVE_LEGACY_AND_HEADER: u32 = 576;

/// Topology level types used in leaves 0xB and 0x1F.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// The shape of the machine, as CPUID must describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Number of vCPUs (cores) in the single package.
    pub cpus: u32,
}

impl Topology {
    /// Bits of the APIC ID that number the cores in the package.
    pub fn core_id_bits(&self) -> u32 {
        self.cpus.next_power_of_two().trailing_zeros()
    }
}

fn set_bits(reg: &mut u32, shift: u32, width: u32, value: u32) {
    let mask = ((1u64 << width) - 1) as u32;
    *reg = (*reg & !(mask << shift)) | ((value & mask) << shift);
}

/// The XCR0 value matching the XSAVE components `entries` offer (leaf 0xD
/// sub-leaf 0), or `None` when the CPU has no XSAVE (leaf 1 ECX bit 26).
///
/// iovm loads it into every vCPU before the guest starts. KVM computes the
/// "size for the enabled features" (leaf 0xD.0 EBX) from the vCPU's XCR0 and
/// updates it when the guest executes XSETBV; where that exit never reaches
/// KVM (seen under nested SVM on an emulated CPU), a guest would read the
/// size for the reset value XCR0 = 1 while using more, and Linux warns
/// "XSAVE consistency problem". Starting with the full mask makes the size
/// right from the first instruction; the guest then writes the same value.
pub fn initial_xcr0(entries: &[kvm_cpuid_entry2]) -> Option<u64> {
    const LEAF1_ECX_XSAVE: u32 = 1 << 26;
    let leaf1 = entries.iter().find(|e| e.function == 1)?;
    if leaf1.ecx & LEAF1_ECX_XSAVE == 0 {
        return None;
    }
    let d = entries.iter().find(|e| e.function == 0xd && e.index == 0)?;
    Some(u64::from(d.eax) | (u64::from(d.edx) << 32))
}

/// Rewrites `entries` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `apic_id`.
pub fn make_coherent(entries: &mut Vec<kvm_cpuid_entry2>, apic_id: u32, topo: Topology) {
    let has_leaf =
        |entries: &Vec<kvm_cpuid_entry2>, f: u32| entries.iter().any(|e| e.function == f);
    let have_1f = has_leaf(entries, 0x1f);
    for e in entries.iter_mut() {
        match e.function {
            0x1 => leaf_1(e, apic_id, topo),
            0x4 => leaf_4(e, topo),
            0xb => extended_topology(e, apic_id, topo),
            0x1f if have_1f => extended_topology(e, apic_id, topo),
            0x8000_0001 if topo.cpus > 1 => e.ecx |= EXT1_ECX_CMP_LEGACY,
            0x8000_0008 => {
                set_bits(&mut e.ecx, 0, 8, topo.cpus - 1);
                set_bits(&mut e.ecx, 12, 4, topo.core_id_bits());
            }
            0x8000_001e => {
                e.eax = apic_id;
                e.ebx = apic_id & 0xff;
                e.ecx = 0;
            }
            _ => {}
        }
    }
    xsave_leaf(entries);
}

fn leaf_1(e: &mut kvm_cpuid_entry2, apic_id: u32, topo: Topology) {
    set_bits(&mut e.ebx, 24, 8, apic_id);
    set_bits(&mut e.ebx, 16, 8, topo.cpus.next_power_of_two());
    set_bits(&mut e.ebx, 8, 8, 8); // CLFLUSH line size: 8 × 8 bytes.
    set_bits(&mut e.ebx, 0, 8, 0);
    e.ecx |= LEAF1_ECX_HYPERVISOR;
    if topo.cpus > 1 {
        e.edx |= LEAF1_EDX_HTT;
    } else {
        e.edx &= !LEAF1_EDX_HTT;
    }
}

fn leaf_4(e: &mut kvm_cpuid_entry2, topo: Topology) {
    let cache_type = e.eax & 0x1f;
    if cache_type == 0 {
        return;
    }
    let level = (e.eax >> 5) & 0x7;
    let sharing = if level >= 3 { topo.cpus - 1 } else { 0 };
    set_bits(&mut e.eax, 26, 6, topo.cpus.next_power_of_two() - 1);
    set_bits(&mut e.eax, 14, 12, sharing);
}

fn extended_topology(e: &mut kvm_cpuid_entry2, apic_id: u32, topo: Topology) {
    e.edx = apic_id;
    match e.index {
        0 => {
            e.eax = 0;
            e.ebx = 1;
            e.ecx = (LEVEL_TYPE_SMT << 8) | e.index;
        }
        1 => {
            e.eax = topo.core_id_bits();
            e.ebx = topo.cpus;
            e.ecx = (LEVEL_TYPE_CORE << 8) | e.index;
        }
        _ => {
            e.eax = 0;
            e.ebx = 0;
            e.ecx = e.index;
        }
    }
}

/// Keeps only XSAVE components that are described by a sub-leaf, and makes
/// the sizes in sub-leaf 0 agree with them.
fn xsave_leaf(entries: &mut [kvm_cpuid_entry2]) {
    let Some(main) = entries.iter().find(|e| e.function == 0xd && e.index == 0) else {
        return;
    };
    let offered = u64::from(main.eax) | (u64::from(main.edx) << 32);
    let mut kept = offered & 0x3;
    let mut max_end = XSAVE_LEGACY_AND_HEADER;
    for bit in 2..64u32 {
        if offered & (1 << bit) == 0 {
            continue;
        }
        let sub = entries.iter().find(|e| e.function == 0xd && e.index == bit);
        match sub {
            Some(s) if s.eax != 0 => {
                kept |= 1 << bit;
                // Supervisor components (ECX bit 0) live only in the compacted form.
                if s.ecx & 1 == 0 {
                    max_end = max_end.max(s.ebx.saturating_add(s.eax));
                }
            }
            _ => {}
        }
    }
    for e in entries.iter_mut().filter(|e| e.function == 0xd) {
        if e.index == 0 {
            e.eax = kept as u32;
            e.edx = (kept >> 32) as u32;
            e.ecx = max_end;
            e.ebx = e.ebx.min(max_end);
        } else if e.index >= 2
            && e.index < 64
            && kept & (1 << e.index) == 0
            && offered & (1 << e.index) != 0
        {
            *e = kvm_cpuid_entry2 {
                function: 0xd,
                index: e.index,
                flags: e.flags,
                ..Default::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        function: u32,
        index: u32,
        eax: u32,
        ebx: u32,
        ecx: u32,
        edx: u32,
    ) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn find(entries: &[kvm_cpuid_entry2], f: u32, i: u32) -> kvm_cpuid_entry2 {
        *entries
            .iter()
            .find(|e| e.function == f && e.index == i)
            .unwrap()
    }

    #[test]
    fn test_leaf1_carries_apic_id_and_hypervisor_bit() {
        let mut v = vec![entry(1, 0, 0, 0xffff_ffff, 0, 0)];
        make_coherent(&mut v, 3, Topology { cpus: 4 });
        let e = find(&v, 1, 0);
        assert_eq!(e.ebx >> 24, 3);
        assert_eq!((e.ebx >> 16) & 0xff, 4);
        assert_ne!(e.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(e.edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn test_leaf1_single_cpu_clears_htt() {
        let mut v = vec![entry(1, 0, 0, 0, 0, LEAF1_EDX_HTT)];
        make_coherent(&mut v, 0, Topology { cpus: 1 });
        assert_eq!(find(&v, 1, 0).edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn test_leaf_b_describes_smt_and_core_levels() {
        let mut v = vec![
            entry(0xb, 0, 9, 9, 9, 9),
            entry(0xb, 1, 9, 9, 9, 9),
            entry(0xb, 2, 9, 9, 9, 9),
        ];
        make_coherent(&mut v, 2, Topology { cpus: 3 });
        assert_eq!(find(&v, 0xb, 0), entry(0xb, 0, 0, 1, 0x100, 2));
        assert_eq!(find(&v, 0xb, 1), entry(0xb, 1, 2, 3, 0x201, 2));
        assert_eq!(find(&v, 0xb, 2), entry(0xb, 2, 0, 0, 2, 2));
    }

    #[test]
    fn test_leaf_1f_mirrors_leaf_b() {
        let mut v = vec![entry(0x1f, 1, 0, 0, 0, 0)];
        make_coherent(&mut v, 1, Topology { cpus: 2 });
        assert_eq!(find(&v, 0x1f, 1), entry(0x1f, 1, 1, 2, 0x201, 1));
    }

    #[test]
    fn test_leaf4_l3_shared_by_all_cores() {
        let l1 = (1 << 5) | 1;
        let l3 = (3 << 5) | 3;
        let mut v = vec![entry(4, 0, l1, 0, 0, 0), entry(4, 3, l3, 0, 0, 0)];
        make_coherent(&mut v, 0, Topology { cpus: 2 });
        assert_eq!((find(&v, 4, 0).eax >> 14) & 0xfff, 0);
        assert_eq!((find(&v, 4, 3).eax >> 14) & 0xfff, 1);
        assert_eq!(find(&v, 4, 3).eax >> 26, 1);
    }

    #[test]
    fn test_amd_core_count_leaves() {
        let mut v = vec![
            entry(0x8000_0008, 0, 0, 0, 0, 0),
            entry(0x8000_001e, 0, 0, 0, 0, 0),
        ];
        make_coherent(&mut v, 1, Topology { cpus: 2 });
        assert_eq!(find(&v, 0x8000_0008, 0).ecx, 1 | (1 << 12));
        assert_eq!(find(&v, 0x8000_001e, 0).eax, 1);
    }

    #[test]
    fn test_xsave_drops_components_without_subleaf_and_resizes() {
        // x87|SSE|AVX|PKRU offered, but only AVX (bit 2) is described.
        let offered = 0b11 | (1 << 2) | (1 << 9);
        let mut v = vec![
            entry(0xd, 0, offered, 2696, 2696, 0),
            entry(0xd, 2, 256, 576, 0, 0),
            entry(0xd, 9, 0, 0, 0, 0),
        ];
        make_coherent(&mut v, 0, Topology { cpus: 1 });
        let main = find(&v, 0xd, 0);
        assert_eq!(main.eax, 0b111);
        assert_eq!(main.ecx, 832);
        assert!(main.ebx <= 832);
    }

    #[test]
    fn test_initial_xcr0_is_offered_mask_when_xsave_present() {
        let v = vec![
            entry(1, 0, 0, 0, 1 << 26, 0),
            entry(0xd, 0, 0x207, 576, 2696, 0),
        ];
        assert_eq!(initial_xcr0(&v), Some(0x207));
        let no_xsave = vec![entry(1, 0, 0, 0, 0, 0), entry(0xd, 0, 0x207, 576, 2696, 0)];
        assert_eq!(initial_xcr0(&no_xsave), None);
    }

    #[test]
    fn test_xsave_keeps_described_components() {
        let offered = 0b11 | (1 << 2) | (1 << 9);
        let mut v = vec![
            entry(0xd, 0, offered, 2696, 2696, 0),
            entry(0xd, 2, 256, 576, 0, 0),
            entry(0xd, 9, 8, 2688, 0, 0),
        ];
        make_coherent(&mut v, 0, Topology { cpus: 1 });
        assert_eq!(find(&v, 0xd, 0).eax, offered);
        assert_eq!(find(&v, 0xd, 0).ecx, 2696);
    }
}
