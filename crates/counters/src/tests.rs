use std::sync::Arc;

use super::*;

#[test]
fn test_a_function_reports_the_common_groups_and_only_its_class() {
    let c = FunctionCounters::default();
    c.block.read_ops.inc();
    c.block.read_bytes.add(4096);
    c.net.rx_frames.add(3);
    c.interrupts.irq_msix.inc();
    c.dma.dma_write_bytes.add(4096);

    let none = c.figures();
    assert_eq!(none.get("irq_msix"), Some(1));
    assert_eq!(none.get("dma_write_bytes"), Some(4096));
    assert_eq!(none.get("doorbells_trapped"), Some(0));
    assert_eq!(none.get("read_ops"), None);
    assert_eq!(none.get("rx_frames"), None);

    c.set_class(IoClass::Block);
    let block = c.figures();
    assert_eq!(block.get("read_ops"), Some(1));
    assert_eq!(block.get("read_bytes"), Some(4096));
    assert_eq!(block.get("errors_dma"), Some(0));
    assert_eq!(block.get("rx_frames"), None);

    c.set_class(IoClass::Net);
    let net = c.figures();
    assert_eq!(net.get("rx_frames"), Some(3));
    assert_eq!(net.get("read_ops"), None);
}

#[test]
fn test_counts_from_many_threads_add_up() {
    let c = Arc::new(FunctionCounters::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    c.block.write_ops.inc();
                    c.block.write_bytes.add(512);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.block.write_ops.get(), 40_000);
    assert_eq!(c.block.write_bytes.get(), 40_000 * 512);
}

#[test]
fn test_exits_are_counted_by_reason_and_summed() {
    let e = ExitCounters::default();
    e.count(ExitReason::MmioWrite);
    e.count(ExitReason::MmioWrite);
    e.count(ExitReason::IoIn);
    let f = e.figures();
    assert_eq!(f.get("exits_mmio_write"), Some(2));
    assert_eq!(f.get("exits_io_in"), Some(1));
    assert_eq!(f.get("exits_hlt"), Some(0));
    assert_eq!(f.get("exits"), Some(3));
}

#[test]
fn test_figures_merge_by_name() {
    let mut a = Figures::default();
    a.put("read_ops", 2);
    let mut b = Figures::default();
    b.put("read_ops", 3);
    b.put("write_ops", 1);
    a.merge(&b);
    assert_eq!(a.get("read_ops"), Some(5));
    assert_eq!(a.get("write_ops"), Some(1));
    assert_eq!(a.iter().count(), 2);
}

#[test]
fn test_a_shared_eventfd_counts_for_the_ioeventfd_less_the_trapped_writes() {
    let d = DoorbellCounters::default();
    d.doorbells_trapped.add(3);
    d.doorbells_shared.add(10);
    let mut f = Figures::default();
    d.report(&mut f);
    assert_eq!(f.get("doorbells_ioeventfd"), Some(7));
    assert_eq!(f.get("doorbells_trapped"), Some(3));
    assert_eq!(f.get("doorbells_shared"), None);

    let nvme = DoorbellCounters::default();
    nvme.doorbells_trapped.add(2);
    nvme.doorbells_ioeventfd.add(5);
    let mut f = Figures::default();
    nvme.report(&mut f);
    assert_eq!(f.get("doorbells_ioeventfd"), Some(5));
}
