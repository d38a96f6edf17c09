//! Virtual machines: the components each one is wired to (stage-2 pager,
//! PoD pool, cache-maintenance service), its vCPUs and counters, and the
//! exit summary.

use alloc::vec::Vec;
use core::ptr::NonNull;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::paging::{PageTable, Translation};
use bootcfg::Faults;
use cache_maint::{CacheMaint, VmConfig};
use capabilities::{CacheCap, PodCap, Stage2Cap, VgicCap};
use pod::{Mode, Pod, PodConfig};
use stage2_pager::{A64Table, Pager};

use crate::pcpu::Kernel;
use crate::hw::KernelHw;
use dispatch::vm::{scope_kept, Counters, LogLimit, SCOPE_BUG};
use hwops::Scoped;

/// Guest RAM starts here in every ordinary guest's IPA space (as on QEMU
/// virt); the hardware domain's is where its host RAM is (IPA = PA).
pub const GUEST_RAM_IPA: u64 = 0x4000_0000;
/// A guest image is placed this far into its RAM (the arm64 Image offset).
pub const GUEST_IMAGE_OFFSET: u64 = 0x8_0000;

/// A VM's stage-2 tables come from frames reserved for it when it is
/// created (host RAM outside every guest pool, mapped 1:1 at EL2), enough
/// for its whole RAM in 4 KiB pages plus its devices. So a table is never
/// asked of the allocator while the guest runs, and aarch64-paging's
/// allocation, which cannot fail, never does.
pub struct ReservedTables {
    next: u64,
    end: u64,
    /// Tables aarch64-paging gave back (a 2 MiB block mapped over an empty
    /// page table frees it), reused before the reservation.
    free: heapless::Vec<u64, 64>,
}

/// Table frames a VM with `mem` bytes of RAM can need: a level-3 table per
/// 2 MiB and a level-2 table per 1 GiB of RAM (one more of each for a
/// misaligned end), the root, and a few for device mappings (many more for
/// the hardware domain's passed-through devices; [`map_devices`] checks
/// before each mapping that two are left).
pub fn table_frames(mem: u64, hwdom: bool) -> u64 {
    let l3 = mem.div_ceil(hwops::BLOCK_SIZE) + 1;
    let l2 = mem.div_ceil(1 << 30) + 1;
    let devices: u64 = if hwdom { HWDOM_DEVICE_TABLES } else { 8 };
    l3 + l2 + 1 + devices
}

/// Table frames for the hardware domain's device mappings (512 KiB).
pub const HWDOM_DEVICE_TABLES: u64 = 128;

impl ReservedTables {
    fn new(pa: u64, frames: u64) -> Self {
        ReservedTables { next: pa, end: pa + frames * hwops::PAGE_SIZE, free: heapless::Vec::new() }
    }

    /// Frames still free for new tables.
    pub fn left(&self) -> u64 {
        (self.end - self.next) / hwops::PAGE_SIZE + self.free.len() as u64
    }
}

impl Translation<S2> for ReservedTables {
    fn allocate_table(&mut self) -> (NonNull<PageTable<S2>>, PhysicalAddress) {
        // A freed table first; else the reservation, which `table_frames`
        // sizes for every table the VM can hold at once.
        let pa = match self.free.pop() {
            Some(pa) => pa,
            None => {
                assert!(self.next < self.end, "stage-2 table reservation exceeded (table_frames is wrong)");
                self.next += hwops::PAGE_SIZE;
                self.next - hwops::PAGE_SIZE
            }
        };
        // SAFETY: a frame of this VM's table reservation, used once, mapped
        // 1:1 at EL2; all zeros is an empty table.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, hwops::PAGE_SIZE as usize) };
        (NonNull::new(pa as *mut PageTable<S2>).expect("frame at PA 0"), PhysicalAddress(pa as usize))
    }
    unsafe fn deallocate_table(&mut self, t: NonNull<PageTable<S2>>) {
        // The pager invalidated the TLB for it before the table was freed.
        // A full free list keeps the frame out of use (at most 64 leak,
        // and only if that many are freed without one being reused).
        let _ = self.free.push(t.as_ptr() as u64);
    }
    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<S2>> {
        NonNull::new(pa.0 as *mut PageTable<S2>).expect("table at PA 0")
    }
}

