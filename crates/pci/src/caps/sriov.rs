//! The Single Root I/O Virtualization extended capability of a physical
//! function (PCIe 6.0 §9.3.3): how many virtual functions exist, where
//! their routing IDs are, and where their memory BARs decode.
//!
//! ```text
//!  +0x00 header: ID 0x0010, version 1
//!  +0x04 SR-IOV Capabilities        RO 0 (no VF migration)
//!  +0x08 Control: VF Enable, VF MSE, ARI Capable Hierarchy   RW
//!  +0x0A Status                     RO 0 (no migration)
//!  +0x0C InitialVFs = TotalVFs      +0x0E TotalVFs          RO
//!  +0x10 NumVFs                     RW (locked while VF Enable)
//!  +0x12 Function Dependency Link   RO (the PF's own function number)
//!  +0x14 First VF Offset = 1        +0x16 VF Stride = 1     RO (ARI or not)
//!  +0x1A VF Device ID               RO
//!  +0x1C Supported Page Sizes       RO    +0x20 System Page Size  RW, one supported bit
//!  +0x24..0x3B VF BAR0–5            BAR semantics, granule max(size, system page)
//!  +0x3C VF Migration State Array   RO 0
//! ```
//!
//! VF *i* (0-based) has routing ID PF + First VF Offset + i × VF Stride and
//! decodes its BAR *n* at VF BAR*n* + i × the BAR's granule, while VF Enable
//! and VF MSE are both set and i < NumVFs (§9.3.3.14).
//!
//! | Hostile guest write                         | What happens                                   |
//! |---------------------------------------------|------------------------------------------------|
//! | VF Enable with NumVFs > TotalVFs            | VF Enable stays clear: nothing is enabled      |
//! | NumVFs, ARI Capable Hierarchy or System Page Size while VF Enable is set | discarded (old value kept) |
//! | System Page Size with no or several bits, or an unsupported one | discarded                    |
//! | VF BAR all-ones, odd widths, odd offsets    | sizing like a BAR: address bits above the granule only |
//! | VF MSE without VF Enable                    | stored; nothing decodes until VF Enable        |
//! | migration bits, IDs, offsets, read-only fields | ignored                                     |

use super::sriov_regs::{control, page_size, *};
use super::{get, put, CapError};
use crate::bar::{BarSpec, TYPE0_BARS};
use crate::config::BarWindow;
use crate::regs::RegisterMask;

/// Warnings a PF logs for refused guest values before it goes quiet.
const WARN_BUDGET: u32 = 16;

/// How the capability is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SriovConfig {
    /// TotalVFs (and InitialVFs), at least 1. The VFs' function numbers must
    /// fit below 256 after the PF's: at most `255 - pf_function`.
    pub total_vfs: u16,
    /// The PF's own function number (Function Dependency Link, and where
    /// the VFs' routing IDs start counting from).
    pub pf_function: u8,
    /// VF Device ID.
    pub vf_device_id: u16,
    /// The memory BARs every VF has (I/O BARs are not allowed for VFs).
    pub vf_bars: Vec<BarSpec>,
    /// Supported Page Sizes; must include 4 KiB
    /// ([`page_size::REQUIRED`] is what the spec requires).
    pub supported_page_sizes: u32,
}

/// VF Enable changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfChange {
    /// VF Enable was set with this many VFs (NumVFs at that moment).
    Enabled(u16),
    /// VF Enable was cleared: the VFs are gone.
    Disabled,
}

/// What a guest configuration write changed in the SR-IOV capability, for
/// the VMM to act on (create or remove VFs, map or unmap their BARs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SriovEffect {
    /// VF Enable flipped.
    pub vfs: Option<VfChange>,
    /// VF MSE flipped (the new value).
    pub memory_space: Option<bool>,
    /// A VF BAR moved or its granule changed (System Page Size).
    pub bars_moved: bool,
}

/// The capability's state as the guest programmed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SriovState {
    /// SR-IOV Control.
    pub control: u16,
    /// NumVFs as written (may exceed TotalVFs; then VF Enable cannot be set).
    pub num_vfs: u16,
    /// System Page Size.
    pub system_page_size: u32,
    /// Each VF BAR's programmed base.
    pub bar_bases: Vec<u64>,
}

impl SriovState {
    /// VF Enable.
    pub fn vf_enabled(&self) -> bool {
        self.control & control::VF_ENABLE != 0
    }

