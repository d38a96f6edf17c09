//! The emulated devices' register interfaces: any sequence of accesses to
//! the vGIC distributor (from any vCPU, with list-register syncs and
//! flushes and injected interrupts between them) and to the PL011. Nothing
//! may panic, and the vGIC's invariants hold after every step.
#![no_main]
use libfuzzer_sys::fuzz_target;
use swhyp_fuzz::Input;
use vgic::testing::GichModel;
use vgic::{Access, Config, Vgic, VcpuId, Width};

fuzz_target!(|data: &[u8]| {
    let mut i = Input::new(data);
    let vcpus = 1 + i.u8() % 8;
    // The capability goes back at the end, so the next input can take it.
    let Ok(mut gic) = Vgic::new(capabilities::testing::vgic_cap(), Config::new(vcpus, 64)) else { return };
    let mut lrs: Vec<GichModel> = (0..vcpus).map(|_| GichModel::new(4)).collect();
    let mut uart = vuart::Pl011::new();
    while !i.is_empty() {
        let op = i.u8();
        let v = VcpuId(i.u8() % vcpus);
        match op % 8 {
            0 | 1 => {
                let off = u64::from(i.u16() & 0xfff);
                let width = [Width::Byte, Width::Half, Width::Word, Width::Double][usize::from(i.u8() % 4)];
                let access = if op % 8 == 0 { Access::Read { width } } else { Access::Write { width, value: i.u64() } };
                let _ = gic.mmio(v, off, access);
            }
            2 => {
                let _ = gic.inject(v, u32::from(i.u8()));
            }
            3 => {
                let _ = gic.set_level(u32::from(i.u8()), i.u8() & 1 == 1);
            }
            4 => {
                let _ = gic.flush(v, &mut lrs[usize::from(v.0)]);
            }
            5 => {
                let _ = gic.sync(v, &mut lrs[usize::from(v.0)]);
            }
            6 => {
                let off = u64::from(i.u16() & 0xfff);
                let width = [1, 2, 4][usize::from(i.u8() % 3)];
                let access = if i.u8() & 1 == 0 {
                    vuart::Access::Read { width }
                } else {
                    vuart::Access::Write { width, value: i.u32() }
                };
                let _ = uart.mmio(off, access);
                let _ = uart.irq_level();
            }
            _ => {
                let _ = uart.push_input(i.u8());
            }
        }
        assert!(gic.check().is_ok(), "{:?}", gic.check());
    }
    capabilities::testing::return_vgic_cap(gic.into_cap());
});
