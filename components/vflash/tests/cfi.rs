use vflash::{Effect, Flash, Read, BLOCK, STATUS_READY};

const SIZE: u64 = 2 << 20;

fn cmd(f: &mut Flash, offset: u64, c: u32) -> Option<Effect> {
    f.write(offset, c << 16 | c, 4)
}

#[test]
fn edk2_erase_then_status_then_array() {
    let mut f = Flash::new(SIZE);
    assert!(f.array());
    assert_eq!(f.read(0, 4), Read::Array);
    // Lock status of block 1: unlocked.
    assert_eq!(cmd(&mut f, BLOCK + 8, 0x90), None);
    assert!(!f.array());
    assert_eq!(f.read(BLOCK + 8, 4), Read::Value(0));
    assert_eq!(cmd(&mut f, BLOCK + 4, 0x20), None);
    assert_eq!(cmd(&mut f, BLOCK + 4, 0xd0), Some(Effect::Erase { offset: BLOCK, len: BLOCK }));
    assert_eq!(cmd(&mut f, 0, 0x70), None);
    assert_eq!(f.read(0, 4), Read::Value(STATUS_READY));
    assert_eq!(cmd(&mut f, 0, 0xff), None);
    assert!(f.array());
}

#[test]
fn edk2_buffered_program_writes_each_word_then_commits() {
    let mut f = Flash::new(SIZE);
    assert_eq!(cmd(&mut f, 0x80000, 0xe8), None);
    assert_eq!(f.read(0x80000, 4), Read::Value(STATUS_READY), "status while the buffer is asked for");
    assert_eq!(cmd(&mut f, 0x80000, 0x1f), None, "32 words");
    for i in 0..32u64 {
        let at = 0x80000 + 4 * i;
        assert_eq!(f.write(at, i as u32 * 7, 4), Some(Effect::Program { offset: at, value: i as u32 * 7, width: 4 }));
    }
    // The 33rd write is the confirm, not data.
    assert_eq!(cmd(&mut f, 0, 0xd0), None);
    assert_eq!(f.read(0, 4), Read::Value(STATUS_READY));
    assert_eq!(cmd(&mut f, 0, 0x50), None, "clear status: back to the array");
    assert!(f.array());
}

#[test]
fn word_program_and_unlock() {
    let mut f = Flash::new(SIZE);
    cmd(&mut f, 0, 0x60);
    assert_eq!(cmd(&mut f, 0, 0xd0), None, "unlock writes nothing");
    cmd(&mut f, 0, 0x40);
    assert_eq!(f.write(0x100, 0x1234, 2), Some(Effect::Program { offset: 0x100, value: 0x1234, width: 2 }));
    assert_eq!(f.read(0, 2), Read::Value(0x0080));
}

#[test]
fn broken_sequences_and_strays_fall_back_to_the_array() {
    let mut f = Flash::new(SIZE);
    cmd(&mut f, 0, 0x20);
    assert_eq!(cmd(&mut f, 0, 0x00), None, "an erase without its confirm erases nothing");
    assert!(f.array());
    cmd(&mut f, 0, 0x70);
    assert_eq!(cmd(&mut f, 0, 0x42), None);
    assert!(f.array(), "an unknown command");
    // Outside the device: nothing, and the array again.
    cmd(&mut f, 0, 0x40);
    assert_eq!(f.write(SIZE - 2, 0, 4), None);
    assert!(f.array());
}

#[test]
fn effects_stay_inside_the_device() {
    // Any sequence of writes (a small pseudo-random walk over commands,
    // offsets and data): every effect lies inside.
    let size = 3 * BLOCK;
    let mut f = Flash::new(size);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let cmds = [0x20u32, 0xd0, 0xe8, 0x1f, 0x40, 0x10, 0x60, 0x70, 0x90, 0xff, 0x50, 0x01, 0x03];
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x >> 8) % (size + 64);
        let width = [1u8, 2, 4, 8][(x % 4) as usize];
        let value = if x & 1 == 0 { cmds[((x >> 40) % cmds.len() as u64) as usize] } else { (x >> 20) as u32 };
        match f.write(offset, value, width) {
            Some(Effect::Program { offset, width, .. }) => assert!(offset + u64::from(width) <= size && width <= 4),
            Some(Effect::Erase { offset, len }) => assert!(offset + len <= size && offset % BLOCK == 0),
            None => {}
        }
        assert_eq!(f.array(), f.read(0, 4) == Read::Array);
    }
}
