//! What the dispatch needs from the machine it runs on: the arch glue
//! ([`Platform`]), a Linux guest's emulated devices ([`Devices`]) and a
//! console line buffer ([`Out`]). The kernel implements them over the real
//! registers; host tests over the cache model.

use core::ops::Range;

use hwops::{CacheOps, Frames, Scoped, TlbOps};
use stage2_pager::TableFormat;

use crate::frame::TrapFrame;
use crate::vm::Vm;

/// What a guest's injected abort is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortKind {
    Data { write: bool },
    Instruction,
}

/// A guest-caused line (rate-limited by the dispatch before it is asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestEvent {
    /// An access to an IPA where no emulated device lives.
    NoDevice { ipa: u64, pc: u64 },
    /// An access outside its RAM.
    OutsideRam { ipa: u64 },
    /// A stage-2 fault the dispatch does not resolve (permission, ...).
    Stage2Fault { fsc: u8, ipa: u64 },
}

/// A point of the trap path, for a profiling platform: the trap's kind
/// (once decoded), or where a segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prof {
    /// 0 HVC, 1 set/way, 2 VM register, 3 stage-2 abort, 4 anything else.
    Kind(u8),
    /// Its VM's lock is taken.
    Locked,
    /// The trap is handled.
    Handled,
    /// The checks before the vCPU goes on are done.
    Resumed,
}

/// When the loaded vCPU's EL1 timers would end a WFI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerWake {
    /// One is firing now (enabled, condition met, not masked).
    Now,
    /// The earliest enabled, unmasked one fires at this physical count.
    At(u64),
    /// None is enabled and unmasked.
    Never,
}

/// A vCPU's (or a device's) console output, a line at a time.
pub trait Out: Default {
    fn push(&mut self, b: u8);
    /// Print what is held (a stopped guest's last, unfinished line).
    fn flush(&mut self);
    /// Print `[name] ` before each line from now on.
    fn set_prefix(&mut self, name: &str);
}

/// A Linux guest's emulated devices (vGIC distributor, UART).
pub trait Devices {
    type Out: Out;
    /// Emulate a trapped load or store at `ipa`: `None` when no device
    /// lives there, else the vCPUs that now have an interrupt to take.
    fn mmio(&mut self, vcpu: usize, ipa: u64, acc: &trap::Access, write: bool, frame: &mut TrapFrame) -> Option<vgic::VcpuSet>;
    /// Fold the list registers of `vcpu` (loaded here) back into the vGIC.
    fn sync(&mut self, vcpu: usize);
    /// Pending virtual interrupts of `vcpu` into the list registers.
    fn flush(&mut self, vcpu: usize);
    /// `vcpu` was just loaded on this pCPU.
    fn loaded(&mut self, vcpu: usize);
    /// Whether `vcpu` has an interrupt to take (a WFI ends). Folds its list
    /// registers back first when it is loaded here.
    fn pending(&mut self, vcpu: usize) -> bool;
    /// The vCPUs that folding list registers back (`sync`, `pending`,
    /// `flush`) routed an SPI to since the last call: the caller kicks them
    /// ([`crate::Hyp::kick_vcpus`]), which also wakes them from WFI.
    fn take_rerouted(&mut self) -> vgic::VcpuSet;
    /// Its UART's output.
    fn out(&mut self) -> &mut Self::Out;
    /// A stage-2 change an access asked for: a firmware guest's variable
    /// flash is mapped read-only while it reads as memory, else unmapped
    /// (reads trap and read its status). None by default.
    fn take_remap(&mut self) -> Option<Remap> {
        None
    }
}

/// Map `pa` read-only at `ipa` (a 2 MiB block), or unmap it (`pa` None).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remap {
    pub ipa: u64,
    pub pa: Option<u64>,
}

/// No emulated devices (a platform whose guests never have any).
pub enum NoDevices {}

impl Devices for NoDevices {
    type Out = NullOut;
    fn mmio(&mut self, _: usize, _: u64, _: &trap::Access, _: bool, _: &mut TrapFrame) -> Option<vgic::VcpuSet> {
        match *self {}
    }
    fn sync(&mut self, _: usize) {
        match *self {}
    }
    fn flush(&mut self, _: usize) {
        match *self {}
    }
    fn loaded(&mut self, _: usize) {
        match *self {}
    }
    fn pending(&mut self, _: usize) -> bool {
        match *self {}
    }
    fn take_rerouted(&mut self) -> vgic::VcpuSet {
        match *self {}
    }
    fn out(&mut self) -> &mut NullOut {
        match *self {}
    }
}

/// Output that goes nowhere.
#[derive(Default)]
pub struct NullOut;

impl Out for NullOut {
    fn push(&mut self, _: u8) {}
    fn flush(&mut self) {}
    fn set_prefix(&mut self, _: &str) {}
}

