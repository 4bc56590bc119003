//! What the benchmarks measure: latency samples (sorted durations and the wall time they took,
//! read as percentiles, nearest rank in per mille so that no float picks the index, and as a
//! rate); a process's CPU time and context switches per thread ([`Usage`], from
//! `/proc/<pid>/task`), to divide by the requests it served; and its memory ([`Memory`], from
//! `/proc/<pid>/status`).

use std::collections::BTreeMap;
use std::time::Duration;

/// Durations of one kind of operation, sorted, and the wall time of the whole run.
#[derive(Clone, Debug)]
pub struct Samples {
    sorted: Vec<Duration>,
    total: Duration,
}

impl Samples {
    /// `samples` taken over `total` of wall time.
    pub fn new(mut samples: Vec<Duration>, total: Duration) -> Samples {
        samples.sort();
        Samples {
            sorted: samples,
            total,
        }
    }

    /// The sample at `per_mille` / 1000 of the way (500: the median, 990: p99, 1000: max).
    pub fn percentile(&self, per_mille: usize) -> Duration {
        assert!(per_mille <= 1000, "a percentile is at most 1000 per mille");
        let last = self
            .sorted
            .len()
            .checked_sub(1)
            .expect("at least one sample");
        self.sorted[(last * per_mille + 500) / 1000]
    }

    /// [`percentile`](Self::percentile) in microseconds.
    pub fn percentile_us(&self, per_mille: usize) -> f64 {
        self.percentile(per_mille).as_secs_f64() * 1e6
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The wall time of the run.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Operations per second over the wall time.
    pub fn rate(&self) -> f64 {
        // Sample counts stay far below 2^52: the conversion is exact.
        let n = u32::try_from(self.sorted.len()).map_or(f64::from(u32::MAX), f64::from);
        n / self.total.as_secs_f64()
    }
}

/// `/proc` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second for userland.
const TICKS_PER_SECOND: u64 = 100;

/// One thread's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadUsage {
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in the kernel on the thread's behalf.
    pub system: Duration,
    /// Times the thread went to sleep waiting for something (`voluntary_ctxt_switches`).
    pub sleeps: u64,
    /// Times it was preempted (`nonvoluntary_ctxt_switches`).
    pub preempted: u64,
}

/// A process's counters per thread, keyed by `name#tid`: take one before and one after a
/// phase, and [`since`](Usage::since) gives what the phase cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Per thread.
    pub threads: BTreeMap<String, ThreadUsage>,
}

impl Usage {
    /// Reads every thread of `pid` (root may read a non-dumpable process's counters).
    pub fn of(pid: u32) -> Usage {
        let dir = format!("/proc/{pid}/task");
        let tasks = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let mut threads = BTreeMap::new();
        for task in tasks.flatten() {
            let path = task.path();
            let (Ok(stat), Ok(status)) = (
                std::fs::read_to_string(path.join("stat")),
                std::fs::read_to_string(path.join("status")),
            ) else {
                continue; // the thread ended while we read
            };
            let name = status_field(&status, "Name:").unwrap_or("?").to_owned();
            let tid = task.file_name().to_string_lossy().into_owned();
            // The fields after the parenthesised name: state is field 3, utime 14, stime 15.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<u64> = after
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            let ticks = |i: usize| fields.get(i - 3).copied().unwrap_or(0);
            let count = |key| {
                status_field(&status, key)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            threads.insert(
                format!("{name}#{tid}"),
                ThreadUsage {
                    user: ticks_to_duration(ticks(14)),
                    system: ticks_to_duration(ticks(15)),
                    sleeps: count("voluntary_ctxt_switches:"),
                    preempted: count("nonvoluntary_ctxt_switches:"),
                },
            );
        }
        Usage { threads }
    }

    /// What each thread used since `before` (threads that started meanwhile count from 0).
    pub fn since(&self, before: &Usage) -> Usage {
        let threads = self
            .threads
            .iter()
            .map(|(name, now)| {
                let then = before.threads.get(name).copied().unwrap_or_default();
                let diff = ThreadUsage {
                    user: now.user.saturating_sub(then.user),
                    system: now.system.saturating_sub(then.system),
                    sleeps: now.sleeps.saturating_sub(then.sleeps),
                    preempted: now.preempted.saturating_sub(then.preempted),
                };
                (name.clone(), diff)
            })
            .collect();
        Usage { threads }
    }

    /// One line per thread: CPU µs (user + system) and sleeps per operation, for `ops` operations.
    pub fn per_op(&self, ops: usize) -> Vec<String> {
        let ops = u32::try_from(ops.max(1)).unwrap_or(u32::MAX);
        self.threads
            .iter()
            .map(|(name, t)| {
                let cpu = (t.user + t.system) / ops;
                let sys = t.system / ops;
                format!(
                    "{name:<22} CPU {:>6.1} µs/op (kernel {:>5.1}), {:.2} sleeps/op, {:.2} preemptions/op",
                    cpu.as_secs_f64() * 1e6,
                    sys.as_secs_f64() * 1e6,
                    f64::from(u32::try_from(t.sleeps).unwrap_or(u32::MAX)) / f64::from(ops),
                    f64::from(u32::try_from(t.preempted).unwrap_or(u32::MAX)) / f64::from(ops),
                )
            })
            .collect()
    }
}

/// The CPU time (user + system) of the whole process `pid`, threads that already ended
/// included (`/proc/<pid>/stat` counts them; [`Usage::of`] sees only the live ones).
pub fn process_cpu(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |i: usize| {
        after
            .split_whitespace()
            .nth(i - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0)
    };
    ticks_to_duration(field(14) + field(15))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * (1000 / TICKS_PER_SECOND))
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// A process's memory, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// The most ever resident (`VmHWM`).
    pub hwm_kib: u64,
    /// Resident anonymous memory: heap, stacks (`RssAnon`).
    pub anon_kib: u64,
    /// Resident pages of mapped files: the binary and its libraries (`RssFile`).
    pub file_kib: u64,
    /// Locked (`VmLck`: the size of the locked mappings, resident or not).
    pub locked_kib: u64,
    /// Threads.
    pub threads: u64,
}

