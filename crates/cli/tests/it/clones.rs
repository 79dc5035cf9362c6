//! A restore point run beside the original terminal: the copy's heartbeat
//! counter repeats the original's past, the master marks the terminal
//! `suspected_clone` (`pairgate admin terminal list --json`), and an
//! operator's `admin resume` with a fresh TOTP clears it.

use crate::agent::{approve, start_pair};
use crate::firmware::server_with_terminal;
use crate::support::{json, terminal_json, totp_now};
use pairgate_testkit::temp_dir;

fn row(listed: &serde_json::Value, serial: &str) -> serde_json::Value {
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["serial"] == serial)
        .cloned()
        .unwrap()
}

#[test]
fn a_restored_copy_beside_the_original_is_a_suspected_clone() {
    let dir = temp_dir();
    let cwd = dir.path();
    let (server, uri) = server_with_terminal(cwd, "ATM-R");
    terminal_json(cwd, "orig", &["init"]);
    let (mut child, code, id) = start_pair(
        cwd,
        &[
            "--json",
            "terminal",
            "--state",
            "orig",
            "pair",
            "--gate",
            &server.gate,
            "--serial",
            "ATM-R",
        ],
    );
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success());

    assert_eq!(
        terminal_json(cwd, "orig", &["heartbeat", "--firmware", "1.0"])["counter"],
        1
    );
    std::fs::write(cwd.join("pass"), "a long backup passphrase").unwrap();
    terminal_json(
        cwd,
        "orig",
        &[
            "backup",
            "--out",
            "t.restore",
            "--backup-passphrase-file",
            "pass",
        ],
    );
    for expected in [2, 3] {
        assert_eq!(
            terminal_json(cwd, "orig", &["heartbeat"])["counter"],
            expected
        );
    }
    let listed = json(&server.admin(cwd, &["--json", "terminal", "list"]));
    assert_eq!(row(&listed, "ATM-R")["suspected_clone"], false);

    // The copy, restored from the point taken at counter 1, sends 2.
    terminal_json(
        cwd,
        "copy",
        &[
            "restore",
            "--from",
            "t.restore",
            "--backup-passphrase-file",
            "pass",
        ],
    );
    assert_eq!(terminal_json(cwd, "copy", &["heartbeat"])["counter"], 2);
    let suspected = (0..100).find_map(|_| {
        let listed = json(&server.admin(cwd, &["--json", "terminal", "list"]));
        let t = row(&listed, "ATM-R");
        if t["suspected_clone"] == true {
            return Some(t);
        }
        // The master writes the suspicion from its own task.
        std::thread::sleep(std::time::Duration::from_millis(50));
        None
    });
    let t = suspected.expect("no suspected_clone after the copy's heartbeat");
    assert_eq!(t["clone_evidence"]["highest_counter"], 3, "{t}");
    assert_eq!(t["clone_evidence"]["counter"], 2, "{t}");
    assert_eq!(t["state"], "paired", "alert only by default: {t}");

    let resumed = json(&server.admin(
        cwd,
        &[
            "--json",
            "resume",
            "ATM-R",
            "--operator",
            "olga",
            "--totp",
            &totp_now(&uri, 1),
        ],
    ));
    assert_eq!(resumed["suspected_clone"], false, "{resumed}");
}
