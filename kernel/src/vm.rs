//! Virtual machines: the components each one is wired to (stage-2 pager,
//! PoD pool, cache-maintenance service), its vCPUs and counters, and the
//! exit summary.

use alloc::vec::Vec;
use core::ptr::NonNull;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::paging::{PageTable, Translation};
use bootcfg::Faults;
use cache_maint::{CacheMaint, VcpuId, VmConfig};
use capabilities::VmCaps;
use pod::{Mode, Pod, PodConfig};
use stage2_pager::{A64Table, Pager};

use crate::arch::el1::El1Regs;
use crate::arch::{FpRegs, TrapFrame};
use crate::hw::KernelHw;
use hwops::Scoped;

/// Guest RAM starts here in every ordinary guest's IPA space (as on QEMU
/// virt); the hardware domain's is where its host RAM is (IPA = PA).
pub const GUEST_RAM_IPA: u64 = 0x4000_0000;
/// A guest image is placed this far into its RAM (the arm64 Image offset).
pub const GUEST_IMAGE_OFFSET: u64 = 0x8_0000;

/// HCR_EL2 bits every guest runs with: VM, SWIO, FMO, IMO, AMO, TSC, RW.
/// TSW and TVM come from the cache-maintenance service. A guest's local
/// TLB maintenance is made safe across vCPU moves by `Hyp::load`.
/// VM, SWIO, FMO, IMO, AMO, TSC, TACR (ACTLR is shadowed), RW.
pub const HCR_BASE: u64 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 19) | (1 << 21) | (1 << 31);
pub const HCR_TSW: u64 = 1 << 22;
pub const HCR_TVM: u64 = 1 << 26;
pub const HCR_RW: u64 = 1 << 31;

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

pub type GuestPager = Pager<A64Table<ReservedTables>>;

/// TEST ONLY (`fault=clean-skips-walk`): a clean source with no memory, so a
/// clean pass ends at once having cleaned 0 bytes.
struct NothingToClean;

impl hwops::CleanSource for NothingToClean {
    fn next_run(&self, _from: u64, _all: bool) -> Option<hwops::MemRun> {
        None
    }
    fn clear_touched(&mut self, _ipa: u64, _len: u64, _tlb: &mut dyn hwops::TlbOps) {}
}

#[derive(Clone, Copy, Default)]
pub struct Counters {
    pub stage2_faults: u64,
    pub hvc: u64,
    pub migrations: u64,
    /// Emulated MMIO accesses, and physical interrupts taken while it ran.
    pub mmio: u64,
    pub irq_exits: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Power {
    Off,
    On,
}

pub struct Vcpu {
    /// GICH_VMCR and GICH_APR: the guest's virtual CPU interface state.
    pub vmcr: u32,
    pub apr: u32,
    pub frame: TrapFrame,
    pub el1: El1Regs,
    pub fp: FpRegs,
    pub power: Power,
    pub last_pcpu: Option<usize>,
    /// Trapped debug, PMU and ACTLR registers (not switched: shadowed).
    pub shadow: vsysreg::Shadow,
    /// Its console output (hypercalls), a line at a time.
    pub out: crate::console::LineBuf,
}

/// SCTLR reset values: AArch64 SCTLR_EL1 and AArch32 SCTLR RES1 bits,
/// MMU and caches off.
const SCTLR_RESET_A64: u64 = 0x30d0_0800;
const SCTLR_RESET_A32: u64 = 0x00c5_0838;
/// SPSR for entering a guest: EL1h (AArch64) or SVC (AArch32), A/I/F masked.
const SPSR_A64: u64 = 0x3c5;
const SPSR_A32: u64 = 0x1d3;

impl Vcpu {
    fn new(index: usize, aarch32: bool) -> Vcpu {
        let mut el1 = El1Regs::reset(HCR_BASE, (1 << 31) | index as u64);
        el1.sctlr = if aarch32 { SCTLR_RESET_A32 } else { SCTLR_RESET_A64 };
        Vcpu {
            vmcr: 0,
            apr: 0,
            frame: TrapFrame::default(),
            el1,
            fp: FpRegs::default(),
            power: Power::Off,
            last_pcpu: None,
            shadow: vsysreg::Shadow::new(),
            out: crate::console::LineBuf::new(),
        }
    }

