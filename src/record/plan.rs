//! A sweep's plan, as `plan.json` records it when the sweep starts: every
//! cell in run order with everything that defines it, the servers asked
//! for, and a digest of each file the cells read at run time. `sweep
//! --resume DIR` runs the rest of this plan, not one retyped from memory.
//!
//! Plain serde data; results/ reads and writes it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::CellSettings;
use crate::provision::ProvisionOptions;

/// Version of the plan record's schema.
pub const PLAN_SCHEMA: &str = "contend.plan/1";

/// One cell of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedCell {
    /// max_connections to run it at (`None`: whatever the server has).
    pub max_connections: Option<u32>,
    /// What it runs.
    pub settings: CellSettings,
}

/// A file a cell reads when it runs (a `--script`, an `--init-sql`), and
/// its content's SHA-256 when the sweep started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The flag that named it, e.g. `--script`.
    pub flag: String,
    /// The path, as given (read relative to the working directory).
    pub path: PathBuf,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
}

/// `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPlanRecord {
    /// [`PLAN_SCHEMA`].
    pub schema: String,
    /// contend's version.
    pub contend_version: String,
    /// When the sweep started, RFC 3339 UTC.
    pub written_at: String,
    /// Every cell, in run order.
    pub cells: Vec<PlannedCell>,
    /// The servers asked for; URLs are not recorded (they may hold a
    /// password): a resume takes them from its own flags or environment.
    pub provision: ProvisionOptions,
    /// The files the cells read at run time.
    pub inputs: Vec<InputFile>,
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
