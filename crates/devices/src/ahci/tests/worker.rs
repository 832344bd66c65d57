//! The worker thread posts backend completions without any register
//! access: queued commands complete by SDB FIS with one message per pass.

use std::time::{Duration, Instant};

use super::driver::{pattern, Driver, Setup, DATA};
use crate::ahci::regs::port;

#[test]
fn test_worker_completes_queued_commands_on_its_own() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up();
    d.ahci.start_worker().unwrap();
    for slot in 0..32u8 {
        let buf = DATA + u64::from(slot) * 4096;
        d.dma.write(buf, &pattern(4096, slot)).unwrap();
        d.prepare_ncq(0, slot, true, u64::from(slot) * 8, 8, buf);
    }
    let before = d.msi_count();
    d.pw(0, port::SACT, u32::MAX);
    d.pw(0, port::CI, u32::MAX);
    let start = Instant::now();
    while d.ahci.with_hba(|h| h.port_reg(0, port::SACT)) != 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "worker stuck");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(d.msi_count() > before);
    assert!(d.msi_count() - before <= 32);
    assert_eq!(d.file(0).read_at(31 * 4096, 4096), pattern(4096, 31));
}
