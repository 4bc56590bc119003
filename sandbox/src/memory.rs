//! The memory wall and the memory the signer keeps: glibc's allocator tuned for a small locked
//! process, the heap trimmed, every page locked (no secret ever goes to swap), and then the
//! pages of mapped files that cannot hold a secret let go again.
//!
//! Order, from [`crate::sanitize_process`] and the daemon's `confine`:
//! 1. [`tune_allocator`], first thing in `main`: one malloc arena, and large blocks (the
//!    keystore's scrypt buffers) always in their own mappings, returned when freed;
//! 2. [`trim_heap`] just before locking: free heap pages go back to the kernel (a locked
//!    page can no longer be given back);
//! 3. [`lock_all_memory`] or [`lock_current_memory`];
//! 4. [`FilePages::unlock`], right after locking: the read-only, unmodified mappings of the
//!    binary and its libraries (code and constants) are unlocked. They are copies of files
//!    anyone can read, never a secret;
//! 5. [`FilePages::release`], once start-up is over and the signer serves: their pages are
//!    dropped from the signer's memory, and what it runs from then on is faulted in again from
//!    the page cache. Start-up code (argument parsing, the keystore KDF, landlock and seccomp
//!    set-up, the journal's replay) then no longer sits locked in RAM for the signer's life.

use rustix::mm::{MlockAllFlags, mlockall};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::SandboxError;

/// RLIMIT_MEMLOCK the signer raises itself to when it starts as root (the systemd unit
/// sets the same with `LimitMEMLOCK=`). `mlockall(MCL_FUTURE)` counts every later
/// mapping (thread stacks, allocator arenas) against it, so it must cover the whole
/// address space the signer will ever map, not only its resident memory.
pub const MEMLOCK_BUDGET: u64 = 256 * 1024 * 1024;

/// Blocks this large or larger get a mapping of their own, unmapped when freed. Fixed, so
/// that glibc does not raise it after the first large free (its dynamic threshold would keep
/// the next scrypt buffer in the heap, resident and later locked, for good).
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory at the top of the heap beyond this is given back at once.
const TRIM_THRESHOLD: i32 = 128 * 1024;

/// Tunes glibc's malloc. Call it first thing in `main`, single threaded, before any large
/// allocation.
///
/// One arena: each extra arena reserves 64 MiB of address space (128 MiB while it is being
/// aligned), and under `MCL_FUTURE` every reserved byte counts against RLIMIT_MEMLOCK:
/// measured on the tokio probe, 3 threads meant 140 MiB mapped (peak 206 MiB) with arenas,
/// against a few MiB with one. The signer serialises on its ledger anyway, so one arena costs
/// it nothing measurable. A fixed mmap threshold and a small trim threshold: see the constants.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        for (param, value) in [
            (libc::M_ARENA_MAX, 1),
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ] {
            // SAFETY: mallopt only sets a tunable of glibc's allocator; each value is a
            // positive size glibc accepts for its parameter. Called while single threaded.
            #[allow(unsafe_code)]
            let _ = unsafe { libc::mallopt(param, value) };
        }
    }
}

/// Gives the heap's free pages back to the kernel. Call it just before locking memory.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory of glibc's own heap to the kernel; it
        // touches no live allocation. Called while single threaded.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::malloc_trim(0) };
    }
}

/// Raise RLIMIT_MEMLOCK toward [`MEMLOCK_BUDGET`] as far as this process may (the hard
/// limit only with CAP_SYS_RESOURCE), and say whether the budget is now met.
pub fn raise_memlock_limit() -> bool {
    let budget = Rlimit {
        current: Some(MEMLOCK_BUDGET),
        maximum: Some(MEMLOCK_BUDGET),
    };
    let now = getrlimit(Resource::Memlock);
    if meets_budget(now.current) {
        return true;
    }
    if setrlimit(Resource::Memlock, budget).is_err() {
        // No CAP_SYS_RESOURCE: the soft limit may still go up to the hard one.
        let soft = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        let _ = setrlimit(Resource::Memlock, soft);
    }
    meets_budget(getrlimit(Resource::Memlock).current)
}

