//! kube-apiserver's `secretbox` storage format, byte for byte:
//!
//! ```text
//! k8s:enc:secretbox:v1:<key name>:<24-byte nonce><16-byte Poly1305 tag><XSalsa20 ciphertext>
//! ```
//!
//! The part after the prefix is NaCl's `secretbox` (the tag comes first), which is what
//! upstream's `storage/value/encrypt/secretbox` writes with Go's `x/crypto/nacl/secretbox`,
//! and what libsodium's `crypto_secretbox_easy` produces. Key material never appears in an
//! error or a `Debug` line.

use crypto_secretbox::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use crypto_secretbox::{Key, Nonce, Tag, XSalsa20Poly1305};

use eargate_policy::names::{SECRETBOX_KEY_LEN, SECRETBOX_STORAGE_PREFIX};

/// Nonce length of XSalsa20.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Why a sealed value could not be opened. Says nothing about the key or the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than nonce + tag: corrupt or truncated.
    #[error("the sealed value is shorter than nonce and tag")]
    TooShort,
    /// The Poly1305 tag did not verify: wrong key material or corrupt ciphertext.
    #[error("authentication failed (wrong key material or corrupt value)")]
    Authentication,
}

/// Bad key material in the configuration. Names the key, never shows the material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is not standard, padded base64.
    #[error("key {name:?}: the secret is not valid base64 (standard alphabet, padded)")]
    Base64 {
        /// The key's name.
        name: String,
    },
    /// The secret does not decode to 32 bytes.
    #[error("key {name:?}: the secret decodes to {len} bytes, secretbox needs exactly {SECRETBOX_KEY_LEN}")]
    Length {
        /// The key's name.
        name: String,
        /// How many bytes it decodes to.
        len: usize,
    },
}

/// A named 32-byte secretbox key. `Debug` shows only the name.
#[derive(Clone)]
pub struct SecretboxKey {
    name: String,
    cipher: XSalsa20Poly1305,
    /// `k8s:enc:secretbox:v1:<name>:` as bytes, precomputed for fast prefix matching.
    prefix: Vec<u8>,
}

impl std::fmt::Debug for SecretboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretboxKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretboxKey {
    /// A key from raw bytes.
    pub fn new(name: impl Into<String>, material: &[u8; SECRETBOX_KEY_LEN]) -> Self {
        let name = name.into();
        let prefix = storage_prefix(&name).into_bytes();
        Self {
            cipher: XSalsa20Poly1305::new(Key::from_slice(material)),
            name,
            prefix,
        }
    }

    /// A key from the base64 `secret` of an EncryptionConfiguration entry (Go's
    /// `base64.StdEncoding`: standard alphabet with padding), which must decode to 32 bytes.
    pub fn from_base64(name: &str, secret: &str) -> Result<Self, KeyError> {
        use eargate_policy::{decode_key, KeyError as DecodeError};
        let material = decode_key(secret).map_err(|e| match e {
            DecodeError::NotBase64 { .. } => KeyError::Base64 {
                name: name.to_owned(),
            },
            DecodeError::WrongLength { decoded } => KeyError::Length {
                name: name.to_owned(),
                len: decoded,
            },
        })?;
        Ok(Self::new(name, &material))
    }

