//! A hostile guest: random register, doorbell, configuration and queue
//! contents from a fixed-seed PRNG; afterwards a normal bring-up works.

use pci::function::PciFunction;

use super::driver::*;
use crate::nvme::command::Sqe;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An address: mostly inside RAM, sometimes anywhere.
    fn addr(&mut self) -> u64 {
        match self.below(4) {
            0 => self.next(),
            1 => self.below(RAM) & !0xfff,
            _ => self.below(RAM),
        }
    }

    fn sqe(&mut self, admin: bool) -> Sqe {
        let opcodes: &[u8] = if admin {
            &[
                0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c, 0x7c, 0xff,
            ]
        } else {
            &[0x00, 0x01, 0x02, 0x08, 0x09, 0x05, 0x7f]
        };
        let op = opcodes[self.below(opcodes.len() as u64) as usize];
        let mut cdw = [0u32; 6];
        for c in &mut cdw {
            *c = match self.below(3) {
                0 => self.next() as u32,
                1 => self.below(64) as u32,
                _ => (self.below(16) as u32) | (self.below(64) as u32) << 16,
            };
        }
        Sqe {
            cdw0: u32::from(op) | (u32::from(self.below(8) == 0) << 8) | (self.next() as u32) << 16,
            nsid: [0, 1, 2, 0xffff_ffff, self.next() as u32][self.below(5) as usize],
            prp1: self.addr(),
            prp2: self.addr(),
            cdw,
        }
    }
}

fn sweep(d: &mut Driver, rng: &mut Rng, rounds: usize) {
    for _ in 0..rounds {
        match rng.below(10) {
            0 => {
                let off = rng.below(0x4000);
                let len = [1, 2, 4, 8, 3][rng.below(5) as usize];
                let v = rng.next().to_le_bytes();
                d.nvme.bar_write(0, off, &v[..len]);
            }
            1 => {
                let off = 0x1000 + rng.below(0x300);
                d.nvme
                    .bar_write(0, off & !3, &(rng.below(80) as u32).to_le_bytes());
            }
            2 => {
                let off = rng.below(0x100) as usize;
                let v = rng.next().to_le_bytes();
                // Keep memory decoding on, so the sweep reaches BAR0.
                if off > 8 {
                    d.nvme.config_write(off, &v[..1 + rng.below(4) as usize]);
                }
            }
            3 => {
                let mut b = [0u8; 4];
                d.nvme.bar_read(0, rng.below(0x4000), &mut b);
            }
            _ => {
                // A command in a live queue, then its doorbell.
                let qid = rng.below(3) as u16;
                if let Some(q) = d.queues.get(usize::from(qid)).copied().flatten() {
                    let s = rng.sqe(qid == 0);
                    let addr = q.sq + u64::from(q.tail) * 64;
                    let tail = (q.tail + 1) % q.entries;
                    d.dma.write(addr, &s.to_bytes()).unwrap();
                    if let Some(q) = d.queues[usize::from(qid)].as_mut() {
                        q.tail = tail;
                    }
                    d.write32(0x1000 + 8 * u64::from(qid), tail);
                    // Consume whatever was posted, as a driver would.
                    while d.pop(qid).is_some() {}
                }
            }
        }
    }
}

#[test]
fn test_nvme_hostile_sweep_then_normal_bring_up_works() {
    for seed in [1u64, 0xdead_beef, 42] {
        let mut d = Driver::new();
        d.bring_up_with_queues(2);
        let mut rng = Rng(seed);
        sweep(&mut d, &mut rng, 4000);
        d.nvme.wait_idle();
        // A fresh bring-up, as a rebooted guest would.
        d.enable_pci();
        d.enable_msix();
        d.write32(0x14, 0);
        d.enable();
        let (c, id) = d.identify(1, 0);
        assert!(c.ok(), "seed {seed}: identify {c:?}");
        assert_eq!(&id[4..12], b"IOVM0001");
        d.admin(set_features(0x07, 0x0001_0001));
        d.create_queue_pair(1, 16, 1);
        d.dma.write(DATA, &[0x3c; 512]).unwrap();
        assert!(d.io(1, rw(true, 1, 7, 1, (DATA, 0))).ok(), "seed {seed}");
        assert_eq!(d.files[0].read_at(7 * 512, 1), [0x3c]);
    }
}

#[test]
fn test_nvme_hostile_random_sqes_complete_with_a_status() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let mut rng = Rng(7);
    for i in 0..600 {
        let qid = (i % 2) as u16;
        let s = rng.sqe(qid == 0);
        // Keep the queues themselves intact: no queue deletion or reset.
        if qid == 0 && matches!(s.opcode(), 0x00 | 0x04 | 0x0c | 0x7c) {
            continue;
        }
        let c = d.submit(qid, s);
        assert_eq!(d.csts() & 2, 0, "no fatal status from command contents");
        let _ = c;
    }
}

#[test]
fn test_nvme_hostile_sweep_against_the_worker_and_io_uring() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.nvme.start_worker().unwrap();
    d.bring_up_with_queues(2);
    let mut rng = Rng(99);
    sweep(&mut d, &mut rng, 1500);
    d.enable_pci();
    d.enable_msix();
    d.write32(0x14, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.csts() & 1 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "reset never completed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    d.enable();
    let (c, _) = d.identify(1, 0);
    assert!(c.ok());
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    d.dma.write(DATA, &[0x5e; 512]).unwrap();
    d.push(1, rw(true, 1, 9, 1, (DATA, 0)));
    d.ring_sq(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let c = loop {
        if let Some(c) = d.pop(1) {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no completion");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert!(c.ok());
    assert_eq!(d.files[0].read_at(9 * 512, 1), [0x5e]);
}
