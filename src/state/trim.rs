//! Returning memory after a reload. A reload at a million registries builds a whole second
//! name table beside the first; when the old one is dropped, glibc keeps its pages (RSS went
//! from 658 MB after start to 1 301 MB after one reload, and stayed). After every publish
//! that replaced the registry set, the writer hands the previous snapshot to a blocking task
//! that drops it — the free of a million registries never runs on the writer — and then
//! calls `malloc_trim(0)`, which gives the free pages of every arena back to the kernel.
//!
//! `STEERDNS_MALLOC_TRIM=0` turns the trim off (to measure what it does).

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
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; no pointer of
    // ours is involved, and it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
