//! Memory figures for the long-running examples (`soak.rs`, `memory_bounds.rs`): resident
//! memory, and on glibc the bytes the allocator has handed out and not had back, which
//! tells a growing heap (a leak, a map without bound) from an allocator that keeps freed
//! pages.

/// Resident memory of this process, in KiB (`VmRSS`), or 0 where `/proc` is missing.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Heap bytes in use (allocated and not freed, over every arena, mmapped blocks
/// included), in KiB; `None` off glibc.
pub fn heap_in_use_kib() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[repr(C)]
        struct MallInfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        extern "C" {
            fn mallinfo2() -> MallInfo2;
        }
        // SAFETY: glibc's `mallinfo2` (2.33+) takes no arguments and returns a plain struct.
        let info = unsafe { mallinfo2() };
        Some(((info.uordblks + info.hblkhd) / 1024) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// `heap 1234 KiB`, or nothing off glibc.
pub fn heap_note() -> String {
    heap_in_use_kib().map_or_else(String::new, |k| format!(", heap in use {k} KiB"))
}
