//! Register offsets and bits of the PCI Express Capability structure, version
//! 2 (PCIe 6.0 §7.5.3). Offsets are from the capability header.

/// PCI Express Capabilities register (§7.5.3.2).
pub const CAPS: usize = 0x02;
/// Device Capabilities (§7.5.3.3).
pub const DEVCAP: usize = 0x04;
/// Device Control (§7.5.3.4).
pub const DEVCTL: usize = 0x08;
/// Device Status (§7.5.3.5).
pub const DEVSTA: usize = 0x0a;
/// Link Capabilities (§7.5.3.6).
pub const LNKCAP: usize = 0x0c;
/// Link Control (§7.5.3.7).
pub const LNKCTL: usize = 0x10;
/// Link Status (§7.5.3.8).
pub const LNKSTA: usize = 0x12;
/// Slot Capabilities (§7.5.3.9).
pub const SLTCAP: usize = 0x14;
/// Slot Control (§7.5.3.10).
pub const SLTCTL: usize = 0x18;
/// Slot Status (§7.5.3.11).
pub const SLTSTA: usize = 0x1a;
/// Root Control (§7.5.3.12).
pub const RTCTL: usize = 0x1c;
/// Root Capabilities (§7.5.3.13).
pub const RTCAP: usize = 0x1e;
/// Root Status (§7.5.3.14).
pub const RTSTA: usize = 0x20;
/// Device Capabilities 2 (§7.5.3.15).
pub const DEVCAP2: usize = 0x24;
/// Device Control 2 (§7.5.3.16).
pub const DEVCTL2: usize = 0x28;
/// Link Capabilities 2 (§7.5.3.18).
pub const LNKCAP2: usize = 0x2c;
/// Link Control 2 (§7.5.3.19).
pub const LNKCTL2: usize = 0x30;
/// Link Status 2 (§7.5.3.20).
pub const LNKSTA2: usize = 0x32;

/// PCI Express Capabilities register bits.
pub mod caps {
    /// Capability version 2.
    pub const VERSION_2: u16 = 2;
    /// Shift of the Device/Port Type field (bits 7:4).
    pub const TYPE_SHIFT: u32 = 4;
    /// Device/Port Type: PCI Express Endpoint.
    pub const TYPE_ENDPOINT: u16 = 0b0000;
    /// Device/Port Type: Root Port of a Root Complex.
    pub const TYPE_ROOT_PORT: u16 = 0b0100;
    /// Device/Port Type: Root Complex Integrated Endpoint.
    pub const TYPE_RC_INTEGRATED: u16 = 0b1001;
    /// The port is connected to a slot.
    pub const SLOT_IMPLEMENTED: u16 = 1 << 8;
}

/// Device Capabilities bits.
pub mod devcap {
    /// Max_Payload_Size Supported field (2:0): 128 << value bytes.
    pub const MPS: u32 = 0b111;
    /// 8-bit tags supported.
    pub const EXT_TAG: u32 = 1 << 5;
    /// Endpoint L0s and L1 Acceptable Latency: no limit (bits 11:6).
    pub const EP_LATENCY_NO_LIMIT: u32 = 0b111_111 << 6;
    /// Role-Based Error Reporting (required since PCIe 1.1).
    pub const RBER: u32 = 1 << 15;
    /// Function Level Reset Capability (§7.5.3.3).
    pub const FLR: u32 = 1 << 28;
}

/// Device Control bits.
pub mod devctl {
    /// Correctable, Non-Fatal, Fatal and Unsupported Request reporting enables.
    pub const ERROR_REPORTING: u16 = 0b1111;
    /// Enable Relaxed Ordering.
    pub const RELAXED_ORDERING: u16 = 1 << 4;
    /// Max_Payload_Size field (7:5).
    pub const MPS: u16 = 0b111 << 5;
    /// Extended Tag Field Enable.
    pub const EXT_TAG: u16 = 1 << 8;
    /// Enable No Snoop.
    pub const NO_SNOOP: u16 = 1 << 11;
    /// Max_Read_Request_Size field (14:12).
    pub const MRRS: u16 = 0b111 << 12;
    /// MRRS reset value: 512 bytes.
    pub const MRRS_512: u16 = 0b010 << 12;
    /// Initiate Function Level Reset: writing 1 resets the function; it
    /// always reads 0 (§7.5.3.4).
    pub const INITIATE_FLR: u16 = 1 << 15;
}

