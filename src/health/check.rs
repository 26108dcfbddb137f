//! One probe: an HTTP(S) GET judged by status, body and JSON rules, or a TCP connect; every
//! error mapped to a precise [`Failure`]. The whole probe (connect, TLS, headers, body) is
//! bounded by the target's timeout, and the body read is capped at [`BODY_LIMIT`], so a hung
//! or endless replica costs at most one timeout.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::outcome::{DeepDoc, Failure, Pass, ProbeOutcome};
use super::spec::{CheckSpec, HttpCheck};

/// Bodies longer than this fail as [`Failure::BodyTooLarge`].
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// The `User-Agent` of every probe (WAFs may want to allow-list it).
pub const USER_AGENT: &str = concat!("steerdns-prober/", env!("CARGO_PKG_VERSION"));

/// Runs checks. Holds the shared HTTP clients: one per combination of
/// (`fresh_connection`, `insecure_skip_verify`), each built once. All use rustls, ignore proxy
/// environment variables, never follow redirects and send SNI from the URL host.
///
/// The connection pool is keyed by (scheme, host, port): give each replica its own URL host
/// (or address) so keep-alive never carries one replica's connection to another.
#[derive(Clone, Debug)]
pub struct Checker {
    /// Index: `fresh as usize * 2 + insecure as usize`.
    clients: Arc<[reqwest::Client; 4]>,
}

impl Checker {
    /// Builds the clients.
    pub fn new() -> Result<Self, reqwest::Error> {
        let build = |fresh: bool, insecure: bool| {
            let mut b = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(USER_AGENT)
                .tcp_nodelay(true)
                .tls_danger_accept_invalid_certs(insecure);
            if fresh {
                b = b.pool_max_idle_per_host(0);
            }
            b.build()
        };
        Ok(Checker {
            clients: Arc::new([
                build(false, false)?,
                build(false, true)?,
                build(true, false)?,
                build(true, true)?,
            ]),
        })
    }

    fn client(&self, h: &HttpCheck) -> &reqwest::Client {
        &self.clients[usize::from(h.fresh_connection) * 2 + usize::from(h.insecure_skip_verify)]
    }

    /// Runs `check` once within `timeout`. Never fails and never outlives the timeout (plus
    /// scheduling).
    pub async fn check(&self, check: &CheckSpec, timeout: Duration) -> ProbeOutcome {
        let at = Instant::now();
        let run = async {
            match check {
                CheckSpec::Http(h) => self.http(h).await,
                CheckSpec::Tcp { host, port } => (tcp(host, *port).await, None),
            }
        };
        let (result, document) = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => (Err(Failure::Timeout), None),
        };
        ProbeOutcome {
            at,
            latency: at.elapsed(),
            result,
            document,
        }
    }

    async fn http(&self, h: &HttpCheck) -> (Result<Pass, Failure>, Option<Arc<DeepDoc>>) {
        let https = h.url.scheme() == "https";
        let mut req = self.client(h).get(h.url.clone());
        for (k, v) in &h.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (Err(classify(&e, https)), None),
        };
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(&mut resp, https).await;
        let json: Option<Value> = body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice(b).ok());
        let doc = json.as_ref().and_then(DeepDoc::parse).map(Arc::new);
        (
            judge(h, status, location, body, json.as_ref(), doc.as_deref()),
            doc,
        )
    }
}

/// Applies the status, body and JSON rules.
pub(crate) fn judge(
    h: &HttpCheck,
    status: u16,
    location: Option<String>,
    body: Result<Vec<u8>, Failure>,
    json: Option<&Value>,
    doc: Option<&DeepDoc>,
) -> Result<Pass, Failure> {
    let failing = doc.map(DeepDoc::failing).unwrap_or_default();
    if !h.expect_status.iter().any(|r| r.contains(status)) {
        return Err(if (300..400).contains(&status) {
            Failure::Redirect { status, location }
        } else if !failing.is_empty() {
            Failure::Dependencies(failing)
        } else {
            Failure::Status(status)
        });
    }
    let body = body?;
    if let Some(needle) = &h.body_contains
        && !String::from_utf8_lossy(&body).contains(needle.as_str())
    {
        return Err(Failure::BodyMismatch(format!(
            "body does not contain {needle:?}"
        )));
    }
    if let Some((path, want)) = &h.json {
        let Some(v) = json else {
            return Err(Failure::BodyMismatch("body is not JSON".into()));
        };
        match lookup(v, path) {
            None => return Err(Failure::BodyMismatch(format!("no {path} in the JSON body"))),
            Some(got) => {
                let got = match got {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if &got != want {
                    return Err(Failure::BodyMismatch(format!(
                        "{path} is {got:?}, expected {want:?}"
                    )));
                }
            }
        }
    }
    if !failing.is_empty() {
        return Err(Failure::Dependencies(failing));
    }
    if let Some(doc) = doc
        && doc.status_failing()
    {
        return Err(Failure::DocumentStatus(
            doc.status.clone().unwrap_or_default(),
        ));
    }
    Ok(Pass {
        status: Some(status),
    })
}

/// The value at a dotted path (`a.b.0.c`: object keys, array indexes).
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

async fn read_capped(resp: &mut reqwest::Response, https: bool) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > BODY_LIMIT {
                    return Err(Failure::BodyTooLarge);
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(classify(&e, https)),
        }
    }
}

