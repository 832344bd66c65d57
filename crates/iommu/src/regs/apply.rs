//! Carrying out the effects that concern DMA remapping on a [`Remapper`]
//! (VT-d 4.1 §11.4.4: SRTP, TE).

use super::Effect;
use crate::remapper::Remapper;

/// Applies `effect` to `remapper` if it is one the remapper implements
/// (the root table latched by SRTP, translation enable); returns whether
/// it was. The others (invalidations, queue, interrupt remapping, fault
/// events) are for parts that come later or live elsewhere; the
/// remapper caches nothing, so skipping its invalidations is correct.
pub fn apply(effect: &Effect, remapper: &Remapper) -> bool {
    match *effect {
        Effect::SetRootTable(addr) => remapper.set_root_table(addr),
        Effect::Translation(on) => remapper.set_enabled(on),
        _ => return false,
    }
    true
}
