//! Secretbox key material, decoded exactly as kube-apiserver decodes it.
//!
//! kube-apiserver reads `secret` with Go's `base64.StdEncoding.DecodeString`: the standard
//! alphabet, `=` padding required, `\r` and `\n` skipped anywhere, every other byte an error,
//! and (unlike a strict decoder) non-zero trailing bits accepted. Errors never carry any part
//! of the input.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use crate::names::SECRETBOX_KEY_LEN;

/// Go's `base64.StdEncoding` (not `Strict()`): padding required, trailing bits allowed.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Why a key value was refused. Says how much, never what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not standard base64 with padding.
    #[error("the value is not standard base64 with '=' padding (invalid at character {position} of {length}); only A-Z, a-z, 0-9, '+', '/', '=' padding and line breaks are allowed")]
    NotBase64 {
        /// Where the value was refused, counted from 0.
        position: usize,
        /// The length of the whole value, in characters.
        length: usize,
    },
    /// Decoded fine, to the wrong number of bytes.
    #[error("the value decodes to {decoded} bytes, secretbox needs exactly {SECRETBOX_KEY_LEN}")]
    WrongLength {
        /// How many bytes the value decodes to.
        decoded: usize,
    },
}

/// Decodes a secretbox key value as kube-apiserver does and checks it is 32 bytes.
pub fn decode_key(value: &str) -> Result<[u8; 32], KeyError> {
    let bytes = decode_go_std(value)?;
    <[u8; SECRETBOX_KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength {
        decoded: bytes.len(),
    })
}

/// Go `base64.StdEncoding.DecodeString` semantics, any length.
pub fn decode_go_std(value: &str) -> Result<Vec<u8>, KeyError> {
    let length = value.chars().count();
    // Position of the first byte Go would refuse (counted in characters of the input).
    let first_bad = value
        .chars()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\r' | '\n')));
    if let Some(position) = first_bad {
        return Err(KeyError::NotBase64 { position, length });
    }
    let cleaned: Vec<u8> = value
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    GO_STD.decode(&cleaned).map_err(|err| {
        let position = match err {
            base64::DecodeError::InvalidByte(p, _)
            | base64::DecodeError::InvalidLastSymbol(p, _) => p,
            base64::DecodeError::InvalidLength(p) => p,
            base64::DecodeError::InvalidPadding => cleaned.len(),
        };
        KeyError::NotBase64 { position, length }
    })
}

/// A parser's message with every quoted or back-ticked fragment replaced by `…`: serde and
/// YAML errors quote the offending value, which may be key material. The one place that
/// makes such messages safe to print (CLI input, `eargate render`).
pub fn scrub_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut skip: Option<char> = None;
    for c in message.chars() {
        match skip {
            Some(end) if c == end => {
                skip = None;
                out.push('…');
                out.push(c);
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                skip = Some(c);
                out.push(c);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

    #[test]
    fn accepts_32_bytes_with_line_breaks() {
        assert!(decode_key(KEY).is_ok());
        let wrapped = format!("{}\r\n{}\n", &KEY[..20], &KEY[20..]);
        assert_eq!(decode_key(&wrapped), decode_key(KEY));
    }

    #[test]
    fn accepts_non_canonical_trailing_bits_like_go() {
        // 'f' -> 'g' changes only the 2 unused trailing bits' neighbour pattern; Go accepts.
        let mut k = KEY.to_string();
        k.replace_range(42..43, "Z");
        assert_eq!(decode_go_std("QR==").unwrap(), vec![0x41]);
        assert!(decode_key(&k).is_ok());
    }

    #[test]
    fn refuses_missing_padding_wrong_alphabet_and_length() {
        assert!(matches!(
            decode_key(KEY.trim_end_matches('=')),
            Err(KeyError::NotBase64 { .. })
        ));
        assert!(matches!(
            decode_key(&KEY.replace('Q', "-")),
            Err(KeyError::NotBase64 { position: 0, .. })
        ));
        assert!(matches!(
            decode_key(&format!(" {KEY}")),
            Err(KeyError::NotBase64 { .. })
        ));
        assert_eq!(
            decode_key("QUJD"),
            Err(KeyError::WrongLength { decoded: 3 })
        );
        assert_eq!(decode_key(""), Err(KeyError::WrongLength { decoded: 0 }));
        assert!(matches!(
            decode_key("QUJD=QUJD"),
            Err(KeyError::NotBase64 { .. })
        ));
    }

    #[test]
    fn errors_never_echo_input() {
        let bad = "c2VjcmV0LW1hdGVyaWFs!";
        let msg = decode_key(bad).unwrap_err().to_string();
        assert!(!msg.contains("c2Vj"), "{msg}");
    }

    #[test]
    fn quoted_fragments_never_reach_a_message() {
        assert_eq!(
            scrub_quoted("invalid type: string \"c2VjcmV0\", expected a sequence"),
            "invalid type: string \"…\", expected a sequence"
        );
        assert_eq!(
            scrub_quoted("unknown field `s3cr3t`, expected one of `name`"),
            "unknown field `…`, expected one of `…`"
        );
        // An unclosed quote hides the rest rather than printing it.
        assert_eq!(scrub_quoted("bad \"c2VjcmV0"), "bad \"");
    }
}
