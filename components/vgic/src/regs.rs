//! GICD register emulation: trapped guest accesses to the distributor frame.
//!
//! | offset | register | notes |
//! |---|---|---|
//! | 0x000 | CTLR | bit 0: Enable |
//! | 0x004 | TYPER | ITLinesNumber from the SPI count, CPUNumber = vCPUs - 1; RO |
//! | 0x008 | IIDR | GIC-400, 0x0200143b; RO |
//! | 0x080-0x0fc | IGROUPR | RAZ/WI (all Group 0) |
//! | 0x100-0x17c, 0x180-0x1fc | ISENABLER, ICENABLER | SGI bits RAO/WI |
//! | 0x200-0x27c, 0x280-0x2fc | ISPENDR, ICPENDR | SGI bits read pending, WI |
//! | 0x300-0x37c, 0x380-0x3fc | ISACTIVER, ICACTIVER | |
//! | 0x400-0x7f8 | IPRIORITYR | byte access; 5 bits kept (mask 0xf8) |
//! | 0x800-0xbf8 | ITARGETSR | byte access; 0-31 read the vCPU's own bit, WI |
//! | 0xc00-0xcfc | ICFGR | bit 2n+1 = edge; ICFGR0 (SGIs) RO 0xaaaaaaaa |
//! | 0xd00-0xdfc | PPISR/SPISR (IMPLEMENTATION DEFINED) | RAZ/WI |
//! | 0xf00 | SGIR | WO; filters 0 (list), 1 (others), 2 (self) |
//! | 0xf10-0xf1c, 0xf20-0xf2c | CPENDSGIR, SPENDSGIR | byte access; the accessing vCPU's SGIs |
//! | 0xfd0-0xffc | PIDR4-7, PIDR0-3, CIDR0-3 | GIC-400 values; RO |
//!
//! Every register takes 32-bit accesses; the byte-accessible ones also take
//! 8-bit accesses (GICv2 4.1.4). Halfword and doubleword accesses, unaligned
//! ones, reserved offsets, writes to read-only and reads of write-only
//! registers are RAZ/WI and counted ([`crate::Counters::bad_accesses`]).
//! Registers of interrupts beyond the configured ones are RAZ/WI, as GICv2
//! says, and are not counted.

use crate::{VcpuId, VcpuSet, Vgic, VgicError, Word, SGI_BITS};

/// GICD_IIDR of a GIC-400.
pub const GICD_IIDR: u32 = 0x0200_143b;
/// PIDR4..PIDR7, PIDR0..PIDR3, CIDR0..CIDR3 of a GIC-400 (0xfd0..0xffc).
pub const GICD_ID: [u8; 12] = [0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// Size of the distributor frame.
pub const GICD_SIZE: u64 = 0x1000;
/// Priority bits kept (32 levels, as GIC-400 and the 5-bit LR field).
pub const PRIORITY_MASK: u8 = 0xf8;

/// Size of a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl Width {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Width::Byte => 1,
            Width::Half => 2,
            Width::Word => 4,
            Width::Double => 8,
        }
    }
}

/// A trapped access to the distributor frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read {
        /// Its size.
        width: Width,
    },
    /// A store of `value` (its low `width` bytes count).
    Write {
        /// Its size.
        width: Width,
        /// The value stored.
        value: u64,
    },
}

/// The answer to a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct MmioReply {
    /// For a read: the value for the guest's register (zero-extended). 0 for
    /// a write.
    pub value: u32,
    /// vCPUs that now have an interrupt to take: kick or wake them (the
    /// accessing vCPU may be among them; it flushes before it re-enters).
    pub kick: VcpuSet,
    /// The access was not one GICv2 allows here and was treated as RAZ/WI.
    pub ignored: bool,
}

/// The byte-accessible registers: [start, end) offsets.
const BYTE_RANGES: [(u32, u32); 3] = [(0x400, 0x7fc), (0x800, 0xbfc), (0xf10, 0xf30)];

