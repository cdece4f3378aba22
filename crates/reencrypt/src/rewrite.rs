//! Writing one listed object back unchanged, so kube-apiserver stores it under the
//! current encryption configuration; what is transient is retried.

use kube::api::PostParams;
use kube::core::Request;
use kube::Client;

use crate::api::{parse_status, send};
use crate::list::Item;
use crate::resolve::Target;
use crate::retry::{retry_after, Attempts, RetryPolicy};
use crate::verdict::{classify_put, failure_reason, PutVerdict};

/// What became of one object.
pub(crate) enum Outcome {
    Rewritten,
    Conflicted,
    Gone,
    Failed(String),
}

/// Writes one object back, retrying what the policy says is transient.
pub(crate) async fn rewrite(
    client: &Client,
    target: &Target,
    item: &Item,
    body: &[u8],
    retry: &RetryPolicy,
) -> Outcome {
    let collection = Request::new(target.collection_path(item.namespace.as_deref()));
    let mut attempts = Attempts::new(retry);
    loop {
        attempts.start();
        let request = match collection.replace(&item.name, &PostParams::default(), body.to_vec()) {
            Ok(r) => r,
            Err(err) => return Outcome::Failed(format!("cannot build the request: {err}")),
        };
        let (code, header, response) = match send(client, request).await {
            Ok(r) => r,
            Err(err) => match attempts.wait_or_give_up(None, || err.to_string()).await {
                Ok(()) => continue,
                Err(gave_up) => return Outcome::Failed(gave_up),
            },
        };
        match classify_put(code) {
            PutVerdict::Rewritten => return Outcome::Rewritten,
            PutVerdict::Conflicted => return Outcome::Conflicted,
            PutVerdict::Gone => return Outcome::Gone,
            PutVerdict::Failed => {
                return Outcome::Failed(failure_reason(code, parse_status(&response).as_ref()))
            }
            PutVerdict::Retry => {
                let status = parse_status(&response);
                let after = retry_after(header.as_deref(), status.as_ref());
                if let Err(gave_up) = attempts
                    .wait_or_give_up(after, || failure_reason(code, status.as_ref()))
                    .await
                {
                    return Outcome::Failed(gave_up);
                }
            }
        }
    }
}
