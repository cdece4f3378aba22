//! Accounting of a run and how it is shown: the final summary (text or JSON) and the
//! progress lines. Pure; object contents are never part of it (only namespace/name).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// How many failures are kept with names per resource; the counts stay exact beyond it,
/// so memory stays flat even if every object fails.
pub const MAX_RECORDED_FAILURES: usize = 100;

/// One object that could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Status code, API reason and invalid field names — never the object or a message
    /// that could quote it.
    pub reason: String,
}

/// Counts of objects per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Objects handed out from the list (each exactly once, restarts included).
    pub listed: u64,
    /// Written back (and so re-encrypted).
    pub rewritten: u64,
    /// Written by someone else after we listed them (409): already re-encrypted.
    pub conflicted: u64,
    /// Deleted after we listed them (404).
    pub gone: u64,
    /// Could not be rewritten: a permanent error, or the retries ran out.
    pub failed: u64,
}

impl Counts {
    /// Objects with a final outcome.
    pub fn done(&self) -> u64 {
        self.rewritten + self.conflicted + self.gone + self.failed
    }

    fn add(&mut self, other: &Counts) {
        self.listed += other.listed;
        self.rewritten += other.rewritten;
        self.conflicted += other.conflicted;
        self.gone += other.gone;
        self.failed += other.failed;
    }
}

/// Result for one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceSummary {
    /// `secrets`, `deployments.apps`: the encryption configuration's spelling.
    pub resource: String,
    /// e.g. `v1`, `apps/v1`: the version it was read and written at.
    pub api_version: String,
    /// What became of its objects.
    #[serde(flatten)]
    pub counts: Counts,
    /// Times the list started over after an expired continue token.
    pub list_restarts: u32,
    /// Why listing failed; `null` when the list completed. A failed list makes the run fail
    /// even if no object failed: the objects never listed were not rewritten.
    pub list_error: Option<String>,
    /// Failed objects, at most [`MAX_RECORDED_FAILURES`].
    pub failures: Vec<Failure>,
    /// Failed objects beyond those in `failures`.
    pub failures_omitted: u64,
    /// How long the resource took, in seconds.
    pub duration_seconds: f64,
}

impl ResourceSummary {
    /// An empty summary for `resource`, read at `api_version`.
    pub fn new(resource: String, api_version: String) -> Self {
        Self {
            resource,
            api_version,
            counts: Counts::default(),
            list_restarts: 0,
            list_error: None,
            failures: Vec::new(),
            failures_omitted: 0,
            duration_seconds: 0.0,
        }
    }

    /// Counts a failed object, keeping its name while there is room.
    pub fn record_failure(&mut self, failure: Failure) {
        self.counts.failed += 1;
        if self.failures.len() < MAX_RECORDED_FAILURES {
            self.failures.push(failure);
        } else {
            self.failures_omitted += 1;
        }
    }

    /// Nothing failed: the list completed and every listed object was dealt with.
    pub fn ok(&self) -> bool {
        self.list_error.is_none()
            && self.counts.failed == 0
            && self.counts.done() == self.counts.listed
    }
}

/// The final summary. With `--output json` it is printed as one JSON object:
///
/// ```json
/// {
///   "ok": false,                  // true only if every resource is ok; the exit code is 0 iff ok
///   "duration_seconds": 12.5,
///   "totals": {"listed": 20000, "rewritten": 19995, "conflicted": 2, "gone": 2, "failed": 1},
///   "resources": [
///     {
///       "resource": "secrets",    // as in the encryption configuration: "deployments.apps", ...
///       "api_version": "v1",
///       "listed": 20000, "rewritten": 19995, "conflicted": 2, "gone": 2, "failed": 1,
///       "list_restarts": 0,       // restarts after an expired continue token
///       "list_error": null,       // or e.g. "HTTP 403 Forbidden": the resource failed
///       "failures": [{"namespace": "team-a", "name": "db", "reason": "HTTP 422 Invalid (fields: data[x])"}],
///       "failures_omitted": 0,    // failures beyond the 100 named ones
///       "duration_seconds": 12.4
///     }
///   ]
/// }
/// ```
///
/// `listed = rewritten + conflicted + gone + failed` for every resource of a finished run.
/// Consumers (the reconciler's Job) should treat unknown fields as additions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Every resource is [`ResourceSummary::ok`]: the exit code is 0.
    pub ok: bool,
    /// How long the run took, in seconds.
    pub duration_seconds: f64,
    /// The counts of all resources added up.
    pub totals: Counts,
    /// One summary per resource, in the order run.
    pub resources: Vec<ResourceSummary>,
}