/// Device Status bits.
pub mod devsta {
    /// Correctable Error Detected.
    pub const CORRECTABLE: u16 = 1 << 0;
    /// Non-Fatal Error Detected.
    pub const NON_FATAL: u16 = 1 << 1;
    /// Fatal Error Detected.
    pub const FATAL: u16 = 1 << 2;
    /// Unsupported Request Detected.
    pub const UNSUPPORTED_REQUEST: u16 = 1 << 3;
    /// The error bits, each cleared by writing 1.
    pub const W1C: u16 = CORRECTABLE | NON_FATAL | FATAL | UNSUPPORTED_REQUEST;
}

/// Link Capabilities bits.
pub mod lnkcap {
    /// Shift of Maximum Link Width (bits 9:4).
    pub const WIDTH_SHIFT: u32 = 4;
    /// Data Link Layer Link Active Reporting Capable.
    pub const DLLLA_REPORTING: u32 = 1 << 20;
    /// Link Bandwidth Notification Capability.
    pub const BW_NOTIFICATION: u32 = 1 << 21;
    /// ASPM Optionality Compliance.
    pub const ASPM_OPTIONALITY: u32 = 1 << 22;
    /// Shift of Port Number (bits 31:24).
    pub const PORT_SHIFT: u32 = 24;
}

/// Link Control bits.
pub mod lnkctl {
    /// ASPM Control (1:0).
    pub const ASPM: u16 = 0b11;
    /// Read Completion Boundary (endpoints).
    pub const RCB: u16 = 1 << 3;
    /// Link Disable (downstream ports).
    pub const LINK_DISABLE: u16 = 1 << 4;
    /// Common Clock Configuration.
    pub const COMMON_CLOCK: u16 = 1 << 6;
    /// Extended Synch.
    pub const EXTENDED_SYNCH: u16 = 1 << 7;
    /// Link Bandwidth Management and Autonomous Bandwidth interrupt enables.
    pub const BW_INTERRUPTS: u16 = 0b11 << 10;
}

/// Link Status bits.
pub mod lnksta {
    /// Shift of Negotiated Link Width (bits 9:4).
    pub const WIDTH_SHIFT: u32 = 4;
    /// Slot Clock Configuration: the reference clock is the platform's.
    pub const SLOT_CLOCK: u16 = 1 << 12;
    /// Data Link Layer Link Active.
    pub const DLLLA: u16 = 1 << 13;
    /// Link Bandwidth Management Status.
    pub const LBMS: u16 = 1 << 14;
    /// Link Autonomous Bandwidth Status.
    pub const LABS: u16 = 1 << 15;
}

/// Slot Capabilities bits.
pub mod sltcap {
    /// Attention Button Present.
    pub const ATTENTION_BUTTON: u32 = 1 << 0;
    /// Power Controller Present.
    pub const POWER_CONTROLLER: u32 = 1 << 1;
    /// MRL Sensor Present.
    pub const MRL_SENSOR: u32 = 1 << 2;
    /// Attention Indicator Present.
    pub const ATTENTION_INDICATOR: u32 = 1 << 3;
    /// Power Indicator Present.
    pub const POWER_INDICATOR: u32 = 1 << 4;
    /// Hot-Plug Surprise: the adapter may be removed without notice.
    pub const HOT_PLUG_SURPRISE: u32 = 1 << 5;
    /// Hot-Plug Capable.
    pub const HOT_PLUG_CAPABLE: u32 = 1 << 6;
    /// No Command Completed Support.
    pub const NO_COMMAND_COMPLETED: u32 = 1 << 18;
    /// Shift of Physical Slot Number (bits 31:19).
    pub const SLOT_SHIFT: u32 = 19;
}