async fn tcp(host: &str, port: u16) -> Result<Pass, Failure> {
    match tokio::net::TcpStream::connect((host, port)).await {
        Ok(_) => Ok(Pass { status: None }),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Failure::Connect("connection refused".into()),
            std::io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Connect(e.to_string()),
        }),
    }
}

/// The error and its sources, joined with ": ".
fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let m = x.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = x.source();
    }
    s
}

/// Maps a reqwest error to a failure reason.
fn classify(e: &reqwest::Error, https: bool) -> Failure {
    use std::io::ErrorKind as K;
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let detail = chain(e);
    let mut src = e.source();
    let mut tcp_phase = false;
    while let Some(x) = src {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::ConnectionRefused => return Failure::Connect("connection refused".into()),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => return Failure::Reset,
                K::TimedOut => return Failure::Timeout,
                K::InvalidData if https && e.is_connect() => return Failure::Tls(detail),
                K::UnexpectedEof if !(https && e.is_connect()) => return Failure::Reset,
                _ => {}
            }
        }
        let m = x.to_string();
        if m.starts_with("tcp ") || m.starts_with("dns error") {
            tcp_phase = true;
        }
        src = x.source();
    }
    if e.is_connect() {
        if https && !tcp_phase {
            return Failure::Tls(detail);
        }
        return Failure::Connect(detail);
    }
    // hyper reports a peer that closed mid-message without an io::Error.
    if detail.contains("connection closed")
        || detail.contains("incomplete")
        || detail.contains("unexpected end")
    {
        return Failure::Reset;
    }
    Failure::Other(detail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::health::spec::StatusRange;
    use serde_json::json;

    fn h() -> HttpCheck {
        HttpCheck {
            url: "http://127.0.3.1/health".parse().unwrap(),
            headers: vec![],
            expect_status: vec![StatusRange { lo: 200, hi: 299 }],
            body_contains: None,
            json: None,
            fresh_connection: false,
            insecure_skip_verify: false,
        }
    }

    fn run(h: &HttpCheck, status: u16, body: &str) -> Result<Pass, Failure> {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let doc = json.as_ref().and_then(DeepDoc::parse);
        judge(
            h,
            status,
            Some("/elsewhere".into()),
            Ok(body.as_bytes().to_vec()),
            json.as_ref(),
            doc.as_ref(),
        )
    }

    #[test]
    fn judging() {
        let base = h();
        assert_eq!(run(&base, 204, ""), Ok(Pass { status: Some(204) }));
        assert_eq!(run(&base, 500, ""), Err(Failure::Status(500)));
        assert_eq!(
            run(&base, 302, ""),
            Err(Failure::Redirect {
                status: 302,
                location: Some("/elsewhere".into())
            })
        );
        let doc = json!({"status": "unhealthy", "checks": {"storage": {"status": "unhealthy"}, "cache": {"status": "healthy"}}}).to_string();
        assert_eq!(
            run(&base, 503, &doc),
            Err(Failure::Dependencies(vec!["storage".into()]))
        );
        assert_eq!(
            run(&base, 200, &doc),
            Err(Failure::Dependencies(vec!["storage".into()]))
        );
        // A failing top-level status fails a 200 even with no dependency list.
        assert_eq!(
            run(&base, 200, r#"{"status":"unhealthy"}"#),
            Err(Failure::DocumentStatus("unhealthy".into()))
        );
        assert_eq!(
            run(
                &base,
                200,
                r#"{"status":"degraded","checks":{"cache":"ok"}}"#
            ),
            Err(Failure::DocumentStatus("degraded".into()))
        );
        assert_eq!(
            run(&base, 200, r#"{"status":"Healthy"}"#),
            Ok(Pass { status: Some(200) })
        );
        // JSON with no status and no dependencies is not a document: the status decides.
        assert!(run(&base, 200, r#"{"version":"1.2"}"#).is_ok());
        let mut c = h();
        c.expect_status = vec![StatusRange { lo: 301, hi: 302 }];
        assert!(run(&c, 302, "").is_ok());

        let mut c = h();
        c.body_contains = Some("OK".into());
        assert!(run(&c, 200, "all OK").is_ok());
        assert!(matches!(
            run(&c, 200, "nope"),
            Err(Failure::BodyMismatch(_))
        ));
        let mut c = h();
        c.json = Some(("app.state".into(), "healthy".into()));
        assert!(run(&c, 200, r#"{"app":{"state":"healthy"}}"#).is_ok());
        assert_eq!(
            run(&c, 200, r#"{"app":{"state":"sick"}}"#),
            Err(Failure::BodyMismatch(
                "app.state is \"sick\", expected \"healthy\"".into()
            ))
        );
        assert!(
            matches!(run(&c, 200, "text"), Err(Failure::BodyMismatch(m)) if m == "body is not JSON")
        );
        assert!(matches!(run(&c, 200, "{}"), Err(Failure::BodyMismatch(_))));
        c.json = Some(("items.1.up".into(), "true".into()));
        assert!(run(&c, 200, r#"{"items":[{"up":false},{"up":true}]}"#).is_ok());
        // A body read failure on an expected status is the failure.
        assert_eq!(
            judge(&base, 200, None, Err(Failure::BodyTooLarge), None, None),
            Err(Failure::BodyTooLarge)
        );
        // On an unexpected status the status wins.
        assert_eq!(
            judge(&base, 500, None, Err(Failure::BodyTooLarge), None, None),
            Err(Failure::Status(500))
        );
    }
}
