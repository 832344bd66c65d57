//! A PCI serial card: a 16550A UART behind an I/O BAR, interrupting through
//! INTA, with QEMU's `pci-serial` identity (Red Hat `1b36:0002`, class
//! 07/00/02 "16550-compatible"), which Linux's `8250_pci` drives by class.
//!
//! INTx is level-triggered (PCI 3.0 §2.2.6): the line is asserted while the
//! UART has an interrupt pending and the command register's INTx Disable bit
//! is clear; the status register's Interrupt Status bit follows the pending
//! state either way. The level is recomputed after every access.
//!
//! With `loopback`, whatever the guest transmits comes back as received
//! data (an echo peer on the cable), so a guest can move data both ways.
//! Echoed bytes wait for room in the receive FIFO in a buffer of at most
//! [`ECHO_LIMIT`] bytes; past that they are lost, as bytes sent faster than
//! the receiver reads them overrun a real UART, so a guest that transmits
//! forever without reading cannot grow host memory.
//!
//! Threat table: any value at any offset of the BAR or configuration space
//! gets `vm-superio`'s or [`Type0Config`]'s semantics; accesses outside the
//! BAR are dropped; nothing the guest writes can panic the device;
//! transmitting forever in loopback without reading holds at most
//! [`ECHO_LIMIT`] bytes (the rest are dropped, with a rate-limited warning).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use irq::IrqLine;
use pci::bar::{BarKind, BarSpec};
use pci::config::{command, BarWindow, ConfigWriteEffects, Identity, Type0Config};
use pci::function::PciFunction;
use vm_superio::serial::NoEvents;
use vm_superio::Trigger;

/// Red Hat's PCI vendor ID.
pub const VENDOR_REDHAT: u16 = 0x1b36;
/// QEMU's PCI 16550 card.
pub const DEVICE_PCI_SERIAL: u16 = 0x0002;
/// Class: communication controller, serial, 16550-compatible.
pub const CLASS_SERIAL_16550: u32 = 0x07_00_02;
/// The I/O BAR with the eight UART registers.
pub const SERIAL_BAR: usize = 0;
/// Most echoed bytes held for the receive FIFO in loopback (a page).
pub const ECHO_LIMIT: usize = 4096;

/// The UART raises nothing by edge: the card derives its INTx level instead.
#[derive(Debug)]
struct LevelOnly;

impl Trigger for LevelOnly {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// Transmitted bytes, shared between the UART and the card.
#[derive(Clone, Default)]
struct TxBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for TxBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How the card is built.
pub struct PciSerialConfig {
    /// Where transmitted bytes go (besides the loopback, if on).
    pub output: Box<dyn Write + Send>,
    /// Echo transmitted bytes back as received data.
    pub loopback: bool,
}

impl std::fmt::Debug for PciSerialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciSerialConfig")
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

/// The card.
pub struct PciSerial {
    config: Type0Config,
    uart: vm_superio::Serial<LevelOnly, NoEvents, TxBuffer>,
    tx: TxBuffer,
    output: Box<dyn Write + Send>,
    loopback: bool,
    echo: VecDeque<u8>,
    line: Arc<dyn IrqLine>,
    asserted: bool,
}

impl std::fmt::Debug for PciSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciSerial")
            .field("asserted", &self.asserted)
            .finish_non_exhaustive()
    }
}

const IER_RDA: u8 = 0x01;

impl PciSerial {
    /// A card at reset, interrupting through `line` (its INTA wire).
    pub fn new(line: Arc<dyn IrqLine>, cfg: PciSerialConfig) -> Self {
        let id = Identity {
            vendor: VENDOR_REDHAT,
            device: DEVICE_PCI_SERIAL,
            class: CLASS_SERIAL_16550,
            revision: 1,
            subsystem_vendor: VENDOR_REDHAT,
            subsystem: 0x1100,
        };
        let bar = BarSpec {
            index: SERIAL_BAR,
            kind: BarKind::Io,
            size: 8,
        };
        let config = match Type0Config::new(id, &[bar], 1) {
            Ok(c) => c,
            Err(e) => unreachable!("an 8-port I/O BAR is always valid: {e}"),
        };
        let tx = TxBuffer::default();
        Self {
            config,
            uart: vm_superio::Serial::new(LevelOnly, tx.clone()),
            tx,
            output: cfg.output,
            loopback: cfg.loopback,
            echo: VecDeque::new(),
            line,
            asserted: false,
        }
    }

