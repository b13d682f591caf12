//! How the dashboard's threads ask the kernel's scheduler for what they
//! need: a change's way to the screen is a few milliseconds of CPU on
//! three threads in turn (the watches, the reader, the render loop), each
//! woken by the one before. On a machine whose cores the cluster keeps
//! busy — the lab's two, shared with an API server, etcd and three
//! kube-proxies at 5,000 nodes — each wake-up waited for a core: the
//! reader spent 17 ms waiting for every 6 ms it ran, and a change's
//! tail (p99) was 100 to 300 ms of which the dashboard's own work was 6.

use std::time::Duration;

/// The slice (sched(7): EEVDF's request size) the threads on a change's
/// way to the screen ask for, against the kernel's default of 0.7 ms ×
/// (1 + log2 of the cores): 1.4 ms on two. A shorter request gives a
/// thread an earlier virtual deadline, so that on waking it runs before
/// threads that asked for the default and may preempt them (Linux 6.12,
/// "PREEMPT_SHORT"); its weight, and so its share of the CPU when cores
/// are scarce, stays what its nice value gives. The kernel keeps requests
/// within 0.1 to 100 ms.
pub const SLICE: Duration = Duration::from_micros(300);

/// `struct sched_attr` (`linux/sched/types.h`) up to its first size
/// (`SCHED_ATTR_SIZE_VER0`, 48 bytes): no utilisation clamps.
#[repr(C)]
#[derive(Debug, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// `SCHED_FLAG_RESET_ON_FORK`: the one flag read back that is set again.
const RESET_ON_FORK: u64 = 0x01;

/// Asks for the short [`SLICE`] for the calling thread, keeping its
/// policy and nice value (a dashboard started under `nice` stays niced).
/// `false` when nothing changed: a thread that is not `SCHED_OTHER`, or a
/// kernel that refused. Kernels before 6.12 accept the request and ignore
/// it; either way the thread only waits longer for a core, as before.
/// Threads it starts afterwards inherit the request (the reader's watch
/// and notification threads, the jobs the loop starts).
pub fn latency_sensitive() -> bool {
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, a
    // live struct of that size laid out as the kernel's.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if got != 0 || attr.policy != libc::SCHED_OTHER as u32 {
        return false;
    }
    attr.size = size;
    attr.flags &= RESET_ON_FORK;
    attr.runtime = SLICE.as_nanos() as u64;
    // SAFETY: sched_setattr reads `size` bytes of `attr` and nothing else.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    set == 0
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`):
/// what a reading cost the reader, apart from its waits for a core.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How long the calling thread has been runnable but waiting for a core
/// (`/proc/thread-self/schedstat`, its second field); `None` where the
/// kernel keeps no such count. Beside [`thread_cpu_time`] it splits a
/// reading's time: on a core, waiting for one, and blocked (the rest).
pub fn thread_run_wait() -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    // Opened once per thread and read again from its start (the kernel
    // writes it anew on each read at offset 0): opening it by path twice
    // a reading was 3 % of an endpoint reading's CPU.
    thread_local! {
        static SCHEDSTAT: Option<std::fs::File> =
            std::fs::File::open("/proc/thread-self/schedstat").ok();
    }
    SCHEDSTAT.with(|file| {
        let mut buf = [0u8; 96];
        let n = file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let stat = std::str::from_utf8(&buf[..n]).ok()?;
        let ns = stat.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    })
}

/// The page faults the calling thread has taken (`getrusage`, minor and
/// major): a reading that touches memory the allocator gave back to the
/// kernel (or never had) faults it in again, its zeroing counted as CPU.
pub fn thread_page_faults() -> u64 {
    // SAFETY: getrusage writes the rusage struct it is given, nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0;
    }
    (ru.ru_minflt + ru.ru_majflt) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory touched for the first time faults, counted for the
    /// thread that touched it.
    #[test]
    fn a_threads_page_faults_are_counted() {
        std::thread::spawn(|| {
            let before = thread_page_faults();
            // 64 MiB, each 4 KiB page written once.
            let mut v = vec![0u8; 64 << 20];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            std::hint::black_box(&v);
            let faults = thread_page_faults() - before;
            // One per page, or per 2 MiB where transparent huge pages
            // back the allocation (32 of them).
            assert!(faults >= 16, "{faults} faults for 64 MiB of fresh memory");
        })
        .join()
        .unwrap();
    }

    /// Two threads that spin on one core wait for it in turn, and the
    /// count says so.
    #[test]
    fn a_thread_waiting_for_a_core_is_counted() {
        let spinner = || {
            std::thread::spawn(|| {
                // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                }
                let before = thread_run_wait();
                let end = std::time::Instant::now() + Duration::from_millis(300);
                while std::time::Instant::now() < end {}
                Some(thread_run_wait()? - before?)
            })
        };
        let (a, b) = (spinner(), spinner());
        let waited = [a.join().unwrap(), b.join().unwrap()];
        // No count on this kernel: nothing to check.
        let Some(total) = waited.into_iter().sum::<Option<Duration>>() else {
            return;
        };
        assert!(
            total >= Duration::from_millis(100),
            "two spinners on one core waited {total:?} in all"
        );
    }

    /// The kernel's (major, minor) version.
    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (next(), next())
    }

    /// The calling thread's slice as the scheduler's debug file shows it
    /// (`None` without one: a kernel built without `SCHED_DEBUG`).
    fn slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        sched.lines().find_map(|l| {
            let v = l.strip_prefix("se.slice")?;
            v.trim_start_matches([' ', ':']).trim().parse().ok()
        })
    }

    #[test]
    fn a_latency_sensitive_thread_asks_for_the_short_slice_and_keeps_its_nice() {
        std::thread::spawn(|| {
            // Nice 3 on this thread alone (PRIO_PROCESS of 0 is the
            // calling thread on Linux).
            // SAFETY: plain integers in, nothing of ours written.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) }, 0);
            let before = slice_ns();
            assert!(latency_sensitive(), "sched_setattr refused");
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 3);
            if kernel() >= (6, 12)
                && let Some(now) = slice_ns()
            {
                assert_eq!(now, SLICE.as_nanos() as u64, "slice before: {before:?}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_s_cpu_time_counts_its_work_not_its_sleep() {
        let start = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time() - start;
        assert!(slept < Duration::from_millis(10), "{slept:?} while asleep");
        // Spinning until the clock says 20 ms of work: on a loaded machine
        // the wall time that takes is longer, never the work counted less.
        let spin = std::time::Instant::now();
        let worked = loop {
            std::hint::black_box(0);
            let worked = thread_cpu_time() - start - slept;
            if worked >= Duration::from_millis(20) || spin.elapsed() > Duration::from_secs(10) {
                break worked;
            }
        };
        assert!(
            worked >= Duration::from_millis(20),
            "{worked:?} of work counted in {:?} of spinning",
            spin.elapsed()
        );
    }

    #[test]
    fn an_idle_thread_is_left_as_it_is() {
        std::thread::spawn(|| {
            let idle = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets this thread's policy from a valid parameter.
            assert_eq!(
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) },
                0
            );
            assert!(!latency_sensitive());
            // SAFETY: reads this thread's policy.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}