pub type GuestTable = A64Table<ReservedTables>;
pub type Vm = dispatch::Vm<Kernel>;

/// What makes a VM the hardware domain: the board's device tree edited for
/// it, the devices it owns and where it finds its emulated ones.
pub struct Hwdom {
    pub dtb: Vec<u8>,
    /// MMIO it owns (4 KiB-rounded, merged), mapped as Device memory.
    pub regions: Vec<(u64, u64)>,
    /// Its SPIs (GIC INTIDs).
    pub spis: Vec<u32>,
    /// Those of them that are edge-triggered.
    pub edge: Vec<u32>,
    /// Where in `dtb` the [`RESTARTS_ROOM`] spaces after its command line
    /// start (`None`: not found; it then boots again unmarked).
    pub restarts_at: Option<usize>,
    pub layout: crate::devices::Layout,
    pub pinned: bool,
}

/// The physical GICV frame, mapped at each Linux guest's GICC address.
static GICV: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn set_gicv(pa: u64) {
    GICV.store(pa, core::sync::atomic::Ordering::Relaxed);
}

/// How a guest is built, from the boot configuration.
#[derive(Clone, Copy)]
pub struct Spec<'a> {
    pub name: &'a str,
    /// Where its RAM starts in its IPA space ([`GUEST_RAM_IPA`], or the
    /// hardware domain's host RAM, IPA = PA, already set aside for it).
    pub ram_base: u64,
    pub image: (u64, u64),
    pub mem: u64,
    pub pool: u64,
    pub vcpus: u32,
    pub sw: cache_maint::SwMode,
    /// All RAM mapped at creation instead of on demand.
    pub eager: bool,
    pub aarch32: bool,
    pub ramdisk: Option<(u64, u64)>,
    /// `image` is raw firmware (EDK2): read-only flash at IPA 0.
    pub firmware: bool,
    /// The guest kernel's command line.
    pub bootargs: &'a str,
    pub slice_bytes: u64,
    /// TEST ONLY `fault=` (always empty in a normal build).
    pub faults: Faults,
}

/// The capabilities a VM's components consume when it is built (its
/// `SchedCap` goes to the scheduler's `add_vm`).
pub struct Caps {
    pub stage2: Stage2Cap,
    pub pod: PodCap,
    pub cache: CacheCap,
    pub vgic: VgicCap,
}

/// What a restart needs to build the VM again: its spec (owned), and the
/// host RAM it was given (pool and table reservation), reused as they are.
pub struct Boot {
    name: heapless::String<16>,
    bootargs: heapless::String<512>,
    spec: Spec<'static>,
    tables: u64,
    pool: u64,
    hwdom: Option<Hwdom>,
    /// A firmware guest's flash: host frames `(pa, len)`, 2 MiB aligned,
    /// holding the image and zeros. The guest cannot write them, so a
    /// restart maps them again as they are.
    flash: Option<(u64, u64)>,
    /// Its variable store's frames (2 MiB): kept across a restart, as
    /// NOR flash keeps its contents.
    vars: Option<u64>,
    /// A VM without emulated devices keeps its `VgicCap` here.
    vgic: Option<VgicCap>,
}

impl Boot {
    /// The host memory this VM owns: its pool, or the hardware domain's
    /// direct-mapped RAM.
    fn memory(&self) -> core::ops::Range<u64> {
        self.pool..self.pool + pool_len(&self.spec, self.hwdom.is_some())
    }
}

/// How much host RAM a VM owns: all of its RAM when it is direct-mapped or
/// eager, else its PoD pool (at most its RAM).
pub fn pool_len(spec: &Spec, direct: bool) -> u64 {
    if direct || spec.eager {
        spec.mem
    } else {
        spec.pool.min(spec.mem)
    }
}

