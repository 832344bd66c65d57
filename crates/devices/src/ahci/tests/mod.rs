//! The fake AHCI driver and the tests it runs, by subject.

mod bringup;
mod counters;
mod driver;
mod errors;
mod hostile;
mod io;
mod worker;
mod write_through;