impl Vgic {
    /// Emulate one trapped access by `vcpu` at `offset` in the distributor
    /// frame. Never fails for the guest's sake: a bad access is RAZ/WI with
    /// [`MmioReply::ignored`] set. Errors only for a vCPU the VM lacks.
    pub fn mmio(&mut self, vcpu: VcpuId, offset: u64, access: Access) -> Result<MmioReply, VgicError> {
        let v = self.index(vcpu)?;
        let (width, value) = match access {
            Access::Read { width } => {
                self.counters.mmio_reads += 1;
                (width, None)
            }
            Access::Write { width, value } => {
                self.counters.mmio_writes += 1;
                (width, Some(value))
            }
        };
        if !width_allowed(offset, width) {
            return Ok(self.bad());
        }
        let off = offset as u32;
        let byte = width == Width::Byte;
        let done = match value {
            None => self.read(v, off, byte).map(|value| MmioReply { value, kick: VcpuSet::EMPTY, ignored: false }),
            Some(x) => {
                let x = if byte { x as u32 & 0xff } else { x as u32 };
                let mut kick = VcpuSet::EMPTY;
                self.write(v, off, byte, x, &mut kick).then_some(MmioReply { value: 0, kick, ignored: false })
            }
        };
        Ok(done.unwrap_or_else(|| self.bad()))
    }

    fn bad(&mut self) -> MmioReply {
        self.counters.bad_accesses += 1;
        MmioReply { value: 0, kick: VcpuSet::EMPTY, ignored: true }
    }

    /// The value a read returns, or `None` for a bad read.
    fn read(&self, v: usize, off: u32, byte: bool) -> Option<u32> {
        let n = ((off & 0x7f) / 4) as usize;
        Some(match off {
            0x000 => self.enabled as u32,
            0x004 => self.typer(),
            0x008 => GICD_IIDR,
            0x080..=0x0ff => 0,
            0x100..=0x1ff => self.bitmap(v, n, |w| w.enabled),
            0x200..=0x2ff => self.bitmap(v, n, |w| w.pending_view()),
            0x300..=0x3ff => self.bitmap(v, n, |w| w.active_view()),
            0x400..=0x7fb => self.bytes(off - 0x400, byte, |i| self.priority_of(v, i)),
            0x800..=0xbfb => self.bytes(off - 0x800, byte, |i| self.target_of(v, i)),
            0xc00..=0xcff => self.icfgr(v, ((off - 0xc00) / 4) as usize),
            0xd00..=0xdff => 0,
            0xf10..=0xf1f => self.bytes(off - 0xf10, byte, |s| self.sources_view(v, s)),
            0xf20..=0xf2f => self.bytes(off - 0xf20, byte, |s| self.sources_view(v, s)),
            0xfd0..=0xfff => GICD_ID[((off - 0xfd0) / 4) as usize] as u32,
            _ => return None,
        })
    }

    /// Apply a write; false for a bad one.
    fn write(&mut self, v: usize, off: u32, byte: bool, x: u32, kick: &mut VcpuSet) -> bool {
        let n = ((off & 0x7f) / 4) as usize;
        match off {
            0x000 => {
                let was = self.enabled;
                self.enabled = x & 1 != 0;
                if !was && self.enabled {
                    // Anything pending anywhere may be deliverable now.
                    *kick = VcpuSet::from_bits(self.vcpu_mask());
                }
            }
            0x080..=0x0ff | 0xd00..=0xdff => {}
            0x100..=0x17f => self.set_bits(v, n, x, kick, |w, m| w.enabled |= m),
            0x180..=0x1ff => self.set_bits(v, n, x & !sgi(n), kick, |w, m| w.enabled &= !m),
            0x200..=0x27f => {
                let x = self.hw_ignore(n, x);
                self.set_bits(v, n, x & !sgi(n), kick, |w, m| w.latch |= m)
            }
            0x280..=0x2ff => {
                let before = self.hw_before_clear(v, n, x);
                self.set_bits(v, n, x & !sgi(n), kick, |w, m| {
                    w.latch &= !m;
                    w.drop_pending |= m & w.queued;
                });
                self.hw_after_clear(v, n, before);
            }
            0x300..=0x37f => {
                let x = self.hw_ignore(n, x);
                self.set_active(v, n, x)
            }
            0x380..=0x3ff => {
                let before = self.hw_before_clear(v, n, x);
                self.set_bits(v, n, x, kick, |w, m| {
                    w.active &= !m;
                    w.drop_active |= m & w.queued;
                });
                self.hw_after_clear(v, n, before);
            }
            0x400..=0x7fb => self.write_bytes(off - 0x400, byte, x, |g, i, b| {
                if i < 32 {
                    g.vcpus[v].priority[i] = b & PRIORITY_MASK;
                } else {
                    g.spi_priority[i - 32] = b & PRIORITY_MASK;
                }
            }),
            0x800..=0xbfb => {
                let mask = self.vcpu_mask();
                let single = self.cfg.vcpus == 1;
                self.write_bytes(off - 0x800, byte, x, |g, i, b| {
                    if i >= 32 && !single {
                        g.spi_targets[i - 32] = b & mask;
                        if let Some(t) = g.kick_for(v, i) {
                            kick.add(t);
                        }
                    }
                });
            }
            0xc00..=0xcff => self.write_icfgr(v, ((off - 0xc00) / 4) as usize, x, kick),
            0xf00 => return self.sgir(v, x, kick),
            0xf10..=0xf1f => self.write_bytes(off - 0xf10, byte, x, |g, s, b| g.set_sources(v, s, b, false)),
            0xf20..=0xf2f => self.write_bytes(off - 0xf20, byte, x, |g, s, b| {
                g.set_sources(v, s, b, true);
                if g.kick_for(v, s).is_some() {
                    kick.add(v);
                }
            }),
            _ => return false,
        }
        true
    }

