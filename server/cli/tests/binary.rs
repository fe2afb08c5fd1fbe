//! The `tessera` binary itself. (Having an integration test here also makes
//! `cargo test --workspace` build the binary, which the CLI tests in the
//! `tests/` crate drive.)

use std::process::Command;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

#[test]
fn prints_its_version_and_lists_its_commands() {
    let version = tessera().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("tessera {}", env!("CARGO_PKG_VERSION")));

    let help = tessera().arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["serve", "dev", "migrate", "platform", "tenant"] {
        assert!(help.contains(command), "--help does not mention {command}:\n{help}");
    }
}

#[test]
fn an_unknown_command_fails_with_usage() {
    let out = tessera().arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}
