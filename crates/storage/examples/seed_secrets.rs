//! Fills etcd with N Secrets of about SIZE bytes, sealed like kube-apiserver seals them, for
//! `scripts/bench-verify.sh`. Also writes the matching EncryptionConfiguration.
//!
//! `cargo run --release -p eargate-storage --example seed_secrets -- ENDPOINT N SIZE CONFIG_OUT`
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use base64::Engine as _;
use eargate_storage::etcd_client::{Client, Txn, TxnOp};
use eargate_storage::SecretboxKey;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5,
        "usage: seed_secrets ENDPOINT COUNT SIZE CONFIG_OUT"
    );
    let (endpoint, count, size, config_out) = (
        &args[1],
        args[2].parse::<usize>()?,
        args[3].parse::<usize>()?,
        &args[4],
    );
    let material = [42u8; 32];
    let key = SecretboxKey::new("bench", &material);
    let secret = base64::engine::general_purpose::STANDARD.encode(material);
    std::fs::write(
        config_out,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: bench\n        secret: {secret}\n  - identity: {{}}\n"
        ),
    )?;
    let mut client = Client::connect([endpoint], None).await?;
    // A protobuf-looking Secret of about `size` bytes once sealed.
    let overhead = "k8s:enc:secretbox:v1:bench:".len() + 24 + 16;
    let mut tasks = Vec::new();
    let per_txn = 100; // etcd's default --max-txn-ops is 128
    let chunks: Vec<Vec<usize>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(per_txn)
        .map(|c| c.to_vec())
        .collect();
    let mut chunk_iter = chunks.into_iter();
    loop {
        while tasks.len() < 8 {
            let Some(chunk) = chunk_iter.next() else {
                break;
            };
            let mut c = client.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|i| {
                        let mut obj = b"k8s\0\n\x0c\n\x02v1\x12\x06Secret".to_vec();
                        obj.resize(size.saturating_sub(overhead).max(obj.len()), b'x');
                        TxnOp::put(
                            format!("/registry/secrets/ns-{}/secret-{i:06}", i % 50),
                            key.seal(&obj),
                            None,
                        )
                    })
                    .collect();
                c.txn(Txn::new().and_then(ops)).await
            }));
        }
        if tasks.is_empty() {
            break;
        }
        tasks.remove(0).await??;
    }
    let n = client
        .get(
            "/registry/secrets/",
            Some(
                eargate_storage::etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await?
        .count();
    eprintln!("seeded {n} secrets of ~{size} bytes");
    Ok(())
}
