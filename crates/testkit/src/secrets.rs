//! Key material and the one check that it never shows: not in logs, errors, Events,
//! warnings, status, metrics or Job specs, not even a piece of it.

use std::collections::HashMap;
use std::fmt::Display;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The standard base64 alphabet with padding: what secretbox keys, Secret `data` and
/// kube-apiserver's `EncryptionConfiguration` use.
pub const B64: base64::engine::GeneralPurpose = STANDARD;

/// Standard base64 of `bytes`.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

/// The bytes of standard base64 `text`; panics when it is not base64 (a broken fixture).
pub fn unb64(text: impl AsRef<[u8]>) -> Vec<u8> {
    B64.decode(text).expect("standard base64")
}

/// A deterministic, random-looking 32-byte key in base64, different for each `seed`: random
/// enough that finding a piece of it in a text means it leaked.
pub fn test_key(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = [0u8; 32];
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    b64(bytes)
}

/// The base64 body of a PEM block (a TLS private key as it could leak into a log).
pub fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// A piece shorter than this could be ordinary text; longer pieces of 32 random bytes in
/// base64 do not appear by chance.
pub const WINDOW: usize = 8;

/// The forms a key takes on its way through the system, in the words of the failure message.
const FORMS: [&str; 2] = ["as written", "base64-encoded as in a Secret's data"];

/// Fails when any [`WINDOW`]-character piece of any key appears in any of `texts`.
///
/// Each key is given as the text that carries it (its base64, as in `spec` or the rendered
/// config; or any other secret text, such as a PEM body). It is looked for as written and
/// as the base64 of that text, which is how a Secret's `data` holds it. Each text comes with
/// a name for the message, which says where and which key, never the key itself.
pub fn assert_no_key_material<K, W, T>(keys: &[K], texts: impl IntoIterator<Item = (W, T)>)
where
    K: AsRef<str>,
    W: Display,
    T: AsRef<str>,
{
    let pieces = pieces(keys);
    for (what, text) in texts {
        if let Some((at, (key, form))) = find(&pieces, text.as_ref().as_bytes()) {
            panic!(
                "key material in {what}: a piece of key {key} ({}) at byte {at}",
                FORMS[*form]
            );
        }
    }
}

/// Every window of every form of every key, with the key's index and the form's.
fn pieces<K: AsRef<str>>(keys: &[K]) -> HashMap<[u8; WINDOW], (usize, usize)> {
    let mut pieces = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let key = key.as_ref();
        assert!(
            key.len() >= WINDOW,
            "key {i} is shorter than {WINDOW} characters: too short to tell from ordinary text"
        );
        for (form, text) in [key.to_owned(), b64(key)].iter().enumerate() {
            for w in text.as_bytes().windows(WINDOW) {
                let w: [u8; WINDOW] = w.try_into().expect("a window");
                pieces.entry(w).or_insert((i, form));
            }
        }
    }
    pieces
}

/// The first window of `text` that is a piece of a key: its offset and whose it is.
fn find<'a>(
    pieces: &'a HashMap<[u8; WINDOW], (usize, usize)>,
    text: &[u8],
) -> Option<(usize, &'a (usize, usize))> {
    text.windows(WINDOW).enumerate().find_map(|(at, w)| {
        let w: [u8; WINDOW] = w.try_into().expect("a window");
        pieces.get(&w).map(|hit| (at, hit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3q2+7wF9aZr8Xk1cQ4mV0pLsT6uYbN2eH5gJ8dK1fWo=";

    fn message(texts: Vec<(&str, String)>) -> Option<String> {
        std::panic::catch_unwind(|| assert_no_key_material(&[KEY], texts))
            .err()
            .map(|e| *e.downcast::<String>().expect("a message"))
    }

    #[test]
    fn clean_texts_pass() {
        assert_eq!(
            message(vec![(
                "a log",
                "nothing to see: 3q2+7wF, 9aZr8Xk".to_owned()
            )]),
            None
        );
    }

    #[test]
    fn a_piece_of_the_key_is_found_and_named_by_place_not_content() {
        let text = format!("error: bad key {}…", &KEY[20..28]);
        let msg = message(vec![("the event", "fine".into()), ("the log", text)]).unwrap();
        assert_eq!(
            msg,
            "key material in the log: a piece of key 0 (as written) at byte 15"
        );
        assert!(!msg.contains(&KEY[20..28]));
    }

    #[test]
    fn the_form_a_secret_data_carries_is_found_too() {
        let data = b64(KEY);
        let text = format!("{{\"data\":{{\"key\":\"{}\"}}}}", &data[30..40]);
        let msg = message(vec![("a Secret", text)]).unwrap();
        assert!(
            msg.contains("base64-encoded as in a Secret's data"),
            "{msg}"
        );
        // Not a piece of the key as written: only the encoded form finds it.
        assert!(!KEY.contains(&data[30..38]));
    }

    #[test]
    #[should_panic(expected = "too short")]
    fn a_key_too_short_to_look_for_is_refused() {
        assert_no_key_material(&["abc"], [("x", "y")]);
    }

    #[test]
    fn base64_round_trips_and_pem_bodies_drop_the_armour() {
        assert_eq!(unb64(b64([1u8, 2, 3])), vec![1, 2, 3]);
        assert_eq!(
            pem_body("-----BEGIN X-----\nAAAA\nBBBB\n-----END X-----\n"),
            "AAAABBBB"
        );
    }
}
