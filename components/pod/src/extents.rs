//! A fixed-capacity set of physical address ranges, kept sorted, disjoint
//! and coalesced (no two ranges touch).

/// Why an extent update was refused. The set is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// The range overlaps one already in the set.
    Overlap,
    /// No slot left for another range.
    Full,
}

/// Ranges `[start, end)`, at most `N` of them.
#[derive(Clone, Debug)]
pub struct Extents<const N: usize> {
    v: heapless::Vec<(u64, u64), N>,
    total: u64,
}

impl<const N: usize> Extents<N> {
    /// The empty set.
    pub const fn new() -> Self {
        Extents {
            v: heapless::Vec::new(),
            total: 0,
        }
    }

    /// Bytes covered.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of separate ranges.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// No range at all.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// The ranges, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.v.iter().copied()
    }

    // Index of the first range starting after `x`.
    fn after(&self, x: u64) -> usize {
        self.v.partition_point(|e| e.0 <= x)
    }

    /// Whether any range intersects `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        let i = self.after(start);
        (i > 0 && self.v[i - 1].1 > start) || (i < self.v.len() && self.v[i].0 < end)
    }

    /// Whether one range holds all of `[start, end)`.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        let i = self.after(start);
        i > 0 && self.v[i - 1].1 >= end
    }

    /// Whether `insert(start, end)` would find room (it always does when it
    /// merges with a neighbour).
    pub fn has_room_for(&self, start: u64, end: u64) -> bool {
        if self.v.len() < N {
            return true;
        }
        let i = self.after(start);
        (i > 0 && self.v[i - 1].1 == start) || (i < self.v.len() && self.v[i].0 == end)
    }

    /// Add `[start, end)` (non-empty), merging with touching neighbours.
    pub fn insert(&mut self, start: u64, end: u64) -> Result<(), ExtentError> {
        debug_assert!(start < end);
        if self.overlaps(start, end) {
            return Err(ExtentError::Overlap);
        }
        let i = self.after(start);
        let joins_prev = i > 0 && self.v[i - 1].1 == start;
        let joins_next = i < self.v.len() && self.v[i].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.v[i - 1].1 = self.v[i].1;
                self.v.remove(i);
            }
            (true, false) => self.v[i - 1].1 = end,
            (false, true) => self.v[i].0 = start,
            (false, false) => self
                .v
                .insert(i, (start, end))
                .map_err(|_| ExtentError::Full)?,
        }
        self.total += end - start;
        Ok(())
    }

    /// Take `len` bytes from the front of the first range that is at least
    /// that long; returns their start.
    pub fn take_front(&mut self, len: u64) -> Option<u64> {
        let i = self.v.iter().position(|e| e.1 - e.0 >= len)?;
        let start = self.v[i].0;
        if self.v[i].1 - start == len {
            self.v.remove(i);
        } else {
            self.v[i].0 += len;
        }
        self.total -= len;
        Some(start)
    }

    /// Remove `[start, end)`, which one range must hold entirely.
    pub fn remove(&mut self, start: u64, end: u64) -> Result<(), ExtentError> {
        let i = self.after(start);
        if i == 0 || self.v[i - 1].1 < end {
            return Err(ExtentError::Overlap);
        }
        let (s, e) = self.v[i - 1];
        match (s == start, e == end) {
            (true, true) => {
                self.v.remove(i - 1);
            }
            (true, false) => self.v[i - 1].0 = end,
            (false, true) => self.v[i - 1].1 = start,
            (false, false) => {
                self.v.insert(i, (end, e)).map_err(|_| ExtentError::Full)?;
                self.v[i - 1].1 = start;
            }
        }
        self.total -= end - start;
        Ok(())
    }

    /// The range holding `x`, if any.
    pub fn range_of(&self, x: u64) -> Option<(u64, u64)> {
        let i = self.after(x);
        (i > 0 && self.v[i - 1].1 > x).then(|| self.v[i - 1])
    }
}

impl<const N: usize> Default for Extents<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    fn pages<const N: usize>(e: &Extents<N>) -> BTreeSet<u64> {
        e.iter().flat_map(|(s, e)| s..e).collect()
    }

    #[test]
    fn merge_and_carve() {
        let mut e: Extents<3> = Extents::new();
        e.insert(10, 20).unwrap();
        e.insert(30, 40).unwrap();
        e.insert(20, 30).unwrap();
        assert_eq!(e.iter().collect::<Vec<_>>(), [(10, 40)]);
        assert_eq!(e.insert(15, 16), Err(ExtentError::Overlap));
        assert_eq!(e.insert(39, 45), Err(ExtentError::Overlap));
        e.remove(20, 25).unwrap();
        assert_eq!(e.iter().collect::<Vec<_>>(), [(10, 20), (25, 40)]);
        assert_eq!(e.total(), 25);
        e.insert(50, 51).unwrap();
        assert!(!e.has_room_for(60, 61));
        assert!(e.has_room_for(51, 52));
        assert_eq!(e.insert(60, 61), Err(ExtentError::Full));
        assert_eq!(e.remove(30, 31), Err(ExtentError::Full));
        assert_eq!(e.total(), 26, "failed updates change nothing");
        assert_eq!(e.take_front(11), Some(25));
        assert_eq!(e.take_front(100), None);
        assert_eq!(e.range_of(36), Some((36, 40)));
        assert_eq!(e.range_of(40), None);
        assert!(e.contains(12, 20) && !e.contains(12, 21));
    }

    proptest! {
        #![proptest_config(stage2_pager::testing::proptest_config())]
        #[test]
        fn matches_a_set_of_units(ops in prop::collection::vec((0u8..3, 0u64..64, 1u64..8), 1..60)) {
            let mut e: Extents<8> = Extents::new();
            let mut m = BTreeSet::new();
            for (kind, s, len) in ops {
                let (s, t) = (s, s + len);
                match kind {
                    0 => match e.insert(s, t) {
                        Ok(()) => m.extend(s..t),
                        Err(ExtentError::Overlap) => prop_assert!((s..t).any(|x| m.contains(&x))),
                        Err(ExtentError::Full) => prop_assert_eq!(e.len(), 8),
                    },
                    1 => if e.remove(s, t).is_ok() {
                        prop_assert!((s..t).all(|x| m.remove(&x)));
                    },
                    _ => if let Some(a) = e.take_front(len) {
                        prop_assert!((a..a + len).all(|x| m.remove(&x)));
                    },
                }
                prop_assert_eq!(pages(&e), m.clone());
                prop_assert_eq!(e.total(), m.len() as u64);
                // Sorted, disjoint, never touching.
                let v: Vec<_> = e.iter().collect();
                prop_assert!(v.windows(2).all(|w| w[0].1 < w[1].0));
            }
        }
    }
}
