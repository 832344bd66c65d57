//! `vfio-pci`: a host PCI function assigned to the guest (issue 19): opened
//! through the machine's VFIO container (its DMA reaches guest RAM through
//! the host's IOMMU at IOVA = guest-physical address), presented by the
//! `vfio` crate's [`AssignedFunction`], its MSI/MSI-X vectors KVM routes
//! whose irqfds the device signals directly.

use vfio::AssignedFunction;

use super::Built;
use crate::config::VfioPciConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::PciBuildError;

/// The host function `c` names, reset and presented to the guest.
pub(super) fn build(
    c: &VfioPciConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let host = dev.host_device(&c.sysfs)?;
    let (vectors, triggers) = dev.triggered_vectors();
    let function = AssignedFunction::new(host, vectors, triggers)
        .map_err(|e| PciBuildError::Device(format!("vfio-pci {}: {e}", c.sysfs.display())))?;
    tracing::info!(
        "vfio-pci: {} assigned ({:04x}:{:04x})",
        c.sysfs.display(),
        function.host_config().identity.vendor,
        function.host_config().identity.device
    );
    Ok(Built::function(function))
}
