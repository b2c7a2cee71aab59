//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared DTDL corpora (`../shared/corpora/dtdl` beside the repository),
/// or the folder named by `TWINGRAPH_DTDL_CORPUS`. Panics with a clear
/// message when it cannot be found: these tests are never silently skipped.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("TWINGRAPH_DTDL_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/dtdl"),
    };
    assert!(
        dir.join("spec").is_dir() && dir.join("models").is_dir(),
        "the DTDL corpora are missing at {}: these tests need ../shared/corpora/dtdl \
         (or set TWINGRAPH_DTDL_CORPUS to its location)",
        dir.display()
    );
    dir
}
