//! `pairgate bench tls`: TLS handshake throughput on loopback with the
//! pairgate TLS provider, beside the public-key crypto ceiling that
//! `openssl speed` measures on the same machine in the same run.
//!
//! Client and server run in this process on a two-worker tokio runtime, so
//! the figures are for one machine doing both sides; "per CPU-second"
//! divides by the process's CPU time (user + system, from /proc/self/stat)
//! so that it does not depend on how many cores were idle.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use pairgate_keystore::pkcs11::{Pkcs11KeyStore, provision_token};
use pairgate_keystore::software::{KdfParams, SoftwareKeyStore};
use pairgate_keystore::{Alias, KeyStore, Passphrase, Pkcs11Uri};
use pairgate_pki::{KeyAlgorithm, SpkiPin, Subject};
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::server::{ClientAuth, TlsServer};
use pairgate_tls::{TlsPolicy, alias_certified_key};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::humanize;
use crate::output::Output;

struct Identity {
    store: Arc<dyn KeyStore>,
    alias: Alias,
    pin: SpkiPin,
}

fn software_identity(dir: &Path, server: bool) -> Result<Identity> {
    let params = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let store = SoftwareKeyStore::open_or_create_with(dir, Passphrase::new("bench")?, params)?;
    identity(Arc::new(store), server)
}

fn identity(store: Arc<dyn KeyStore>, server: bool) -> Result<Identity> {
    let alias = Alias::new(if server { "server" } else { "terminal" })?;
    let public = store.generate_key(&alias, KeyAlgorithm::P256)?;
    let subject = Subject::common_name(alias.as_str())?;
    if server {
        pairgate_keystore::self_signed_server_certificate(
            store.as_ref(),
            &alias,
            &subject,
            &["localhost".into()],
            &[],
            SystemTime::now(),
            30,
        )?;
    } else {
        pairgate_keystore::self_signed_certificate(
            store.as_ref(),
            &alias,
            &subject,
            SystemTime::now(),
            30,
        )?;
    }
    Ok(Identity {
        store,
        alias,
        pin: public.pin(),
    })
}

fn hsm_identity(module: &Path, dir: &Path) -> Result<Identity> {
    let label = format!("bench-{}", &pairgate_pki::Nonce::random().to_hex()[..12]);
    provision_token(module, &label, "bench-so", "bench-user")?;
    let pin = dir.join("pin");
    std::fs::write(&pin, "bench-user")?;
    let uri: Pkcs11Uri = format!(
        "pkcs11:token={label}?module-path={}&pin-source=file:{}",
        module.display(),
        pin.display()
    )
    .parse()?;
    identity(Arc::new(Pkcs11KeyStore::open(&uri)?), false)
}

/// Serves `server` on loopback: each connection gets "ok" and is closed.
async fn serve(server: TlsServer) -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok((mut stream, _)) = server.accept(tcp).await {
                    let _ = stream.write_all(b"ok").await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}

struct Measured {
    handshakes: u64,
    resumed: u64,
    errors: u64,
    elapsed: Duration,
    cpu: Duration,
    kx_group: String,
}

