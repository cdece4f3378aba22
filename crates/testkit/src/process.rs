//! Server processes that never outlive the test process.
//!
//! A control plane shared by a test binary lives in a `static`, and statics are never
//! dropped. So each server runs under a small `sh` guard that holds a pipe from the test
//! process: when the test process ends (normally, by a panic or by a signal), the pipe
//! closes and the guard stops the server. Dropping a [`Server`] stops it at once.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Runs "$@" with stdin from /dev/null, and stops it (TERM, then KILL after 10 s) once its
/// own stdin, the pipe from the test process, reaches end of file. Exits with its status.
const GUARD: &str = r#"exec 3<&0
"$@" </dev/null &
child=$!
{ while read -r _ <&3; do :; done; kill -TERM "$child" 2>/dev/null; sleep 10; kill -KILL "$child" 2>/dev/null; } &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
exit $status
"#;

/// Held while a server picks its ports and starts (see [`crate::tools::free_port`]).
static STARTING: Mutex<()> = Mutex::new(());

/// Serializes server starts within this test process.
pub fn starting() -> MutexGuard<'static, ()> {
    STARTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running server with its log file.
pub struct Server {
    name: String,
    guard: Child,
    pipe: Option<ChildStdin>,
    log: PathBuf,
}

impl Server {
    /// Starts `program args…` under the guard, with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Server {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone a log handle");
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", program.display()));
        let pipe = guard.stdin.take();
        Server {
            name: name.to_owned(),
            guard,
            pipe,
            log: log.to_owned(),
        }
    }

    /// `true` once the server has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.guard.try_wait(), Ok(Some(_)))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The path of the server's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops the server (TERM, then KILL) and waits until it has exited.
    pub fn stop(&mut self) {
        drop(self.pipe.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "testkit: {} did not stop within 15 s; killing its guard",
            self.name
        );
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to its end with `input` on its stdin and its stdout captured; its stderr is
/// captured too when the caller set it to `Stdio::piped()` (else as the caller set it).
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> std::io::Result<Output> {
    use std::io::Write as _;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
}
