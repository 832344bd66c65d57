//! The seam between the register page and a [`Remapper`]: carrying out
//! the effects that concern DMA remapping (VT-d 4.1 §11.4.4: SRTP, TE;
//! §6.5: invalidations),
//! and moving the remapper's faults into the fault recording register
//! (§7.2.1).

use super::{Effect, Registers};
use crate::remapper::Remapper;

/// Applies `effect` to `remapper` if it is one the remapper implements
/// (the root table latched by SRTP, translation enable, context-cache and
/// IOTLB invalidations); returns whether it was. The others (the queue,
/// interrupt remapping, fault events) live elsewhere.
pub fn apply(effect: &Effect, remapper: &Remapper) -> bool {
    match *effect {
        Effect::SetRootTable(addr) => remapper.set_root_table(addr),
        Effect::Translation(on) => remapper.set_enabled(on),
        Effect::InvalidateContext(_) | Effect::InvalidateIotlb(_) => remapper.invalidate(effect),
        _ => return false,
    }
    true
}

/// Moves the faults `remapper` logged since the last call into `regs`'s
/// fault recording register, oldest first (the first one finding the
/// record free is kept, the others set PFO), and returns the fault events
/// to send.
pub fn forward_faults(remapper: &Remapper, regs: &mut Registers) -> Vec<Effect> {
    let log = remapper.take_faults();
    let events = log
        .records()
        .iter()
        .filter_map(|f| regs.record_fault(f))
        .collect();
    if log.overflowed() > 0 {
        regs.record_overflow();
    }
    events
}
