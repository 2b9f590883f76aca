//! `chorus status`: every replica's view of itself, within a few seconds
//! even when some are down.

use chorus_proto::{ClusterFile, ReplicaAddress, StatusReport};
use std::path::Path;
use std::time::Duration;

/// Time each replica gets to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(cluster: &Path, json: bool) -> anyhow::Result<()> {
    let cluster = ClusterFile::load(cluster)?;
    let endpoints = chorus_client::Endpoints::from_cluster(&cluster)?;
    let probes = cluster.replicas.iter().map(|replica| {
        let (replica, endpoints) = (replica.clone(), endpoints.clone());
        tokio::spawn(async move {
            let status = chorus_client::fetch_status(&endpoints, replica.id, STATUS_TIMEOUT).await;
            (replica, status.map_err(|e| e.to_string()))
        })
    });
    let mut rows = Vec::new();
    for probe in probes.collect::<Vec<_>>() {
        rows.push(probe.await?);
    }
    if json {
        for (replica, status) in &rows {
            println!("{}", json_row(replica, status));
        }
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn json_row(replica: &ReplicaAddress, status: &Result<StatusReport, String>) -> serde_json::Value {
    let mut row = serde_json::json!({
        "id": replica.id,
        "address": replica.client_addr.to_string(),
        "reachable": status.is_ok(),
    });
    match status {
        Ok(s) => {
            let extra = serde_json::json!({
                "role": role_name(s),
                "pid": s.pid,
                "leader": s.leader,
                "ballot": s.ballot.to_string(),
                "chosen": s.chosen_through,
                "applied": s.applied_through,
                "last_slot": s.last_slot,
                "accounts": s.accounts,
                "clients": s.clients_connected,
                "snapshot_slot": s.snapshot_slot,
                "compacted_through": s.compacted_through,
                "incarnation": s.incarnation,
                "log_disk_bytes": s.log_disk_bytes,
                "snapshot_disk_bytes": s.snapshot_disk_bytes,
                "catching_up": s.snapshot_fetch.map(|f| serde_json::json!({
                    "from": f.from,
                    "snapshot_slot": f.slot,
                    "received_bytes": f.received_bytes,
                    "total_bytes": f.total_bytes,
                })),
            });
            if let (Some(row), serde_json::Value::Object(extra)) = (row.as_object_mut(), extra) {
                row.extend(extra);
            }
        }
        Err(error) => row["error"] = serde_json::Value::String(error.clone()),
    }
    row
}

fn role_name(status: &StatusReport) -> &'static str {
    match status.role {
        chorus_paxos::Role::Leader => "leader",
        chorus_paxos::Role::Follower => "follower",
        chorus_paxos::Role::PreCandidate | chorus_paxos::Role::Candidate => "candidate",
        chorus_paxos::Role::Recovering => "rebuilding",
    }
}

/// Bytes as a short human figure.
fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// "-", or how far a snapshot transfer into the replica got.
fn catch_up(status: &StatusReport) -> String {
    match status.snapshot_fetch {
        None => "-".into(),
        Some(f) if f.total_bytes == 0 => format!("snapshot from {}: starting", f.from),
        Some(f) => format!("snapshot {} from {}: {}%", f.slot, f.from, f.received_bytes * 100 / f.total_bytes.max(1)),
    }
}

fn print_table(rows: &[(ReplicaAddress, Result<StatusReport, String>)]) {
    println!(
        "{:<3} {:<21} {:<11} {:<10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}  catch-up",
        "id", "address", "reachable", "role", "pid", "ballot", "chosen", "applied", "snapshot", "disk"
    );
    for (replica, status) in rows {
        match status {
            Ok(s) => println!(
                "{:<3} {:<21} {:<11} {:<10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
                replica.id,
                replica.client_addr,
                "yes",
                role_name(s),
                s.pid,
                s.ballot.to_string(),
                s.chosen_through,
                s.applied_through,
                s.snapshot_slot,
                human_bytes(s.log_disk_bytes + s.snapshot_disk_bytes),
                catch_up(s)
            ),
            Err(error) => println!("{:<3} {:<21} {:<11} ({error})", replica.id, replica.client_addr, "no"),
        }
    }
}