/// The hardware `vm`'s components may use while it is built: its memory only.
fn vm_hw(vm: &Vm) -> Scoped<KernelHw> {
    vm.hw(&mut Kernel)
}

/// Build a VM from its capabilities: an empty stage-2 table, a PoD pool of
/// `pool` bytes of host RAM (taken with `alloc`), the guest image populated
/// and copied in, and vCPU 0 ready at the image entry.
/// `hwdom`: the VM is the hardware domain, its RAM (IPA = PA at
/// `spec.ram_base`) already set aside by the caller.
pub fn create(
    caps: Caps,
    spec: &Spec,
    hwdom: Option<Hwdom>,
    mut alloc: impl FnMut(u64, u64) -> Option<u64>,
) -> Result<Vm, &'static str> {
    if spec.image.1 > spec.mem.saturating_sub(GUEST_IMAGE_OFFSET) {
        return Err("guest image larger than its RAM");
    }
    if spec.firmware && (hwdom.is_some() || spec.ram_base != GUEST_RAM_IPA) {
        return Err("a firmware guest cannot be the hardware domain (its RAM must be at 0x40000000)");
    }
    if spec.mem > stage2_pager::TRACK_SPAN {
        return Err("mem (guestN.mem / hyp,mem) is beyond the 64 GiB of guest RAM the stage-2 pager tracks (allowed: up to 64G)");
    }
    let frames = table_frames(spec.mem, hwdom.is_some());
    let tables = alloc(frames * hwops::PAGE_SIZE, hwops::PAGE_SIZE).ok_or("not enough host RAM for the guest's stage-2 tables")?;
    let pool_pa = if hwdom.is_some() {
        spec.ram_base
    } else {
        alloc(pool_len(spec, false), hwops::BLOCK_SIZE).ok_or("not enough host RAM for the guest's pool")?
    };
    let flash = if spec.firmware {
        if spec.image.1 == 0 || spec.image.1 > FLASH_MAX {
            return Err("a firmware image must be 1 byte to 64 MiB (the flash at IPA 0)");
        }
        let len = spec.image.1.next_multiple_of(hwops::BLOCK_SIZE);
        let pa = alloc(len + VARS_SIZE, hwops::BLOCK_SIZE).ok_or("not enough host RAM for the firmware guest's flash")?;
        // SAFETY: `pa..pa+len` was just allocated for this VM and is mapped
        // at EL2; the source is the image module, which the DTB describes
        // outside every allocation. The tail is zeroed, so the guest reads
        // nothing of the host's past its image.
        unsafe {
            core::ptr::copy_nonoverlapping(spec.image.0 as *const u8, pa as *mut u8, spec.image.1 as usize);
            // The variable store starts as Debian's template: zeros (the
            // firmware formats it).
            crate::arch::zero_range(pa + spec.image.1, len + VARS_SIZE - spec.image.1);
            crate::arch::dc_civac_range(pa, len + VARS_SIZE);
        }
        Some((pa, len))
    } else {
        None
    };
    let mut boot = Boot {
        name: heapless::String::new(),
        bootargs: heapless::String::new(),
        spec: Spec { name: "", bootargs: "", ..*spec },
        tables,
        pool: pool_pa,
        hwdom,
        flash,
        vars: flash.map(|(pa, len)| pa + len),
        vgic: None,
    };
    let _ = boot.name.push_str(&spec.name[..spec.name.len().min(16)]);
    boot.bootargs.push_str(spec.bootargs).map_err(|_| "guest bootargs longer than 512 bytes")?;
    build(caps, boot, 0)
}

