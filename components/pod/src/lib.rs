//! # pod: one VM's populate-on-demand pool
//!
//! **Responsible for:**
//! - The VM's pool of free frames: 2 MiB frames and 4 KiB frames, fed by
//!   the kernel's [`Pod::grant`]s of physical ranges.
//! - Populating guest RAM on a stage-2 translation fault ([`Pod::fault`]):
//!   a whole 2 MiB block when the aligned 2 MiB around the fault is still
//!   entirely unpopulated and a 2 MiB frame is free, else one 4 KiB page
//!   (splintering a 2 MiB frame into 512 pages when no 4 KiB frame is
//!   left). Every frame is zeroed ([`hwops::Frames::zero`]) and cleaned to
//!   the PoC ([`hwops::CacheOps::clean_range`]) before it is mapped, so a
//!   guest running with caches off reads zeros, not old data. With
//!   [`PodConfig::fill_slice`] below 2 MiB, a block is filled in steps
//!   ([`Outcome::Filling`], [`Pod::fill_step`]) so no single call zeroes
//!   and cleans more than that.
//! - Reclaiming: when the pool runs dry, a bounded sweep finds populated
//!   pages and blocks that are all zero, unmaps them and takes them back
//!   (they become PoD entries again, as in Xen's x86 PoD).
//! - Eager population (no PoD at all) for guests that want it, and direct
//!   mapping (IPA = PA) for the hardware domain.
//! - Accounting, checked by [`Pod::check_invariants`].
//!
//! **Not responsible for:** the stage-2 table (it maps and unmaps through
//! the VM's [`stage2_pager::Pager`]), where granted memory comes from (the
//! kernel's frame allocator), or what happens to a guest on
//! [`PodError::Exhausted`] (the kernel stops it) or
//! [`PodError::OutsideRam`] (the kernel injects an abort).
//!
//! **Invariants** (in 4 KiB pages; `RAM` = `ram_size / 4 KiB`):
//! - `populated + pod_entries == RAM`: every guest RAM page is either
//!   mapped or a PoD entry (unmapped, populated on first touch).
//! - `pool + populated + filling == owned`: every page the VM was granted
//!   is free in the pool, mapped into the guest, or a block being filled
//!   (taken from the pool, not mapped yet), and only one of them.
//! - A chunk being filled has nothing mapped in it, and no fault in it
//!   maps anything before its fill ends (it answers `Filling`).
//!   `owned < RAM` is allowed (a target below the maximum: pre-ballooned).
//! - Every mapped guest RAM frame lies inside a grant and outside the pool;
//!   2 MiB pool frames are 2 MiB aligned. (Direct mode: every frame maps
//!   IPA = PA; the VM owns its RAM range and the pool is what is unmapped.)
//! - No operation panics; failures are typed errors and leave the counts
//!   true.
//!
//! ## Capabilities
//! A [`Pod`] is made by consuming the VM's [`PodCap`]. Every operation that
//! maps takes the VM's pager (`&mut Pager`, which stands for its
//! `Stage2Cap`) and answers [`PodError::WrongVm`] when that pager belongs to
//! another VM.
//!
//! ## How the kernel calls it
//! ```text
//! boot:   let mut pod = Pod::new(caps.pod, PodConfig::new(ram_base, ram_size, Mode::OnDemand))?;
//!         pod.grant(pa, len)?;  ...            (the VM's share of memory)
//!         pod.start(&mut pager, &mut hw)?;     (Eager/Direct: maps all RAM now)
//! fault:  stage-2 translation fault at ipa ->
//!         match pod.fault(&mut pager, &mut hw, ipa) {
//!             Ok(Outcome::Populated { size, .. }) => count pod_2m/pod_4k, resume
//!             Ok(Outcome::AlreadyMapped | Outcome::Retry) => resume (PC unchanged)
//!             Ok(Outcome::Filling { chunk }) => until pod.fill_step(.., chunk) says
//!                 Populated or AlreadyMapped, one step at a time (interrupts
//!                 taken in between), then resume (PC unchanged)
//!             Err(PodError::OutsideRam { .. }) => inject an abort
//!             Err(e) => stop the guest, print e
//!         }
//! ```
//! `Retry` means a sweep slice ran and found nothing yet: the guest faults
//! again and the next slice goes on, so a long sweep never hides in one
//! trap. After one full pass with no gain the answer is `Exhausted`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod extents;

pub use capabilities::{PodCap, VmId, WrongVm};
pub use extents::{ExtentError, Extents};
pub use stage2_pager::{Leaf, LeafSize, MemAttrs, Pager, PagerError, TableFormat};

use core::fmt;
use core::ops::ControlFlow;
use hwops::{CacheOps, Frames, TlbOps, BLOCK_SIZE, PAGE_SIZE};

