//! Each semantic of [`RegisterMask`], the combination rules, and accesses of
//! every width at odd offsets.

use super::*;

/// A guest read through [`RegisterMask::read_and_clear`] as a little-endian value.
fn guest_read(r: &mut RegisterMask, offset: usize, len: usize) -> u64 {
    let mut buf = [0u8; 8];
    r.read_and_clear(offset, &mut buf[..len]);
    u64::from_le_bytes(buf)
}

fn semantics(writable: u64, w1c: u64, w1s: u64, read_to_clear: u64) -> Semantics {
    Semantics {
        writable,
        w1c,
        w1s,
        read_to_clear,
    }
}

#[test]
fn test_write_respects_writable_mask() {
    let mut r = RegisterMask::new(8);
    r.set_value(0, 2, 0xabcd).unwrap();
    r.set_masks(0, 2, 0x00ff, 0).unwrap();
    r.write(0, &[0x12, 0x34]);
    assert_eq!(r.read_le(0, 2), 0xab12);
}

#[test]
fn test_write_one_clears_w1c_bits_and_zero_leaves_them() {
    let mut r = RegisterMask::new(4);
    r.set_masks(2, 2, 0, 0xf900).unwrap();
    r.device_set(2, 2, 0x8100);
    r.write(2, &[0x00, 0x00]);
    assert_eq!(r.read_le(2, 2), 0x8100, "writing 0 keeps the bits");
    r.write(2, &[0x00, 0x80]);
    assert_eq!(
        r.read_le(2, 2),
        0x0100,
        "writing 1 clears the W1C bit; bit 8 is read-only"
    );
}

#[test]
fn test_w1c_byte_write_at_an_odd_offset_touches_that_byte_only() {
    let mut r = RegisterMask::new(4);
    r.set_masks(0, 4, 0, 0xffff_ffff).unwrap();
    r.device_set(0, 4, 0x8181_8181);
    r.write(3, &[0xff]);
    assert_eq!(r.read_le(0, 4), 0x0081_8181);
    r.write(1, &[0x01, 0x80]);
    assert_eq!(r.read_le(0, 4), 0x0001_8081);
}

#[test]
fn test_write_one_sets_w1s_bits_and_zero_leaves_them() {
    // IMS-like: bits 16:0 write-1-to-set, the rest read-only zero.
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0, 0x0001_ffff, 0))
        .unwrap();
    r.write(0, &5u32.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 5);
    r.write(0, &2u32.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 7, "a second write adds bits");
    r.write(0, &0u32.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 7, "writing 0 clears nothing");
    r.write(0, &u32::MAX.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 0x0001_ffff, "bits 31:17 are read-only");
}

#[test]
fn test_w1s_byte_and_word_writes_at_odd_offsets() {
    let mut r = RegisterMask::new(8);
    r.set_semantics(0, 4, semantics(0, 0, 0xffff_ffff, 0))
        .unwrap();
    r.set_masks(4, 4, 0xffff_ffff, 0).unwrap();
    r.set_value(4, 4, 0x1111_1111).unwrap();

    r.write(3, &[0x80]);
    assert_eq!(r.read_le(0, 4), 0x8000_0000);
    r.write(1, &[0x01, 0x02]);
    assert_eq!(r.read_le(0, 4), 0x8002_0100);
    r.write(3, &[0x01, 0x55]);
    assert_eq!(
        r.read_le(0, 4),
        0x8102_0100,
        "byte 3 sets bit 24 and keeps bit 31"
    );
    assert_eq!(
        r.read_le(4, 4),
        0x1111_1155,
        "the next register's byte is written as read-write"
    );
}

#[test]
fn test_read_to_clear_returns_the_value_then_clears() {
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0, 0, 0xffff_ffff))
        .unwrap();
    r.device_set(0, 4, 0x0000_0084);
    assert_eq!(guest_read(&mut r, 0, 4), 0x84);
    assert_eq!(guest_read(&mut r, 0, 4), 0, "the first read cleared it");
    r.write(0, &u32::MAX.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 0, "no write semantic: read-only");
}

#[test]
fn test_side_effect_free_reads_never_clear() {
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0, 0, 0xffff_ffff))
        .unwrap();
    r.device_set(0, 4, 0x1234_5678);
    let mut d = [0u8; 4];
    r.read(0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1234_5678);
    assert_eq!(r.read_le(0, 4), 0x1234_5678);
    assert_eq!(guest_read(&mut r, 0, 4), 0x1234_5678);
}

#[test]
fn test_read_to_clear_clears_only_its_bits() {
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0, 0, 0x0000_ff0f))
        .unwrap();
    r.set_value(0, 4, 0xaaaa_aaaa).unwrap();
    assert_eq!(guest_read(&mut r, 0, 4), 0xaaaa_aaaa);
    assert_eq!(r.read_le(0, 4), 0xaaaa_00a0);
}

#[test]
fn test_read_to_clear_byte_and_word_reads_at_odd_offsets() {
    // A read-to-clear register at 4..8 between two read-only ones.
    let mut r = RegisterMask::new(12);
    r.set_value(0, 4, 0xdddd_dddd).unwrap();
    r.set_value(8, 4, 0xeeee_eeee).unwrap();
    r.set_semantics(4, 4, semantics(0, 0, 0, 0xffff_ffff))
        .unwrap();
    r.device_set(4, 4, 0x8421_1248);

    assert_eq!(guest_read(&mut r, 5, 1), 0x12);
    assert_eq!(r.read_le(4, 4), 0x8421_0048, "only byte 5 cleared");
    assert_eq!(guest_read(&mut r, 7, 2), 0xee84, "byte 7 and byte 8");
    assert_eq!(r.read_le(4, 4), 0x0021_0048, "only byte 7 cleared");
    assert_eq!(r.read_le(8, 4), 0xeeee_eeee, "read-only byte 8 kept");
    assert_eq!(guest_read(&mut r, 3, 2), 0x48dd, "byte 3 and byte 4");
    assert_eq!(r.read_le(0, 4), 0xdddd_dddd);
    assert_eq!(r.read_le(4, 4), 0x0021_0000);
}