/// The VM after PSCI SYSTEM_RESET: the same spec, pool and table frames,
/// fresh state, the image copied in again from its module (which the guest
/// never wrote), `hyp.restarts=N` on a Linux guest's command line. No pCPU
/// may hold any of its vCPUs.
pub fn restart(vm: Vm) -> Result<Vm, &'static str> {
    let restarts = vm.restarts + 1;
    let log = vm.log;
    let (stage2, _) = vm.pager.into_parts();
    let pod = vm.pod.into_cap();
    let mut cm = vm.cm;
    let cache = cm.take_cap().ok_or("cache-maint has no capability")?;
    let mut boot = vm.boot;
    let vgic = vm.devices.map(|d| d.vgic.into_cap()).or(boot.vgic.take()).ok_or("the vGIC capability is lost")?;
    let base = boot.bootargs.split(" hyp.restarts=").next().unwrap_or("").len();
    boot.bootargs.truncate(base);
    if core::fmt::Write::write_fmt(&mut boot.bootargs, format_args!(" hyp.restarts={restarts}")).is_err() {
        // No room on a full command line: the guest just cannot tell.
        boot.bootargs.truncate(base);
    }
    if let Some(h) = boot.hwdom.as_mut() {
        // Its tree is reused: the mark goes into the room left for it.
        if let Some(at) = h.restarts_at {
            let mut mark: heapless::String<RESTARTS_ROOM> = heapless::String::new();
            let _ = core::fmt::Write::write_fmt(&mut mark, format_args!(" hyp.restarts={restarts}"));
            if let Some(room) = h.dtb.get_mut(at..at + RESTARTS_ROOM) {
                room.fill(b' ');
                room[..mark.len()].copy_from_slice(mark.as_bytes());
            }
        }
        // Direct-mapped RAM is neither zeroed nor cleaned when mapped: the
        // old instance's dirty lines go to memory now, or the new one,
        // starting with its caches off, would later have them land over
        // what it wrote. (Its devices are not reset: DMA the old one
        // started may still land.)
        // SAFETY: the hardware domain's RAM, set aside for it at boot and
        // mapped at EL2; no vCPU of the old instance runs any more.
        unsafe { crate::arch::dc_civac_range(boot.spec.ram_base, boot.spec.mem) };
    }
    let mut new = build(Caps { stage2, pod, cache, vgic }, boot, restarts)?;
    new.log = log;
    // The tables are rebuilt in the same frames (the same VTTBR): drop every
    // translation of this VMID, and the old image's instructions.
    let cur = crate::arch::sysreg_read!("vttbr_el2");
    crate::arch::sysreg_write!("vttbr_el2", new.vttbr());
    crate::arch::isb();
    crate::arch::tlbi_vmid();
    crate::arch::sysreg_write!("vttbr_el2", cur);
    crate::arch::isb();
    crate::arch::ic_iallu_is();
    Ok(new)
}

