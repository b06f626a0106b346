//! A small seeded generator for jitter.

/// SplitMix64: a tiny, fast, non-cryptographic `rand_core` generator, enough for backoff
/// jitter. Seed it per device or per process (a serial number, a hardware RNG read, the
/// operating system's randomness), or a fleet retries in lockstep.
///
/// ```
/// use rand_core::Rng;
/// use resilient_circuit::backoff::SplitMix64;
///
/// let mut a = SplitMix64::new(0xC0FFEE);
/// let mut b = SplitMix64::new(0xC0FFEE);
/// assert_eq!(a.next_u64(), b.next_u64()); // same seed, same sequence
/// assert_ne!(a.next_u64(), SplitMix64::new(1).next_u64());
/// ```
// Not `Copy`: a copy would draw the same numbers as the original, unnoticed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
}

impl rand_core::TryRng for SplitMix64 {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