    /// VF Memory Space Enable.
    pub fn memory_space(&self) -> bool {
        self.control & control::VF_MSE != 0
    }

    /// ARI Capable Hierarchy.
    pub fn ari(&self) -> bool {
        self.control & control::ARI_CAPABLE_HIERARCHY != 0
    }
}

/// First VF Offset (PCIe 6.0 §9.3.3.9): VF 0 is the function right after
/// the PF.
pub const FIRST_VF_OFFSET_VALUE: u16 = 1;
/// VF Stride (§9.3.3.10): the VFs follow one another one routing ID apart.
pub const VF_STRIDE_VALUE: u16 = 1;

/// How many of `total` VFs of a PF at `pf_function` a hierarchy reaches.
///
/// The VFs sit at the routing IDs after the PF's ([`FIRST_VF_OFFSET_VALUE`],
/// [`VF_STRIDE_VALUE`]), the same numbers in both kinds of hierarchy (both
/// non-zero whatever NumVFs is, as Linux requires); what differs is how many
/// of them a configuration request can reach. In an ARI hierarchy (ARI
/// Capable Hierarchy set, §6.13) every one of the 256 routing IDs of the
/// PF's bus is a function of its device: `255 - pf_function` VFs. Without
/// ARI only functions 0–7 of device 0 are reachable below a downstream port
/// (§7.3.1): `7 - pf_function`; a VF past function 7 would land on a device
/// number the port does not forward to.
pub fn reachable_vfs(pf_function: u8, ari: bool, total: u16) -> u16 {
    let last: u16 = if ari { 255 } else { 7 };
    total.min(last.saturating_sub(u16::from(pf_function)))
}

/// A placed SR-IOV capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sriov {
    offset: usize,
    config: SriovConfig,
    warn_budget: u32,
}

impl Sriov {
    pub(super) fn install(
        config: SriovConfig,
        regs: &mut RegisterMask,
        offset: usize,
    ) -> Result<Self, CapError> {
        config.validate()?;
        let r = |reg: usize| offset + reg;
        regs.set_masks(r(CAPABILITIES), 4, 0, 0)?;
        regs.set_masks(r(CONTROL), 2, control::WRITABLE.into(), 0)?;
        regs.set_value(r(INITIAL_VFS), 2, config.total_vfs.into())?;
        regs.set_value(r(TOTAL_VFS), 2, config.total_vfs.into())?;
        regs.set_masks(r(NUM_VFS), 2, 0xffff, 0)?;
        regs.set_value(r(FUNCTION_DEPENDENCY), 1, config.pf_function.into())?;
        regs.set_value(r(VF_DEVICE_ID), 2, config.vf_device_id.into())?;
        regs.set_value(
            r(SUPPORTED_PAGE_SIZES),
            4,
            config.supported_page_sizes.into(),
        )?;
        regs.set_value(r(SYSTEM_PAGE_SIZE), 4, page_size::SIZE_4K.into())?;
        regs.set_masks(r(SYSTEM_PAGE_SIZE), 4, 0xffff_ffff, 0)?;
        regs.set_value(r(FIRST_VF_OFFSET), 2, FIRST_VF_OFFSET_VALUE.into())?;
        regs.set_value(r(VF_STRIDE), 2, VF_STRIDE_VALUE.into())?;
        let sriov = Self {
            offset,
            config,
            warn_budget: WARN_BUDGET,
        };
        sriov.install_bar_masks(regs, page_size::SIZE_4K)?;
        Ok(sriov)
    }

    /// Offset of the capability header.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// How it was built.
    pub fn config(&self) -> &SriovConfig {
        &self.config
    }

    /// The state as in configuration space now.
    pub fn state(&self, regs: &RegisterMask) -> SriovState {
        SriovState {
            control: get(regs, self.offset + CONTROL, 2) as u16,
            num_vfs: get(regs, self.offset + NUM_VFS, 2) as u16,
            system_page_size: get(regs, self.offset + SYSTEM_PAGE_SIZE, 4) as u32,
            bar_bases: self
                .config
                .vf_bars
                .iter()
                .map(|b| b.address(get(regs, self.bar_register(b), 4 * b.registers())))
                .collect(),
        }
    }

