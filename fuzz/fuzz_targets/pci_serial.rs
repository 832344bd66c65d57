//! Fuzzes the PCI serial card (`devices::pci_serial::PciSerial`): its
//! configuration space, its I/O BAR with the 16550A's eight registers (and
//! accesses to other BARs and past the registers), and host input, with
//! the card's loopback (echo peer) on or off.
//!
//! Input layout: 1 byte of set-up (bit 0: loopback), then records of 6
//! bytes: an operation (configuration write or read, BAR write or read,
//! host input), a 2-byte offset, a width selector (1, 2, 4 or 3) with the
//! BAR number in its upper bits, and 2 bytes of value. Properties after
//! every step: nothing panics; the identity registers keep their values; a
//! 4-byte write to BAR 0's register reads back as an 8-port I/O BAR
//! (`value & !7 | 1`); command register bits outside the writable mask stay
//! clear; INTA is asserted exactly when the Interrupt Status bit is set and
//! INTx Disable is clear; the output stream receives exactly the bytes
//! written to the transmit register with DLAB clear and the UART's own
//! loopback off; the echo the card holds for the receive FIFO never
//! exceeds `ECHO_LIMIT`, however long the guest transmits without reading.

#![no_main]

use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::pci_serial::{
    PciSerial, PciSerialConfig, CLASS_SERIAL_16550, DEVICE_PCI_SERIAL, ECHO_LIMIT, SERIAL_BAR,
    VENDOR_REDHAT,
};
use irq::recording::RecordingLine;
use libfuzzer_sys::fuzz_target;
use pci::config::{command, status, COMMAND, STATUS};
use pci::function::PciFunction;

const DLAB: u8 = 0x80;
const UART_LOOP: u8 = 0x10;
const BAR0: usize = 0x10;

/// The output stream, shared with the check.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read32(card: &PciSerial, offset: usize) -> u32 {
    let mut b = [0u8; 4];
    card.config_read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn read16(card: &PciSerial, offset: usize) -> u16 {
    let mut b = [0u8; 2];
    card.config_read(offset, &mut b);
    u16::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, records)) = data.split_first() else {
        return;
    };
    let out = Output::default();
    let line = Arc::new(RecordingLine::new());
    let cfg = PciSerialConfig {
        output: Box::new(out.clone()),
        loopback: setup & 1 != 0,
    };
    let mut card = PciSerial::new(line.clone(), cfg);
    let mut expected = Vec::new();
    let (mut lcr, mut mcr) = (0x03u8, 0x08u8);
    for r in records.chunks_exact(6) {
        let offset = usize::from(u16::from_le_bytes([r[1], r[2]]));
        let width = [1usize, 2, 4, 3][usize::from(r[3]) % 4];
        let bar = usize::from(r[3] >> 2) % 3;
        let value = [r[4], r[5], r[4], r[5]];
        let bytes = &value[..width];
        match r[0] % 5 {
            0 => {
                let offset = offset % 0x1100;
                card.config_write(offset, bytes);
                if offset == BAR0 && width == 4 {
                    let want = u32::from_le_bytes(value) & !7 | 1;
                    assert_eq!(read32(&card, BAR0), want, "BAR 0 after {value:x?}");
                }
            }
            1 => {
                let mut got = [0u8; 4];
                card.config_read(offset % 0x1100, &mut got[..width]);
            }
            2 => {
                let reg = offset as u64 % 16;
                card.bar_write(bar, reg, bytes);
                if bar == SERIAL_BAR {
                    match reg {
                        0 if lcr & DLAB == 0 && mcr & UART_LOOP == 0 => expected.push(value[0]),
                        3 => lcr = value[0],
                        4 => mcr = value[0],
                        _ => {}
                    }
                }
            }
            3 => {
                let mut got = [0xa5u8; 4];
                card.bar_read(bar, offset as u64 % 16, &mut got[..width]);
                assert!(got[1..width].iter().all(|&b| b == 0), "{got:x?}");
            }
            _ => {
                let offered = vec![0x5a; usize::from(r[4] & 0x7f)];
                let taken = card.enqueue_input(&offered);
                assert!(taken <= offered.len(), "took {taken}");
            }
        }
        assert_eq!(read16(&card, 0), VENDOR_REDHAT);
        assert_eq!(read16(&card, 2), DEVICE_PCI_SERIAL);
        assert_eq!(read32(&card, 8) >> 8, CLASS_SERIAL_16550);
        let cmd = read16(&card, COMMAND);
        assert_eq!(cmd & !command::WRITABLE, 0, "command {cmd:#x}");
        let pending = read16(&card, STATUS) & status::INTERRUPT != 0;
        let level = pending && cmd & command::INTX_DISABLE == 0;
        assert_eq!(
            line.level(),
            level,
            "INTA, status pending {pending}, command {cmd:#x}"
        );
        assert!(
            card.echo_pending() <= ECHO_LIMIT,
            "echo {}",
            card.echo_pending()
        );
    }
    assert_eq!(*out.0.lock().unwrap(), expected, "output stream");
});