/// Most separate ranges each pool list (and the grant list) can hold.
pub const EXTENTS: usize = 128;

/// Default sweep slice: pages checked per dry fault (as Xen's
/// `POD_SWEEP_LIMIT`).
pub const DEFAULT_SWEEP_PAGES: u64 = 1024;

/// Most 2 MiB blocks being filled at once (one per waiting vCPU); past
/// that a fault populates a 4 KiB page instead.
pub const MAX_FILLS: usize = 8;

const PA_LIMIT: u64 = 1 << 48;

/// The hardware a pod needs: frames, cache and TLB operations.
pub trait PodHw: Frames + CacheOps + TlbOps {}
impl<T: Frames + CacheOps + TlbOps> PodHw for T {}

/// How guest RAM gets its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Populate on demand from the pool, reclaim zero pages when dry.
    OnDemand,
    /// Populate all of RAM from the pool at [`Pod::start`]; no reclaim.
    Eager,
    /// The hardware domain: guest RAM is host RAM at the same address
    /// (IPA = PA), mapped at [`Pod::start`], never zeroed (it holds the
    /// images the firmware loaded), never reclaimed. No grants.
    DirectMap,
}

/// One VM's guest RAM and pool policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodConfig {
    /// First guest RAM address (4 KiB aligned).
    pub ram_base: u64,
    /// Bytes of guest RAM (a non-zero multiple of 4 KiB).
    pub ram_size: u64,
    /// How RAM is populated.
    pub mode: Mode,
    /// Pages a sweep slice may check.
    pub sweep_pages: u64,
    /// Bytes of a new 2 MiB frame zeroed and cleaned per step (each byte
    /// is zeroed, then cleaned). 2 MiB or more: a block is done within its
    /// fault.
    pub fill_slice: u64,
}

impl PodConfig {
    /// RAM at `ram_base`, `ram_size` bytes, the default sweep slice.
    pub const fn new(ram_base: u64, ram_size: u64, mode: Mode) -> Self {
        PodConfig {
            ram_base,
            ram_size,
            mode,
            sweep_pages: DEFAULT_SWEEP_PAGES,
            fill_slice: BLOCK_SIZE,
        }
    }

    fn ram_end(&self) -> u64 {
        self.ram_base + self.ram_size
    }
}

/// What a fault did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A frame was zeroed, cleaned and mapped.
    Populated {
        /// 2 MiB block or 4 KiB page.
        size: LeafSize,
        /// Guest address of the new leaf (aligned to `size`).
        ipa: u64,
        /// Its frame.
        pa: u64,
    },
    /// Already mapped (another vCPU populated it first): resume.
    AlreadyMapped,
    /// The pool is dry and a sweep slice found nothing yet: resume, the
    /// guest faults again and the next slice runs.
    Retry,
    /// The 2 MiB block around the fault is being zeroed and cleaned: call
    /// [`Pod::fill_step`] for `chunk` until it is mapped.
    Filling {
        /// Guest address of the block (2 MiB aligned).
        chunk: u64,
    },
}

/// Why a pod operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodError {
    /// The address is not guest RAM: the kernel injects an abort.
    OutsideRam {
        /// Faulting guest address.
        ipa: u64,
    },
    /// No frame is left and sweeping freed none: the kernel stops the guest.
    Exhausted {
        /// Guest address that needed a frame.
        ipa: u64,
    },
    /// The pager given belongs to another VM.
    WrongVm(WrongVm),
    /// The pager refused a mapping (a kernel wiring bug, e.g. RAM outside
    /// the pager's tracked window).
    Pager(PagerError),
}

impl fmt::Display for PodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodError::OutsideRam { ipa } => {
                write!(f, "guest access at {ipa:#x} is outside its RAM")
            }
            PodError::Exhausted { ipa } => {
                write!(
                    f,
                    "guest memory exhausted: no frame for {ipa:#x} and no zero page to reclaim"
                )
            }
            PodError::WrongVm(w) => write!(f, "pod: {w}"),
            PodError::Pager(e) => write!(f, "pod: stage-2 pager refused: {e}"),
        }
    }
}

impl From<PagerError> for PodError {
    fn from(e: PagerError) -> Self {
        PodError::Pager(e)
    }
}

