//! A hot-plug root port driven as Linux's `pciehp` drives one: its slot
//! registers (PCIe 6.0 §7.5.3.9–§7.5.3.11), the adapter arriving and
//! leaving, and the hot-plug interrupt (§6.7.3.4) through MSI and INTx.

use std::sync::Arc;

use irq::recording::{RecordingLine, RecordingVectors};

use super::*;
use crate::caps::msi;
use crate::caps::pcie_regs::*;
use crate::caps::slot::Indicator;
use crate::config::{COMMAND, STATUS};

const MSI_ADDRESS: u32 = 0xfee0_0000;
const MSI_DATA: u16 = 0x4041;

struct Port {
    port: RootPort,
    msi: Arc<RecordingVectors>,
    intx: Arc<RecordingLine>,
}

impl Port {
    fn new(hotplug: bool, present: bool) -> Self {
        let mut port = RootPort::new(RootPortConfig {
            slot: 5,
            present,
            hotplug,
            ..Default::default()
        })
        .unwrap();
        let msi = Arc::new(RecordingVectors::new());
        let intx = Arc::new(RecordingLine::new());
        port.connect_interrupts(PortInterrupts {
            msi: msi.clone(),
            intx: intx.clone(),
        });
        Self { port, msi, intx }
    }

    fn pcie(&self) -> usize {
        self.port.caps().pcie().unwrap().offset()
    }