    /// The key's name as written in the configuration and in the storage prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `k8s:enc:secretbox:v1:<name>:` as bytes.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Seals `plaintext` the way kube-apiserver does: prefix, fresh random nonce, box.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
        self.seal_with_nonce(
            plaintext,
            nonce.as_slice().try_into().expect("24-byte nonce"),
        )
    }

    /// Seals with a caller-chosen nonce. Only for test vectors: reusing a nonce with the
    /// same key breaks secretbox.
    pub fn seal_with_nonce(&self, plaintext: &[u8], nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + NONCE_LEN + TAG_LEN + plaintext.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(nonce);
        let tag_at = out.len();
        out.extend_from_slice(&[0u8; TAG_LEN]);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), b"", &mut out[tag_at + TAG_LEN..])
            .expect("secretbox encrypts any length without associated data");
        out[tag_at..tag_at + TAG_LEN].copy_from_slice(tag.as_slice());
        out
    }

    /// Opens the part after the prefix (nonce, tag, ciphertext) into `out`, which is
    /// cleared first and reused, so a scan does not allocate per value.
    pub fn open_box_into(&self, sealed: &[u8], out: &mut Vec<u8>) -> Result<(), OpenError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::TooShort);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        out.clear();
        out.extend_from_slice(ciphertext);
        let result = self.cipher.decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            b"",
            out,
            Tag::from_slice(tag),
        );
        if result.is_err() {
            out.clear();
            return Err(OpenError::Authentication);
        }
        Ok(())
    }

    /// Opens a whole stored value (`k8s:enc:secretbox:v1:<name>:` + box) sealed with this key.
    pub fn open(&self, value: &[u8]) -> Result<Vec<u8>, OpenError> {
        let sealed = value
            .strip_prefix(self.prefix.as_slice())
            .ok_or(OpenError::TooShort)?;
        let mut out = Vec::new();
        self.open_box_into(sealed, &mut out)?;
        Ok(out)
    }
}

/// `k8s:enc:secretbox:v1:<key name>:`.
pub fn storage_prefix(key_name: &str) -> String {
    format!("{SECRETBOX_STORAGE_PREFIX}{key_name}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, byte: u8) -> SecretboxKey {
        SecretboxKey::new(name, &[byte; 32])
    }

    #[test]
    fn seal_then_open_round_trips_with_the_kube_apiserver_layout() {
        let k = key("key1", 7);
        let sealed = k.seal(b"k8s\0payload");
        assert!(sealed.starts_with(b"k8s:enc:secretbox:v1:key1:"));
        assert_eq!(
            sealed.len(),
            "k8s:enc:secretbox:v1:key1:".len() + 24 + 16 + 11
        );
        assert_eq!(k.open(&sealed).unwrap(), b"k8s\0payload");
    }

    #[test]
    fn two_seals_use_different_nonces() {
        let k = key("key1", 7);
        assert_ne!(k.seal(b"same"), k.seal(b"same"));
    }

    #[test]
    fn wrong_key_and_tampering_fail_authentication() {
        let sealed = key("key1", 7).seal(b"{\"kind\":\"Secret\"}");
        assert_eq!(key("key1", 8).open(&sealed), Err(OpenError::Authentication));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            key("key1", 7).open(&flipped),
            Err(OpenError::Authentication)
        );
        let short = &sealed[..sealed.len() - 20];
        let body = &short["k8s:enc:secretbox:v1:key1:".len()..];
        assert!(body.len() < NONCE_LEN + TAG_LEN);
        assert_eq!(key("key1", 7).open(short), Err(OpenError::TooShort));
    }

    #[test]
    fn empty_plaintext_seals_to_a_bare_tag() {
        let k = key("k", 1);
        let sealed = k.seal_with_nonce(b"", &[9u8; NONCE_LEN]);
        assert_eq!(
            sealed.len(),
            "k8s:enc:secretbox:v1:k:".len() + NONCE_LEN + TAG_LEN
        );
        assert_eq!(k.open(&sealed).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn base64_keys_are_checked_and_errors_never_show_material() {
        let good = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 ASCII bytes
        assert_eq!(SecretboxKey::from_base64("a", good).unwrap().name(), "a");
        let short = "c2hvcnQ="; // "short"
        let err = SecretboxKey::from_base64("b", short).unwrap_err();
        assert_eq!(
            err,
            KeyError::Length {
                name: "b".into(),
                len: 5
            }
        );
        assert!(!err.to_string().contains(short) && !err.to_string().contains("short\""));
        let err = SecretboxKey::from_base64("c", "not base64 at all!").unwrap_err();
        assert!(!err.to_string().contains("not base64 at all"));
        let debug = format!("{:?}", SecretboxKey::from_base64("a", good).unwrap());
        assert!(
            !debug.contains(good) && !debug.contains("0123456789"),
            "{debug}"
        );
    }
}
