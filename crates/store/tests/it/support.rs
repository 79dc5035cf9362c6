//! A fresh store per test on either backend.

use pairgate_store::Store;
use pairgate_testkit::{TempDir, temp_dir};

/// Keeps a test's SQLite directory alive.
pub struct Fixture {
    pub store: Store,
    _dir: Option<TempDir>,
}

pub async fn sqlite() -> Fixture {
    let dir = temp_dir();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    Fixture {
        store,
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Fixture {
    let url = pairgate_testkit::fresh_postgres_database().await;
    let store = Store::open(&url).await.unwrap();
    Fixture { store, _dir: None }
}

/// Generates one `#[tokio::test]` per backend for each listed test body
/// `async fn NAME(store: &Store)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = $crate::support::sqlite().await;
                    super::$name(&f.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = $crate::support::postgres().await;
                    super::$name(&f.store).await;
                }
            )*
        }
    };
}
