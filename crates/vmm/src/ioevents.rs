//! KVM ioeventfds: guest writes to a device's notification address signal
//! an eventfd inside the kernel, with no exit to user space
//! (`KVM_IOEVENTFD`, Documentation/virt/kvm/api.rst).

use std::sync::Arc;

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::pci_host::IoEvents;

/// [`IoEvents`] on a KVM VM: any write width, no data match.
#[derive(Debug)]
pub struct KvmIoEvents {
    vm: Arc<VmFd>,
}

impl KvmIoEvents {
    /// Ioeventfds on `vm`.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self { vm }
    }
}

fn address(io: bool, addr: u64) -> IoEventAddress {
    if io {
        IoEventAddress::Pio(addr)
    } else {
        IoEventAddress::Mmio(addr)
    }
}

impl IoEvents for KvmIoEvents {
    fn register(&self, io: bool, addr: u64, fd: &EventFd) -> std::io::Result<()> {
        self.vm
            .register_ioevent(fd, &address(io, addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn unregister(&self, io: bool, addr: u64, fd: &EventFd) -> std::io::Result<()> {
        self.vm
            .unregister_ioevent(fd, &address(io, addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}
