//! `-f/--filename` as kubectl reads it: files, directories (recursively), multi-document
//! YAML, `List`s, and `-` for stdin. Each object keeps where it came from, so a verdict or
//! an error names the file, the document and the list item.
//!
//! Parse errors say where (line and column) but never quote the input: a manifest may
//! carry key material.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

/// One object read from the inputs, or the reason a file or document could not be read.
#[derive(Debug)]
pub struct Doc {
    /// `path`, `path#2` (second document), `path#items[3]`, `stdin`.
    pub origin: String,
    /// The object as JSON, or why it could not be read.
    pub value: Result<Value, String>,
    /// Found by walking a directory (not named on the command line): a repository holds
    /// other kinds too, which are skipped rather than refused.
    pub walked: bool,
}

/// File names a directory walk picks up, as kubectl does.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads every source in order. Unreadable files and unparsable documents become error
/// entries (the other objects are still read), so one broken file does not hide the rest.
pub fn load(sources: &[PathBuf]) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut stdin_read = false;
    for source in sources {
        if source.as_os_str() == "-" {
            if stdin_read {
                docs.push(Doc {
                    origin: "stdin".into(),
                    walked: false,
                    value: Err("-f - (stdin) given twice; stdin can be read once".into()),
                });
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => parse("stdin", &text, &mut docs),
                Err(e) => docs.push(Doc {
                    origin: "stdin".into(),
                    walked: false,
                    value: Err(format!("cannot read stdin: {e}")),
                }),
            }
        } else if source.is_dir() {
            let mut files = Vec::new();
            if let Err(e) = walk(source, &mut files) {
                docs.push(Doc {
                    origin: source.display().to_string(),
                    walked: false,
                    value: Err(e),
                });
            }
            if files.is_empty() {
                docs.push(Doc {
                    origin: source.display().to_string(),
                    walked: false,
                    value: Err(
                        "the directory has no manifests (*.yaml, *.yml, *.json) in it or below"
                            .to_owned(),
                    ),
                });
            }
            for file in files {
                let first = docs.len();
                read_file(&file, &mut docs);
                for doc in &mut docs[first..] {
                    doc.walked = true;
                }
            }
        } else {
            read_file(source, &mut docs);
        }
    }
    docs
}

/// Collects manifest files under `dir`, sorted, so the verdicts come in a stable order.
fn walk(dir: &Path, into: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, into)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            into.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path, docs: &mut Vec<Doc>) {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&origin, &text, docs),
        Err(e) => docs.push(Doc {
            origin: origin.clone(),
            walked: false,
            value: Err(format!("cannot read the file: {}", io_reason(&e))),
        }),
    }
}

/// An io error without the "(os error 2)" noise for the common cases.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Parses one text: a JSON document, or YAML documents separated by `---`.
pub fn parse(origin: &str, text: &str, docs: &mut Vec<Doc>) {
    if text.trim_start().starts_with('{') {
        let value = serde_json::from_str::<Value>(text).map_err(|e| {
            format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                scrub(&e.to_string())
            )
        });
        push(origin.to_owned(), value, docs);
        return;
    }
    let mut values = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => values.push(Ok(value)),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or_default();
                values.push(Err(format!("invalid YAML{at}: {}", scrub(&e.to_string()))));
                // The parser cannot resynchronise after a syntax error.
                break;
            }
        }
    }
    let several = values.len() > 1;
    for (i, value) in values.into_iter().enumerate() {
        let at = if several {
            format!("{origin}#{}", i + 1)
        } else {
            origin.to_owned()
        };
        push(at, value, docs);
    }
}

/// Adds a document, expanding a `List` (what `kubectl get … -o yaml` prints) into its items.
fn push(origin: String, value: Result<Value, String>, docs: &mut Vec<Doc>) {
    match value {
        Ok(Value::Object(map)) if is_list(&map) => {
            let items = map.get("items").and_then(Value::as_array);
            match items {
                Some(items) if !items.is_empty() => {
                    for (i, item) in items.iter().enumerate() {
                        docs.push(Doc {
                            origin: format!("{origin}#items[{i}]"),
                            walked: false,
                            value: Ok(item.clone()),
                        });
                    }
                }
                _ => docs.push(Doc {
                    origin,
                    walked: false,
                    value: Err("the List has no items".into()),
                }),
            }
        }
        Ok(Value::Object(map)) => docs.push(Doc {
            origin,
            walked: false,
            value: Ok(Value::Object(map)),
        }),
        Ok(other) => docs.push(Doc {
            origin,
            walked: false,
            value: Err(format!(
                "expected a Cluster or an AdmissionReview object, found {}",
                kind_of(&other)
            )),
        }),
        Err(e) => docs.push(Doc {
            origin,
            walked: false,
            value: Err(e),
        }),
    }
}

fn is_list(map: &serde_json::Map<String, Value>) -> bool {
    map.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && map.contains_key("items")))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A parser message without its position (ours is added) and with quoted fragments
/// removed (they may be key material).
pub fn scrub(message: &str) -> String {
    eargate_policy::scrub_quoted(message.split(" at line ").next().unwrap_or(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(text: &str) -> Vec<(String, bool)> {
        let mut docs = Vec::new();
        parse("f.yaml", text, &mut docs);
        docs.into_iter()
            .map(|d| (d.origin, d.value.is_ok()))
            .collect()
    }

    #[test]
    fn documents_and_list_items_are_named() {
        assert_eq!(origins("kind: Cluster\n"), vec![("f.yaml".into(), true)]);
        assert_eq!(
            origins("kind: A\n---\n---\nkind: List\nitems: [{kind: B}, {kind: C}]\n"),
            vec![
                ("f.yaml#1".into(), true),
                ("f.yaml#2#items[0]".into(), true),
                ("f.yaml#2#items[1]".into(), true)
            ]
        );
        assert_eq!(origins("- a\n"), vec![("f.yaml".into(), false)]);
        assert_eq!(
            origins("kind: List\nitems: []\n"),
            vec![("f.yaml".into(), false)]
        );
    }

    #[test]
    fn parse_errors_never_quote_the_input() {
        let mut docs = Vec::new();
        parse(
            "f.yaml",
            "kind: Cluster\nspec: {value: \"SECRETSECRET\"\n",
            &mut docs,
        );
        let err = docs[0].value.as_ref().unwrap_err();
        assert!(err.starts_with("invalid YAML at line"), "{err}");
        assert!(!err.contains("SECRETSECRET"), "{err}");
        assert_eq!(
            scrub("invalid type: string \"abc\", expected"),
            "invalid type: string \"…\", expected"
        );
    }
}