fn build(caps: Caps, boot: Boot, restarts: u32) -> Result<Vm, &'static str> {
    let Caps { stage2, pod, cache, vgic } = caps;
    let (name, bootargs) = (boot.name.clone(), boot.bootargs.clone());
    let spec = &Spec { name: name.as_str(), bootargs: bootargs.as_str(), ..boot.spec };
    let ram = spec.ram_base;
    let direct = boot.hwdom.is_some();
    let frames = table_frames(spec.mem, direct);
    let pager = Pager::new(stage2, A64Table::new(ReservedTables::new(boot.tables, frames)), ram)
        .map_err(|_| "stage-2 pager refused")?;
    let eager = spec.eager;
    let mode = if direct {
        Mode::DirectMap
    } else if eager {
        Mode::Eager
    } else {
        Mode::OnDemand
    };
    // A 2 MiB PoD block is zeroed and cleaned in steps of half a slice
    // each, so no more than `slice=` bytes run between interrupts.
    let fill_slice = (spec.slice_bytes / 2).max(hwops::PAGE_SIZE);
    let mut pod = Pod::new(pod, PodConfig { fill_slice, ..PodConfig::new(ram, spec.mem, mode) }).map_err(|_| "PoD refused the VM")?;
    if !direct {
        let pool = boot.memory();
        pod.grant(pool.start, pool.end - pool.start).map_err(|_| "PoD refused the pool grant")?;
    }
    let cfg = VmConfig {
        vcpus: spec.vcpus as u8,
        sw: spec.sw,
        slice_bytes: spec.slice_bytes,
        // Eager memory too: population marks every chunk touched, so the
        // first clean walks it all and later ones only what the guest
        // touched since (access flags, as for PoD).
        walk: cache_maint::Walk::Touched,
        ..VmConfig::new(spec.vcpus as u8)
    };
    let cm = CacheMaint::new(cache, cfg).map_err(|_| "cache-maint refused the VM configuration")?;
    let mut vm = Vm {
        log: LogLimit::default(),
        memory: boot.memory(),
        boot,
        restarts,
        restart_pending: false,
        name: {
            let mut n = heapless::String::new();
            let _ = n.push_str(&spec.name[..spec.name.len().min(16)]);
            n
        },
        pager,
        pod,
        cm,
        vcpus: (0..spec.vcpus as usize).map(|i| dispatch::Vcpu::new(&Kernel, i, spec.aarch32)).collect(),
        fills: [None; vcpu_sched::MAX_VCPUS_PER_VM],
        counters: Counters::default(),
        exit_ok: None,
        aarch32: spec.aarch32,
        devices: None,
        cntvoff: crate::arch::counter(),
        faults: spec.faults,
        hwdom_pinned: None,
        hw_spis: Vec::new(),
    };
    let mut hw = vm_hw(&vm);
    vm.pod.start(&mut vm.pager, &mut hw).map_err(|_| "eager population failed")?;
    if !scope_kept(&mut Kernel, &vm.name, &hw) {
        return Err(SCOPE_BUG);
    }
    let kind = if vm.boot.flash.is_some() { ImageKind::Firmware } else { image_kind(spec.image.0, spec.image.1) };
    match kind {
        ImageKind::Bare if direct => return Err("the hardware domain must be a Linux kernel (it boots with the board's device tree)"),
        ImageKind::Bare => {
            // No devices: its vGIC capability waits in its boot record.
            vm.boot.vgic = Some(vgic);
            copy_in(&mut vm, ram + GUEST_IMAGE_OFFSET, spec.image.0, spec.image.1)?;
            vm.vcpus[0].reset(&Kernel, 0, ram + GUEST_IMAGE_OFFSET, 0, spec.aarch32);
            if spec.aarch32 {
                // The arm boot protocol: r1 = machine type (~0: use the DTB).
                vm.vcpus[0].frame.x[1] = 0xffff_ffff;
            }
        }
        ImageKind::LinuxArm64 { .. } | ImageKind::LinuxZimage => {
            if spec.mem < LINUX_INITRD_OFFSET + (32 << 20) {
                return Err("a Linux guest needs at least 192 MiB of RAM");
            }
            let (kernel_at, aarch32) = match kind {
                ImageKind::LinuxArm64 { text_offset } => (ram + LINUX_KERNEL_OFFSET + text_offset, false),
                _ => (ram + LINUX_ZIMAGE_OFFSET, true),
            };
            if aarch32 != spec.aarch32 {
                return Err("the image's architecture differs from the guest's hyp,arch");
            }
            copy_in(&mut vm, kernel_at, spec.image.0, spec.image.1)?;
            let initrd = match spec.ramdisk {
                Some((src, len)) => {
                    copy_in(&mut vm, ram + LINUX_INITRD_OFFSET, src, len)?;
                    Some((ram + LINUX_INITRD_OFFSET, len))
                }
                None => None,
            };
            let dtb_ipa = ram + LINUX_DTB_OFFSET;
            let hw = vm.boot.hwdom.as_ref().map(|h| (h.dtb.as_ptr() as u64, h.dtb.len() as u64, h.layout));
            let layout = match hw {
                Some((p, n, layout)) => {
                    // Its tree was written for this layout at boot (the
                    // Vec is not touched while it is copied).
                    copy_in(&mut vm, dtb_ipa, p, n)?;
                    layout
                }
                None => {
                    let arch = if spec.aarch32 { guest_dtb::Arch::Aarch32 } else { guest_dtb::Arch::Aarch64 };
                    let mut d = guest_dtb::GuestDtbSpec::qemu_virt(arch, spec.mem, spec.vcpus, spec.bootargs);
                    d.ram_base = spec.ram_base;
                    d.initrd = initrd.map(|(start, len)| (start, start + len));
                    let (buf, n) = crate::devices::guest_dtb(d)?;
                    copy_in(&mut vm, dtb_ipa, buf.as_ptr() as u64, n as u64)?;
                    crate::devices::Layout::VIRT
                }
            };
            vm.vcpus[0].reset(&Kernel, 0, kernel_at, 0, aarch32);
            if aarch32 {
                vm.vcpus[0].frame.x[1] = 0xffff_ffff;
                vm.vcpus[0].frame.x[2] = dtb_ipa;
            } else {
                vm.vcpus[0].frame.x[0] = dtb_ipa;
            }
            let mut devices = attach_devices(&mut vm, vgic, spec.vcpus, layout)?;
            if let Some(h) = vm.boot.hwdom.as_ref() {
                vm.hwdom_pinned = Some(h.pinned);
                for &intid in h.spis.iter() {
                    devices.vgic.set_hw(intid, true).map_err(|_| "the vGIC cannot take a hardware domain interrupt (SPI beyond its lines)")?;
                }
                vm.hw_spis = h.spis.clone();
                let regions = h.regions.clone();
                map_devices(&mut vm, &regions)?;
            }
            vm.devices = Some(devices);
        }
        ImageKind::Firmware => {
            // As QEMU virt gives firmware: flash at 0, entered there with
            // every register zero, its device tree at the base of its RAM.
            let (pa, len) = vm.boot.flash.ok_or("a firmware guest without its flash")?;
            let mut tlb = vm_hw(&vm);
            for off in (0..len).step_by(hwops::BLOCK_SIZE as usize) {
                vm.pager
                    .map(off, pa + off, stage2_pager::LeafSize::Block2M, stage2_pager::MemAttrs::Rom, &mut tlb)
                    .map_err(|_| "cannot map the firmware guest's flash")?;
            }
            let vars = vm.boot.vars.ok_or("a firmware guest without its variable store")?;
            vm.pager
                .map(VARS_IPA, vars, stage2_pager::LeafSize::Block2M, stage2_pager::MemAttrs::Rom, &mut tlb)
                .map_err(|_| "cannot map the firmware guest's variable store")?;
            let arch = if spec.aarch32 { guest_dtb::Arch::Aarch32 } else { guest_dtb::Arch::Aarch64 };
            let mut d = guest_dtb::GuestDtbSpec::qemu_virt(arch, spec.mem, spec.vcpus, spec.bootargs);
            let banks = [(0, len), (VARS_IPA, VARS_SIZE)];
            d.flash = &banks;
            d.rtc = Some((vrtc::QEMU_VIRT_BASE, vrtc::QEMU_VIRT_SPI));
            let (buf, n) = crate::devices::guest_dtb(d)?;
            copy_in(&mut vm, ram, buf.as_ptr() as u64, n as u64)?;
            vm.vcpus[0].reset(&Kernel, 0, 0, 0, spec.aarch32);
            let mut devices = attach_devices(&mut vm, vgic, spec.vcpus, crate::devices::Layout::FIRMWARE)?;
            devices.vars = Some(crate::devices::VarFlash { ipa: VARS_IPA, pa: vars, size: VARS_SIZE, flash: vflash::Flash::new(VARS_SIZE), mapped: true });
            vm.devices = Some(devices);
        }
    }
    Ok(vm)
}

