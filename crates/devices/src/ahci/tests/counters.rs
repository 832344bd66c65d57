//! The function's I/O counters follow what the driver did on the port.

use super::driver::{cmd, dma_ext, Driver, DATA, TFD_OK};

#[test]
fn test_ahci_counters_count_commands_bytes_issues_and_errors() {
    let mut d = Driver::new();
    d.bring_up();
    let issues = d.counters.doorbells.doorbells_trapped.get();
    let ok = |tfd: u32| assert_eq!(tfd & 0xff, TFD_OK);
    ok(d.run(0, &dma_ext(true, 100, 16), &[(DATA, 8192)], true));
    ok(d.run(0, &dma_ext(false, 100, 8), &[(DATA, 4096)], false));
    ok(d.run(0, &dma_ext(false, 100, 8), &[(DATA, 4096)], false));
    ok(d.run(0, &cmd(0xea, 0, 0, 0), &[], false));
    let sectors = (4 << 20) / 512;
    let tfd = d.run(0, &dma_ext(false, sectors - 1, 2), &[(DATA, 1024)], false);
    assert_eq!(tfd, 0x1051, "IDNF past the end");

    let b = &d.counters.block;
    assert_eq!((b.write_ops.get(), b.write_bytes.get()), (1, 8192));
    assert_eq!((b.read_ops.get(), b.read_bytes.get()), (2, 8192));
    assert_eq!(b.flush_ops.get(), 1);
    assert_eq!(b.errors_invalid.get(), 1);
    assert_eq!((b.errors_io.get(), b.errors_dma.get()), (0, 0));
    assert_eq!(d.counters.doorbells.doorbells_trapped.get() - issues, 5);
    assert_eq!(
        d.vectors.interrupt_counters().irq_msi.get(),
        d.msi_count() as u64,
        "every MSI sent is counted"
    );
}

#[test]
fn test_ahci_counters_count_a_transfer_outside_guest_memory_as_a_dma_error() {
    let mut d = Driver::new();
    d.bring_up();
    d.run(0, &dma_ext(false, 0, 8), &[(u64::MAX - 0xfff, 4096)], false);
    assert_eq!(d.counters.block.errors_dma.get(), 1);
    assert_eq!(d.counters.block.read_ops.get(), 0);
}
