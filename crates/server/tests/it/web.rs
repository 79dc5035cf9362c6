//! A small HTTP/1.1 client for CAS tests, one connection per request
//! (plain TCP, or TLS with a pinned server key), keeping cookies like a
//! browser; and an operator's way through login, password change, TOTP
//! enrolment and the second factor.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The value of the first `name="csrf" value="…"` in the page.
    pub fn csrf(&self) -> String {
        between(&self.body, "name=\"csrf\" value=\"", "\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body))
    }
}

/// Hex in groups of four, as CAS shows fingerprints.
pub fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let rest = text.get(from..)?;
    Some(rest.get(..rest.find(end)?)?.to_owned())
}

/// A cookie-keeping client of one CAS.
pub struct Web {
    pub addr: SocketAddr,
    pub cookies: BTreeMap<String, String>,
    /// The loopback address to connect from (default 127.0.0.1).
    pub source: Option<std::net::IpAddr>,
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Web {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cookies: BTreeMap::new(),
            source: None,
        }
    }

    /// A client connecting from another loopback address.
    pub fn from_source(addr: SocketAddr, source: std::net::IpAddr) -> Self {
        Self {
            source: Some(source),
            ..Self::new(addr)
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            text.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        for (n, v) in headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let mut tcp = match self.source {
            None => tokio::net::TcpStream::connect(self.addr).await.unwrap(),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(ip, 0)).unwrap();
                socket.connect(self.addr).await.unwrap()
            }
        };
        tcp.write_all(text.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
            .await
            .expect("CAS answered within 20 s")
            .unwrap();
        let answer = parse(&raw);
        for cookie in answer.set_cookies() {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        answer
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.request("GET", path, &[], "").await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form(fields),
        )
        .await
    }

    /// A JSON API call with a bearer token (no cookies sent).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut bare = Web::new(self.addr);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        bare.request(method, &format!("/api/v1{path}"), &headers, &body)
            .await
    }
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(rest));
        body = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// An authenticator app: codes for ever later time steps, waiting for the
/// next 30 s step when the accepted window (now ± 1 step) is used up.
pub struct Authenticator {
    pub uri: String,
    last: Option<u64>,
    /// The server's clock: a manual one is moved to the next step instead
    /// of waiting for it.
    clock: pairgate_server::Clock,
}

fn step_at(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

impl Authenticator {
    pub fn new(uri: &str) -> Self {
        Self::on(uri, pairgate_server::Clock::system())
    }

    /// An authenticator for a server reading `clock`.
    pub fn on(uri: &str, clock: pairgate_server::Clock) -> Self {
        Self {
            uri: uri.to_owned(),
            last: None,
            clock,
        }
    }

    /// The current time step by the server's clock.
    pub fn step_now(&self) -> u64 {
        step_at(self.clock.now())
    }

    /// A code the server has not seen used.
    pub async fn fresh(&mut self) -> String {
        loop {
            let now = self.step_now();
            let step = self.last.map_or(now - 1, |l| (l + 1).max(now - 1));
            if step <= now + 1 {
                self.last = Some(step);
                return pairgate_testkit::totp_code(&self.uri, step);
            }
            if self.clock.is_manual() {
                self.clock.advance(Duration::from_secs(30));
            } else {
                // The real clock: wait for the next 30 s step.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// The code most recently handed out (a replay).
    pub fn last_code(&self) -> String {
        pairgate_testkit::totp_code(&self.uri, self.last.unwrap())
    }
}

/// Signs in through every step the account is at: password, forced
/// password change (to `new_password`), TOTP enrolment (returns the new
/// authenticator) or the TOTP step. Ends on the dashboard.
pub async fn sign_in(
    web: &mut Web,
    username: &str,
    password: &str,
    new_password: &str,
    mut app: Option<Authenticator>,
) -> Authenticator {
    let page = web.get("/login").await;
    assert_eq!(page.status, 200);
    let r = web
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("username", username),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mut next = r.header("location").unwrap().to_owned();
    let mut password = password.to_owned();
    loop {
        match next.as_str() {
            "/account/password" => {
                let page = web.get(&next).await;
                let r = web
                    .post(
                        &next,
                        &[
                            ("csrf", &page.csrf()),
                            ("current", &password),
                            ("new", new_password),
                            ("confirm", new_password),
                        ],
                    )
                    .await;
                assert_eq!(r.status, 303, "{}", r.body);
                password = new_password.to_owned();
                next = r.header("location").unwrap().to_owned();
            }
            "/account/two-factor" => {
                let page = web.get(&next).await;
                assert!(page.body.contains("<svg"), "no QR code");
                let secret = between(&page.body, "<span class=\"code\">", "</span>").unwrap();
                let uri =
                    format!("otpauth://totp/pairgate:{username}?secret={secret}&issuer=pairgate");
                let mut fresh = Authenticator::new(&uri);
                let code = fresh.fresh().await;
                let r = web
                    .post(&next, &[("csrf", &page.csrf()), ("code", &code)])
                    .await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(
                    r.body.matches("<li>").count(),
                    pairgate_store::RECOVERY_CODES
                );
                app = Some(fresh);
                next = "/".into();
            }
            "/login/second-factor" => {
                let page = web.get(&next).await;
                let code = app.as_mut().expect("an authenticator").fresh().await;
                let r = web
                    .post(&next, &[("csrf", &page.csrf()), ("code", &code)])
                    .await;
                assert_eq!(r.status, 303, "{}", r.body);
                next = r.header("location").unwrap().to_owned();
            }
            "/" => break,
            other => panic!("unexpected step {other}"),
        }
    }
    let home = web.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Dashboard"));
    app.expect("an authenticator")
}
