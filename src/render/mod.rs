//! Records to what people and scripts read: text for the terminal,
//! summary.md and index.html, SVG plots, CSV, JUnit XML, pgbench's aggregate
//! log.
//!
//! Never measures and never computes a recommendation: it formats what
//! records and analysis already hold.

mod aggregate_log;
mod csv;
mod junit;
mod markup;
mod plots;
mod site;
mod text;

pub use self::aggregate_log::{aggregate_log, AggregateLogError, LogColumns};
pub use self::csv::{cells_csv, comparison_csv, recommendations_csv, CsvError, CELL_COLUMNS};
pub use self::junit::{junit_xml, JunitError};
pub use self::plots::{Plot, PlotError};
pub use self::site::{index_html, summary_markdown, write_report, SiteError, Written};
pub use self::text::{
    bottleneck_name, cell_summary, diagnosis_text, errors_text, failed_cell_line, migration_text,
    pooler_recommendation_text, recommendation_text, scorecard_text, sweep_cell_line,
};

/// The plots of a run, one function per chart.
pub mod charts {
    pub use super::plots::{all, errors_heatmap, goodput, migration_timeline, p99, pool_wait};
}
