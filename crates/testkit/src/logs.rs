//! Log capture for tests that assert on log lines (what was said, and that no key material
//! was).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// Every byte the subscriber wrote, shared between the subscriber and the test.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// A poisoned lock only means another test thread panicked while logging; the bytes
    /// are still the log.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every event of this thread, at TRACE, as plain text lines, until the guard is
/// dropped. For code under test that runs on the test's own thread (`#[tokio::test]`'s
/// current-thread runtime).
pub fn capture() -> (LogBuffer, DefaultGuard) {
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// Captures every event of the whole process at INFO as JSON lines with flattened fields
/// (like `eargate serve --log-format json`). Installed once; every call returns the same
/// buffer. For servers whose tasks run on other threads.
pub fn capture_global_json() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test process");
        buffer
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_sees_this_threads_events_until_the_guard_drops() {
        let (logs, guard) = capture();
        tracing::trace!(uid = "u-1", "first");
        std::thread::spawn(|| tracing::info!("another thread"))
            .join()
            .unwrap();
        drop(guard);
        tracing::info!("after");
        let text = logs.text();
        assert!(
            text.contains("TRACE") && text.contains("first uid=\"u-1\""),
            "{text}"
        );
        assert!(!text.contains("another thread"), "{text}");
        assert!(!text.contains("after"), "{text}");
    }

    #[test]
    fn global_json_sees_every_thread_as_json_lines() {
        let logs = capture_global_json();
        assert!(Arc::ptr_eq(&logs.0, &capture_global_json().0));
        std::thread::spawn(|| tracing::info!(name = "c1", "reviewed"))
            .join()
            .unwrap();
        tracing::debug!("below INFO");
        let line = logs
            .text()
            .lines()
            .find(|l| l.contains("reviewed"))
            .map(str::to_owned)
            .expect("the line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["message"].as_str(), v["name"].as_str()),
            (Some("reviewed"), Some("c1"))
        );
        assert!(!logs.text().contains("below INFO"));
    }
}
