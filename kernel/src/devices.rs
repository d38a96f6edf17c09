//! The emulated devices a Linux guest sees: the GICv2 distributor (trap and
//! emulate, `vgic`), the CPU interface (the physical GICV mapped at the
//! guest's GICC address), a PL011 console (`vuart`), the virtual timer
//! (passed through, its PPI injected), a PL031 clock for firmware guests
//! (`vrtc`), and the guest's generated device tree (`guest-dtb`). Ordinary
//! guests see them at QEMU virt's addresses ([`Layout::VIRT`]); the
//! hardware domain at the board's own.

use crate::arch::TrapFrame;
use crate::gich::Gich;
use trap::Access as TrapAccess;

pub const GUEST_GICD: u64 = 0x0800_0000;
pub const GUEST_GICC: u64 = 0x0801_0000;
pub const GUEST_UART: u64 = 0x0900_0000;
pub const UART_SPI: u32 = 1;
/// The distributor's window (its registers fill the first 4 KiB; the rest
/// reads as zero), cut short where the CPU interface follows closer.
const GICD_WINDOW: u64 = 0x1_0000;
const UART_SIZE: u64 = 0x1000;

/// Where a guest finds its emulated devices.
#[derive(Clone, Copy)]
pub struct Layout {
    pub gicd: u64,
    pub gicc: u64,
    pub uart: u64,
    pub uart_spi: u32,
    /// Interrupt lines past the 32 private ones.
    pub spis: u16,
    /// The PL031's base, for a firmware guest.
    pub rtc: Option<u64>,
}

impl Layout {
    /// Every ordinary Linux guest: QEMU virt's addresses.
    pub const VIRT: Layout = Layout { gicd: GUEST_GICD, gicc: GUEST_GICC, uart: GUEST_UART, uart_spi: UART_SPI, spis: 64, rtc: None };
    /// A firmware guest: QEMU virt's, with its PL031 (UEFI needs a clock).
    pub const FIRMWARE: Layout = Layout { rtc: Some(vrtc::QEMU_VIRT_BASE), ..Layout::VIRT };
}

/// A firmware guest's variable store: 2 MiB of host frames behind a
/// [`vflash::Flash`], mapped read-only at `ipa` while it reads as memory.
pub struct VarFlash {
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
    pub flash: vflash::Flash,
    pub mapped: bool,
}

impl VarFlash {
    /// One trapped access at `offset`: what a read reads.
    fn access(&mut self, offset: u64, width: u8, write: Option<u32>) -> u64 {
        let Some(value) = write else {
            return match self.flash.read(offset, width) {
                vflash::Read::Value(v) => u64::from(v),
                vflash::Read::Array => {
                    let mut b = [0u8; 8];
                    let n = (width as usize).min(8);
                    for (i, x) in b.iter_mut().enumerate().take(n) {
                        // SAFETY: `offset + i` is inside the store (the caller
                        // checked `offset < size`, and a store is 2 MiB of
                        // frames allocated for this guest at `pa`).
                        *x = unsafe { core::ptr::read_volatile((self.pa + (offset + i as u64).min(self.size - 1)) as *const u8) };
                    }
                    u64::from_le_bytes(b)
                }
            };
        };
        let (at, len, fill) = match self.flash.write(offset, value, width) {
            Some(vflash::Effect::Program { offset, value, width }) => (offset, u64::from(width), Some(value)),
            Some(vflash::Effect::Erase { offset, len }) => (offset, len, None),
            None => return 0,
        };
        let pa = self.pa + at;
        // SAFETY: vflash keeps every effect inside the store (its
        // invariant), whose frames were allocated for this guest; then the
        // bytes go to the point of coherency, for a reader with caches off.
        unsafe {
            match fill {
                Some(v) => core::ptr::copy_nonoverlapping(v.to_le_bytes().as_ptr(), pa as *mut u8, len.min(4) as usize),
                None => core::ptr::write_bytes(pa as *mut u8, 0xff, len as usize),
            }
            crate::arch::dc_civac_range(pa, len);
        }
        0
    }
}