/// The flash window of a firmware guest at IPA 0 (QEMU virt's first bank).
pub const FLASH_MAX: u64 = 64 << 20;
/// Its variable store: QEMU virt's second bank, where EDK2 looks, cut to
/// one 2 MiB block (EDK2 uses the first 768 KiB).
pub const VARS_IPA: u64 = 0x0400_0000;
pub const VARS_SIZE: u64 = hwops::BLOCK_SIZE;

/// The emulated devices of a guest with a device tree: the GICV frame
/// mapped at its GICC address, the vGIC, the vUART.
fn attach_devices(vm: &mut Vm, vgic: VgicCap, vcpus: u32, layout: crate::devices::Layout) -> Result<crate::devices::Devices, &'static str> {
    let gicv = GICV.load(core::sync::atomic::Ordering::Relaxed);
    if gicv == 0 || !crate::gich::present() {
        return Err("a guest with a device tree needs a GICv2 with virtualization extensions (GICH/GICV)");
    }
    let mut tlb = vm_hw(vm);
    for page in 0..2 {
        let off = page * hwops::PAGE_SIZE;
        vm.pager
            .map(layout.gicc + off, gicv + off, stage2_pager::LeafSize::Page4K, stage2_pager::MemAttrs::Device, &mut tlb)
            .map_err(|_| "cannot map the virtual CPU interface")?;
    }
    crate::devices::Devices::new(vgic, vcpus, layout)
}

