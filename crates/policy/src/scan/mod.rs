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
//!
//! Here: the cursor, strings, and the walk of the objects on the way to a field. `lanes`:
//! the block compares (SSE2 or portable). `lenient`: skipping a value not read. `strict`:
//! checking a value kept as text against the whole grammar.

use std::borrow::Cow;

use lanes::{find_any, Block, WIDTH};

mod lanes;
mod lenient;
mod strict;
#[cfg(test)]
mod tests;

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