pub struct Devices {
    pub layout: Layout,
    pub vgic: vgic::Vgic,
    pub uart: vuart::Pl011,
    pub rtc: vrtc::Pl031,
    /// A firmware guest's variable flash: its state, its frames, and
    /// whether they are mapped (read-array mode).
    pub vars: Option<VarFlash>,
    /// Per vCPU: its list registers are folded into `vgic` since its last
    /// entry, so a second sync in the same exit is skipped.
    synced: [bool; 8],
    uart_level: bool,
    /// What the guest sent to its UART, a line at a time.
    pub out: crate::console::LineBuf,
    /// Bytes typed at the console for this guest, waiting for room in its
    /// UART's receive FIFO (more than this is dropped).
    input: heapless::Deque<u8, 1024>,
    /// vCPUs an SPI was routed to when a sync folded it back (bits): they
    /// are to be kicked, and woken if they wait in WFI.
    rerouted: u8,
    /// Per vCPU: its EL1 timers the hypervisor masked when they fired
    /// (bit 0 virtual, bit 1 physical), until the guest has handled the
    /// interrupt it was given for them.
    pub timer_masked: [u8; 8],
}

impl Devices {
    pub fn new(cap: capabilities::VgicCap, vcpus: u32, layout: Layout) -> Result<Devices, &'static str> {
        Ok(Devices {
            layout,
            vgic: vgic::Vgic::new(cap, vgic::Config::new(vcpus as u8, layout.spis)).map_err(|_| "vGIC refused the configuration")?,
            uart: vuart::Pl011::new(),
            rtc: vrtc::Pl031::new(),
            vars: None,
            out: crate::console::LineBuf::new(),
            input: heapless::Deque::new(),
            // Nothing is in any list register yet: the first entry flushes.
            synced: [true; 8],
            uart_level: false,
            rerouted: 0,
            timer_masked: [0; 8],
        })
    }

    /// Emulate a trapped load or store at `ipa`. Returns `None` when no
    /// emulated device lives there, else the vCPUs that now have an
    /// interrupt to take (to kick if they run elsewhere).
    pub fn mmio(&mut self, vcpu: usize, ipa: u64, acc: &TrapAccess, write: bool, frame: &mut TrapFrame) -> Option<vgic::VcpuSet> {
        let mut kick = vgic::VcpuSet::default();
        let value = frame.guest_reg(acc.rt);
        let width = acc.size_bytes;
        let (gicd, uart) = (self.layout.gicd, self.layout.uart);
        let window = match self.layout.gicc.checked_sub(gicd) {
            Some(d) if d > 0 => d.min(GICD_WINDOW),
            _ => GICD_WINDOW,
        };
        let read_value = if (gicd..gicd + window).contains(&ipa) {
            let w = match width {
                1 => vgic::Width::Byte,
                2 => vgic::Width::Half,
                8 => vgic::Width::Double,
                _ => vgic::Width::Word,
            };
            let a = if write { vgic::Access::Write { width: w, value } } else { vgic::Access::Read { width: w } };
            self.sync(vcpu);
            let r = match self.vgic.mmio(vgic::VcpuId(vcpu as u8), ipa - gicd, a) {
                Ok(r) => {
                    kick = r.kick;
                    r.value as u64
                }
                Err(_) => 0,
            };
            self.release_hw();
            r
        } else if (uart..uart + UART_SIZE).contains(&ipa) {
            let a = if write {
                vuart::Access::Write { width, value: value as u32 }
            } else {
                vuart::Access::Read { width }
            };
            match self.uart.mmio(ipa - uart, a) {
                Ok(r) => {
                    if let Some(b) = r.output {
                        self.out.push(b);
                    }
                    // A read may have made room for more typed input.
                    kick = self.refill(Some(vcpu));
                    r.value as u64
                }
                Err(_) => 0,
            }
        } else if let Some(f) = self.vars.as_mut().filter(|f| (f.ipa..f.ipa + f.size).contains(&ipa)) {
            f.access(ipa - f.ipa, width as u8, write.then_some(value as u32))
        } else if let Some(rtc) = self.layout.rtc.filter(|b| (*b..*b + vrtc::WINDOW).contains(&ipa)) {
            let now = crate::arch::counter() / crate::arch::counter_freq().max(1);
            let a = vrtc::Access { offset: ipa - rtc, width: width as u8, write: write.then_some(value as u32), now };
            u64::from(self.rtc.mmio(a))
        } else {
            return None;
        };
        if !write {
            let mut v = read_value;
            if acc.sign_extend && width < 8 {
                let shift = 64 - 8 * width as u32;
                v = (((v << shift) as i64) >> shift) as u64;
            }
            if !acc.sixty_four {
                v &= 0xffff_ffff;
            }
            frame.set_guest_reg(acc.rt, v);
        }
        // And the vCPUs an SPI moved to when list registers folded back.
        Some(kick.union(self.take_rerouted()))
    }

    /// Console input for this guest. `loaded_here`: its vCPU whose list
    /// registers this pCPU holds, if any. Returns the vCPUs to kick.
    pub fn feed(&mut self, bytes: &[u8], loaded_here: Option<usize>) -> vgic::VcpuSet {
        for &b in bytes {
            let _ = self.input.push_back(b);
        }
        self.refill(loaded_here).union(self.take_rerouted())
    }

    /// The vCPUs SPIs were routed to by the syncs since the last call.
    pub fn take_rerouted(&mut self) -> vgic::VcpuSet {
        vgic::VcpuSet::from_bits(core::mem::take(&mut self.rerouted))
    }

    /// Move queued input into the UART's receive FIFO as far as it has
    /// room, and follow its interrupt line in the vGIC.
    fn refill(&mut self, loaded_here: Option<usize>) -> vgic::VcpuSet {
        while self.uart.input_room() > 0 {
            match self.input.pop_front() {
                Some(b) => {
                    let _ = self.uart.push_input(b);
                }
                None => break,
            }
        }
        let level = self.uart.irq_level();
        if level == self.uart_level {
            return vgic::VcpuSet::default();
        }
        self.uart_level = level;
        if let Some(v) = loaded_here {
            self.sync(v);
        }
        match self.vgic.set_level(32 + self.layout.uart_spi, level) {
            Ok(Some(v)) => vgic::VcpuSet::from_bits(1 << v.0),
            _ => vgic::VcpuSet::default(),
        }
    }

    /// Before vCPU `vcpu` runs: fold its list registers back (if this exit
    /// has not yet) and fill them again. Every entry re-samples: skipping
    /// the sync/flush pair on exits that did not touch the vGIC was tried,
    /// and it delayed interrupts (Linux boot time varied 1.3-5 s).
    pub fn flush(&mut self, vcpu: usize) {
        self.sync(vcpu);
        let _ = self.vgic.flush(vgic::VcpuId(vcpu as u8), &mut Gich);
        self.synced[vcpu] = false;
    }

    /// Fold the list registers of `vcpu` (loaded on this pCPU) back into
    /// the vGIC, before anything reads or changes its state.
    pub fn sync(&mut self, vcpu: usize) {
        if !self.synced[vcpu] {
            if let Ok(moved) = self.vgic.sync(vgic::VcpuId(vcpu as u8), &mut Gich) {
                self.rerouted |= moved.bits();
            }
            self.synced[vcpu] = true;
            self.release_hw();
            self.rearm_timers(vcpu);
        }
    }

    /// The loaded `vcpu`'s timer PPIs that fired and were handed in: enabled
    /// again once the guest has taken and finished that interrupt.
    fn rearm_timers(&mut self, vcpu: usize) {
        for (intid, bit) in crate::irq::TIMER_PPIS {
            if self.timer_masked[vcpu] & bit != 0 && self.vgic.ppi_idle(vgic::VcpuId(vcpu as u8), intid) {
                self.timer_masked[vcpu] &= !bit;
                crate::irq::timer_ppi(intid, true);
            }
        }
    }

    /// Hardware interrupts the guest let go of without an EOI (it cleared
    /// them in its distributor): their physical ones are deactivated now,
    /// once each.
    fn release_hw(&mut self) {
        for intid in self.vgic.take_hw_released().iter() {
            crate::irq::deactivate(intid);
        }
    }

    /// `vcpu` was just loaded on this pCPU: its list registers hold another
    /// vCPU's leftovers, so the next entry must flush.
    pub fn loaded(&mut self, vcpu: usize) {
        self.synced[vcpu] = true;
        // This pCPU's timer PPIs follow the vCPU now here.
        for (intid, bit) in crate::irq::TIMER_PPIS {
            crate::irq::timer_ppi(intid, self.timer_masked[vcpu] & bit == 0);
        }
    }
}

