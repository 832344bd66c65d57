//! The offload flag mapping, name checks, and one real TAP interface in a
//! network namespace the test creates for itself (root only; skipped with
//! a printed line otherwise). No frame leaves that namespace.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::*;

#[test]
fn test_offloads_csum_only_maps_to_tun_f_csum() {
    let o = Offloads {
        csum: true,
        ..Offloads::default()
    };
    assert_eq!(o.tun_flags(), libc::TUN_F_CSUM);
}

#[test]
fn test_offloads_all_map_to_all_tun_flags() {
    let o = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        tso_ecn: true,
        ufo: true,
    };
    let all = libc::TUN_F_CSUM
        | libc::TUN_F_TSO4
        | libc::TUN_F_TSO6
        | libc::TUN_F_TSO_ECN
        | libc::TUN_F_UFO;
    assert_eq!(o.tun_flags(), all);
}

#[test]
fn test_offloads_segmentation_without_csum_is_left_out() {
    let o = Offloads {
        csum: false,
        tso4: true,
        tso6: true,
        tso_ecn: true,
        ufo: true,
    };
    assert_eq!(o.tun_flags(), 0);
}

#[test]
fn test_offloads_ecn_without_tso_is_left_out() {
    let o = Offloads {
        csum: true,
        tso_ecn: true,
        ..Offloads::default()
    };
    assert_eq!(o.tun_flags(), libc::TUN_F_CSUM);
}

#[test]
fn test_tap_open_long_name_is_refused() {
    let cfg = TapConfig {
        name: "a-name-far-too-long".into(),
        queues: 1,
    };
    let err = Tap::open(&cfg).unwrap_err();
    assert!(matches!(err, TapError::InvalidName { .. }), "{err}");
}

#[test]
fn test_tap_open_zero_queues_is_refused() {
    let cfg = TapConfig {
        name: "iovm0".into(),
        queues: 0,
    };
    let err = Tap::open(&cfg).unwrap_err();
    assert!(matches!(err, TapError::NoQueues { .. }), "{err}");
}

const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCSIFADDR: libc::c_ulong = 0x8916;
const SIOCSIFNETMASK: libc::c_ulong = 0x891c;

/// `struct ifreq` carrying an IPv4 `sockaddr_in` (or flags in its first
/// two bytes).
#[repr(C)]
struct IfReqAddr {
    name: [u8; 16],
    family: u16,
    port: u16,
    addr: [u8; 4],
    _pad: [u8; 16],
}

fn ifreq_addr(name: &str, family: u16, addr: [u8; 4]) -> IfReqAddr {
    let mut r = IfReqAddr {
        name: [0; 16],
        family,
        port: 0,
        addr,
        _pad: [0; 16],
    };
    r.name[..name.len()].copy_from_slice(name.as_bytes());
    r
}

/// Sets `name` up with 10.77.0.1/24, in the calling thread's namespace.
fn configure(name: &str) {
    // SAFETY: socket() takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let af = libc::AF_INET as u16;
    let reqs = [
        (SIOCSIFADDR, ifreq_addr(name, af, [10, 77, 0, 1])),
        (SIOCSIFNETMASK, ifreq_addr(name, af, [255, 255, 255, 0])),
        // ifr_flags overlays `family`: IFF_UP.
        (SIOCSIFFLAGS, ifreq_addr(name, libc::IFF_UP as u16, [0; 4])),
    ];
    for (op, req) in reqs {
        // SAFETY: these ioctls read a 40-byte `struct ifreq` through the
        // pointer, which points at a live `IfReqAddr` of that layout.
        let r = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(&sock, op, &req) };
        assert!(r >= 0, "ioctl {op:#x}: {}", std::io::Error::last_os_error());
    }
}

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A virtio-net header (all zero) and an ARP request from 10.77.0.2
/// (GUEST_MAC) for 10.77.0.1.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[10, 77, 0, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 77, 0, 1]);
    f
}

