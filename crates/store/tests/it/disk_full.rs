//! Issue 12, finding 11: after a write fails on a full disk, every pooled
//! SQLite connection must work again as soon as the disk has room (they
//! used to keep a stale transaction depth and fail every write for 30
//! minutes). The disk is a 4 MiB tmpfs, so this needs root to mount it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use pairgate_store::{NewTerminal, Store, StoreError};

/// A small tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

async fn register(store: &Store, serial: &str) -> Result<(), StoreError> {
    let new = NewTerminal {
        serial: serial.into(),
        name: "x".repeat(100),
        ..NewTerminal::default()
    };
    store
        .register_terminal(
            &new,
            &pairgate_store::Changer::local("admin"),
            SystemTime::now(),
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_work_again_at_once_after_the_disk_was_full() {
    let dir = pairgate_testkit::temp_dir();
    let Some(_disk) = SmallDisk::mount(dir.path()) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs as root and must mount the tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let store = Store::open_data_dir(&dir.path().join("data"))
        .await
        .unwrap();
    register(&store, "OK-0").await.unwrap();
    // Fill the disk, then let writes fail on it, concurrently so that
    // every pooled connection sees a failure.
    let filler = dir.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while file.write_all(&[0u8; 64 * 1024]).is_ok() {}
    let _ = file.write_all(&[0u8; 512]);
    drop(file);
    let mut failures = 0;
    for round in 0..4 {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { register(&store, &format!("FULL-{round}-{i}")).await })
            })
            .collect();
        for t in tasks {
            if t.await.unwrap().is_err() {
                failures += 1;
            }
        }
    }
    assert!(failures > 0, "the disk was never full");
    // Room again: every write works at once, on every connection.
    std::fs::remove_file(&filler).unwrap();
    for i in 0..16 {
        let r = register(&store, &format!("AFTER-{i}")).await;
        assert!(r.is_ok(), "write {i} after the disk recovered: {r:?}");
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { register(&store, &format!("PAR-{i}")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Closed before the tmpfs is unmounted.
    store.pool().close().await;
}