    fn read16(&self, offset: usize) -> u16 {
        let mut b = [0; 2];
        self.port.config_read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    fn read32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.port.config_read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn write16(&mut self, offset: usize, v: u16) -> RootPortWriteEffects {
        self.port.write(offset, &v.to_le_bytes())
    }

    fn sltctl(&self) -> u16 {
        self.read16(self.pcie() + SLTCTL)
    }

    fn sltsta(&self) -> u16 {
        self.read16(self.pcie() + SLTSTA)
    }

    fn lnksta(&self) -> u16 {
        self.read16(self.pcie() + LNKSTA)
    }

    fn write_sltctl(&mut self, v: u16) -> RootPortWriteEffects {
        let at = self.pcie() + SLTCTL;
        self.write16(at, v)
    }

    fn clear_status(&mut self, bits: u16) {
        let at = self.pcie() + SLTSTA;
        self.write16(at, bits);
    }

    /// What `pcieport` does: MSI at a fixed message, bus mastering on.
    fn enable_msi(&mut self) {
        let at = self.port.caps().msi().unwrap().offset();
        self.port
            .write(at + msi::ADDRESS, &MSI_ADDRESS.to_le_bytes());
        self.write16(at + 0xc, MSI_DATA);
        self.write16(at + msi::CONTROL, msi::control::ENABLE);
        self.write16(COMMAND, command::BUS_MASTER | command::MEMORY);
    }

    /// What `pciehp` enables: the events it handles and the interrupt,
    /// power kept as it is, indicators as given.
    fn enable_events(&mut self, power_off: bool) {
        let mut ctl = sltctl::ABP_ENABLE
            | sltctl::PDC_ENABLE
            | sltctl::CC_ENABLE
            | sltctl::DLLSC_ENABLE
            | sltctl::HP_INTERRUPT_ENABLE
            | (sltctl::INDICATOR_OFF << sltctl::ATTENTION_INDICATOR_SHIFT)
            | (sltctl::INDICATOR_OFF << sltctl::POWER_INDICATOR_SHIFT);
        if power_off {
            ctl |= sltctl::POWER_OFF;
        }
        self.write_sltctl(ctl);
        self.clear_status(sltsta::EVENTS);
    }
}

#[test]
fn test_hotplug_slot_capabilities_offer_what_pciehp_drives_and_no_surprise() {
    let p = Port::new(true, false);

    let cap = p.read32(p.pcie() + SLTCAP);
    let caps = p.read16(p.pcie() + CAPS);
    let lnkcap = p.read32(p.pcie() + LNKCAP);

    let offered = sltcap::ATTENTION_BUTTON
        | sltcap::POWER_CONTROLLER
        | sltcap::ATTENTION_INDICATOR
        | sltcap::POWER_INDICATOR
        | sltcap::HOT_PLUG_CAPABLE;
    assert_eq!(cap & 0x7_ffff, offered, "no MRL, no surprise, CC supported");
    assert_eq!(cap >> sltcap::SLOT_SHIFT, 5, "physical slot number");
    assert_ne!(caps & crate::caps::pcie_regs::caps::SLOT_IMPLEMENTED, 0);
    assert_ne!(lnkcap & lnkcap::DLLLA_REPORTING, 0);
}

#[test]
fn test_slot_without_hotplug_has_no_controller_and_no_command_completion() {
    let mut p = Port::new(false, true);

    let cap = p.read32(p.pcie() + SLTCAP);
    let effects = p.write_sltctl(0xffff);

    assert_eq!(cap & 0x7_ffff, sltcap::NO_COMMAND_COMPLETED);
    assert_eq!(p.sltctl(), sltctl::PDC_ENABLE | sltctl::DLLSC_ENABLE);
    assert_eq!(p.sltsta() & sltsta::CC, 0);
    assert_eq!(effects.config.slot, None);
    assert!(!p.port.press_attention_button());
    assert_eq!(p.sltsta() & sltsta::ABP, 0);
}

#[test]
fn test_empty_hotplug_slot_resets_powered_off_dark_and_link_down() {
    let p = Port::new(true, false);

    assert_eq!(p.sltctl() & sltctl::POWER_OFF, sltctl::POWER_OFF);
    assert_eq!(
        p.port.slot().unwrap().indicators(p.port.config().regs()),
        (Some(Indicator::Off), Some(Indicator::Off))
    );
    assert_eq!(p.sltsta() & sltsta::PRESENCE, 0);
    assert_eq!(p.lnksta() & lnksta::DLLLA, 0);
}

#[test]
fn test_occupied_hotplug_slot_resets_powered_on_with_link_up() {
    let p = Port::new(true, true);

    assert_eq!(p.sltctl() & sltctl::POWER_OFF, 0);
    assert_ne!(p.sltsta() & sltsta::PRESENCE, 0);
    assert_ne!(p.lnksta() & lnksta::DLLLA, 0);
    assert_eq!(p.sltsta() & sltsta::EVENTS, 0);
}

#[test]
fn test_slot_status_events_are_write_1_to_clear_and_state_read_only() {
    let mut p = Port::new(true, false);
    p.port.set_presence(true);
    p.port.press_attention_button();
    p.write_sltctl(0x07c0);
    let set = sltsta::ABP | sltsta::PDC | sltsta::CC | sltsta::PRESENCE;
    assert_eq!(p.sltsta(), set);

    p.clear_status(sltsta::PDC | sltsta::PRESENCE);
    assert_eq!(p.sltsta(), sltsta::ABP | sltsta::CC | sltsta::PRESENCE);

    p.clear_status(0);
    assert_eq!(p.sltsta(), sltsta::ABP | sltsta::CC | sltsta::PRESENCE);

    p.clear_status(0xffff);
    assert_eq!(
        p.sltsta(),
        sltsta::PRESENCE,
        "presence is state, not an event"
    );
}

#[test]
fn test_every_slot_control_write_completes_a_command() {
    let mut p = Port::new(true, false);
    let value = p.sltctl();

    p.write_sltctl(value);
    assert_ne!(p.sltsta() & sltsta::CC, 0, "same value: still a command");
    p.clear_status(sltsta::CC);
    let at = p.pcie() + SLTCTL + 1;
    p.port.write(at, &[(value >> 8) as u8]);
    assert_ne!(p.sltsta() & sltsta::CC, 0, "one byte of it too");
    p.clear_status(sltsta::CC);
    let lnkctl = p.pcie() + LNKCTL;
    p.write16(lnkctl, 0);
    assert_eq!(p.sltsta() & sltsta::CC, 0, "another register is no command");
}

#[test]
fn test_reserved_indicator_value_is_discarded_and_others_reported() {
    let mut p = Port::new(true, true);
    let before = p.sltctl();

    let reserved = before & !(sltctl::ATTENTION_INDICATOR | sltctl::POWER_INDICATOR);
    let effects = p.write_sltctl(reserved);
    assert_eq!(p.sltctl(), before);
    assert_eq!(effects.config.slot, None);

    let blink = (before & !sltctl::POWER_INDICATOR)
        | (sltctl::INDICATOR_BLINK << sltctl::POWER_INDICATOR_SHIFT);
    let effects = p.write_sltctl(blink);
    assert_eq!(
        effects.config.slot.unwrap().power_indicator,
        Some(Indicator::Blink)
    );
}

#[test]
fn test_read_only_slot_control_bits_stay_zero() {
    let mut p = Port::new(true, true);

    p.write_sltctl(0xffff);

    let ro = sltctl::PFD_ENABLE | sltctl::MRLSC_ENABLE | sltctl::INTERLOCK | 0xe000;
    assert_eq!(p.sltctl() & ro, 0);
}

#[test]
fn test_adapter_arrives_in_unpowered_slot_then_guest_powers_it_and_link_comes_up() {
    let mut p = Port::new(true, false);
    p.enable_events(true);

    p.port.set_presence(true);
    assert_eq!(
        p.sltsta() & (sltsta::PDC | sltsta::PRESENCE),
        sltsta::PDC | sltsta::PRESENCE
    );
    assert_eq!(p.lnksta() & lnksta::DLLLA, 0, "no power, no link");
    assert_eq!(p.sltsta() & sltsta::DLLSC, 0);

    let on = p.sltctl() & !sltctl::POWER_OFF;
    let effects = p.write_sltctl(on);
    assert_eq!(effects.config.slot.unwrap().power, Some(true));
    assert_ne!(p.lnksta() & lnksta::DLLLA, 0);
    assert_ne!(p.sltsta() & sltsta::DLLSC, 0);
}

#[test]
fn test_adapter_arriving_in_powered_slot_brings_link_up_at_once() {
    let mut p = Port::new(true, false);
    p.enable_events(false);

    p.port.set_presence(true);

    assert_ne!(p.lnksta() & lnksta::DLLLA, 0);
    let events = sltsta::PDC | sltsta::DLLSC;
    assert_eq!(p.sltsta() & events, events);
}

#[test]
fn test_guest_powering_the_slot_off_drops_the_link_and_reports_it() {
    let mut p = Port::new(true, true);
    p.enable_events(false);

    let off = p.sltctl() | sltctl::POWER_OFF;
    let effects = p.write_sltctl(off);

    assert_eq!(effects.config.slot.unwrap().power, Some(false));
    assert_eq!(p.lnksta() & lnksta::DLLLA, 0);
    assert_ne!(p.sltsta() & sltsta::DLLSC, 0);
    assert_ne!(p.sltsta() & sltsta::PRESENCE, 0, "still in the slot");
    p.port.set_presence(false);
    assert_eq!(p.sltsta() & sltsta::PRESENCE, 0);
}

#[test]
fn test_hotplug_msi_is_sent_once_per_event_becoming_pending() {
    let mut p = Port::new(true, false);
    p.enable_msi();
    p.enable_events(false);
    p.msi.take();

    p.port.set_presence(true);
    let sent = p.msi.take();
    assert_eq!(sent.len(), 1, "PDC and DLLSC together: one edge");
    assert_eq!(sent[0].0, 0);
    assert_eq!(sent[0].1.address, u64::from(MSI_ADDRESS));
    assert_eq!(sent[0].1.data, u32::from(MSI_DATA));

    p.clear_status(sltsta::PDC);
    p.port.press_attention_button();
    assert!(p.msi.take().is_empty(), "DLLSC still pending: no new edge");

    p.clear_status(sltsta::EVENTS);
    p.port.press_attention_button();
    assert_eq!(p.msi.take().len(), 1);
    assert!(!p.intx.level(), "INTx is off while MSI is enabled");
}

#[test]
fn test_hotplug_interrupt_needs_hpie_and_the_events_own_enable() {
    let mut p = Port::new(true, false);
    p.enable_msi();
    let ctl = p.sltctl() & !sltctl::POWER_OFF;
    p.write_sltctl(ctl | sltctl::PDC_ENABLE | sltctl::DLLSC_ENABLE | sltctl::CC_ENABLE);
    p.clear_status(sltsta::EVENTS);
    p.port.set_presence(true);
    assert!(p.msi.take().is_empty(), "HPIE clear");

    p.clear_status(sltsta::EVENTS);
    p.write_sltctl(ctl | sltctl::HP_INTERRUPT_ENABLE);
    p.clear_status(sltsta::EVENTS);
    p.port.press_attention_button();
    assert!(p.msi.take().is_empty(), "ABPE clear");

    let abpe = ctl | sltctl::HP_INTERRUPT_ENABLE | sltctl::ABP_ENABLE;
    p.write_sltctl(abpe);
    assert_eq!(
        p.msi.take().len(),
        1,
        "ABP was left set; enabling it raises it"
    );
}

#[test]
fn test_command_completed_raises_the_interrupt_when_enabled() {
    let mut p = Port::new(true, false);
    p.enable_msi();
    let ctl = p.sltctl() | sltctl::CC_ENABLE | sltctl::HP_INTERRUPT_ENABLE;
    p.write_sltctl(ctl);
    assert_eq!(p.msi.take().len(), 1);

    p.clear_status(sltsta::CC);
    p.write_sltctl(ctl);
    assert_eq!(p.msi.take().len(), 1, "each command completes with an edge");
}

#[test]
fn test_hotplug_msi_is_lost_without_bus_master() {
    let mut p = Port::new(true, false);
    p.enable_msi();
    p.enable_events(false);
    p.write16(COMMAND, 0);
    p.msi.take();

    p.port.set_presence(true);

    assert!(p.msi.take().is_empty());
}

#[test]
fn test_msi_route_follows_the_capability() {
    let mut p = Port::new(true, false);
    assert_eq!(p.msi.route(0), None);

    p.enable_msi();
    assert_eq!(p.msi.route(0).map(|m| m.data), Some(u32::from(MSI_DATA)));

    let at = p.port.caps().msi().unwrap().offset() + msi::CONTROL;
    p.write16(at, 0);
    assert_eq!(p.msi.route(0), None);
}

#[test]
fn test_hotplug_intx_level_follows_pending_and_interrupt_disable() {
    let mut p = Port::new(true, false);
    p.enable_events(false);

    p.port.set_presence(true);
    assert!(p.intx.level());
    assert_ne!(p.read16(STATUS) & crate::config::status::INTERRUPT, 0);

    p.write16(COMMAND, command::INTX_DISABLE);
    assert!(!p.intx.level(), "Interrupt Disable");
    assert_ne!(p.read16(STATUS) & crate::config::status::INTERRUPT, 0);

    p.write16(COMMAND, 0);
    assert!(p.intx.level());
    p.clear_status(sltsta::EVENTS);
    assert!(!p.intx.level());
    assert_eq!(p.read16(STATUS) & crate::config::status::INTERRUPT, 0);
}

#[test]
fn test_attention_button_press_is_an_event_the_guest_sees() {
    let mut p = Port::new(true, true);
    p.enable_events(false);

    assert!(p.port.press_attention_button());

    assert_ne!(p.sltsta() & sltsta::ABP, 0);
    assert!(p.intx.level());
}
