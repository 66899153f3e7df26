//! The proxy's clock: a queue of chunks by deadline that keeps each
//! stream's order ([`DelayQueue`]), and a wait that meets a deadline to a
//! few microseconds ([`wait_until`]).
//!
//! tokio's timer wheel has 1 ms granularity, and a plain sleep wakes up to
//! the thread's timer slack late (50 µs by default) plus the scheduler's
//! latency; so the proxy's delivering thread sets its timer slack to 1 ns,
//! sleeps until [`SPIN`] before the deadline and spins the rest. Pure logic
//! and the clock only: no sockets here.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How long before a deadline the waiting thread stops sleeping and spins:
/// enough to cover a sleep's wake-up latency on a busy two-core machine,
/// short enough that spinning costs little CPU per chunk.
pub const SPIN: Duration = Duration::from_micros(50);

/// Makes the calling thread precise: 1 ns of timer slack (the default
/// 50 µs would be the error) and, where allowed (root), nice -10, so that
/// a machine busy with other work (a build, the server) still runs the
/// network's threads the moment their timer fires, as a network's own
/// hardware would. What cannot be changed is left as it is.
pub fn sharpen_this_thread() {
    let _ = nix::sys::prctl::set_timerslack(1);
    raise_priority(-10);
}

/// Sets the calling thread's nice value (Linux keeps one per thread);
/// ignored where refused (not root).
///
/// The second `unsafe` in contend: nix offers no setpriority, and this one
/// call takes plain integers and touches no memory.
#[allow(unsafe_code)]
fn raise_priority(nice: libc::c_int) {
    let thread = nix::unistd::gettid().as_raw() as libc::id_t;
    // SAFETY: setpriority reads only its integer arguments.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, thread, nice) };
}

/// Waits until `deadline`: sleeps until [`SPIN`] before it, then spins.
/// Returns at once for a deadline already past.
pub fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now + SPIN {
        std::thread::sleep(deadline - now - SPIN);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Items due at deadlines, handed out earliest first; items of one stream
/// come out in the order they went in, whatever deadlines they were given
/// (a later item's deadline is raised to its predecessor's), as TCP keeps
/// a connection's bytes in order however the network delays them.
#[derive(Debug)]
pub struct DelayQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    /// Sequence number of the next push: ties in deadline go first in, first out.
    next_seq: u64,
}

#[derive(Debug)]
struct Entry<T> {
    deadline: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must come first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl<T> Default for DelayQueue<T> {
    fn default() -> Self {
        DelayQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> DelayQueue<T> {
    /// Queues `item` for `deadline`, but never before `*stream_last` (the
    /// deadline of its stream's previous item), which it then updates.
    /// Returns the deadline given.
    pub fn push(&mut self, item: T, deadline: Instant, stream_last: &mut Option<Instant>) -> Instant {
        let deadline = match *stream_last {
            Some(last) if last > deadline => last,
            _ => deadline,
        };
        *stream_last = Some(deadline);
        self.heap.push(Entry {
            deadline,
            seq: self.next_seq,
            item,
        });
        self.next_seq += 1;
        deadline
    }

    /// The earliest deadline queued.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.deadline)
    }

    /// The earliest item if it is due at `now`, with its deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.next_deadline()? > now {
            return None;
        }
        self.heap.pop().map(|entry| (entry.deadline, entry.item))
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Timing tests take this, so that they do not disturb one another.
#[cfg(test)]
pub(super) static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_by_deadline_and_in_order_within_a_stream() {
        let start = Instant::now();
        let at = |us: u64| start + Duration::from_micros(us);
        let mut queue = DelayQueue::default();
        let (mut a, mut b) = (None, None);
        // Stream a's second item asks for an earlier deadline than its
        // first (jitter): it waits for the first.
        queue.push("a1", at(300), &mut a);
        queue.push("b1", at(100), &mut b);
        assert_eq!(queue.push("a2", at(200), &mut a), at(300));
        queue.push("b2", at(300), &mut b);
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.pop_due(at(99)), None, "nothing is due before its deadline");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_due(at(1_000)).map(|(_, item)| item)).collect();
        // Ties in deadline leave in the order they came.
        assert_eq!(order, ["b1", "a1", "a2", "b2"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_deadline_is_met_within_tens_of_microseconds() {
        // Loose for a noisy shared machine, but a sleep-only wait (timer
        // slack 50 µs, then the scheduler) or a 1 ms timer fails it.
        let _serial = TIMING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sharpen_this_thread();
        let mut errors_us: Vec<f64> = (0..200)
            .map(|i| {
                let deadline = Instant::now() + Duration::from_micros(100 + (i % 5) * 450);
                wait_until(deadline);
                Instant::now().duration_since(deadline).as_secs_f64() * 1e6
            })
            .collect();
        errors_us.sort_by(f64::total_cmp);
        let median = errors_us[errors_us.len() / 2];
        let p90 = errors_us[errors_us.len() * 9 / 10];
        eprintln!("wait_until lateness: median {median:.1} µs, p90 {p90:.1} µs");
        // The median only, and loosely: the tail is the machine's (other
        // tests, other processes); a 1 ms timer (~500 µs late) fails it.
        assert!(median < 100.0, "median lateness {median:.1} µs (p90 {p90:.1} µs)");
    }

    #[test]
    fn a_past_deadline_returns_at_once() {
        let started = Instant::now();
        wait_until(started - Duration::from_millis(5));
        assert!(started.elapsed() < Duration::from_millis(1));
    }
}
