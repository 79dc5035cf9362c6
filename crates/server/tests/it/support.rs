//! A server on 127.0.0.1 with ports of its own, on SQLite or PostgreSQL;
//! test terminals with self-signed keys; operators with an authenticator.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pairgate_pki::{Nonce, PairingCode, SpkiPin, TerminalFingerprint};
use pairgate_server::Clock;
use pairgate_server::{Server, Settings};
use pairgate_store::{Actor, NewTerminal, Role, Store, StoreError, Terminal};
use pairgate_testkit::{TempDir, temp_dir};
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::https::{HttpsClient, HttpsResponse};
use rustls::sign::CertifiedKey;

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running server, its settings and a store handle for the admin side.
pub struct Fixture {
    pub server: Server,
    pub store: Store,
    pub settings: Settings,
    pub dir: TempDir,
}

impl Fixture {
    pub async fn start(db: Db, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with_clock(db, Clock::system(), tweak).await
    }

    /// A server reading `clock`: a test moves a manual one forward
    /// instead of sleeping.
    pub async fn start_with_clock(db: Db, clock: Clock, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_prepared(db, clock, tweak, async |_| {}).await
    }

    /// A server started after `prepare` wrote to its fresh store (what
    /// an operator's commands record before the first start).
    pub async fn start_prepared(
        db: Db,
        clock: Clock,
        tweak: impl FnOnce(&mut Settings),
        prepare: impl AsyncFnOnce(&Store),
    ) -> Self {
        let dir = temp_dir();
        let mut settings = Settings {
            data_dir: dir.path().join("data"),
            gate_listen: "127.0.0.1:0".into(),
            master_listen: "127.0.0.1:0".into(),
            cas_listen: "127.0.0.1:0".into(),
            metrics_listen: "127.0.0.1:0".into(),
            paired_poll_ms: 100,
            ..Settings::default()
        };
        if let Db::Postgres = db {
            settings.database_url = pairgate_testkit::fresh_postgres_database().await;
        }
        tweak(&mut settings);
        std::fs::create_dir_all(&settings.data_dir).unwrap();
        prepare(&pairgate_server::open_store(&settings).await.unwrap()).await;
        let server = Server::start_with_clock(&settings, clock).await.unwrap();
        let store = pairgate_server::open_store(&settings).await.unwrap();
        Self {
            server,
            store,
            settings,
            dir,
        }
    }

    pub fn gate(&self, path: &str) -> String {
        format!("https://{}{path}", self.server.gate_addr)
    }

    pub fn master(&self, path: &str) -> String {
        format!("https://{}{path}", self.server.master_addr)
    }

    /// Unpairs `serial` in the store, as an operator would.
    pub async fn unpair(&self, serial: &str) {
        self.store
            .unpair(
                &pairgate_store::Serial::new(serial).unwrap(),
                &pairgate_store::TrustChange::local("olga"),
                SystemTime::now(),
            )
            .await
            .unwrap();
    }

    pub async fn register(&self, serial: &str) -> Terminal {
        let new = NewTerminal {
            serial: serial.into(),
            name: format!("ATM {serial}"),
            contact_name: "Jana".into(),
            contact_phone: "+420 1".into(),
            ..NewTerminal::default()
        };
        self.store
            .register_terminal(
                &new,
                &pairgate_store::Changer::local("admin"),
                SystemTime::now(),
            )
            .await
            .unwrap()
    }
}

/// A terminal with a self-signed P-256 client certificate.
#[derive(Clone)]
pub struct TestTerminal {
    pub key: Arc<CertifiedKey>,
    pub fingerprint: TerminalFingerprint,
}

impl TestTerminal {
    pub fn new(cn: &str) -> Self {
        Self::with(cn, |_| {})
    }

    /// A terminal whose certificate `tweak` changes (size, validity, CA
    /// flag) before it is signed.
    pub fn with(cn: &str, tweak: impl FnOnce(&mut rcgen::CertificateParams)) -> Self {
        Self::with_key(cn, &rcgen::KeyPair::generate().unwrap(), tweak)
    }

