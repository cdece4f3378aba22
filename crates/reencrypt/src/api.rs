//! One request to the API, read whole: the status, `Retry-After` and the body, and the
//! `Status` object an error body carries.

use http_body_util::BodyExt as _;
use kube::core::Status;
use kube::Client;

/// Sends a request and reads the whole response: status, `Retry-After`, body.
pub(crate) async fn send(
    client: &Client,
    request: http::Request<Vec<u8>>,
) -> Result<(u16, Option<String>, Vec<u8>), kube::Error> {
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let code = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await?.to_bytes().into();
    Ok((code, retry_after, body))
}

pub(crate) fn parse_status(body: &[u8]) -> Option<Status> {
    serde_json::from_slice::<Status>(body)
        .ok()
        .filter(|s| s.code != 0 || !s.reason.is_empty())
}
