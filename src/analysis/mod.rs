//! Pure functions of records: the recommendation from a sweep's cells
//! (knee, Universal Scalability Law fit, Little's law, `max_connections`
//! budget, formula verdicts) and the regression gate between two runs.
//!
//! Reads records only: never a file, a server or a clock, and never formats
//! for people (render does; compare's Markdown table is its output format).

mod compare;
mod diagnosis;
mod formula;
mod pooler;
mod recommend;
mod stats;
mod usl;

pub use self::compare::{
    compare, configuration, markdown, CompareError, CompareOptions, Comparison, MetricComparison, Verdict, Worse,
};
pub use self::diagnosis::diagnose;
pub use self::formula::{Bindings, Formula, FormulaError, Sizes, VARIABLES};
pub use self::pooler::{recommend_pooler, PoolerRecommendation};
pub use self::recommend::{
    recommend, recommend_each, BestMeasured, CellPoint, FormulaVerdict, Knee, KneeVerdict, LittleCheck,
    MaxConnectionsAdvice, OverBudget, RecommendOptions, Recommendation, RttProjection, SideVerdict, UslReport,
    BUILT_IN_FORMULAS,
};
pub use self::stats::median;
pub use self::usl::{fit, UslFit};