    /// First VF Offset and VF Stride as they read now.
    pub fn routing(&self, regs: &RegisterMask) -> (u16, u16) {
        (
            get(regs, self.offset + FIRST_VF_OFFSET, 2) as u16,
            get(regs, self.offset + VF_STRIDE, 2) as u16,
        )
    }

    /// The function number VF `vf` has on the PF's bus under ARI (the PF's
    /// function number plus First VF Offset plus `vf` × VF Stride), if it
    /// is below 256.
    pub fn vf_function(&self, regs: &RegisterMask, vf: u16) -> Option<u8> {
        let (offset, stride) = self.routing(regs);
        let f = u32::from(self.config.pf_function)
            + u32::from(offset)
            + u32::from(vf) * u32::from(stride);
        u8::try_from(f).ok()
    }

    /// Bytes each VF's BAR `bar` decodes: its size rounded up to the System
    /// Page Size (§9.3.3.13: VF BARs are aligned to it).
    fn granule(bar: &BarSpec, system_page_size: u32) -> u64 {
        bar.size.max(page_size::bytes(system_page_size))
    }

    fn bar_register(&self, bar: &BarSpec) -> usize {
        self.offset + VF_BAR0 + 4 * bar.index
    }

    /// The BAR specs VFs have under the System Page Size now (size = granule).
    pub fn vf_bar_specs(&self, regs: &RegisterMask) -> Vec<BarSpec> {
        let page = get(regs, self.offset + SYSTEM_PAGE_SIZE, 4) as u32;
        self.config
            .vf_bars
            .iter()
            .map(|b| BarSpec {
                size: Self::granule(b, page),
                ..*b
            })
            .collect()
    }

    /// The window each BAR of VF `vf` (0-based) decodes now: VF BAR + `vf`
    /// × granule while VF Enable and VF MSE are set and `vf` < NumVFs ≤
    /// TotalVFs, `None` otherwise.
    pub fn vf_bar_windows(
        &self,
        regs: &RegisterMask,
        vf: u16,
    ) -> Vec<(BarSpec, Option<BarWindow>)> {
        let st = self.state(regs);
        let decodes = st.vf_enabled()
            && st.memory_space()
            && vf < st.num_vfs
            && st.num_vfs <= self.config.total_vfs;
        self.vf_bar_specs(regs)
            .into_iter()
            .zip(st.bar_bases)
            .map(|(spec, base)| {
                let window = decodes
                    .then(|| base.checked_add(u64::from(vf) * spec.size))
                    .flatten()
                    .map(|addr| BarWindow {
                        addr,
                        size: spec.size,
                    });
                (spec, window)
            })
            .collect()
    }

