//! Namespaces (NVMe 1.4 §6.1): a backend disk seen as an array of logical
//! blocks of 512 or 4096 bytes, optionally write protected. A controller
//! has several, numbered from 1.

use std::sync::Arc;

use backend::{BlockFile, Engine, EngineKind};
use vmm_sys_util::eventfd::EventFd;

use super::NvmeError;

/// How one namespace is built.
#[derive(Clone, Debug)]
pub struct NamespaceConfig {
    /// The host disk.
    pub disk: Arc<BlockFile>,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Write protected (also when the disk was opened read-only).
    pub readonly: bool,
}

/// One namespace: its geometry and the engine running its I/O.
#[derive(Debug)]
pub struct Namespace {
    /// Namespace ID (1-based).
    pub nsid: u32,
    /// log2 of the logical block size.
    pub lba_shift: u32,
    /// Size in logical blocks (NSZE); a partial last block is not exposed.
    pub blocks: u64,
    /// Write protected.
    pub readonly: bool,
    /// Namespace Globally Unique Identifier.
    pub nguid: [u8; 16],
    /// Namespace UUID (version 4 layout).
    pub uuid: [u8; 16],
    /// The backend.
    pub engine: Box<dyn Engine>,
}

/// FNV-1a, spread over 16 bytes: a stable identifier from a seed string.
fn stable_id(seed: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (half, chunk) in out.chunks_mut(8).enumerate() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ half as u64;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        chunk.copy_from_slice(&h.to_be_bytes());
    }
    out
}

impl Namespace {
    /// Namespace `nsid` of the controller with serial `serial`.
    pub fn new(
        nsid: u32,
        serial: &str,
        cfg: &NamespaceConfig,
        engine: EngineKind,
        depth: u32,
        notify: &EventFd,
    ) -> Result<Self, NvmeError> {
        let lba_shift = match cfg.block_size {
            512 => 9,
            4096 => 12,
            other => return Err(NvmeError::BlockSize(other)),
        };
        let blocks = cfg.disk.size() >> lba_shift;
        if blocks == 0 {
            return Err(NvmeError::DiskTooSmall(cfg.disk.size()));
        }
        let nguid = stable_id(&format!("iovm-nguid/{serial}/{nsid}"));
        let mut uuid = stable_id(&format!("iovm-uuid/{serial}/{nsid}"));
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let engine = backend::new_engine(cfg.disk.clone(), engine, depth, notify)?;
        Ok(Self {
            nsid,
            lba_shift,
            blocks,
            readonly: cfg.readonly || cfg.disk.readonly(),
            nguid,
            uuid,
            engine,
        })
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u64 {
        1 << self.lba_shift
    }

    /// The byte range of `blocks` blocks from `slba`, if inside the
    /// namespace.
    pub fn byte_range(&self, slba: u64, blocks: u64) -> Option<(u64, u64)> {
        let end = slba.checked_add(blocks)?;
        if end > self.blocks {
            return None;
        }
        Some((slba << self.lba_shift, blocks << self.lba_shift))
    }
}
