//! Fuzzes the i8042 keyboard controller (`devices::legacy::I8042`, through
//! `vm-superio`): guest accesses of any width to its data port (offset 0)
//! and command port (offset 4), and past them.
//!
//! Input layout: records of 4 bytes (`legacy_common::accesses` over a
//! window of 5 ports). Properties: nothing panics; every read returns
//! zeros in all its bytes (the controller models no keyboard); a platform
//! reset is requested exactly once per write whose first byte is `0xFE` at
//! the command port, and nothing else is ever requested.

#![no_main]

mod legacy_common;
mod lifecycle_common;

use std::sync::Arc;

use devices::legacy::i8042::I8042_COMMAND_OFFSET;
use devices::legacy::I8042;
use devices::{BusDevice, GuestRequest};
use legacy_common::accesses;
use libfuzzer_sys::fuzz_target;
use lifecycle_common::Requests;

fuzz_target!(|data: &[u8]| {
    let sink = Arc::new(Requests::default());
    let mut dev = I8042::new(sink.clone());
    let mut resets = 0;
    for a in accesses(data, I8042_COMMAND_OFFSET + 1) {
        if a.write {
            dev.write(a.offset, &a.value[..a.width]);
            if a.offset == I8042_COMMAND_OFFSET && a.value[0] == 0xfe {
                resets += 1;
            }
        } else {
            let mut out = [0xa5u8; 4];
            dev.read(a.offset, &mut out[..a.width]);
            assert!(out[..a.width].iter().all(|&b| b == 0), "read {out:x?}");
        }
        let requests = sink.take();
        assert!(requests.iter().all(|r| *r == GuestRequest::Reset));
        assert_eq!(requests.len(), std::mem::take(&mut resets), "{a:?}");
    }
});
