//! The device status field (virtio 1.2 §2.1) and what a driver's write of
//! it does (§3.1.1 initialization, §2.4 reset), as a pure function.
//!
//! ```text
//!   0 ──▶ ACKNOWLEDGE ──▶ DRIVER ──▶ FEATURES_OK ──▶ DRIVER_OK (activate)
//!   ▲                                 │ refused:        │ invalid queue or
//!   │                                 │ reads back 0    │ activate error:
//!   │                                 ▼                 ▼ DEVICE_NEEDS_RESET
//!   └───────── write 0: reset (from any state) ◀── FAILED (any time)
//! ```
//!
//! The driver only adds bits; a write that would clear one is ignored.
//! `DEVICE_NEEDS_RESET` is the device's: the driver can neither set nor
//! clear it except by resetting.

/// The driver found the device.
pub const ACKNOWLEDGE: u8 = 1;
/// The driver knows how to drive it.
pub const DRIVER: u8 = 2;
/// The driver is ready: the device may use its queues.
pub const DRIVER_OK: u8 = 4;
/// Feature negotiation is complete.
pub const FEATURES_OK: u8 = 8;
/// The device hit an error it cannot recover from without a reset.
pub const DEVICE_NEEDS_RESET: u8 = 0x40;
/// The driver gave up on the device.
pub const FAILED: u8 = 0x80;

/// What a write of `device_status` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// 0 written: reset the device.
    Reset,
    /// The write is refused as a whole; the status stays.
    Ignored(&'static str),
    /// The driver's bits become `status`; `activate` when `DRIVER_OK` was
    /// just added; `refused` names a bit that did not stick, and why.
    Set {
        /// The driver's bits after the write (`DEVICE_NEEDS_RESET` excluded).
        status: u8,
        /// Start the device now.
        activate: bool,
        /// A bit the driver asked for that was dropped.
        refused: Option<&'static str>,
    },
}

/// What writing `written` does to a device whose status is `old`;
/// `features_ok` says whether the features the driver accepted are
/// acceptable (consulted only when it sets `FEATURES_OK`).
pub fn transition(old: u8, written: u8, features_ok: impl FnOnce() -> bool) -> Transition {
    if written == 0 {
        return Transition::Reset;
    }
    let old_bits = old & !DEVICE_NEEDS_RESET;
    let mut status = written & !DEVICE_NEEDS_RESET;
    if old_bits & !status != 0 {
        return Transition::Ignored("the driver cleared status bits without a reset");
    }
    let added = status & !old_bits;
    let mut refused = None;
    if added & FEATURES_OK != 0 && !features_ok() {
        status &= !FEATURES_OK;
        refused = Some("FEATURES_OK refused: features not offered, or VERSION_1 missing");
    }
    let mut activate = added & DRIVER_OK != 0;
    if activate && status & FEATURES_OK == 0 {
        status &= !DRIVER_OK;
        activate = false;
        refused = Some("DRIVER_OK refused: FEATURES_OK is not set");
    } else if activate && old & DEVICE_NEEDS_RESET != 0 {
        status &= !DRIVER_OK;
        activate = false;
        refused = Some("DRIVER_OK refused: the device needs a reset");
    }
    Transition::Set {
        status,
        activate,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP_TO_FEATURES: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK;

    #[test]
    fn test_transition_zero_resets() {
        assert_eq!(
            transition(UP_TO_FEATURES, 0, || unreachable!()),
            Transition::Reset
        );
    }

    #[test]
    fn test_transition_driver_ok_after_features_ok_activates() {
        let t = transition(UP_TO_FEATURES, UP_TO_FEATURES | DRIVER_OK, || true);

        assert_eq!(
            t,
            Transition::Set {
                status: UP_TO_FEATURES | DRIVER_OK,
                activate: true,
                refused: None
            }
        );
    }

    #[test]
    fn test_transition_refused_features_do_not_stick() {
        let t = transition(ACKNOWLEDGE | DRIVER, UP_TO_FEATURES, || false);

        assert!(matches!(
            t,
            Transition::Set {
                status: 3,
                activate: false,
                refused: Some(_)
            }
        ));
    }

    #[test]
    fn test_transition_driver_ok_without_features_ok_is_dropped() {
        let t = transition(
            ACKNOWLEDGE | DRIVER,
            ACKNOWLEDGE | DRIVER | DRIVER_OK,
            || true,
        );

        assert!(matches!(
            t,
            Transition::Set {
                status: 3,
                activate: false,
                refused: Some(_)
            }
        ));
    }

    #[test]
    fn test_transition_clearing_bits_is_ignored() {
        let t = transition(UP_TO_FEATURES, ACKNOWLEDGE, || true);

        assert!(matches!(t, Transition::Ignored(_)));
    }

    #[test]
    fn test_transition_needs_reset_blocks_activation_and_is_not_driver_writable() {
        let t = transition(
            UP_TO_FEATURES | DEVICE_NEEDS_RESET,
            UP_TO_FEATURES | DRIVER_OK,
            || true,
        );

        assert!(matches!(
            t,
            Transition::Set {
                status: UP_TO_FEATURES,
                activate: false,
                refused: Some(_)
            }
        ));
    }

    #[test]
    fn test_transition_failed_is_kept_without_activation() {
        let t = transition(UP_TO_FEATURES, UP_TO_FEATURES | FAILED, || true);

        assert_eq!(
            t,
            Transition::Set {
                status: UP_TO_FEATURES | FAILED,
                activate: false,
                refused: None
            }
        );
    }
}