impl Memory {
    /// Reads `/proc/<pid>/status`.
    pub fn of(pid: u32) -> Memory {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let kib = |key: &str| {
            status_field(&status, key)
                .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{path} has no {key}"))
        };
        Memory {
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
            anon_kib: kib("RssAnon:"),
            file_kib: kib("RssFile:"),
            locked_kib: kib("VmLck:"),
            threads: kib("Threads:"),
        }
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // KiB counts of a process stay far below 2^52: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let mib = |kib: u64| kib as f64 / 1024.0;
        write!(
            f,
            "VmRSS {:.2} MiB (anon {:.2}, file {:.2}), VmHWM {:.2} MiB, VmLck {:.2} MiB, {} threads",
            mib(self.rss_kib),
            mib(self.anon_kib),
            mib(self.file_kib),
            mib(self.hwm_kib),
            mib(self.locked_kib),
            self.threads
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let ms = |n: u64| Duration::from_millis(n);
        let s = Samples::new((1..=101).rev().map(ms).collect(), Duration::from_secs(2));
        assert_eq!(s.percentile(0), ms(1));
        assert_eq!(s.percentile(500), ms(51));
        assert_eq!(s.percentile(990), ms(100));
        assert_eq!(s.percentile(1000), ms(101));
        assert!((s.rate() - 50.5).abs() < 1e-9);
    }

    /// Spins until the live threads named `name` of this process have used `cpu` of CPU time
    /// by [`Usage`]'s count (its threads are `name#tid`), or fails after 20 s of wall time (a loaded machine gives a
    /// spinning thread a fraction of a core: the CPU is waited for, not the wall clock).
    fn spin_until_used(name: &str, before: &Usage, cpu: Duration) {
        let pid = std::process::id();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        loop {
            for _ in 0..2_000_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
            let used = Usage::of(pid).since(before);
            let mine: Duration = used
                .threads
                .iter()
                .filter(|(n, _)| n.split_once('#').is_some_and(|(n, _)| n == name))
                .map(|(_, t)| t.user + t.system)
                .sum();
            if mine >= cpu {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name} spun 20 s and Usage counts {mine:?} of CPU: {used:?}"
            );
        }
    }

    #[test]
    fn this_process_has_usage_and_memory() {
        let pid = std::process::id();
        // A thread's CPU shows in Usage.
        let before = Usage::of(pid);
        std::thread::Builder::new()
            .name("spin-live".into())
            .spawn(move || spin_until_used("spin-live", &before, Duration::from_millis(30)))
            .unwrap()
            .join()
            .unwrap();
        // A thread that spun and ended still counts in the process's CPU time.
        let process_before = process_cpu(pid);
        let before = Usage::of(pid);
        std::thread::Builder::new()
            .name("spin-ended".into())
            .spawn(move || spin_until_used("spin-ended", &before, Duration::from_millis(30)))
            .unwrap()
            .join()
            .unwrap();
        let spent = process_cpu(pid).saturating_sub(process_before);
        assert!(spent >= Duration::from_millis(30), "{spent:?}");
        let memory = Memory::of(pid);
        assert!(
            memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib,
            "{memory}"
        );
        assert!(
            memory.rss_kib >= memory.anon_kib + memory.file_kib,
            "VmRSS is anon + file + shmem: {memory}"
        );
    }
}
