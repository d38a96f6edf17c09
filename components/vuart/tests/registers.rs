//! Every register of the emulated PL011, one at a time.

use vuart::{
    cr, fr, int, reg, Access, Error, MmioReply, Pl011, CELL_ID, LCR_H_FEN, PERIPH_ID, RSR_OE,
};

fn rd(u: &mut Pl011, off: u64, width: u8) -> u32 {
    u.mmio(off, Access::Read { width }).unwrap().value
}

fn rd32(u: &mut Pl011, off: u64) -> u32 {
    rd(u, off, 4)
}

fn wr(u: &mut Pl011, off: u64, width: u8, value: u32) -> MmioReply {
    u.mmio(off, Access::Write { width, value }).unwrap()
}

fn wr32(u: &mut Pl011, off: u64, value: u32) -> MmioReply {
    wr(u, off, 4, value)
}

#[test]
fn reset_values() {
    let mut u = Pl011::new();
    let expect = [
        (reg::DR, 0),
        (reg::RSR_ECR, 0),
        (reg::FR, fr::TXFE | fr::RXFE),
        (reg::ILPR, 0),
        (reg::IBRD, 0),
        (reg::FBRD, 0),
        (reg::LCR_H, 0),
        (reg::CR, 0x300),
        (reg::IFLS, 0x12),
        (reg::IMSC, 0),
        (reg::RIS, 0),
        (reg::MIS, 0),
        (reg::ICR, 0),
        (reg::DMACR, 0),
    ];
    for (off, v) in expect {
        assert_eq!(rd32(&mut u, off), v, "offset {off:#x}");
    }
    assert!(!u.irq_level());
    assert_eq!(u.input_room(), 1);
}

#[test]
fn primecell_ids_as_the_amba_bus_reads_them() {
    let mut u = Pl011::new();
    let mut pid = 0u32;
    let mut cid = 0u32;
    for i in 0..4 {
        let p = rd32(&mut u, reg::PERIPH_ID + 4 * i);
        let c = rd32(&mut u, reg::CELL_ID + 4 * i);
        assert_eq!(p, u32::from(PERIPH_ID[i as usize]));
        assert_eq!(c, u32::from(CELL_ID[i as usize]));
        pid |= (p & 0xff) << (8 * i);
        cid |= (c & 0xff) << (8 * i);
    }
    assert_eq!(pid, 0x0034_1011, "PL011 r1p5");
    assert_eq!(
        pid & 0x000f_ffff,
        0x0004_1011,
        "matches amba-pl011's id table"
    );
    assert_eq!((pid >> 20) & 0xf, 3, "revision 3: 32-byte FIFOs");
    assert_eq!(cid, 0xb105_f00d);
    assert_eq!(PERIPH_ID, [0x11, 0x10, 0x34, 0x00]);
    assert_eq!(CELL_ID, [0x0d, 0xf0, 0x05, 0xb1]);
    // Read-only.
    wr32(&mut u, reg::PERIPH_ID, 0xff);
    wr32(&mut u, reg::CELL_ID + 12, 0);
    assert_eq!(rd32(&mut u, reg::PERIPH_ID), 0x11);
    assert_eq!(rd32(&mut u, reg::CELL_ID + 12), 0xb1);
}

#[test]
fn data_write_outputs_its_low_byte_at_every_width() {
    let mut u = Pl011::new();
    // Reset state: UART disabled. Output is still produced (earlycon).
    assert_eq!(wr(&mut u, reg::DR, 1, b'a' as u32).output, Some(b'a'));
    assert_eq!(
        wr(&mut u, reg::DR, 2, 0x0f00 | b'b' as u32).output,
        Some(b'b')
    );
    let r = wr32(&mut u, reg::DR, 0xdead_0000 | b'c' as u32);
    assert_eq!(
        r,
        MmioReply {
            value: 0,
            irq_level: false,
            output: Some(b'c')
        }
    );
    // Byte lane 1 of DR is not the data.
    assert_eq!(wr(&mut u, reg::DR + 1, 1, b'd' as u32).output, None);
    // Nothing else outputs.
    for off in [reg::RSR_ECR, reg::CR, reg::IMSC, reg::ICR, 0x8, 0x100] {
        assert_eq!(wr32(&mut u, off, 0x41).output, None, "offset {off:#x}");
    }
}

#[test]
fn data_read_pops_input_in_order() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::LCR_H, LCR_H_FEN);
    for b in b"hey" {
        assert!(u.push_input(*b));
    }
    assert_eq!(rd32(&mut u, reg::FR) & fr::RXFE, 0);
    assert_eq!(rd(&mut u, reg::DR, 1), b'h' as u32);
    assert_eq!(rd(&mut u, reg::DR, 2), b'e' as u32);
    // A read of lane 1 (the error bits) does not pop.
    assert_eq!(rd(&mut u, reg::DR + 1, 1), 0);
    assert_eq!(rd32(&mut u, reg::DR), b'y' as u32);
    assert_ne!(rd32(&mut u, reg::FR) & fr::RXFE, 0);
    // Empty: reads 0 and stays empty.
    assert_eq!(rd32(&mut u, reg::DR), 0);
    assert_ne!(rd32(&mut u, reg::FR) & fr::RXFE, 0);
}