    // ---- hardware SPIs ----

    /// GICD_ISPENDR / ISACTIVER bits of hardware SPIs are ignored: the
    /// vGIC cannot make the physical interrupt pending or active, and a
    /// virtual state without the physical one would have the guest
    /// deactivate an inactive physical interrupt.
    fn hw_ignore(&mut self, n: usize, x: u32) -> u32 {
        if n * 32 >= self.cfg.lines() {
            return x;
        }
        let hw = x & self.hw_word(n);
        if hw != 0 {
            self.counters.hw_ignored_writes += 1;
        }
        x & !hw
    }

    /// Before GICD_ICPENDR / ICACTIVER word `n` with mask `x`: of the
    /// hardware SPIs it touches, those held (latch or active) and not
    /// queued, and those queued with a latch.
    fn hw_before_clear(&self, v: usize, n: usize, x: u32) -> (u32, u32) {
        if n * 32 >= self.cfg.lines() {
            return (0, 0);
        }
        let m = x & self.hw_word(n);
        let (w, _) = self.word(v, n * 32);
        ((w.latch | w.active) & !w.queued & m, w.latch & w.queued & m)
    }

    /// After GICD_ICPENDR / ICACTIVER: hardware SPIs it left neither pending
    /// nor active are released (the kernel deactivates the physical one);
    /// a queued one's cleared latch is remembered for its sync.
    fn hw_after_clear(&mut self, v: usize, n: usize, (held, queued_latched): (u32, u32)) {
        if held | queued_latched == 0 {
            return;
        }
        let (w, _) = self.word(v, n * 32);
        let released = held & !(w.latch | w.active);
        let latch_dropped = queued_latched & !w.latch;
        let wi = n - 1;
        self.hw_released[wi] |= released;
        self.counters.hw_released += released.count_ones() as u64;
        self.hw_latch_drop[wi] |= latch_dropped;
    }

    // ---- registers ----

    fn typer(&self) -> u32 {
        let lines = (self.cfg.lines() / 32 - 1) as u32;
        lines | ((self.cfg.vcpus as u32 - 1) << 5)
    }

    /// Bitmap register `n` (interrupts 32n..32n+31); RAZ beyond the lines.
    fn bitmap(&self, v: usize, n: usize, f: impl Fn(&Word) -> u32) -> u32 {
        if n * 32 >= self.cfg.lines() {
            return 0;
        }
        f(self.word(v, n * 32).0)
    }

    /// Apply `f` to bitmap word `n` with mask `m`, then kick whatever the
    /// change made deliverable.
    fn set_bits(&mut self, v: usize, n: usize, m: u32, kick: &mut VcpuSet, f: impl Fn(&mut Word, u32)) {
        if n * 32 >= self.cfg.lines() || m == 0 {
            return;
        }
        f(self.word_mut(v, n * 32).0, m);
        let mut left = m;
        while left != 0 {
            let i = n * 32 + left.trailing_zeros() as usize;
            left &= left - 1;
            if let Some(t) = self.kick_for(v, i) {
                kick.add(t);
            }
        }
    }

    /// GICD_ISACTIVERn. A newly active interrupt is recorded as active on
    /// its route (an SPI), or as from the accessing vCPU (an SGI); an SPI
    /// queued elsewhere stays with the vCPU holding it.
    fn set_active(&mut self, v: usize, n: usize, m: u32) {
        if n * 32 >= self.cfg.lines() {
            return;
        }
        let (w, _) = self.word(v, n * 32);
        let mut new = m & !w.active & !w.queued;
        self.word_mut(v, n * 32).0.active |= m;
        while new != 0 {
            let i = n * 32 + new.trailing_zeros() as usize;
            new &= new - 1;
            if i < 16 {
                self.vcpus[v].active_source[i] = v as u8;
            } else if i >= 32 {
                self.spi_owner[i - 32] = self.route(i - 32).unwrap_or(v) as u8;
            }
        }
    }

