//! Fuzzes a hot-plug root port (`pci::bridge::RootPort` with
//! `pci::caps::slot`): configuration writes of any width at any offset,
//! most into its PCI Express capability (Slot Control and Status), mixed
//! with the VMM's own events (an adapter arriving or leaving, the
//! attention button).
//!
//! Input layout: records of 7 bytes: a 2-byte selector (0xFFF0-0xFFFF: a
//! VMM event, low bits picking presence on, presence off or the button;
//! else bit 15 set: an offset relative to the PCI Express capability, else
//! anywhere in the 4 KiB space), a width selector (1, 2, 4 or 8 bytes, or
//! an odd 3), then 4 bytes of value. Nothing may panic, and after every
//! step: Slot Capabilities keep their value, the link is up exactly when
//! an adapter is present and the slot powered, Presence Detect State is
//! what the VMM last set, the read-only Slot Control bits stay 0 and no
//! indicator holds the reserved 00b, and INTA is asserted exactly when the
//! hot-plug interrupt is pending, MSI off and INTx not disabled.

#![no_main]

use std::sync::Arc;

use irq::recording::{RecordingLine, RecordingVectors};
use libfuzzer_sys::fuzz_target;
use pci::bridge::{PortInterrupts, RootPort, RootPortConfig};
use pci::caps::pcie_regs::{lnksta, sltctl, sltsta, LNKSTA, SLTCAP, SLTCTL, SLTSTA};
use pci::config::{command, COMMAND};
use pci::function::PciFunction;

fn read(port: &RootPort, offset: usize, len: usize) -> u32 {
    let mut d = [0u8; 4];
    port.config_read(offset, &mut d[..len]);
    u32::from_le_bytes(d)
}

fuzz_target!(|data: &[u8]| {
    let mut port = RootPort::new(RootPortConfig {
        slot: 3,
        present: false,
        hotplug: true,
        ..Default::default()
    })
    .expect("root port");
    let intx = Arc::new(RecordingLine::new());
    port.connect_interrupts(PortInterrupts {
        msi: Arc::new(RecordingVectors::new()),
        intx: intx.clone(),
    });
    let at = port.caps().pcie().expect("PCI Express").offset();
    let cap = read(&port, at + SLTCAP, 4);
    let mut present = false;
    for r in data.chunks_exact(7) {
        let raw = u16::from_le_bytes([r[0], r[1]]);
        if raw >= 0xfff0 {
            match raw % 3 {
                0 => present = true,
                1 => present = false,
                _ => {
                    port.press_attention_button();
                }
            }
            if raw % 3 < 2 {
                port.set_presence(present);
            }
        } else {
            let raw = usize::from(raw);
            let offset = if raw & 0x8000 != 0 {
                at + (raw & 0x3f)
            } else {
                raw & 0xfff
            };
            let width = [1usize, 2, 4, 8, 3][usize::from(r[2]) % 5];
            let mut bytes = [0u8; 8];
            bytes[..4].copy_from_slice(&r[3..7]);
            bytes[4..].copy_from_slice(&r[3..7]);
            port.write(offset, &bytes[..width]);
        }

        assert_eq!(read(&port, at + SLTCAP, 4), cap);
        let ctl = read(&port, at + SLTCTL, 2) as u16;
        let sta = read(&port, at + SLTSTA, 2) as u16;
        let link = read(&port, at + LNKSTA, 2) as u16 & lnksta::DLLLA != 0;
        let powered = ctl & sltctl::POWER_OFF == 0;
        assert_eq!(link, present && powered);
        assert_eq!(sta & sltsta::PRESENCE != 0, present);
        let ro = sltctl::PFD_ENABLE | sltctl::MRLSC_ENABLE | sltctl::INTERLOCK | 0xe000;
        assert_eq!(ctl & ro, 0);
        assert_ne!(ctl & sltctl::ATTENTION_INDICATOR, 0);
        assert_ne!(ctl & sltctl::POWER_INDICATOR, 0);
        let slot = port.slot().expect("slot");
        let pending = slot.interrupt_pending(port.config().regs());
        let msi = port
            .caps()
            .msi()
            .expect("MSI")
            .state(port.config().regs())
            .enabled;
        let disabled = read(&port, COMMAND, 2) as u16 & command::INTX_DISABLE != 0;
        assert_eq!(intx.level(), pending && !msi && !disabled);
    }
});