#[test]
fn fifo_depth_follows_fen() {
    let mut u = Pl011::new();
    // FIFOs off: a one-byte holding register.
    assert!(u.push_input(1));
    assert!(!u.push_input(2), "full");
    assert_eq!(u.input_room(), 0);
    assert_ne!(rd32(&mut u, reg::FR) & fr::RXFF, 0);
    assert_eq!(rd32(&mut u, reg::DR), 1);
    assert_eq!(rd32(&mut u, reg::FR) & fr::RXFF, 0);

    wr32(&mut u, reg::LCR_H, 0x70); // 8 bits, FIFOs on
    assert_eq!(u.input_room(), 32);
    for i in 0..32 {
        assert!(u.push_input(i), "byte {i}");
        let full = rd32(&mut u, reg::FR) & fr::RXFF != 0;
        assert_eq!(full, i == 31);
    }
    assert!(!u.push_input(99));
    for i in 0..32 {
        assert_eq!(rd32(&mut u, reg::DR), i);
    }
    assert_ne!(rd32(&mut u, reg::FR) & fr::RXFE, 0);
}

#[test]
fn flags_never_show_a_busy_or_full_transmitter() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::CR, cr::UARTEN | cr::TXE | cr::RXE);
    for i in 0..100 {
        wr(&mut u, reg::DR, 1, i);
        let f = rd32(&mut u, reg::FR);
        assert_eq!(f & (fr::TXFF | fr::BUSY), 0);
        assert_ne!(f & fr::TXFE, 0);
        // No modem lines.
        assert_eq!(f & (fr::CTS | fr::DSR | fr::DCD | fr::RI), 0);
    }
}

#[test]
fn stored_registers_keep_their_implemented_bits() {
    let cases = [
        (reg::ILPR, 0x1ff, 0xff),
        (reg::IBRD, 0x1_2345, 0x2345),
        (reg::FBRD, 0xff, 0x3f),
        (reg::LCR_H, 0x1ff, 0xff),
        (reg::CR, 0xffff_ffff, 0xff87),
        (reg::IFLS, 0xff, 0x3f),
        (reg::IMSC, 0xffff, 0x7ff),
        (reg::DMACR, 0xf, 0x7),
    ];
    for (off, written, read) in cases {
        let mut u = Pl011::new();
        wr32(&mut u, off, written);
        assert_eq!(rd32(&mut u, off), read, "offset {off:#x}");
        wr32(&mut u, off, 0);
        assert_eq!(rd32(&mut u, off), 0, "offset {off:#x}");
    }
}

#[test]
fn read_only_registers_ignore_writes() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::FR, 0xffff);
    wr32(&mut u, reg::RIS, 0xffff);
    wr32(&mut u, reg::MIS, 0xffff);
    assert_eq!(rd32(&mut u, reg::FR), fr::TXFE | fr::RXFE);
    assert_eq!(rd32(&mut u, reg::RIS), 0);
    assert_eq!(rd32(&mut u, reg::MIS), 0);
    assert!(!u.irq_level());
}

#[test]
fn tx_interrupt_is_ready_to_send_when_enabled() {
    let mut u = Pl011::new();
    // Reset CR has TXE but not UARTEN.
    assert_eq!(rd32(&mut u, reg::RIS) & int::TX, 0);
    wr32(&mut u, reg::CR, cr::UARTEN);
    assert_eq!(rd32(&mut u, reg::RIS) & int::TX, 0, "transmitter off");
    let r = wr32(&mut u, reg::CR, cr::UARTEN | cr::TXE);
    assert!(!r.irq_level, "masked");
    assert_eq!(rd32(&mut u, reg::RIS), int::TX);
    assert_eq!(rd32(&mut u, reg::MIS), 0);

    let r = wr32(&mut u, reg::IMSC, int::TX);
    assert!(r.irq_level);
    assert!(u.irq_level());
    assert_eq!(rd32(&mut u, reg::MIS), int::TX);
    // Writing data or ICR does not lower it: the FIFO is still empty.
    assert!(wr(&mut u, reg::DR, 1, b'x' as u32).irq_level);
    assert!(wr32(&mut u, reg::ICR, int::ALL).irq_level);
    // Masking or disabling does.
    assert!(!wr32(&mut u, reg::IMSC, 0).irq_level);
    wr32(&mut u, reg::IMSC, int::TX);
    assert!(!wr32(&mut u, reg::CR, cr::UARTEN | cr::RXE).irq_level);
    assert!(wr32(&mut u, reg::CR, cr::UARTEN | cr::TXE).irq_level);
    assert!(!wr32(&mut u, reg::CR, cr::TXE).irq_level);
}