    /// Power on at `entry` with `x0`/`r0 = context`, MMU and caches off.
    /// An AArch32 entry with bit 0 set starts in Thumb state.
    pub fn reset(&mut self, index: usize, entry: u64, context: u64, aarch32: bool) {
        let last = self.last_pcpu;
        let out = core::mem::take(&mut self.out);
        *self = Vcpu::new(index, aarch32);
        self.last_pcpu = last;
        self.out = out;
        self.frame.x[0] = context;
        if aarch32 {
            self.frame.elr = entry & !1;
            self.frame.spsr = SPSR_A32 | ((entry & 1) << 5);
        } else {
            self.frame.elr = entry;
            self.frame.spsr = SPSR_A64;
        }
        self.power = Power::On;
    }
}

/// Log lines a guest may cause per second; the rest are counted, and the
/// count is printed when the next second starts.
pub const LOG_LINES_PER_S: u32 = 20;

#[derive(Default)]
pub struct LogLimit {
    second: u64,
    used: u32,
    dropped: u64,
}

impl LogLimit {
    /// Lines dropped and not reported yet.
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }

    /// Whether one more line may go out in second `now`; also the number
    /// dropped in earlier seconds, to report once (0 when none).
    pub fn allow(&mut self, now: u64) -> (bool, u64) {
        let mut report = 0;
        if now != self.second {
            self.second = now;
            self.used = 0;
            report = core::mem::take(&mut self.dropped);
        }
        if self.used < LOG_LINES_PER_S {
            self.used += 1;
            (true, report)
        } else {
            self.dropped += 1;
            (false, report)
        }
    }
}

pub struct Vm {
    /// Guest-caused log lines (aborts it provoked, reports it made).
    pub log: LogLimit,
    /// How it was built, for a restart.
    pub boot: Boot,
    /// Restarts so far (PSCI SYSTEM_RESET), and one asked for: it happens
    /// once no pCPU holds any of its vCPUs.
    pub restarts: u32,
    pub restart_pending: bool,
    pub name: heapless::String<16>,
    pub pager: GuestPager,
    pub pod: Pod,
    pub cm: CacheMaint,
    pub vcpus: Vec<Vcpu>,
    pub counters: Counters,
    pub exit_ok: Option<bool>,
    /// The guest's EL1 runs in AArch32 (HCR_EL2.RW = 0).
    pub aarch32: bool,
    /// A Linux guest's emulated devices (vGIC, PL011); `None` for the
    /// bare-metal test guests.
    pub devices: Option<crate::devices::Devices>,
    /// CNTVOFF_EL2: the guest's virtual counter starts near 0 at creation.
    pub cntvoff: u64,
    /// TEST ONLY `fault=` (always empty in a normal build).
    pub faults: Faults,
    /// The hardware domain: whether its vCPUs are pinned (`None` for any
    /// other guest).
    pub hwdom_pinned: Option<bool>,
    /// The hardware domain's SPIs (GIC INTIDs), delivered as hardware
    /// interrupts; empty for any other guest.
    pub hw_spis: Vec<u32>,
}

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
    /// The guest kernel's command line.
    pub bootargs: &'a str,
    pub slice_bytes: u64,
    /// TEST ONLY `fault=` (always empty in a normal build).
    pub faults: Faults,
}

/// What the kernel says when a component named memory outside its VM's.
pub const SCOPE_BUG: &str = "BUG: a component named host memory outside its guest's";

/// Why [`Vm::cache_maint`] failed.
pub enum CmError {
    Cm(cache_maint::Error),
    /// It named memory outside the VM's (a line said so).
    Scope,
}

impl core::fmt::Display for CmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CmError::Cm(e) => write!(f, "{e}"),
            CmError::Scope => f.write_str(SCOPE_BUG),
        }
    }
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
fn pool_len(spec: &Spec, direct: bool) -> u64 {
    if direct || spec.eager {
        spec.mem
    } else {
        spec.pool.min(spec.mem)
    }
}

impl Vm {
    /// The hardware operations this VM's components may ask for: its
    /// memory only (its pool, or the hardware domain's RAM).
    pub fn hw(&self) -> Scoped<KernelHw> {
        self.scoped_hw(false)
    }

