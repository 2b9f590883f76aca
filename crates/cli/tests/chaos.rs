//! The chaos harness catches a real bug in real processes: with replicas
//! that de-duplicate retried commands in memory instead of through the
//! replicated session table (a bug planted only in debug builds), a few
//! leader kills under load must produce a violation. The clean runs are in
//! `.ci/run` (release build, every fault kind).

use std::process::Command;

#[test]
fn chaos_catches_a_replica_that_applies_a_retried_command_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["chaos", "--seconds", "12", "--seed", "4", "--faults", "kill-leader"])
        .arg("--dir")
        .arg(dir.path().join("run"))
        .env("CHORUS_PLANT", "dedup-outside-log")
        .output()
        .expect("chorus chaos runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the planted bug went unnoticed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("faults       "), "the harness did not finish its run:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("[delivery]") || stdout.contains("[rooms]") || stdout.contains("[linearizable accounts]"),
        "expected a duplicate delivery or a non-linearizable account history:\n{stdout}"
    );
}

#[test]
fn chaos_refuses_bad_options() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_chorus")).arg("chaos").args(args).output().unwrap();
    let four = run(&["--replicas", "4"]);
    assert!(!four.status.success());
    assert!(String::from_utf8_lossy(&four.stderr).contains("use 3 or 5 replicas"));
    let unknown = run(&["--faults", "meteor"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no fault kind called \"meteor\""));
}