    /// Read byte registers (one byte, or four from a word access) at byte
    /// offset `at`; RAZ beyond the lines.
    fn bytes(&self, at: u32, byte: bool, f: impl Fn(usize) -> u8) -> u32 {
        let count = if byte { 1 } else { 4 };
        let mut out = 0;
        for k in 0..count {
            let i = (at + k) as usize;
            if i < self.cfg.lines() {
                out |= (f(i) as u32) << (8 * k);
            }
        }
        out
    }

    fn write_bytes(&mut self, at: u32, byte: bool, x: u32, mut f: impl FnMut(&mut Self, usize, u8)) {
        let count = if byte { 1 } else { 4 };
        for k in 0..count {
            let i = (at + k) as usize;
            if i < self.cfg.lines() {
                f(self, i, (x >> (8 * k)) as u8);
            }
        }
    }

    fn priority_of(&self, v: usize, i: usize) -> u8 {
        self.priority(v, i)
    }

    fn target_of(&self, v: usize, i: usize) -> u8 {
        if i < 32 {
            1 << v
        } else if self.cfg.vcpus == 1 {
            1
        } else {
            self.spi_targets[i - 32]
        }
    }

    /// GICD_ICFGRn: interrupts 16n..16n+15, bit 2k+1 set for edge.
    fn icfgr(&self, v: usize, n: usize) -> u32 {
        let mut out = 0;
        for k in 0..16 {
            let i = n * 16 + k;
            if i < self.cfg.lines() {
                let (w, b) = self.word(v, i);
                if w.edge & b != 0 {
                    out |= 2 << (2 * k);
                }
            }
        }
        out
    }

    fn write_icfgr(&mut self, v: usize, n: usize, x: u32, kick: &mut VcpuSet) {
        if n == 0 {
            return; // SGIs: always edge
        }
        for k in 0..16 {
            let i = n * 16 + k;
            if i >= self.cfg.lines() {
                break;
            }
            let (w, b) = self.word_mut(v, i);
            if x & (2 << (2 * k)) != 0 {
                w.edge |= b;
            } else {
                w.edge &= !b;
            }
            if let Some(t) = self.kick_for(v, i) {
                kick.add(t);
            }
        }
    }

    /// GICD_SGIR: make SGI `x[3:0]` pending on the targets, from `v`.
    fn sgir(&mut self, v: usize, x: u32, kick: &mut VcpuSet) -> bool {
        let id = (x & 0xf) as usize;
        let list = (x >> 16) as u8;
        let all = self.vcpu_mask();
        let targets = match (x >> 24) & 3 {
            0 => list & all,
            1 => all & !(1 << v),
            2 => 1 << v,
            _ => return false,
        };
        for t in 0..self.cfg.vcpus as usize {
            if targets & (1 << t) != 0 {
                self.vcpus[t].sources[id] |= 1 << v;
                self.vcpus[t].private.latch |= 1 << id;
                self.counters.sgis += 1;
                if self.kick_for(t, id).is_some() {
                    kick.add(t);
                }
            }
        }
        true
    }

    /// GICD_SPENDSGIR / CPENDSGIR byte for SGI `s` of vCPU `v`.
    fn set_sources(&mut self, v: usize, s: usize, b: u8, set: bool) {
        if s >= 16 {
            return;
        }
        let mask = self.vcpu_mask();
        let c = &mut self.vcpus[v];
        if set {
            c.sources[s] |= b & mask;
        } else {
            c.sources[s] &= !b;
        }
        if c.sources[s] != 0 {
            c.private.latch |= 1 << s;
        } else {
            c.private.latch &= !(1 << s);
        }
    }
}

/// The SGI bits of bitmap word `n` (only word 0 has them).
fn sgi(n: usize) -> u32 {
    if n == 0 {
        SGI_BITS
    } else {
        0
    }
}

/// True when GICv2 allows `width` at `offset`: words anywhere in the frame,
/// aligned; bytes only in the byte-accessible registers.
fn width_allowed(offset: u64, width: Width) -> bool {
    if offset >= GICD_SIZE || !offset.is_multiple_of(width.bytes()) {
        return false;
    }
    match width {
        Width::Word => true,
        Width::Byte => BYTE_RANGES.iter().any(|&(a, b)| (a as u64..b as u64).contains(&offset)),
        Width::Half | Width::Double => false,
    }
}
