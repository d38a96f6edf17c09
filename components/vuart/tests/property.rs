//! Random access sequences against a model of the receive FIFO: nothing
//! panics, input comes out in order, and the line always equals RIS & IMSC.

use std::collections::VecDeque;

use proptest::prelude::*;
use vuart::{fr, reg, Access, Error, Pl011, LCR_H_FEN};

#[derive(Clone, Debug)]
enum Op {
    Mmio {
        offset: u64,
        write: bool,
        width: u8,
        value: u32,
    },
    Push(u8),
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly the implemented registers, sometimes anywhere.
    let offset = prop_oneof![
        4 => (0u64..0x13).prop_map(|w| w * 4),
        1 => 0u64..0x1100,
        1 => (0u64..8).prop_map(|i| 0xfe0 + 4 * i),
    ];
    prop_oneof![
        3 => (offset, any::<bool>(), prop_oneof![Just(1u8), Just(2), Just(4), 0u8..9], any::<u32>())
            .prop_map(|(offset, write, width, value)| Op::Mmio { offset, write, width, value }),
        1 => any::<u8>().prop_map(Op::Push),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn model_agrees(ops in prop::collection::vec(op(), 1..200)) {
        let mut u = Pl011::new();
        let mut fifo: VecDeque<u8> = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(b) => {
                    let fen = u.mmio(reg::LCR_H, Access::Read { width: 4 }).unwrap().value & LCR_H_FEN != 0;
                    let cap = if fen { 32 } else { 1 };
                    let ok = u.push_input(b);
                    prop_assert_eq!(ok, fifo.len() < cap);
                    if ok {
                        fifo.push_back(b);
                    }
                }
                Op::Mmio { offset, write, width, value } => {
                    let a = if write { Access::Write { width, value } } else { Access::Read { width } };
                    let loopback = u.mmio(reg::CR, Access::Read { width: 4 }).unwrap().value & 0x80 != 0;
                    match u.mmio(offset, a) {
                        Err(Error::BadWidth { .. }) => prop_assert!(!matches!(width, 1 | 2 | 4)),
                        Err(Error::OutOfRange { .. }) => prop_assert!(offset >= 0x1000),
                        Err(Error::Misaligned { .. }) => prop_assert!(offset % u64::from(width) != 0),
                        Ok(r) => {
                            prop_assert_eq!(r.irq_level, u.irq_level());
                            if offset == reg::DR && !write {
                                prop_assert_eq!(r.value, fifo.pop_front().map_or(0, u32::from));
                            }
                            if offset == reg::DR && write {
                                if loopback {
                                    prop_assert_eq!(r.output, None);
                                    let fen = u.mmio(reg::LCR_H, Access::Read { width: 4 }).unwrap().value & LCR_H_FEN != 0;
                                    if fifo.len() < if fen { 32 } else { 1 } {
                                        fifo.push_back(value as u8);
                                    }
                                } else {
                                    prop_assert_eq!(r.output, Some(value as u8));
                                }
                            } else {
                                prop_assert_eq!(r.output, None);
                            }
                            if !write && width == 4 {
                                prop_assert!(r.value <= 0xffff, "registers are at most 16 bits");
                            }
                        }
                    }
                }
            }
            let ris = u.mmio(reg::RIS, Access::Read { width: 4 }).unwrap().value;
            let imsc = u.mmio(reg::IMSC, Access::Read { width: 4 }).unwrap().value;
            let mis = u.mmio(reg::MIS, Access::Read { width: 4 }).unwrap().value;
            prop_assert_eq!(mis, ris & imsc);
            prop_assert_eq!(u.irq_level(), ris & imsc != 0);
            let f = u.mmio(reg::FR, Access::Read { width: 4 }).unwrap().value;
            prop_assert_eq!(f & fr::RXFE != 0, fifo.is_empty());
            prop_assert_eq!(f & (fr::TXFF | fr::BUSY), 0);
            prop_assert_ne!(f & fr::TXFE, 0);
            prop_assert_eq!(ris & (1 << 6) != 0, !fifo.is_empty());
        }
    }
}
