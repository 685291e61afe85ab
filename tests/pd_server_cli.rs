//! The `regionstore-pd` binary as an operator meets it: a real process on a free port, a gRPC
//! client, SIGTERM, and the exit code.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::pdpb::{pd_client::PdClient, GetMembersRequest};
use test_raftstore::util::wait_for;

const DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    // Bound and released at once; the race with another process taking it is accepted.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn pd_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regionstore-pd"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Kills the child if the test fails before it exits on its own.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_config_accepts_the_template_and_applies_overrides() {
    let out = pd_command()
        .args(["-C", "etc/pd-config-template.toml", "--addr", "127.0.0.1:12379", "--check-config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let printed: pd_server::PdConfig =
        toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(printed.addr, "127.0.0.1:12379");

    let out = pd_command().args(["--addr", "nowhere", "--check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

#[test]
fn serves_get_members_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = pd_command()
        .args(["--addr", &addr, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaper(child);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let resp = runtime.block_on(async {
        let start = Instant::now();
        let mut client = loop {
            match PdClient::connect(format!("http://{addr}")).await {
                Ok(client) => break client,
                Err(e) => {
                    assert!(start.elapsed() < DEADLINE, "PD did not come up: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        client.get_members(GetMembersRequest { header: None }).await.unwrap().into_inner()
    });
    drop(runtime);
    let header = resp.header.expect("header");
    assert!(header.error.is_none() && header.cluster_id != 0);
    assert_eq!(resp.leader.expect("leader").client_urls, [format!("http://{addr}")]);

    let killed = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_for("PD to exit after SIGTERM", DEADLINE, || child.0.try_wait().unwrap());
    assert!(status.success(), "exit status {status:?}");
}
