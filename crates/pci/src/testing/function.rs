//! A function to drive in the pci crate's own tests: an [`EndpointConfig`]
//! behind the [`PciFunction`] interface, keeping what a VMM would act on
//! (the messages to send, the capabilities' effects of the last write).

use crate::bar::BarSpec;
use crate::caps::endpoint::EndpointConfig;
use crate::caps::CapWriteEffects;
use crate::config::{BarWindow, ConfigWriteEffects};
use crate::function::PciFunction;
use crate::message::{Delivery, Trigger};

/// An endpoint whose only BAR contents are the MSI-X table and PBA.
#[derive(Debug)]
pub(crate) struct FakeFunction {
    /// Header and capabilities.
    pub ep: EndpointConfig,
    /// Messages sent, in order: those [`FakeFunction::fire`] delivered and
    /// those an unmasking write released.
    pub delivered: Vec<Delivery>,
    /// The capabilities' effects of the last configuration write.
    pub last_caps: CapWriteEffects,
}

impl FakeFunction {
    pub fn new(ep: EndpointConfig) -> Self {
        Self {
            ep,
            delivered: Vec::new(),
            last_caps: CapWriteEffects::default(),
        }
    }

    /// The device signals `vector`; a message sent is recorded.
    pub fn fire(&mut self, vector: u16) -> Trigger {
        let t = self.ep.trigger(vector);
        if let Trigger::Deliver(message) = t {
            self.delivered.push(Delivery { vector, message });
        }
        t
    }

    /// The vectors of [`FakeFunction::delivered`].
    pub fn delivered_vectors(&self) -> Vec<u16> {
        self.delivered.iter().map(|d| d.vector).collect()
    }
}

impl PciFunction for FakeFunction {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.ep.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let e = self.ep.write(offset, data);
        self.delivered.extend(&e.caps.deliver);
        self.last_caps = e.caps;
        e.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if !self.ep.bar_read(bar, offset, data) {
            data.fill(0);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if let Some(e) = self.ep.bar_write(bar, offset, data) {
            self.delivered.extend(e.deliver);
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.ep.config().bar_windows()
    }
}
