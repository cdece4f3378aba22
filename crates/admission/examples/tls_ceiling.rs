//! The transport ceiling for `make bench-webhook`: the same TLS stack as `eargate serve`
//! (rustls/ring, axum-server, h2 + http/1.1) answering every POST with a fixed reply after
//! reading the body, without decoding it. Whatever eargate loses against this is the
//! cost of the review itself.
//!
//! `cargo run --release -p eargate-admission --example tls_ceiling -- LISTEN CERT KEY REPLY`
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;
use axum::Router;
use eargate_admission::{load_pair, tls_provider, tls_server_config, CertStore};

/// The same allocator as the `eargate` binary, so the comparison is of the review alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, cert, key, reply] = args.as_slice() else {
        anyhow::bail!("usage: tls_ceiling LISTEN CERT KEY REPLY_FILE");
    };
    let provider = tls_provider();
    let pair = load_pair(cert.as_ref(), key.as_ref(), &provider)?;
    let store = Arc::new(CertStore::new(&pair));
    let config = tls_server_config(store, provider)?;
    let reply = Bytes::from(std::fs::read(reply)?);
    let app = Router::new().fallback(post(move |body: Bytes| {
        let reply = reply.clone();
        async move {
            drop(body);
            ([(header::CONTENT_TYPE, "application/json")], reply)
        }
    }));
    let addr: std::net::SocketAddr = listen.parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            eprintln!("tls_ceiling listening on {addr}");
            axum_server::bind_rustls(
                addr,
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
            )
            .serve(app.into_make_service())
            .await
        })?;
    Ok(())
}