fn meets_budget(limit: Option<u64>) -> bool {
    limit.is_none_or(|l| l >= MEMLOCK_BUDGET)
}

/// Lock all current and future pages in RAM so no secret is ever written to swap. Only
/// call it when [`raise_memlock_limit`] said the budget is met: with `MCL_FUTURE` every
/// later mapping counts against RLIMIT_MEMLOCK, and one over it fails (an allocation
/// failure, an abort). `MCL_ONFAULT` locks pages as they are touched instead of
/// populating every mapping up front (thread stacks stay small in RAM); a secret is
/// written, hence touched, hence locked.
pub fn lock_all_memory() -> Result<(), SandboxError> {
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(|e| lock_error("MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT", e))
}

/// Lock the pages mapped now (the unlocked keys among them), not later ones. The fallback
/// when the limit cannot carry `MCL_FUTURE`; done before the privilege drop when started
/// as root, since CAP_IPC_LOCK ignores RLIMIT_MEMLOCK and locks outlive the uid switch.
pub fn lock_current_memory() -> Result<(), SandboxError> {
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::ONFAULT)
        .map_err(|e| lock_error("MCL_CURRENT|MCL_ONFAULT", e))
}

/// RLIMIT_MEMLOCK in a human form.
pub fn memlock_limit_text() -> String {
    getrlimit(Resource::Memlock)
        .current
        .map_or_else(|| "unlimited".to_string(), |l| format!("{} KiB", l / 1024))
}

fn lock_error(flags: &str, e: rustix::io::Errno) -> SandboxError {
    SandboxError::MemoryLock(format!(
        "mlockall({flags}) failed: {e} (RLIMIT_MEMLOCK is {}, the signer needs {} MiB)",
        memlock_limit_text(),
        MEMLOCK_BUDGET / (1024 * 1024)
    ))
}

/// A mapping of a file that holds nothing but the file's own bytes: not writable, and no
/// page of it copied on write (the loader's relocated RELRO pages are `r--p` too, but hold
/// private, modified copies: those have `Anonymous` pages and are kept).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileMapping {
    start: usize,
    len: usize,
}

/// The mappings of `smaps` (the text of `/proc/self/smaps`) that hold only file bytes: a
/// path, no `w` permission, 0 kB `Anonymous`.
fn clean_file_mappings(smaps: &str) -> Vec<FileMapping> {
    let mut found = Vec::new();
    let mut current: Option<FileMapping> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's header: range, permissions, offset, device, inode, path.
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let range = usize::from_str_radix(start, 16)
                .ok()
                .zip(usize::from_str_radix(end, 16).ok());
            current = match range {
                Some((start, end))
                    if end > start && path.starts_with('/') && !perms.contains('w') =>
                {
                    Some(FileMapping {
                        start,
                        len: end - start,
                    })
                }
                _ => None,
            };
        } else if first == "Anonymous:" {
            let copied = fields.next() != Some("0");
            if let Some(mapping) = current.take()
                && !copied
            {
                found.push(mapping);
            }
        }
    }
    found
}

/// The clean file mappings of the signer (code and constants of the binary and its
/// libraries), unlocked, whose resident pages [`FilePages::release`] drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilePages {
    mappings: Vec<FileMapping>,
}

