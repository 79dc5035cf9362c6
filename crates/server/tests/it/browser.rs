//! CAS in a real headless Chromium through WebDriver (chromedriver): the
//! first-run admin signs in, changes the one-time password, enrols TOTP
//! from the page, registers a terminal, approves its pairing request with
//! a wrong and then the right code, unpairs it, and finds each step in the
//! audit log. A screenshot of every page lands in
//! `$PAIRGATE_TEST_ARTIFACTS/cas/` (default `target/test-artifacts/cas/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{Db, Fixture, TestTerminal};
use crate::web::Authenticator;

/// chromedriver on a port of its own, killed when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn driver() -> Driver {
    let port = free_port();
    let driver = Driver {
        child: Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver; scripts/test installs it)"),
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        // Chromium and chromedriver are outside processes: poll them.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

pub(crate) fn artifacts() -> PathBuf {
    let base = std::env::var_os("PAIRGATE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts")
        });
    let dir = base.join("cas");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) struct Shots {
    dir: PathBuf,
    n: usize,
}

impl Shots {
    /// Screenshots into `dir` (created).
    pub(crate) fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir, n: 0 }
    }

    pub(crate) async fn take(&mut self, c: &Client, name: &str) {
        self.n += 1;
        let png = c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(self.dir.join(format!("{:02}-{name}.png", self.n)), png).unwrap();
    }
}

