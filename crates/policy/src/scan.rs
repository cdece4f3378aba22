//! A JSON field locator for the admission hot path.
//!
//! An AdmissionReview carries two whole Cluster objects, and the policy reads a handful of
//! fields of each. Building them (or walking them token by token through serde, as
//! `IgnoredAny` does) costs far more than deciding. This scanner walks only the objects on
//! the way to the wanted fields and hands each wanted value to serde_json, which decodes
//! and checks it fully. Everything else is skipped: a string by searching for its closing
//! quote, a container by counting its own brackets outside strings, eight bytes at a time
//! in a word or with memchr (SIMD) for long runs.
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

/// Strings are searched a word at a time for this many bytes before memchr takes over.
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
    /// No `\\` anywhere: no string has an escape, so containers can be crossed a word at
    /// a time (a quote always toggles in-string).
    plain: bool,
}

/// The index of the first byte of `s` equal to one of `needles` (two or three of them).
/// Most strings and gaps in an object are short: eight bytes at a time in a word (SWAR)
/// beats the setup of a SIMD search there; long runs (certificates, JSON in annotations)
/// go to memchr.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `v` that equals `b`, exactly (no false positives).
#[inline]
fn bytes_equal(v: u64, b: u8) -> u64 {
    let x = v ^ (ONES * u64::from(b));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// How many bytes [`bytes_equal`] marked: a multiply sums the marks into the top byte
/// (the baseline x86-64 target has no popcnt instruction).
#[inline]
fn marked_bytes(m: u64) -> usize {
    ((m >> 7).wrapping_mul(ONES) >> 56) as usize
}

#[inline]
fn find_any<const K: usize>(s: &[u8], needles: [u8; K]) -> Option<usize> {
    let head = s.len().min(SHORT);
    let mut at = 0;
    while at + 8 <= head {
        let word: [u8; 8] = s[at..at + 8].try_into().expect("eight bytes");
        let v = u64::from_le_bytes(word);
        let mut m = 0;
        for b in needles {
            // High bit set in each byte equal to `b` (and possibly in bytes after the
            // first match, which trailing_zeros never reaches).
            let x = v ^ (ONES * u64::from(b));
            m |= x.wrapping_sub(ONES) & !x & HIGH;
        }
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    while at < head {
        if needles.contains(&s[at]) {
            return Some(at);
        }
        at += 1;
    }
    let tail = &s[head..];
    match *needles.as_slice() {
        [a, b] => memchr::memchr2(a, b, tail),
        [a, b, c] => memchr::memchr3(a, b, c, tail),
        _ => unreachable!("find_any takes two or three needles"),
    }
    .map(|i| i + head)
}

impl<'a> Scanner<'a> {
    /// A scanner over `text`, which must be UTF-8 (checked here, once for the whole body).
    pub fn new(text: &'a [u8]) -> Result<Self, ScanError> {
        let text = std::str::from_utf8(text).map_err(|e| ScanError::Utf8 {
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
            plain: memchr::memchr(b'\\', text.as_bytes()).is_none(),
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
    fn string_rest(&mut self) -> Result<bool, ScanError> {
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
        if self.plain {
            // Eight bytes per step: in each, mark quotes and brackets (the high bit of each
            // matching byte), turn the quotes into an in-string mask by a prefix XOR, and
            // count the brackets outside strings.
            let mut in_string = 0u64;
            while let Some(word) = self.bytes.get(self.pos..self.pos + 8) {
                let v = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                let mut strings = bytes_equal(v, b'"');
                strings ^= strings << 8;
                strings ^= strings << 16;
                strings ^= strings << 32;
                strings ^= in_string;
                let opens = bytes_equal(v, open) & !strings;
                let closes = bytes_equal(v, close) & !strings;
                let (n_open, n_close) = (marked_bytes(opens), marked_bytes(closes));
                if n_close < depth {
                    depth = depth + n_open - n_close;
                } else {
                    // The container may end in this word: take the brackets in order.
                    let mut events = opens | closes;
                    while events != 0 {
                        let bit = events & events.wrapping_neg();
                        if opens & bit != 0 {
                            depth += 1;
                        } else {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += bit.trailing_zeros() as usize / 8 + 1;
                                return Ok(());
                            }
                        }
                        events ^= bit;
                    }
                }
                in_string = if strings & (1 << 63) != 0 { HIGH } else { 0 };
                self.pos += 8;
            }
            if in_string != 0 {
                self.string_rest()?;
            }
        }
        loop {
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
    fn nesting_depth_cannot_exhaust_the_stack() {
        let abyss = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert_eq!(skip(&abyss).unwrap().len(), 2_000_000);
        let open = "{\"a\":".repeat(1_000_000);
        assert!(matches!(skip(&open), Err(ScanError::Eof { .. })));
    }

    #[test]
    fn long_strings_and_gaps_use_the_wide_search() {
        let long = format!(
            r#"{{"a":"{}","b":[{}],"c":1}}"#,
            "x".repeat(5000),
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