/// Why a grant was refused. The pool is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// Zero length.
    Empty,
    /// Start or length not a multiple of 4 KiB.
    Misaligned {
        /// Start asked for.
        pa: u64,
        /// Length asked for.
        len: u64,
    },
    /// Beyond 48-bit physical addresses.
    OutOfRange {
        /// Start asked for.
        pa: u64,
        /// Length asked for.
        len: u64,
    },
    /// Overlaps memory already granted to this VM.
    Overlap {
        /// Start asked for.
        pa: u64,
        /// Length asked for.
        len: u64,
    },
    /// Too many separate ranges to track.
    TooFragmented,
    /// A direct-mapped VM owns its RAM range and takes no grants.
    DirectMapped,
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GrantError::Empty => write!(f, "grant of zero bytes"),
            GrantError::Misaligned { pa, len } => {
                write!(f, "grant {pa:#x}+{len:#x} is not 4 KiB aligned")
            }
            GrantError::OutOfRange { pa, len } => {
                write!(f, "grant {pa:#x}+{len:#x} is beyond 48-bit addresses")
            }
            GrantError::Overlap { pa, len } => {
                write!(f, "grant {pa:#x}+{len:#x} overlaps an earlier grant")
            }
            GrantError::TooFragmented => write!(f, "grant: more than {EXTENTS} separate ranges"),
            GrantError::DirectMapped => write!(f, "grant to a direct-mapped VM"),
        }
    }
}

/// [`Pod::new`] refused the configuration; the capability comes back.
#[derive(Debug)]
pub struct Refused {
    /// The configuration refused.
    pub config: PodConfig,
    /// The capability, unused.
    pub cap: PodCap,
}

/// Counters for the kernel's summary line and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest RAM pages.
    pub ram_pages: u64,
    /// Guest RAM pages mapped.
    pub populated_pages: u64,
    /// Guest RAM pages not mapped (populated on first touch).
    pub pod_entries: u64,
    /// Free pages in the pool.
    pub pool_pages: u64,
    /// Of which whole 2 MiB frames.
    pub pool_2m_frames: u64,
    /// Pages granted to the VM.
    pub owned_pages: u64,
    /// 2 MiB blocks populated (ever).
    pub pod_2m: u64,
    /// 4 KiB pages populated (ever).
    pub pod_4k: u64,
    /// 2 MiB frames broken into 4 KiB frames.
    pub splinters: u64,
    /// Pages reclaimed by sweeps.
    pub reclaimed_pages: u64,
    /// Sweep slices run.
    pub sweeps: u64,
    /// Steps of 2 MiB fills ([`Pod::fill_step`]).
    pub fill_steps: u64,
    /// Pages of 2 MiB frames being filled now.
    pub filling_pages: u64,
}

impl Stats {
    /// Bytes of guest RAM mapped.
    pub fn populated_bytes(&self) -> u64 {
        self.populated_pages * PAGE_SIZE
    }
}

/// What a range population did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// 2 MiB blocks mapped.
    pub blocks: u64,
    /// 4 KiB pages mapped.
    pub pages: u64,
}

/// An accounting invariant does not hold (always a bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantError {
    /// The pager belongs to another VM.
    WrongVm(WrongVm),
    /// `populated + pod_entries != ram pages`.
    Entries {
        /// Populated pages.
        populated: u64,
        /// PoD entries.
        pod_entries: u64,
        /// Guest RAM pages.
        ram: u64,
    },
    /// `pool + populated + filling != owned`.
    Ownership {
        /// Free pool pages.
        pool: u64,
        /// Populated pages (plus those being filled).
        populated: u64,
        /// Granted pages.
        owned: u64,
    },
    /// The table maps a different number of RAM pages than counted.
    Mapped {
        /// Pages found mapped in RAM.
        walked: u64,
        /// Pages counted as populated.
        populated: u64,
    },
    /// A RAM leaf maps memory the VM does not own (or, direct, IPA != PA).
    Foreign {
        /// Guest address.
        ipa: u64,
        /// Frame.
        pa: u64,
    },
    /// A mapped frame is also in the pool.
    MappedAndFree {
        /// Guest address.
        ipa: u64,
        /// Frame.
        pa: u64,
    },
    /// A pool range is not owned, or 2 MiB and 4 KiB lists overlap, or a
    /// 2 MiB frame is misaligned.
    BadPool {
        /// Start of the range.
        pa: u64,
    },
    /// RAM is mapped with a non-Normal attribute.
    NotNormal {
        /// Guest address.
        ipa: u64,
    },
}

/// Requests to the pod, as the kernel's dispatcher sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Stage-2 translation fault at `ipa`.
    Fault {
        /// Faulting guest address.
        ipa: u64,
    },
    /// Populate `[ipa, ipa+len)` now (e.g. before loading an image there).
    Populate {
        /// Start.
        ipa: u64,
        /// Bytes.
        len: u64,
    },
    /// One step of the fill of the block at `chunk` ([`Outcome::Filling`]).
    FillStep {
        /// Guest address of the block.
        chunk: u64,
    },
    /// Run one sweep slice of at most `pages` pages.
    Reclaim {
        /// Budget.
        pages: u64,
    },
    /// Give the pool `[pa, pa+len)`.
    Grant {
        /// Start.
        pa: u64,
        /// Bytes.
        len: u64,
    },
}