impl Summary {
    /// The run's summary: its resources, their totals and the duration.
    pub fn new(resources: Vec<ResourceSummary>, duration: Duration) -> Self {
        let mut totals = Counts::default();
        for r in &resources {
            totals.add(&r.counts);
        }
        Self {
            ok: resources.iter().all(ResourceSummary::ok),
            duration_seconds: round_ms(duration),
            totals,
            resources,
        }
    }

    /// The command's exit code: 0 only if nothing failed.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else {
            1
        }
    }

    /// The summary as one line of JSON (`-o json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"summary: {e}\"}}"))
    }

    /// The summary for people: the totals, then a line per resource and its failures.
    pub fn to_text(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "reencrypt {} in {:.1}s: {} listed, {} rewritten, {} conflicted (already rewritten by others), {} gone, {} failed\n",
            if self.ok { "finished" } else { "FAILED" },
            self.duration_seconds,
            t.listed,
            t.rewritten,
            t.conflicted,
            t.gone,
            t.failed
        );
        for r in &self.resources {
            let c = &r.counts;
            let _ = writeln!(
                out,
                "  {} ({}): listed {}, rewritten {}, conflicted {}, gone {}, failed {} in {:.1}s{}",
                r.resource,
                r.api_version,
                c.listed,
                c.rewritten,
                c.conflicted,
                c.gone,
                c.failed,
                r.duration_seconds,
                if r.list_restarts > 0 {
                    format!(" ({} list restarts)", r.list_restarts)
                } else {
                    String::new()
                }
            );
            if let Some(err) = &r.list_error {
                let _ = writeln!(
                    out,
                    "    LIST FAILED: {err} (objects not listed were not rewritten)"
                );
            }
            for f in &r.failures {
                let who = if f.namespace.is_empty() {
                    f.name.clone()
                } else {
                    format!("{}/{}", f.namespace, f.name)
                };
                let _ = writeln!(out, "    failed {who}: {}", f.reason);
            }
            if r.failures_omitted > 0 {
                let _ = writeln!(out, "    … and {} more failed objects", r.failures_omitted);
            }
        }
        out
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Seconds rounded to milliseconds, for summaries.
pub fn seconds(d: Duration) -> f64 {
    round_ms(d)
}