impl vgic::ListRegs for Gich {
    fn count(&self) -> usize {
        Gich::count(self)
    }
    fn read(&self, i: usize) -> u32 {
        self.lr(i)
    }
    fn write(&mut self, i: usize, value: u32) {
        self.set_lr(i, value)
    }
    fn set_hcr(&mut self, value: u32) {
        Gich::set_hcr(self, value)
    }
    fn elrsr(&self) -> u64 {
        Gich::elrsr(self)
    }
}

/// The guest's device tree: `d` (its RAM, vCPUs with PSCI, timer, command
/// line and initrd) with the GIC and PL011 above. Built in a static buffer
/// at VM creation (one VM at a time, at boot).
pub fn guest_dtb(mut d: guest_dtb::GuestDtbSpec<'_>) -> Result<(&'static [u8], usize), &'static str> {
    static mut BUF: [u8; 16384] = [0; 16384];
    d.gic = (GUEST_GICD, GUEST_GICC);
    d.uart = (GUEST_UART, UART_SPI);
    // SAFETY: only boot-time VM creation on pCPU 0 uses BUF, one VM at a
    // time, and the caller copies it out before the next.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUF) };
    let n = guest_dtb::write(&d, buf).map_err(|_| "the guest device tree does not fit")?;
    Ok((buf, n))
}