    /// A terminal with `key` and a certificate `tweak` changes.
    pub fn with_key(
        cn: &str,
        key: &rcgen::KeyPair,
        tweak: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        tweak(&mut params);
        let cert = params.self_signed(key).unwrap();
        let provider = TlsPolicy::default().provider();
        let certified = pairgate_tls::pem_certified_key(
            &provider,
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap();
        Self {
            fingerprint: TerminalFingerprint::of_certificate(cert.der()),
            key: certified,
        }
    }

    /// Its certificate (DER).
    pub fn certificate(&self) -> Vec<u8> {
        self.key.cert[0].to_vec()
    }

    pub fn tls(&self, trust: ServerTrust) -> TlsClient {
        TlsClient::new(Some(self.key.clone()), trust, &TlsPolicy::default()).unwrap()
    }

    pub fn https(&self, trust: ServerTrust) -> HttpsClient {
        HttpsClient::new(self.tls(trust).without_resumption())
    }

    /// Steps 2–3 of the protocol against `gate_url` (the gate, or a relay):
    /// returns the request id and the code this terminal shows.
    pub async fn start_pairing(&self, gate_url: &str, serial: &str) -> Pairing {
        let nonce = Nonce::random();
        let body = serde_json::json!({
            "serial": serial, "model": "X9", "firmware": "1.0",
            "commitment": nonce.commitment().to_hex(),
        });
        let r = post(
            &self.https(ServerTrust::FirstContact),
            &format!("{gate_url}/v1/pairing"),
            &body,
        )
        .await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let pin = r.server_pin.unwrap();
        let json = json(&r);
        let id = json["request_id"].as_str().unwrap().to_owned();
        let server_nonce: Nonce = json["server_nonce"].as_str().unwrap().parse().unwrap();
        assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
        // From now on only the key seen at first contact is trusted.
        let pinned = self.https(ServerTrust::Pins(vec![pin]));
        let r = post(
            &pinned,
            &format!("{gate_url}/v1/pairing/{id}/reveal"),
            &serde_json::json!({ "terminal_nonce": nonce.to_hex() }),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        Pairing {
            id,
            pin,
            code: PairingCode::derive(&self.fingerprint, &pin, &nonce, &server_nonce),
        }
    }
}

/// A pairing in progress, as the terminal sees it.
pub struct Pairing {
    pub id: String,
    pub pin: SpkiPin,
    pub code: PairingCode,
}

pub async fn post(client: &HttpsClient, url: &str, body: &serde_json::Value) -> HttpsResponse {
    client
        .request(
            "POST",
            url,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
        .unwrap()
}

pub async fn get(client: &HttpsClient, url: &str) -> HttpsResponse {
    client.request("GET", url, &[], None).await.unwrap()
}

pub fn json(r: &HttpsResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

/// Asserts a JSON error answer with `status` and `code`.
pub fn assert_error(r: &HttpsResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let j = json(r);
    assert_eq!(j["error"]["code"], code, "{j}");
    assert!(!j["error"]["message"].as_str().unwrap().is_empty());
}

/// An operator and their authenticator.
pub struct Operator {
    pub name: String,
    uri: String,
    step: u64,
}

impl Operator {
    pub async fn create(store: &Store, name: &str) -> Self {
        let creds = store
            .create_operator(
                name,
                Role::Operator,
                &Actor::new("admin"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        Self::from_uri(name, &creds.totp_uri)
    }

    pub fn from_uri(name: &str, uri: &str) -> Self {
        Self {
            name: name.into(),
            uri: uri.to_owned(),
            step: pairgate_testkit::totp_step_now() - 1,
        }
    }

    /// A valid code for a later step than any used before (within the
    /// accepted skew of now: at most two per 30 s window are fresh).
    pub fn code_at(&mut self, now: SystemTime) -> String {
        let current = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 30;
        self.step = (self.step + 1).max(current - 1);
        assert!(self.step <= current + 1, "out of fresh TOTP steps");
        pairgate_testkit::totp_code(&self.uri, self.step)
    }

    pub async fn approve(
        &mut self,
        store: &Store,
        id: &str,
        code: PairingCode,
    ) -> Result<Terminal, StoreError> {
        let now = SystemTime::now();
        let totp = self.code_at(now);
        let proof = store.verify_second_factor(&self.name, &totp, now).await?;
        store.approve_pairing(id, &code, &proof, now).await
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // What is awaited happens on the server's own tasks (a listener, a
        // background job) or in an outside process: poll until `within`.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generates one `#[tokio::test]` per database for each listed test body
/// `async fn NAME(db: Db)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Db::Postgres).await;
                }
            )*
        }
    };
}

/// The fixture's PostgreSQL database, which a test cuts off and brings
/// back as an outage does.
pub struct Outage {
    admin: sqlx::PgPool,
    database: String,
}

impl Outage {
    pub async fn of(f: &Fixture) -> Self {
        let database: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(f.store.pool())
            .await
            .unwrap();
        let url = std::env::var("PAIRGATE_TEST_DATABASE_URL").unwrap();
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        Self { admin, database }
    }

    /// Refuses new connections and ends the open ones (`false`), or takes
    /// connections again (`true`).
    pub async fn reachable(&self, allow: bool) {
        // The name is the test kit's own (letters, digits and _), quoted.
        let sql = format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}",
            self.database
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await
            .unwrap();
        if !allow {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.database)
            .execute(&self.admin)
            .await
            .unwrap();
        }
    }
}
