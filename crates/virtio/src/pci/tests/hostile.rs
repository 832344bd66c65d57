//! A hostile guest: random accesses over the whole BAR and configuration
//! space never panic, and the transport keeps answering.

use pci::testing::ConfigDriver;

use super::driver::{cc, rig, Rig};
use crate::features::F_VERSION_1;
use crate::pci::status::{ACKNOWLEDGE, DRIVER};

/// xorshift64*, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn width(&mut self) -> usize {
        [0, 1, 2, 3, 4, 8, 16][(self.next() % 7) as usize]
    }
}

fn hammer_bar(r: &mut Rig, rng: &mut Rng, rounds: usize) {
    let size = r.pci.layout().bar_size;
    for _ in 0..rounds {
        let offset = match rng.next() % 8 {
            0 => rng.next(),
            1 => r.at.common + rng.next() % 0x40,
            _ => rng.next() % (size + 16),
        };
        let mut data = vec![0u8; rng.width()];
        data.iter_mut().for_each(|b| *b = rng.next() as u8);
        if rng.next().is_multiple_of(2) {
            pci::function::PciFunction::bar_write(
                &mut r.pci,
                (rng.next() % 8) as usize,
                offset,
                &data,
            );
        } else {
            pci::function::PciFunction::bar_read(&mut r.pci, 0, offset, &mut data);
        }
    }
}

#[test]
fn test_random_bar_accesses_never_panic() {
    let mut r = rig();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    r.enable_msix();
    r.bring_up();

    hammer_bar(&mut r, &mut rng, 50_000);
    r.signals().used(0);
    r.signals().config_changed();
    r.set_status(0);

    assert_eq!(r.status(), 0, "still answering");
}

#[test]
fn test_random_config_writes_never_panic() {
    let mut r = rig();
    let mut rng = Rng(0x0bad_cafe_f00d_0001);
    r.bring_up();

    for _ in 0..20_000 {
        let offset = match rng.next() % 4 {
            0 => rng.next() as usize,
            1 => r.at.pci_cfg + (rng.next() % 20) as usize,
            _ => (rng.next() % 4200) as usize,
        };
        let mut data = vec![0u8; rng.width()];
        data.iter_mut().for_each(|b| *b = rng.next() as u8);
        if rng.next().is_multiple_of(2) {
            pci::function::PciFunction::config_write(&mut r.pci, offset, &data);
        } else {
            pci::function::PciFunction::config_read(&r.pci, offset, &mut data);
        }
        if rng.next().is_multiple_of(64) {
            hammer_bar(&mut r, &mut rng, 16);
        }
    }

    assert_eq!(r.pci.config_read32(0), 0x1042_1af4);
}

#[test]
fn test_common_fields_at_the_wrong_width_read_zero_and_ignore_writes() {
    let mut r = rig();
    r.place_bar();
    r.set_status(ACKNOWLEDGE | DRIVER);

    let status_as_word = r.common_read(cc::STATUS, 2);
    let queues_as_byte = r.common_read(cc::NUM_QUEUES, 1);
    let features_as_word = r.common_read(cc::DF, 2);
    r.common_write(cc::STATUS, 4, 0);
    r.common_write(cc::Q_SIZE, 4, 4);
    r.common_write(cc::Q_DESC + 2, 4, 0x1000);

    assert_eq!(
        (status_as_word, queues_as_byte, features_as_word),
        (0, 0, 0)
    );
    assert_eq!(
        r.status(),
        ACKNOWLEDGE | DRIVER,
        "the 4-byte write did not reset"
    );
    assert_eq!(r.common_read(cc::Q_SIZE, 2), 16);
    assert_eq!(r.common_read(cc::Q_DESC, 8), 0);
    assert_eq!(r.negotiate(F_VERSION_1) & 8, 8, "still usable");
}