#[test]
fn rx_interrupts_with_fifos_off() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::IMSC, int::RX);
    assert!(u.push_input(b'k'));
    assert_eq!(rd32(&mut u, reg::RIS), int::RX | int::RT);
    assert_eq!(rd32(&mut u, reg::MIS), int::RX);
    assert!(u.irq_level());
    // ICR does not clear a level.
    assert!(wr32(&mut u, reg::ICR, int::RX | int::RT).irq_level);
    let r = u.mmio(reg::DR, Access::Read { width: 4 }).unwrap();
    assert_eq!(r.value, b'k' as u32);
    assert!(!r.irq_level, "drained");
    assert_eq!(rd32(&mut u, reg::RIS), 0);
}

#[test]
fn rx_trigger_levels_follow_ifls() {
    // RXIFLSEL (bits 5:3) -> bytes that raise RXRIS; reserved values act as 1/2.
    let levels = [(0, 4), (1, 8), (2, 16), (3, 24), (4, 28), (5, 16), (7, 16)];
    for (sel, level) in levels {
        let mut u = Pl011::new();
        wr32(&mut u, reg::LCR_H, LCR_H_FEN);
        wr32(&mut u, reg::IFLS, sel << 3);
        wr32(&mut u, reg::IMSC, int::RX);
        for n in 1..=32usize {
            assert!(u.push_input(n as u8));
            let ris = rd32(&mut u, reg::RIS);
            assert_ne!(ris & int::RT, 0, "timeout with {n} bytes");
            assert_eq!(ris & int::RX != 0, n >= level, "sel {sel}, {n} bytes");
            assert_eq!(u.irq_level(), n >= level);
        }
        // Reading down below the level lowers RX, RT stays until empty.
        for n in (0..32usize).rev() {
            rd32(&mut u, reg::DR);
            let ris = rd32(&mut u, reg::RIS);
            assert_eq!(ris & int::RX != 0, n >= level && n > 0);
            assert_eq!(ris & int::RT != 0, n > 0);
        }
    }
}

#[test]
fn rt_interrupt_alone_catches_single_keystrokes() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::LCR_H, LCR_H_FEN);
    wr32(&mut u, reg::IMSC, int::RT);
    assert!(!u.irq_level());
    u.push_input(b'q');
    assert!(u.irq_level());
    assert_eq!(rd32(&mut u, reg::MIS), int::RT);
    rd32(&mut u, reg::DR);
    assert!(!u.irq_level());
}

#[test]
fn loopback_feeds_the_receiver_and_overruns() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::CR, cr::UARTEN | cr::TXE | cr::RXE | cr::LBE);
    wr32(&mut u, reg::IMSC, int::OE);
    let r = wr(&mut u, reg::DR, 1, b'L' as u32);
    assert_eq!(r.output, None);
    // FIFOs off: a second byte overruns.
    let r = wr(&mut u, reg::DR, 1, b'M' as u32);
    assert_eq!(r.output, None);
    assert!(r.irq_level);
    assert_eq!(rd32(&mut u, reg::RSR_ECR), RSR_OE);
    assert_ne!(rd32(&mut u, reg::RIS) & int::OE, 0);
    assert_eq!(rd32(&mut u, reg::MIS), int::OE);
    assert_eq!(rd32(&mut u, reg::DR), b'L' as u32);
    // The overrun stays latched until cleared.
    assert_eq!(rd32(&mut u, reg::RSR_ECR), RSR_OE);
    wr32(&mut u, reg::RSR_ECR, 0);
    assert_eq!(rd32(&mut u, reg::RSR_ECR), 0);
    assert!(u.irq_level());
    let r = wr32(&mut u, reg::ICR, int::OE);
    assert!(!r.irq_level);
    assert_eq!(rd32(&mut u, reg::RIS) & int::OE, 0);
    // Loopback off: output again.
    wr32(&mut u, reg::CR, cr::UARTEN | cr::TXE | cr::RXE);
    assert_eq!(wr(&mut u, reg::DR, 1, b'N' as u32).output, Some(b'N'));
}

#[test]
fn icr_clears_only_the_bits_written() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::CR, cr::UARTEN | cr::TXE | cr::RXE | cr::LBE);
    wr(&mut u, reg::DR, 1, 1);
    wr(&mut u, reg::DR, 1, 2); // overrun
    wr32(&mut u, reg::ICR, int::ALL & !int::OE);
    assert_ne!(rd32(&mut u, reg::RIS) & int::OE, 0);
    wr32(&mut u, reg::ICR, int::OE);
    assert_eq!(rd32(&mut u, reg::RIS) & int::OE, 0);
    // ICR reads as zero.
    assert_eq!(rd32(&mut u, reg::ICR), 0);
}

