//! The outcome window: a fixed-capacity bit ring of recent outcomes.

use core::fmt;

/// One recorded outcome of a protected call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The call succeeded (or failed with an error the classifier counts as a success).
    Success,
    /// The call failed.
    Failure,
}

/// A ring of the most recent outcomes, oldest first, with a capacity fixed at compile time.
///
/// The breaker uses a logical window size (a ratio's denominator) that may be smaller than the
/// capacity; [`Window::push`] takes it. Implemented by [`OutcomeWindow`]; a store only needs
/// this trait to name the window its breaker state holds.
pub trait Window: Copy + fmt::Debug + Eq {
    /// How many outcomes fit.
    const CAPACITY: u16;
    /// A window holding nothing.
    const EMPTY: Self;
    /// How many outcomes are held.
    fn len(&self) -> u16;
    /// How many of them are failures.
    fn failures(&self) -> u16;
    /// The `index`-th outcome, oldest first; `None` past the end.
    fn get(&self, index: u16) -> Option<Outcome>;
    /// Appends `outcome`, first dropping the oldest while `size` outcomes are held.
    /// `size` is at most [`Window::CAPACITY`] (larger values are treated as the capacity).
    fn push(&mut self, outcome: Outcome, size: u16);
    /// Forgets every outcome.
    fn clear(&mut self);
    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether any failure is held (cheaper than counting them).
    fn has_failures(&self) -> bool {
        self.failures() != 0
    }
    /// The outcomes, oldest first.
    fn iter(&self) -> Outcomes<'_, Self> {
        Outcomes {
            window: self,
            next: 0,
        }
    }
}

/// A bit ring of up to `N` outcomes stored in `W` 32-bit words (one bit per outcome).
///
/// `W` must be at least `N / 32` rounded up; the default of 2 words covers windows up to 64.
/// Both are checked at compile time. With the default, the window is 12 bytes.
///
/// ```
/// use resilient_circuit::state::{Outcome, OutcomeWindow, Window};
///
/// let mut w = OutcomeWindow::<64>::EMPTY;
/// for o in [Outcome::Failure, Outcome::Success, Outcome::Failure, Outcome::Failure] {
///     w.push(o, 3); // a logical window of 3
/// }
/// assert_eq!(w.len(), 3);
/// assert_eq!(w.failures(), 2);
/// assert!(w.iter().eq([Outcome::Success, Outcome::Failure, Outcome::Failure]));
///
/// // A window of 1000 outcomes needs 32 words.
/// let big = OutcomeWindow::<1000, 32>::EMPTY;
/// assert!(big.is_empty());
/// ```
///
/// Too few words is checked at compile time (it does not compile):
///
/// ```compile_fail
/// use resilient_circuit::state::{OutcomeWindow, Window};
/// let w = OutcomeWindow::<100, 2>::EMPTY;
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutcomeWindow<const N: usize, const W: usize = 2> {
    /// Bit `i` (ring position) is 1 for a failure. Positions outside the live range are 0, so
    /// counting failures is a popcount. One word (`W = 1`, a window of up to 32) is a shift
    /// register instead: bit 0 the newest outcome, bit `len - 1` the oldest, and `head` stays 0.
    /// A push is then a shift and a mask, a few instructions where the ring takes a loop: what
    /// a firmware's small window costs in flash.
    bits: [u32; W],
    /// Ring position of the oldest outcome (0 in a shift register).
    head: u16,
    len: u16,
}

impl<const N: usize, const W: usize> OutcomeWindow<N, W> {
    const VALID: () = {
        assert!(N >= 1, "an outcome window must hold at least one outcome");
        assert!(
            N <= u16::MAX as usize,
            "an outcome window holds at most 65535 outcomes"
        );
        assert!(
            W * 32 >= N,
            "too few words: W must be at least (N + 31) / 32"
        );
    };

    /// How many outcomes are held (also [`Window::len`], without importing the trait).
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many of the held outcomes are failures.
    pub fn failures(&self) -> u16 {
        Window::failures(self)
    }

