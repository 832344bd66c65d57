//! Identify data structures (NVMe 1.4 §5.15.2, NVMe 2.0 I/O command set
//! structures): controller, namespace, active namespace list, namespace
//! identification descriptors, and the NVM command set specific ones
//! Linux asks for. Unsupported CNS values: Invalid Field in Command.

use super::controller::{Controller, AER_LIMIT};
use super::namespace::Namespace;
use super::regs::VERSION;
use super::state::{COMPOSITE_TEMPERATURE, ERROR_LOG_ENTRIES, OVER_TEMPERATURE_DEFAULT};
use super::status::Status;

/// Identify Namespace (CNS 00h).
pub const CNS_NAMESPACE: u8 = 0x00;
/// Identify Controller (CNS 01h).
pub const CNS_CONTROLLER: u8 = 0x01;
/// Active Namespace ID list (CNS 02h).
pub const CNS_ACTIVE_NAMESPACES: u8 = 0x02;
/// Namespace Identification Descriptor list (CNS 03h).
pub const CNS_NS_DESCRIPTORS: u8 = 0x03;
/// I/O Command Set specific Identify Namespace (CNS 05h).
pub const CNS_CS_NAMESPACE: u8 = 0x05;
/// I/O Command Set specific Identify Controller (CNS 06h).
pub const CNS_CS_CONTROLLER: u8 = 0x06;

/// OACS bit 8: Doorbell Buffer Config supported.
pub const OACS_DBBUF: u16 = 1 << 8;
/// ONCS: Dataset Management (bit 2) and Write Zeroes (bit 3).
pub const ONCS: u16 = (1 << 2) | (1 << 3);
/// The broadcast namespace ID.
pub const NSID_ALL: u32 = 0xffff_ffff;

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// An ASCII string field (NVMe 2.0 §1.5: left-justified, padded with
/// spaces): printable characters and spaces kept, anything else dropped.
fn ascii(b: &mut [u8], at: usize, len: usize, s: &str) {
    let field = &mut b[at..at + len];
    field.fill(b' ');
    let printable = s.bytes().filter(|c| c.is_ascii_graphic() || *c == b' ');
    for (d, c) in field.iter_mut().zip(printable) {
        *d = c;
    }
}

/// Runs Identify; returns the 4096-byte structure.
pub fn execute(c: &Controller, cns: u8, csi: u8, nsid: u32) -> Result<Vec<u8>, Status> {
    match cns {
        CNS_CONTROLLER => Ok(controller(c)),
        CNS_NAMESPACE => ns_lookup(c, nsid).map(|ns| ns.map_or(vec![0; 4096], namespace)),
        CNS_ACTIVE_NAMESPACES => {
            if nsid >= NSID_ALL - 1 {
                return Err(Status::INVALID_NAMESPACE);
            }
            let mut b = vec![0u8; 4096];
            let ids = c.namespaces.iter().map(|n| n.nsid).filter(|&id| id > nsid);
            for (i, id) in ids.take(1024).enumerate() {
                put(&mut b, i * 4, &id.to_le_bytes());
            }
            Ok(b)
        }
        CNS_NS_DESCRIPTORS => {
            let ns = ns_lookup(c, nsid)?.ok_or(Status::INVALID_NAMESPACE)?;
            let mut b = vec![0u8; 4096];
            // NIDT 02h NGUID (16 bytes), 03h UUID (16), 04h CSI (1).
            put(&mut b, 0, &[0x02, 16, 0, 0]);
            put(&mut b, 4, &ns.nguid);
            put(&mut b, 20, &[0x03, 16, 0, 0]);
            put(&mut b, 24, &ns.uuid);
            put(&mut b, 40, &[0x04, 1, 0, 0, 0]);
            Ok(b)
        }
        CNS_CS_NAMESPACE if csi == 0 => {
            // NVM command set: no extended LBA formats, no protection.
            ns_lookup(c, nsid)?.ok_or(Status::INVALID_NAMESPACE)?;
            Ok(vec![0; 4096])
        }
        CNS_CS_CONTROLLER if csi == 0 => {
            // VSL, WZSL, WUSL, DMRL, DMRSL, DMSL: 0 = no limit beyond MDTS.
            Ok(vec![0; 4096])
        }
        _ => Err(Status::INVALID_FIELD),
    }
}

