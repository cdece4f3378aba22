//! The lenient walk: crossing a value the policy does not read, as fast as the bytes go by.
//! Scalars are checked; a container is crossed by counting its own brackets outside
//! strings, 64 bytes per step, so its contents are checked for balance and string syntax
//! only (see the module docs of `scan`).

use super::lanes::{find_any, Step, STEP};
use super::{ScanError, Scanner};

impl Scanner<'_> {
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
}