impl FilePages {
    /// Finds the clean file mappings in `/proc/self/smaps` and unlocks them. Call it right
    /// after locking memory, single threaded and before landlock (which forbids `/proc`).
    /// Best effort: a mapping that cannot be read or unlocked is left as it is.
    pub fn unlock() -> FilePages {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return FilePages::default();
        };
        let mappings = clean_file_mappings(&smaps)
            .into_iter()
            .filter(|m| {
                // SAFETY: the range is one whole mapping of this process, read from its own
                // smaps while single threaded; munlock changes no content, only the lock.
                #[allow(unsafe_code)]
                let unlocked = unsafe { rustix::mm::munlock(m.address(), m.len) };
                unlocked.is_ok()
            })
            .collect();
        FilePages { mappings }
    }

    /// Bytes of address space in these mappings.
    pub fn bytes(&self) -> usize {
        self.mappings.iter().map(|m| m.len).sum()
    }

    /// Drops the resident pages of these mappings (`MADV_DONTNEED`, which the seccomp
    /// allowlist has for the allocator); returns the bytes of the mappings let go. Call it
    /// once start-up is over. Best effort: a mapping that cannot be released stays as it is.
    pub fn release(&self) -> usize {
        let mut released = 0;
        for m in &self.mappings {
            // SAFETY: the range is one whole mapping found at confinement, and the signer
            // never unmaps a file mapping (it maps no file after start-up and unloads no
            // library), so the range still holds that mapping and no other memory. It is
            // read-only, private, and had no copied-on-write page when found: a read-only
            // mapping cannot gain one. So every dropped page is identical to the file, and
            // the next access (by any thread) maps it again from the page cache: code and
            // constants read the same before and after.
            #[allow(unsafe_code)]
            let done = unsafe {
                rustix::mm::madvise(m.address(), m.len, rustix::mm::Advice::LinuxDontNeed)
            };
            if done.is_ok() {
                released += m.len;
            }
        }
        released
    }
}

impl FileMapping {
    fn address(&self) -> *mut std::ffi::c_void {
        std::ptr::with_exposed_provenance_mut(self.start)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55a7d3b68000-55a7d3c8a000 r--p 00000000 fd:00 1234                       /usr/bin/vigil-signer
Size:               1160 kB
Anonymous:             0 kB
VmFlags: rd mr mw me lo
55a7d3c8a000-55a7d3f49000 r-xp 00122000 fd:00 1234                       /usr/bin/vigil-signer
Anonymous:             0 kB
55a7d3f49000-55a7d3f92000 r--p 003e1000 fd:00 1234                       /usr/bin/vigil-signer
Anonymous:           292 kB
55a7d3f92000-55a7d3f94000 rw-p 0042a000 fd:00 1234                       /usr/bin/vigil-signer
Anonymous:             8 kB
55a7ea1bd000-55a7ea2f4000 rw-p 00000000 00:00 0                          [heap]
Anonymous:          1116 kB
7efc2491f000-7efc24a75000 r-xp 00026000 fd:00 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7fff907bc000-7fff907dd000 rw-p 00000000 00:00 0                          [stack]
Anonymous:            24 kB
7fff907fc000-7fff907fe000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";

    /// What it checks: only read-only mappings of files with no copied-on-write page are
    /// taken: the binary's constants and code and libc's code, not the relocated RELRO
    /// pages, the data, the heap, the stack or the vDSO.
    #[test]
    fn only_clean_read_only_file_mappings_are_released() {
        let found = clean_file_mappings(SMAPS);
        let starts: Vec<usize> = found.iter().map(|m| m.start).collect();
        assert_eq!(
            starts,
            vec![0x55a7_d3b6_8000, 0x55a7_d3c8_a000, 0x7efc_2491_f000]
        );
        assert_eq!(found[1].len, 0x55a7_d3f4_9000 - 0x55a7_d3c8_a000);
    }

    /// What it checks: releasing this process's clean file pages makes them leave its
    /// resident memory (`RssFile` drops), and its code still runs and its constants read the
    /// same afterwards (they come back from the page cache).
    #[test]
    fn released_pages_leave_memory_and_come_back_unchanged() {
        static TABLE: [u64; 4] = [0x0123_4567_89ab_cdef, 42, 7, u64::MAX];
        let sum = |t: &[u64]| {
            t.iter()
                .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(*b))
        };
        let before = sum(&TABLE);
        let rss_file = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap()
        };
        let pages = FilePages::unlock();
        assert!(
            pages.bytes() > 0,
            "the test binary's code is a clean file mapping"
        );
        let resident = rss_file();
        assert_eq!(pages.release(), pages.bytes());
        let after_release = rss_file();
        assert!(
            after_release < resident,
            "RssFile {resident} kB before the release, {after_release} kB after"
        );
        assert_eq!(sum(std::hint::black_box(&TABLE)), before);
    }
}