    /// [`Vm::hw`] for a PoD fault: TEST ONLY (`fault=no-pod-clean`), the
    /// new frame is zeroed but not cleaned to the PoC before it is mapped.
    pub fn pod_fault_hw(&self) -> Scoped<KernelHw> {
        self.scoped_hw(self.faults.contains(bootcfg::Faults::NO_POD_CLEAN))
    }

    fn scoped_hw(&self, skip_frame_clean: bool) -> Scoped<KernelHw> {
        // SAFETY: `Boot::memory` is the RAM this VM was given at creation.
        unsafe { crate::hw::scoped(self.vttbr(), skip_frame_clean, self.boot.memory()) }
    }

    pub fn vttbr(&self) -> u64 {
        self.pager.vttbr()
    }

    /// Hand a request to this VM's cache-maintenance service, with the
    /// pager as what a clean walks and the real cache and TLB operations.
    pub fn cache_maint(&mut self, req: cache_maint::Request) -> Result<cache_maint::Reply, CmError> {
        let (mut cache, mut tlb) = (self.hw(), self.hw());
        // TEST ONLY (`fault=clean-skips-walk`): every clean finds nothing.
        let source: &mut dyn hwops::CleanSource =
            if self.faults.contains(Faults::CLEAN_SKIPS_WALK) { &mut NothingToClean } else { &mut self.pager };
        let r = self.cm.handle(req, &mut cache_maint::Hw { cache: &mut cache, source, tlb: &mut tlb });
        if !self.scope_kept(&cache) {
            return Err(CmError::Scope);
        }
        r.map_err(CmError::Cm)
    }

    /// False, with a line, when a component named host memory outside this
    /// VM's: `Scoped` refused it (nothing outside was touched), but what
    /// the component meant to zero or clean was not, so the VM must stop.
    pub fn scope_kept(&self, hw: &Scoped<KernelHw>) -> bool {
        if hw.refused() == 0 {
            return true;
        }
        crate::kprintln!("hyp: {}: guest {} ({} operations refused)", SCOPE_BUG, self.name, hw.refused());
        false
    }

    pub fn in_ram(&self, ipa: u64) -> bool {
        let c = self.pod.config();
        ipa >= c.ram_base && ipa - c.ram_base < c.ram_size
    }

    /// Start each of its console lines with `[name] ` (several guests).
    pub fn prefix_console(&mut self) {
        let name = self.name.clone();
        for c in self.vcpus.iter_mut() {
            c.out.set_prefix(&name);
        }
        if let Some(d) = self.devices.as_mut() {
            d.out.set_prefix(&name);
        }
    }

    /// Whether a line this guest caused may be logged now (see [`LogLimit`]).
    pub fn may_log(&mut self) -> bool {
        let now = crate::arch::counter() / crate::arch::counter_freq().max(1);
        let (ok, dropped) = self.log.allow(now);
        if dropped > 0 {
            crate::kprintln!("hyp: guest {}: {} log lines suppressed (at most {} a second)", self.name, dropped, LOG_LINES_PER_S);
        }
        ok
    }

    pub fn finished(&self) -> bool {
        self.exit_ok.is_some()
    }

    /// The HCR_EL2 value vCPU `v` runs with now.
    pub fn hcr(&self, v: usize) -> u64 {
        let t = self.cm.hcr(VcpuId(v as u8)).unwrap_or(cache_maint::Hcr { tsw: true, tvm: true });
        let rw = if self.aarch32 { HCR_RW } else { 0 };
        (HCR_BASE & !rw) | if t.tsw { HCR_TSW } else { 0 } | if t.tvm { HCR_TVM } else { 0 }
    }
}

