//! Where a trap's instructions go: a measuring aid, only in a kernel built
//! with feature `profile` (`cargo xtask bench` builds it apart, in
//! target/bare-profile; every other build has empty functions here). PMU
//! counter 0, which the bench guest runs for instructions retired at EL2
//! too, is read at a few points of each trap; the segments between them
//! are summed per trap kind and printed with the summary. The state is
//! global, not per pCPU: the bench boots one pCPU.
//!
//! Segments: `entry` (from `lower_sync` to the VM's lock taken), `handle`
//! (decode, the component, its reply applied), `resume` (the checks before
//! the vCPU goes on, HCR, vGIC flush) and `exit` (the lock dropped, the
//! console drained). Only traps whose vCPU simply goes on are summed; those
//! that ran the run loop (a clean, a fill, a switch) are counted apart. The
//! cost of a reading itself is measured each trap and taken off. The
//! vector's register save and restore, the `eret` and the guest's own loop
//! are the rest of the round trip the guest measures.

#[cfg(feature = "profile")]
mod on {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

    pub const KINDS: [&str; 5] = ["hvc", "set/way", "vm-reg", "abort", "other"];
    const SEGS: usize = 4;

    /// This trap's counter readings: its start, three points, its end; and
    /// one more right after the start, which measures a reading's own cost.
    static T: [AtomicU64; SEGS + 2] = [const { AtomicU64::new(0) }; SEGS + 2];
    static KIND: AtomicUsize = AtomicUsize::new(4);
    static SUM: [[AtomicU64; SEGS]; 5] = [const { [const { AtomicU64::new(0) }; SEGS] }; 5];
    static N: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
    static SLOW: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

    #[inline(always)]
    fn read(i: usize) {
        T[i].store(crate::hw::pmu0(), Relaxed);
    }

    pub fn start() {
        read(0);
        read(SEGS + 1);
        KIND.store(4, Relaxed);
        for t in &T[1..SEGS] {
            t.store(0, Relaxed);
        }
    }

    /// Point 1: the VM locked; 2: handled; 3: resumed.
    pub fn point(i: usize) {
        read(i);
    }

    pub fn kind(k: usize) {
        KIND.store(k.min(4), Relaxed);
    }

    /// The trap is over: `fast` when its vCPU simply went on (the segments
    /// of those are summed; the others, which ran the run loop, counted).
    pub fn end(fast: bool) {
        read(SEGS);
        let k = KIND.load(Relaxed);
        if !fast || (1..SEGS).any(|i| T[i].load(Relaxed) == 0) {
            SLOW[k].fetch_add(1, Relaxed);
            return;
        }
        let cost = T[SEGS + 1].load(Relaxed).wrapping_sub(T[0].load(Relaxed));
        for s in 0..SEGS {
            let d = T[s + 1].load(Relaxed).wrapping_sub(T[s].load(Relaxed));
            // The first segment also holds the calibration reading.
            let own = if s == 0 { 2 * cost } else { cost };
            SUM[k][s].fetch_add(d.saturating_sub(own), Relaxed);
        }
        N[k].fetch_add(1, Relaxed);
    }

    pub fn print() {
        for (k, name) in KINDS.iter().enumerate() {
            let n = N[k].load(Relaxed);
            if n == 0 {
                continue;
            }
            let avg = |s: usize| SUM[k][s].load(Relaxed) / n;
            crate::kprintln!(
                "hyp: profile kind={} n={} slow={} entry={} handle={} resume={} exit={}",
                name,
                n,
                SLOW[k].load(Relaxed),
                avg(0),
                avg(1),
                avg(2),
                avg(3)
            );
        }
    }
}

#[cfg(feature = "profile")]
pub use on::{end, kind, point, print, start};

#[cfg(not(feature = "profile"))]
mod off {
    #[inline(always)]
    pub fn start() {}
    #[inline(always)]
    pub fn point(_i: usize) {}
    #[inline(always)]
    pub fn kind(_k: usize) {}
    #[inline(always)]
    pub fn end(_fast: bool) {}
    #[inline(always)]
    pub fn print() {}
}

#[cfg(not(feature = "profile"))]
pub use off::{end, kind, point, print, start};
