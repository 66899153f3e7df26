//! One module per subcommand: each turns checked options into library
//! calls and shows progress; main maps what they return to an exit code.

pub mod compare;
pub mod migrate;
pub mod provision;
pub mod recommend;
pub mod report;
pub mod run;
pub mod sweep;
