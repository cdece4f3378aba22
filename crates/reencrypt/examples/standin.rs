//! Benchmark server: the tests' Kubernetes API stand-in with `--objects` Secrets and
//! `--latency-ms` added to every request. Writes a kubeconfig for it, prints `ready <addr>`
//! and serves until killed. Used by `scripts/bench-reencrypt.sh`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

#[path = "../tests/support/standin.rs"]
mod standin;

use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: reencrypt-standin --kubeconfig FILE [--objects 20000] [--latency-ms 1] [--namespaces 20]");
    std::process::exit(2)
}

fn main() {
    let mut objects = 20_000u32;
    let mut latency_ms = 1u64;
    let mut namespaces = 20u32;
    let mut kubeconfig = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--objects" => objects = value.parse().unwrap_or_else(|_| usage()),
            "--latency-ms" => latency_ms = value.parse().unwrap_or_else(|_| usage()),
            "--namespaces" => namespaces = value.parse().unwrap_or_else(|_| usage()),
            "--kubeconfig" => kubeconfig = Some(std::path::PathBuf::from(value)),
            _ => usage(),
        }
    }
    let Some(kubeconfig) = kubeconfig else {
        usage()
    };
    let namespaces = namespaces.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let mut world = standin::World::standard();
        world.track_attempts = false;
        world.faults.latency = Duration::from_millis(latency_ms);
        for i in 0..objects {
            world.add(
                "secrets",
                Some(&format!("bench-{:03}", i % namespaces)),
                &format!("secret-{i:07}"),
            );
        }
        let server = standin::StandIn::start(world).await;
        server.write_kubeconfig(&kubeconfig);
        println!("ready {}", server.addr);
        let _ = tokio::signal::ctrl_c().await;
        let w = server.world.lock().expect("world");
        let written = w.writes.values().filter(|&&n| n == 1).count();
        let twice = w.writes.values().filter(|&&n| n > 1).count();
        eprintln!(
            "stand-in: {} PUTs, {written} objects written once, {twice} more than once",
            w.puts
        );
    });
}
