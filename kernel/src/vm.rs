//! Virtual machines: their stage-2 tables, vCPUs, counters, and the exit
//! summary.

use alloc::vec::Vec;
use core::ptr::NonNull;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes as S2};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Stage2, Translation};
use aarch64_paging::Mapping;

use crate::arch::el1::El1Regs;
use crate::arch::TrapFrame;

/// Guest RAM starts here in every guest's IPA space (as on QEMU virt).
pub const GUEST_RAM_IPA: u64 = 0x4000_0000;
/// A guest image is placed this far into its RAM (the arm64 Image offset).
pub const GUEST_IMAGE_OFFSET: u64 = 0x8_0000;

/// VTCR_EL2: T0SZ=25 (39-bit IPA), SL0=1 (start at level 1), WBWA inner
/// and outer, inner shareable, 4 KiB granule, PS=40 bits, RES1 bit 31.
pub const VTCR: u64 = 25 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 31);

/// HCR_EL2 bits for every guest: VM, SWIO, FMO, IMO, AMO, TSC, TSW, TVM, RW.
pub const HCR_VM: u64 = 1 << 0;
pub const HCR_SWIO: u64 = 1 << 1;
pub const HCR_TSC: u64 = 1 << 19;
pub const HCR_TSW: u64 = 1 << 22;
pub const HCR_TVM: u64 = 1 << 26;
pub const HCR_RW: u64 = 1 << 31;

/// Stage-2 tables come from the kernel heap, which EL2 maps 1:1.
pub struct HeapTables;

impl Translation<S2> for HeapTables {
    fn allocate_table(&mut self) -> (NonNull<PageTable<S2>>, PhysicalAddress) {
        let t = PageTable::new();
        (t, PhysicalAddress(t.as_ptr() as usize))
    }
    unsafe fn deallocate_table(&mut self, _t: NonNull<PageTable<S2>>) {}
    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<S2>> {
        NonNull::new(pa.0 as *mut PageTable<S2>).expect("table at PA 0")
    }
}

pub const NORMAL_RW: S2 = S2::VALID
    .union(S2::MEMATTR_NORMAL_INNER_WB)
    .union(S2::MEMATTR_NORMAL_OUTER_WB)
    .union(S2::S2AP_ACCESS_RW)
    .union(S2::SH_INNER)
    .union(S2::ACCESS_FLAG);

#[derive(Clone, Copy, Default)]
pub struct Counters {
    pub sw_traps: u64,
    pub tvm_traps: u64,
    pub stage2_faults: u64,
    pub hvc: u64,
    pub cleans: u64,
    pub cleaned_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VcpuState {
    Off,
    Runnable,
    Stopped,
}

pub struct Vcpu {
    pub frame: TrapFrame,
    pub el1: El1Regs,
    pub state: VcpuState,
}

pub struct Vm {
    pub id: u16,
    pub name: heapless::String<16>,
    pub ram_ipa: u64,
    pub ram_size: u64,
    /// Host physical base of the (contiguous, eager) guest RAM.
    pub ram_pa: u64,
    pub stage2: Mapping<HeapTables, Stage2>,
    pub vcpus: Vec<Vcpu>,
    pub counters: Counters,
    pub exit_ok: Option<bool>,
    /// Set/way policy state: caches were cleaned since the guest last
    /// turned them on or off.
    pub cleaned_since_toggle: bool,
}

impl Vm {
    pub fn vttbr(&self) -> u64 {
        self.stage2.root_address().0 as u64 | ((self.id as u64) << 48)
    }

    pub fn in_ram(&self, ipa: u64) -> bool {
        ipa >= self.ram_ipa && ipa - self.ram_ipa < self.ram_size
    }

    pub fn finished(&self) -> bool {
        self.exit_ok.is_some()
    }
}

/// Create a VM whose RAM is `ram_size` bytes of contiguous host memory at
/// `ram_pa`, mapped eagerly at [`GUEST_RAM_IPA`], with `image` copied to
/// its image offset.
pub fn create(id: u16, name: &str, ram_pa: u64, ram_size: u64, image: (u64, u64), vcpus: u32) -> Result<Vm, &'static str> {
    if image.1 > ram_size - GUEST_IMAGE_OFFSET {
        return Err("guest image larger than its RAM");
    }
    let mut stage2 = Mapping::new(HeapTables, 1, Stage2);
    let range = MemoryRegion::new(GUEST_RAM_IPA as usize, (GUEST_RAM_IPA + ram_size) as usize);
    stage2
        .map_range(&range, PhysicalAddress(ram_pa as usize), NORMAL_RW, Constraints::empty())
        .map_err(|_| "stage-2 map failed")?;
    // SAFETY: [ram_pa, +ram_size) was allocated for this guest alone and is
    // mapped at EL2; the image range is a module the DTB describes, which
    // lies outside every allocation.
    unsafe {
        core::ptr::write_bytes(ram_pa as *mut u8, 0, ram_size as usize);
        core::ptr::copy_nonoverlapping(
            image.0 as *const u8,
            (ram_pa + GUEST_IMAGE_OFFSET) as *mut u8,
            image.1 as usize,
        );
    }
    crate::arch::dc_range(crate::arch::DcOp::Clean, ram_pa, ram_size);
    crate::arch::ic_iallu_is();
    let hcr = HCR_VM | HCR_SWIO | HCR_TSC | HCR_TSW | HCR_TVM | HCR_RW;
    let entry = GUEST_RAM_IPA + GUEST_IMAGE_OFFSET;
    let vcpus = (0..vcpus)
        .map(|i| {
            let mut frame = TrapFrame::default();
            frame.elr = entry;
            frame.spsr = 0x3c5;
            Vcpu {
                frame,
                el1: El1Regs::reset(hcr, (1 << 31) | i as u64),
                state: if i == 0 { VcpuState::Runnable } else { VcpuState::Off },
            }
        })
        .collect();
    let mut n = heapless::String::new();
    let _ = n.push_str(&name[..name.len().min(16)]);
    Ok(Vm {
        id,
        name: n,
        ram_ipa: GUEST_RAM_IPA,
        ram_size,
        ram_pa,
        stage2,
        vcpus,
        counters: Counters::default(),
        exit_ok: None,
        cleaned_since_toggle: false,
    })
}

/// Print the one-line exit summary tools and tests parse.
pub fn print_summary(vm: &Vm) {
    let c = &vm.counters;
    crate::kprintln!(
        "summary: guest={} exit={} sw_traps={} tvm_traps={} stage2_faults={} hvc={}",
        vm.name,
        if vm.exit_ok == Some(true) { "ok" } else { "fail" },
        c.sw_traps,
        c.tvm_traps,
        c.stage2_faults,
        c.hvc
    );
}
