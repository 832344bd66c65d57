//! KVM user memory slots for BAR memory (`KVM_SET_USER_MEMORY_REGION`,
//! Documentation/virt/kvm/api.rst): an assigned device's registers mapped
//! into the guest where the guest put the BAR, so its accesses reach the
//! device with no exit. Slot numbers follow guest RAM's.

use std::sync::{Arc, Mutex, PoisonError};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

use crate::pci_host::MemorySlots;

/// [`MemorySlots`] on a KVM VM.
#[derive(Debug)]
pub struct KvmMemorySlots {
    vm: Arc<VmFd>,
    slots: Mutex<SlotTable>,
}

#[derive(Debug)]
struct SlotTable {
    next: u32,
    free: Vec<u32>,
}

impl KvmMemorySlots {
    /// Slots on `vm` from `first` up (the ones below are guest RAM's).
    pub fn new(vm: Arc<VmFd>, first: u32) -> Self {
        Self {
            vm,
            slots: Mutex::new(SlotTable {
                next: first,
                free: Vec::new(),
            }),
        }
    }

    fn set(&self, slot: u32, gpa: u64, len: u64, host_addr: u64) -> std::io::Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host_addr,
            flags: 0,
        };
        // SAFETY: `host_addr..+len` is a live mapping its owner keeps until
        // the slot is removed (the root complex removes BAR memory before
        // it drops the function that owns it); a zero size removes a slot.
        unsafe { self.vm.set_user_memory_region(region) }.map_err(std::io::Error::from)
    }
}

impl MemorySlots for KvmMemorySlots {
    fn map(&self, gpa: u64, len: u64, host_addr: u64) -> std::io::Result<u32> {
        let slot = {
            let mut t = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            t.free.pop().unwrap_or_else(|| {
                t.next += 1;
                t.next - 1
            })
        };
        if let Err(e) = self.set(slot, gpa, len, host_addr) {
            self.slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .free
                .push(slot);
            return Err(e);
        }
        Ok(slot)
    }

    fn unmap(&self, slot: u32) {
        if let Err(e) = self.set(slot, 0, 0, 0) {
            tracing::warn!("memory slot {slot} not removed: {e}");
        }
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .free
            .push(slot);
    }
}
