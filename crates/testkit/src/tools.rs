//! The real programs the tests run, and what happens when one is missing.

use std::path::PathBuf;

/// The repository root (this crate lives in `crates/testkit`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(|crates| crates.parent())
        .map(PathBuf::from)
        .unwrap_or(here)
}

/// `true` when a missing tool must fail the test (what `make test` sets).
pub fn tools_required() -> bool {
    std::env::var("EARGATE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Fails (under `EARGATE_REQUIRE_TOOLS=1`) or skips loudly when a tool is missing; returns
/// `false` when the caller must skip.
pub fn require_tool(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if tools_required() {
        panic!(
            "{what} is required (EARGATE_REQUIRE_TOOLS=1); run `bash scripts/install-test-deps.sh` \
             (make test does)"
        );
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} is not installed; this test did not run. \
         Run `bash scripts/install-test-deps.sh` (make test does). !!!!!!!!\n"
    );
    false
}

/// The directory of the control-plane binaries: `$EARGATE_TOOLS_BIN`, else `.tools/bin` in
/// the repository (links that `scripts/build-control-plane.sh` writes).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("EARGATE_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/bin"))
}

/// One of the binaries `scripts/build-control-plane.sh` builds (`etcd`, `etcdctl`,
/// `kube-apiserver`, `kubectl`), if it is there. Never taken from `PATH`: a distribution's
/// older etcd must not stand in for the pinned one.
pub fn binary(name: &str) -> Option<PathBuf> {
    let path = bin_dir().join(name);
    path.is_file().then_some(path)
}

/// [`binary`], or the [`require_tool`] verdict when it is missing.
pub fn require_binary(name: &str) -> Option<PathBuf> {
    let found = binary(name);
    let what = format!(
        "{name} (built from Go modules into {} by scripts/build-control-plane.sh)",
        bin_dir().display()
    );
    if require_tool(&what, found.is_some()) {
        found
    } else {
        None
    }
}

/// `program` as `PATH` finds it, for tools any distribution ships (never the pinned control
/// plane: see [`binary`]).
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The Python of the project venv (`$EARGATE_PYTHON`, else `.venv/bin/python`).
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("EARGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    path.is_file().then_some(path)
}

/// A free loopback port. The port is released before it is used, so callers that start a
/// server on it serialize their starts (see [`crate::process::starting`]) and check that the
/// server they started is the one answering.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
