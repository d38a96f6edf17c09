//! The hypervisor's physical memory allocator: it hands out 2 MiB-aligned
//! ranges of the RAM the DTB describes, minus the DTB, the hypervisor image
//! and the guest images (modules). Guest pools and stage-2 tables come from
//! it.

use spin_cell::SpinCell;

pub struct Region {
    pub base: u64,
    pub end: u64,
}

/// Free RAM ranges, allocated from the bottom up.
pub struct FrameAlloc {
    free: heapless::Vec<Region, 16>,
}

pub static FRAMES: SpinCell<FrameAlloc> = SpinCell::new(FrameAlloc { free: heapless::Vec::new() });

impl FrameAlloc {
    /// Start from the RAM ranges and cut out every reserved range.
    pub fn init(&mut self, ram: &[(u64, u64)], reserved: &[(u64, u64)]) {
        self.free.clear();
        for &(base, size) in ram {
            let _ = self.free.push(Region { base, end: base + size });
        }
        for &(rb, rs) in reserved {
            let re = rb + rs;
            let mut next: heapless::Vec<Region, 16> = heapless::Vec::new();
            for r in self.free.iter() {
                if re <= r.base || rb >= r.end {
                    let _ = next.push(Region { base: r.base, end: r.end });
                    continue;
                }
                if rb > r.base {
                    let _ = next.push(Region { base: r.base, end: rb });
                }
                if re < r.end {
                    let _ = next.push(Region { base: re, end: r.end });
                }
            }
            self.free = next;
        }
    }

    /// Take exactly `[base, base+size)`: true when it was all free (and is
    /// now taken), false when any of it is not (nothing is taken then).
    pub fn alloc_at(&mut self, base: u64, size: u64) -> bool {
        let Some(end) = base.checked_add(size) else { return false };
        let Some(i) = self.free.iter().position(|r| r.base <= base && end <= r.end) else {
            return false;
        };
        let r = self.free.swap_remove(i);
        // A split that finds no room loses that piece of free RAM (16
        // regions are far more than boards have), never a taken one.
        if r.base < base {
            let _ = self.free.push(Region { base: r.base, end: base });
        }
        if end < r.end {
            let _ = self.free.push(Region { base: end, end: r.end });
        }
        true
    }

    /// `size` bytes aligned to `align`, or `None` when RAM is exhausted.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        for r in self.free.iter_mut() {
            let start = r.base.next_multiple_of(align);
            if start + size <= r.end {
                // The skipped head [r.base, start) is lost to alignment; keep
                // it when it can still serve page-sized requests.
                let head = (r.base, start);
                r.base = start + size;
                if head.1 > head.0 {
                    let _ = self.free.push(Region { base: head.0, end: head.1 });
                }
                return Some(start);
            }
        }
        None
    }
}

pub mod spin_cell {
    //! A value behind a spin lock (EL2 runs with interrupts masked).
    use core::cell::UnsafeCell;
    use core::ops::{Deref, DerefMut};
    use core::sync::atomic::{AtomicBool, Ordering};

    pub struct SpinCell<T> {
        locked: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: access to `value` is serialised by `locked`.
    unsafe impl<T: Send> Sync for SpinCell<T> {}

    impl<T> SpinCell<T> {
        pub const fn new(value: T) -> Self {
            SpinCell { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
        }
        pub fn lock(&self) -> Guard<'_, T> {
            while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                core::hint::spin_loop();
            }
            Guard { cell: self }
        }
    }

    pub struct Guard<'a, T> {
        cell: &'a SpinCell<T>,
    }
    impl<T> Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the guard holds the lock.
            unsafe { &*self.cell.value.get() }
        }
    }
    impl<T> DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: the guard holds the lock exclusively.
            unsafe { &mut *self.cell.value.get() }
        }
    }
    impl<T> Drop for Guard<'_, T> {
        fn drop(&mut self) {
            self.cell.locked.store(false, Ordering::Release);
        }
    }
}