/// Build a VM from its capabilities: an empty stage-2 table, a PoD pool of
/// `pool` bytes of host RAM (taken with `alloc`), the guest image populated
/// and copied in, and vCPU 0 ready at the image entry.
/// `hwdom`: the VM is the hardware domain, its RAM (IPA = PA at
/// `spec.ram_base`) already set aside by the caller.
pub fn create(
    caps: VmCaps,
    spec: &Spec,
    hwdom: Option<Hwdom>,
    mut alloc: impl FnMut(u64, u64) -> Option<u64>,
) -> Result<Vm, &'static str> {
    // The scheduler's capability is not consumed yet (issue 15).
    let VmCaps { stage2, pod, cache, .. } = caps;
    if spec.image.1 > spec.mem.saturating_sub(GUEST_IMAGE_OFFSET) {
        return Err("guest image larger than its RAM");
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
    let mut boot = Boot {
        name: heapless::String::new(),
        bootargs: heapless::String::new(),
        spec: Spec { name: "", bootargs: "", ..*spec },
        tables,
        pool: pool_pa,
        hwdom,
    };
    let _ = boot.name.push_str(&spec.name[..spec.name.len().min(16)]);
    boot.bootargs.push_str(spec.bootargs).map_err(|_| "guest bootargs longer than 512 bytes")?;
    build(stage2, pod, cache, boot, 0)
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
    let mut new = build(stage2, pod, cache, boot, restarts)?;
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

fn build(stage2: capabilities::Stage2Cap, pod: capabilities::PodCap, cache: capabilities::CacheCap, boot: Boot, restarts: u32) -> Result<Vm, &'static str> {
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
    let mut pod = Pod::new(pod, PodConfig::new(ram, spec.mem, mode)).map_err(|_| "PoD refused the VM")?;
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
        vcpus: (0..spec.vcpus as usize).map(|i| Vcpu::new(i, spec.aarch32)).collect(),
        counters: Counters::default(),
        exit_ok: None,
        aarch32: spec.aarch32,
        devices: None,
        cntvoff: crate::arch::counter(),
        faults: spec.faults,
        hwdom_pinned: None,
        hw_spis: Vec::new(),
    };
    let mut hw = vm.hw();
    vm.pod.start(&mut vm.pager, &mut hw).map_err(|_| "eager population failed")?;
    if !vm.scope_kept(&hw) {
        return Err(SCOPE_BUG);
    }
    let kind = image_kind(spec.image.0, spec.image.1);
    match kind {
        ImageKind::Bare if direct => return Err("the hardware domain must be a Linux kernel (it boots with the board's device tree)"),
        ImageKind::Bare => {
            copy_in(&mut vm, ram + GUEST_IMAGE_OFFSET, spec.image.0, spec.image.1)?;
            vm.vcpus[0].reset(0, ram + GUEST_IMAGE_OFFSET, 0, spec.aarch32);
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
            vm.vcpus[0].reset(0, kernel_at, 0, aarch32);
            if aarch32 {
                vm.vcpus[0].frame.x[1] = 0xffff_ffff;
                vm.vcpus[0].frame.x[2] = dtb_ipa;
            } else {
                vm.vcpus[0].frame.x[0] = dtb_ipa;
            }
            let gicv = GICV.load(core::sync::atomic::Ordering::Relaxed);
            if gicv == 0 || !crate::gich::present() {
                return Err("a Linux guest needs a GICv2 with virtualization extensions (GICH/GICV)");
            }
            let mut tlb = vm.hw();
            for page in 0..2 {
                let off = page * hwops::PAGE_SIZE;
                vm.pager
                    .map(layout.gicc + off, gicv + off, stage2_pager::LeafSize::Page4K, stage2_pager::MemAttrs::Device, &mut tlb)
                    .map_err(|_| "cannot map the virtual CPU interface")?;
            }
            let mut devices = crate::devices::Devices::new(spec.vcpus, layout)?;
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
    }
    Ok(vm)
}

/// Map the hardware domain's device regions (IPA = PA) as Device memory:
/// 2 MiB blocks where a whole aligned chunk is covered, else 4 KiB pages.
fn map_devices(vm: &mut Vm, regions: &[(u64, u64)]) -> Result<(), &'static str> {
    let mut tlb = vm.hw();
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
    let mut hw = vm.hw();
    vm.pod.populate(&mut vm.pager, &mut hw, ipa, len).map_err(|_| "not enough guest memory for a boot image")?;
    if !vm.scope_kept(&hw) {
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
        "summary: guest={} exit={} vcpus={} sw_traps={} tvm_traps={} stage2_faults={} pod_2m={} pod_4k={} populated_bytes={} cleaned_bytes={} max_slice_bytes={} migrations={} restarts={}{}",
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
        c.migrations,
        vm.restarts,
        hwdom
    );
    crate::kprintln!(
        "hyp: guest {} cleans={} slices={} mmio={} irq_exits={} hvc={}",
        vm.name,
        cm.cleans,
        cm.slices,
        c.mmio,
        c.irq_exits,
        c.hvc
    );
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