/// The pod's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Fault (or fill step) handled.
    Fault(Outcome),
    /// Range populated.
    Populated(Filled),
    /// Sweep slice done; pages reclaimed.
    Reclaimed(u64),
    /// Grant accepted.
    Granted,
    /// Grant refused.
    GrantRefused(GrantError),
    /// Failed.
    Error(PodError),
}

const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

/// One VM's populate-on-demand pool.
pub struct Pod {
    cap: PodCap,
    cfg: PodConfig,
    owned: Extents<EXTENTS>,
    free_2m: Extents<EXTENTS>,
    free_4k: Extents<EXTENTS>,
    owned_pages: u64,
    populated: u64,
    pod_entries: u64,
    // Next guest address the sweep looks at.
    cursor: u64,
    // Pages swept since the pool last gained a frame.
    dry_scanned: u64,
    // 2 MiB frames taken from the pool and being zeroed and cleaned.
    fills: heapless::Vec<Fill, MAX_FILLS>,
    stats: Stats,
}

/// A 2 MiB frame on its way into the guest: `done` bytes of it zeroed and
/// cleaned so far.
#[derive(Clone, Copy, Debug)]
struct Fill {
    chunk: u64,
    pa: u64,
    done: u64,
}

impl Pod {
    /// The pool of the VM that `cap` names. RAM must be 4 KiB aligned,
    /// non-empty and below 2^48.
    pub fn new(cap: PodCap, cfg: PodConfig) -> Result<Pod, Refused> {
        let ok = cfg.ram_base.is_multiple_of(PAGE_SIZE)
            && cfg.ram_size.is_multiple_of(PAGE_SIZE)
            && cfg.ram_size > 0
            && cfg
                .ram_base
                .checked_add(cfg.ram_size)
                .is_some_and(|e| e <= PA_LIMIT);
        if !ok {
            return Err(Refused { config: cfg, cap });
        }
        let ram = cfg.ram_size / PAGE_SIZE;
        Ok(Pod {
            cap,
            cfg,
            owned: Extents::new(),
            free_2m: Extents::new(),
            free_4k: Extents::new(),
            owned_pages: if cfg.mode == Mode::DirectMap { ram } else { 0 },
            populated: 0,
            pod_entries: ram,
            cursor: cfg.ram_base,
            dry_scanned: 0,
            fills: heapless::Vec::new(),
            stats: Stats::default(),
        })
    }

    /// Tear down: give back the capability. The kernel unmaps the guest and
    /// takes its frames back first.
    pub fn into_cap(self) -> PodCap {
        self.cap
    }

    /// The VM this pool belongs to.
    pub fn vm(&self) -> VmId {
        self.cap.vm()
    }

    /// The configuration.
    pub fn config(&self) -> &PodConfig {
        &self.cfg
    }

    fn filling_pages(&self) -> u64 {
        self.fills.len() as u64 * (BLOCK_SIZE / PAGE_SIZE)
    }

    fn filling(&self, chunk: u64) -> Option<usize> {
        self.fills.iter().position(|f| f.chunk == chunk)
    }

    fn pool_pages(&self) -> u64 {
        match self.cfg.mode {
            Mode::DirectMap => self.pod_entries,
            _ => (self.free_2m.total() + self.free_4k.total()) / PAGE_SIZE,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        Stats {
            ram_pages: self.cfg.ram_size / PAGE_SIZE,
            populated_pages: self.populated,
            pod_entries: self.pod_entries,
            pool_pages: self.pool_pages(),
            pool_2m_frames: self.free_2m.total() / BLOCK_SIZE,
            owned_pages: self.owned_pages,
            filling_pages: self.filling_pages(),
            ..self.stats
        }
    }

    fn check_pager<F: TableFormat>(&self, pager: &Pager<F>) -> Result<(), WrongVm> {
        if pager.vm() == self.vm() {
            Ok(())
        } else {
            Err(WrongVm {
                expected: self.vm(),
                got: pager.vm(),
            })
        }
    }

    fn in_ram(&self, ipa: u64) -> bool {
        ipa >= self.cfg.ram_base && ipa < self.cfg.ram_end()
    }

    fn block_fits(&self, chunk: u64) -> bool {
        chunk >= self.cfg.ram_base && chunk + BLOCK_SIZE <= self.cfg.ram_end()
    }

    /// Give the pool `[pa, pa+len)`. 2 MiB-aligned parts become 2 MiB
    /// frames, the rest 4 KiB frames.
    pub fn grant(&mut self, pa: u64, len: u64) -> Result<(), GrantError> {
        if self.cfg.mode == Mode::DirectMap {
            return Err(GrantError::DirectMapped);
        }
        if len == 0 {
            return Err(GrantError::Empty);
        }
        if !pa.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(GrantError::Misaligned { pa, len });
        }
        let end = match pa.checked_add(len) {
            Some(e) if e <= PA_LIMIT => e,
            _ => return Err(GrantError::OutOfRange { pa, len }),
        };
        if self.owned.overlaps(pa, end) {
            return Err(GrantError::Overlap { pa, len });
        }
        // Update copies, commit only when every list had room.
        let (mut owned, mut big, mut small) = (
            self.owned.clone(),
            self.free_2m.clone(),
            self.free_4k.clone(),
        );
        let full = |_| GrantError::TooFragmented;
        owned.insert(pa, end).map_err(full)?;
        let (a, b) = (align_up(pa, BLOCK_SIZE), align_down(end, BLOCK_SIZE));
        if a < b {
            big.insert(a, b).map_err(full)?;
            if pa < a {
                small.insert(pa, a).map_err(full)?;
            }
            if b < end {
                small.insert(b, end).map_err(full)?;
            }
        } else {
            small.insert(pa, end).map_err(full)?;
        }
        (self.owned, self.free_2m, self.free_4k) = (owned, big, small);
        self.owned_pages += len / PAGE_SIZE;
        self.dry_scanned = 0;
        Ok(())
    }