/// One progress line: done/total (total as known so far from the list), rate, ETA.
pub fn progress_line(resource: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let total = total.max(done);
    let pct = if total > 0 {
        done as f64 * 100.0 / total as f64
    } else {
        100.0
    };
    let eta = if rate > 0.0 {
        format!("{:.0}s", (total - done) as f64 / rate)
    } else {
        "unknown".to_string()
    };
    format!("reencrypt {resource}: {done}/{total} ({pct:.0}%), {rate:.0} objects/s, ETA {eta}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(listed: u64, rewritten: u64, conflicted: u64, gone: u64) -> Counts {
        Counts {
            listed,
            rewritten,
            conflicted,
            gone,
            failed: 0,
        }
    }

    #[test]
    fn totals_and_ok() {
        let mut a = ResourceSummary::new("secrets".into(), "v1".into());
        a.counts = counts(10, 7, 2, 1);
        let mut b = ResourceSummary::new("deployments.apps".into(), "apps/v1".into());
        b.counts = counts(3, 2, 0, 0);
        b.record_failure(Failure {
            namespace: "ns".into(),
            name: "x".into(),
            reason: "HTTP 422 Invalid".into(),
        });
        assert!(a.ok());
        assert!(!b.ok());
        let s = Summary::new(vec![a.clone(), b], Duration::from_millis(1500));
        assert!(!s.ok);
        assert_eq!(s.exit_code(), 1);
        assert_eq!(
            s.totals,
            Counts {
                listed: 13,
                rewritten: 9,
                conflicted: 2,
                gone: 1,
                failed: 1
            }
        );
        assert!(Summary::new(vec![a.clone()], Duration::ZERO).ok);
        assert_eq!(Summary::new(vec![a], Duration::ZERO).exit_code(), 0);
        assert!(Summary::new(vec![], Duration::ZERO).ok);
    }

    #[test]
    fn failed_list_fails_the_resource_even_with_nothing_failed() {
        let mut r = ResourceSummary::new("secrets".into(), "v1".into());
        r.list_error = Some("HTTP 403 Forbidden".into());
        assert!(!r.ok());
        assert!(!Summary::new(vec![r], Duration::ZERO).ok);
    }

    #[test]
    fn unfinished_objects_are_not_ok() {
        let mut r = ResourceSummary::new("secrets".into(), "v1".into());
        r.counts = counts(5, 4, 0, 0);
        assert!(!r.ok());
    }

    #[test]
    fn failures_are_capped_but_counted() {
        let mut r = ResourceSummary::new("secrets".into(), "v1".into());
        for i in 0..(MAX_RECORDED_FAILURES + 5) {
            r.record_failure(Failure {
                namespace: "ns".into(),
                name: format!("s{i}"),
                reason: "HTTP 400".into(),
            });
        }
        assert_eq!(r.counts.failed, MAX_RECORDED_FAILURES as u64 + 5);
        assert_eq!(r.failures.len(), MAX_RECORDED_FAILURES);
        assert_eq!(r.failures_omitted, 5);
        assert!(Summary::new(vec![r], Duration::ZERO)
            .to_text()
            .contains("5 more failed"));
    }

    #[test]
    fn json_shape_is_documented_shape() {
        let mut r = ResourceSummary::new("secrets".into(), "v1".into());
        r.counts = counts(2, 1, 0, 0);
        r.record_failure(Failure {
            namespace: "ns".into(),
            name: "x".into(),
            reason: "HTTP 422 Invalid".into(),
        });
        r.list_restarts = 1;
        let v: serde_json::Value =
            serde_json::from_str(&Summary::new(vec![r], Duration::from_secs(2)).to_json()).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["duration_seconds"], 2.0);
        assert_eq!(v["totals"]["listed"], 2);
        assert_eq!(v["totals"]["failed"], 1);
        let r = &v["resources"][0];
        for key in [
            "listed",
            "rewritten",
            "conflicted",
            "gone",
            "failed",
            "list_restarts",
            "failures_omitted",
        ] {
            assert!(r[key].is_u64(), "{key}");
        }
        assert_eq!(r["resource"], "secrets");
        assert_eq!(r["api_version"], "v1");
        assert!(r["list_error"].is_null());
        assert_eq!(r["failures"][0]["namespace"], "ns");
        assert_eq!(r["failures"][0]["name"], "x");
        assert_eq!(r["failures"][0]["reason"], "HTTP 422 Invalid");
    }

    #[test]
    fn text_names_failures_and_list_errors() {
        let mut r = ResourceSummary::new("widgets.example.com".into(), "example.com/v1".into());
        r.list_error = Some("HTTP 403 Forbidden".into());
        r.record_failure(Failure {
            namespace: String::new(),
            name: "w1".into(),
            reason: "HTTP 400 BadRequest".into(),
        });
        let text = Summary::new(vec![r], Duration::ZERO).to_text();
        assert!(text.starts_with("reencrypt FAILED"));
        assert!(text.contains("LIST FAILED: HTTP 403 Forbidden"));
        assert!(text.contains("failed w1: HTTP 400 BadRequest"));
    }

    #[test]
    fn progress_rate_and_eta() {
        assert_eq!(
            progress_line("secrets", 500, 2000, Duration::from_secs(2)),
            "reencrypt secrets: 500/2000 (25%), 250 objects/s, ETA 6s"
        );
        assert_eq!(
            progress_line("secrets", 0, 0, Duration::ZERO),
            "reencrypt secrets: 0/0 (100%), 0 objects/s, ETA unknown"
        );
        // A total that is still an underestimate never shows more done than total.
        assert!(progress_line("secrets", 10, 5, Duration::from_secs(1)).contains("10/10"));
    }
}
