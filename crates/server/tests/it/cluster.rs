//! Instances that run some of the services over one store: the identity
//! the store records is the only one any instance serves with, and the
//! rate limits count across instances.

use pairgate_pki::Nonce;
use pairgate_server::{Clock, Instance, ServiceSet, Settings};
use pairgate_tls::client::ServerTrust;

use crate::support::{Db, Fixture, TestTerminal, assert_error, post};
use crate::web::Web;

fn only(names: &[&str]) -> ServiceSet {
    ServiceSet::parse(names).unwrap()
}

/// The fixture's settings for another instance: its own data directory
/// and ports, the same database (on SQLite, the first one's file).
pub(crate) fn another(f: &Fixture, name: &str) -> Settings {
    let mut database_url = f.settings.database_url.clone();
    if database_url.is_empty() {
        database_url = format!(
            "sqlite:{}",
            f.settings.data_dir.join("pairgate.db").display()
        );
    }
    Settings {
        data_dir: f.dir.path().join(name),
        database_url,
        ..f.settings.clone()
    }
}

/// `settings` presenting the identity of `f`'s server (copied by path, as
/// an operator copies the files or names one HSM).
pub(crate) fn sharing_identity(f: &Fixture, mut settings: Settings) -> Settings {
    settings.identity_keystore = f.settings.identity_keystore();
    settings.identity_passphrase_file = f.settings.identity_passphrase_file().display().to_string();
    settings
}

async fn refused(settings: &Settings, services: ServiceSet) -> String {
    Instance::start(settings, services, Clock::system())
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

/// A fresh store: an instance running some services refuses to make the
/// identity; `server init` makes and records it, and then that instance
/// starts with it.
async fn only_init_or_a_full_server_creates_the_identity(db: Db) {
    let dir = pairgate_testkit::temp_dir();
    let mut settings = Settings {
        data_dir: dir.path().join("data"),
        gate_listen: "127.0.0.1:0".into(),
        master_listen: "127.0.0.1:0".into(),
        cas_listen: "127.0.0.1:0".into(),
        metrics_listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    if let Db::Postgres = db {
        settings.database_url = pairgate_testkit::fresh_postgres_database().await;
    }
    let why = refused(&settings, only(&["master"])).await;
    assert!(why.contains("pairgate server init"), "{why}");
    assert!(!dir.path().join("data/identity").exists());
    assert!(!dir.path().join("data/identity.passphrase").exists());
    let clock = Clock::system();
    let first = pairgate_server::init(&settings, &clock).await.unwrap();
    assert!(first.first_run_password.is_some());
    let again = pairgate_server::init(&settings, &clock).await.unwrap();
    assert_eq!(again.pin, first.pin);
    assert!(again.first_run_password.is_none());
    let master = Instance::start(&settings, only(&["master"]), clock)
        .await
        .unwrap();
    assert_eq!(master.pin, first.pin);
    assert!(master.master_addr.is_some());
    assert!(master.gate_addr.is_none() && master.cas.is_none());
    master.shutdown().await;
}

/// A second instance without the identity, or with a key of its own,
/// refuses to start and says how to provide the identity; with the
/// identity shared it serves with the same pin.
async fn instances_serve_only_the_recorded_identity(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let bare = another(&f, "bare");
    let why = refused(&bare, only(&["gate"])).await;
    assert!(why.contains("copy the identity"), "{why}");
    assert!(!bare.data_dir.join("identity").exists());
    // Even every service on a store that records an identity makes none.
    let why = refused(&bare, ServiceSet::ALL).await;
    assert!(why.contains("copy the identity"), "{why}");
    // A node whose key is another one.
    let stranger = another(&f, "stranger");
    pairgate_server::identity::load(
        &stranger.identity_keystore(),
        &stranger.identity_passphrase_file(),
        &["localhost".to_owned()],
        std::time::SystemTime::now(),
        pairgate_server::identity::Creating::Allowed,
    )
    .unwrap();
    let why = refused(&stranger, only(&["master"])).await;
    assert!(
        why.contains("not the server identity the store records"),
        "{why}"
    );
    assert!(why.contains(&f.server.pin.to_hex()), "{why}");
    let shared = sharing_identity(&f, another(&f, "shared"));
    let gate = Instance::start(&shared, only(&["gate"]), Clock::system())
        .await
        .unwrap();
    assert_eq!(gate.pin, f.server.pin);
    assert!(gate.master_addr.is_none() && gate.cas.is_none());
    // It serves: a terminal pairs through the second gate.
    let terminal = TestTerminal::new("ATM-7");
    f.register("ATM-7").await;
    let pairing = terminal
        .start_pairing(&format!("https://{}", gate.gate_addr.unwrap()), "ATM-7")
        .await;
    assert!(!pairing.id.is_empty());
    gate.shutdown().await;
    f.server.shutdown().await;
}

/// Unknown-serial attempts and failed sign-ins made on one instance count
/// on the other.
async fn rate_limits_hold_across_instances(db: Db) {
    let f = Fixture::start(db, |s| {
        s.unknown_serial_per_minute = 100;
        s.unknown_serial_per_address_per_minute = 4;
        s.login_failures_per_account = 3;
        s.login_failures_per_address = 50;
    })
    .await;
    let other = Instance::start(
        &sharing_identity(&f, another(&f, "b")),
        only(&["gate", "cas"]),
        Clock::system(),
    )
    .await
    .unwrap();
    let trust = ServerTrust::Pins(vec![f.server.pin]);
    let ask = |serial: &str| serde_json::json!({"serial": serial, "commitment": Nonce::random().commitment().to_hex()});
    let gates = [
        format!("https://{}/v1/pairing", f.server.gate_addr),
        format!("https://{}/v1/pairing", other.gate_addr.unwrap()),
    ];
    // Two attempts on each instance use up the address's four.
    for (i, url) in gates.iter().chain(gates.iter()).enumerate() {
        let client = TestTerminal::new("probe").https(trust.clone());
        let r = post(&client, url, &ask(&format!("NOPE-{i}"))).await;
        assert_error(&r, 403, "PG-UNKNOWN-SERIAL");
    }
    for url in &gates {
        let client = TestTerminal::new("probe").https(trust.clone());
        assert_error(
            &post(&client, url, &ask("NOPE-X")).await,
            429,
            "PG-RATE-LIMITED",
        );
    }
    // Failed sign-ins: two on the first CAS, one on the second, then the
    // right password is refused on both.
    let password = f
        .server
        .first_run_password
        .as_ref()
        .unwrap()
        .reveal()
        .to_owned();
    let attempt = async |addr, pw: &str| {
        let mut web = Web::new(addr);
        let page = web.get("/login").await;
        let fields = [
            ("csrf", page.csrf()),
            ("username", "admin".into()),
            ("password", pw.into()),
        ];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        web.post("/login", &fields).await
    };
    let cas_b = other.cas.as_ref().unwrap().0;
    for addr in [f.server.cas_addr, f.server.cas_addr, cas_b] {
        assert_eq!(attempt(addr, "guess").await.status, 401);
    }
    for addr in [cas_b, f.server.cas_addr] {
        let r = attempt(addr, &password).await;
        assert_eq!(r.status, 429, "{}", r.body);
    }
    other.shutdown().await;
    f.server.shutdown().await;
}

crate::on_both_databases!(
    only_init_or_a_full_server_creates_the_identity,
    instances_serve_only_the_recorded_identity,
    rate_limits_hold_across_instances,
);
