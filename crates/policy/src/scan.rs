//! A JSON field locator for the admission hot path.
//!
//! An AdmissionReview carries two whole Cluster objects, and the policy reads a handful of
//! fields of each. Building them (or walking them token by token through serde, as
//! `IgnoredAny` does) costs far more than deciding. This scanner walks only the objects on
//! the way to the wanted fields and hands each wanted value to serde_json, which decodes
//! and checks it fully. Everything else is skipped: a string by searching for its closing
//! quote, a container by counting its own brackets outside strings, 64 bytes per step
//! with SSE2 compares (a step holding an escape goes byte by byte), and long strings with
//! memchr.
//!
//! What is checked: the whole body is UTF-8; the objects walked have string keys, `:` and
//! `,` where JSON puts them, and nothing follows the top-level value; a named field appears
//! at most once per object; skipped scalars are well-formed literals, numbers (made of
//! number characters) and terminated strings with valid escapes; skipped containers are
//! balanced with their strings terminated. Not checked inside a skipped container: its
//! punctuation (`[1 2]`) and the exact number grammar. kube-apiserver always sends JSON
//! it serialized itself, and nothing skipped is ever interpreted. Nothing recurses, so no
//! nesting depth can exhaust the stack; the decoded values are bounded by serde_json's
//! recursion limit.

use std::borrow::Cow;

/// Strings and gaps are searched a block at a time for this many bytes before memchr takes
/// over: most are short, and a block compare beats the setup of memchr's search there.
const SHORT: usize = 64;

/// Why the body is not JSON the scanner can walk; `at` is a byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("invalid JSON at byte {at}")]
    Syntax { at: usize },
    #[error("truncated JSON at byte {at}")]
    Eof { at: usize },
    #[error("a field appears twice in one object at byte {at}")]
    Duplicate { at: usize },
    #[error("invalid UTF-8 at byte {at}")]
    Utf8 { at: usize },
}

/// A cursor over one JSON document.
pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Sixteen bytes compared at once: which bytes of a block equal a given byte, as a bit mask
/// (bit i for byte i). SSE2 on x86-64, where it is part of the baseline and `safe_arch`
/// wraps the intrinsics (this crate has no unsafe code); eight bytes per word elsewhere.
mod lanes {
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
}

use lanes::{Block, WIDTH};

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
const STEP: usize = 4 * WIDTH;

/// Four blocks of the body.
struct Step([Block; 4]);

impl Step {
    #[inline(always)]
    fn load(s: &[u8], at: usize) -> Self {
        let step: &[u8; STEP] = s[at..at + STEP].try_into().expect("a whole step");
        Step(std::array::from_fn(|i| {
            Block::load(step[i * WIDTH..][..WIDTH].try_into().expect("a block"))
        }))
    }

    /// Bit i set when byte i equals `byte`.
    #[inline(always)]
    fn marks(&self, byte: u8) -> u64 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |m, (i, b)| m | u64::from(b.eq(byte)) << (i * WIDTH))
    }

    /// Bit i set when byte i is below `limit`.
    #[inline(always)]
    fn marks_below(&self, limit: u8) -> u64 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |m, (i, b)| m | u64::from(b.below(limit)) << (i * WIDTH))
    }

    /// Whether any byte equals `byte`.
    #[inline(always)]
    fn any(&self, byte: u8) -> bool {
        self.marks(byte) != 0
    }
}

/// The containers open around the cursor, one bit each (1 for an object), innermost in
/// the low bit of `word`; each 64 levels spill into `outer`.
#[derive(Default)]
struct Containers {
    word: u64,
    depth: usize,
    outer: Vec<u64>,
}

impl Containers {
    fn push(&mut self, object: bool) {
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.outer.push(self.word);
            self.word = 0;
        }
        self.word = self.word << 1 | u64::from(object);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.word >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.word = self.outer.pop().expect("a spilled word per 64 levels");
        }
    }

    /// `None` when no container is open.
    fn innermost_is_object(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.word & 1 == 1)
    }
}

