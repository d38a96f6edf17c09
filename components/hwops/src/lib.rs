//! # hwops: the hardware operations components may ask for
//!
//! **Responsible for:** naming, as small traits, the few hardware operations
//! that components need: cache maintenance by address, TLB invalidation, and
//! frame zeroing. The kernel implements them with real instructions; host
//! tests implement them with models (see `cache-model`).
//!
//! **Not responsible for:** performing anything itself, set/way maintenance
//! (only the guest issues that; the hypervisor answers with by-address
//! maintenance), or deciding when maintenance is needed (that is the
//! components' policy).
//!
//! **Invariants:**
//! - A component is handed its VM's operations as a [`Scoped`]: zeroing,
//!   checking and cleaning reach only that VM's host memory; a range outside
//!   it is refused (nothing happens, [`Scoped::refused`] counts it).
//! - Addresses are physical addresses. The kernel keeps RAM mapped linearly at
//!   EL2 (VA = PA), so "by VA" on the kernel side equals "by PA" here.
//! - Every operation completes before it returns (the kernel adds the `dsb`).
#![no_std]
#![forbid(unsafe_code)]

/// Size of a small page (4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// Size of a level-2 block (2 MiB).
pub const BLOCK_SIZE: u64 = 2 * 1024 * 1024;
/// Size of a level-1 block (1 GiB).
pub const GIB: u64 = 1024 * 1024 * 1024;

/// Data and instruction cache maintenance by physical address range, to the
/// point of coherency.
pub trait CacheOps {
    /// Write dirty lines of `[pa, pa+len)` back to the PoC; lines stay valid.
    fn clean_range(&mut self, pa: u64, len: u64);
    /// Write dirty lines of `[pa, pa+len)` back to the PoC and invalidate them.
    fn clean_invalidate_range(&mut self, pa: u64, len: u64);
    /// Invalidate the whole instruction cache (to the PoU, inner shareable).
    fn invalidate_icache_all(&mut self);
}

/// Stage-2 TLB maintenance.
pub trait TlbOps {
    /// Invalidate stage-2 (and combined) entries for one IPA page of `vmid`.
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64);
    /// Invalidate every entry tagged with `vmid`.
    fn invalidate_vmid(&mut self, vmid: u16);
}

/// Operations on physical frames the hypervisor owns.
pub trait Frames {
    /// Write zeros to `[pa, pa+len)`. The zeros may sit in a data cache
    /// afterwards: callers clean before the frame becomes visible to a guest
    /// that might run with caches off.
    fn zero(&mut self, pa: u64, len: u64);
    /// True when every byte of `[pa, pa+len)` reads as zero (as seen through
    /// the hypervisor's cacheable mapping).
    fn is_zero(&self, pa: u64, len: u64) -> bool;
}

/// One physically contiguous run of guest memory: `len` bytes at guest
/// address `ipa`, backed by host physical address `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRun {
    /// Guest intermediate physical address.
    pub ipa: u64,
    /// Host physical address backing `ipa`.
    pub pa: u64,
    /// Length in bytes (a multiple of [`PAGE_SIZE`]).
    pub len: u64,
}

/// What a clean walks: the guest memory that is mapped and may hold dirty
/// lines. The stage-2 pager implements it; the cache-maintenance service
/// drives it with a cursor.
pub trait CleanSource {
    /// The first run at or after guest address `from` that must be cleaned:
    /// populated and touched since the last [`CleanSource::clear_touched`]
    /// (or, when `all` is set, every populated run, touched or not). Runs
    /// never span a 2 MiB boundary. `None` when nothing is left.
    fn next_run(&self, from: u64, all: bool) -> Option<MemRun>;
    /// Forget that `[ipa, ipa+len)` was touched, so that a later clean skips
    /// it unless the guest touches it again. Granularity is 2 MiB. The pager
    /// re-arms its touch detection (e.g. clears access flags) and invalidates
    /// the TLB through `tlb` before returning.
    ///
    /// Order matters: a clean calls this for a 2 MiB chunk *before* it cleans
    /// the chunk's runs (found with `all = true`), so a write that lands
    /// during the clean marks the chunk touched again instead of being lost.
    fn clear_touched(&mut self, ipa: u64, len: u64, tlb: &mut dyn TlbOps);
}

/// Host memory a VM owns, as [`Scoped`] checks it.
pub trait Scope {
    /// Whether all of `[pa, pa+len)` lies inside (false when it wraps).
    fn allows(&self, pa: u64, len: u64) -> bool;
}

/// One range: the kernel's VM pool, or the hardware domain's RAM.
impl Scope for core::ops::Range<u64> {
    fn allows(&self, pa: u64, len: u64) -> bool {
        pa.checked_add(len).is_some_and(|end| pa >= self.start && end <= self.end)
    }
}

/// Several ranges (a pool granted in pieces): inside one of them (a range
/// spanning two adjacent ones is refused).
impl Scope for &[core::ops::Range<u64>] {
    fn allows(&self, pa: u64, len: u64) -> bool {
        self.iter().any(|r| r.allows(pa, len))
    }
}

/// Hardware operations limited to one VM's host memory, its [`Scope`].
/// What a component names outside it, or a range that wraps, is refused:
/// nothing is zeroed or cleaned, `is_zero` says false, and
/// [`Scoped::refused`] counts it. TLB and instruction-cache operations pass
/// through (the VMID scopes the first; the second has no address).
pub struct Scoped<H, S = core::ops::Range<u64>> {
    hw: H,
    scope: S,
    refused: core::cell::Cell<u64>,
}

impl<H, S: Scope> Scoped<H, S> {
    /// `hw` limited to `scope`.
    pub fn new(hw: H, scope: S) -> Self {
        Scoped { hw, scope, refused: core::cell::Cell::new(0) }
    }

    /// How many operations named memory outside the scope.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    fn check(&self, pa: u64, len: u64) -> bool {
        let ok = self.scope.allows(pa, len);
        if !ok {
            self.refused.set(self.refused.get() + 1);
        }
        ok
    }
}

impl<H: Frames, S: Scope> Frames for Scoped<H, S> {
    fn zero(&mut self, pa: u64, len: u64) {
        if self.check(pa, len) {
            self.hw.zero(pa, len);
        }
    }
    fn is_zero(&self, pa: u64, len: u64) -> bool {
        self.check(pa, len) && self.hw.is_zero(pa, len)
    }
}

impl<H: CacheOps, S: Scope> CacheOps for Scoped<H, S> {
    fn clean_range(&mut self, pa: u64, len: u64) {
        if self.check(pa, len) {
            self.hw.clean_range(pa, len);
        }
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        if self.check(pa, len) {
            self.hw.clean_invalidate_range(pa, len);
        }
    }
    fn invalidate_icache_all(&mut self) {
        self.hw.invalidate_icache_all();
    }
}

impl<H: TlbOps, S: Scope> TlbOps for Scoped<H, S> {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.hw.invalidate_ipa(vmid, ipa);
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.hw.invalidate_vmid(vmid);
    }
}
