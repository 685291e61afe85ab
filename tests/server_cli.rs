//! The `regionstore-server` binary as an operator meets it: a real process, its exit code and
//! what it prints.

use std::process::{Command, Output};

fn server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regionstore-server"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run regionstore-server")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_the_overrides() {
    let out = server(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in ["--config", "--pd", "--addr", "--status-addr", "--data-dir", "--check-config"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn check_config_accepts_the_template_and_applies_overrides() {
    let out = server(&[
        "--config",
        "etc/config-template.toml",
        "--pd",
        "127.0.0.1:1111,127.0.0.1:2222",
        "--data-dir",
        "/tmp/regionstore-cli-test",
        "--check-config",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let printed: regionstore::config::Config = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(printed.pd.endpoints, ["127.0.0.1:1111", "127.0.0.1:2222"]);
    assert_eq!(printed.server.data_dir, std::path::PathBuf::from("/tmp/regionstore-cli-test"));
}

#[test]
fn invalid_values_fail_with_the_key_named() {
    let out = server(&["--addr", "not-an-address", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("server.addr") && err.contains("not-an-address"), "{err}");
}

#[test]
fn unreadable_or_malformed_files_are_reported() {
    let out = server(&["--config", "/nonexistent/regionstore.toml", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/regionstore.toml"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nno-such-option = 1\n").unwrap();
    let out = server(&["--config", path.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no-such-option"), "{}", text(&out.stderr));
}

#[test]
fn default_config_round_trips_through_the_binary() {
    let out = server(&["--print-default-config"]);
    assert!(out.status.success());
    let printed: regionstore::config::Config = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(printed, regionstore::config::Config::default());
}
