//! Fuzzes the descriptor-chain parsing of virtio-net (transmit chains and
//! control commands), virtio-rng and virtio-console with guest-written
//! descriptor tables and buffers (virtio-blk has its own target).
//!
//! Input layout: 8 bytes of parameters (which parser, head index, feature
//! bits, descriptor limit), then guest RAM from address 0: two 64 KiB
//! regions with a hole between them. The queue (16 entries) has its
//! descriptor table at 0 and its available ring at 0x100, offering one chain.

#![no_main]

use std::sync::Arc;

use dma::GuestDma;
use libfuzzer_sys::fuzz_target;
use virtio::{console, net, rng};
use virtio_queue::QueueT;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((params, ram)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((mem, mut queue)) = common::ram_and_queue(ram, params[1]) else {
        return;
    };
    // A control command's readable bytes, as the guest wrote them.
    let first = &ram[..ram.len().min(0x1_0000)];
    let features = u64::from(u32::from_le_bytes([
        params[2], params[3], params[4], params[5],
    ])) | 1 << 32;
    let max_descriptors = usize::from(params[6]).max(1);
    let mem = Arc::new(mem);
    let dma = GuestDma::new(mem.clone());
    let Some(chain) = queue.pop_descriptor_chain(&*mem) else {
        return;
    };
    match params[0] % 5 {
        0 => {
            if let Some(len) = net::check_tx_chain(chain, &dma, features) {
                assert!(len >= 14, "an Ethernet header after the virtio header");
            }
        }
        1 => {
            let _ = net::check_ctrl_command(first, features);
        }
        2 => {
            if let Ok(req) = rng::parse(chain, max_descriptors, 0x1_0000) {
                assert!(req.len() <= 0x1_0000);
            }
        }
        3 => {
            let _ = console::parse(chain, console::Port::Receive, max_descriptors);
        }
        _ => {
            let _ = console::parse(chain, console::Port::Transmit, max_descriptors);
        }
    }
});
