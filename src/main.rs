//! The `eargate` binary (also installed as `kubectl-eargate`): parses the command line and
//! runs the subcommand; everything else is in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the admission server allocates small, short-lived
/// buffers for every review, and glibc's malloc/free were a tenth of its CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One rustls crypto provider for the whole process (server, kube client, etcd client).
    // Installing it explicitly keeps rustls from guessing when two are linked in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Started as `kubectl-eargate` (kubectl's plugin name), help shows `kubectl eargate`.
    let cli = eargate::cli::parse_args();
    eargate::cli::main(cli)
}
