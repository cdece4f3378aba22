//! The ApiServerVerifier pattern (kube-rs controller-rs): a `kube::Client` over a
//! `tower_test` mock service, and a verifier that takes each request the code under test
//! sends, in order, asserts its method, path and query and body, and replies.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// How long a scenario waits for the next request before failing (never hang a test).
const WAIT: Duration = Duration::from_secs(10);

/// A mock client and the verifier that plays the API server.
pub fn mock_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, "default"),
        ApiServerVerifier { handle },
    )
}

/// The test's side of the mock: takes each request the client sends.
pub struct ApiServerVerifier {
    handle: Handle,
}

/// One request taken from the code under test, waiting for its reply.
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// Path and query, exactly as sent.
    pub uri: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Accept` header: a metadata-only request asks for `as=PartialObjectMetadata…`.
    pub accept: Option<String>,
    /// The body parsed as JSON (`Value::Null` when empty).
    pub body: Value,
    responder: Responder,
}

impl ApiServerVerifier {
    /// Takes the next request; fails the test if none comes in time.
    pub async fn next(&mut self) -> Call {
        let (request, responder) = tokio::time::timeout(WAIT, self.handle.next_request())
            .await
            .expect("timed out waiting for the next API request")
            .expect("the client was dropped before sending the expected request");
        let method = request.method().clone();
        let uri = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let accept = request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        Call {
            method,
            uri,
            content_type,
            accept,
            body,
            responder,
        }
    }

    /// Takes the next request and asserts its method and path (query ignored).
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        let got_path = call.uri.split('?').next().unwrap_or_default().to_owned();
        assert_eq!(
            (&call.method, got_path.as_str()),
            (&method, path),
            "unexpected request {} {} with body {}",
            call.method,
            call.uri,
            call.body
        );
        call
    }

    /// Asserts that no further request arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(wait, self.handle.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

impl Call {
    /// The value of one query parameter, if present.
    pub fn query(&self, key: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.to_owned())
        })
    }

    /// Replies 200 (or `status`) with this JSON body.
    pub fn reply(self, status: StatusCode, body: &Value) {
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response");
        self.responder.send_response(response);
    }

    /// Replies 200 with `body`.
    pub fn ok(self, body: &Value) {
        self.reply(StatusCode::OK, body);
    }

    /// Replies 201 with `body`.
    pub fn created(self, body: &Value) {
        self.reply(StatusCode::CREATED, body);
    }

    /// Replies with the body the request carried (what a real server returns after a create/patch).
    pub fn echo(self) {
        let body = self.body.clone();
        self.ok(&body);
    }

    /// Replies with a `metav1.Status` error.
    pub fn status_error(self, code: u16, reason: &str, message: &str) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code
        });
        self.reply(StatusCode::from_u16(code).expect("status code"), &status);
    }

    /// Replies 404 `NotFound` for `what`.
    pub fn not_found(self, what: &str) {
        self.status_error(404, "NotFound", &format!("{what} not found"));
    }
}