    /// Offers host input; returns how many bytes the receive FIFO took.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        let taken = self.offer(input);
        self.update_intx();
        taken
    }

    fn offer(&mut self, input: &[u8]) -> usize {
        let state = self.uart.state();
        if state.interrupt_enable & IER_RDA == 0 || self.uart.fifo_capacity() == 0 {
            return 0;
        }
        self.uart.enqueue_raw_bytes(input).unwrap_or(0)
    }

    /// Moves what the guest transmitted to the output, and echoes it back
    /// when looping, as far as the receive FIFO takes it.
    fn pump(&mut self) {
        let sent = std::mem::take(&mut *self.tx.0.lock().unwrap_or_else(|p| p.into_inner()));
        if !sent.is_empty() {
            let _ = self
                .output
                .write_all(&sent)
                .and_then(|()| self.output.flush());
            if self.loopback {
                let room = ECHO_LIMIT.saturating_sub(self.echo.len());
                let lost = sent.len().saturating_sub(room);
                self.echo.extend(&sent[..sent.len() - lost]);
                if lost > 0 {
                    ratelimit::warn!(
                        "PCI serial: loopback overrun: {lost} bytes lost (the guest does not read)"
                    );
                }
            }
        }
        if !self.echo.is_empty() {
            let pending: Vec<u8> = self.echo.iter().copied().collect();
            let taken = self.offer(&pending);
            self.echo.drain(..taken);
        }
    }

    /// Echoed bytes waiting for room in the receive FIFO (at most
    /// [`ECHO_LIMIT`]).
    pub fn echo_pending(&self) -> usize {
        self.echo.len()
    }

    /// Drives INTA and the Interrupt Status bit from the UART's state.
    fn update_intx(&mut self) {
        let pending = self.uart.state().interrupt_identification & 1 == 0;
        self.config.set_interrupt_status(pending);
        let level = pending && self.config.command() & command::INTX_DISABLE == 0;
        if level != self.asserted {
            self.asserted = level;
            if let Err(e) = self.line.set_level(level) {
                ratelimit::warn!("PCI serial: INTx not delivered: {e}");
            }
        }
    }
}

impl PciFunction for PciSerial {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let effects = self.config.write(offset, data);
        self.update_intx();
        effects
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (SERIAL_BAR, Ok(reg), Some(first)) = (bar, u8::try_from(offset), data.first_mut()) {
            *first = self.uart.read(reg);
        }
        self.pump();
        self.update_intx();
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if let (SERIAL_BAR, Ok(reg), Some(&value)) = (bar, u8::try_from(offset), data.first()) {
            if let Err(e) = self.uart.write(reg, value) {
                tracing::debug!("PCI serial write at {offset}: {e:?}");
            }
        }
        self.pump();
        self.update_intx();
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.config.bar_windows()
    }
}

#[cfg(test)]
mod tests {
    use irq::recording::RecordingLine;
    use pci::config::STATUS;
    use pci::testing::ConfigDriver;

    use super::*;

    const THR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LSR: u64 = 5;

    fn card(loopback: bool) -> (PciSerial, Arc<RecordingLine>, TxBuffer) {
        let line = Arc::new(RecordingLine::new());
        let out = TxBuffer::default();
        let cfg = PciSerialConfig {
            output: Box::new(out.clone()),
            loopback,
        };
        (PciSerial::new(line.clone(), cfg), line, out)
    }

    fn read(c: &mut PciSerial, off: u64) -> u8 {
        let mut d = [0u8];
        c.bar_read(SERIAL_BAR, off, &mut d);
        d[0]
    }

    #[test]
    fn test_pci_serial_identity_and_io_bar() {
        let (mut c, ..) = card(false);
        assert_eq!(c.config_read32(0), 0x0002_1b36);
        assert_eq!(c.config_read32(8) >> 8, CLASS_SERIAL_16550);
        c.config_write(0x10, &[0xff; 4]);
        assert_eq!(c.config_read32(0x10), 0xffff_fff9, "8-port I/O BAR");
    }

