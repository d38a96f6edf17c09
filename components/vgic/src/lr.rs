//! The GICv2 virtual interface control (GICH) as this crate uses it: the
//! list-register layout, the two GICH_HCR bits it sets, and the trait the
//! kernel implements on the real GICH frame.

/// GICH_LRn.VirtualID, bits `[9:0]`.
pub const LR_VID_MASK: u32 = 0x3ff;
/// GICH_LRn.CPUID, bits `[12:10]`: the source vCPU of an SGI (HW = 0).
/// With HW = 1 these bits are the low bits of the physical ID instead.
pub const LR_CPUID_SHIFT: u32 = 10;
/// Mask of GICH_LRn.CPUID.
pub const LR_CPUID_MASK: u32 = 0x7 << LR_CPUID_SHIFT;
/// GICH_LRn.EOI, bit 19: an EOI maintenance interrupt when the guest EOIs it
/// (HW = 0 only: with HW = 1 bit 19 is the top bit of the physical ID, and
/// this crate keeps it 0, as every SPI is below 512).
pub const LR_EOI: u32 = 1 << 19;
/// GICH_LRn.PhysicalID, bits `[19:10]` when HW = 1: the physical interrupt the
/// guest's deactivation (EOI with EOImode 0, or GICV_DIR) deactivates. This
/// crate writes the same INTID as the VirtualID.
pub const LR_PINTID_SHIFT: u32 = 10;
/// Mask of GICH_LRn.PhysicalID (HW = 1).
pub const LR_PINTID_MASK: u32 = 0x3ff << LR_PINTID_SHIFT;
/// GICH_LRn.Priority, bits `[27:23]`: the top 5 bits of the 8-bit priority.
pub const LR_PRIO_SHIFT: u32 = 23;
/// GICH_LRn.State, bits `[29:28]`.
pub const LR_STATE_SHIFT: u32 = 28;
/// State bit 28: pending.
pub const LR_PENDING: u32 = 1 << 28;
/// State bit 29: active.
pub const LR_ACTIVE: u32 = 1 << 29;
/// GICH_LRn.Grp1, bit 30. This crate always leaves it 0: the guest sees every
/// interrupt as Group 0, which a GICv2 guest signals as IRQ (GICV_CTLR.FIQEn
/// is 0), the same as KVM does.
pub const LR_GRP1: u32 = 1 << 30;
/// GICH_LRn.HW, bit 31: the virtual interrupt is tied to the physical one in
/// PhysicalID, so the guest's deactivation deactivates that one too. Set
/// only for hardware SPIs ([`crate::Vgic::set_hw`]); never together with
/// EOI, and never pending+active (the physical distributor keeps a new
/// pending state while the interrupt is active).
pub const LR_HW: u32 = 1 << 31;

/// GICH_HCR.En, bit 0: the virtual CPU interface is on.
pub const HCR_EN: u32 = 1 << 0;
/// GICH_HCR.UIE, bit 1: a maintenance interrupt while at most one list
/// register holds a valid interrupt (underflow).
pub const HCR_UIE: u32 = 1 << 1;

/// The list registers of the pCPU the vCPU runs on.
///
/// The kernel implements it on the GICH frame (GICH_LRn at 0x100 + 4n,
/// GICH_HCR at 0x000, GICH_ELRSR0/1 at 0x030/0x034); host tests use
/// `testing::GichModel`.
pub trait ListRegs {
    /// How many list registers there are: GICH_VTR.ListRegs + 1.
    fn count(&self) -> usize;
    /// Read GICH_LRn, `i < count()`.
    fn read(&self, i: usize) -> u32;
    /// Write GICH_LRn, `i < count()`.
    fn write(&mut self, i: usize, value: u32);
    /// Write GICH_HCR (En bit 0, UIE bit 1).
    fn set_hcr(&mut self, value: u32);
    /// GICH_ELRSR1:GICH_ELRSR0: bit n set when LR n holds no valid interrupt
    /// (and no EOI maintenance interrupt still to be signalled).
    fn elrsr(&self) -> u64;
}

/// One list register, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lr {
    /// VirtualID: the interrupt the guest sees.
    pub intid: u16,
    /// CPUID: the source vCPU of an SGI, 0 otherwise (and 0 when HW = 1).
    pub source: u8,
    /// PhysicalID when HW = 1, 0 otherwise.
    pub pintid: u16,
    /// The 8-bit priority (its low 3 bits are not stored and read as 0).
    pub priority: u8,
    /// State bit: pending.
    pub pending: bool,
    /// State bit: active.
    pub active: bool,
    /// EOI maintenance interrupt requested (false when HW = 1: the bit is
    /// part of PhysicalID then).
    pub eoi: bool,
    /// Grp1 bit.
    pub grp1: bool,
    /// HW bit.
    pub hw: bool,
}

impl Lr {
    /// Decode a GICH_LRn value.
    pub fn decode(v: u32) -> Lr {
        let hw = v & LR_HW != 0;
        Lr {
            intid: (v & LR_VID_MASK) as u16,
            source: if hw { 0 } else { ((v & LR_CPUID_MASK) >> LR_CPUID_SHIFT) as u8 },
            pintid: if hw { ((v & LR_PINTID_MASK) >> LR_PINTID_SHIFT) as u16 } else { 0 },
            priority: (((v >> LR_PRIO_SHIFT) & 0x1f) << 3) as u8,
            pending: v & LR_PENDING != 0,
            active: v & LR_ACTIVE != 0,
            eoi: !hw && v & LR_EOI != 0,
            grp1: v & LR_GRP1 != 0,
            hw,
        }
    }

    /// Encode as a GICH_LRn value (with HW, PhysicalID replaces CPUID and
    /// EOI).
    pub fn encode(&self) -> u32 {
        let mut v = (self.intid as u32 & LR_VID_MASK) | ((self.priority as u32 >> 3) << LR_PRIO_SHIFT);
        if self.hw {
            v |= (self.pintid as u32) << LR_PINTID_SHIFT & LR_PINTID_MASK;
        } else {
            v |= (self.source as u32) << LR_CPUID_SHIFT & LR_CPUID_MASK;
        }
        for (on, bit) in [
            (self.pending, LR_PENDING),
            (self.active, LR_ACTIVE),
            (self.eoi && !self.hw, LR_EOI),
            (self.grp1, LR_GRP1),
            (self.hw, LR_HW),
        ] {
            if on {
                v |= bit;
            }
        }
        v
    }

    /// True when the state is not invalid (00).
    pub fn is_valid(&self) -> bool {
        self.pending || self.active
    }
}