    /// The outcomes, oldest first.
    pub fn iter(&self) -> Outcomes<'_, Self> {
        Window::iter(self)
    }

    /// Whether the outcomes are a shift register (see `bits`); a constant.
    const SHIFTED: bool = W == 1;

    #[inline]
    fn position(&self, index: u16) -> usize {
        if Self::SHIFTED {
            return (self.len - 1 - index) as usize;
        }
        let p = self.head as usize + index as usize;
        if p >= N { p - N } else { p }
    }

    #[inline]
    fn bit(&self, position: usize) -> bool {
        self.bits[position / 32] & (1 << (position % 32)) != 0
    }

    #[inline]
    fn set_bit(&mut self, position: usize, failure: bool) {
        let mask = 1u32 << (position % 32);
        let word = &mut self.bits[position / 32];
        if failure {
            *word |= mask;
        } else {
            *word &= !mask;
        }
    }
}

impl<const N: usize, const W: usize> Window for OutcomeWindow<N, W> {
    const CAPACITY: u16 = {
        let () = Self::VALID;
        N as u16
    };
    const EMPTY: Self = {
        let () = Self::VALID;
        OutcomeWindow {
            bits: [0; W],
            head: 0,
            len: 0,
        }
    };

    #[inline]
    fn len(&self) -> u16 {
        self.len
    }

    #[inline]
    fn failures(&self) -> u16 {
        let mut total = 0;
        for word in &self.bits {
            total += ones(*word);
        }
        total as u16
    }

    #[inline]
    fn has_failures(&self) -> bool {
        self.bits.iter().fold(0, |any, w| any | w) != 0
    }

    fn get(&self, index: u16) -> Option<Outcome> {
        if index >= self.len {
            return None;
        }
        Some(if self.bit(self.position(index)) {
            Outcome::Failure
        } else {
            Outcome::Success
        })
    }

    #[inline]
    fn push(&mut self, outcome: Outcome, size: u16) {
        // A full window of successes stays the same after one more success: no write at all,
        // so a healthy service's calls do not wait on each other's updates of `head`.
        if outcome == Outcome::Success && self.len == size && !self.has_failures() {
            return;
        }
        let size = if size as usize > N { N as u16 } else { size };
        if size == 0 {
            return;
        }
        if Self::SHIFTED {
            // The newest in at bit 0; what falls past the window's `size` is masked off.
            let len = if self.len >= size { size } else { self.len + 1 };
            let shifted = (self.bits[0] << 1) | (outcome == Outcome::Failure) as u32;
            self.bits[0] = shifted & (u32::MAX >> (32 - len as u32));
            self.len = len;
            return;
        }
        // Work on locals and store once: this is the hot path of every recorded call.
        let mut head = self.head as usize;
        let mut len = self.len;
        while len >= size {
            self.set_bit(head, false);
            head = if head + 1 == N { 0 } else { head + 1 };
            len -= 1;
        }
        // Positions outside the live range hold 0, so a success needs no write.
        if outcome == Outcome::Failure {
            let position = head + len as usize;
            self.set_bit(
                if position >= N {
                    position - N
                } else {
                    position
                },
                true,
            );
        }
        self.head = head as u16;
        self.len = len + 1;
    }

    fn clear(&mut self) {
        *self = Self::EMPTY;
    }
}

/// The set bits of `word`. A 32-bit core (a microcontroller's) has no population count
/// instruction, and `count_ones` there is a dozen instructions and four constants; clearing the
/// lowest set bit until none is left is shorter, and takes as many turns as there are failures.
#[inline]
fn ones(word: u32) -> u32 {
    if cfg!(target_pointer_width = "64") {
        word.count_ones()
    } else {
        ones_by_clearing(word)
    }
}

/// [`ones`] on a 32-bit core.
#[inline]
fn ones_by_clearing(mut word: u32) -> u32 {
    let mut count = 0;
    while word != 0 {
        word &= word - 1;
        count += 1;
    }
    count
}

