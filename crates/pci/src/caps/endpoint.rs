//! A type 0 configuration space together with its capabilities, so that one
//! guest write returns the header's effects and the capabilities' together,
//! and the MSI-X table is served next to it.

use super::msix_table::MsixTableEffects;
use super::{CapError, CapWriteEffects, Capabilities, CapabilityList};
use crate::bar::BarSpec;
use crate::config::{BarWindow, ConfigWriteEffects, Type0Config};
use crate::header::CommonState;
use crate::message::Trigger;

/// What a guest configuration write changed, header and capabilities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointWriteEffects {
    /// BARs, bus master, INTx disable.
    pub config: ConfigWriteEffects,
    /// Power state, MSI/MSI-X programming, messages to deliver now.
    pub caps: CapWriteEffects,
}

/// A type 0 header and its capabilities.
///
/// A function that offers Function Level Reset keeps a copy of itself as
/// built: a guest write of Initiate Function Level Reset (PCIe 6.0 §6.6.2)
/// puts header and capabilities (MSI-X table included) back to it, and the
/// write's effects are those of the whole reset (decoding and bus
/// mastering off, VFs disabled), with `caps.flr` set so the device resets
/// its own state too. A VF keeps the BAR windows its PF gives it.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    config: Type0Config,
    caps: Capabilities,
    pristine: Option<Box<(Type0Config, Capabilities)>>,
}

impl EndpointConfig {
    /// `config` with the capabilities `build` adds, laid out from 0x40.
    pub fn new(
        mut config: Type0Config,
        build: impl FnOnce(&mut CapabilityList<'_>) -> Result<(), CapError>,
    ) -> Result<Self, CapError> {
        let mut list = CapabilityList::new(config.regs_mut());
        build(&mut list)?;
        let caps = list.finish();
        let flr = caps.pcie().is_some_and(|p| p.flr_capable());
        let pristine = flr.then(|| Box::new((config.clone(), caps.clone())));
        Ok(Self {
            config,
            caps,
            pristine,
        })
    }

    /// The header.
    pub fn config(&self) -> &Type0Config {
        &self.config
    }

    /// The header, for device-side changes (status bits, capability
    /// registers through [`Type0Config::regs_mut`]); guest writes go through
    /// [`EndpointConfig::write`].
    pub fn config_mut(&mut self) -> &mut Type0Config {
        &mut self.config
    }

    /// The capabilities.
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    /// A guest configuration read.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    /// A guest configuration write.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> EndpointWriteEffects {
        let header = CommonState::of(self.config.regs(), &self.config.bars);
        let before = self.caps.snapshot(self.config.regs());
        let mut config = self.config.write(offset, data);
        let caps = self.caps.after_write(before, self.config.regs_mut());
        config.sriov = caps.sriov;
        if caps.flr {
            config = self.function_level_reset(header);
        }
        EndpointWriteEffects { config, caps }
    }

    /// Puts header and capabilities back as built; returns what changed
    /// since `before` (the header as it was before the write that asked).
    fn function_level_reset(&mut self, before: CommonState) -> ConfigWriteEffects {
        let sriov = self.reset_sriov();
        if let Some(pristine) = &self.pristine {
            let (mut config, caps) = (**pristine).clone();
            config.vf_windows = self.config.vf_windows.take();
            self.config = config;
            self.caps = caps;
        }
        let mut effects = before.effects(&CommonState::of(self.config.regs(), &self.config.bars));
        effects.sriov = sriov;
        effects
    }

    /// A guest read of a BAR; `false` when it is not the MSI-X table's or PBA's.
    pub fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        self.caps
            .msix_table()
            .is_some_and(|t| t.read(bar, offset, data))
    }

    /// A guest write to a BAR; `None` when it is not the MSI-X table's or PBA's.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) -> Option<MsixTableEffects> {
        self.caps
            .msix_table_mut()
            .and_then(|t| t.write(bar, offset, data))
    }

    /// Where the BARs of this PF's VF `vf` (0-based) decode now (empty
    /// without an SR-IOV capability), for [`Type0Config::set_vf_bar_windows`]
    /// of that VF.
    pub fn vf_bar_windows(&self, vf: u16) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.caps
            .sriov()
            .map(|s| s.vf_bar_windows(self.config.regs(), vf))
            .unwrap_or_default()
    }

    /// A reset of this PF's SR-IOV capability (FLR or conventional reset):
    /// the VFs go away; returns the effect to apply, if there were any.
    pub fn reset_sriov(&mut self) -> Option<super::sriov::SriovEffect> {
        let regs = self.config.regs_mut();
        self.caps.sriov_mut().and_then(|s| s.reset(regs))
    }

    /// The device signals `vector` (MSI-X if enabled, else MSI).
    pub fn trigger(&mut self, vector: u16) -> Trigger {
        self.caps.trigger(self.config.regs_mut(), vector)
    }
}
