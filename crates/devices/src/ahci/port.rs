//! One port's state (AHCI 1.3.1 §3.3, §5): its register block, the disk
//! behind it, and what the HBA tracks while it runs the command list.
//!
//! ```text
//!  PxCMD.ST 0→1 ─▶ CR=1, list runs: CI bits are fetched (lowest first)
//!      │             ├─ queued command: CI bit clears on acceptance, SACT bit clears by SDB FIS
//!      │             ├─ non-queued: one at a time, CI bit clears with its D2H/PIO Setup FIS
//!      │             └─ error (TFES, HBFS, HBDS, IFS, OFS): list halts, CI/SACT stay set
//!  PxCMD.ST 1→0 ─▶ CI=SACT=0, outstanding commands abandoned (their data may
//!                  still land, their completion is never posted); CR=0 once
//!                  the backend holds none of them
//!  PxSCTL.DET=1 ─▶ COMRESET: link down, TFD=BSY, device state reset
//!  PxSCTL.DET 1→0 ─▶ link up: SSTS=133h, signature FIS (SIG=101h, TFD=150h),
//!                  SERR.DIAG.N|X (PRCS, PCS)
//! ```

use pci::regs::RegisterMask;

use super::disk::Disk;
use super::regs::{self, pcmd, port};

/// The state of the serial link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Phy up with a device (PxSSTS.DET = 3).
    Up,
    /// No device, or COMRESET asserted.
    Down,
    /// Phy disabled through PxSCTL.DET = 4.
    Offline,
}

/// One port.
#[derive(Debug)]
pub struct Port {
    /// The register block.
    pub regs: RegisterMask,
    /// The disk, if one is attached.
    pub disk: Option<Disk>,
    /// Bumped whenever outstanding commands are abandoned: completions of
    /// older generations are dropped.
    pub generation: u32,
    /// Slots fetched and not finished (or stuck after an error or reset).
    pub busy: u32,
    /// The non-queued command running, if any.
    pub nonqueued: Option<u8>,
    /// Backend requests in flight, of any generation.
    pub outstanding: u32,
    /// The list stopped after an error until PxCMD.ST is cleared.
    pub halted: bool,
    /// A signature FIS waits for PxCMD.FRE.
    pub sig_pending: bool,
    /// Queued commands completed and not yet announced by an SDB FIS.
    pub ncq_done: u32,
    /// Link state.
    pub link: Link,
}

impl Port {
    /// A port at reset with `disk` attached.
    pub fn new(disk: Option<Disk>) -> Self {
        Self {
            regs: regs::port_block(),
            disk,
            generation: 0,
            busy: 0,
            nonqueued: None,
            outstanding: 0,
            halted: false,
            sig_pending: false,
            ncq_done: 0,
            link: Link::Down,
        }
    }

    /// A register.
    pub fn get(&self, offset: usize) -> u32 {
        regs::get(&self.regs, offset)
    }

    /// Sets a register from the device side.
    pub fn set(&mut self, offset: usize, value: u32) {
        regs::set(&mut self.regs, offset, value);
    }

    /// Sets or clears `bits` of a register from the device side.
    pub fn update(&mut self, offset: usize, bits: u32, on: bool) {
        let v = self.get(offset);
        self.set(offset, if on { v | bits } else { v & !bits });
    }

    /// PxCMD.ST.
    pub fn started(&self) -> bool {
        self.get(port::CMD) & pcmd::ST != 0
    }

    /// PxCMD.FRE.
    pub fn fis_receive(&self) -> bool {
        self.get(port::CMD) & pcmd::FRE != 0
    }

    /// PxCLB with PxCLBU.
    pub fn clb(&self) -> u64 {
        u64::from(self.get(port::CLB)) | u64::from(self.get(port::CLBU)) << 32
    }

    /// PxFB with PxFBU.
    pub fn fb(&self) -> u64 {
        u64::from(self.get(port::FB)) | u64::from(self.get(port::FBU)) << 32
    }

    /// Enabled interrupt causes pending (PxIS & PxIE).
    pub fn pending(&self) -> u32 {
        self.get(port::IS) & self.get(port::IE)
    }

    /// PxCMD.CR follows ST, and stays set while abandoned commands still
    /// hold backend requests (their DMA may still run).
    pub fn refresh_cr(&mut self) {
        let on = self.started() || self.outstanding > 0;
        self.update(port::CMD, pcmd::CR, on);
    }

    /// Sets PxTFD from a status and error.
    pub fn set_tfd(&mut self, status: u8, error: u8) {
        self.set(port::TFD, u32::from(error) << 8 | u32::from(status));
    }

    /// Abandons every outstanding command (the device forgets them).
    pub fn abandon(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.ncq_done = 0;
    }

    /// The command list stops (PxCMD.ST 1→0, §3.3.7): CI, SACT and CCS
    /// clear, outstanding commands are abandoned.
    pub fn stop_list(&mut self) {
        self.abandon();
        self.set(port::CI, 0);
        self.set(port::SACT, 0);
        self.update(port::CMD, pcmd::CCS, false);
        self.busy = 0;
        self.nonqueued = None;
        self.halted = false;
        self.refresh_cr();
    }

    /// Whether commands can be fetched now.
    pub fn runnable(&self) -> bool {
        self.started() && !self.halted && self.link == Link::Up && self.disk.is_some()
    }
}
