//! How the command line prints an error: what failed on the first line, then each cause
//! once, one per line. Library errors often repeat their source in their own text (and
//! then again as the source), and some print `Debug` output (tonic's `Status`, kube's API
//! error); both are cleaned up here, in one place, so every command reads the same.

use std::error::Error as StdError;

use serde_json::json;

use super::Output;

/// The error's lines: the error itself, then each cause that adds something.
///
/// A cause is skipped when the line before already states it (`cannot read f: not found`
/// followed by `not found`); a line that ends with `: <next cause>` is cut there, so the
/// cause appears once, on its own line.
pub fn lines(err: &anyhow::Error) -> Vec<String> {
    let texts: Vec<String> = err
        .chain()
        .map(describe)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        if out.iter().any(|prev| prev.contains(text.as_str())) {
            continue;
        }
        let mut line = text.clone();
        // "X: <the next cause>": the next cause gets its own line.
        if let Some(next) = texts.get(i + 1) {
            if let Some(head) = line.strip_suffix(next.as_str()) {
                if let Some(head) = head.strip_suffix(": ") {
                    if !head.is_empty() {
                        line = head.to_owned();
                    }
                }
            }
        }
        out.push(line);
    }
    if out.is_empty() {
        out.push("unknown error".to_owned());
    }
    out
}

/// The text of one cause. The library types whose `Display` carries `Debug` output are
/// described from their fields instead.
fn describe(cause: &(dyn StdError + 'static)) -> String {
    if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
        let reason = if status.reason.is_empty() {
            String::new()
        } else {
            format!(" {}", status.reason)
        };
        return format!(
            "the API server answered {}{reason}: {}",
            status.code, status.message
        );
    }
    match cause.downcast_ref::<kube::Error>() {
        // The transport's own error follows as the source: the wrapper's name adds nothing.
        Some(kube::Error::HyperError(_) | kube::Error::Service(_)) if cause.source().is_some() => {
            return String::new()
        }
        _ => {}
    }
    if let Some(e) = cause.downcast_ref::<eargate_storage::etcd::EtcdError>() {
        use eargate_storage::etcd::EtcdError;
        match e {
            EtcdError::Connect { endpoints, .. } => {
                return format!("cannot reach etcd at {endpoints} (--etcd-endpoints)")
            }
            EtcdError::Request(_) => return "an etcd request failed".to_owned(),
            _ => {}
        }
    }
    if let Some(etcd) = cause.downcast_ref::<etcd_client::Error>() {
        return match etcd {
            etcd_client::Error::GRpcStatus(status) => {
                let message = status.message();
                if message.is_empty() {
                    format!("etcd answered {:?}", status.code())
                } else {
                    format!("etcd answered {:?}: {message}", status.code())
                }
            }
            etcd_client::Error::TransportError(e) => e.to_string(),
            other => other.to_string(),
        };
    }
    let status = cause.downcast_ref::<kube::core::Status>().or_else(|| {
        cause
            .downcast_ref::<Box<kube::core::Status>>()
            .map(|b| &**b)
    });
    if let Some(status) = status {
        return format!("{} {}: {}", status.code, status.reason, status.message);
    }
    cause.to_string()
}

/// Walks sources that are not reachable through anyhow's chain when a cause was
/// described from its fields (tonic's `Status` keeps its transport error as a source).
fn more_sources(err: &anyhow::Error) -> Vec<String> {
    let mut out = Vec::new();
    for cause in err.chain() {
        if let Some(etcd_client::Error::GRpcStatus(status)) =
            cause.downcast_ref::<etcd_client::Error>()
        {
            let mut source = status.source();
            while let Some(s) = source {
                out.push(s.to_string());
                source = s.source();
            }
        }
    }
    out
}

/// All lines, the extra sources included, each cause once.
pub fn all_lines(err: &anyhow::Error) -> Vec<String> {
    let mut out = lines(err);
    for extra in more_sources(err) {
        let extra = extra.trim().to_owned();
        if !extra.is_empty() && !out.iter().any(|l| l.contains(&extra)) {
            out.push(extra);
        }
    }
    out
}

/// The error as text: `error: <what>` then `  cause: <why>` lines.
pub fn text(err: &anyhow::Error) -> String {
    let lines = all_lines(err);
    let mut out = format!("error: {}\n", lines[0]);
    for cause in &lines[1..] {
        out.push_str(&format!("  cause: {cause}\n"));
    }
    out
}

/// The error as a document: `{"error": {"message": …, "causes": […]}}`.
pub fn value(err: &anyhow::Error) -> serde_json::Value {
    let lines = all_lines(err);
    json!({"error": {"message": lines[0], "causes": &lines[1..]}, "exitCode": super::EXIT_BAD_INPUT})
}

/// Prints the error: on stderr as text, or as one JSON/YAML document on stdout when the
/// command prints its results that way (a tool reading stdout then always gets a document).
pub fn report(err: &anyhow::Error, output: Option<Output>) {
    match output {
        Some(format @ (Output::Json | Output::Yaml)) => {
            if format.print_value(&value(err)).is_err() {
                eprint!("{}", text(err));
            }
        }
        _ => eprint!("{}", text(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /nope.crt: entity not found")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn each_cause_is_stated_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "entity not found");
        let err = anyhow::Error::new(Repeats(io));
        assert_eq!(
            lines(&err),
            vec!["cannot read /nope.crt", "entity not found"]
        );
        let err = anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "Address already in use (os error 98)",
        ))
        .context("cannot listen on 127.0.0.1:8443 (--listen)");
        assert_eq!(
            text(&err),
            "error: cannot listen on 127.0.0.1:8443 (--listen)\n  cause: Address already in use (os error 98)\n"
        );
    }

    #[test]
    fn a_trailing_copy_of_the_next_cause_is_cut() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect): {0}")]
        struct Outer(#[source] std::io::Error);
        let io = std::io::Error::other("tcp connect error");
        let err = anyhow::Error::new(Outer(io)).context("cannot reach the API server");
        assert_eq!(
            lines(&err),
            vec![
                "cannot reach the API server",
                "client error (Connect)",
                "tcp connect error"
            ]
        );
    }

    #[test]
    fn kube_api_errors_are_described_without_debug_output() {
        let status = kube::core::Status {
            code: 404,
            reason: "NotFound".into(),
            message: "clusters.kubermatic.k8c.io \"c1\" not found".into(),
            ..Default::default()
        };
        let err =
            anyhow::Error::new(kube::Error::Api(Box::new(status))).context("cannot get Cluster c1");
        let text = text(&err);
        assert_eq!(
            text,
            "error: cannot get Cluster c1\n  cause: the API server answered 404 NotFound: clusters.kubermatic.k8c.io \"c1\" not found\n"
        );
        assert!(!text.contains("Status {"), "{text}");
    }
}
