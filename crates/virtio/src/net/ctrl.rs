//! The control virtqueue (virtio 1.2 §5.1.6.5): commands parsed from the
//! bytes of a chain's readable part and applied to [`CtrlState`], as pure
//! functions; the worker moves the bytes and acts on a change of the
//! number of queue pairs.
//!
//! ```text
//!  readable: class u8 | command u8 | command-specific data
//!  writable: ack u8  (OK = 0, ERR = 1)
//! ```

use super::{F_CTRL_RX, F_MQ};

/// `ack`: the command was carried out.
pub(crate) const OK: u8 = 0;
/// `ack`: the command failed or is not supported.
pub(crate) const ERR: u8 = 1;

const CLASS_RX: u8 = 0;
const RX_PROMISC: u8 = 0;
const RX_ALLMULTI: u8 = 1;
const CLASS_MAC: u8 = 1;
const MAC_TABLE_SET: u8 = 0;
const CLASS_MQ: u8 = 4;
const MQ_VQ_PAIRS_SET: u8 = 0;

/// Upper bound of a control command's readable part: two MAC tables of a
/// few thousand entries each.
pub(crate) const MAX_COMMAND: u64 = 64 * 1024;

/// What the driver asked the receive path to let through (§5.1.6.5.1,
/// §5.1.6.5.2). Until a driver with `CTRL_RX` says otherwise the device
/// is promiscuous, as it is without `CTRL_RX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxFilter {
    /// Every frame.
    pub promisc: bool,
    /// Every multicast frame.
    pub allmulti: bool,
    /// Extra unicast addresses besides the device's own.
    pub unicast: Vec<[u8; 6]>,
    /// Multicast addresses.
    pub multicast: Vec<[u8; 6]>,
}

impl Default for RxFilter {
    fn default() -> Self {
        Self {
            promisc: true,
            allmulti: false,
            unicast: Vec::new(),
            multicast: Vec::new(),
        }
    }
}

impl RxFilter {
    /// Whether a frame to `dst` reaches a device whose address is `mac`.
    pub fn accepts(&self, mac: &[u8; 6], dst: &[u8; 6]) -> bool {
        if self.promisc || dst == &[0xff; 6] {
            return true;
        }
        if dst[0] & 1 != 0 {
            self.allmulti || self.multicast.contains(dst)
        } else {
            dst == mac || self.unicast.contains(dst)
        }
    }
}

/// The control queue's guest-visible state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrlState {
    /// The receive filter.
    pub filter: RxFilter,
    /// Queue pairs in use (1 until `VQ_PAIRS_SET`, §5.1.6.5.5).
    pub active_pairs: u16,
}

impl Default for CtrlState {
    fn default() -> Self {
        Self {
            filter: RxFilter::default(),
            active_pairs: 1,
        }
    }
}

/// A control command as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `VIRTIO_NET_CTRL_RX_PROMISC`.
    Promisc(bool),
    /// `VIRTIO_NET_CTRL_RX_ALLMULTI`.
    AllMulti(bool),
    /// `VIRTIO_NET_CTRL_MAC_TABLE_SET`.
    MacTable {
        unicast: Vec<[u8; 6]>,
        multicast: Vec<[u8; 6]>,
    },
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
    VqPairs(u16),
}

/// Why a command is answered with `ERR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CtrlError {
    /// Fewer than two bytes (class and command).
    #[error("control command shorter than its class and command")]
    Short,
    /// A class or command the device does not offer or that was not
    /// negotiated.
    #[error("control class {0} command {1} not supported")]
    Unsupported(u8, u8),
    /// The command's data has the wrong length or shape.
    #[error("control class {0} command {1}: malformed data")]
    Malformed(u8, u8),
    /// `VQ_PAIRS_SET` outside `1..=max`.
    #[error("{0} queue pairs requested, {1} available")]
    Pairs(u16, u16),
}

/// A MAC table: `le32 entries` then `entries` addresses; returns the
/// addresses and the rest of `data`.
fn mac_table(data: &[u8]) -> Option<(Vec<[u8; 6]>, &[u8])> {
    let (n, rest) = data.split_first_chunk::<4>()?;
    let n = usize::try_from(u32::from_le_bytes(*n)).ok()?;
    let bytes = n.checked_mul(6)?;
    if rest.len() < bytes {
        return None;
    }
    let (table, rest) = rest.split_at(bytes);
    let macs = table
        .chunks_exact(6)
        .filter_map(|c| <[u8; 6]>::try_from(c).ok())
        .collect();
    Some((macs, rest))
}

/// Parses the readable bytes of a control chain.
pub(crate) fn parse(bytes: &[u8], features: u64) -> Result<Command, CtrlError> {
    let [class, cmd, data @ ..] = bytes else {
        return Err(CtrlError::Short);
    };
    let (class, cmd) = (*class, *cmd);
    let malformed = CtrlError::Malformed(class, cmd);
    match (class, cmd) {
        (CLASS_RX, RX_PROMISC | RX_ALLMULTI) if features & F_CTRL_RX != 0 => {
            let [on] = data else { return Err(malformed) };
            Ok(if cmd == RX_PROMISC {
                Command::Promisc(*on != 0)
            } else {
                Command::AllMulti(*on != 0)
            })
        }
        (CLASS_MAC, MAC_TABLE_SET) if features & F_CTRL_RX != 0 => {
            let (unicast, rest) = mac_table(data).ok_or(malformed)?;
            let (multicast, rest) = mac_table(rest).ok_or(malformed)?;
            if !rest.is_empty() {
                return Err(malformed);
            }
            Ok(Command::MacTable { unicast, multicast })
        }
        (CLASS_MQ, MQ_VQ_PAIRS_SET) if features & F_MQ != 0 => {
            let [lo, hi] = data else {
                return Err(malformed);
            };
            Ok(Command::VqPairs(u16::from_le_bytes([*lo, *hi])))
        }
        _ => Err(CtrlError::Unsupported(class, cmd)),
    }
}

/// Applies a command; `usable_pairs` is how many queue pairs the driver
/// set up (at most `max_virtqueue_pairs`).
pub(crate) fn apply(
    cmd: Command,
    state: &mut CtrlState,
    usable_pairs: u16,
) -> Result<(), CtrlError> {
    match cmd {
        Command::Promisc(on) => state.filter.promisc = on,
        Command::AllMulti(on) => state.filter.allmulti = on,
        Command::MacTable { unicast, multicast } => {
            state.filter.unicast = unicast;
            state.filter.multicast = multicast;
        }
        Command::VqPairs(n) => {
            if n == 0 || n > usable_pairs {
                return Err(CtrlError::Pairs(n, usable_pairs));
            }
            state.active_pairs = n;
        }
    }
    Ok(())
}

/// Parses and applies one command; the `ack` byte to return, and the
/// reason for an `ERR`.
pub(crate) fn execute(
    bytes: &[u8],
    features: u64,
    state: &mut CtrlState,
    usable_pairs: u16,
) -> (u8, Option<CtrlError>) {
    match parse(bytes, features).and_then(|c| apply(c, state, usable_pairs)) {
        Ok(()) => (OK, None),
        Err(e) => (ERR, Some(e)),
    }
}
