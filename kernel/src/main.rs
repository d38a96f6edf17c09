//! The EL2 hypervisor kernel: boot, the EL2 MMU, vectors, trap dispatch,
//! vCPU context switching, and wiring components together.
#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
mod console;
mod devices;
mod gich;
#[path = "arch/aarch64/mod.rs"]
mod arch;
mod exits;
mod glue;
mod pcpu;
mod frames;
mod heap;
mod hwdom;
mod hw;
mod hyp;
mod irq;
mod power;
mod prof;
mod uart;
mod vm;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arch::mmu::El2Map;
use frames::FRAMES;
use hyp::{Hyp, HYP, MAX_PCPUS};
use irq::IRQS;
use power::{halt, system_off};
use vcpu_sched::Scheduler;

const FDT_MAGIC: u32 = 0xd00d_feed;
/// The loader must place the image 64 KiB aligned (the Image header asks
/// for a 2 MiB aligned base + 0x80000): defmt's string ids are the low 16
/// bits of link-time addresses.
const LOAD_ALIGN: u64 = 0x1_0000;
/// pCPUs that came up (pCPU 0 included), counted once their MMU is on.
/// Alone in its cache line: a secondary writes it cached while pCPU 0
/// still runs with its MMU off.
static PCPUS_UP: Line<AtomicUsize> = Line(AtomicUsize::new(1));

#[repr(align(128))]
struct Line<T>(T);
static PANICKING: AtomicBool = AtomicBool::new(false);
static mut EL2_MAP: Option<El2Map> = None;
/// GIC distributor and CPU interface, for the secondaries.
static mut GIC: (u64, u64) = (0, 0);

/// The DTB at `x0` (the arm64 boot protocol's register), if it is one.
fn read_dtb(x0: u64) -> Option<&'static [u8]> {
    if x0 == 0 || x0 % 8 != 0 {
        return None;
    }
    // SAFETY: reading the 8-byte FDT header at the RAM address the boot
    // protocol names; RAM is readable at EL2 with the MMU on or off.
    let (magic, size) = unsafe {
        (
            u32::from_be(core::ptr::read_volatile(x0 as *const u32)),
            u32::from_be(core::ptr::read_volatile((x0 + 4) as *const u32)),
        )
    };
    if magic == FDT_MAGIC && (64..(16 << 20)).contains(&size) {
        // SAFETY: the header says the blob is `size` bytes long; it is
        // never written while the hypervisor runs.
        return Some(unsafe { core::slice::from_raw_parts(x0 as *const u8, size as usize) });
    }
    None
}

/// The guest bundle the firmware loaded as an initramfs, if the DTB names
/// one (`/chosen/linux,initrd-*`): bootcfg checks it is one.
fn read_bundle(dtb: &[u8]) -> Option<(u64, &'static [u8])> {
    // Non-empty and inside a memory node, as bootcfg returns it.
    let (base, size) = bootcfg::bundle_range(dtb)?;
    if base == 0 || size > 1 << 30 {
        return None;
    }
    // SAFETY: the firmware loaded `size` bytes there and reserved them for
    // the kernel it boots; nothing writes them while the hypervisor runs.
    Some((base, unsafe { core::slice::from_raw_parts(base as *const u8, size as usize) }))
}

/// The board the DTB's root `compatible` names, if this build knows it.
fn board_of(dtb: &[u8]) -> Option<&'static platform::Board> {
    let fdt = bootcfg::fdt::Fdt::new(dtb).ok()?;
    let compat = fdt.root().prop("compatible")?;
    platform::by_compatible(compat.strs(), platform::Arch::Aarch64)
}