    // A 4 KiB frame: a free one, else one from a splintered 2 MiB frame.
    fn take_4k(&mut self) -> Option<u64> {
        if let Some(pa) = self.free_4k.take_front(PAGE_SIZE) {
            return Some(pa);
        }
        let f = self.free_2m.take_front(BLOCK_SIZE)?;
        if self.free_4k.insert(f + PAGE_SIZE, f + BLOCK_SIZE).is_err() {
            // No slot to remember the other 511 pages: keep the frame whole.
            // (It was just taken, so putting it back always has room.)
            let _ = self.free_2m.insert(f, f + BLOCK_SIZE);
            return None;
        }
        self.stats.splinters += 1;
        Some(f)
    }

    // Return a frame to the pool; 4 KiB frames that complete an aligned
    // 2 MiB become a 2 MiB frame again. False when no slot was left.
    fn give_back(&mut self, pa: u64, size: LeafSize) -> bool {
        match size {
            LeafSize::Block2M => self.free_2m.insert(pa, pa + BLOCK_SIZE).is_ok(),
            LeafSize::Page4K => {
                if self.free_4k.insert(pa, pa + PAGE_SIZE).is_err() {
                    return false;
                }
                let a = align_down(pa, BLOCK_SIZE);
                if let Some((s, e)) = self.free_4k.range_of(pa) {
                    if s <= a
                        && a + BLOCK_SIZE <= e
                        && self.free_2m.has_room_for(a, a + BLOCK_SIZE)
                        && self.free_4k.remove(a, a + BLOCK_SIZE).is_ok()
                    {
                        let promoted = self.free_2m.insert(a, a + BLOCK_SIZE);
                        debug_assert!(promoted.is_ok(), "room was checked");
                    }
                }
                true
            }
        }
    }

    fn has_room_for(&self, pa: u64, size: LeafSize) -> bool {
        match size {
            LeafSize::Block2M => self.free_2m.has_room_for(pa, pa + BLOCK_SIZE),
            LeafSize::Page4K => self.free_4k.has_room_for(pa, pa + PAGE_SIZE),
        }
    }

