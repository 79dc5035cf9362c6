//! Interoperability with TLS stacks we did not write: OpenSSL's s_server
//! verifying our client's certificate (signed in our key stores), and
//! OpenSSL's s_client, curl and a Java TLSv1.2 client with a PKCS#12 key
//! store authenticating to our server.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pairgate_pki::KeyAlgorithm;
use pairgate_pki::certificate::certificate_pem;
use pairgate_testkit::{openssl, openssl_output, temp_dir};
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::ServerTrust;
use pairgate_tls::server::ClientAuth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, identity, serve, server_identity};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `openssl s_server` with `args` and waits until it listens; it
/// is killed when the returned value drops.
fn s_server(dir: &Path, port: u16, args: &[&str]) -> Killed {
    let child = Command::new("openssl")
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}"), "-www"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        // openssl is an outside process: poll until it listens.
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_openssl_s_server_with_verify() {
    let dir = temp_dir();
    let d = dir.path();
    pairgate_testkit::openssl_self_signed(d, "srv", "localhost", "sha256");
    let server_pin = pairgate_pki::SpkiPin::of_certificate(
        &pairgate_pki::certificate::parse_certificates(&std::fs::read(d.join("srv.pem")).unwrap())
            .unwrap()[0],
    )
    .unwrap();
    for backend in [Backend::Software, Backend::SoftHsm] {
        for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Rsa2048] {
            let client_id = identity(backend, algorithm, "terminal");
            let chain = client_id.store.certificate_chain(&client_id.alias).unwrap();
            std::fs::write(d.join("client.pem"), certificate_pem(&chain[0])).unwrap();
            for (policy, flag) in [
                (TlsPolicy::tls12_only(), "-tls1_2"),
                (TlsPolicy::tls13_only(), "-tls1_3"),
            ] {
                let port = free_port();
                // -Verify: OpenSSL requires and verifies the client certificate
                // (our self-signed one is its only CA).
                let _server = s_server(
                    d,
                    port,
                    &[
                        "-cert",
                        "srv.pem",
                        "-key",
                        "srv.key",
                        "-Verify",
                        "1",
                        "-CAfile",
                        "client.pem",
                        flag,
                    ],
                );
                let client = client_id.client(ServerTrust::Pins(vec![server_pin]), &policy);
                let mut stream = client
                    .connect(&format!("127.0.0.1:{port}"), Some("localhost"))
                    .await
                    .unwrap();
                stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
                let mut page = String::new();
                let _ = stream.read_to_string(&mut page).await;
                assert!(
                    page.contains("200 ok"),
                    "{backend:?} {algorithm} {flag}: {page}"
                );
                assert!(
                    page.contains("Client certificate"),
                    "s_server did not see our certificate: {page}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_curl_and_java_clients_against_our_server() {
    let dir = temp_dir();
    let d = dir.path();
    let server_id = server_identity(Backend::SoftHsm, KeyAlgorithm::P256);
    std::fs::write(
        d.join("server.pem"),
        certificate_pem(&server_id.store.certificate_chain(&server_id.alias).unwrap()[0]),
    )
    .unwrap();
    let policy = TlsPolicy::tls12_only();
    let server = server_id.server(ClientAuth::AnyProvenKey, &policy);
    let (addr, mut seen) = serve(server).await;
    let port = addr.port().to_string();
    pairgate_testkit::openssl_self_signed(d, "c", "foreign-terminal", "sha256");
    let client_fp = pairgate_testkit::openssl_sha256_fingerprint(d, "c.pem");

    // OpenSSL's client.
    let out = openssl_output(
        d,
        &[
            "s_client",
            "-connect",
            &addr.to_string(),
            "-cert",
            "c.pem",
            "-key",
            "c.key",
            "-CAfile",
            "server.pem",
            "-verify_return_error",
            "-brief",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Protocol version: TLSv1.2"), "{err}");
    assert_eq!(
        seen.recv().await.unwrap().result.unwrap().to_hex(),
        client_fp
    );

    // curl.
    let out = tokio::task::spawn_blocking({
        let d = d.to_path_buf();
        let port = port.clone();
        move || {
            Command::new("curl")
                .args([
                    "--silent",
                    "--show-error",
                    "--cert",
                    "c.pem",
                    "--key",
                    "c.key",
                    "--cacert",
                    "server.pem",
                    "--resolve",
                ])
                .arg(format!("localhost:{port}:127.0.0.1"))
                .arg(format!("https://localhost:{port}/"))
                .current_dir(d)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello {client_fp}\n")
    );
    seen.recv().await.unwrap().result.unwrap();
    // curl without a client certificate gets nothing.
    let out = Command::new("curl")
        .args([
            "--silent",
            "--cacert",
            "server.pem",
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            &format!("https://localhost:{port}/"),
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(seen.recv().await.unwrap().result.is_err());

    // Java: SSLContext.getInstance("TLSv1.2") with a PKCS#12 client key store.
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-in",
            "c.pem",
            "-inkey",
            "c.key",
            "-out",
            "c.p12",
            "-passout",
            "pass:changeit",
            "-name",
            "terminal",
        ],
    );
    std::fs::write(d.join("Client.java"), JAVA_CLIENT).unwrap();
    let out = tokio::task::spawn_blocking({
        let d = d.to_path_buf();
        move || {
            Command::new("java")
                .args(["Client.java", &port, "c.p12", "server.pem"])
                .current_dir(d)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "java: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("protocol TLSv1.2"), "{stdout}");
    assert!(stdout.contains(&format!("hello {client_fp}")), "{stdout}");
    assert_eq!(
        seen.recv().await.unwrap().result.unwrap().to_hex(),
        client_fp
    );
}

/// A terminal-style Java client: an SSLContext for exactly TLSv1.2, a
/// key manager over a PKCS#12 key store, a trust manager holding only the
/// server's certificate.
const JAVA_CLIENT: &str = r#"
import java.io.*;
import java.net.*;
import java.security.*;
import java.security.cert.*;
import javax.net.ssl.*;

public class Client {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(args[1])) { keys.load(in, "changeit".toCharArray()); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, "changeit".toCharArray());
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (InputStream in = new FileInputStream(args[2])) {
            trust.setCertificateEntry("server", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext context = SSLContext.getInstance("TLSv1.2");
        context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket("127.0.0.1", port);
        socket.startHandshake();
        System.out.println("protocol " + socket.getSession().getProtocol());
        OutputStream out = socket.getOutputStream();
        out.write("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".getBytes("US-ASCII"));
        out.flush();
        BufferedReader r = new BufferedReader(new InputStreamReader(socket.getInputStream(), "US-ASCII"));
        String line;
        while ((line = r.readLine()) != null) System.out.println(line);
        socket.close();
    }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_against_openssl_and_our_server() {
    use pairgate_tls::https::HttpsClient;
    let dir = temp_dir();
    let d = dir.path();
    pairgate_testkit::openssl_self_signed(d, "srv", "localhost", "sha256");
    let pin = pairgate_pki::SpkiPin::of_certificate(
        &pairgate_pki::certificate::parse_certificates(&std::fs::read(d.join("srv.pem")).unwrap())
            .unwrap()[0],
    )
    .unwrap();
    let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
    let tls = client_id.client(ServerTrust::Pins(vec![pin]), &TlsPolicy::default());
    let port = free_port();
    let _server = s_server(
        d,
        port,
        &["-cert", "srv.pem", "-key", "srv.key", "-verify", "1"],
    );
    let response = HttpsClient::new(tls)
        .request("GET", &format!("https://127.0.0.1:{port}/"), &[], None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(String::from_utf8_lossy(&response.body).contains("Client certificate"));

    let server_id = server_identity(Backend::Software, KeyAlgorithm::P256);
    let server = server_id.server(ClientAuth::AnyProvenKey, &TlsPolicy::default());
    let (addr, _) = serve(server).await;
    let tls = client_id.client(
        ServerTrust::Pins(vec![server_id.pin]),
        &TlsPolicy::default(),
    );
    let response = HttpsClient::new(tls.clone())
        .request("GET", &format!("https://{addr}/x"), &[], None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        format!("hello {}\n", client_id.fingerprint)
    );
    // Bodies over the limit are refused, not truncated.
    let err = HttpsClient::new(tls)
        .with_max_body(8)
        .request("GET", &format!("https://{addr}/x"), &[], None)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("reading the response"),
        "{err:#}"
    );
}