/// Program the console the DTB names. False when it names none.
fn setup_console(dtb: &[u8], board: Option<&platform::Board>) -> bool {
    let Some(u) = bootcfg::console(dtb) else {
        return false;
    };
    let kind = match u.kind {
        bootcfg::UartKind::Pl011 => uart::Kind::Pl011,
        bootcfg::UartKind::Ns16550 { reg_shift, io_width } => uart::Kind::Ns16550 { reg_shift, io_width },
        bootcfg::UartKind::Bcm2835Aux => uart::Kind::Bcm2835Aux,
    };
    let clock = u.clock_hz.or_else(|| board.and_then(|b| b.uart_clock(u.regs.0)));
    uart::setup(kind, u.regs.0, clock);
    if let Some(irq) = u.irq.filter(|i| i.kind == bootcfg::IrqKind::Spi) {
        // A plain store: no exclusives before the MMU is on.
        irq::UART_INTID.store(32 + irq.num, Ordering::Relaxed);
    }
    true
}

#[unsafe(no_mangle)]
extern "C" fn kmain(x0: u64, el: u64, load: u64) -> ! {
    // Nothing can be printed before the DTB names the console.
    let Some(dtb) = read_dtb(x0) else { halt() };
    let board = board_of(dtb);
    if !setup_console(dtb, board) {
        halt();
    }
    let on = board.map_or("an unknown board (as its device tree describes it)", |b| b.name);
    kprintln!("\nhyp: {} {} starting on {}, loaded at {:#x}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), on, load);
    if el != 2 {
        kprintln!("hyp: entered at EL{}, but the hypervisor must start at EL2.", el);
        kprintln!("hyp: on QEMU use -M virt,virtualization=on; on a board, firmware that enters the kernel at EL2/HYP.");
        halt();
    }
    if load % LOAD_ALIGN != 0 {
        kprintln!("hyp: loaded at {:#x}, which is not 64 KiB aligned: load the Image at a 2 MiB aligned base + its text_offset", load);
        halt();
    }
    // Read before the rest, so that a stopped boot still powers off.
    power::HAS_PSCI.store(bootcfg::has_psci(dtb), Ordering::Relaxed);
    let bundle = read_bundle(dtb);
    power::EXIT_SEMIHOSTING.store(bootcfg::exit_method_with_bundle(dtb, bundle) == bootcfg::ExitMethod::Semihosting, Ordering::Relaxed);
    let cfg = match bootcfg::parse_with_bundle(dtb, bundle) {
        Ok(c) => c,
        Err(e) => {
            kprintln!("hyp: boot stopped: {}", e);
            system_off();
        }
    };
    if !cfg.faults.is_empty() {
        let mut names: heapless::String<64> = heapless::String::new();
        for name in cfg.faults.names() {
            let _ = names.push_str(if names.is_empty() { "" } else { "," });
            let _ = names.push_str(name);
        }
        kprintln!("hyp: WARN UNSAFE test build: fault={} active (cache-coherence safety broken on purpose; for negative-control tests only)", names);
    }
    irq::PMU_PASSTHROUGH.store(cfg.pmu == bootcfg::PmuMode::Passthrough, Ordering::Relaxed);
    if cfg.pmu == bootcfg::PmuMode::Passthrough {
        kprintln!("hyp: pmu=passthrough: guests share the real PMU and can count EL2 (a measuring aid only)");
    }
    // The EL2 MMU and caches go on before any lock or atomic is used. It
    // maps RAM, and the console and GIC as devices.
    let ram: heapless::Vec<(u64, u64), 8> = cfg.ram.iter().copied().collect();
    let mut devices: heapless::Vec<(u64, u64), 8> = heapless::Vec::new();
    if let Some(u) = &cfg.uart {
        let _ = devices.push(u.regs);
    }
    if let Some(g) = &cfg.gic {
        for r in [Some(g.gicd), g.gicc, g.gich, g.gicv].into_iter().flatten() {
            let _ = devices.push(r);
        }
    }
    // The spin tables parked CPUs poll (reserved below).
    let mut spin_pages: heapless::Vec<u64, { bootcfg::MAX_CPUS }> = heapless::Vec::new();
    for rel in cfg.cpu_list.iter().filter_map(|c| c.release_addr) {
        if !spin_pages.contains(&(rel & !0xfff)) {
            let _ = spin_pages.push(rel & !0xfff);
        }
    }
    // SAFETY: boot runs on pCPU 0 alone; secondaries start after this.
    let map = unsafe { (*core::ptr::addr_of_mut!(EL2_MAP)).insert(El2Map::new(&ram, &devices)) };
    // The secondaries start now, while this pCPU's MMU is still off, so that
    // what they read with theirs off (the map's registers, their index, the
    // release) is in memory and no cache holds a newer copy. They turn
    // their MMU on first thing and wait for GO.
    let pcpus = (cfg.max_cpus.unwrap_or(cfg.cpus).min(cfg.cpus) as usize).clamp(1, MAX_PCPUS);
    arch::set_secondary_mmu(map.secondary_regs());
    start_secondaries(&cfg, pcpus);
    map.enable();
    console::enable_locking();
    arch::install_vectors();
    arch::spsr32::init();
    defmt::info!("EL2 MMU on, {=usize} KiB heap used", heap::used() / 1024);

    if let Some(b) = board.filter(|b| b.psci.is_none() && cfg.psci.is_none()) {
        defmt::info!("{=str}: no PSCI; secondary pCPUs start from the spin table", b.name);
    }
    let gic = cfg.gic.as_ref().and_then(|g| Some((g.gicd.0, g.gicc?.0)));
    let Some(gic) = gic else {
        kprintln!("hyp: boot stopped: the device tree has no GICv2 (distributor and CPU interface)");
        system_off();
    };
    // SAFETY: written once here, before any secondary starts.
    unsafe { *core::ptr::addr_of_mut!(GIC) = gic };
    // The virtual interface, for Linux guests' vGIC.
    if let Some(g) = cfg.gic.as_ref() {
        if let (Some(gich), Some(gicv)) = (g.gich, g.gicv) {
            gich::set_base(gich.0);
            vm::set_gicv(gicv.0);
        }
    }

    let (img_start, img_end) = arch::image_range();
    // Image, DTB, bundle, the DTB's reservations, spin tables, modules.
    const RESERVED: usize = 3 + bootcfg::MAX_RESERVED + bootcfg::MAX_CPUS + 2 * bootcfg::MAX_GUESTS;
    let mut reserved: heapless::Vec<(u64, u64), RESERVED> = heapless::Vec::new();
    let _ = reserved.push((img_start, img_end - img_start));
    let _ = reserved.push((dtb.as_ptr() as u64, dtb.len() as u64));
    if let Some((base, bytes)) = bundle {
        let _ = reserved.push((base, bytes.len() as u64));
    }
    let _ = reserved.extend_from_slice(&cfg.reserved);
    for &page in spin_pages.iter() {
        let _ = reserved.push((page, 0x1000));
    }
    for g in cfg.guests.iter() {
        let _ = reserved.push(g.image);
        if let Some(r) = g.ramdisk {
            let _ = reserved.push(r);
        }
    }
    FRAMES.lock().init(&ram, &reserved);

    let policy = match cfg.sched {
        bootcfg::SchedKind::Rr => vcpu_sched::SchedPolicy::Rr,
        bootcfg::SchedKind::Pinned => vcpu_sched::SchedPolicy::Pinned,
        bootcfg::SchedKind::Null => vcpu_sched::SchedPolicy::Null,
    };
    // The hardware domain: its RAM set aside first (an explicit base must
    // not be taken by another guest's pool), then its pin decision.
    let hwdom = cfg.guests.iter().position(|g| g.hwdom);
    let hwdom_ram = hwdom.map(|i| carve_hwdom_ram(&cfg.guests[i]));
    let pinned = hwdom.map(|i| hwdom::pin_decision(cfg.hwdom_pin, &cfg.guests[i], cfg.guests.len(), pcpus));
    let pin = pinned.map_or(vcpu_sched::HwdomPin::Off, |d| d.hwdom_pin());
    let mut sched = match vcpu_sched::AnySched::new(policy, pcpus, pin) {
        Ok(s) => s,
        Err(e) => {
            kprintln!("hyp: boot stopped: {}", e);
            system_off();
        }
    };

    arch::sysreg_write!("vtcr_el2", stage2_pager::A64_VTCR_BITS | (2 << 16));
    let Some(mut granter) = capabilities::Granter::take() else {
        kprintln!("hyp: boot stopped: capabilities already granted");
        system_off();
    };
    // Every VM's capabilities: the scheduler's goes to `add_vm`, the rest
    // to the components `vm::create` makes.
    let mut sched_caps = Vec::new();
    let mut vm_caps = Vec::new();
    for i in 0..cfg.guests.len() {
        match granter.grant_vm(capabilities::VmId::new(i as u16 + 1)) {
            Ok(capabilities::VmCaps { stage2, pod, cache, sched, vgic }) => {
                sched_caps.push(Some(sched));
                vm_caps.push(Some(vm::Caps { stage2, pod, cache, vgic }));
            }
            Err(e) => {
                kprintln!("hyp: boot stopped: {}", e);
                system_off();
            }
        }
    }
    let mut add_vm = |sched: &mut vcpu_sched::AnySched, i: usize, vcpus: u32, hwdom: bool| {
        let cap = sched_caps[i].take().expect("one SchedCap per guest");
        if let Err(r) = sched.add_vm(i as u8, cap, vcpus as u8, hwdom) {
            kprintln!("hyp: boot stopped: {}", r.error);
            system_off();
        }
    };
    if let Some(i) = hwdom {
        add_vm(&mut sched, i, cfg.guests[i].vcpus, true);
    }
    let mut vms = Vec::new();
    for (i, g) in cfg.guests.iter().enumerate() {
        let mut sw = match g.sw {
            bootcfg::SwMode::Yes => cache_maint::SwMode::Yes,
            bootcfg::SwMode::No => cache_maint::SwMode::No,
            bootcfg::SwMode::Auto => cache_maint::SwMode::Auto,
        };
        let mut hw = None;
        if let (true, Some(base), Some(why)) = (g.hwdom, hwdom_ram, pinned) {
            let pin = why.pinned();
            // Pinned, a pCPU each: set/way runs natively (SWIO). Not
            // pinned: trapped, whatever it declared.
            sw = match (pin, sw) {
                (true, _) => cache_maint::SwMode::No,
                (false, cache_maint::SwMode::No) => cache_maint::SwMode::Auto,
                (false, s) => s,
            };
            match hwdom::build(&cfg, g, dtb, base, pin) {
                Ok(h) => {
                    hwdom::report(g, base, &h, why);
                    for &intid in h.spis.iter() {
                        irq::pass_through(intid, h.edge.contains(&intid));
                    }
                    hw = Some(h);
                }
                Err(e) => {
                    kprintln!("hyp: boot stopped: hardware domain {}: {}", g.name.as_str(), e);
                    system_off();
                }
            }
        }
        let spec = vm::Spec {
            name: g.name.as_str(),
            ram_base: hwdom_ram.filter(|_| g.hwdom).unwrap_or(vm::GUEST_RAM_IPA),
            image: g.image,
            mem: g.mem_bytes,
            pool: g.pool_bytes.unwrap_or(g.mem_bytes),
            vcpus: g.vcpus,
            sw,
            // sw=no guests get eager memory unless told otherwise.
            eager: match g.populate {
                Some(p) => p == bootcfg::Populate::Eager,
                None => g.sw == bootcfg::SwMode::No,
            },
            slice_bytes: cfg.slice_bytes,
            aarch32: g.aarch32,
            ramdisk: g.ramdisk,
            firmware: g.firmware,
            bootargs: g.bootargs.as_str(),
            faults: cfg.faults,
        };
        let caps = vm_caps[i].take().expect("one set of capabilities per guest");
        let alloc = |size, align| FRAMES.lock().alloc(size, align);
        match vm::create(caps, &spec, hw, alloc) {
            Ok(v) => {
                defmt::info!(
                    "guest {=str}: {=u64} MiB RAM, pool {=u64} MiB, {=u32} vCPUs, sw={=str}, {=str} memory",
                    g.name.as_str(),
                    g.mem_bytes >> 20,
                    vm::pool_len(&spec, g.hwdom) >> 20,
                    g.vcpus,
                    sw.as_str(),
                    if g.hwdom {
                        "direct-mapped"
                    } else if spec.eager {
                        "eager"
                    } else {
                        "on-demand"
                    }
                );
                // The hardware domain was added first (its pCPUs reserved).
                if !g.hwdom {
                    add_vm(&mut sched, i, g.vcpus, false);
                }
                // Untrapped set/way is safe only on vCPUs that never move:
                // vCPU k of a sw=no guest stays on pCPU k mod n. TEST ONLY
                // `fault=sw-unpinned` leaves them unpinned.
                if g.hwdom {
                    // Pinned or not by the scheduler's hardware-domain rule.
                } else if g.sw == bootcfg::SwMode::No && cfg.faults.contains(bootcfg::Faults::SW_UNPINNED) {
                    kprintln!("hyp: guest {}: sw=no: set/way runs untrapped and its vCPUs are NOT pinned (fault=sw-unpinned)", g.name.as_str());
                } else if g.sw == bootcfg::SwMode::No {
                    // On the pCPUs the hardware domain did not reserve.
                    let reserved = sched.reserved_pcpus();
                    let free: heapless::Vec<usize, MAX_PCPUS> = (0..pcpus).filter(|p| reserved & (1 << p) == 0).collect();
                    for k in 0..g.vcpus as usize {
                        let pin = free.get(k % free.len().max(1)).copied();
                        let ok = pin.is_some_and(|p| sched.pin(vcpu_sched::VcpuRef::new(i as u8, k as u8), p).is_ok());
                        if !ok {
                            kprintln!("hyp: boot stopped: guest {}: sw=no needs its vCPUs pinned, and vCPU {} could not be (pCPUs free of the hardware domain: {})", g.name.as_str(), k, free.len());
                            system_off();
                        }
                    }
                    kprintln!("hyp: guest {}: sw=no: set/way runs untrapped, so its vCPUs are pinned (vCPU k on the k-th of pCPUs {:?}, mod {})", g.name.as_str(), &free[..], free.len());
                }
                let _ = sched.wake(vcpu_sched::VcpuRef::new(i as u8, 0));
                vms.push(v)
            }
            Err(e) => {
                kprintln!("hyp: guest {}: {}", g.name.as_str(), e);
                system_off();
            }
        }
    }
    // Several guests on one console: each line says whose it is.
    if vms.len() > 1 {
        for vm in vms.iter_mut() {
            vm.prefix_console();
        }
    }
    if vms.is_empty() {
        kprintln!("hyp: no guests in /chosen (add multiboot,kernel module nodes); nothing to run");
        system_off();
    }
    if let Some(i) = hwdom {
        hyp::HWDOM.store(i, Ordering::Relaxed);
    }
    if let Some(ms) = cfg.trace_ms {
        hyp::TRACE_MS.store(u64::from(ms), Ordering::Relaxed);
    }
    HYP.call_once(|| Hyp::new(vms, sched, cfg.reboots));
    if cfg.guests.len() > 1 {
        kprintln!("hyp: console input goes to guest {} (CTRL-a three times switches)", cfg.guests[0].name.as_str());
    }

    wait_secondaries(pcpus);
    GO.store(true, Ordering::Release);
    arch::sev();
    run_pcpu(0)
}

/// Set the hardware domain's RAM aside (IPA = PA): at its `base=`, else
/// where the frame allocator finds room, 2 MiB aligned (128 MiB for an
/// AArch32 kernel, which finds its RAM base by rounding its load address
/// down to 128 MiB). Stops the boot when it cannot.
fn carve_hwdom_ram(g: &bootcfg::GuestConfig) -> u64 {
    let align = if g.aarch32 { 128 << 20 } else { hwops::BLOCK_SIZE };
    let name = g.name.as_str();
    match g.base {
        Some(b) if b % align != 0 => {
            kprintln!("hyp: boot stopped: hardware domain {}: base={:#x} must be a multiple of {} MiB for its kernel", name, b, align >> 20);
            system_off();
        }
        Some(b) => {
            if !FRAMES.lock().alloc_at(b, g.mem_bytes) {
                kprintln!(
                    "hyp: boot stopped: hardware domain {}: its RAM [{:#x}, {:#x}) overlaps the hypervisor's memory (its image, the DTB, a module or a reservation)",
                    name,
                    b,
                    b + g.mem_bytes
                );
                system_off();
            }
            b
        }
        None => match FRAMES.lock().alloc(g.mem_bytes, align) {
            Some(b) => b,
            None => {
                kprintln!("hyp: boot stopped: hardware domain {}: no {} MiB of free host RAM, {} MiB aligned, for it", name, g.mem_bytes >> 20, align >> 20);
                system_off();
            }
        },
    }
}

/// Start pCPUs 1..pcpus: by the spin table the DTB gives for a CPU, else by
/// the firmware's PSCI. Runs with the MMU off. Spin-table CPUs beyond
/// `pcpus` go to a `wfi` loop. A pCPU that cannot be started stops the
/// boot: the scheduler counts on every one of them.
fn start_secondaries(cfg: &bootcfg::BootConfig, pcpus: usize) {
    for (i, c) in cfg.cpu_list.iter().enumerate() {
        arch::set_cpu_mpidr(i, c.mpidr);
    }
    for (i, c) in cfg.cpu_list.iter().enumerate().skip(1) {
        match c.release_addr {
            // SAFETY: `rel` is this CPU's cpu-release-addr, which bootcfg
            // checked is 8-byte aligned RAM; its page is reserved from the
            // frame pool.
            Some(rel) if i < pcpus => unsafe { arch::spin_release(rel) },
            // SAFETY: as above.
            Some(rel) => unsafe { arch::spin_park(rel) },
            None if i >= pcpus => {}
            None if power::HAS_PSCI.load(Ordering::Relaxed) => {
                let r = arch::smc(trap::hypercall::psci::CPU_ON_64 as u64, c.mpidr, arch::secondary_entry(), i as u64);
                if r != 0 {
                    kprintln!("hyp: boot stopped: pCPU {} did not start (PSCI CPU_ON returned {}); maxcpus={} starts fewer", i, r as i64, i);
                    system_off();
                }
            }
            None => {
                kprintln!("hyp: boot stopped: pCPU {} has neither a spin table nor PSCI to start it; maxcpus={} starts fewer", i, i);
                system_off();
            }
        }
    }
}

/// Secondaries may run guests (pCPU 0 set it once the hypervisor is ready).
static GO: AtomicBool = AtomicBool::new(false);

/// Wait until pCPUs 1..pcpus are up (for 1 s from the call, at most); one
/// that is not stops the boot.
fn wait_secondaries(pcpus: usize) {
    let start = arch::counter();
    while PCPUS_UP.0.load(Ordering::Acquire) < pcpus {
        if arch::counter().wrapping_sub(start) > arch::counter_freq() {
            let up = PCPUS_UP.0.load(Ordering::Acquire);
            kprintln!("hyp: boot stopped: only {} of {} pCPUs came up; maxcpus={} starts fewer", up, pcpus, up);
            system_off();
        }
        core::hint::spin_loop();
    }
}

/// Per-pCPU start: interrupts and the tick, then the first guest.
fn run_pcpu(cpu: usize) -> ! {
    // SAFETY: GIC was written by pCPU 0 before any secondary started.
    let (gicd, gicc) = unsafe { *core::ptr::addr_of!(GIC) };
    *IRQS[cpu].lock() = Some(irq::Irq::init(gicd, gicc));
    let mut frame = arch::TrapFrame::default();
    crate::hw::forget_work();
    hyp::leave(cpu, &mut frame);
    arch::enter_guest(cpu, &frame)
}

#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    // The MMU is on already (`_secondary_start`).
    PCPUS_UP.0.fetch_add(1, Ordering::AcqRel);
    while !GO.load(Ordering::Acquire) {
        arch::wfe();
    }
    arch::install_vectors();
    arch::sysreg_write!("vtcr_el2", stage2_pager::A64_VTCR_BITS | (2 << 16));
    defmt::info!("pCPU {=u64} up", cpu);
    run_pcpu(cpu as usize)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if !PANICKING.swap(true, Ordering::SeqCst) {
        console::force_unlock();
    }
    kprintln!("hyp: PANIC on pCPU {}: {}", arch::cpu_id(), info);
    system_off()
}
