//! Fakes of the hwops traits that need no cache model: a TLB that counts and
//! a `CacheOps` that records every call.

use alloc::vec::Vec;
use hwops::{CacheOps, TlbOps};

/// A `TlbOps` that only counts what it was asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountingTlb {
    /// `invalidate_ipa` calls.
    pub ipa: u64,
    /// `invalidate_vmid` calls.
    pub vmid: u64,
}

impl TlbOps for CountingTlb {
    fn invalidate_ipa(&mut self, _vmid: u16, _ipa: u64) {
        self.ipa += 1;
    }

    fn invalidate_vmid(&mut self, _vmid: u16) {
        self.vmid += 1;
    }
}

/// One call seen by [`RecordingCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheCall {
    /// `clean_range(pa, len)`.
    Clean(u64, u64),
    /// `clean_invalidate_range(pa, len)`.
    CleanInvalidate(u64, u64),
    /// `invalidate_icache_all()`.
    IcacheAll,
}

/// A `CacheOps` that records calls and does nothing else: for counting
/// bytes over large address spaces that no model could hold.
#[derive(Clone, Debug, Default)]
pub struct RecordingCache {
    /// Every call, in order.
    pub calls: Vec<CacheCall>,
    /// Sum of the lengths of all range calls.
    pub bytes: u64,
    /// When false, only `bytes` is kept (for very many calls).
    pub keep_calls: bool,
}

impl RecordingCache {
    /// A recorder that keeps every call.
    pub fn new() -> Self {
        RecordingCache { calls: Vec::new(), bytes: 0, keep_calls: true }
    }

    /// A recorder that only sums bytes.
    pub fn counting() -> Self {
        RecordingCache { calls: Vec::new(), bytes: 0, keep_calls: false }
    }

    fn push(&mut self, c: CacheCall) {
        if self.keep_calls {
            self.calls.push(c);
        }
    }
}

impl CacheOps for RecordingCache {
    fn clean_range(&mut self, pa: u64, len: u64) {
        self.bytes += len;
        self.push(CacheCall::Clean(pa, len));
    }

    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.bytes += len;
        self.push(CacheCall::CleanInvalidate(pa, len));
    }

    fn invalidate_icache_all(&mut self) {
        self.push(CacheCall::IcacheAll);
    }
}
