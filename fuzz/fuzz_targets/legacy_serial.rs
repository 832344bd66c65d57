//! Fuzzes the COM1 16550A UART (`devices::legacy::Serial`, through
//! `vm-superio`): guest accesses of any width to its eight registers and
//! past them, with the host offering input in between.
//!
//! Input layout: records of 4 bytes (`legacy_common::accesses` over the 8
//! ports), where a read whose value byte is odd is instead the host
//! offering that many bytes (value byte / 2, up to 127) of input.
//! Properties, against a shadow of LCR and MCR: nothing panics; what
//! reaches the output stream is exactly the bytes written to the
//! transmit register with DLAB clear and loopback off, in order; the
//! scratch register, LCR, MCR and the divisor latch read back what was
//! written, IER its valid bits; LSR always shows the transmitter empty; input is taken only while
//! the driver accepts it, never more than offered nor than the 64-byte
//! FIFO holds; bytes past the first of a wide access read as zero.

#![no_main]

mod legacy_common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::legacy::serial::SERIAL_PORT_SIZE;
use devices::legacy::Serial;
use devices::BusDevice;
use irq::recording::RecordingLine;
use legacy_common::accesses;
use libfuzzer_sys::fuzz_target;

const FIFO: usize = 64;
const DLAB: u8 = 0x80;
const LOOP: u8 = 0x10;

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

fuzz_target!(|data: &[u8]| {
    let out = Output::default();
    let mut uart = Serial::new(Arc::new(RecordingLine::new()), Box::new(out.clone()));
    let mut expected = Vec::new();
    let (mut lcr, mut mcr) = (0x03u8, 0x08u8);
    let mut divisor = [0x0cu8, 0x00];
    for a in accesses(data, SERIAL_PORT_SIZE) {
        let value = a.value[0];
        if a.write {
            uart.write(a.offset, &a.value[..a.width]);
            match a.offset {
                0 | 1 if lcr & DLAB != 0 => divisor[a.offset as usize] = value,
                0 if mcr & LOOP == 0 => expected.push(value),
                3 => lcr = value,
                4 => mcr = value,
                _ => {}
            }
            continue;
        }
        if value & 1 == 1 {
            let offered = vec![0x5a; usize::from(value / 2)];
            let accepts = uart.accepts_input();
            let taken = uart.enqueue_input(&offered);
            assert!(taken <= offered.len() && taken <= FIFO, "took {taken}");
            assert!(accepts || taken == 0, "input taken while not accepted");
            continue;
        }
        let mut got = [0xa5u8; 4];
        uart.read(a.offset, &mut got[..a.width]);
        assert!(got[1..a.width].iter().all(|&b| b == 0), "{got:x?}");
        match a.offset {
            0 | 1 if lcr & DLAB != 0 => assert_eq!(got[0], divisor[a.offset as usize], "divisor"),
            1 => assert_eq!(got[0] & !0x0f, 0, "IER {:#x}", got[0]),
            3 => assert_eq!(got[0], lcr, "LCR"),
            4 => assert_eq!(got[0], mcr, "MCR"),
            5 => assert_eq!(got[0] & 0x60, 0x60, "LSR {:#x}: transmitter empty", got[0]),
            7 => {
                // Scratch: write a probe and read it back.
                uart.write(7, &[value ^ 0x3c]);
                let mut s = [0u8];
                uart.read(7, &mut s);
                assert_eq!(s[0], value ^ 0x3c, "scratch");
            }
            _ => {}
        }
    }
    assert_eq!(*out.0.lock().unwrap(), expected, "output stream");
});
