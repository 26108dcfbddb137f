//! [`ReplicaMask`]: a set of replica indices of one registry, one bit per replica.
//!
//! Every per-replica verdict on the answer path is one of these: the replicas health lets us
//! route, the ones an operator has not disabled, the ones with data for a query type. They
//! combine with `&`, `|` and `!` in a register, so the answer path never walks a list.
//! A registry has at most [`MAX_REPLICAS`] replicas, the width of the mask.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// Most replicas a registry may have: the width of a [`ReplicaMask`].
pub const MAX_REPLICAS: usize = 64;

/// A set of replica indices (`0..MAX_REPLICAS`) of one registry.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ReplicaMask(u64);

impl ReplicaMask {
    /// No replica.
    pub const EMPTY: Self = Self(0);

    /// Replicas `0..n` (all of them for `n >= MAX_REPLICAS`).
    #[inline]
    pub const fn first(n: usize) -> Self {
        if n >= MAX_REPLICAS {
            Self(u64::MAX)
        } else {
            Self((1u64 << n) - 1)
        }
    }

    /// Just replica `i` (`i < MAX_REPLICAS`).
    #[inline]
    pub const fn single(i: usize) -> Self {
        debug_assert!(i < MAX_REPLICAS);
        Self(1u64 << i)
    }

    /// The raw bits (bit i = replica i), for storage and tests.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// From raw bits (bit i = replica i).
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Whether replica `i` is in the set (false for `i >= MAX_REPLICAS`).
    #[inline]
    pub const fn contains(self, i: usize) -> bool {
        i < MAX_REPLICAS && self.0 & (1u64 << i) != 0
    }

    /// Add replica `i` (ignored for `i >= MAX_REPLICAS`).
    #[inline]
    pub fn insert(&mut self, i: usize) {
        if i < MAX_REPLICAS {
            self.0 |= 1u64 << i;
        }
    }

    /// No replica in the set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many replicas are in the set.
    #[inline]
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The replica indices in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

impl FromIterator<usize> for ReplicaMask {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut m = Self::EMPTY;
        for i in iter {
            m.insert(i);
        }
        m
    }
}

impl BitAnd for ReplicaMask {
    type Output = Self;
    #[inline]
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl BitOr for ReplicaMask {
    type Output = Self;
    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitAndAssign for ReplicaMask {
    #[inline]
    fn bitand_assign(&mut self, rhs: Self) {
        self.0 &= rhs.0;
    }
}

impl BitOrAssign for ReplicaMask {
    #[inline]
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl Not for ReplicaMask {
    type Output = Self;
    #[inline]
    fn not(self) -> Self {
        Self(!self.0)
    }
}

impl fmt::Debug for ReplicaMask {
    /// The indices, e.g. `{0, 2}`: readable in test failures, unlike a bit pattern.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_covers_exactly_n_replicas() {
        assert_eq!(ReplicaMask::first(0), ReplicaMask::EMPTY);
        assert_eq!(ReplicaMask::first(3).bits(), 0b111);
        assert_eq!(ReplicaMask::first(63).len(), 63);
        assert_eq!(ReplicaMask::first(64).bits(), u64::MAX);
        assert_eq!(ReplicaMask::first(200).bits(), u64::MAX);
    }

    #[test]
    fn set_operations_are_bitwise() {
        let a: ReplicaMask = [0, 2, 5].into_iter().collect();
        let b: ReplicaMask = [2, 3].into_iter().collect();
        assert_eq!((a & b).iter().collect::<Vec<_>>(), [2]);
        assert_eq!((a | b).iter().collect::<Vec<_>>(), [0, 2, 3, 5]);
        assert_eq!(
            (ReplicaMask::first(4) & !a).iter().collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(a.contains(5) && !a.contains(4) && !a.contains(64));
        assert_eq!(format!("{a:?}"), "{0, 2, 5}");
    }

    #[test]
    fn out_of_range_indices_are_ignored() {
        let mut m = ReplicaMask::EMPTY;
        m.insert(64);
        m.insert(1000);
        assert!(m.is_empty());
        m.insert(63);
        assert_eq!(m, ReplicaMask::single(63));
        assert_eq!(m.iter().collect::<Vec<_>>(), [63]);
    }
}
