//! `contend completions` and `contend man`: generated from the clap
//! definitions, so every subcommand and flag appears; the bash script
//! parses, and the pages are valid roff.

use std::process::{Command, Stdio};

use crate::util::{text, IsolatedTmp};

const SUBCOMMANDS: &[&str] = &[
    "provision",
    "run",
    "sweep",
    "recommend",
    "migrate",
    "report",
    "compare",
    "completions",
    "man",
];

fn on_path(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn completion_scripts_name_every_subcommand_and_bash_parses_its_own() {
    let tmp = IsolatedTmp::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = tmp.contend().args(["completions", shell]).output().unwrap();
        let (script, stderr) = text(&output);
        assert!(output.status.success(), "{shell}: {stderr}");
        for subcommand in SUBCOMMANDS {
            assert!(script.contains(subcommand), "{shell} completes {subcommand}");
        }
        assert!(script.contains("pool-sizes"), "{shell} completes sweep's flags");
    }
    let output = tmp.contend().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "an unknown shell is bad input");

    if on_path("bash") {
        let script = tmp.path().join("contend.bash");
        let output = tmp.contend().args(["completions", "bash"]).output().unwrap();
        std::fs::write(&script, &output.stdout).unwrap();
        let checked = Command::new("bash").arg("-n").arg(&script).output().unwrap();
        assert!(checked.status.success(), "bash -n: {}", text(&checked).1);
        // Loaded, it completes `contend sw` to `sweep`.
        let completed = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=(contend sw); COMP_CWORD=1; _contend contend sw contend; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert_eq!(text(&completed).0.trim(), "sweep", "{}", text(&completed).1);
    }
}

#[test]
fn the_man_page_lists_every_subcommand_and_dir_writes_one_page_each() {
    let tmp = IsolatedTmp::new();
    let output = tmp.contend().arg("man").output().unwrap();
    let (page, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(page.lines().any(|l| l.starts_with(".TH contend 1")), "{page}");
    for subcommand in SUBCOMMANDS {
        assert!(
            page.contains(&format!("contend\\-{subcommand}(1)")),
            "man lists {subcommand}"
        );
    }

    let dir = tmp.path().join("man1");
    let output = tmp.contend().arg("man").arg("--dir").arg(&dir).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    let run_page = std::fs::read_to_string(dir.join("contend-run.1")).unwrap();
    assert!(run_page.contains(".TH contend-run 1"), "{run_page}");
    assert!(run_page.contains("\\-\\-pool\\-size"), "run's page has its flags");
    for subcommand in SUBCOMMANDS {
        assert!(
            dir.join(format!("contend-{subcommand}.1")).is_file(),
            "{subcommand}'s page"
        );
    }

    // man itself renders the page without a warning.
    if on_path("man") {
        let rendered = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.join("contend-run.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let (shown, warnings) = text(&rendered);
        assert!(rendered.status.success(), "{warnings}");
        assert_eq!(warnings.trim(), "", "groff warns");
        assert!(shown.contains("--pool-size"), "{shown}");
    }
}