impl<const N: usize, const W: usize> fmt::Debug for OutcomeWindow<N, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, outcome) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(match outcome {
                Outcome::Success => "S",
                Outcome::Failure => "F",
            })?;
        }
        f.write_str("]")
    }
}

#[cfg(feature = "defmt")]
impl<const N: usize, const W: usize> defmt::Format for OutcomeWindow<N, W> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for (i, outcome) in self.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ", ");
            }
            match outcome {
                Outcome::Success => defmt::write!(f, "S"),
                Outcome::Failure => defmt::write!(f, "F"),
            }
        }
        defmt::write!(f, "]");
    }
}

/// The outcomes of a [`Window`], oldest first.
#[derive(Clone, Debug)]
pub struct Outcomes<'a, Win: ?Sized> {
    window: &'a Win,
    next: u16,
}

impl<Win: Window> Iterator for Outcomes<'_, Win> {
    type Item = Outcome;

    fn next(&mut self) -> Option<Outcome> {
        let outcome = self.window.get(self.next)?;
        self.next += 1;
        Some(outcome)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.window.len().saturating_sub(self.next) as usize;
        (left, Some(left))
    }
}

impl<Win: Window> ExactSizeIterator for Outcomes<'_, Win> {}

#[cfg(feature = "defmt")]
impl<Win: Window> defmt::Format for Outcomes<'_, Win> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Outcomes {{ next: {}, len: {} }}",
            self.next,
            self.window.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, OutcomeWindow, Window};

    /// The last `size` outcomes, kept the obvious way: an array, oldest first.
    struct Model {
        outcomes: [Outcome; 64],
        len: usize,
    }

    impl Model {
        fn push(&mut self, outcome: Outcome, size: usize) {
            if size == 0 {
                return;
            }
            while self.len >= size {
                self.outcomes.copy_within(1..self.len, 0);
                self.len -= 1;
            }
            self.outcomes[self.len] = outcome;
            self.len += 1;
        }
    }

    /// Pushes a seeded run of outcomes with logical sizes from 0 to past `N`, and compares
    /// every outcome and the failure count after each push.
    fn agrees_with_the_model<const N: usize, const W: usize>(seed: u64) {
        let mut window = OutcomeWindow::<N, W>::EMPTY;
        let mut model = Model {
            outcomes: [Outcome::Success; 64],
            len: 0,
        };
        let mut state = seed;
        for _ in 0..5_000 {
            // xorshift64: enough to mix outcomes and sizes.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let outcome = if state & 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            // Mostly the full window, sometimes another size (a HALF_OPEN probe window).
            let size = if state >> 8 & 7 == 0 {
                (state >> 16) as usize % (N + 3)
            } else {
                N
            };
            window.push(outcome, size as u16);
            model.push(outcome, size.min(N));
            assert_eq!(window.len() as usize, model.len);
            assert!(
                window
                    .iter()
                    .eq(model.outcomes[..model.len].iter().copied())
            );
            let failures = model.outcomes[..model.len]
                .iter()
                .filter(|o| **o == Outcome::Failure)
                .count();
            assert_eq!(window.failures() as usize, failures);
        }
    }

    #[test]
    fn a_one_word_window_keeps_the_last_outcomes_as_the_ring_does() {
        agrees_with_the_model::<1, 1>(1);
        agrees_with_the_model::<5, 1>(2);
        agrees_with_the_model::<31, 1>(3);
        agrees_with_the_model::<32, 1>(4);
    }

    #[test]
    fn set_bits_counted_by_clearing_are_count_ones() {
        let mut word = 0x9E37_79B9u32;
        for _ in 0..10_000 {
            word = word.rotate_left(5) ^ word.wrapping_mul(0x2545_F491);
            for w in [word, word & 0x0101_0101, !word, 0, u32::MAX] {
                assert_eq!(super::ones_by_clearing(w), w.count_ones(), "{w:#x}");
            }
        }
    }

    #[test]
    fn a_ring_window_keeps_the_last_outcomes() {
        agrees_with_the_model::<5, 2>(5);
        agrees_with_the_model::<33, 2>(6);
        agrees_with_the_model::<64, 2>(7);
    }
}
