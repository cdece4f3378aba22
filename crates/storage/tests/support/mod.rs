//! The test kit's real etcd (the pinned 3.6 build) as eargate's storage client sees it: an
//! `EtcdTarget` and a connected client.

use std::time::{Duration, Instant};

pub use eargate_testkit::etcd::Etcd;

/// eargate's view of a test etcd.
pub(crate) trait EtcdExt {
    /// A target for eargate's client.
    fn target(&self) -> eargate_storage::etcd::EtcdTarget;
    /// A connected client (retrying while the member elects itself).
    async fn client(&self) -> eargate_storage::etcd_client::Client;
}

impl EtcdExt for Etcd {
    fn target(&self) -> eargate_storage::etcd::EtcdTarget {
        eargate_storage::etcd::EtcdTarget {
            endpoints: vec![self.endpoint.clone()],
            ca_file: self.tls.as_ref().map(|t| t.ca.clone()),
            cert_file: self.tls.as_ref().map(|t| t.client_cert.clone()),
            key_file: self.tls.as_ref().map(|t| t.client_key.clone()),
            timeout: Some(Duration::from_secs(10)),
        }
    }

    async fn client(&self) -> eargate_storage::etcd_client::Client {
        let target = self.target();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match eargate_storage::etcd::connect(&target).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot connect to the test etcd: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
