//! Helpers shared by the vgic tests: register access by name and offset, and
//! a small "kernel" that runs vCPUs on model pCPUs.
#![allow(dead_code)]

pub use vgic::testing::GichModel;
pub use vgic::*;

pub const CTLR: u64 = 0x000;
pub const TYPER: u64 = 0x004;
pub const IIDR: u64 = 0x008;
pub const IGROUPR: u64 = 0x080;
pub const ISENABLER: u64 = 0x100;
pub const ICENABLER: u64 = 0x180;
pub const ISPENDR: u64 = 0x200;
pub const ICPENDR: u64 = 0x280;
pub const ISACTIVER: u64 = 0x300;
pub const ICACTIVER: u64 = 0x380;
pub const IPRIORITYR: u64 = 0x400;
pub const ITARGETSR: u64 = 0x800;
pub const ICFGR: u64 = 0xc00;
pub const SGIR: u64 = 0xf00;
pub const CPENDSGIR: u64 = 0xf10;
pub const SPENDSGIR: u64 = 0xf20;

pub fn v(n: u8) -> VcpuId {
    VcpuId(n)
}

/// A vGIC that gives its VM's capability back when dropped, so a test
/// process can make more than 256 of them.
pub struct TestVgic(Option<Vgic>);

impl std::ops::Deref for TestVgic {
    type Target = Vgic;
    fn deref(&self) -> &Vgic {
        self.0.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for TestVgic {
    fn deref_mut(&mut self) -> &mut Vgic {
        self.0.as_mut().unwrap()
    }
}

impl Drop for TestVgic {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            capabilities::testing::return_vgic_cap(g.into_cap());
        }
    }
}

pub fn vgic(vcpus: u8, spis: u16) -> TestVgic {
    TestVgic(Some(Vgic::new(capabilities::testing::vgic_cap(), Config::new(vcpus, spis)).unwrap()))
}

/// A 32-bit read that GICv2 allows.
pub fn rd(g: &mut Vgic, vcpu: u8, off: u64) -> u32 {
    let r = g.mmio(v(vcpu), off, Access::Read { width: Width::Word }).unwrap();
    assert!(!r.ignored, "read of {off:#x} refused");
    r.value
}

/// A 32-bit write that GICv2 allows; returns the vCPUs to kick, as bits.
pub fn wr(g: &mut Vgic, vcpu: u8, off: u64, value: u32) -> u8 {
    let r = g.mmio(v(vcpu), off, Access::Write { width: Width::Word, value: value as u64 }).unwrap();
    assert!(!r.ignored, "write of {off:#x} refused");
    r.kick.bits()
}

pub fn rdb(g: &mut Vgic, vcpu: u8, off: u64) -> u8 {
    let r = g.mmio(v(vcpu), off, Access::Read { width: Width::Byte }).unwrap();
    assert!(!r.ignored, "byte read of {off:#x} refused");
    r.value as u8
}

pub fn wrb(g: &mut Vgic, vcpu: u8, off: u64, value: u8) -> u8 {
    let r = g.mmio(v(vcpu), off, Access::Write { width: Width::Byte, value: value as u64 }).unwrap();
    assert!(!r.ignored, "byte write of {off:#x} refused");
    r.kick.bits()
}

/// Set bit `intid` in the bitmap register family at `base`.
pub fn set_bit(g: &mut Vgic, vcpu: u8, base: u64, intid: u32) -> u8 {
    wr(g, vcpu, base + 4 * (intid as u64 / 32), 1 << (intid % 32))
}

/// Bit `intid` of the bitmap register family at `base`, as `vcpu` reads it.
pub fn bit(g: &mut Vgic, vcpu: u8, base: u64, intid: u32) -> bool {
    rd(g, vcpu, base + 4 * (intid as u64 / 32)) & (1 << (intid % 32)) != 0
}

/// Make interrupt `intid` edge-triggered (a PPI of `vcpu`, or an SPI).
pub fn set_edge(g: &mut Vgic, vcpu: u8, intid: u32, edge: bool) {
    let off = ICFGR + 4 * (intid as u64 / 16);
    let shift = 2 * (intid % 16) + 1;
    let old = rd(g, vcpu, off);
    let new = if edge { old | (1 << shift) } else { old & !(1 << shift) };
    wr(g, vcpu, off, new);
}

/// The distributor on, `intid` enabled with `prio`, and an SPI targeted at
/// `targets`.
pub fn enable(g: &mut Vgic, vcpu: u8, intid: u32, prio: u8, targets: u8) {
    wr(g, vcpu, CTLR, 1);
    wrb(g, vcpu, IPRIORITYR + intid as u64, prio);
    if intid >= 32 {
        wrb(g, vcpu, ITARGETSR + intid as u64, targets);
    }
    set_bit(g, vcpu, ISENABLER, intid);
}

/// GICD_SGIR value: `filter`, target `list`, SGI `id`.
pub fn sgir(filter: u32, list: u8, id: u32) -> u32 {
    (filter << 24) | ((list as u32) << 16) | id
}

/// The valid list registers as (intid, source, pending, active), in LR order.
pub fn lrs(m: &GichModel) -> Vec<(u16, u8, bool, bool)> {
    m.valid().map(|(_, l)| (l.intid, l.source, l.pending, l.active)).collect()
}

/// INTIDs in the valid list registers, in LR order.
pub fn ids(m: &GichModel) -> Vec<u16> {
    m.valid().map(|(_, l)| l.intid).collect()
}

/// One pCPU per vCPU, as a pinned kernel would have; tracks who is in the
/// guest.
pub struct Machine {
    pub g: TestVgic,
    pub cpus: Vec<GichModel>,
    pub running: Vec<bool>,
}

impl Machine {
    pub fn new(vcpus: u8, spis: u16, lrs: usize) -> Self {
        Machine {
            g: vgic(vcpus, spis),
            cpus: (0..vcpus).map(|_| GichModel::new(lrs)).collect(),
            running: vec![false; vcpus as usize],
        }
    }

    /// Flush and enter the guest (no-op when already in).
    pub fn enter(&mut self, vcpu: u8) {
        let k = vcpu as usize;
        if !self.running[k] {
            self.running[k] = true;
            self.g.flush(v(vcpu), &mut self.cpus[k]).unwrap();
        }
    }

    /// Exit the guest and sync (no-op when already out).
    pub fn exit(&mut self, vcpu: u8) -> VcpuSet {
        let k = vcpu as usize;
        if !self.running[k] {
            return VcpuSet::EMPTY;
        }
        self.running[k] = false;
        self.g.sync(v(vcpu), &mut self.cpus[k]).unwrap()
    }

    /// Kick: a running vCPU exits and re-enters (an IPI); kicks that come
    /// back are applied too.
    pub fn kick(&mut self, set: VcpuSet) {
        let mut todo = set.bits();
        while todo != 0 {
            let t = todo.trailing_zeros() as u8;
            todo &= todo - 1;
            if self.running[t as usize] {
                todo |= self.exit(t).bits();
                self.enter(t);
            }
        }
    }

    /// A trapped distributor access: exit, emulate, kick, stay out.
    pub fn mmio(&mut self, vcpu: u8, off: u64, access: Access) -> MmioReply {
        let k = self.exit(vcpu);
        self.kick(k);
        let r = self.g.mmio(v(vcpu), off, access).unwrap();
        self.kick(r.kick);
        r
    }
}
