//! The kernel heap: a bump allocator over a fixed region in BSS. The kernel
//! allocates at boot (EL2 page tables, per-VM state); freed memory is not
//! reused, which the boot-only use makes harmless.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);
static mut ARENA: Arena = Arena([0; HEAP_SIZE]);
static NEXT: AtomicUsize = AtomicUsize::new(0);

struct Bump;

// SAFETY: every allocation is a distinct, aligned slice of ARENA; NEXT only
// grows, so no two live allocations overlap.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = core::ptr::addr_of_mut!(ARENA) as usize;
        let mut cur = NEXT.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).next_multiple_of(layout.align()) - base;
            let end = start + layout.size();
            if end > HEAP_SIZE {
                return core::ptr::null_mut();
            }
            if !crate::console::locks_ok() {
                // Before the MMU is on (one pCPU, no exclusives on the boards).
                NEXT.store(end, Ordering::Relaxed);
                return (base + start) as *mut u8;
            }
            match NEXT.compare_exchange(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return (base + start) as *mut u8,
                Err(v) => cur = v,
            }
        }
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump;

pub fn used() -> usize {
    NEXT.load(Ordering::Relaxed)
}

/// Bytes the heap can still hand out.
pub fn free() -> usize {
    HEAP_SIZE.saturating_sub(used())
}