/// The index of the first byte of `s` equal to one of `needles` (never NUL).
#[inline]
fn find_any<const K: usize>(s: &[u8], needles: [u8; K]) -> Option<usize> {
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

impl<'a> Scanner<'a> {
    /// A scanner over `text`, which must be UTF-8 (checked here, once for the whole body).
    pub fn new(text: &'a [u8]) -> Result<Self, ScanError> {
        let text = simdutf8::compat::from_utf8(text).map_err(|e| ScanError::Utf8 {
            at: e.valid_up_to(),
        })?;
        Ok(Scanner::over(text))
    }

    /// A scanner over text already known to be UTF-8.
    pub fn over(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    /// Reads the document's one value and checks nothing follows it.
    #[cfg(test)]
    fn whole(mut self) -> Result<&'a str, ScanError> {
        let span = self.value_span()?;
        self.end()?;
        Ok(span)
    }

    /// Checks that only whitespace follows what was read.
    pub fn end(mut self) -> Result<(), ScanError> {
        self.ws();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn syntax(&self) -> ScanError {
        if self.pos >= self.bytes.len() {
            ScanError::Eof { at: self.pos }
        } else {
            ScanError::Syntax { at: self.pos }
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn next_byte(&mut self) -> Result<u8, ScanError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(ScanError::Eof { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), ScanError> {
        self.ws();
        if self.bytes.get(self.pos) == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// Past a string whose opening quote was just consumed; returns whether it had escapes.
    /// Raw control characters are refused, as the JSON grammar does, also in the strings of
    /// skipped values: a body serde_json would refuse must not be judged.
    #[inline]
    fn string_rest(&mut self) -> Result<bool, ScanError> {
        self.string_rest_in::<true>()
    }

    /// [`Self::string_rest`], refusing raw control characters when `STRICT` (as the JSON
    /// grammar does; the skip leaves them to the decoder of whatever is read).
    #[inline(always)]
    fn string_rest_in<const STRICT: bool>(&mut self) -> Result<bool, ScanError> {
        let start = self.pos;
        // A block at a time up to the closing quote; escapes, control characters and the
        // last bytes of the body go to the byte-wise search.
        while let Some(block) = self.bytes.get(self.pos..self.pos + WIDTH) {
            let block = Block::load(block.try_into().expect("a block"));
            let (quotes, escapes) = (block.eq(b'"'), block.eq(b'\\'));
            let stops = escapes | if STRICT { block.below(0x20) } else { 0 };
            if quotes | stops == 0 {
                self.pos += WIDTH;
                continue;
            }
            let end = quotes.trailing_zeros(); // 32 when there is no quote
            if end < 32 && stops & ((1 << end) - 1) == 0 {
                self.pos += end as usize + 1;
                return Ok(false);
            }
            break;
        }
        let escaped = self.string_rest_searched()?;
        if STRICT {
            if let Some(i) = self.bytes[start..self.pos].iter().position(|&b| b < 0x20) {
                return Err(ScanError::Syntax { at: start + i });
            }
        }
        Ok(escaped)
    }

    /// [`Self::string_rest`] for strings with escapes, or at the end of the body.
    #[inline(never)]
    fn string_rest_searched(&mut self) -> Result<bool, ScanError> {
        let mut escaped = false;
        loop {
            let found = find_any(&self.bytes[self.pos..], [b'"', b'\\']);
            let Some(i) = found else {
                self.pos = self.bytes.len();
                return Err(ScanError::Eof { at: self.pos });
            };
            self.pos += i + 1;
            if self.bytes[self.pos - 1] == b'"' {
                return Ok(escaped);
            }
            escaped = true;
            match self.next_byte()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    for _ in 0..4 {
                        if !self.next_byte()?.is_ascii_hexdigit() {
                            self.pos -= 1;
                            return Err(ScanError::Syntax { at: self.pos });
                        }
                    }
                }
                _ => {
                    self.pos -= 1;
                    return Err(ScanError::Syntax { at: self.pos });
                }
            }
        }
    }

    fn literal(&mut self, rest: &[u8]) -> Result<(), ScanError> {
        let end = self.pos + rest.len();
        if self.bytes.get(self.pos..end) == Some(rest) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// Skips one value (after optional whitespace) without building anything. Scalars are
    /// checked; a container is crossed by counting its own brackets outside strings, so
    /// its contents are only checked for balance and string syntax (see the module docs).
    /// Nothing recurses, so no nesting depth can exhaust the stack.
    pub fn skip_value(&mut self) -> Result<(), ScanError> {
        self.ws();
        match self.next_byte()? {
            b'{' => self.skip_container(b'{', b'}'),
            b'[' => self.skip_container(b'[', b']'),
            b'"' => self.string_rest().map(drop),
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            b'-' | b'0'..=b'9' => {
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') =
                    self.bytes.get(self.pos)
                {
                    self.pos += 1;
                }
                Ok(())
            }
            _ => {
                self.pos -= 1;
                Err(ScanError::Syntax { at: self.pos })
            }
        }
    }

    /// Past the container whose opening bracket was just consumed.
    fn skip_container(&mut self, open: u8, close: u8) -> Result<(), ScanError> {
        let mut depth = 1usize;
        loop {
            // Four blocks per step, starting outside any string: mark the quotes, brackets
            // and backslashes (bit i for byte i); a prefix XOR turns the quotes into an
            // in-string mask, and each bracket outside strings moves the depth. A step
            // with a backslash (an escape, which a quote count cannot follow) goes to the
            // byte-wise search below.
            let mut in_string = 0u64; // all ones when the step starts inside a string
            while self.pos + STEP <= self.bytes.len() {
                let step = Step::load(self.bytes, self.pos);
                if step.any(b'\\') {
                    break;
                }
                let mut strings = step.marks(b'"');
                strings ^= strings << 1;
                strings ^= strings << 2;
                strings ^= strings << 4;
                strings ^= strings << 8;
                strings ^= strings << 16;
                strings ^= strings << 32;
                strings ^= in_string;
                // A raw control character inside a string (the opening quote's bit is set,
                // the closing quote's is not, and neither is below 0x20).
                let controls = step.marks_below(0x20) & strings;
                if controls != 0 {
                    self.pos += controls.trailing_zeros() as usize;
                    return Err(ScanError::Syntax { at: self.pos });
                }
                let closes = step.marks(close) & !strings;
                let mut brackets = (step.marks(open) & !strings) | closes;
                while brackets != 0 {
                    let at = brackets.trailing_zeros();
                    if closes >> at & 1 == 0 {
                        depth += 1;
                    } else {
                        depth -= 1;
                        if depth == 0 {
                            self.pos += at as usize + 1;
                            return Ok(());
                        }
                    }
                    brackets &= brackets - 1;
                }
                in_string = 0u64.wrapping_sub(strings >> 63);
                self.pos += STEP;
            }
            // Byte-wise past that step (or to the end of the body), then blocks again.
            if in_string != 0 {
                self.string_rest()?;
            }
            let resume = self.pos + STEP;
            while self.pos < resume {
                let Some(i) = find_any(&self.bytes[self.pos..], [b'"', open, close]) else {
                    self.pos = self.bytes.len();
                    return Err(ScanError::Eof { at: self.pos });
                };
                self.pos += i + 1;
                match self.bytes[self.pos - 1] {
                    b'"' => {
                        self.string_rest()?;
                    }
                    b if b == open => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// The bytes of the next value, checked against the whole JSON grammar (what
    /// serde_json accepts: punctuation, number syntax, no raw control characters in
    /// strings) without building anything; for values that are kept as text and compared
    /// later. Nothing recurses: any depth is checked in constant stack.
    pub fn checked_span(&mut self) -> Result<&'a str, ScanError> {
        self.ws();
        let start = self.pos;
        let mut open = Containers::default();
        'value: loop {
            self.ws();
            match self.next_byte()? {
                open_byte @ (b'{' | b'[') => {
                    let close = if open_byte == b'{' { b'}' } else { b']' };
                    self.ws();
                    if self.bytes.get(self.pos) == Some(&close) {
                        self.pos += 1;
                    } else {
                        open.push(open_byte == b'{');
                        if open_byte == b'{' {
                            self.checked_key()?;
                        }
                        continue 'value;
                    }
                }
                b'"' => self.checked_string_rest()?,
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' => {
                    let first = self.next_byte()?;
                    self.number_rest(first)?
                }
                first @ b'0'..=b'9' => self.number_rest(first)?,
                _ => {
                    self.pos -= 1;
                    return Err(ScanError::Syntax { at: self.pos });
                }
            }
            // After a value: a comma continues the innermost container, a bracket closes it.
            loop {
                let Some(in_object) = open.innermost_is_object() else {
                    return Ok(&self.text[start..self.pos]);
                };
                self.ws();
                match (self.next_byte()?, in_object) {
                    (b',', true) => {
                        self.checked_key()?;
                        continue 'value;
                    }
                    (b',', false) => continue 'value,
                    (b'}', true) | (b']', false) => open.pop(),
                    _ => {
                        self.pos -= 1;
                        return Err(ScanError::Syntax { at: self.pos });
                    }
                }
            }
        }
    }

    /// An object key and its colon, checked.
    fn checked_key(&mut self) -> Result<(), ScanError> {
        self.expect(b'"')?;
        self.checked_string_rest()?;
        self.expect(b':')
    }

    /// Past a string whose opening quote was just consumed, refusing raw control characters.
    fn checked_string_rest(&mut self) -> Result<(), ScanError> {
        self.string_rest_in::<true>().map(drop)
    }

    /// Past a number whose first digit is `first` (after an optional minus sign):
    /// `0` or a non-zero digit and more, then an optional fraction and exponent.
    fn number_rest(&mut self, first: u8) -> Result<(), ScanError> {
        let digits = |sc: &mut Self| {
            let start = sc.pos;
            while let Some(b'0'..=b'9') = sc.bytes.get(sc.pos) {
                sc.pos += 1;
            }
            sc.pos - start
        };
        match first {
            b'0' => {}
            b'1'..=b'9' => {
                digits(self);
            }
            _ => {
                self.pos -= 1;
                return Err(ScanError::Syntax { at: self.pos });
            }
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.syntax());
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.syntax());
            }
        }
        Ok(())
    }

    /// The bytes of the next value, skipped over.
    pub fn value_span(&mut self) -> Result<&'a str, ScanError> {
        self.ws();
        let start = self.pos;
        self.skip_value()?;
        // Both ends sit on ASCII structure, so they are char boundaries.
        Ok(&self.text[start..self.pos])
    }

    /// The spans of the fields named in `names` (by position; `None` when absent) of the
    /// object at the cursor; `Ok(None)`, with the value skipped, when it is not an object.
    #[cfg(test)]
    fn fields<const N: usize>(
        &mut self,
        names: [&str; N],
    ) -> Result<Option<[Option<&'a str>; N]>, ScanError> {
        let mut found: [Option<&'a str>; N] = [None; N];
        let is_object = self.object(names, |i, sc| {
            found[i] = Some(sc.value_span()?);
            Ok::<_, ScanError>(())
        })?;
        Ok(is_object.then_some(found))
    }
}

impl<'a> Scanner<'a> {
    /// Walks the object at the cursor in one pass: for each field named in `names`,
    /// `on_field(index, scanner)` must consume its value (decode it, descend into it, or
    /// skip it); other fields are skipped. Returns `Ok(false)`, with the value skipped, when
    /// the value is not an object. A named field given twice is an error: two readers of
    /// one object must never disagree about which copy counts.
    pub fn object<const N: usize, E: From<ScanError>>(
        &mut self,
        names: [&str; N],
        mut on_field: impl FnMut(usize, &mut Scanner<'a>) -> Result<(), E>,
    ) -> Result<bool, E> {
        self.ws();
        if self.bytes.get(self.pos) != Some(&b'{') {
            self.skip_value()?;
            return Ok(false);
        }
        self.pos += 1;
        let mut seen = [false; N];
        self.ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(true);
        }
        loop {
            self.expect(b'"')?;
            let key_start = self.pos;
            let escaped = self.string_rest()?;
            let key: Cow<'a, str> = if escaped {
                // Rare (Go's encoder escapes no plain ASCII key): let serde_json unescape.
                serde_json::from_str::<String>(&self.text[key_start - 1..self.pos])
                    .map(Cow::Owned)
                    .map_err(|_| ScanError::Syntax { at: key_start })?
            } else {
                Cow::Borrowed(&self.text[key_start..self.pos - 1])
            };
            self.expect(b':')?;
            match names.iter().position(|n| *n == key) {
                Some(i) => {
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(ScanError::Duplicate { at: key_start }.into());
                    }
                    on_field(i, self)?;
                }
                None => self.skip_value()?,
            }
            self.ws();
            match self.next_byte()? {
                b',' => continue,
                b'}' => return Ok(true),
                _ => {
                    self.pos -= 1;
                    return Err(ScanError::Syntax { at: self.pos }.into());
                }
            }
        }
    }

    /// Whether the next value is the literal `null` (consumed if so).
    pub fn null(&mut self) -> bool {
        self.ws();
        if self.bytes[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(text: &str) -> Result<&str, ScanError> {
        Scanner::new(text.as_bytes())?.whole()
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for text in [
            "{}",
            "[]",
            " { \"a\" : [1, -2.5e+3, true, false, null, \"x\\\"y\\\\\", {\"b\": {}}, []] } ",
            "\"\\u00e9\\n\"",
            "0",
            "[[[[]]]]",
            "{\"k\\u0065y\":{\"n\":[{},{\"m\":[]}]}}",
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
            assert_eq!(skip(text).unwrap(), text.trim(), "{text}");
        }
    }

    #[test]
    fn refuses_broken_json() {
        for text in [
            "",
            "{",
            "[[]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1]",
            "{1:2}",
            "{\"a\":1 \"b\":2}",
            "\"open",
            "\"bad \\x escape\"",
            "\"bad \\u12g4\"",
            "[\"open]",
            "tru",
            "nul",
            "{} {}",
            "x",
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
            // As a walked object, and as a skipped value.
            let walked = Scanner::new(text.as_bytes()).and_then(|mut sc| {
                sc.fields(["a"])?;
                sc.end()
            });
            assert!(walked.is_err(), "{text:?} was accepted as a walked object");
            if text.starts_with(['[', '"', 't', 'n', 'x']) || text.is_empty() || text == "{" {
                assert!(
                    skip(text).is_err(),
                    "{text:?} was accepted as a skipped value"
                );
            }
        }
    }

    #[test]
    fn skipped_containers_are_checked_for_balance_only() {
        // The documented leniency: punctuation inside a skipped container is not checked.
        assert!(serde_json::from_str::<serde_json::Value>("[1 2]").is_err());
        assert_eq!(skip("[1 2]").unwrap(), "[1 2]");
        // Brackets inside strings do not count; escaped quotes do not end a string.
        assert_eq!(skip(r#"{"a":"}\"}"}"#).unwrap(), r#"{"a":"}\"}"}"#);
    }

    /// A pseudo-random JSON value whose strings are full of brackets and quotes.
    fn random_value(seed: &mut u64, depth: u32, escapes: bool) -> serde_json::Value {
        let mut next = || {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) as usize
        };
        let pieces = ["{", "}", "[", "]", "a", "long-ish text ", ":", ",", "é"];
        let quote: &[&str] = if escapes { &["\"", "\\"] } else { &[] };
        match if depth > 6 { next() % 3 } else { next() % 5 } {
            0 => serde_json::Value::from(next() as i64 - 1000),
            1 | 2 => {
                let n = next() % 12;
                let text: String = (0..n)
                    .map(|_| {
                        let i = next() % (pieces.len() + quote.len());
                        pieces
                            .get(i)
                            .copied()
                            .unwrap_or_else(|| quote[i - pieces.len()])
                    })
                    .collect();
                serde_json::Value::from(text)
            }
            3 => (0..next() % 5)
                .map(|_| random_value(seed, depth + 1, escapes))
                .collect(),
            _ => serde_json::Value::Object(
                (0..next() % 5)
                    .map(|i| (format!("k{i}{{"), random_value(seed, depth + 1, escapes)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn skipping_agrees_with_serde_json_on_random_documents() {
        let mut seed = 7;
        for round in 0..3000 {
            let escapes = round % 2 == 1;
            let v = random_value(&mut seed, 0, escapes);
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(skip(&text).unwrap(), text, "round {round}");
            let doc = format!(r#"{{"skip":{text},"after":[{text}],"b":1}}"#);
            let mut sc = Scanner::new(doc.as_bytes()).unwrap();
            let [after, b] = sc.fields(["after", "b"]).unwrap().unwrap();
            assert_eq!(after, Some(format!("[{text}]").as_str()), "round {round}");
            assert_eq!(b, Some("1"), "round {round}");
            sc.end().unwrap();
            // Cut anywhere inside: never accepted as the whole document.
            let cut = doc.len() / 2;
            if doc.is_char_boundary(cut) {
                let truncated = Scanner::new(&doc.as_bytes()[..cut])
                    .and_then(|mut sc| sc.fields(["after", "b"]).map(drop).and_then(|()| sc.end()));
                assert!(truncated.is_err(), "round {round}: {}", &doc[..cut]);
            }
        }
    }

    #[test]
    fn every_alignment_of_strings_escapes_and_brackets() {
        // Brackets inside strings, escaped quotes and strings that cross the 16- and
        // 32-byte steps, at every offset from the start of a step.
        let tail = r#""s":"a\"]}[{b","t":[{"u":"]"},[]],"v":"x{","w":{}"#;
        let plain = r#""s":"a]}[{b","t":[{"u":"]\n"},[]],"v":"x{","w":{}"#;
        for body in [tail, plain] {
            for pad in 0..80 {
                let doc = format!(r#"[{{"pad":"{}",{body}}},"z"]"#, "p".repeat(pad));
                let parsed: serde_json::Value = serde_json::from_str(&doc).unwrap();
                assert_eq!(skip(&doc).unwrap(), doc, "pad {pad}");
                let inner = serde_json::to_string(&parsed[0]).unwrap();
                let wrapped = format!(r#"{{"a":{inner},"b":"{}"}}"#, "q".repeat(pad));
                let [a, b] = Scanner::new(wrapped.as_bytes())
                    .unwrap()
                    .fields(["a", "b"])
                    .unwrap()
                    .unwrap();
                assert_eq!(a, Some(inner.as_str()), "pad {pad}");
                assert_eq!(b.map(str::len), Some(pad + 2), "pad {pad}");
                // Unbalanced at every offset: one closing bracket short.
                let short = &doc[..doc.len() - 1];
                assert!(skip(short).is_err(), "pad {pad}");
            }
        }
    }

    /// What `checked_span` accepts, serde_json accepts, and the other way round.
    fn checked_agrees_with_serde_json(text: &str, what: &str) {
        let ours = Scanner::over(text)
            .checked_span()
            .map(str::len)
            .and_then(|len| {
                let mut sc = Scanner::over(text);
                sc.checked_span()?;
                sc.end().map(|()| len)
            });
        let serde = serde_json::from_str::<serde::de::IgnoredAny>(text);
        assert_eq!(
            ours.is_ok(),
            serde.is_ok(),
            "{what}: {text:?} {ours:?} {serde:?}"
        );
        if ours.is_ok() {
            assert_eq!(
                ours,
                Ok(text.trim_end().len() - (text.len() - text.trim_start().len())),
                "{what}: {text:?}"
            );
        }
    }

    #[test]
    fn checked_span_accepts_exactly_what_serde_json_accepts() {
        for text in [
            "0",
            "-0",
            "1.5e+3",
            "1E5",
            "-12.25e-7",
            "1e400",
            "[]",
            "{}",
            " [ 1 , {\"a\" : [ ] } ] ",
            "\"\\u00e9\\n\"",
            "true",
            "null",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "--1",
            "+1",
            "[1 2]",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "{1:2}",
            "[}",
            "{]",
            "\"a\u{1}b\"",
            "\"a\tb\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "tru",
            "nul",
            "[true false]",
            "{\"a\":1 \"b\":2}",
            "[[[]]",
            "[]]",
            "\"",
            "",
        ] {
            checked_agrees_with_serde_json(text, "table");
        }
        for depth in (120..140).chain([1000, 200_000]) {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            checked_agrees_with_serde_json(&deep, "depth");
            let deep = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            checked_agrees_with_serde_json(&deep, "depth");
        }
        // Random documents, and each with one character deleted, inserted or replaced.
        let mut seed = 5u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let noise = [
            '{', '}', '[', ']', ',', ':', '"', '0', '1', '-', '.', 'e', ' ', '\\', '\u{1}', 'a',
            't', 'n',
        ];
        for round in 0..3000 {
            let mut vseed = round as u64;
            let v = random_value(&mut vseed, 0, round % 2 == 1);
            let text = serde_json::to_string(&v).unwrap();
            checked_agrees_with_serde_json(&text, "random");
            let mut chars: Vec<char> = text.chars().collect();
            let at = next() % chars.len();
            match next() % 3 {
                0 => {
                    chars.remove(at);
                }
                1 => chars.insert(at, noise[next() % noise.len()]),
                _ => chars[at] = noise[next() % noise.len()],
            }
            let mutated: String = chars.into_iter().collect();
            checked_agrees_with_serde_json(&mutated, "mutated");
        }
    }

    /// The portable block compare must agree with SSE2 on every byte value.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn portable_lanes_agree_with_sse2() {
        let mut seed = 11u64;
        for _ in 0..20_000 {
            let mut bytes = [0u8; WIDTH];
            for b in &mut bytes {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Mostly the bytes the scanner looks for, and their neighbours.
                *b = match seed >> 62 {
                    0 => (seed >> 40) as u8,
                    _ => b"\"\\{}[]!#|~\x80\xff\x00"[(seed >> 33) as usize % 13],
                };
            }
            for needle in 0..=255u8 {
                let fast = lanes::sse2::Block::load(&bytes).eq(needle);
                let portable = lanes::swar::Block::load(&bytes).eq(needle);
                let expected = (0..WIDTH)
                    .filter(|&i| bytes[i] == needle)
                    .fold(0u32, |m, i| m | 1 << i);
                assert_eq!((fast, portable), (expected, expected), "{bytes:?} {needle}");
            }
            for limit in 1..=128u8 {
                let fast = lanes::sse2::Block::load(&bytes).below(limit);
                let portable = lanes::swar::Block::load(&bytes).below(limit);
                let expected = (0..WIDTH)
                    .filter(|&i| bytes[i] < limit)
                    .fold(0u32, |m, i| m | 1 << i);
                assert_eq!(
                    (fast, portable),
                    (expected, expected),
                    "{bytes:?} < {limit}"
                );
            }
        }
    }

    #[test]
    fn nesting_depth_cannot_exhaust_the_stack() {
        let abyss = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert_eq!(skip(&abyss).unwrap().len(), 2_000_000);
        let open = "{\"a\":".repeat(1_000_000);
        assert!(matches!(skip(&open), Err(ScanError::Eof { .. })));
    }

    #[test]
    fn long_strings_and_gaps_use_the_wide_search() {
        // Escapes early in long strings send the rest of them to memchr.
        let long = format!(
            r#"{{"a":"{}\"{}\\","b":[{}],"c":1}}"#,
            "x".repeat(2500),
            "y".repeat(2496),
            " ".repeat(300)
        );
        let [a, b, c] = Scanner::new(long.as_bytes())
            .unwrap()
            .fields(["a", "b", "c"])
            .unwrap()
            .unwrap();
        assert_eq!(a.unwrap().len(), 5002);
        assert_eq!(b.unwrap().len(), 302);
        assert_eq!(c, Some("1"));
    }

    #[test]
    fn fields_finds_named_spans_and_skips_the_rest() {
        let text = br#"{"skip":{"x":[1,{"a":"}"}]},"a":"A","b" : {"c":[1,2]},"z":null}"#;
        let mut sc = Scanner::new(text).unwrap();
        let [a, b, missing] = sc.fields(["a", "b", "missing"]).unwrap().unwrap();
        assert_eq!(a, Some(r#""A""#));
        assert_eq!(b, Some(r#"{"c":[1,2]}"#));
        assert_eq!(missing, None);
        assert_eq!(sc.pos, text.len());

        let [c] = Scanner::over(b.unwrap()).fields(["c"]).unwrap().unwrap();
        assert_eq!(c, Some("[1,2]"));
        // Not an object: skipped, reported as such.
        assert_eq!(Scanner::over("[1,2]").fields(["c"]).unwrap(), None);
        assert_eq!(Scanner::over("\"s\"").fields(["c"]).unwrap(), None);
    }

    #[test]
    fn escaped_keys_match_and_duplicates_are_refused() {
        let mut sc = Scanner::new(br#"{"n\u0061me":"x"}"#).unwrap();
        let [name] = sc.fields(["name"]).unwrap().unwrap();
        assert_eq!(name, Some(r#""x""#));
        let mut sc = Scanner::new(br#"{"name":"x","name":"y"}"#).unwrap();
        assert!(matches!(
            sc.fields(["name"]),
            Err(ScanError::Duplicate { .. })
        ));
        let mut sc = Scanner::new(br#"{"name":"x","n\u0061me":"y"}"#).unwrap();
        assert!(matches!(
            sc.fields(["name"]),
            Err(ScanError::Duplicate { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_refused_up_front() {
        assert!(matches!(
            Scanner::new(b"{\"a\":\"\xff\"}"),
            Err(ScanError::Utf8 { at: 6 })
        ));
    }
}
