//! The scanner held to serde_json: what it accepts, refuses and finds.

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
        '{', '}', '[', ']', ',', ':', '"', '0', '1', '-', '.', 'e', ' ', '\\', '\u{1}', 'a', 't',
        'n',
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
