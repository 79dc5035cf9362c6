//! Debian's nginx in the three roles a run gives it, each one worker on
//! 127.0.0.1, pinned when asked and stopped when dropped:
//!
//! - the peer of the master's own paths: mutual TLS 1.3 against the fleet's
//!   CA, sessions cached server-side like pairgate's, a small JSON body;
//! - the peer of the master's proxy: the same TLS, admitting only paired
//!   certificates (`map $ssl_client_fingerprint`), `proxy_pass` to an
//!   `upstream` with `keepalive 64`;
//! - the operator's application behind either: plain HTTP answering 60
//!   bytes on every path.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use super::fleet::PemIdentity;
use super::peers::{free_port, wait_listening};
use super::procs::{self, Process, pinned};

/// The application's answer: 60 bytes of JSON.
pub const UPSTREAM_BODY: &str = r#"{"ok":true,"from":"upstream","pad":"0123456789abcdef012345"}"#;

/// A running nginx.
pub struct Nginx {
    /// The master process.
    pub process: Process,
    /// `host:port`.
    pub addr: String,
}

/// The files and names of the TLS front's `server` block.
pub struct Tls<'a> {
    /// The server's certificate and key.
    pub identity: &'a PemIdentity,
    /// The CA of the client certificates.
    pub client_ca_pem: &'a str,
}

impl Nginx {
    /// The peer of the master's own paths: `{"ok":true}` on every path.
    pub fn start(nginx: &Path, dir: &Path, tls: &Tls<'_>, cpu: Option<usize>) -> Result<Self> {
        let listen = tls_server(dir, tls)?;
        Self::start_with(nginx, dir, cpu, &|port| {
            format!(
                "server {{\n{}\n        location / {{ default_type application/json; return 200 '{{\"ok\":true}}'; }}\n    }}",
                listen(port)
            )
        })
    }

    /// The peer of the master's proxy: only the certificates whose SHA-1
    /// fingerprints (nginx's `$ssl_client_fingerprint`) are in `paired`
    /// pass, `/app/…` goes to `upstream` (`host:port`) as `/…` on kept-alive
    /// connections, with the fingerprint as a header.
    pub fn proxy_front(
        nginx: &Path,
        dir: &Path,
        tls: &Tls<'_>,
        cpu: Option<usize>,
        paired: &[String],
        upstream: &str,
    ) -> Result<Self> {
        let listen = tls_server(dir, tls)?;
        let map: String = paired
            .iter()
            .map(|fp| format!("        {fp} 1;\n"))
            .collect();
        Self::start_with(nginx, dir, cpu, &|port| {
            format!(
                r#"map $ssl_client_fingerprint $paired {{
        default 0;
{map}    }}
    upstream app {{ server {upstream}; keepalive 64; }}
    server {{
{listen}
        location /app/ {{
            if ($paired = 0) {{ return 403; }}
            proxy_pass http://app/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Pairgate-Terminal-Fingerprint $ssl_client_fingerprint;
        }}
    }}"#,
                listen = listen(port)
            )
        })
    }

    /// The operator's application: [`UPSTREAM_BODY`] over plain HTTP.
    pub fn upstream(nginx: &Path, dir: &Path, cpu: Option<usize>) -> Result<Self> {
        Self::start_with(nginx, dir, cpu, &|port| {
            format!(
                "server {{\n        listen 127.0.0.1:{port};\n        location / {{ default_type application/json; return 200 '{UPSTREAM_BODY}'; }}\n    }}"
            )
        })
    }

    /// Writes a configuration around `server(port)` (the `http` block's
    /// contents) and starts nginx on a free port. The free port may be
    /// taken between our probe and nginx's bind (tests run in parallel):
    /// then another one is tried.
    fn start_with(
        nginx: &Path,
        dir: &Path,
        cpu: Option<usize>,
        server: &dyn Fn(u16) -> String,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match Self::start_on(port, nginx, dir, cpu, &server(port)) {
                Ok(started) => return Ok(started),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nginx did not start")))
    }

    fn start_on(
        port: u16,
        nginx: &Path,
        dir: &Path,
        cpu: Option<usize>,
        server: &str,
    ) -> Result<Self> {
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                r#"# Written by pairgate bench.
worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    {server}
}}
"#
            ),
        )?;
        let mut command = pinned(nginx, cpu);
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?);
        let process = Process::new(
            command
                .spawn()
                .with_context(|| format!("starting {}", nginx.display()))?,
            "nginx",
        );
        let addr = format!("127.0.0.1:{port}");
        let mut nginx = Self { process, addr };
        wait_listening(&nginx.addr, &mut nginx.process, &dir.join("error.log"))?;
        Ok(nginx)
    }

    /// Master and workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.process.pid()];
        pids.extend(procs::children(self.process.pid()));
        pids
    }
}

/// Writes the TLS files into `dir`; returns the `listen` and `ssl_` lines
/// for a port: TLS 1.3 only, client certificates required against the
/// fleet's CA, sessions cached server-side, tickets off.
fn tls_server(dir: &Path, tls: &Tls<'_>) -> Result<impl Fn(u16) -> String> {
    std::fs::create_dir_all(dir)?;
    let file = |name: &str, content: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        Ok(path)
    };
    let cert = file("server.pem", &tls.identity.certificate)?;
    let key = file("server.key", &tls.identity.key)?;
    let ca = file("clients-ca.pem", tls.client_ca_pem)?;
    Ok(move |port: u16| {
        format!(
            "        listen 127.0.0.1:{port} ssl;
        ssl_certificate {};
        ssl_certificate_key {};
        ssl_protocols TLSv1.3;
        ssl_client_certificate {};
        ssl_verify_client on;
        ssl_session_cache shared:bench:20m;
        ssl_session_timeout 10m;
        ssl_session_tickets off;",
            cert.display(),
            key.display(),
            ca.display()
        )
    })
}

/// Finds nginx: `--nginx`, else on PATH, else Debian's /usr/sbin/nginx.
pub fn find_nginx(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
    {
        let candidate = Path::new(dir).join("nginx");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "nginx is not installed: apt-get install nginx (the peer of every comparison), or give --nginx PATH"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_upstream_answers_sixty_bytes() {
        assert_eq!(super::UPSTREAM_BODY.len(), 60);
    }
}
