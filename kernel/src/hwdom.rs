//! The hardware domain at boot: whether its vCPUs are pinned, and its
//! device tree (the board's own, edited by `guest-dtb`) with the devices it
//! owns.

use crate::devices::Layout;
use crate::vm::{self, Hwdom};

/// Whether the hardware domain's vCPUs get a pCPU each (and so run set/way
/// natively), from `hwdom_pin=`, its `sw=` and the pCPUs there are.
pub fn pin_decision(pin: bootcfg::HwdomPin, g: &bootcfg::GuestConfig, guests: usize, pcpus: usize) -> vcpu_sched::PinDecision {
    let pin = match pin {
        bootcfg::HwdomPin::Auto => vcpu_sched::HwdomPin::Auto,
        bootcfg::HwdomPin::On => vcpu_sched::HwdomPin::On,
        bootcfg::HwdomPin::Off => vcpu_sched::HwdomPin::Off,
    };
    vcpu_sched::PinDecision::new(pin, g.sw != bootcfg::SwMode::No, g.vcpus as usize, guests > 1, pcpus)
}

/// Its device tree and devices. `base` is its RAM (IPA = PA).
pub fn build(cfg: &bootcfg::BootConfig, g: &bootcfg::GuestConfig, board_dtb: &[u8], base: u64, pinned: bool) -> Result<Hwdom, alloc::string::String> {
    use alloc::string::ToString;
    let gic = cfg.gic.as_ref().ok_or("the board has no GIC")?;
    let (Some(gicc), Some(gich), Some(gicv)) = (gic.gicc, gic.gich, gic.gicv) else {
        return Err("the board's GIC has no virtualization extensions (GICH/GICV)".to_string());
    };
    // What the hypervisor keeps: its console, the whole GIC, and all host
    // RAM (a device node whose `reg` lies in RAM must never be mapped into
    // the hardware domain: that RAM is the hypervisor's and other guests').
    // And what the board says it must not own (see platform::Board).
    let mut keep: heapless::Vec<(u64, u64), { 5 + bootcfg::MAX_RAM + MAX_BOARD_KEEP }> = heapless::Vec::new();
    let _ = keep.extend_from_slice(&[gic.gicd, gicc, gich, gicv]);
    if let Some(u) = &cfg.uart {
        let _ = keep.push(u.regs);
    }
    let _ = keep.extend_from_slice(&cfg.ram);
    for r in cfg.board.map_or(&[][..], |b| b.hwdom_keep).iter().take(MAX_BOARD_KEEP) {
        let _ = keep.push((r.base, r.size));
    }
    // Its console: an emulated PL011 where the hypervisor's is one, else
    // where the board has a PL011 for it.
    let console = match &cfg.uart {
        Some(u) if u.kind == bootcfg::UartKind::Pl011 => {
            let spi = u.irq.filter(|i| i.kind == bootcfg::IrqKind::Spi).map(|i| i.num);
            (u.regs.0, spi.ok_or("the console PL011 has no SPI")?)
        }
        _ => cfg.board.and_then(|b| b.hwdom_console).ok_or("no PL011 address for its console on this board")?,
    };
    if g.passthrough_paths().count() > MAX_PATHS {
        return Err(alloc::format!("passthrough= lists more than {MAX_PATHS} device paths"));
    }
    let paths: heapless::Vec<&str, MAX_PATHS> = g.passthrough_paths().collect();
    let initrd = g.ramdisk.map(|(_, len)| {
        let start = base + vm::LINUX_INITRD_OFFSET;
        (start, start + len)
    });
    // Room after its command line for " hyp.restarts=N", written into the
    // same blob at a restart (see `vm::restart`).
    let mut bootargs = alloc::string::String::from(g.bootargs.as_str());
    bootargs.extend(core::iter::repeat_n(' ', vm::RESTARTS_ROOM));
    let spec = guest_dtb::hwdom::HwdomSpec {
        ram: &[(base, g.mem_bytes)],
        vcpus: g.vcpus,
        bootargs: &bootargs,
        initrd,
        keep: &keep,
        console,
        passthrough: g.passthrough.is_some().then_some(&paths[..]),
    };
    // The editor builds the whole tree on the heap (a bump allocator that
    // never frees): measured 10 to 22 times the blob's content; 40 times is
    // asked for, so that running out (a panic) cannot happen.
    // Its content (structure and strings blocks), not its padded size.
    let be = |o: usize| board_dtb.get(o..o + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let content = be(0x20).saturating_add(be(0x24));
    let need = content.saturating_mul(40);
    if crate::heap::free() < need {
        return Err(alloc::format!(
            "its {} KiB board DTB needs about {} KiB of hypervisor heap to edit, {} KiB are free",
            content >> 10,
            need >> 10,
            crate::heap::free() >> 10
        ));
    }
    let (dtb, mut pt) = guest_dtb::hwdom::hwdom_dtb(board_dtb, &spec).map_err(|e| e.to_string())?;
    // The editor honours `keep`; checked again here, where it matters.
    let overlaps = |&(b, s): &(u64, u64)| keep.iter().any(|&(kb, ks)| b < kb.saturating_add(ks) && kb < b.saturating_add(s));
    if let Some(r) = pt.regions.iter().find(|r| overlaps(r)) {
        return Err(alloc::format!("a device region [{:#x}, {:#x}) it would own overlaps RAM or the hypervisor's devices", r.0, r.0 + r.1));
    }
    let spis = gic_spis(gic.gicd.0);
    if let Some(&bad) = pt.spis.iter().find(|&&i| i >= 32 + u32::from(spis)) {
        return Err(alloc::format!("its device interrupt {bad} is beyond the {spis} SPIs the vGIC serves for this GIC"));
    }
    // An SPI the hypervisor's console or the hwdom's emulated one uses is
    // not a device's to pass: such a device goes without its interrupt.
    let hyp_uart = crate::irq::UART_INTID.load(core::sync::atomic::Ordering::Relaxed);
    let shared = |i: &u32| *i == hyp_uart || *i == 32 + console.1;
    if let Some(i) = pt.spis.iter().find(|i| shared(i)) {
        crate::kprintln!("hyp: hwdom {}: interrupt {} is shared with a console; not passed through", g.name.as_str(), i);
    }
    pt.spis.retain(|i| !shared(i));
    // The room: the padded line, NUL-terminated, is in the blob once.
    let mut needle = bootargs.into_bytes();
    needle.push(0);
    let mut hits = dtb.windows(needle.len()).enumerate().filter(|(_, w)| *w == &needle[..]).map(|(at, _)| at);
    // Only a single, unambiguous place is written at a restart.
    let restarts_at = match (hits.next(), hits.next()) {
        (Some(at), None) => Some(at + g.bootargs.len()),
        _ => None,
    };
    Ok(Hwdom {
        restarts_at,
        dtb,
        regions: pt.regions,
        spis: pt.spis,
        edge: pt.edge,
        layout: Layout { gicd: gic.gicd.0, gicc: gicc.0, uart: console.0, uart_spi: console.1, spis, rtc: None },
        pinned,
    })
}

/// Most `passthrough=` paths.
const MAX_PATHS: usize = 64;
/// Most board-kept regions (platform::Board::hwdom_keep).
const MAX_BOARD_KEEP: usize = 4;

/// The SPIs the physical distributor has (GICD_TYPER.ITLinesNumber).
fn gic_spis(gicd: u64) -> u16 {
    // SAFETY: GICD_TYPER, offset 4 of the distributor, mapped at EL2.
    let typer = unsafe { core::ptr::read_volatile((gicd + 4) as *const u32) };
    let lines = ((typer & 0x1f) + 1) * 32;
    // The vGIC's limit too (a multiple of 32).
    (lines.min(1020) - 32).min(vgic::MAX_SPIS as u32) as u16 & !31
}

/// The boot log's account of it.
pub fn report(g: &bootcfg::GuestConfig, base: u64, h: &Hwdom, why: vcpu_sched::PinDecision) {
    let dev_bytes: u64 = h.regions.iter().map(|r| r.1).sum();
    crate::kprintln!(
        "hyp: hwdom {}: RAM [{:#x}, {:#x}) direct-mapped, {} device regions ({} KiB), {} SPIs passed through",
        g.name.as_str(),
        base,
        base + g.mem_bytes,
        h.regions.len(),
        dev_bytes >> 10,
        h.spis.len()
    );
    crate::kprintln!("hyp: hwdom {}: {}", g.name.as_str(), why);
}