impl dispatch::Devices for Devices {
    type Out = crate::console::LineBuf;
    fn mmio(&mut self, vcpu: usize, ipa: u64, acc: &TrapAccess, write: bool, frame: &mut TrapFrame) -> Option<vgic::VcpuSet> {
        Devices::mmio(self, vcpu, ipa, acc, write, frame)
    }
    fn sync(&mut self, vcpu: usize) {
        Devices::sync(self, vcpu)
    }
    fn flush(&mut self, vcpu: usize) {
        Devices::flush(self, vcpu)
    }
    fn loaded(&mut self, vcpu: usize) {
        Devices::loaded(self, vcpu)
    }
    fn pending(&mut self, vcpu: usize) -> bool {
        self.sync(vcpu);
        self.vgic.pending_for(vgic::VcpuId(vcpu as u8))
    }
    fn take_rerouted(&mut self) -> vgic::VcpuSet {
        Devices::take_rerouted(self)
    }
    fn take_remap(&mut self) -> Option<dispatch::Remap> {
        let f = self.vars.as_mut()?;
        if f.flash.array() == f.mapped {
            return None;
        }
        f.mapped = f.flash.array();
        Some(dispatch::Remap { ipa: f.ipa, pa: f.mapped.then_some(f.pa) })
    }
    fn out(&mut self) -> &mut Self::Out {
        &mut self.out
    }
}
