//! A small deterministic generator, so that a seed names the same clip on every platform and
//! version (no dependency on `rand`'s algorithm choices).

/// SplitMix64 (Steele, Lea, Flood 2014): one add and three xor-shift-multiplies per draw.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1), from the top 24 bits so every value is exactly representable.
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform index below `n` (`n > 0`); the modulo bias is below 2^-40 for small `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Uniform in [-1, 1), for noise.
    pub fn signed(&mut self) -> f32 {
        self.f32() * 2.0 - 1.0
    }
}

/// The SplitMix64 finaliser, also used as a stateless hash for textures.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stateless hash of a seed and two integer coordinates to [0, 1).
pub fn hash01(seed: u64, a: i64, b: i64) -> f32 {
    let h = mix64(seed ^ mix64((a as u64).wrapping_mul(0x9E37_79B9) ^ (b as u64).rotate_left(32)));
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}
