//! PC platform devices at their fixed ISA port addresses.

pub mod acpi_pm;
pub mod cmos;
pub mod ged;
pub mod i8042;
pub mod pvpanic;
pub mod serial;

pub use acpi_pm::AcpiPowerDevice;
pub use cmos::Cmos;
pub use ged::{Ged, GedEvent};
pub use i8042::I8042;
pub use pvpanic::PvPanic;
pub use serial::Serial;
