//! `Scoped`: operations inside the VM's ranges pass, the rest are refused.

use hwops::{CacheOps, Frames, Scope, Scoped, TlbOps};

use std::cell::RefCell;
use std::rc::Rc;

/// One operation that reached the hardware: its name and two arguments.
type Op = (&'static str, u64, u64);

/// What reached the hardware.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<Op>>>);

impl Frames for Log {
    fn zero(&mut self, pa: u64, len: u64) {
        self.0.borrow_mut().push(("zero", pa, len));
    }
    fn is_zero(&self, _pa: u64, _len: u64) -> bool {
        true
    }
}
impl CacheOps for Log {
    fn clean_range(&mut self, pa: u64, len: u64) {
        self.0.borrow_mut().push(("clean", pa, len));
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.0.borrow_mut().push(("civac", pa, len));
    }
    fn invalidate_icache_all(&mut self) {
        self.0.borrow_mut().push(("ic", 0, 0));
    }
}
impl TlbOps for Log {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.0.borrow_mut().push(("tlbi", vmid as u64, ipa));
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.0.borrow_mut().push(("tlbi-vmid", vmid as u64, 0));
    }
}

const VM: &[std::ops::Range<u64>] = &[0x4000_0000..0x4020_0000, 0x8000_0000..0x8000_1000];

fn scoped() -> (Scoped<Log, &'static [std::ops::Range<u64>]>, Log) {
    let log = Log::default();
    (Scoped::new(log.clone(), VM), log)
}

#[test]
fn inside_passes() {
    let (mut s, log) = scoped();
    s.zero(0x4000_0000, 0x20_0000);
    s.clean_range(0x401f_f000, 0x1000);
    s.clean_invalidate_range(0x8000_0000, 0x1000);
    assert!(s.is_zero(0x4000_1000, 8));
    assert_eq!(s.refused(), 0);
    assert_eq!(log.0.borrow().len(), 3);
}

#[test]
fn outside_is_refused_and_reaches_nothing() {
    let (mut s, log) = scoped();
    s.zero(0x3fff_f000, 0x1000); // below
    s.zero(0x401f_f000, 0x2000); // runs past the end
    s.clean_range(0x4020_0000, 0x1000); // just after
    s.clean_invalidate_range(0x4000_0000, 0x20_1000); // a page too long
    s.zero(0x7fff_ffff_ffff_f000, 0x8000_0000_0000_2000); // wraps
    s.zero(0x8000_0000, 0x1001); // past the second range
    assert!(!s.is_zero(0x0, 8));
    assert_eq!(s.refused(), 7);
    assert!(log.0.borrow().is_empty(), "a refused range reached the hardware: {:x?}", log.0.borrow());
    // Operations without a host address pass through.
    s.invalidate_icache_all();
    s.invalidate_ipa(3, 0x4000);
    s.invalidate_vmid(3);
    assert_eq!(log.0.borrow().len(), 3);
}

#[test]
fn one_range_scope() {
    let r = 0x4000_0000..0x4020_0000u64;
    assert!(r.allows(0x4000_0000, 0x20_0000));
    assert!(r.allows(0x4020_0000, 0), "an empty range at the end");
    assert!(!r.allows(0x4020_0000, 1));
    assert!(!r.allows(0x3fff_ffff, 1));
    assert!(!r.allows(u64::MAX, 2), "wraps");
    assert!(!r.allows(0x4000_1000, u64::MAX), "wraps from inside");
    let mut s = Scoped::new(Log::default(), r);
    s.zero(0x4020_0000, 0x1000);
    assert_eq!(s.refused(), 1);
}
