//! A 16550A UART (the PC's COM1 at 0x3F8, IRQ 4), modelled by `vm-superio`'s
//! [`vm_superio::Serial`] behind a thin adapter that connects it to an
//! [`IrqLine`] and decides when host input may be handed to the guest.
//!
//! Threat table (what a hostile guest can write, what happens):
//!
//! | guest writes                    | result                                    |
//! |---------------------------------|-------------------------------------------|
//! | any value to any of the 8 ports | `vm-superio` register semantics; no panic |
//! | wider than 1-byte accesses      | only the first byte is used               |
//! | output faster than the host     | bytes reach the output stream in order; a |
//! |   stream takes it               | failing stream drops them with a log line |

use std::io::Write;
use std::sync::Arc;

use irq::{IrqError, IrqLine};
use vm_superio::serial::NoEvents;
use vm_superio::Trigger;

use crate::bus::BusDevice;

/// The eight registers of a 16550 span this many ports.
pub const SERIAL_PORT_SIZE: u64 = 8;

/// Interrupt Enable Register bit: "received data available" interrupt.
const IER_RDA: u8 = 0x01;

/// Adapts an [`IrqLine`] to `vm-superio`'s `Trigger`.
#[derive(Debug, Clone)]
pub struct LineTrigger(Arc<dyn IrqLine>);

impl Trigger for LineTrigger {
    type E = IrqError;

    fn trigger(&self) -> Result<(), IrqError> {
        self.0.pulse()
    }
}

/// The UART, its interrupt line and its output stream.
pub struct Serial {
    uart: vm_superio::Serial<LineTrigger, NoEvents, Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial").finish_non_exhaustive()
    }
}

impl Serial {
    /// A UART at reset state that writes what the guest transmits to `out`.
    pub fn new(line: Arc<dyn IrqLine>, out: Box<dyn Write + Send>) -> Self {
        Self {
            uart: vm_superio::Serial::new(LineTrigger(line), out),
        }
    }

    /// Whether the guest's driver is ready for input: it has enabled the
    /// received-data interrupt and the receive FIFO has room. Linux clears the
    /// FIFO when it opens the port, so bytes offered before that would be lost.
    pub fn accepts_input(&self) -> bool {
        self.uart.state().interrupt_enable & IER_RDA != 0 && self.uart.fifo_capacity() > 0
    }

    /// Offers host input to the guest; returns how many bytes the receive FIFO
    /// took (possibly none).
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        if !self.accepts_input() {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(input) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("serial input not delivered: {e:?}");
                0
            }
        }
    }

    /// Flushes the output stream (on exit, so the last guest words are seen).
    pub fn flush_output(&mut self) {
        let _ = self.uart.writer_mut().flush();
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(reg), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.uart.read(reg);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(reg), Some(&value)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if let Err(e) = self.uart.write(reg, value) {
            tracing::debug!("serial write at offset {offset} failed: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use irq::recording::RecordingLine;

    use super::*;

    const THR: u64 = 0;
    const IER: u64 = 1;
    const LSR: u64 = 5;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn serial() -> (Serial, Arc<RecordingLine>, SharedBuf) {
        let line = Arc::new(RecordingLine::new());
        let out = SharedBuf::default();
        (Serial::new(line.clone(), Box::new(out.clone())), line, out)
    }

    #[test]
    fn test_serial_transmit_reaches_output() {
        let (mut s, _, out) = serial();
        for b in b"hi\n" {
            s.write(THR, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");
    }

    #[test]
    fn test_serial_input_refused_until_guest_enables_rx_interrupt() {
        let (mut s, line, _) = serial();
        assert_eq!(s.enqueue_input(b"ls\n"), 0);
        s.write(IER, &[IER_RDA]);
        assert_eq!(s.enqueue_input(b"ls\n"), 3);
        assert!(line.pulses() >= 1);
        let mut lsr = [0u8];
        s.read(LSR, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "LSR.DR set when data is waiting");
        let mut rbr = [0u8];
        s.read(THR, &mut rbr);
        assert_eq!(rbr[0], b'l');
    }

    #[test]
    fn test_serial_out_of_range_offset_is_ignored() {
        let (mut s, _, out) = serial();
        s.write(u64::MAX, &[0x41]);
        let mut data = [0xffu8; 4];
        s.read(1 << 40, &mut data);
        assert_eq!(data, [0; 4]);
        assert!(out.0.lock().unwrap().is_empty());
    }
}