/// Map the hardware domain's device regions (IPA = PA) as Device memory:
/// 2 MiB blocks where a whole aligned chunk is covered, else 4 KiB pages.
fn map_devices(vm: &mut Vm, regions: &[(u64, u64)]) -> Result<(), &'static str> {
    let mut tlb = vm_hw(vm);
    for &(base, len) in regions {
        let end = base.checked_add(len).ok_or("hardware domain device region wraps")?;
        let mut a = base;
        while a < end {
            // A leaf needs at most two new tables (level 2 and level 3).
            if vm.pager.table().translation().left() < 2 {
                return Err("the hardware domain's devices need more stage-2 tables than reserved (too many scattered regions)");
            }
            let block = a.is_multiple_of(hwops::BLOCK_SIZE) && end - a >= hwops::BLOCK_SIZE;
            let (size, n) = if block {
                (stage2_pager::LeafSize::Block2M, hwops::BLOCK_SIZE)
            } else {
                (stage2_pager::LeafSize::Page4K, hwops::PAGE_SIZE)
            };
            vm.pager.map(a, a, size, stage2_pager::MemAttrs::Device, &mut tlb).map_err(|_| "cannot map a hardware domain device (IPA limit, or overlaps its RAM)")?;
            a += n;
        }
    }
    Ok(())
}

/// Populate `[ipa, ipa+len)` (4 KiB pages, or 2 MiB blocks where a whole
/// chunk is covered) and copy `len` bytes from host address `src` in, page
/// by page through the stage-2 map.
fn copy_in(vm: &mut Vm, ipa: u64, src: u64, len: u64) -> Result<(), &'static str> {
    let mut hw = vm_hw(vm);
    vm.pod.populate(&mut vm.pager, &mut hw, ipa, len).map_err(|_| "not enough guest memory for a boot image")?;
    if !scope_kept(&mut Kernel, &vm.name, &hw) {
        return Err(SCOPE_BUG);
    }
    let mut off = 0;
    while off < len {
        let (pa, _) = vm.pager.translate(ipa + off).ok_or("boot image page not mapped")?;
        let n = (hwops::PAGE_SIZE - (ipa + off) % hwops::PAGE_SIZE).min(len - off);
        // SAFETY: `pa` is a frame of this VM's memory just populated; the
        // source is a module the DTB describes (outside every allocation) or
        // kernel memory; both are mapped 1:1 at EL2.
        unsafe { core::ptr::copy_nonoverlapping((src + off) as *const u8, pa as *mut u8, n as usize) };
        // Clean and invalidate: a guest that starts with caches off must
        // not later hit stale lines of what it wrote at the PoC.
        // SAFETY: as for the copy: a frame of this VM's memory, just written.
        unsafe { crate::arch::dc_civac_range(pa, n) };
        off += n;
    }
    crate::arch::ic_iallu_is();
    Ok(())
}

