//! Measurement, kept as plain data: the client side's histograms, error
//! counts and timeline ([`Recorder`] → [`CellMetrics`]), the server side
//! sampled meanwhile ([`ServerSampler`] → [`ServerSamples`]), the
//! objectives a cell is scored on ([`SloSpec`]) and the plans EXPLAIN
//! returns ([`PlanSummary`], [`PlanDiff`]).
//!
//! Nothing here formats text for people or writes a file.

mod explain;
mod histogram;
mod live;
mod operation;
mod recorder;
mod sampler;
mod slo;
mod summary;
mod timeline;
mod transactions;

pub use self::explain::{explain_analyze, ExplainError, ExplainQuery, ExplainedQuery, PlanDiff, PlanNode, PlanSummary};
pub use self::histogram::{
    decode_histogram, encode_histogram, MetricsError, LATENCY_SIGNIFICANT_DIGITS, MAX_LATENCY_US,
    TIMELINE_SIGNIFICANT_DIGITS,
};
pub use self::live::{IntervalSnapshot, IntervalStats};
pub use self::operation::{AttemptOutcome, AttemptTiming};
pub use self::recorder::Recorder;
pub use self::sampler::{
    ActivitySample, DatabaseDelta, PoolerSample, PoolerSampler, PoolerSamples, PoolerStatsDelta, RedisDelta,
    SamplerError, SamplerSettings, ServerSampler, ServerSamples, StatementStats, TlsSessions, APPLICATION_NAME,
    DEFAULT_INTERVAL, DEFAULT_TOP_STATEMENTS, MAX_SAMPLING_ERRORS, POOLER_INTERVAL,
};
pub use self::slo::{ShareOver, SloContext, SloError, SloResult, SloSpec, SloUnit};
pub use self::summary::{
    CellMetrics, EncodedHistograms, LatencySummary, OperationMetrics, TimelineSecond, WindowSummary,
};
pub use self::transactions::{TransactionEnd, TransactionSecond};
