//! The tokio runtime of the manager and the node agent.

/// Builds the runtime with `threads` threads; 0 means one per core.
///
/// One thread (the servers' default) runs each task where the I/O that wakes it arrives, so a
/// job crosses no thread inside the process: a crossing wakes an idle core, ~20-50 µs and CPU
/// on both sides. One thread serves well over 10,000 jobs/s; more help only on a node whose
/// process needs more than a core.
pub fn build(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    b.enable_all().build()
}
