//! Sixteen bytes compared at once: which bytes of a block equal a given byte, as a bit mask
//! (bit i for byte i). SSE2 on x86-64, where it is part of the baseline and `safe_arch`
//! wraps the intrinsics (this crate has no unsafe code); eight bytes per word elsewhere.

pub const WIDTH: usize = 16;

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub use sse2::Block;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
pub use swar::Block;

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub mod sse2 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };

    #[derive(Clone, Copy)]
    pub struct Block(m128i);

    impl Block {
        #[inline(always)]
        pub fn load(bytes: &[u8; super::WIDTH]) -> Self {
            Block(load_unaligned_m128i(bytes))
        }

        #[inline(always)]
        pub fn eq(self, byte: u8) -> u32 {
            let equal = cmp_eq_mask_i8_m128i(self.0, set_splat_i8_m128i(byte as i8));
            move_mask_i8_m128i(equal) as u32
        }

        /// Bytes below `limit` (1..=128), compared unsigned: b <= limit - 1 exactly
        /// when min(b, limit - 1) == b.
        #[inline(always)]
        pub fn below(self, limit: u8) -> u32 {
            let floor = min_u8_m128i(self.0, set_splat_i8_m128i((limit - 1) as i8));
            move_mask_i8_m128i(cmp_eq_mask_i8_m128i(floor, self.0)) as u32
        }
    }
}

/// The portable fallback, also built on x86-64 so the tests can hold it to SSE2.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
pub mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    #[derive(Clone, Copy)]
    pub struct Block([u64; 2]);

    /// The high bit of each byte of `v` that equals `b`, exactly (no false positives).
    #[inline(always)]
    fn bytes_equal(v: u64, b: u8) -> u64 {
        let x = v ^ (ONES * u64::from(b));
        !(((x & LOW7) + LOW7) | x | LOW7)
    }

    /// The high bit of each byte of `v` below `limit` (1..=128), exactly: the low seven
    /// bits plus 128 - limit carry into the high bit when they reach `limit`, and a
    /// byte with its high bit set is never below.
    #[inline(always)]
    fn bytes_below(v: u64, limit: u8) -> u64 {
        !(((v & LOW7) + ONES * u64::from(128 - limit)) | v) & !LOW7
    }

    /// Byte i's high bit to bit i: the multiply lands each on its own bit of the top
    /// byte, with no carries between them.
    #[inline(always)]
    fn gather(marks: u64) -> u32 {
        ((marks >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }

    impl Block {
        #[inline(always)]
        pub fn load(bytes: &[u8; super::WIDTH]) -> Self {
            let (lo, hi) = bytes.split_at(8);
            Block([
                u64::from_le_bytes(lo.try_into().expect("eight bytes")),
                u64::from_le_bytes(hi.try_into().expect("eight bytes")),
            ])
        }

        #[inline(always)]
        pub fn eq(self, byte: u8) -> u32 {
            gather(bytes_equal(self.0[0], byte)) | gather(bytes_equal(self.0[1], byte)) << 8
        }

        /// Bytes below `limit` (1..=128), compared unsigned.
        #[inline(always)]
        pub fn below(self, limit: u8) -> u32 {
            gather(bytes_below(self.0[0], limit)) | gather(bytes_below(self.0[1], limit)) << 8
        }
    }
}

/// Strings and gaps are searched a block at a time for this many bytes before memchr takes
/// over: most are short, and a block compare beats the setup of memchr's search there.
const SHORT: usize = 64;

/// The block of `s` at `at`, which must have WIDTH bytes there.
#[inline(always)]
fn block_at(s: &[u8], at: usize) -> Block {
    Block::load(s[at..at + WIDTH].try_into().expect("a whole block"))
}

/// The bytes of `block` equal to one of `needles`.
#[inline(always)]
fn any_of<const K: usize>(block: Block, needles: [u8; K]) -> u32 {
    needles.iter().fold(0, |m, &n| m | block.eq(n))
}

/// Bytes crossed per step when skipping a container: four blocks, one bit each in a u64.
pub(super) const STEP: usize = 4 * WIDTH;

/// Four blocks of the body.
pub(super) struct Step([Block; 4]);

impl Step {
    #[inline(always)]
    pub(super) fn load(s: &[u8], at: usize) -> Self {
        let step: &[u8; STEP] = s[at..at + STEP].try_into().expect("a whole step");
        Step(std::array::from_fn(|i| {
            Block::load(step[i * WIDTH..][..WIDTH].try_into().expect("a block"))
        }))
    }

    /// Bit i set when byte i equals `byte`.
    #[inline(always)]
    pub(super) fn marks(&self, byte: u8) -> u64 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |m, (i, b)| m | u64::from(b.eq(byte)) << (i * WIDTH))
    }

    /// Bit i set when byte i is below `limit`.
    #[inline(always)]
    pub(super) fn marks_below(&self, limit: u8) -> u64 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |m, (i, b)| m | u64::from(b.below(limit)) << (i * WIDTH))
    }

    /// Whether any byte equals `byte`.
    #[inline(always)]
    pub(super) fn any(&self, byte: u8) -> bool {
        self.marks(byte) != 0
    }
}

/// The index of the first byte of `s` equal to one of `needles` (never NUL).
#[inline]
pub(super) fn find_any<const K: usize>(s: &[u8], needles: [u8; K]) -> Option<usize> {
    let head = s.len().min(SHORT);
    let mut at = 0;
    while at + WIDTH <= head {
        let m = any_of(block_at(s, at), needles);
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize);
        }
        at += WIDTH;
    }
    if s.len() < SHORT {
        // The last few bytes of the body, padded with NUL, which no needle equals.
        let mut last = [0u8; WIDTH];
        last[..s.len() - at].copy_from_slice(&s[at..]);
        let m = any_of(Block::load(&last), needles);
        return (m != 0).then(|| at + m.trailing_zeros() as usize);
    }
    match *needles.as_slice() {
        [a, b] => memchr::memchr2(a, b, &s[at..]),
        [a, b, c] => memchr::memchr3(a, b, c, &s[at..]),
        _ => unreachable!("find_any takes two or three needles"),
    }
    .map(|i| i + at)
}
