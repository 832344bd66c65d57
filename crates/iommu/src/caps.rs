//! What the emulated remapping hardware supports (VT-d 4.1 §11.4.2, the
//! Capability register, and §11.4.3, the Extended Capability register):
//! the parts of CAP/ECAP the table checks and the page walk depend on.

/// The supported widths, page sizes and translation types; the registers
/// will report the same values as CAP.SAGAW, CAP.MGAW, CAP.SLLPS and
/// ECAP.PT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// 39-bit guest addresses with 3-level tables (CAP.SAGAW bit 1, §11.4.2).
    pub width_39: bool,
    /// 48-bit guest addresses with 4-level tables (CAP.SAGAW bit 2, §11.4.2).
    pub width_48: bool,
    /// Host address width: table and page addresses must be below
    /// `2^host_address_width`; the bits above are reserved (§9.1, §9.3,
    /// §9.8). Clamped to 12..=52 where used.
    pub host_address_width: u8,
    /// 2 MiB superpages (CAP.SLLPS bit 0, §11.4.2).
    pub page_2m: bool,
    /// 1 GiB superpages (CAP.SLLPS bit 1, §11.4.2).
    pub page_1g: bool,
    /// Pass-through context entries, TT = 10b (ECAP.PT, §11.4.3).
    pub pass_through: bool,
}

impl Capabilities {
    /// What iovm will advertise (the brief's recommendation): 39- and
    /// 48-bit widths, 2 MiB and 1 GiB pages, pass-through, 48-bit host
    /// addresses.
    pub const DEFAULT: Self = Self {
        width_39: true,
        width_48: true,
        host_address_width: 48,
        page_2m: true,
        page_1g: true,
        pass_through: true,
    };

    /// The maximum guest address width (CAP.MGAW + 1, §11.4.2): the widest
    /// supported width, or 39 if none is.
    pub fn max_guest_address_width(&self) -> u8 {
        if self.width_48 {
            48
        } else {
            39
        }
    }

    /// Mask of the address bits at and above the host address width
    /// (reserved in table pointers, §9.1, §9.3), up to bit 63.
    pub(crate) fn above_haw(&self) -> u64 {
        let haw = self.host_address_width.clamp(12, 52);
        !((1u64 << haw) - 1)
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::DEFAULT
    }
}
