//! The committed C header is the one cbindgen makes from the code: a
//! change to the exported functions without a new header fails here.
//! `PAIRGATE_BLESS=1` writes the new header instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut made = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .unwrap()
        .write(&mut made);
    let path = crate_dir.join("include/pairgate.h");
    if std::env::var_os("PAIRGATE_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == made,
        "{} is not what cbindgen makes from the code; regenerate it with \
         PAIRGATE_BLESS=1 cargo test -p pairgate-ffi --test it header",
        path.display()
    );
}
