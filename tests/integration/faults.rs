//! Faults in the results directory: a full disk stops a sweep with a clear
//! error and leaves the cells already written readable; an unwritable
//! directory is refused before any server starts.

use std::process::Command;

use crate::util::{prepare_machine, text, IsolatedTmp};

/// A tmpfs mounted for the test's lifetime (tests run as root here).
struct TinyFilesystem(std::path::PathBuf);

impl TinyFilesystem {
    fn mount(path: &std::path::Path, size: &str) -> TinyFilesystem {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs (the tests run as root)");
        TinyFilesystem(path.to_path_buf())
    }
}

impl Drop for TinyFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_results_directory_stops_the_sweep_and_keeps_the_cells_written() {
    prepare_machine();
    let tmp = IsolatedTmp::new();
    let results = tmp.path().join("results");
    let _tiny = TinyFilesystem::mount(&results, "32k");
    let output = tmp
        .contend()
        .args(["sweep", "--workload", "sleep", "--pool-sizes", "1,2,3,4,5,6,7,8"])
        .args([
            "--clients",
            "4",
            "--duration",
            "0.3s",
            "--warmup",
            "0s",
            "--backend",
            "local",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("contend: error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("No space left on device"), "{stderr}");
    assert!(
        errors[0].contains("choose another directory with --results"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = std::fs::read_dir(&results).unwrap().flatten().next().unwrap().path();
    let cells = std::fs::read_to_string(dir.join("cells.jsonl")).unwrap();
    let lines: Vec<&str> = cells.lines().collect();
    assert!(!lines.is_empty() && lines.len() < 8, "{} cells", lines.len());
    for line in &lines {
        let _: serde_json::Value = serde_json::from_str(line).expect("every cell written is whole");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(tmp.run_dirs().is_empty(), "servers stopped: {:?}", tmp.run_dirs());
}

#[test]
fn an_unwritable_results_directory_is_refused_before_any_server_starts() {
    let tmp = IsolatedTmp::new();
    for results in ["/proc/contend-results", "/dev/null/results"] {
        let output = tmp
            .contend()
            .args(["run", "--workload", "sleep", "--backend", "local", "--results", results])
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("backend local"), "no server was started: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("contend: error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(results) && errors[0].contains("--results"),
            "{stderr}"
        );
    }
    assert!(tmp.run_dirs().is_empty());
}
