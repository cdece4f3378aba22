//! Log lines in both formats: one line per event whatever a field holds, so that a value
//! taken from a request or the cluster cannot forge a line.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::{Arc, Mutex};

use eargate_runtime::{subscriber, LogFormat};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const FORGERY: &str = "u-1\nFORGED verdict=allowed\r\u{7}\u{85}é";

fn log_one(format: LogFormat) -> String {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = subscriber(format, EnvFilter::new("info"), move || sink.clone());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(uid = %FORGERY, name = "c1", verdict = "denied", latency_us = 7u64, "review");
        tracing::debug!("below the filter");
    });
    let bytes = capture.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn text_lines_escape_control_characters_in_values() {
    let text = log_one(LogFormat::Text);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(r#"review uid=u-1\nFORGED verdict=allowed\r\u{7}\u{85}é name="c1" verdict="denied" latency_us=7"#),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no ANSI colours: {text}");
}

#[test]
fn json_lines_are_one_object_with_the_fields_at_the_top() {
    let text = log_one(LogFormat::Json);
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["message"], "review", "{line}");
    assert_eq!(line["uid"], FORGERY, "{line}");
    assert_eq!(line["latency_us"], 7, "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
}
