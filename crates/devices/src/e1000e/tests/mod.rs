//! The fake e1000e driver and the tests it runs, by subject.

mod bringup;
mod driver;
mod hostile;
mod interrupts;
mod rx;
mod tx;
mod worker;
