//! `Config::validate`, `quorum` and `peers`, at the edges of each rule.

use chorus_paxos::{Config, ConfigError};

fn cluster(id: u8, replicas: Vec<u8>) -> Config {
    Config::new(id, replicas, 7)
}

#[test]
fn cluster_sizes_one_three_five_and_seven_are_accepted() {
    for n in [1u8, 3, 5, 7] {
        assert_eq!(cluster(0, (0..n).collect()).validate(), Ok(()), "{n} replicas");
    }
}

#[test]
fn empty_even_and_oversized_clusters_are_refused() {
    assert_eq!(cluster(0, vec![]).validate(), Err(ConfigError::ClusterSize(0)));
    for n in [2u8, 4, 6, 8, 9] {
        assert_eq!(cluster(0, (0..n).collect()).validate(), Err(ConfigError::ClusterSize(n as usize)), "{n} replicas");
    }
}

#[test]
fn the_replica_must_be_a_member_and_ids_distinct() {
    assert_eq!(cluster(3, vec![0, 1, 2]).validate(), Err(ConfigError::NotAMember(3)));
    assert_eq!(cluster(0, vec![0, 1, 1]).validate(), Err(ConfigError::DuplicateReplica));
}

#[test]
fn timeouts_must_be_strictly_ordered_and_positive() {
    let timeouts = |heartbeat_ticks, election_ticks_min, election_ticks_max, catchup_retry_ticks| Config {
        heartbeat_ticks,
        election_ticks_min,
        election_ticks_max,
        catchup_retry_ticks,
        ..cluster(0, vec![0, 1, 2])
    };
    assert_eq!(timeouts(1, 2, 3, 1).validate(), Ok(()), "the tightest valid timeouts");
    for (heartbeat, min, max, catchup) in
        [(0, 2, 3, 1), (2, 2, 3, 1), (3, 2, 4, 1), (1, 3, 3, 1), (1, 4, 3, 1), (1, 2, 3, 0)]
    {
        let config = timeouts(heartbeat, min, max, catchup);
        assert_eq!(config.validate(), Err(ConfigError::Timeouts), "{heartbeat} {min} {max} {catchup}");
    }
}

#[test]
fn quorum_is_a_strict_majority() {
    let quorums: Vec<usize> = [1u8, 3, 5, 7].into_iter().map(|n| cluster(0, (0..n).collect()).quorum()).collect();
    assert_eq!(quorums, vec![1, 2, 3, 4]);
}

#[test]
fn peers_are_every_replica_but_this_one() {
    let peers: Vec<u8> = cluster(2, vec![4, 2, 0]).peers().collect();
    assert_eq!(peers, vec![4, 0]);
    assert_eq!(cluster(0, vec![0]).peers().count(), 0);
}
