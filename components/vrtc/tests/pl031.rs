use vrtc::{Access, Pl031};

fn read(r: &mut Pl031, offset: u64, width: u8, now: u64) -> u32 {
    r.mmio(Access { offset, width, write: None, now })
}

fn write(r: &mut Pl031, offset: u64, value: u32, now: u64) {
    assert_eq!(r.mmio(Access { offset, width: 4, write: Some(value), now }), 0);
}

#[test]
fn ids_read_as_edk2_checks_them_byte_by_byte() {
    let mut r = Pl031::new();
    let want = [0x31, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(read(&mut r, 0xfe0 + 4 * i as u64, 1, 0), *w, "id {i}");
    }
}

#[test]
fn the_clock_runs_from_what_was_loaded() {
    let mut r = Pl031::new();
    assert_eq!(read(&mut r, 0, 4, 100), 100, "unset: the kernel's seconds");
    write(&mut r, 0x8, 1_700_000_000, 100);
    assert_eq!(read(&mut r, 0, 4, 100), 1_700_000_000);
    assert_eq!(read(&mut r, 0, 4, 160), 1_700_000_060);
    // It wraps as the 32-bit counter does.
    write(&mut r, 0x8, u32::MAX, 160);
    assert_eq!(read(&mut r, 0, 4, 162), 1);
}

#[test]
fn control_enables_once_and_mask_reads_back() {
    let mut r = Pl031::new();
    assert_eq!(read(&mut r, 0xc, 4, 0), 0);
    write(&mut r, 0xc, 1, 0);
    write(&mut r, 0xc, 0, 0);
    assert_eq!(read(&mut r, 0xc, 4, 0), 1, "the enable bit stays set");
    write(&mut r, 0x10, 1, 0);
    assert_eq!(read(&mut r, 0x10, 4, 0), 1);
    write(&mut r, 0x4, 1234, 0);
    assert_eq!(read(&mut r, 0x4, 4, 0), 1234);
    assert_eq!(read(&mut r, 0x14, 4, 0), 0, "no alarm ever rises");
}

#[test]
fn unknown_offsets_read_zero_and_ignore_writes() {
    let mut r = Pl031::new();
    write(&mut r, 0x800, 0xdead_beef, 5);
    assert_eq!(read(&mut r, 0x800, 4, 5), 0);
    assert_eq!(read(&mut r, 0, 4, 5), 5, "the clock is untouched");
    // A narrow read takes the bytes at its offset.
    write(&mut r, 0x8, 0x1234_5678, 0);
    assert_eq!(read(&mut r, 1, 1, 0), 0x56);
    assert_eq!(read(&mut r, 2, 2, 0), 0x1234);
}