/// Runs `concurrency` loops of connect + read-to-end for `duration`.
async fn measure(
    client: TlsClient,
    addr: String,
    duration: Duration,
    concurrency: usize,
) -> Measured {
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let kx = Arc::new(std::sync::Mutex::new(String::new()));
    let cpu_start = super::procs::cpu_time(None);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, addr) = (client.clone(), addr.clone());
        let (done, resumed, errors, kx) =
            (done.clone(), resumed.clone(), errors.clone(), kx.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match client.connect(&addr, Some("localhost")).await {
                    Ok(mut stream) => {
                        let mut buf = Vec::with_capacity(8);
                        let _ = stream.read_to_end(&mut buf).await;
                        let conn = stream.get_ref().1;
                        if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                            resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(group) = conn.negotiated_key_exchange_group()
                            && let Ok(mut k) = kx.lock()
                            && k.is_empty()
                        {
                            *k = format!("{:?}", group.name());
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let kx_group = kx.lock().map(|k| k.clone()).unwrap_or_default();
    Measured {
        handshakes: done.load(Ordering::Relaxed),
        resumed: resumed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        cpu: super::procs::cpu_time(None).saturating_sub(cpu_start),
        kx_group,
    }
}

/// `openssl speed` for P-256 ECDSA and the key exchange `ecdh`
/// (`ecdhp256` or `ecdhx25519`): (sign/s, verify/s, ecdh/s).
pub(super) fn openssl_speed(seconds: u32, ecdh: &str) -> Result<(f64, f64, f64)> {
    let ecdh_label = match ecdh {
        "ecdhx25519" => "ecdh (X25519)",
        _ => "ecdh (nistp256)",
    };
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap256", ecdh])
        .output()
        .context("running openssl speed (is openssl installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers = |line: &str| -> Vec<f64> {
        line.split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok())
            .collect()
    };
    let mut result = (0.0, 0.0, 0.0);
    for line in text.lines() {
        if line.contains("ecdsa (nistp256)") {
            let n = numbers(line);
            // "256 bits ecdsa (nistp256)   sign-s verify-s  sign/s verify/s"
            if let [.., sign, verify] = n.as_slice() {
                result.0 = *sign;
                result.1 = *verify;
            }
        } else if line.contains(ecdh_label)
            && let Some(ops) = numbers(line).last()
        {
            result.2 = *ops;
        }
    }
    if result.0 == 0.0 || result.1 == 0.0 || result.2 == 0.0 {
        bail!("could not read openssl speed's output:\n{text}");
    }
    Ok(result)
}

fn row(label: &str, m: &Measured) -> (String, Value) {
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let per_s = m.handshakes as f64 / secs;
    let per_cpu = if m.cpu.is_zero() {
        0.0
    } else {
        m.handshakes as f64 / m.cpu.as_secs_f64()
    };
    let text = format!(
        "{label:<34} {per_s:>9.0}/s  {per_cpu:>9.0}/CPU-s  ({} in {secs:.1}s, {} resumed, {} errors, {})",
        m.handshakes, m.resumed, m.errors, m.kx_group
    );
    let value = json!({
        "case": label,
        "handshakes": m.handshakes,
        "resumed": m.resumed,
        "errors": m.errors,
        "seconds": secs,
        "cpu_seconds": m.cpu.as_secs_f64(),
        "per_second": per_s,
        "per_cpu_second": per_cpu,
        "key_exchange": m.kx_group,
    });
    (text, value)
}

/// `pairgate bench tls`.
pub(super) fn run(
    duration: Duration,
    concurrency: usize,
    pkcs11_module: &Path,
    out: &dyn Output,
) -> Result<()> {
    if std::env::var_os("SOFTHSM2_CONF").is_none()
        && pkcs11_module.to_string_lossy().contains("softhsm")
    {
        return reexec_with_softhsm();
    }
    tls_bench(duration, concurrency, pkcs11_module, out)
}

/// Runs this same command again with a throwaway SoftHSM2 token directory:
/// SoftHSM2 reads SOFTHSM2_CONF when the module initialises, and this
/// process may not change its own environment.
fn reexec_with_softhsm() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("pairgate-bench-")
        .tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", &conf)
        .status()?;
    if !status.success() {
        bail!("benchmark failed");
    }
    Ok(())
}

fn tls_bench(
    duration: Duration,
    concurrency: usize,
    module: &Path,
    out: &dyn Output,
) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("pairgate-bench-")
        .tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server_id = software_identity(&dir.path().join("server"), true)?;
    let mut clients = vec![(
        "software",
        software_identity(&dir.path().join("client"), false)?,
    )];
    if module.exists() {
        clients.push(("PKCS#11", hsm_identity(module, dir.path())?));
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut text = format!(
        "pairgate bench tls: {} per case, {concurrency} concurrent connections, client and server in one process on {cpus} CPUs\n",
        humanize(duration),
    );
    let mut rows = Vec::new();
    for (line, row) in runtime.block_on(cases(&server_id, &clients, duration, concurrency))? {
        text.push_str(&line);
        text.push('\n');
        rows.push(row);
    }
    if clients.len() == 1 {
        text.push_str(&format!(
            "(no PKCS#11 rows: {} not found)\n",
            module.display()
        ));
    }
    let (sign, verify, ecdh) = openssl_speed(1, "ecdhp256")?;
    // Public-key work of one full mutual P-256 handshake, both peers: two
    // ECDSA signatures, two verifications, two ECDH derivations.
    let ceiling = 1.0 / (2.0 / sign + 2.0 / verify + 2.0 / ecdh);
    text.push_str(&format!(
        "openssl speed (same machine, same run): P-256 sign {sign:.0}/s, verify {verify:.0}/s, ECDH {ecdh:.0}/s\n\
         crypto ceiling: {ceiling:.0} full mutual handshakes per CPU-second (2 sign + 2 verify + 2 ECDH per handshake)\n"
    ));
    for r in &mut rows {
        if let Some(per_cpu) = r["per_cpu_second"].as_f64()
            && r["case"].as_str().is_some_and(|c| c.starts_with("full"))
        {
            r["fraction_of_crypto_ceiling"] = json!(per_cpu / ceiling);
            text.push_str(&format!(
                "{:<34} {:>5.1}% of the crypto ceiling\n",
                r["case"].as_str().unwrap_or(""),
                100.0 * per_cpu / ceiling
            ));
        }
    }
    out.print(
        &text,
        json!({
            "benchmark": "tls",
            "duration_seconds": duration.as_secs_f64(),
            "concurrency": concurrency,
            "cpus": cpus,
            "cases": rows,
            "openssl_speed": { "ecdsap256_sign_per_s": sign, "ecdsap256_verify_per_s": verify, "ecdhp256_per_s": ecdh },
            "crypto_ceiling_full_handshakes_per_cpu_second": ceiling,
        }),
    );
    Ok(())
}

/// Every case, TLS 1.3 then 1.2: full handshakes with each client key,
/// and resumed ones with the software key. Each row as text and JSON.
async fn cases(
    server_id: &Identity,
    clients: &[(&str, Identity)],
    duration: Duration,
    concurrency: usize,
) -> Result<Vec<(String, Value)>> {
    let mut rows = Vec::new();
    for (version, policy) in [
        ("TLS 1.3", TlsPolicy::tls13_only()),
        ("TLS 1.2", TlsPolicy::tls12_only()),
    ] {
        let server = TlsServer::new(
            alias_certified_key(server_id.store.clone(), &server_id.alias)?,
            ClientAuth::AnyProvenKey,
            &policy,
        )?;
        let addr = serve(server).await?.to_string();
        for (key, id) in clients {
            let client = TlsClient::with_alias(
                id.store.clone(),
                &id.alias,
                ServerTrust::Pins(vec![server_id.pin]),
                &policy,
            )?;
            let m = measure(
                client.without_resumption(),
                addr.clone(),
                duration,
                concurrency,
            )
            .await;
            rows.push(row(&format!("full mTLS {version}, {key} key"), &m));
            if *key == "software" {
                let m = measure(client, addr.clone(), duration, concurrency).await;
                rows.push(row(&format!("resumed mTLS {version}, {key} key"), &m));
            }
        }
    }
    Ok(rows)
}
