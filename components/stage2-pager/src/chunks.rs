//! A fixed-size set of 2 MiB chunk indices with a one-word-per-64-words
//! summary, so finding the next member skips empty space quickly.

/// Chunks the set can hold (64 GiB of 2 MiB chunks).
pub const CHUNKS: usize = 32 * 1024;
const WORDS: usize = CHUNKS / 64;
const SUMMARY: usize = WORDS / 64;

/// Set of chunk indices `0..CHUNKS`.
#[derive(Clone)]
pub struct ChunkSet {
    words: [u64; WORDS],
    // Bit w set when words[w] != 0.
    summary: [u64; SUMMARY],
    len: usize,
}

impl ChunkSet {
    /// The empty set.
    pub const fn new() -> Self {
        ChunkSet {
            words: [0; WORDS],
            summary: [0; SUMMARY],
            len: 0,
        }
    }

    /// Adds `i` (`i < CHUNKS`).
    pub fn insert(&mut self, i: usize) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if self.words[w] & b == 0 {
            self.words[w] |= b;
            self.summary[w / 64] |= 1 << (w % 64);
            self.len += 1;
        }
    }

    /// Removes `i`.
    pub fn remove(&mut self, i: usize) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if self.words[w] & b != 0 {
            self.words[w] &= !b;
            if self.words[w] == 0 {
                self.summary[w / 64] &= !(1 << (w % 64));
            }
            self.len -= 1;
        }
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        i < CHUNKS && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The smallest member `>= i`.
    pub fn next_from(&self, i: usize) -> Option<usize> {
        if i >= CHUNKS {
            return None;
        }
        // Rest of the word holding i.
        let w = i / 64;
        let rest = self.words[w] & (!0u64 << (i % 64));
        if rest != 0 {
            return Some(w * 64 + rest.trailing_zeros() as usize);
        }
        // Next non-empty word, found through the summary.
        let mut sw = (w + 1) / 64;
        let mut mask = if w + 1 >= WORDS {
            0
        } else {
            !0u64 << ((w + 1) % 64)
        };
        while sw < SUMMARY {
            let bits = self.summary[sw] & mask;
            if bits != 0 {
                let word = sw * 64 + bits.trailing_zeros() as usize;
                return Some(word * 64 + self.words[word].trailing_zeros() as usize);
            }
            sw += 1;
            mask = !0;
        }
        None
    }
}

impl Default for ChunkSet {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn edges() {
        let mut s = ChunkSet::new();
        assert_eq!(s.next_from(0), None);
        s.insert(CHUNKS - 1);
        s.insert(0);
        s.insert(64 * 64);
        assert_eq!(s.next_from(0), Some(0));
        assert_eq!(s.next_from(1), Some(64 * 64));
        assert_eq!(s.next_from(64 * 64 + 1), Some(CHUNKS - 1));
        assert_eq!(s.next_from(CHUNKS), None);
        s.remove(64 * 64);
        assert_eq!(s.next_from(1), Some(CHUNKS - 1));
        assert_eq!(s.len(), 2);
        assert!(!s.contains(CHUNKS));
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn matches_btreeset(ops in prop::collection::vec((any::<bool>(), 0..CHUNKS), 0..200),
                            probes in prop::collection::vec(0..CHUNKS + 2, 1..50)) {
            let mut s = ChunkSet::new();
            let mut m = BTreeSet::new();
            for (add, i) in ops {
                if add { s.insert(i); m.insert(i); } else { s.remove(i); m.remove(&i); }
            }
            prop_assert_eq!(s.len(), m.len());
            for p in probes {
                prop_assert_eq!(s.next_from(p), m.range(p..).next().copied());
            }
        }
    }
}
