//! Records to what people read: text for the terminal, summary.md and
//! index.html, SVG plots.
//!
//! Never measures and never computes a recommendation: it formats what
//! records and analysis already hold.

mod markup;
mod plots;
mod site;
mod text;

pub use self::plots::{Plot, PlotError};
pub use self::site::{index_html, summary_markdown, write_report, SiteError, Written};
pub use self::text::{
    cell_summary, errors_text, failed_cell_line, migration_text, recommendation_text, scorecard_text,
};

/// The plots of a run, one function per chart.
pub mod charts {
    pub use super::plots::{all, errors_heatmap, goodput, migration_timeline, p99, pool_wait};
}