/// What a guest image is, from its header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageKind {
    /// A bare-metal test guest: runs at the image offset, no DTB.
    Bare,
    /// A Linux arm64 `Image` (magic "ARM\x64" at 0x38).
    LinuxArm64 { text_offset: u64 },
    /// A Linux arm `zImage` (magic 0x016f2818 at 0x24).
    LinuxZimage,
    /// Raw firmware (`hyp,firmware`): not told by its header.
    Firmware,
}

pub fn image_kind(src: u64, len: u64) -> ImageKind {
    let rd32 = |off: u64| {
        // SAFETY: reads inside the module, bounds checked by the caller.
        unsafe { core::ptr::read_unaligned((src + off) as *const u32) }
    };
    if len >= 64 && rd32(0x38) == 0x644d_5241 {
        // SAFETY: as above.
        let text_offset = unsafe { core::ptr::read_unaligned((src + 8) as *const u64) };
        return ImageKind::LinuxArm64 { text_offset };
    }
    if len >= 0x30 && rd32(0x24) == 0x016f_2818 {
        return ImageKind::LinuxZimage;
    }
    ImageKind::Bare
}

/// Spaces left after the hardware domain's command line in its device
/// tree, for ` hyp.restarts=N` (N up to 1000).
pub const RESTARTS_ROOM: usize = 20;

/// Where a Linux guest's pieces go in its RAM (offsets from its base).
pub const LINUX_KERNEL_OFFSET: u64 = 2 << 20;
pub const LINUX_ZIMAGE_OFFSET: u64 = 16 << 20;
pub const LINUX_DTB_OFFSET: u64 = 128 << 20;
pub const LINUX_INITRD_OFFSET: u64 = 160 << 20;

/// Print the one-line exit summary tools and tests parse.
pub fn print_summary(vm: &Vm) {
    let c = &vm.counters;
    let cm = vm.cm.counters();
    let pod = vm.pod.stats();
    let hwdom = match vm.hwdom_pinned {
        Some(true) => " hwdom=yes pinned=yes",
        Some(false) => " hwdom=yes pinned=no",
        None => " hwdom=no",
    };
    crate::kprintln!(
        "summary: guest={} exit={} vcpus={} sw_traps={} tvm_traps={} stage2_faults={} pod_2m={} pod_4k={} populated_bytes={} cleaned_bytes={} max_slice_bytes={} max_nonpreempt_bytes={} migrations={} restarts={} wfi_blocks={}{}",
        vm.name,
        if vm.exit_ok == Some(true) { "ok" } else { "fail" },
        vm.vcpus.len(),
        cm.sw_traps,
        cm.tvm_traps,
        c.stage2_faults,
        pod.pod_2m,
        pod.pod_4k,
        pod.populated_bytes(),
        cm.cleaned_bytes,
        cm.max_slice_bytes,
        crate::hw::MAX_NONPREEMPT.load(core::sync::atomic::Ordering::Relaxed),
        c.migrations,
        vm.restarts,
        c.wfi_blocks,
        hwdom
    );
    crate::kprintln!(
        "hyp: guest {} cleans={} slices={} mmio={} irq_exits={} hvc={} wfi={}",
        vm.name,
        cm.cleans,
        cm.slices,
        c.mmio,
        c.irq_exits,
        c.hvc,
        c.wfi
    );
    crate::prof::print();
    let f: [u64; 4] = core::array::from_fn(|i| crate::hw::FILL_INSNS[i].load(core::sync::atomic::Ordering::Relaxed));
    let pod_fault = crate::hw::POD_FAULT_INSNS.load(core::sync::atomic::Ordering::Relaxed);
    // Only a benchmark guest runs the PMU counter these come from.
    if pod_fault != 0 {
        crate::kprintln!(
            "hyp: fill_insns zero_4k={} zero_2m={} clean_4k={} clean_2m={} pod_fault_total={}",
            f[0],
            f[1],
            f[2],
            f[3],
            pod_fault
        );
    }
}