#[test]
fn sub_word_accesses_use_byte_lanes() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::CR, 0xc301);
    assert_eq!(rd(&mut u, reg::CR, 2), 0xc301);
    assert_eq!(rd(&mut u, reg::CR, 1), 0x01);
    assert_eq!(rd(&mut u, reg::CR + 1, 1), 0xc3);
    assert_eq!(rd(&mut u, reg::CR + 2, 2), 0);
    // A byte write replaces only its lane.
    wr(&mut u, reg::CR + 1, 1, 0x03);
    assert_eq!(rd32(&mut u, reg::CR), 0x0301);
    wr(&mut u, reg::CR, 1, 0x00);
    assert_eq!(rd32(&mut u, reg::CR), 0x0300);
    // A halfword write of a 16-bit register.
    wr(&mut u, reg::IBRD, 2, 0xbeef);
    assert_eq!(rd32(&mut u, reg::IBRD), 0xbeef);
    // The ID registers by byte.
    assert_eq!(rd(&mut u, reg::CELL_ID + 4, 1), 0xf0);
    assert_eq!(rd(&mut u, reg::CELL_ID + 5, 1), 0);
}

#[test]
fn bad_accesses_are_errors() {
    let mut u = Pl011::new();
    for width in [0, 3, 5, 8, 16, 255] {
        assert_eq!(
            u.mmio(0, Access::Read { width }),
            Err(Error::BadWidth { width })
        );
        assert_eq!(
            u.mmio(0, Access::Write { width, value: 0x41 }),
            Err(Error::BadWidth { width })
        );
    }
    for offset in [0x1000, 0x1004, u64::MAX, u64::MAX - 3] {
        assert_eq!(
            u.mmio(offset, Access::Read { width: 4 }),
            Err(Error::OutOfRange { offset })
        );
    }
    assert_eq!(
        u.mmio(
            2,
            Access::Write {
                width: 4,
                value: 0x41
            }
        ),
        Err(Error::Misaligned {
            offset: 2,
            width: 4
        })
    );
    assert_eq!(
        u.mmio(0x31, Access::Read { width: 2 }),
        Err(Error::Misaligned {
            offset: 0x31,
            width: 2
        })
    );
    // Errors change nothing.
    assert_eq!(rd32(&mut u, reg::CR), 0x300);
    assert_eq!(
        Error::BadWidth { width: 8 }.to_string(),
        "vuart: 8-byte access (allowed: 1, 2 or 4)"
    );
}

#[test]
fn every_offset_and_width_is_answered_without_panic() {
    let implemented = [
        reg::DR,
        reg::RSR_ECR,
        reg::FR,
        reg::ILPR,
        reg::IBRD,
        reg::FBRD,
        reg::LCR_H,
        reg::CR,
        reg::IFLS,
        reg::IMSC,
        reg::RIS,
        reg::MIS,
        reg::ICR,
        reg::DMACR,
    ];
    let mut u = Pl011::new();
    for offset in 0..0x1010u64 {
        for width in 0..=8u8 {
            let ok =
                matches!(width, 1 | 2 | 4) && offset < 0x1000 && offset % u64::from(width) == 0;
            let r = u.mmio(offset, Access::Read { width });
            assert_eq!(r.is_ok(), ok, "read {offset:#x}/{width}");
            let word = offset & !3;
            let reserved = !implemented.contains(&word) && word < reg::PERIPH_ID;
            if ok && reserved {
                assert_eq!(r.unwrap().value, 0, "RAZ at {offset:#x}");
                let w = u
                    .mmio(
                        offset,
                        Access::Write {
                            width,
                            value: u32::MAX,
                        },
                    )
                    .unwrap();
                assert_eq!(w.output, None);
                assert_eq!(u.mmio(offset, Access::Read { width }).unwrap().value, 0);
            }
        }
    }
    // Reserved writes touched nothing.
    let mut fresh = Pl011::new();
    for off in implemented {
        assert_eq!(rd32(&mut u, off), rd32(&mut fresh, off), "offset {off:#x}");
    }
}

#[test]
fn reset_restores_everything() {
    let mut u = Pl011::new();
    wr32(&mut u, reg::LCR_H, 0x70);
    wr32(&mut u, reg::CR, 0x301);
    wr32(&mut u, reg::IMSC, int::ALL);
    u.push_input(7);
    assert!(u.irq_level());
    u.reset();
    assert!(!u.irq_level());
    assert_eq!(rd32(&mut u, reg::CR), 0x300);
    assert_eq!(rd32(&mut u, reg::LCR_H), 0);
    assert_eq!(rd32(&mut u, reg::FR), fr::TXFE | fr::RXFE);
}