/// What the pCPU running the dispatch does in hardware. Every method acts
/// on this pCPU (the one that trapped, or that runs the switch) only.
pub trait Platform: Sized {
    /// The stage-2 table format of every VM's pager.
    type Table: TableFormat;
    /// The hardware a VM's components act on (frames, caches, TLBs).
    type Hw<'a>: Frames + CacheOps + TlbOps
    where
        Self: 'a;
    /// A vCPU's state that lives in registers while it runs and is not in
    /// the [`TrapFrame`]: EL1 system registers, FP/SIMD, the GIC CPU
    /// interface.
    type Ctx;
    type Devices: Devices;
    type Out: Out;
    /// What a VM's restart needs ([`Platform::rebuild`]).
    type Boot;

    fn cpu_id(&self) -> usize;

    /// The hardware a VM's components may use, scoped to its memory
    /// `mem`; `vttbr` names its stage-2 context for TLB maintenance.
    /// TEST ONLY `skip_frame_clean`: a new frame is zeroed but not cleaned.
    fn hw(&mut self, vttbr: u64, mem: Range<u64>, skip_frame_clean: bool) -> Scoped<Self::Hw<'_>>;

    // ---- the trapped vCPU's EL1 state (it is loaded on this pCPU) ----

    /// Its SCTLR.
    fn sctlr(&self) -> u64;
    /// Write one of its VM registers (a trapped TVM write).
    fn write_vmreg(&mut self, reg: trap::VmReg, value: u64);
    /// Make it take a synchronous external abort at `far`.
    fn inject_abort(&mut self, frame: &mut TrapFrame, far: u64, kind: AbortKind, aarch32: bool);
    /// When its EL1 timers would end a WFI.
    fn timer_wake(&self) -> TimerWake;

    // ---- switching vCPUs ----

    /// A fresh vCPU `index`'s register state (MMU and caches off).
    fn reset_ctx(&self, index: usize, aarch32: bool) -> Self::Ctx;
    /// Save the loaded vCPU's registers into `ctx` (its GIC CPU interface
    /// too when `devices`) and stop its timers here. False when an AArch32
    /// SPSR bank could not be saved (`spsr` is the trapped mode's).
    fn save(&mut self, ctx: &mut Self::Ctx, devices: bool, aarch32: bool, spsr: u64) -> bool;
    /// Load `ctx` into the registers with `hcr` and `cntvoff` (its GIC CPU
    /// interface too when `devices`). False when an AArch32 SPSR bank could
    /// not be loaded (`spsr` is the mode it resumes in).
    fn load(&mut self, ctx: &mut Self::Ctx, hcr: u64, cntvoff: u64, devices: bool, aarch32: bool, spsr: u64) -> bool;
    /// Switch this pCPU to stage-2 context `vttbr`.
    fn set_vttbr(&mut self, vttbr: u64);
    /// Re-program HCR_EL2 for the loaded vCPU.
    fn set_hcr(&mut self, hcr: u64);
    /// Drop this pCPU's guest TLB entries and I-cache (another vCPU of the
    /// same VM ran here last).
    fn local_guest_flush(&mut self);
    /// Make the pCPUs in `mask` (bit n = pCPU n) exit their guests.
    fn kick(&mut self, mask: u16);
    /// The physical counter now.
    fn counter(&self) -> u64;
    /// Have this pCPU's hypervisor timer fire by physical count `at` (a
    /// vCPU blocked in WFI wakes then; see [`crate::Hyp::wake_due`]).
    fn arm_wake(&mut self, at: u64);

    // ---- the rest of the machine ----

    /// Seconds since boot (for guest log rate limits).
    fn now_s(&self) -> u64;
    /// A line of the hypervisor's own.
    fn log(&mut self, args: core::fmt::Arguments);
    /// A guest-caused line.
    fn guest_event(&mut self, e: GuestEvent);
    /// A stopped VM's exit summary.
    fn summary(&mut self, vm: &Vm<Self>);
    /// Every VM stopped: power the machine off (the kernel never returns).
    fn power_off(&mut self, ok: bool);
    /// Build VM `vm` again from its boot record (PSCI SYSTEM_RESET); no
    /// pCPU holds any of its vCPUs.
    fn rebuild(&mut self, vm: Vm<Self>) -> Result<Vm<Self>, &'static str>;
    /// A hardware domain stops or restarts: deactivate its device
    /// interrupts that are still active (and switch them off if it stopped).
    fn release_hw(&mut self, vm: &Vm<Self>);
    /// A cycle or instruction counter, for the PoD fault benchmark.
    fn pmu(&self) -> u64 {
        0
    }
    /// What one PoD fault cost, in [`Platform::pmu`] units.
    fn pod_fault_cost(&mut self, _n: u64) {}
    /// A profiling point of the trap path (a measuring aid; nothing by
    /// default).
    #[inline(always)]
    fn profile(&mut self, _p: Prof) {}
}
