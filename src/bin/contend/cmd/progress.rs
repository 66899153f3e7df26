//! Progress on stderr while cells run: a bar over one cell's time or a
//! spinner, both fed from [`LiveCounts`] every 100 ms, and the sweep's bar
//! over its cells. Display only: nothing here decides or records anything.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contend::driver::LiveCounts;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// A bar or spinner redrawn from live counts until [`LiveBar::finish`].
pub struct LiveBar {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl LiveBar {
    /// A bar over `total_s` seconds (warmup and measurement) whose clock
    /// starts with the first finished attempt, not with the cell's setup.
    pub fn timed(live: &Arc<LiveCounts>, total_s: f64) -> LiveBar {
        let bar = ProgressBar::new((total_s * 10.0) as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        LiveBar::ticking(bar, live, "", true)
    }

    /// A spinner for a run of unknown length, its counts after `label`.
    pub fn spinner(live: &Arc<LiveCounts>, label: &'static str) -> LiveBar {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        LiveBar::ticking(bar, live, label, false)
    }

    fn ticking(bar: ProgressBar, live: &Arc<LiveCounts>, label: &'static str, timed: bool) -> LiveBar {
        let live = Arc::clone(live);
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            let mut started = None;
            loop {
                interval.tick().await;
                let (ok, errors) = (live.ok.load(Ordering::Relaxed), live.errors.load(Ordering::Relaxed));
                if timed {
                    if ok + errors > 0 && started.is_none() {
                        started = Some(Instant::now());
                    }
                    if let Some(t) = started {
                        shown.set_position((t.elapsed().as_secs_f64() * 10.0) as u64);
                    }
                }
                shown.set_message(format!("{label}ok {ok} · errors {errors}"));
                if !timed {
                    shown.tick();
                }
            }
        });
        LiveBar { bar, ticker }
    }

    /// Stops the redraws and clears the line.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// The sweep's bar: cells done of `cells`, the running cell's key as its
/// message.
pub fn sweep_bar(cells: usize) -> ProgressBar {
    let bar = ProgressBar::new(cells as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} cells · eta {eta} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Prints `line` above `bar`; straight to stderr when the bar is hidden
/// (no terminal), since a hidden bar prints nothing and the line must
/// still reach a log.
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
