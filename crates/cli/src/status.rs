//! `chorus status`: every replica's view of itself, within a few seconds
//! even when some are down.

use chorus_proto::{ClusterFile, ReplicaAddress, StatusReport};
use std::path::Path;
use std::time::Duration;

/// Time each replica gets to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(cluster: &Path, json: bool) -> anyhow::Result<()> {
    let cluster = ClusterFile::load(cluster)?;
    let probes = cluster.replicas.iter().map(|replica| {
        let replica = replica.clone();
        tokio::spawn(async move {
            let status = chorus_client::fetch_status(replica.client_addr, STATUS_TIMEOUT).await;
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
    }
}

fn print_table(rows: &[(ReplicaAddress, Result<StatusReport, String>)]) {
    println!(
        "{:<3} {:<21} {:<11} {:<10} {:>8} {:>10} {:>10} {:>10}",
        "id", "address", "reachable", "role", "pid", "ballot", "chosen", "applied"
    );
    for (replica, status) in rows {
        match status {
            Ok(s) => println!(
                "{:<3} {:<21} {:<11} {:<10} {:>8} {:>10} {:>10} {:>10}",
                replica.id,
                replica.client_addr,
                "yes",
                role_name(s),
                s.pid,
                s.ballot.to_string(),
                s.chosen_through,
                s.applied_through
            ),
            Err(error) => println!("{:<3} {:<21} {:<11} ({error})", replica.id, replica.client_addr, "no"),
        }
    }
}
