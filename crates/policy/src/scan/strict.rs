//! The strict walk: a value kept as text (and compared later) is checked against the
//! whole JSON grammar first, as serde_json would check it, in constant stack.

use super::{ScanError, Scanner};

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

impl<'a> Scanner<'a> {
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
}
