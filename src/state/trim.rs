//! Returning memory after a reload. A reload at a million registries builds a whole second
//! name table beside the first; when the old one is dropped, the allocator keeps its pages
//! (glibc: RSS went from 692 MB after start to 1 820 MB after a few reloads, and stayed).
//! After every publish that replaced the registry set, the writer hands the previous
//! snapshot to a blocking task that drops it — the free of a million registries never runs
//! on the writer — and then asks the allocator to give free pages back: `mi_collect(true)`
//! for mimalloc (the binary's allocator: 527 MB after start, 373–388 MB after each of five
//! reloads) and `malloc_trim(0)` for glibc (tests, embedders).
//!
//! `STEERDNS_MALLOC_TRIM=0` turns it off (to measure what it does).

use std::sync::Arc;

use tracing::debug;

use super::Snapshot;

/// Drop `old` off the writer's thread, then trim the heap (unless turned off).
pub(super) fn release(old: Arc<Snapshot>) {
    // Detached: nobody waits for it; it ends on its own.
    drop(tokio::task::spawn_blocking(move || {
        // Queries still holding it keep it alive; the last reference may be theirs.
        drop(old);
        if std::env::var("STEERDNS_MALLOC_TRIM").as_deref() == Ok("0") {
            return;
        }
        let start = std::time::Instant::now();
        let released = trim();
        debug!(
            released,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "malloc_trim after a reload"
        );
    }));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: mi_collect and malloc_trim only walk their allocator's own heaps under their
    // locks; no pointer of ours is involved; both may be called from any thread at any
    // time, and each is a no-op for an allocator that is not in use (the binary uses
    // mimalloc; tests and other embedders use glibc).
    unsafe {
        libmimalloc_sys::mi_collect(true);
        libc::malloc_trim(0) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