    #[test]
    fn test_pci_serial_output_reaches_backend() {
        let (mut c, _, out) = card(false);
        for b in b"ok" {
            c.bar_write(SERIAL_BAR, THR, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"ok");
    }

    #[test]
    fn test_pci_serial_rx_interrupt_is_a_level_until_data_is_read() {
        let (mut c, line, _) = card(false);
        c.bar_write(SERIAL_BAR, IER, &[IER_RDA]);
        assert_eq!(c.enqueue_input(b"x"), 1);
        assert!(line.level(), "INTA asserted while data waits");
        assert_ne!(c.config_read16(STATUS) & 0x08, 0, "Interrupt Status set");
        assert_eq!(read(&mut c, IIR) & 0x0f, 0x04, "received-data interrupt");
        assert_eq!(read(&mut c, THR), b'x');
        assert!(!line.level(), "deasserted once the FIFO is empty");
        assert_eq!(c.config_read16(STATUS) & 0x08, 0);
    }

    #[test]
    fn test_pci_serial_intx_disable_masks_the_line_not_the_status() {
        let (mut c, line, _) = card(false);
        c.set_command(command::INTX_DISABLE);
        c.bar_write(SERIAL_BAR, IER, &[IER_RDA]);
        c.enqueue_input(b"y");
        assert!(!line.level());
        assert_ne!(c.config_read16(STATUS) & 0x08, 0);
        c.set_command(0);
        assert!(line.level(), "enabling INTx raises the pending level");
    }

    #[test]
    fn test_pci_serial_loopback_echoes_transmitted_bytes() {
        let (mut c, line, _) = card(true);
        c.bar_write(SERIAL_BAR, IER, &[IER_RDA]);
        c.bar_write(SERIAL_BAR, THR, b"p");
        assert!(line.level());
        assert_eq!(read(&mut c, LSR) & 1, 1, "data ready");
        assert_eq!(read(&mut c, THR), b'p');
    }

    #[test]
    fn test_pci_serial_loopback_without_reading_holds_at_most_the_limit() {
        let (mut c, ..) = card(true);
        c.bar_write(SERIAL_BAR, IER, &[IER_RDA]);

        let counts = ratelimit::testing::count_events(|| {
            for i in 0..100_000u32 {
                c.bar_write(SERIAL_BAR, THR, &[i as u8]);
            }
        });
        let held = c.echo_pending();
        let mut first = Vec::new();
        while read(&mut c, LSR) & 1 == 1 {
            first.push(read(&mut c, THR));
        }

        assert_eq!(held, ECHO_LIMIT);
        assert!(counts.warn_or_worse <= ratelimit::BURST as usize);
        assert_eq!(first[..4], [0, 1, 2, 3], "the oldest bytes are kept");
        assert!(c.echo_pending() < ECHO_LIMIT, "reading drains the echo");
    }

    /// A wire whose every level change fails.
    #[derive(Debug)]
    struct BrokenLine;

    impl IrqLine for BrokenLine {
        fn set_level(&self, _: bool) -> Result<(), irq::IrqError> {
            Err(irq::IrqError::Host(std::io::Error::other("unplugged")))
        }

        fn pulse(&self) -> Result<(), irq::IrqError> {
            Err(irq::IrqError::Host(std::io::Error::other("unplugged")))
        }
    }

    #[test]
    fn test_pci_serial_failing_intx_logs_a_bounded_number_of_lines() {
        let cfg = PciSerialConfig {
            output: Box::new(std::io::sink()),
            loopback: false,
        };
        let mut c = PciSerial::new(Arc::new(BrokenLine), cfg);
        c.bar_write(SERIAL_BAR, IER, &[IER_RDA]);

        let counts = ratelimit::testing::count_events(|| {
            for _ in 0..5_000 {
                c.enqueue_input(b"z");
                read(&mut c, THR);
            }
        });

        assert_eq!(counts.warn_or_worse, ratelimit::BURST as usize);
        assert_eq!(
            counts.debug,
            10_000 - ratelimit::BURST as usize,
            "every failure is still logged at debug level"
        );
    }

    #[test]
    fn test_pci_serial_hostile_accesses_do_not_panic() {
        let (mut c, ..) = card(true);
        let mut x: u32 = 99;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let bytes = x.to_le_bytes();
            c.bar_write(
                (x % 3) as usize,
                u64::from(x >> 8) % 16,
                &bytes[..1 + (x as usize % 4)],
            );
            c.config_write(
                (x >> 4) as usize % 4200,
                &bytes[..1 + (x as usize >> 3) % 4],
            );
            let mut d = [0u8; 4];
            c.bar_read(SERIAL_BAR, u64::from(x) % 9, &mut d);
        }
        assert_eq!(c.config_read16(0), VENDOR_REDHAT);
    }
}
