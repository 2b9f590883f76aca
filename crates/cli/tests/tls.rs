//! TLS set-up as a user meets it: what `chorus up` writes, a client that
//! trusts the wrong CA, a replica without a `[tls]` table and without
//! `--insecure`, and a plaintext cluster made with `--insecure`.

mod common;

use chorus_client::{Client, ClientError, ClientOptions, Endpoints};
use chorus_proto::{ClusterFile, ClusterTls};
use common::{chorus, Cluster};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn chorus_up_writes_a_ca_and_one_private_key_per_replica_outside_the_data() {
    let cluster = Cluster::start(3);
    let file = ClusterFile::load(&cluster.cluster_file()).expect("cluster file");
    let tls_dir = cluster.dir.path().join("tls");
    let ca = std::fs::read_to_string(tls_dir.join("ca.pem")).expect("ca.pem");
    assert_eq!(file.tls, Some(ClusterTls { ca_cert: ca }), "cluster.toml carries the CA clients trust");
    let mode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&tls_dir.join("ca.key")), 0o600);
    for replica in &file.replicas {
        let key = replica.tls_key.as_ref().expect("a key path");
        assert_eq!(key, &tls_dir.join(format!("replica-{}.key", replica.id)));
        assert_eq!(mode(key), 0o600, "replica {}'s key is private", replica.id);
        assert!(!key.starts_with(&replica.data_dir), "a wiped data directory keeps the key");
        assert!(replica.tls_cert.as_ref().expect("a certificate path").exists());
    }
    let text = std::fs::read_to_string(cluster.cluster_file()).expect("cluster.toml");
    assert!(text.contains("tls_cert = \"tls/replica-0.pem\""), "paths relative to the file: {text}");
    let mut client = cluster.client();
    assert_eq!(client.command("create alice")["ok"], true, "an ordinary client is served over TLS");
}

#[test]
fn a_client_that_trusts_another_ca_fails_with_a_clear_error() {
    let cluster = Cluster::start(3);
    let mut file = ClusterFile::load(&cluster.cluster_file()).expect("cluster file");
    let stranger = chorus_tls::CertificateAuthority::generate().expect("another CA");
    file.tls = Some(ClusterTls { ca_cert: stranger.cert_pem().to_string() });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let endpoints = Endpoints::from_cluster(&file).expect("a usable CA, just not this cluster's");
    let options = ClientOptions { call_timeout: Duration::from_secs(2), ..ClientOptions::default() };
    match runtime.block_on(Client::connect_with(endpoints, options)) {
        Err(ClientError::Unavailable(reason)) => {
            assert!(reason.contains("TLS handshake with replica"), "{reason}");
            assert!(reason.contains("UnknownIssuer") && reason.contains("[tls] CA"), "{reason}");
        }
        other => panic!("a client with the wrong CA must fail: {other:?}"),
    }

    // `chorus status` with that file shows every replica unreachable, and why.
    let wrong = cluster.dir.path().join("wrong-ca.toml");
    std::fs::write(&wrong, file.to_toml()).expect("write");
    let output = chorus().args(["status", "--json", "--cluster"]).arg(&wrong).output().expect("status runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(row["reachable"], false, "{row}");
        assert!(row["error"].as_str().is_some_and(|e| e.contains("invalid peer certificate")), "{row}");
    }
}

#[test]
fn a_replica_without_tls_refuses_to_start_unless_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, ClusterFile::local(1, 1).to_toml()).expect("write");
    let output =
        chorus().args(["server", "--new-cluster", "--id", "0", "--cluster"]).arg(&path).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no [tls] table") && stderr.contains("--insecure"), "{stderr}");
    assert!(!dir.path().join("replica-0").exists(), "refused before it touched the data directory");
}

#[test]
fn an_insecure_cluster_runs_in_plaintext_and_stays_insecure_only_by_choice() {
    let mut cluster = Cluster::start_with(3, &["--insecure"]);
    let file = ClusterFile::load(&cluster.cluster_file()).expect("cluster file");
    assert!(file.tls.is_none() && !cluster.dir.path().join("tls").exists(), "no TLS at all");
    let mut client = cluster.client();
    assert_eq!(client.command("create bob")["ok"], true, "plaintext clients are served");
    client.quit();
    cluster.kill9_everything();
    // Restarting it without --insecure is refused, with the reason.
    let output = chorus()
        .args(["up", "--dir"])
        .arg(cluster.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("up runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no [tls] table") && stderr.contains("--insecure"), "{stderr}");
}