    // Zero, clean, then map. On a pager refusal the frame goes back.
    fn install<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        ipa: u64,
        pa: u64,
        size: LeafSize,
    ) -> Result<Outcome, PodError> {
        let n = size.bytes();
        if self.cfg.mode != Mode::DirectMap {
            hw.zero(pa, n);
            hw.clean_range(pa, n);
        }
        self.map_frame(pager, hw, ipa, pa, size)
    }

    // Map a frame that is zeroed and cleaned (or direct). On a pager
    // refusal the frame goes back.
    fn map_frame<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        ipa: u64,
        pa: u64,
        size: LeafSize,
    ) -> Result<Outcome, PodError> {
        if let Err(e) = pager.map(ipa, pa, size, MemAttrs::Normal, hw) {
            if self.cfg.mode != Mode::DirectMap {
                let back = self.give_back(pa, size);
                debug_assert!(back, "the frame was just taken");
            }
            return Err(PodError::Pager(e));
        }
        self.populated += size.pages();
        self.pod_entries -= size.pages();
        match size {
            LeafSize::Block2M => self.stats.pod_2m += 1,
            LeafSize::Page4K => self.stats.pod_4k += 1,
        }
        Ok(Outcome::Populated { size, ipa, pa })
    }

    // Populate the leaf holding `ipa` (unmapped, in RAM). `None` when the
    // pool has no frame.
    fn populate_at<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        ipa: u64,
    ) -> Result<Option<Outcome>, PodError> {
        let chunk = align_down(ipa, BLOCK_SIZE);
        let page = align_down(ipa, PAGE_SIZE);
        let direct = self.cfg.mode == Mode::DirectMap;
        if self.block_fits(chunk) && pager.chunk_is_empty(chunk) {
            let sliced = !direct && self.cfg.fill_slice < BLOCK_SIZE;
            let frame = if direct {
                Some(chunk)
            } else if sliced && self.fills.is_full() {
                // As many blocks are being filled as there can be: a page.
                None
            } else {
                self.free_2m.take_front(BLOCK_SIZE)
            };
            if let Some(pa) = frame {
                if sliced {
                    let started = self.fills.push(Fill { chunk, pa, done: 0 });
                    debug_assert!(started.is_ok(), "room was checked");
                    return Ok(Some(Outcome::Filling { chunk }));
                }
                return self
                    .install(pager, hw, chunk, pa, LeafSize::Block2M)
                    .map(Some);
            }
        }
        let frame = if direct { Some(page) } else { self.take_4k() };
        match frame {
            Some(pa) => self
                .install(pager, hw, page, pa, LeafSize::Page4K)
                .map(Some),
            None => Ok(None),
        }
    }

    /// Handle a stage-2 translation fault at `ipa`.
    pub fn fault<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        ipa: u64,
    ) -> Result<Outcome, PodError> {
        self.check_pager(pager).map_err(PodError::WrongVm)?;
        if !self.in_ram(ipa) {
            return Err(PodError::OutsideRam { ipa });
        }
        if pager.translate(ipa).is_some() {
            return Ok(Outcome::AlreadyMapped);
        }
        let chunk = align_down(ipa, BLOCK_SIZE);
        if self.filling(chunk).is_some() {
            // Its block is on its way: wait for that fill, map nothing else.
            return Ok(Outcome::Filling { chunk });
        }
        if let Some(o) = self.populate_at(pager, hw, ipa)? {
            return Ok(o);
        }
        if self.cfg.mode != Mode::OnDemand {
            return Err(PodError::Exhausted { ipa });
        }
        if self.sweep(pager, hw, self.cfg.sweep_pages)? > 0 {
            if let Some(o) = self.populate_at(pager, hw, ipa)? {
                return Ok(o);
            }
        }
        if self.dry_scanned >= self.populated {
            // A whole pass over populated RAM found nothing to take back.
            return Err(PodError::Exhausted { ipa });
        }
        Ok(Outcome::Retry)
    }

    /// One step of the fill of the block at `chunk` ([`Outcome::Filling`]):
    /// zero and clean the next [`PodConfig::fill_slice`] bytes of its
    /// frame, and map it once all of it is done (`Populated`). `Filling`:
    /// more to do. `AlreadyMapped`: no fill is pending there (another call
    /// finished it).
    pub fn fill_step<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        chunk: u64,
    ) -> Result<Outcome, PodError> {
        self.check_pager(pager).map_err(PodError::WrongVm)?;
        let Some(i) = self.filling(chunk) else {
            return Ok(Outcome::AlreadyMapped);
        };
        let f = &mut self.fills[i];
        let n = self.cfg.fill_slice.clamp(PAGE_SIZE, BLOCK_SIZE).min(BLOCK_SIZE - f.done);
        hw.zero(f.pa + f.done, n);
        hw.clean_range(f.pa + f.done, n);
        f.done += n;
        self.stats.fill_steps += 1;
        if f.done < BLOCK_SIZE {
            return Ok(Outcome::Filling { chunk });
        }
        let f = self.fills.swap_remove(i);
        self.map_frame(pager, hw, f.chunk, f.pa, LeafSize::Block2M)
    }

    /// Populate every unmapped page of `[ipa, ipa+len)` now (rounded out to
    /// 4 KiB), 2 MiB blocks where a whole empty aligned chunk and a frame
    /// allow. No sweep: a dry pool is [`PodError::Exhausted`], with what was
    /// populated so far kept.
    pub fn populate<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        ipa: u64,
        len: u64,
    ) -> Result<Filled, PodError> {
        self.check_pager(pager).map_err(PodError::WrongVm)?;
        let start = align_down(ipa, PAGE_SIZE);
        let end = match ipa.checked_add(len) {
            Some(e) => align_up(e, PAGE_SIZE),
            None => return Err(PodError::OutsideRam { ipa }),
        };
        if len == 0 {
            return Ok(Filled::default());
        }
        if !self.in_ram(start) {
            return Err(PodError::OutsideRam { ipa: start });
        }
        if end > self.cfg.ram_end() {
            return Err(PodError::OutsideRam {
                ipa: self.cfg.ram_end(),
            });
        }
        let mut filled = Filled::default();
        let mut a = start;
        while a < end {
            if let Some((_, size)) = pager.translate(a) {
                a = align_down(a, size) + size;
                continue;
            }
            // A block only when the whole chunk lies inside the range asked.
            let chunk = align_down(a, BLOCK_SIZE);
            let whole = chunk >= start && chunk + BLOCK_SIZE <= end;
            let got = if self.filling(chunk).is_some() {
                Some(Outcome::Filling { chunk })
            } else if whole {
                self.populate_at(pager, hw, a)?
            } else {
                let frame = if self.cfg.mode == Mode::DirectMap {
                    Some(a)
                } else {
                    self.take_4k()
                };
                match frame {
                    Some(pa) => Some(self.install(pager, hw, a, pa, LeafSize::Page4K)?),
                    None => None,
                }
            };
            // A fill under way, or one just started, is finished now.
            let got = match got {
                Some(Outcome::Filling { chunk }) => loop {
                    match self.fill_step(pager, hw, chunk)? {
                        Outcome::Filling { .. } => continue,
                        o => break Some(o),
                    }
                },
                o => o,
            };
            match got {
                Some(Outcome::Populated {
                    size: LeafSize::Block2M,
                    ..
                }) => {
                    filled.blocks += 1;
                    a = chunk + BLOCK_SIZE;
                }
                Some(Outcome::AlreadyMapped) => {}
                Some(_) => {
                    filled.pages += 1;
                    a += PAGE_SIZE;
                }
                None => return Err(PodError::Exhausted { ipa: a }),
            }
        }
        Ok(filled)
    }

    /// Eager and direct modes: map all of guest RAM now. On-demand: nothing.
    pub fn start<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
    ) -> Result<Filled, PodError> {
        match self.cfg.mode {
            Mode::OnDemand => {
                self.check_pager(pager).map_err(PodError::WrongVm)?;
                Ok(Filled::default())
            }
            Mode::Eager | Mode::DirectMap => {
                self.populate(pager, hw, self.cfg.ram_base, self.cfg.ram_size)
            }
        }
    }

    /// One sweep slice: look at up to `budget` populated pages from where the
    /// last slice stopped (wrapping once around RAM), and take back every
    /// page or block that reads all zero. Returns pages reclaimed. Not in
    /// direct mode (returns 0).
    ///
    /// Per candidate: unmap it (break-before-make, TLB invalidated by the
    /// pager), clean+invalidate it so a stale cached copy cannot hide what
    /// the guest wrote with caches off, check it is still zero, and only then
    /// pool it; if the guest wrote in the meantime, map it back unchanged.
    pub fn reclaim<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        budget: u64,
    ) -> Result<u64, PodError> {
        self.check_pager(pager).map_err(PodError::WrongVm)?;
        if self.cfg.mode == Mode::DirectMap {
            return Ok(0);
        }
        self.sweep(pager, hw, budget)
    }

    fn sweep<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        budget: u64,
    ) -> Result<u64, PodError> {
        let (base, end) = (self.cfg.ram_base, self.cfg.ram_end());
        let first = self.cursor;
        let mut wrapped = false;
        let (mut scanned, mut reclaimed) = (0, 0);
        self.stats.sweeps += 1;
        'slice: while scanned < budget {
            let from = self.cursor;
            let stop = if wrapped { first } else { end };
            let mut batch: heapless::Vec<Leaf, 32> = heapless::Vec::new();
            let owned = &self.owned;
            pager.walk(from, stop, &mut |l| {
                // Only frames this pool handed out: never take a frame the
                // kernel mapped into RAM itself.
                if l.attrs == MemAttrs::Normal
                    && l.ipa >= from
                    && l.end() <= end
                    && owned.contains(l.pa, l.pa + l.size.bytes())
                    && batch.push(*l).is_err()
                {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            if batch.is_empty() {
                if wrapped || first == base {
                    self.cursor = base;
                    break;
                }
                wrapped = true;
                self.cursor = base;
                continue;
            }
            for l in batch {
                if scanned >= budget {
                    break 'slice;
                }
                self.cursor = l.end();
                scanned += l.size.pages();
                if hw.is_zero(l.pa, l.size.bytes()) {
                    reclaimed += self.reclaim_leaf(pager, hw, &l)?;
                }
            }
        }
        if self.cursor >= end {
            self.cursor = base;
        }
        if reclaimed > 0 {
            self.dry_scanned = 0;
        } else {
            self.dry_scanned += scanned;
        }
        Ok(reclaimed)
    }

    fn reclaim_leaf<F: TableFormat, H: PodHw>(
        &mut self,
        pager: &mut Pager<F>,
        hw: &mut H,
        l: &Leaf,
    ) -> Result<u64, PodError> {
        if !self.has_room_for(l.pa, l.size) {
            return Ok(0);
        }
        let n = l.size.bytes();
        pager.unmap(l.ipa, l.size, hw)?;
        hw.clean_invalidate_range(l.pa, n);
        if !hw.is_zero(l.pa, n) {
            // Written between the first look and the unmap: put it back.
            pager.map(l.ipa, l.pa, l.size, MemAttrs::Normal, hw)?;
            return Ok(0);
        }
        let back = self.give_back(l.pa, l.size);
        debug_assert!(back, "room was checked");
        self.populated -= l.size.pages();
        self.pod_entries += l.size.pages();
        self.stats.reclaimed_pages += l.size.pages();
        Ok(l.size.pages())
    }

    /// Answer one request (the message-style entry point).
    pub fn handle<F: TableFormat, H: PodHw>(
        &mut self,
        req: Request,
        pager: &mut Pager<F>,
        hw: &mut H,
    ) -> Reply {
        let r = match req {
            Request::Fault { ipa } => self.fault(pager, hw, ipa).map(Reply::Fault),
            Request::FillStep { chunk } => self.fill_step(pager, hw, chunk).map(Reply::Fault),
            Request::Populate { ipa, len } => {
                self.populate(pager, hw, ipa, len).map(Reply::Populated)
            }
            Request::Reclaim { pages } => self.reclaim(pager, hw, pages).map(Reply::Reclaimed),
            Request::Grant { pa, len } => {
                return match self.grant(pa, len) {
                    Ok(()) => Reply::Granted,
                    Err(e) => Reply::GrantRefused(e),
                }
            }
        };
        r.unwrap_or_else(Reply::Error)
    }

    /// Check every accounting invariant in the crate docs against the pool
    /// and the VM's table.
    pub fn check_invariants<F: TableFormat>(&self, pager: &Pager<F>) -> Result<(), InvariantError> {
        self.check_pager(pager).map_err(InvariantError::WrongVm)?;
        let ram = self.cfg.ram_size / PAGE_SIZE;
        if self.populated + self.pod_entries != ram {
            return Err(InvariantError::Entries {
                populated: self.populated,
                pod_entries: self.pod_entries,
                ram,
            });
        }
        let pool = self.pool_pages();
        let taken = self.populated + self.filling_pages();
        if pool + taken != self.owned_pages {
            return Err(InvariantError::Ownership {
                pool,
                populated: taken,
                owned: self.owned_pages,
            });
        }
        for f in self.fills.iter() {
            let (lo, hi) = (f.pa, f.pa + BLOCK_SIZE);
            let mapped = !pager.chunk_is_empty(f.chunk);
            if mapped
                || !self.owned.contains(lo, hi)
                || self.free_2m.overlaps(lo, hi)
                || self.free_4k.overlaps(lo, hi)
                || self.fills.iter().filter(|g| g.chunk == f.chunk || g.pa == f.pa).count() != 1
            {
                return Err(InvariantError::BadPool { pa: f.pa });
            }
        }
        let direct = self.cfg.mode == Mode::DirectMap;
        if !direct {
            for (s, e) in self.free_2m.iter() {
                if !s.is_multiple_of(BLOCK_SIZE)
                    || !e.is_multiple_of(BLOCK_SIZE)
                    || !self.owned.contains(s, e)
                    || self.free_4k.overlaps(s, e)
                {
                    return Err(InvariantError::BadPool { pa: s });
                }
            }
            for (s, e) in self.free_4k.iter() {
                if !self.owned.contains(s, e) {
                    return Err(InvariantError::BadPool { pa: s });
                }
            }
        }
        let mut walked = 0;
        let mut bad = None;
        pager.walk(self.cfg.ram_base, self.cfg.ram_end(), &mut |l| {
            let (lo, hi) = (l.pa, l.pa + l.size.bytes());
            // The pod never makes a leaf straddling the RAM edge; direct
            // leaves map IPA = PA, others lie in a grant.
            let foreign = l.ipa < self.cfg.ram_base
                || l.end() > self.cfg.ram_end()
                || (direct && l.pa != l.ipa)
                || (!direct && !self.owned.contains(lo, hi));
            let err = if l.attrs != MemAttrs::Normal {
                Some(InvariantError::NotNormal { ipa: l.ipa })
            } else if foreign {
                Some(InvariantError::Foreign {
                    ipa: l.ipa,
                    pa: l.pa,
                })
            } else if !direct && (self.free_2m.overlaps(lo, hi) || self.free_4k.overlaps(lo, hi)) {
                Some(InvariantError::MappedAndFree {
                    ipa: l.ipa,
                    pa: l.pa,
                })
            } else {
                None
            };
            walked += l.size.pages();
            match err {
                Some(e) => {
                    bad = Some(e);
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(()),
            }
        });
        if let Some(e) = bad {
            return Err(e);
        }
        if walked != self.populated {
            return Err(InvariantError::Mapped {
                walked,
                populated: self.populated,
            });
        }
        Ok(())
    }
}
