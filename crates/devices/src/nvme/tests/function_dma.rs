//! The controller behind its function's DMA context: a translation fault
//! on a data buffer is a Data Transfer Error; with Bus Master Enable off
//! the controller reads no command and writes no memory.

use std::sync::{Arc, OnceLock};

use dma::{Direction, Dma, DmaError, FunctionContext, FunctionDma, HostRange, RequesterId};

use super::driver::*;
use crate::nvme::status::Status;

/// Where the fake IOMMU has no mapping.
const HOLE: u64 = DATA + 0x20_0000;
const HOLE_LEN: u64 = 0x1_0000;
const RID: RequesterId = RequesterId(0x0100);

/// Guest RAM as is, except [`HOLE`], which faults as an IOMMU would.
#[derive(Debug)]
struct Holey(Arc<dyn Dma>);

impl Holey {
    fn check(&self, addr: u64, len: u64) -> Result<(), DmaError> {
        let end = addr.saturating_add(len);
        if addr < HOLE + HOLE_LEN && end > HOLE {
            return Err(DmaError::TranslationFault {
                addr,
                requester: RID,
            });
        }
        Ok(())
    }
}

impl Dma for Holey {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.check(addr, buf.len() as u64)?;
        self.0.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.check(addr, buf.len() as u64)?;
        self.0.write(addr, buf)
    }
    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        self.check(addr, len)?;
        self.0.host_ranges(addr, len, dir, out)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

#[test]
fn test_nvme_translation_fault_on_data_is_a_data_transfer_error() {
    let mut d = Driver::with(Setup {
        wrap_dma: Some(|m| Arc::new(Holey(m))),
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    let c = d.io(1, rw(true, 1, 0, 8, (HOLE, 0)));
    assert!(
        c.is(Status::DATA_TRANSFER_ERROR),
        "write from the hole: {c:?}"
    );
    assert_eq!(
        d.files[0].read_at(0, 4096),
        vec![0u8; 4096],
        "nothing written"
    );
    let c = d.io(1, rw(false, 1, 0, 8, (HOLE, 0)));
    assert!(
        c.is(Status::DATA_TRANSFER_ERROR),
        "read into the hole: {c:?}"
    );
    // A mapped buffer right after still works.
    let data = pattern(4096, 9);
    d.dma.write(DATA, &data).unwrap();
    assert!(d.io(1, rw(true, 1, 0, 8, (DATA, 0))).ok());
    assert_eq!(d.files[0].read_at(0, 4096), data);
}

/// The context of the test below (the driver takes a plain fn to wrap).
fn context() -> &'static Arc<FunctionContext> {
    static CTX: OnceLock<Arc<FunctionContext>> = OnceLock::new();
    CTX.get_or_init(|| FunctionContext::new(RID))
}

#[test]
fn test_nvme_with_bus_master_off_fetches_no_command_and_writes_nothing() {
    let ctx = context();
    ctx.set_bus_master(true);
    let mut d = Driver::with(Setup {
        wrap_dma: Some(|m| Arc::new(FunctionDma::new(context().clone(), m))),
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    let data = pattern(4096, 3);
    d.dma.write(DATA, &data).unwrap();
    assert!(d.io(1, rw(true, 1, 0, 8, (DATA, 0))).ok(), "BME on: works");
    d.dma.write(DATA, &[0u8; 4096]).unwrap();

    ctx.set_bus_master(false);
    d.push(1, rw(false, 1, 0, 8, (DATA, 0)));
    d.ring_sq(1);
    d.nvme.wait_idle();
    assert!(d.pop(1).is_none(), "no completion posted");
    let mut back = vec![0u8; 4096];
    d.dma.read(DATA, &mut back).unwrap();
    assert_eq!(back, vec![0u8; 4096], "no data written");
}
