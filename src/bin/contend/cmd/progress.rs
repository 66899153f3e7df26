//! Progress on stderr while cells run: a bar over one cell's time or a
//! spinner, both fed from [`LiveCounts`] every 100 ms, and the sweep's bar
//! over its cells; or, with `--progress N` or without a terminal (a CI
//! log), pgbench's `progress:` line every N seconds (5 by default) with
//! that interval's figures. Display only: nothing here decides or records
//! anything.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contend::driver::{LiveCounts, Load};
use contend::measure::IntervalSnapshot;
use contend::record::CellSettings;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// Seconds between progress lines when stderr is not a terminal and no
/// `--progress` was given.
const DEFAULT_LINES_EVERY_S: f64 = 5.0;

/// Progress lines: how often, and which counts a cell's settings make
/// worth showing.
#[derive(Debug, Clone, Copy)]
pub struct ProgressLines {
    every: Duration,
    /// A latency limit is set: show late transactions.
    late: bool,
    /// A latency limit in an open loop: show skipped arrivals.
    skipped: bool,
    /// An open loop: show the schedule lag, as pgbench does under -R.
    lag: bool,
}

impl ProgressLines {
    /// Lines every `--progress` seconds; without the flag, every 5 s when
    /// stderr is not a terminal, and none (the bar) when it is.
    pub fn chosen(flag: Option<f64>, cell: &CellSettings) -> Option<ProgressLines> {
        let every_s = match flag {
            Some(seconds) => seconds,
            None if !std::io::stderr().is_terminal() => DEFAULT_LINES_EVERY_S,
            None => return None,
        };
        let limit = cell.driver.latency_limit_ms.is_some();
        Some(ProgressLines {
            every: Duration::from_secs_f64(every_s),
            late: limit,
            skipped: limit && matches!(cell.driver.load, Load::Open { .. }),
            lag: matches!(cell.driver.load, Load::Open { .. }),
        })
    }

    /// Prints a line every interval through `bar` (above it, or straight
    /// to stderr when it is hidden), the clock starting at a cell's first
    /// finished attempt and again at each next cell.
    pub fn spawn(self, live: &Arc<LiveCounts>, bar: ProgressBar) -> JoinHandle<()> {
        let live = Arc::clone(live);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut cell = live.cell.load(Ordering::Relaxed);
            let mut started: Option<(Instant, Instant)> = None; // (first attempt, last line)
            loop {
                tick.tick().await;
                let now_cell = live.cell.load(Ordering::Relaxed);
                if now_cell != cell {
                    cell = now_cell;
                    started = None;
                }
                let Some((first, last)) = started else {
                    if live.ok.load(Ordering::Relaxed) + live.errors.load(Ordering::Relaxed) > 0 {
                        let now = Instant::now();
                        started = Some((now, now));
                    }
                    continue;
                };
                let now = Instant::now();
                if now.duration_since(last) < self.every {
                    continue;
                }
                // The line's interval ends where the last one's did plus N,
                // so a late tick does not drift the elapsed times.
                let at = last + self.every;
                let line = self.line(
                    at.duration_since(first).as_secs_f64(),
                    now.duration_since(last).as_secs_f64(),
                    &live.interval.take(),
                );
                say(&bar, line);
                started = Some((first, at));
            }
        })
    }

    /// pgbench's `progress:` line for an interval of `interval_s` seconds
    /// ending `elapsed_s` after the start.
    fn line(&self, elapsed_s: f64, interval_s: f64, figures: &IntervalSnapshot) -> String {
        let ms = |us: f64| us / 1000.0;
        let tps = if interval_s > 0.0 {
            figures.ok as f64 / interval_s
        } else {
            0.0
        };
        let lag = if self.lag {
            format!(", lag {:.3} ms", ms(figures.lag_mean_us))
        } else {
            String::new()
        };
        let mut line = format!(
            "progress: {elapsed_s:.1} s, {tps:.1} tps, lat {:.3} ms stddev {:.3}{lag}, p99 {:.3} ms, pool wait p99 {:.3} ms, {} failed",
            ms(figures.latency_mean_us),
            ms(figures.latency_stddev_us),
            ms(figures.latency_p99_us as f64),
            ms(figures.pool_wait_p99_us as f64),
            figures.failed()
        );
        if !figures.failed_by_class.is_empty() {
            let classes: Vec<String> = figures
                .failed_by_class
                .iter()
                .map(|(class, count)| format!("{class} {count}"))
                .collect();
            line.push_str(&format!(" ({})", classes.join(", ")));
        }
        if self.late {
            line.push_str(&format!(", {} late", figures.late));
        }
        if self.skipped {
            line.push_str(&format!(", {} skipped", figures.skipped));
        }
        line
    }
}

/// A bar or spinner redrawn from live counts until [`LiveBar::finish`].
pub struct LiveBar {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl LiveBar {
    /// A bar over `total_s` seconds (warmup and measurement) whose clock
    /// starts with the first finished attempt, not with the cell's setup.
    /// With `lines`, progress lines instead of the bar.
    pub fn timed(live: &Arc<LiveCounts>, total_s: f64, lines: Option<ProgressLines>) -> LiveBar {
        if let Some(lines) = lines {
            return LiveBar::lines(live, lines);
        }
        let bar = ProgressBar::new((total_s * 10.0) as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        LiveBar::ticking(bar, live, "", true)
    }

    /// A spinner for a run of unknown length, its counts after `label`.
    /// With `lines`, progress lines instead of the spinner.
    pub fn spinner(live: &Arc<LiveCounts>, label: &'static str, lines: Option<ProgressLines>) -> LiveBar {
        if let Some(lines) = lines {
            return LiveBar::lines(live, lines);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        LiveBar::ticking(bar, live, label, false)
    }

    fn lines(live: &Arc<LiveCounts>, lines: ProgressLines) -> LiveBar {
        let bar = ProgressBar::hidden();
        let ticker = lines.spawn(live, bar.clone());
        LiveBar { bar, ticker }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_pgbench_s() {
        let lines = ProgressLines {
            every: Duration::from_secs(5),
            late: true,
            skipped: true,
            lag: true,
        };
        let figures = IntervalSnapshot {
            ok: 6172,
            latency_mean_us: 810.4,
            latency_stddev_us: 112.0,
            latency_p99_us: 1_250,
            pool_wait_p99_us: 30,
            failed_by_class: vec![("pool_timeout", 2)],
            late: 3,
            skipped: 1,
            lag_mean_us: 79.0,
        };
        assert_eq!(
            lines.line(5.0, 5.0, &figures),
            "progress: 5.0 s, 1234.4 tps, lat 0.810 ms stddev 0.112, lag 0.079 ms, p99 1.250 ms, pool wait p99 0.030 ms, 2 failed (pool_timeout 2), 3 late, 1 skipped"
        );
    }
}
