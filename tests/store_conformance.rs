//! Every store passes the same conformance suite (`store_suite.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use twingraph::store::{Store, StoreConfig, embedded};

use crate::support::{sample_models, scratch_dir};

/// A fresh data directory per test (tests run in parallel).
pub fn fresh_dir() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    scratch_dir(&format!(
        "store-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

mod memory {
    use super::*;

    crate::store_conformance!(Arc::new(Store::in_memory(
        sample_models(),
        StoreConfig::default()
    )));
}

mod embedded_store {
    use super::*;

    crate::store_conformance!(Arc::new(
        embedded::open(&fresh_dir(), sample_models(), StoreConfig::default())
            .expect("open embedded store")
    ));
}

mod bolt_store {
    use super::*;

    crate::store_conformance!(Arc::new(
        crate::bolt::store(sample_models(), StoreConfig::default()).await
    ));
}
