//! An emulated Intel VT-d IOMMU (Intel VT-d Architecture Specification,
//! revision 4.1), starting with its DMA-remapping core in legacy mode
//! (chapters 3 and 9): the root and context tables, the second-level page
//! walk, fault reasons, and a [`dma::Dma`] per PCI function that sends every
//! access through the walk.
//!
//! ```text
//!  device ── IommuDma (one function, requester ID read live)
//!              │  translation off → guest RAM as is
//!              ▼
//!            Remapper ── root table[bus] ── context table[devfn]
//!              │             (§9.1)             (§9.3)
//!              │                              TT=10 → identity
//!              ▼                              TT=00 → page walk (§9.8, §3.6)
//!            guest RAM (its own table reads are not translated)
//! ```
//!
//! The register page ([`regs`]: CAP/ECAP, GCMD/GSTS, RTADDR, register-
//! based invalidation, the fault recording register, the queue and IRTA
//! registers) records the guest's programming and returns [`Effect`]s; the
//! VMM applies them ([`regs::apply`] for the remapper's root table,
//! translation enable and invalidations; [`regs::Registers::process_queue`]
//! for the invalidation queue, [`qi`]). The remapper caches present context
//! entries and translations ([`cache`]) until the matching invalidation;
//! [`intremap`] translates interrupt requests.
//!
//! # What a hostile guest can write, and what happens
//!
//! | Guest writes | Result |
//! |---|---|
//! | a table pointer outside RAM | fault 0x8 / 0x9 / 0x7, the access is refused |
//! | reserved bits in a root, context or page-table entry | fault 0xA / 0xB / 0xC |
//! | an unsupported TT or AW | fault 0x3 |
//! | a page table that points at itself | the walk still stops after 3 or 4 levels |
//! | an IOVA above the domain's width | fault 0x4 |
//! | a DMA across a mapped and an unmapped page | fault, nothing is read or written |
//! | faults faster than software reads them | the first records are kept, the rest counted |

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cache;
pub mod caps;
pub mod fault;
pub mod intremap;
pub mod iommu_dma;
pub mod leaves;
pub mod mirror;
pub mod qi;
pub mod regs;
pub mod remapper;
pub mod tables;
pub mod walk;

#[cfg(test)]
mod testing;

pub use caps::Capabilities;
pub use fault::{FaultLog, FaultReason, FaultRecord};
pub use intremap::{InterruptFault, InterruptRemapper, Irte};
pub use iommu_dma::IommuDma;
pub use leaves::{leaves, Leaf, TooManyLeaves};
pub use mirror::{HostMapper, Mirror, SyncScope};
pub use regs::{Effect, Registers};
pub use remapper::{Piece, Remapper, View};
pub use tables::{ContextEntry, RootEntry, Translation};
pub use walk::{walk, Levels, Mapping};
