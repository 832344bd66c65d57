//! The fake guest driver and the tests it runs, by subject.

mod admin;
mod coalesce;
mod counters;
mod driver;
mod function_dma;
mod hostile;
mod io;
mod regs;
mod shadow;
mod sriov;
mod worker;
mod write_through;