    /// Gives each VF BAR the writable address bits of its granule under
    /// `system_page_size`, and drops address bits below it.
    fn install_bar_masks(
        &self,
        regs: &mut RegisterMask,
        system_page_size: u32,
    ) -> Result<(), CapError> {
        for bar in &self.config.vf_bars {
            let spec = BarSpec {
                size: Self::granule(bar, system_page_size),
                ..*bar
            };
            let at = self.bar_register(bar);
            let len = 4 * spec.registers();
            let old = get(regs, at, len);
            regs.set_value(
                at,
                len,
                (old & spec.writable_mask()) | u64::from(spec.type_bits()),
            )?;
            regs.set_masks(at, len, spec.writable_mask(), 0)?;
        }
        Ok(())
    }

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.warn_budget > 0 {
            self.warn_budget -= 1;
            tracing::warn!("SR-IOV: {what}");
        } else {
            tracing::debug!("SR-IOV: {what}");
        }
    }

    /// Finishes a guest write already applied to `regs`: puts back what
    /// the spec locks or refuses, recomputes First VF Offset and VF Stride,
    /// and says what changed.
    pub(super) fn after_write(
        &mut self,
        old: SriovState,
        regs: &mut RegisterMask,
    ) -> Option<SriovEffect> {
        let base = self.offset;
        let r = |reg: usize| base + reg;
        let mut new = self.state(regs);
        if old.vf_enabled() {
            // NumVFs, ARI Capable Hierarchy and System Page Size must not
            // change while VF Enable is set (§9.3.3.3, .7, .13).
            if new.num_vfs != old.num_vfs
                || new.ari() != old.ari()
                || new.system_page_size != old.system_page_size
            {
                self.warn(format_args!(
                    "NumVFs/ARI/System Page Size written while VF Enable is set: discarded"
                ));
            }
            new.num_vfs = old.num_vfs;
            new.system_page_size = old.system_page_size;
            new.control = (new.control & !control::ARI_CAPABLE_HIERARCHY)
                | (old.control & control::ARI_CAPABLE_HIERARCHY);
        }
        let page_ok = new.system_page_size.count_ones() == 1
            && new.system_page_size & self.config.supported_page_sizes != 0;
        if !page_ok {
            self.warn(format_args!(
                "System Page Size {:#x} is not one supported size: discarded",
                new.system_page_size
            ));
            new.system_page_size = old.system_page_size;
        }
        let total = self.config.total_vfs;
        if !old.vf_enabled() && new.vf_enabled() && new.num_vfs > total {
            self.warn(format_args!(
                "VF Enable with NumVFs {} > TotalVFs {total}: nothing enabled",
                new.num_vfs
            ));
            new.control &= !control::VF_ENABLE;
        }
        put(regs, r(CONTROL), 2, new.control.into());
        put(regs, r(NUM_VFS), 2, new.num_vfs.into());
        put(regs, r(SYSTEM_PAGE_SIZE), 4, new.system_page_size.into());
        if new.system_page_size != old.system_page_size {
            self.install_bar_masks(regs, new.system_page_size).ok();
        }
        self.effect(&old, regs)
    }

    /// What changed from `old` to the state in `regs` now.
    fn effect(&self, old: &SriovState, regs: &RegisterMask) -> Option<SriovEffect> {
        let now = self.state(regs);
        let vfs = match (old.vf_enabled(), now.vf_enabled()) {
            (false, true) => Some(VfChange::Enabled(now.num_vfs)),
            (true, false) => Some(VfChange::Disabled),
            _ => None,
        };
        let memory_space = (old.memory_space() != now.memory_space()).then_some(now.memory_space());
        let bars_moved =
            old.bar_bases != now.bar_bases || old.system_page_size != now.system_page_size;
        let effect = SriovEffect {
            vfs,
            memory_space,
            bars_moved,
        };
        (effect != SriovEffect::default()).then_some(effect)
    }

    /// A reset of the PF (FLR, or a conventional reset): VF Enable, VF MSE
    /// and ARI Capable Hierarchy clear, NumVFs returns to 0, System Page
    /// Size to 4 KiB and the VF BARs to 0 (§9.3.3.3; the VFs go away).
    /// Returns the effect to apply (VFs disabled), if any.
    pub fn reset(&mut self, regs: &mut RegisterMask) -> Option<SriovEffect> {
        let old = self.state(regs);
        put(regs, self.offset + CONTROL, 2, 0);
        put(regs, self.offset + NUM_VFS, 2, 0);
        put(
            regs,
            self.offset + SYSTEM_PAGE_SIZE,
            4,
            page_size::SIZE_4K.into(),
        );
        for bar in &self.config.vf_bars {
            let len = 4 * bar.registers();
            put(regs, self.bar_register(bar), len, bar.type_bits().into());
        }
        self.install_bar_masks(regs, page_size::SIZE_4K).ok();
        self.effect(&old, regs)
    }
}

impl SriovConfig {
    /// Checks the VF count, the page sizes and the VF BARs (memory only,
    /// valid, in distinct registers).
    pub fn validate(&self) -> Result<(), CapError> {
        let reachable = reachable_vfs(self.pf_function, true, self.total_vfs);
        if self.total_vfs == 0 || reachable < self.total_vfs {
            return Err(CapError::Sriov(
                "TotalVFs must be 1 to 255 - the PF's function",
            ));
        }
        if self.supported_page_sizes & page_size::SIZE_4K == 0 {
            return Err(CapError::Sriov("Supported Page Sizes must include 4 KiB"));
        }
        let mut used = [false; TYPE0_BARS];
        for bar in &self.vf_bars {
            bar.validate()
                .map_err(|_| CapError::Sriov("a VF BAR has a bad size or index"))?;
            if bar.is_io() {
                return Err(CapError::Sriov("a VF BAR decodes I/O space"));
            }
            for slot in &mut used[bar.index..bar.index + bar.registers()] {
                if std::mem::replace(slot, true) {
                    return Err(CapError::Sriov("two VF BARs claim one register"));
                }
            }
        }
        Ok(())
    }
}