#[test]
fn test_read_to_clear_with_write_one_to_clear_like_icr() {
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0x0001_ffff, 0, 0x0001_ffff))
        .unwrap();
    r.device_set(0, 4, 0x0000_0085);
    r.write(0, &0x0000_0004u32.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 0x81, "a write of 1 clears");
    r.write(0, &0u32.to_le_bytes());
    assert_eq!(r.read_le(0, 4), 0x81, "a write of 0 leaves");
    assert_eq!(guest_read(&mut r, 0, 4), 0x81);
    assert_eq!(r.read_le(0, 4), 0, "a read clears the rest");
}

#[test]
fn test_read_and_clear_past_the_end_is_harmless() {
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0, 0, 0xffff_ffff))
        .unwrap();
    r.device_set(0, 4, 0x4433_2211);
    assert_eq!(guest_read(&mut r, 2, 4), 0x4433, "bytes 2, 3, then zeros");
    assert_eq!(r.read_le(0, 4), 0x2211);
    let mut d = [0xaa; 4];
    r.read_and_clear(usize::MAX - 1, &mut d);
    assert_eq!(d, [0; 4]);
    assert_eq!(r.read_le(0, 4), 0x2211);
}

#[test]
fn test_ranges_longer_than_eight_bytes_zero_the_rest() {
    let mut r = RegisterMask::new(16);
    r.set_value(0, 12, u64::MAX).unwrap();
    r.set_masks(0, 12, u64::MAX, 0).unwrap();
    r.device_set(0, 12, u64::MAX);
    assert_eq!(r.read_le(8, 4), 0);
    assert_eq!(r.read_le(0, 8), u64::MAX);
}

#[test]
fn test_conflicting_masks_are_refused() {
    let mut r = RegisterMask::new(4);
    assert_eq!(
        r.set_masks(0, 2, 0x0101, 0x0100),
        Err(MaskError::Conflict {
            offset: 1,
            bits: 1,
            first: Semantic::Writable,
            second: Semantic::WriteOneToClear,
        })
    );
}

#[test]
fn test_every_forbidden_pair_is_refused_and_changes_nothing() {
    use Semantic::*;
    let cases = [
        (semantics(0x10, 0x30, 0, 0), Writable, WriteOneToClear),
        (semantics(0x10, 0, 0x30, 0), Writable, WriteOneToSet),
        (semantics(0, 0x10, 0x30, 0), WriteOneToClear, WriteOneToSet),
        (semantics(0x10, 0, 0, 0x30), Writable, ReadToClear),
        (semantics(0, 0, 0x10, 0x30), WriteOneToSet, ReadToClear),
    ];
    for (bad, first, second) in cases {
        let mut r = RegisterMask::new(4);
        r.set_masks(0, 4, 0xffff_ffff, 0).unwrap();
        let shifted = Semantics {
            writable: bad.writable << 16,
            w1c: bad.w1c << 16,
            w1s: bad.w1s << 16,
            read_to_clear: bad.read_to_clear << 16,
        };
        assert_eq!(
            r.set_semantics(0, 4, shifted),
            Err(MaskError::Conflict {
                offset: 2,
                bits: 0x10,
                first,
                second
            }),
            "{first} with {second}"
        );
        r.write(0, &u32::MAX.to_le_bytes());
        assert_eq!(
            r.read_le(0, 4),
            0xffff_ffff,
            "{first} with {second}: the old masks stay"
        );
    }
}

#[test]
fn test_allowed_combinations_are_accepted() {
    let mut r = RegisterMask::new(8);
    let ok = [
        semantics(0x01, 0x02, 0x04, 0x08),
        semantics(0, 0xff, 0, 0xff),
        semantics(0, 0, 0, 0xff),
    ];
    for s in ok {
        assert_eq!(r.set_semantics(0, 8, s), Ok(()), "{s:?}");
    }
}

#[test]
fn test_installing_replaces_the_bytes_it_covers_only() {
    let mut r = RegisterMask::new(4);
    r.set_semantics(0, 4, semantics(0, 0, 0xffff_ffff, 0))
        .unwrap();
    r.set_masks(2, 1, 0xff, 0).unwrap();
    r.write(0, &0x0101_0101u32.to_le_bytes());
    r.write(0, &0u32.to_le_bytes());
    assert_eq!(
        r.read_le(0, 4),
        0x0100_0101,
        "byte 2 became read-write (the 0 stored); 0, 1 and 3 stay write-1-to-set"
    );
}

#[test]
fn test_conflict_message_names_both_semantics() {
    let err = RegisterMask::new(4)
        .set_semantics(1, 1, semantics(0, 0, 0x01, 0x01))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bits 0x01 at offset 0x1 cannot be both write-1-to-set and read-to-clear"
    );
}

#[test]
fn test_out_of_range_accesses_are_harmless() {
    let mut r = RegisterMask::new(4);
    assert!(r.set_value(3, 2, 0).is_err());
    assert!(r.set_masks(usize::MAX, 2, 0, 0).is_err());
    assert!(r.set_semantics(2, 4, Semantics::default()).is_err());
    r.write(usize::MAX - 1, &[1, 2, 3]);
    r.write(3, &[0xff, 0xff]);
    let mut d = [0xaa; 4];
    r.read(usize::MAX, &mut d);
    assert_eq!(d, [0; 4]);
}
