//! Fuzzes iovm's IOAPIC model (`irq::ioapic`): the guest's IOREGSEL/IOWIN
//! accesses of any width at any offset of its register window, interleaved
//! with devices raising and lowering pins and the guest's EOIs.
//!
//! Input layout: records of 6 bytes: an operation selector (MMIO write,
//! MMIO read, pin level, EOI), an offset or pin byte, a width selector, and
//! 3 bytes of value. Nothing may panic; a route change names the pin's
//! route as the IOAPIC then reports it; raising or lowering a pin succeeds
//! exactly for the pins it has; every message it sends is addressed to the
//! local APICs (0xFEEx_xxxx).

#![no_main]

use irq::ioapic::{Ioapic, IoapicConfig, IoapicWriteEffect};
use irq::recording::RecordingMsiSink;
use libfuzzer_sys::fuzz_target;

const PINS: usize = 24;

fuzz_target!(|data: &[u8]| {
    let mut io = Ioapic::new(IoapicConfig { pins: PINS, id: 1 }, RecordingMsiSink::new())
        .expect("IOAPIC");
    for r in data.chunks_exact(6) {
        let width = [1usize, 2, 4, 8][usize::from(r[2]) % 4];
        let offset = u64::from(r[1] & 0x3f);
        let mut value = [0u8; 8];
        value[..3].copy_from_slice(&r[3..6]);
        value[4..7].copy_from_slice(&r[3..6]);
        match r[0] % 4 {
            0 => {
                if let IoapicWriteEffect::RouteChanged { pin, route } =
                    io.mmio_write(offset, &value[..width])
                {
                    assert!(pin < PINS);
                    assert_eq!(route, io.route(pin), "the effect names the pin's route");
                    io.service(pin);
                }
            }
            1 => {
                let mut out = [0xa5u8; 8];
                io.mmio_read(offset, &mut out[..width]);
            }
            2 => {
                let pin = usize::from(r[1]);
                let result = io.set_irq(pin, r[3] & 1 != 0);
                assert_eq!(result.is_ok(), pin < PINS, "pin {pin}");
            }
            _ => io.end_of_interrupt(r[3]),
        }
    }
    // Every message it sent went to the local APICs' address range.
    for m in io.sink().messages() {
        assert_eq!(m.address >> 20, 0xfee, "message address {:#x}", m.address);
    }
});