/// Waits up to two seconds for an ARP frame on `q`.
fn wait_arp(q: &TapQueue) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 65_562];
    while Instant::now() < deadline {
        match q.read_frame(&mut buf) {
            Ok(n) if n >= VNET_HDR_LEN + 42 && buf[VNET_HDR_LEN + 12..][..2] == [0x08, 0x06] => {
                return Some(buf[..n].to_vec())
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    None
}

/// Runs in a thread of its own that moved to a new network namespace.
fn arp_round_trip() -> Result<Vec<u8>, String> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the
    // calling thread, which no other code runs on.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    let tap = Tap::open(&TapConfig {
        name: "iovmtest%d".into(),
        queues: 2,
    })
    .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    assert!(tap.name().starts_with("iovmtest"), "{}", tap.name());
    tap.set_offloads(Offloads {
        csum: true,
        tso4: true,
        ..Offloads::default()
    })
    .unwrap();
    configure(tap.name());
    let [q0, q1] = tap.queues() else {
        panic!("two queues")
    };
    assert_ne!(q0.as_raw_fd(), q1.as_raw_fd());
    // Queue 1 detached: every frame towards the guest comes on queue 0.
    q1.set_enabled(false).unwrap();
    let frame = arp_request();
    let n = q0
        .write_frame(&[
            IoSlice::new(&frame[..VNET_HDR_LEN]),
            IoSlice::new(&frame[VNET_HDR_LEN..]),
        ])
        .unwrap();
    assert_eq!(n, frame.len());
    wait_arp(q0).ok_or_else(|| "no ARP reply on queue 0".to_string())
}

#[test]
fn test_tap_in_private_netns_answers_arp_through_vnet_header() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED test_tap_in_private_netns: needs root and /dev/net/tun");
        return;
    }
    let reply = match std::thread::spawn(arp_round_trip).join().unwrap() {
        Ok(r) => r,
        Err(e) if e.starts_with("unshare") => {
            println!("SKIPPED test_tap_in_private_netns: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let eth = &reply[VNET_HDR_LEN..];
    assert_eq!(&eth[0..6], &GUEST_MAC, "to the guest");
    assert_eq!(&eth[20..22], &[0, 2], "an ARP reply");
    assert_eq!(&eth[28..32], &[10, 77, 0, 1], "from 10.77.0.1");
    assert_eq!(&eth[32..38], &GUEST_MAC, "target hardware address");
}

#[test]
fn test_tap_from_no_fds_is_refused() {
    let err = Tap::from_fds(Vec::new()).unwrap_err();

    assert!(matches!(err, TapError::NoQueues { .. }), "{err}");
}

#[test]
fn test_tap_from_a_descriptor_that_is_no_tap_is_refused() {
    let file = std::fs::File::open("/dev/null").unwrap();

    let err = Tap::from_fds(vec![file.into()]).unwrap_err();

    assert!(matches!(err, TapError::GetIff { .. }), "{err}");
}

/// Opens `/dev/net/tun` as a management stack would and attaches it to
/// `name` with `flags`.
fn tun_fd(name: &str, flags: libc::c_int) -> std::os::fd::OwnedFd {
    use vmm_sys_util::ioctl::ioctl_with_mut_ref;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .unwrap();
    let mut req = [0u8; 40];
    req[..name.len()].copy_from_slice(name.as_bytes());
    req[16..18].copy_from_slice(&(flags as i16).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a 40-byte `struct ifreq` through
    // the pointer, which points at a live 40-byte buffer laid out as one.
    let r = unsafe { ioctl_with_mut_ref(&file, libc::TUNSETIFF, &mut req) };
    assert!(r >= 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    file.into()
}

/// Runs in a thread of its own that moved to a new network namespace.
fn handed_over() -> Result<(), String> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the
    // calling thread, which no other code runs on.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    let vnet = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
    let tap = Tap::from_fds(vec![tun_fd("iovmfd0", vnet), tun_fd("iovmfd0", vnet)]).unwrap();
    assert_eq!(tap.name(), "iovmfd0");
    assert_eq!(tap.queues().len(), 2);
    // SAFETY: F_GETFL on an open descriptor takes no pointers.
    let fl = unsafe { libc::fcntl(tap.queues()[1].as_raw_fd(), libc::F_GETFL) };
    assert_ne!(fl & libc::O_NONBLOCK, 0);

    let plain = tun_fd("iovmfd1", libc::IFF_TAP | libc::IFF_NO_PI);
    let err = Tap::from_fds(vec![plain]).unwrap_err();
    assert!(matches!(err, TapError::NotVnetTap { .. }), "{err}");

    let single = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    let err =
        Tap::from_fds(vec![tun_fd("iovmfd2", single), tun_fd("iovmfd3", single)]).unwrap_err();
    assert!(matches!(err, TapError::TwoInterfaces { .. }), "{err}");
    Ok(())
}

#[test]
fn test_tap_from_handed_over_descriptors_checks_kind_and_interface() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED test_tap_from_handed_over_descriptors: needs root and /dev/net/tun");
        return;
    }
    match std::thread::spawn(handed_over).join().unwrap() {
        Ok(()) => {}
        Err(e) if e.starts_with("unshare") => println!("SKIPPED: {e}"),
        Err(e) => panic!("{e}"),
    }
}
