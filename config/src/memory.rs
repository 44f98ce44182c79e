//! How the process's allocator treats the model runtime's large temporaries.
//!
//! A forward pass allocates and frees buffers of megabytes per layer (the
//! FFN activations of a 256-token prefill are ~9 MiB each, a 16-row logits
//! matrix ~10 MiB). glibc serves such sizes with `mmap` and returns them to
//! the kernel on `free`, or trims the heap below them, so every pass faults
//! the same memory in again page by page: ~180,000 page faults per 256-token
//! prefill of the 1.5B (measured with `perf stat -e page-faults`), about an
//! eighth of its time, plus `munmap` and zeroing in every verify pass. Keeping
//! freed memory in the heap turns that into plain reuse. It does not raise
//! the peak: the same buffers are live at the peak either way.

/// Largest allocation glibc still serves from the heap when asked (its own
/// ceiling on 64-bit targets); bigger ones (the KV caches) keep their `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap is handed back only past this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Keeps freed runtime buffers for reuse instead of returning them to the
/// kernel. Call once at start-up, before the model loads. A no-op where the
/// C library is not glibc (the allocators there have their own policies).
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // thread of ours allocates concurrently, and both values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