/// `Ok(Some)` for an active namespace, `Ok(None)` for a valid but
/// inactive ID, `Err` for an invalid one.
fn ns_lookup(c: &Controller, nsid: u32) -> Result<Option<&Namespace>, Status> {
    if nsid == 0 || nsid == NSID_ALL {
        return Err(Status::INVALID_NAMESPACE);
    }
    match c.namespace(nsid) {
        Some(ns) => Ok(Some(ns)),
        None if nsid <= c.limits.max_nsid => Ok(None),
        None => Err(Status::INVALID_NAMESPACE),
    }
}

fn controller(c: &Controller) -> Vec<u8> {
    let l = &c.limits;
    let mut b = vec![0u8; 4096];
    put(&mut b, 0, &l.vendor.0.to_le_bytes()); // VID
    put(&mut b, 2, &l.vendor.1.to_le_bytes()); // SSVID
    ascii(&mut b, 4, 20, &l.serial); // SN
    ascii(&mut b, 24, 40, &l.model); // MN
    ascii(&mut b, 64, 8, &l.firmware); // FR
    b[72] = 6; // RAB
    put(&mut b, 73, &[0x00, 0x54, 0x52]); // IEEE OUI
    b[77] = l.mdts; // MDTS
    b[76] = cmic(l); // CMIC
    put(&mut b, 78, &l.subsystem.cntlid.to_le_bytes()); // CNTLID
    put(&mut b, 80, &VERSION.to_le_bytes()); // VER
    b[111] = 1; // CNTRLTYPE: I/O controller
    put(&mut b, 256, &OACS_DBBUF.to_le_bytes()); // OACS
    b[258] = 3; // ACL: 4 aborts
    b[259] = (AER_LIMIT - 1) as u8; // AERL
    b[260] = 0x03; // FRMW: slot 1 read-only, 1 slot
    b[261] = 0x06; // LPA: commands supported and effects, extended data
    b[262] = (ERROR_LOG_ENTRIES - 1) as u8; // ELPE
    put(&mut b, 266, &OVER_TEMPERATURE_DEFAULT.to_le_bytes()); // WCTEMP
    put(&mut b, 268, &(COMPOSITE_TEMPERATURE + 50).to_le_bytes()); // CCTEMP
    b[512] = 0x66; // SQES: 64 bytes
    b[513] = 0x44; // CQES: 16 bytes
    put(&mut b, 514, &0u16.to_le_bytes()); // MAXCMD
    put(&mut b, 516, &l.max_nsid.to_le_bytes()); // NN
    put(&mut b, 520, &ONCS.to_le_bytes()); // ONCS
    b[525] = 0x07; // VWC present; Flush accepts NSID FFFFFFFFh
    let nqn = l
        .subsystem
        .nqn
        .clone()
        .unwrap_or_else(|| format!("nqn.2024-01.dev.iovm:nvme:{}", l.serial));
    put(&mut b, 768, &nqn.as_bytes()[..nqn.len().min(255)]); // SUBNQN
                                                             // Power state 0: 25 W, no entry/exit latency worth reporting.
    put(&mut b, 2048, &2500u16.to_le_bytes());
    b
}

/// CMIC bit 1: the subsystem may have more than one controller.
pub const CMIC_MULTI_CONTROLLER: u8 = 1 << 1;
/// CMIC bit 2: the controller is an SR-IOV virtual function's.
pub const CMIC_SRIOV_VF: u8 = 1 << 2;

/// Controller Multi-Path I/O and Namespace Sharing Capabilities (NVMe 1.4
/// §5.15.2.2, byte 76).
fn cmic(l: &super::controller::Limits) -> u8 {
    let mut v = 0;
    if l.subsystem.multi_controller {
        v |= CMIC_MULTI_CONTROLLER;
    }
    if l.role == super::PciRole::VirtualFunction {
        v |= CMIC_SRIOV_VF;
    }
    v
}

fn namespace(ns: &Namespace) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    put(&mut b, 0, &ns.blocks.to_le_bytes()); // NSZE
    put(&mut b, 8, &ns.blocks.to_le_bytes()); // NCAP
    put(&mut b, 16, &ns.blocks.to_le_bytes()); // NUSE
    b[25] = 0; // NLBAF: one format
    b[26] = 0; // FLBAS: format 0
    b[33] = 0x09; // DLFEAT: deallocated blocks read 0; DEAC in Write Zeroes
    b[99] = u8::from(ns.readonly); // NSATTR: write protected
    put(&mut b, 104, &ns.nguid); // NGUID
                                 // LBA format 0: no metadata, LBADS, best relative performance.
    put(
        &mut b,
        128,
        &(u32::from(ns.lba_shift as u8) << 16).to_le_bytes(),
    );
    b
}
