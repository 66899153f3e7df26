//! EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON): running it, reading the plan
//! tree, and the difference between two plans of one query.
//!
//! The server's JSON is kept whole next to what is read from it, so a
//! reader can always go back to the source.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A read query of a workload, with representative parameters written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainQuery {
    /// The operation it belongs to, e.g. "initialize".
    pub name: String,
    /// The statement, runnable as is.
    pub sql: String,
}

/// One query explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainedQuery {
    /// Which query.
    pub query: ExplainQuery,
    /// The server's EXPLAIN output, whole.
    pub plan_json: Value,
    /// What was read from it.
    pub summary: PlanSummary,
}

/// Why a plan could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The server refused the EXPLAIN.
    #[error("EXPLAIN of {query}: {source}")]
    Server {
        /// The query's name.
        query: String,
        /// What the server said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The output was not the JSON EXPLAIN writes.
    #[error("EXPLAIN output not understood: {0}")]
    Format(String),
}

/// One node of a plan tree, flattened in depth-first order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    /// Depth in the tree, root 0.
    pub depth: usize,
    /// "Seq Scan", "Index Only Scan", "Aggregate", …
    pub node_type: String,
    /// Table scanned, if a scan.
    pub relation: Option<String>,
    /// Index used, if any.
    pub index: Option<String>,
    /// Rows produced over all loops.
    pub actual_rows: f64,
    /// Times the node ran.
    pub loops: f64,
    /// Rows read and thrown away by a filter, over all loops.
    pub rows_removed_by_filter: f64,
    /// Heap fetches of an index-only scan (rows the visibility map could not vouch for).
    pub heap_fetches: Option<f64>,
    /// Shared buffers found in cache, this node and below.
    pub shared_hit_blocks: u64,
    /// Shared buffers read from the OS, this node and below.
    pub shared_read_blocks: u64,
    /// Time to the node's last row, milliseconds (per loop).
    pub actual_total_ms: f64,
}

/// What a plan says, read from EXPLAIN's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Planning time, milliseconds.
    pub planning_ms: f64,
    /// Execution time, milliseconds.
    pub execution_ms: f64,
    /// Every node, depth first.
    pub nodes: Vec<PlanNode>,
    /// Shared buffers hit while executing (the root's count).
    pub shared_hit_blocks: u64,
    /// Shared buffers read while executing (the root's count).
    pub shared_read_blocks: u64,
    /// Heap fetches summed over index-only scans.
    pub heap_fetches: f64,
    /// Rows removed by filters, summed over nodes.
    pub rows_removed_by_filter: f64,
}

impl PlanSummary {
    /// Reads EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) output: an array
    /// holding one object with "Plan", "Planning Time" and "Execution Time".
    pub fn from_json(json: &Value) -> Result<PlanSummary, ExplainError> {
        let top = json
            .as_array()
            .and_then(|a| a.first())
            .or_else(|| json.as_object().map(|_| json))
            .ok_or_else(|| ExplainError::Format("expected an array holding one object".into()))?;
        let plan = top
            .get("Plan")
            .ok_or_else(|| ExplainError::Format("no \"Plan\" key".into()))?;
        let number = |key: &str| top.get(key).and_then(Value::as_f64);
        let execution_ms = number("Execution Time")
            .ok_or_else(|| ExplainError::Format("no \"Execution Time\": was it EXPLAIN ANALYZE?".into()))?;
        let mut nodes = Vec::new();
        flatten(plan, 0, &mut nodes);
        let root = nodes.first().cloned();
        Ok(PlanSummary {
            planning_ms: number("Planning Time").unwrap_or(0.0),
            execution_ms,
            shared_hit_blocks: root.as_ref().map_or(0, |r| r.shared_hit_blocks),
            shared_read_blocks: root.as_ref().map_or(0, |r| r.shared_read_blocks),
            heap_fetches: nodes.iter().filter_map(|n| n.heap_fetches).fold(0.0, |a, b| a + b),
            rows_removed_by_filter: nodes.iter().map(|n| n.rows_removed_by_filter).fold(0.0, |a, b| a + b),
            nodes,
        })
    }

