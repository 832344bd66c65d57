//! Request and response bodies: Cloud Hypervisor's JSON shapes, read into
//! iovm's configuration and written from its state.

pub mod devices;
pub mod fields;
pub mod info;
pub mod vm_config;

#[cfg(test)]
mod tests;
