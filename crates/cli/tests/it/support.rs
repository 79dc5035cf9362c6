//! Running the binary.

use std::path::Path;
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "a long terminal passphrase";

/// `pairgate ARGS` with the software store passphrase in the environment.
pub fn pairgate(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pairgate"))
        .args(args)
        .current_dir(cwd)
        .env("PAIRGATE_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .env_remove("PAIRGATE_KEYSTORE")
        .env_remove("PAIRGATE_STATE")
        .env_remove("PAIRGATE_FIRMWARE_ROOTS")
        .output()
        .unwrap()
}

/// Runs and requires success; returns stdout.
pub fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = pairgate(cwd, args);
    assert!(
        out.status.success(),
        "pairgate {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and requires failure; returns stderr.
pub fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = pairgate(cwd, args);
    assert!(
        !out.status.success(),
        "pairgate {} succeeded but should not",
        args.join(" ")
    );
    String::from_utf8(out.stderr).unwrap()
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
