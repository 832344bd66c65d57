//! The GSI router against a fake KVM: a table installed once per guest
//! write whatever the number of vectors, never for nothing, paced past its
//! budget, always in place before the change returns; its guest-caused log
//! lines limited.

use std::time::Duration;

use super::*;

/// Records the tables and one-off messages it is given.
#[derive(Debug, Default)]
struct FakeKvm {
    tables: Mutex<Vec<BTreeMap<u32, MsiMessage>>>,
    signalled: Mutex<Vec<MsiMessage>>,
    refuse_signals: bool,
}

impl FakeKvm {
    fn tables(&self) -> usize {
        self.tables.lock().unwrap().len()
    }

    fn current(&self) -> BTreeMap<u32, MsiMessage> {
        self.tables
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

impl KvmInterrupts for FakeKvm {
    fn set_routes(&self, entries: &[kvm_irq_routing_entry]) -> Result<(), kvm_ioctls::Error> {
        let table = entries
            .iter()
            .map(|e| {
                // SAFETY: the router builds MSI entries only.
                let m = unsafe { e.u.msi };
                let address = u64::from(m.address_hi) << 32 | u64::from(m.address_lo);
                (
                    e.gsi,
                    MsiMessage {
                        address,
                        data: m.data,
                    },
                )
            })
            .collect();
        self.tables.lock().unwrap().push(table);
        Ok(())
    }

    fn register_irqfd(&self, _: &EventFd, _: u32) -> Result<(), kvm_ioctls::Error> {
        Ok(())
    }

    fn unregister_irqfd(&self, _: &EventFd, _: u32) -> Result<(), kvm_ioctls::Error> {
        Ok(())
    }

    fn signal_msi(&self, msi: kvm_msi) -> Result<(), kvm_ioctls::Error> {
        if self.refuse_signals {
            return Err(kvm_ioctls::Error::new(libc::EINVAL));
        }
        let address = u64::from(msi.address_hi) << 32 | u64::from(msi.address_lo);
        self.signalled.lock().unwrap().push(MsiMessage {
            address,
            data: msi.data,
        });
        Ok(())
    }
}

fn msg(vector: u32) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000,
        data: 0x4000 | vector,
    }
}

fn vectors(kvm: &Arc<FakeKvm>, burst: u32, rate: u32) -> (Arc<GsiRouter>, KvmMsiVectors) {
    let router = Arc::new(GsiRouter::with_push_limit(kvm.clone(), 24, burst, rate));
    let ctx = FunctionContext::new(RequesterId::new(0, 3, 0));
    let v = KvmMsiVectors::new(router.clone(), ctx);
    (router, v)
}

#[test]
fn test_msi_route_splits_the_address() {
    let e = msi_route(
        30,
        MsiMessage {
            address: 0x1_fee0_1000,
            data: 0x4031,
        },
    );
    // SAFETY: `msi_route` builds MSI entries only.
    let msi = unsafe { e.u.msi };
    assert_eq!(
        (e.gsi, e.type_, msi.address_lo, msi.address_hi, msi.data),
        (30, KVM_IRQ_ROUTING_MSI, 0xfee0_1000, 1, 0x4031)
    );
}

#[test]
fn test_one_update_of_many_vectors_installs_one_table() {
    let kvm = Arc::new(FakeKvm::default());
    let (_router, v) = vectors(&kvm, PUSH_BURST, PUSH_RATE);
    let enable: Vec<RouteChange> = (0..32)
        .map(|i| (i, Some(msg(0x30 + u32::from(i)))))
        .collect();
    let disable: Vec<RouteChange> = (0..32).map(|i| (i, None)).collect();

    v.update(&enable);
    let after_enable = kvm.current();
    v.update(&disable);

    assert_eq!(kvm.tables(), 2, "one table per update, not one per vector");
    assert_eq!(after_enable.len(), 32);
    assert_eq!(after_enable[&24], msg(0x30));
    assert!(kvm.current().is_empty());
}

#[test]
fn test_an_update_that_changes_nothing_installs_nothing() {
    let kvm = Arc::new(FakeKvm::default());
    let (router, v) = vectors(&kvm, PUSH_BURST, PUSH_RATE);
    v.update(&[(0, Some(msg(0x40))), (1, Some(msg(0x41)))]);

    for _ in 0..1000 {
        v.update(&[(0, Some(msg(0x40)))]);
        v.update(&[(5, None)]);
        router.refresh().unwrap();
    }

    assert_eq!(kvm.tables(), 1);
}

#[test]
fn test_the_route_is_in_kvm_before_the_update_returns_and_sends_use_it() {
    let kvm = Arc::new(FakeKvm::default());
    let (_router, v) = vectors(&kvm, PUSH_BURST, PUSH_RATE);

    v.update(&[(2, Some(msg(0x52)))]);
    let routed = kvm.current();
    v.send(2, msg(0x52));
    let irqfd = v.lock()[&2].irqfd.read().unwrap();

    assert_eq!(routed.get(&24), Some(&msg(0x52)));
    assert_eq!(irqfd, 1, "sent through the irqfd on the route");
    assert!(kvm.signalled.lock().unwrap().is_empty());
}

#[test]
fn test_a_send_ahead_of_its_route_installs_it_and_still_arrives() {
    let kvm = Arc::new(FakeKvm::default());
    let (_router, v) = vectors(&kvm, PUSH_BURST, PUSH_RATE);
    v.update(&[(0, Some(msg(0x60)))]);

    v.send(0, msg(0x61));

    assert_eq!(kvm.current().get(&24), Some(&msg(0x61)));
    assert_eq!(*kvm.signalled.lock().unwrap(), vec![msg(0x61)]);
}

#[test]
fn test_a_flood_of_route_changes_is_paced_yet_every_route_lands() {
    let kvm = Arc::new(FakeKvm::default());
    let (_router, v) = vectors(&kvm, 4, 1000);
    let start = Instant::now();

    for i in 0..54u32 {
        v.update(&[(0, Some(msg(0x30 + i % 2)))]);
    }
    let elapsed = start.elapsed();

    assert_eq!(kvm.tables(), 54, "each change reached KVM");
    assert_eq!(
        kvm.current().get(&24),
        Some(&msg(0x31)),
        "the last one last"
    );
    assert!(
        elapsed >= Duration::from_millis(40),
        "50 tables past a burst of 4 at 1000/s took only {elapsed:?}"
    );
}

#[test]
fn test_a_burst_within_the_budget_is_not_delayed() {
    let kvm = Arc::new(FakeKvm::default());
    let (_router, v) = vectors(&kvm, 64, 1);
    let start = Instant::now();

    for i in 0..64u32 {
        v.update(&[(0, Some(msg(0x30 + i % 2)))]);
    }

    assert_eq!(kvm.tables(), 64);
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
fn test_a_flood_of_undeliverable_messages_logs_a_bounded_number_of_lines() {
    let kvm = Arc::new(FakeKvm {
        refuse_signals: true,
        ..Default::default()
    });
    let router = Arc::new(GsiRouter::new(kvm, 24));
    let sink = KvmMsiSink::ioapic(router);

    let counts = ratelimit::testing::count_events(|| {
        for i in 0..10_000 {
            sink.deliver(msg(0x30 + i % 16));
        }
    });

    assert!(
        counts.warn_or_worse <= ratelimit::BURST as usize,
        "{counts:?}"
    );
    assert_eq!(counts.warn_or_worse + counts.debug, 10_000);
}