    /// The scans of the plan, as "Seq Scan on t" or "Index Only Scan using i on t".
    pub fn scans(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.relation.is_some() || n.index.is_some())
            .map(|n| match (&n.index, &n.relation) {
                (Some(index), Some(relation)) => format!("{} using {index} on {relation}", n.node_type),
                (Some(index), None) => format!("{} using {index}", n.node_type),
                (None, Some(relation)) => format!("{} on {relation}", n.node_type),
                (None, None) => n.node_type.clone(),
            })
            .collect()
    }

    /// Whether any node scans a table sequentially.
    pub fn has_seq_scan(&self) -> bool {
        self.nodes.iter().any(|n| n.node_type == "Seq Scan")
    }

    /// The indexes the plan uses.
    pub fn indexes(&self) -> Vec<String> {
        let mut out: Vec<String> = self.nodes.iter().filter_map(|n| n.index.clone()).collect();
        out.dedup();
        out
    }
}

fn flatten(node: &Value, depth: usize, out: &mut Vec<PlanNode>) {
    let number = |key: &str| node.get(key).and_then(Value::as_f64);
    let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_string);
    let loops = number("Actual Loops").unwrap_or(1.0);
    out.push(PlanNode {
        depth,
        node_type: text("Node Type").unwrap_or_else(|| "?".into()),
        relation: text("Relation Name"),
        index: text("Index Name"),
        // EXPLAIN reports rows and removed rows per loop.
        actual_rows: number("Actual Rows").unwrap_or(0.0) * loops,
        loops,
        rows_removed_by_filter: (number("Rows Removed by Filter").unwrap_or(0.0)
            + number("Rows Removed by Index Recheck").unwrap_or(0.0))
            * loops,
        heap_fetches: number("Heap Fetches"),
        shared_hit_blocks: number("Shared Hit Blocks").unwrap_or(0.0) as u64,
        shared_read_blocks: number("Shared Read Blocks").unwrap_or(0.0) as u64,
        actual_total_ms: number("Actual Total Time").unwrap_or(0.0),
    });
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            flatten(child, depth + 1, out);
        }
    }
}

/// Runs EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of `query` once to warm
/// the cache, then again, and keeps the second.
pub async fn explain_analyze(
    client: &tokio_postgres::Client,
    query: &ExplainQuery,
) -> Result<ExplainedQuery, ExplainError> {
    let statement = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}", query.sql);
    let mut text = String::new();
    for _ in 0..2 {
        let messages = client
            .simple_query(&statement)
            .await
            .map_err(|source| ExplainError::Server {
                query: query.name.clone(),
                source,
            })?;
        text = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| ExplainError::Format("EXPLAIN returned no row".into()))?;
    }
    let plan_json: Value = serde_json::from_str(&text).map_err(|e| ExplainError::Format(e.to_string()))?;
    let summary = PlanSummary::from_json(&plan_json)?;
    Ok(ExplainedQuery {
        query: query.clone(),
        plan_json,
        summary,
    })
}

/// One query before and after a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDiff {
    /// The query's name.
    pub query: String,
    /// Scans before, e.g. ["Seq Scan on user_goals"].
    pub scans_before: Vec<String>,
    /// Scans after.
    pub scans_after: Vec<String>,
    /// Node types before, depth first.
    pub node_types_before: Vec<String>,
    /// Node types after.
    pub node_types_after: Vec<String>,
    /// Indexes used after that were not used before.
    pub new_indexes: Vec<String>,
    /// Whether the plan changed shape.
    pub plan_changed: bool,
    /// Root rows before / after.
    pub rows: (f64, f64),
    /// Rows removed by filters before / after.
    pub rows_removed_by_filter: (f64, f64),
    /// Shared buffers hit before / after.
    pub shared_hit_blocks: (u64, u64),
    /// Shared buffers read before / after.
    pub shared_read_blocks: (u64, u64),
    /// Heap fetches before / after.
    pub heap_fetches: (f64, f64),
    /// Planning time before / after, ms.
    pub planning_ms: (f64, f64),
    /// Execution time before / after, ms.
    pub execution_ms: (f64, f64),
    /// Execution before over after (above 1: faster after).
    pub speedup: f64,
}

