//! Test-only planted bugs, so the simulator can prove its checkers catch
//! them. A hook is active only when a test sets it on its own thread, and
//! only in builds with debug assertions: in a release build every hook is
//! the constant `false` and [`set`] refuses to plant anything.

/// The planted bugs, as bit flags.
pub mod bugs {
    /// A replica answers Prepare/Accept before its write is durable.
    pub const REPLY_BEFORE_PERSIST: u32 = 1 << 0;
    /// A new leader ignores the values reported in promises.
    pub const SKIP_RECOVERY: u32 = 1 << 1;
    /// The replica de-duplicates commands in its own memory instead of
    /// through the replicated session table.
    pub const DEDUP_OUTSIDE_LOG: u32 = 1 << 2;
    /// A replica whose disk was wiped ignores that it must rebuild, and
    /// votes at once with the empty state of a founding member.
    pub const WIPED_VOTES_AT_ONCE: u32 = 1 << 3;
    /// A member's room messages start at the room's newest one instead of
    /// its read position: what it missed while away is skipped.
    pub const ROOM_BACKLOG_SKIPPED: u32 = 1 << 4;
    /// The state machine ignores the read position a post carries,
    /// though the post's reply still tells the client it was applied.
    pub const CARRIED_READ_POSITION_IGNORED: u32 = 1 << 5;
}

/// The flag of the bug called `name` (kebab case, as the simulator's
/// `--plant` and the server's `CHORUS_PLANT` spell it).
pub fn from_name(name: &str) -> Option<u32> {
    match name {
        "reply-before-persist" => Some(bugs::REPLY_BEFORE_PERSIST),
        "skip-recovery" => Some(bugs::SKIP_RECOVERY),
        "dedup-outside-log" => Some(bugs::DEDUP_OUTSIDE_LOG),
        "wiped-votes-at-once" => Some(bugs::WIPED_VOTES_AT_ONCE),
        "room-backlog-skipped" => Some(bugs::ROOM_BACKLOG_SKIPPED),
        "carried-read-position-ignored" => Some(bugs::CARRIED_READ_POSITION_IGNORED),
        _ => None,
    }
}

#[cfg(debug_assertions)]
thread_local! {
    static ACTIVE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Plants `bugs` (a union of [`bugs`] flags) on this thread; 0 clears.
pub fn set(bugs: u32) {
    #[cfg(debug_assertions)]
    ACTIVE.with(|active| active.set(bugs));
    #[cfg(not(debug_assertions))]
    assert_eq!(bugs, 0, "planted bugs exist only in debug builds");
}

/// True when `bug` is planted on this thread.
#[inline]
pub fn active(bug: u32) -> bool {
    #[cfg(debug_assertions)]
    {
        ACTIVE.with(|active| active.get() & bug != 0)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = bug;
        false
    }
}
