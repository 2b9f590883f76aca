//! Counts of the rarer paths a run took, so a sweep shows (and a test
//! requires) that snapshots, transfers, installs and crashes in the middle
//! of them were exercised rather than silently skipped, and that disks
//! were wiped and their replicas rebuilt.

/// How often a run (or a sweep) took each snapshot path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Snapshots written to disk and reported to their machine.
    pub snapshots_written: u64,
    /// Snapshot fetches the machines asked for (a peer's log was
    /// compacted below what they needed).
    pub fetches_started: u64,
    /// Fetches that received a whole snapshot that verified.
    pub transfers_completed: u64,
    /// Fetches that gave up (a silent or refusing peer).
    pub fetches_failed: u64,
    /// Fetched snapshots a machine installed (not overtaken by its log).
    pub installs: u64,
    /// Restarts that loaded a snapshot from disk.
    pub restarts_from_snapshot: u64,
    /// Restarts whose snapshot was past the log's durable chosen prefix,
    /// so the core installed it at start.
    pub restarts_past_log: u64,
    /// Crashes while a snapshot was being written.
    pub crashes_during_snapshot_write: u64,
    /// Half-written snapshot files a restart removed.
    pub half_written_removed: u64,
    /// Crashes while a snapshot was being fetched.
    pub crashes_during_fetch: u64,
    /// Crashes after a fetched snapshot was durable, before the machine
    /// installed it.
    pub crashes_during_install: u64,
    /// Restarts on a wiped (empty, non-founding) disk.
    pub disks_wiped: u64,
    /// Rebuilds after a wipe that became durable (the replica votes again).
    pub rebuilds_finished: u64,
    /// Gap notices shown to room members (messages dropped from a room's
    /// history before they read them; runs with small history bounds).
    pub room_gap_notices_shown: u64,
    /// Read positions confirmed by the reply to a post that carried them.
    pub read_positions_carried: u64,
}

impl Coverage {
    /// Every counter, by name.
    pub fn counters(&self) -> [(&'static str, u64); 15] {
        [
            ("snapshots written", self.snapshots_written),
            ("fetches started", self.fetches_started),
            ("transfers completed", self.transfers_completed),
            ("fetches failed", self.fetches_failed),
            ("installs from a peer", self.installs),
            ("restarts from a snapshot", self.restarts_from_snapshot),
            ("restarts past the log", self.restarts_past_log),
            ("crashes during snapshot write", self.crashes_during_snapshot_write),
            ("half-written snapshots removed", self.half_written_removed),
            ("crashes during fetch", self.crashes_during_fetch),
            ("crashes during install", self.crashes_during_install),
            ("disks wiped", self.disks_wiped),
            ("rebuilds finished", self.rebuilds_finished),
            ("room gap notices shown", self.room_gap_notices_shown),
            ("read positions carried by posts", self.read_positions_carried),
        ]
    }

    /// The counters that are still zero.
    pub fn missing(&self) -> Vec<&'static str> {
        self.counters().into_iter().filter(|(_, count)| *count == 0).map(|(name, _)| name).collect()
    }
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, other: Coverage) {
        self.snapshots_written += other.snapshots_written;
        self.fetches_started += other.fetches_started;
        self.transfers_completed += other.transfers_completed;
        self.fetches_failed += other.fetches_failed;
        self.installs += other.installs;
        self.restarts_from_snapshot += other.restarts_from_snapshot;
        self.restarts_past_log += other.restarts_past_log;
        self.crashes_during_snapshot_write += other.crashes_during_snapshot_write;
        self.half_written_removed += other.half_written_removed;
        self.crashes_during_fetch += other.crashes_during_fetch;
        self.crashes_during_install += other.crashes_during_install;
        self.disks_wiped += other.disks_wiped;
        self.rebuilds_finished += other.rebuilds_finished;
        self.room_gap_notices_shown += other.room_gap_notices_shown;
        self.read_positions_carried += other.read_positions_carried;
    }
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.counters().iter().map(|(name, count)| format!("{name}: {count}")).collect();
        f.write_str(&parts.join(", "))
    }
}
