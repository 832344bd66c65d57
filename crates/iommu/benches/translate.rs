//! The cost of one translated 4 KiB DMA through the emulated VT-d, in
//! process (no VM): a device's `Dma::read` of one page at an IOVA, through
//! the root table, the context entry and a 4-level second-level walk, as
//! NVMe's PRP data transfers make them. Cases, each a median of runs:
//!
//! - `direct`: guest RAM as is (no IOMMU: what every device does without
//!   `--device intel-iommu`);
//! - `off`: through the unit with translation off (GSTS.TES clear);
//! - `passthrough`: a pass-through context entry (TT = 2, `iommu=pt`);
//! - `cold`: a translated context, the translation cache dropped before
//!   every access (a global IOTLB invalidation), so every access walks;
//! - `cached`: the same context with its translation cached.
//!
//! `cargo bench -p iommu --bench translate [-- --iters N]`; prints one
//! `translate_4k_ns case=<case> median=<ns> min=<ns>` line per case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use dma::{Dma, FunctionContext, GuestDma, RequesterId};
use iommu::regs::{IotlbInvalidation, IotlbScope};
use iommu::{Capabilities, Effect, IommuDma, Remapper};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: usize = 64 << 20;
const ROOT: u64 = 0x10_0000;
const CONTEXT: u64 = 0x10_1000;
const TABLES: u64 = 0x10_2000;
const DATA_GPA: u64 = 0x20_0000;
const IOVA: u64 = 0x7f_1234_5000;
const RID: RequesterId = RequesterId(0x0018);
const RUNS: usize = 9;

fn put(mem: &GuestMemoryMmap, addr: u64, v: u64) {
    mem.write_obj(v, GuestAddress(addr)).expect("bench RAM");
}

/// Root entry for bus 0, a context entry for devfn 0x18 (translated or
/// pass-through, domain 1, 48-bit), and a 4-level mapping of IOVA.
fn tables(mem: &GuestMemoryMmap, passthrough: bool) {
    put(mem, ROOT, CONTEXT | 1);
    let lo = if passthrough { 2 << 2 | 1 } else { TABLES | 1 };
    put(mem, CONTEXT + 0x18 * 16, lo);
    put(mem, CONTEXT + 0x18 * 16 + 8, 1 << 8 | 2);
    let mut table = TABLES;
    for level in (1..=4u32).rev() {
        let entry = table + ((IOVA >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        if level == 1 {
            put(mem, entry, DATA_GPA | 3);
        } else {
            let next = table + 0x1000;
            put(mem, entry, next | 3);
            table = next;
        }
    }
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn time(iters: u32, mut one: impl FnMut()) -> (f64, f64) {
    let runs = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                one();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    median(runs)
}

fn main() {
    let iters: u32 = std::env::args()
        .skip_while(|a| a != "--iters")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mem =
        Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).expect("bench RAM"));
    let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(mem.clone()));
    let mut buf = vec![0u8; 4096];
    let report = |case: &str, (med, min): (f64, f64)| {
        println!("translate_4k_ns case={case} median={med:.1} min={min:.1}");
    };

    report(
        "direct",
        time(iters, || ram.read(black_box(DATA_GPA), &mut buf).unwrap()),
    );

    let remapper = Arc::new(Remapper::new(ram.clone(), Capabilities::DEFAULT, 1));
    remapper.set_root_table(ROOT);
    let dev = IommuDma::new(FunctionContext::new(RID), remapper.clone());
    report(
        "off",
        time(iters, || dev.read(black_box(DATA_GPA), &mut buf).unwrap()),
    );

    remapper.set_enabled(true);
    tables(&mem, true);
    report(
        "passthrough",
        time(iters, || dev.read(black_box(DATA_GPA), &mut buf).unwrap()),
    );

    tables(&mem, false);
    remapper.invalidate(&Effect::InvalidateContext(
        iommu::regs::ContextInvalidation::Global,
    ));
    let global = Effect::InvalidateIotlb(IotlbInvalidation {
        scope: IotlbScope::Global,
        drain_reads: false,
        drain_writes: false,
    });
    report(
        "cold",
        time(iters, || {
            remapper.invalidate(&global);
            dev.read(black_box(IOVA), &mut buf).unwrap()
        }),
    );
    report(
        "cached",
        time(iters, || dev.read(black_box(IOVA), &mut buf).unwrap()),
    );
}