/// Slot Control bits.
pub mod sltctl {
    /// Attention Button Pressed Enable.
    pub const ABP_ENABLE: u16 = 1 << 0;
    /// Power Fault Detected Enable.
    pub const PFD_ENABLE: u16 = 1 << 1;
    /// MRL Sensor Changed Enable.
    pub const MRLSC_ENABLE: u16 = 1 << 2;
    /// Presence Detect Changed Enable.
    pub const PDC_ENABLE: u16 = 1 << 3;
    /// Command Completed Interrupt Enable.
    pub const CC_ENABLE: u16 = 1 << 4;
    /// Hot-Plug Interrupt Enable.
    pub const HP_INTERRUPT_ENABLE: u16 = 1 << 5;
    /// Attention Indicator Control (7:6).
    pub const ATTENTION_INDICATOR: u16 = 0b11 << 6;
    /// Shift of Attention Indicator Control.
    pub const ATTENTION_INDICATOR_SHIFT: u32 = 6;
    /// Power Indicator Control (9:8).
    pub const POWER_INDICATOR: u16 = 0b11 << 8;
    /// Shift of Power Indicator Control.
    pub const POWER_INDICATOR_SHIFT: u32 = 8;
    /// Power Controller Control: 0 power on, 1 power off.
    pub const POWER_OFF: u16 = 1 << 10;
    /// Electromechanical Interlock Control.
    pub const INTERLOCK: u16 = 1 << 11;
    /// Data Link Layer State Changed Enable.
    pub const DLLSC_ENABLE: u16 = 1 << 12;
    /// Indicator value: on.
    pub const INDICATOR_ON: u16 = 0b01;
    /// Indicator value: blinking.
    pub const INDICATOR_BLINK: u16 = 0b10;
    /// Indicator value: off.
    pub const INDICATOR_OFF: u16 = 0b11;
}

/// Slot Status bits.
pub mod sltsta {
    /// Attention Button Pressed (RW1C).
    pub const ABP: u16 = 1 << 0;
    /// Power Fault Detected (RW1C).
    pub const PFD: u16 = 1 << 1;
    /// MRL Sensor Changed (RW1C).
    pub const MRLSC: u16 = 1 << 2;
    /// Presence Detect Changed (RW1C).
    pub const PDC: u16 = 1 << 3;
    /// Command Completed (RW1C).
    pub const CC: u16 = 1 << 4;
    /// MRL Sensor State (RO).
    pub const MRL_OPEN: u16 = 1 << 5;
    /// Presence Detect State (RO).
    pub const PRESENCE: u16 = 1 << 6;
    /// Electromechanical Interlock Status (RO).
    pub const INTERLOCK: u16 = 1 << 7;
    /// Data Link Layer State Changed (RW1C).
    pub const DLLSC: u16 = 1 << 8;
    /// The hot-plug events, each cleared by writing 1 (§7.5.3.11).
    pub const EVENTS: u16 = ABP | PFD | MRLSC | PDC | CC | DLLSC;
}

/// Root Control bits.
pub mod rtctl {
    /// System Error on Correctable/Non-Fatal/Fatal, PME Interrupt Enable.
    pub const WRITABLE: u16 = 0b1111;
}

/// Root Status bits.
pub mod rtsta {
    /// PME Requester ID (15:0).
    pub const REQUESTER: u32 = 0xffff;
    /// PME Status (RW1C).
    pub const PME_STATUS: u32 = 1 << 16;
    /// PME Pending (RO).
    pub const PME_PENDING: u32 = 1 << 17;
}

/// Device Capabilities 2 bits.
pub mod devcap2 {
    /// Completion Timeout Disable Supported.
    pub const CT_DISABLE: u32 = 1 << 4;
    /// ARI Forwarding Supported (downstream ports).
    pub const ARI_FORWARDING: u32 = 1 << 5;
}

/// Device Control 2 bits.
pub mod devctl2 {
    /// Completion Timeout Disable.
    pub const CT_DISABLE: u16 = 1 << 4;
    /// ARI Forwarding Enable.
    pub const ARI_FORWARDING: u16 = 1 << 5;
}

/// Link Control 2 bits.
pub mod lnkctl2 {
    /// Target Link Speed (3:0).
    pub const TARGET_SPEED: u16 = 0b1111;
    /// Hardware Autonomous Speed Disable.
    pub const HW_AUTONOMOUS_SPEED_DISABLE: u16 = 1 << 5;
}