pub(crate) async fn fill(c: &Client, name: &str, value: &str) {
    let field = c
        .find(Locator::Css(&format!("[name='{name}']")))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks and waits until the next page has replaced this one.
async fn click_through(c: &Client, css: &str) {
    let old = c.find(Locator::Css("main")).await.unwrap();
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..200 {
        // The old page's element goes stale once the new page is in.
        if old.text().await.is_err() {
            loaded(c).await;
            c.wait().for_element(Locator::Css("main")).await.unwrap();
            return;
        }
        // The page runs in Chromium, an outside process: poll it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new page after clicking {css}");
}

pub(crate) async fn submit(c: &Client, form: &str) {
    click_through(c, &format!("{form} button[type='submit']")).await;
}

pub(crate) async fn text(c: &Client, css: &str) -> String {
    // A page still settling can replace the element between find and read.
    for _ in 0..50 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            return t;
        }
        // Chromium and chromedriver are outside processes: poll them.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no readable {css}");
}

async fn loaded(c: &Client) {
    for _ in 0..200 {
        let state = c.execute("return document.readyState;", vec![]).await;
        if matches!(state, Ok(serde_json::Value::String(s)) if s == "complete") {
            return;
        }
        // The page runs in Chromium, an outside process: poll it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page did not finish loading");
}

pub(crate) async fn body(c: &Client) -> String {
    text(c, "body").await
}

/// The first-run admin signs in with the one-time password, sets a new
/// one and enrols TOTP from the page; returns their authenticator, on
/// the dashboard.
pub(crate) async fn first_admin(
    c: &Client,
    base: &str,
    password: &str,
    shots: &mut Shots,
) -> Authenticator {
    // Sign in with the one-time password.
    c.goto(&format!("{base}/terminals")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    shots.take(c, "login").await;
    fill(c, "username", "admin").await;
    fill(c, "password", password).await;
    submit(c, "form.stack").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/account/password");
    shots.take(c, "forced-password-change").await;
    fill(c, "current", password).await;
    fill(c, "new", "admin passphrase for the browser test").await;
    fill(c, "confirm", "admin passphrase for the browser test").await;
    submit(c, "form.stack").await;

    // Enrol TOTP from the key on the page.
    assert_eq!(c.current_url().await.unwrap().path(), "/account/two-factor");
    c.find(Locator::Css(".qr svg")).await.expect("a QR code");
    shots.take(c, "enrol-2fa").await;
    let secret = text(c, "span.code").await;
    let mut app = Authenticator::new(&format!("otpauth://totp/pairgate:admin?secret={secret}"));
    fill(c, "code", "123456").await;
    submit(c, "form.stack").await;
    assert!(
        body(c).await.contains("wrong code"),
        "a wrong enrolment code was accepted"
    );
    fill(c, "code", &app.fresh().await).await;
    submit(c, "form.stack").await;
    let codes = text(c, "#recovery-codes").await;
    assert_eq!(codes.lines().count(), pairgate_store::RECOVERY_CODES);
    shots.take(c, "recovery-codes").await;
    c.find(Locator::LinkText("Continue to the dashboard"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(body(c).await.contains("Dashboard"));
    shots.take(c, "dashboard").await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pairs_and_unpairs_a_terminal_in_chromium() {
    let f = Fixture::start(Db::Sqlite, |_| {}).await;
    let base = f.server.cas_url.clone();
    let password = f
        .server
        .first_run_password
        .as_ref()
        .unwrap()
        .reveal()
        .to_owned();
    let driver = driver().await;
    let c = browser(&driver).await;
    let mut shots = Shots::new(artifacts());

    let mut app = first_admin(&c, &base, &password, &mut shots).await;

    // Register a terminal through the form.
    c.goto(&format!("{base}/terminals/new")).await.unwrap();
    fill(&c, "serial", "ATM-0042").await;
    fill(&c, "name", "Lobby <b>east</b>").await;
    fill(&c, "location", "Main Street 1").await;
    fill(&c, "contact_name", "Jana").await;
    fill(&c, "contact_phone", "+420 123 456 789").await;
    shots.take(&c, "register-terminal").await;
    submit(&c, "form.stack").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/terminals/ATM-0042");
    assert!(
        body(&c).await.contains("Lobby <b>east</b>"),
        "the name is shown as text, not markup"
    );
    c.goto(&format!("{base}/terminals?q=lobby")).await.unwrap();
    assert!(text(&c, "#terminals").await.contains("ATM-0042"));
    shots.take(&c, "terminals").await;

    // The terminal asks to pair; the operator approves by its code.
    let terminal = TestTerminal::new("ATM-0042");
    let pairing = terminal.start_pairing(&f.gate(""), "ATM-0042").await;
    c.goto(&format!("{base}/requests")).await.unwrap();
    assert!(text(&c, "#requests").await.contains("ATM-0042"));
    shots.take(&c, "pairing-requests").await;
    c.find(Locator::LinkText("ATM-0042"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = text(&c, "#request-fingerprint").await;
    assert_eq!(shown.replace(' ', ""), terminal.fingerprint.to_hex());
    shots.take(&c, "pairing-request").await;
    let right = pairing.code.to_string();
    let wrong = if right == "1234-5678" {
        "8765-4321"
    } else {
        "1234-5678"
    };
    fill(&c, "code", wrong).await;
    fill(&c, "totp", &app.fresh().await).await;
    submit(&c, "form.stack").await;
    let page = body(&c).await;
    assert!(
        page.contains("wrong pairing code") && page.contains("2 attempt(s) left"),
        "{page}"
    );
    shots.take(&c, "approve-wrong-code").await;
    fill(&c, "code", &right).await;
    fill(&c, "totp", &app.fresh().await).await;
    submit(&c, "form.stack").await;
    assert!(body(&c).await.contains("Approved: ATM-0042 is paired."));
    assert_eq!(text(&c, "#request-state").await, "approved");
    shots.take(&c, "approved").await;

    // Unpair from the terminal's page.
    c.goto(&format!("{base}/terminals/ATM-0042")).await.unwrap();
    assert_eq!(text(&c, "#terminal-state").await, "paired");
    fill(&c, "totp", &app.fresh().await).await;
    // Waits for the answer's page: reading the body straight after the
    // click could read the page being left.
    click_through(
        &c,
        "form[action='/terminals/ATM-0042/unpair'] button.danger",
    )
    .await;
    assert!(body(&c).await.contains("Unpaired."));
    assert_eq!(text(&c, "#terminal-state").await, "unpaired");
    shots.take(&c, "unpaired").await;

    // Every step is in the audit log, and the chain holds.
    c.goto(&format!("{base}/audit?q=ATM-0042")).await.unwrap();
    let log = text(&c, "#audit").await;
    for action in [
        "terminal.register",
        "pairing.open",
        "pairing.wrong_code",
        "pairing.approve",
        "terminal.unpair",
    ] {
        assert!(log.contains(action), "{action} missing from the audit page");
    }
    assert!(text(&c, "#chain-status").await.contains("intact"));
    shots.take(&c, "audit").await;
    for (path, name) in [
        ("/operators", "operators"),
        ("/tokens", "api-tokens"),
        ("/terminals/import", "import"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        shots.take(&c, name).await;
    }
    // A phone-sized window still shows the dashboard without sideways scroll.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    let scroll: serde_json::Value = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        scroll,
        serde_json::Value::Bool(true),
        "the dashboard scrolls sideways on a phone"
    );
    shots.take(&c, "dashboard-phone").await;

    c.close().await.unwrap();
    f.server.shutdown().await;
}