impl PlanDiff {
    /// Compares two plans of the same query.
    pub fn between(before: &ExplainedQuery, after: &ExplainedQuery) -> PlanDiff {
        let (b, a) = (&before.summary, &after.summary);
        let types = |s: &PlanSummary| s.nodes.iter().map(|n| n.node_type.clone()).collect::<Vec<_>>();
        let before_indexes = b.indexes();
        PlanDiff {
            query: before.query.name.clone(),
            scans_before: b.scans(),
            scans_after: a.scans(),
            node_types_before: types(b),
            node_types_after: types(a),
            new_indexes: a
                .indexes()
                .into_iter()
                .filter(|i| !before_indexes.contains(i))
                .collect(),
            plan_changed: types(b) != types(a) || b.scans() != a.scans(),
            rows: (
                b.nodes.first().map_or(0.0, |n| n.actual_rows),
                a.nodes.first().map_or(0.0, |n| n.actual_rows),
            ),
            rows_removed_by_filter: (b.rows_removed_by_filter, a.rows_removed_by_filter),
            shared_hit_blocks: (b.shared_hit_blocks, a.shared_hit_blocks),
            shared_read_blocks: (b.shared_read_blocks, a.shared_read_blocks),
            heap_fetches: (b.heap_fetches, a.heap_fetches),
            planning_ms: (b.planning_ms, a.planning_ms),
            execution_ms: (b.execution_ms, a.execution_ms),
            speedup: if a.execution_ms > 0.0 {
                b.execution_ms / a.execution_ms
            } else {
                f64::INFINITY
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape PostgreSQL 15 writes; the integration tests read the real
    /// server's output.
    const SEQ_SCAN: &str = r#"[{"Plan": {"Node Type": "Aggregate", "Actual Rows": 1, "Actual Loops": 1,
        "Actual Total Time": 41.2, "Shared Hit Blocks": 100, "Shared Read Blocks": 2400,
        "Plans": [{"Node Type": "Seq Scan", "Relation Name": "user_goals", "Actual Rows": 2,
          "Actual Loops": 3, "Rows Removed by Filter": 666666, "Actual Total Time": 40.0,
          "Shared Hit Blocks": 100, "Shared Read Blocks": 2400}]},
        "Planning Time": 0.2, "Triggers": [], "Execution Time": 41.5}]"#;
    const INDEX_ONLY: &str = r#"[{"Plan": {"Node Type": "Aggregate", "Actual Rows": 1, "Actual Loops": 1,
        "Shared Hit Blocks": 4, "Shared Read Blocks": 0,
        "Plans": [{"Node Type": "Index Only Scan", "Relation Name": "user_goals",
          "Index Name": "user_goals_user_challenge", "Actual Rows": 6, "Actual Loops": 1,
          "Heap Fetches": 0, "Shared Hit Blocks": 4, "Shared Read Blocks": 0}]},
        "Planning Time": 0.1, "Execution Time": 0.05}]"#;

    fn explained(json: &str) -> ExplainedQuery {
        let plan_json: Value = serde_json::from_str(json).unwrap();
        ExplainedQuery {
            query: ExplainQuery {
                name: "count".into(),
                sql: "SELECT 1".into(),
            },
            summary: PlanSummary::from_json(&plan_json).unwrap(),
            plan_json,
        }
    }

    #[test]
    fn reads_nodes_with_per_loop_counts_multiplied_out() {
        let s = explained(SEQ_SCAN).summary;
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[1].depth, 1);
        assert_eq!(s.nodes[1].actual_rows, 6.0);
        assert_eq!(s.rows_removed_by_filter, 1_999_998.0);
        assert_eq!((s.shared_hit_blocks, s.shared_read_blocks), (100, 2400));
        assert_eq!(s.scans(), vec!["Seq Scan on user_goals"]);
        assert!(s.has_seq_scan());
        assert_eq!(s.execution_ms, 41.5);
    }

    #[test]
    fn diff_names_the_new_index_and_the_speedup() {
        let d = PlanDiff::between(&explained(SEQ_SCAN), &explained(INDEX_ONLY));
        assert!(d.plan_changed);
        assert_eq!(d.new_indexes, vec!["user_goals_user_challenge"]);
        assert_eq!(
            d.scans_after,
            vec!["Index Only Scan using user_goals_user_challenge on user_goals"]
        );
        assert!((d.speedup - 830.0).abs() < 1e-6, "{}", d.speedup);
        assert_eq!(d.heap_fetches, (0.0, 0.0));
    }

    #[test]
    fn refuses_output_that_is_not_explain_analyze() {
        let not_analyze: Value = serde_json::from_str(r#"[{"Plan": {"Node Type": "Result"}}]"#).unwrap();
        assert!(PlanSummary::from_json(&not_analyze)
            .unwrap_err()
            .to_string()
            .contains("EXPLAIN ANALYZE"));
        assert!(PlanSummary::from_json(&Value::Null).is_err());
    }
}
