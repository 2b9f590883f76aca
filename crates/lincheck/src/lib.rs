//! `chorus-lincheck`: the linearizability checker ([`check`]) for account
//! histories ([`Operation`], [`AccountOp`], [`AccountResult`]).
//!
//! Linearizability of account operations: does some single order of the
//! operations, each placed inside its own time window, explain every reply?
//!
//! # The model
//!
//! The account set starts empty. `Create(n)` inserts `n` and replies `Ok`, or
//! replies `NameTaken` when `n` is present. `Delete(n)` removes `n` and
//! replies `Ok`, or replies `NoSuchAccount`. `Send { from, to }` replies
//! `SenderUnknown` when `from` is absent, else `NoSuchAccount` when `to` is
//! absent, else `Ok` (the check order of `ChatState::send`). `List(pattern)`
//! replies the sorted names that the regex matches anywhere (all of them for
//! `None`). Only a successful create or delete changes the set.
//!
//! # Time windows
//!
//! An operation with a reply takes effect at one instant of
//! `[invoked_at, completed tick]`, both ends included: ticks are coarse, so
//! two operations that share a tick may be ordered either way. A timed-out
//! operation takes effect at some instant at or after `invoked_at`, or never,
//! and its reply is unknown, so it is not checked.
//!
//! # The search (Wing & Gong, with Lowe's memoization)
//!
//! The operations with a reply are sorted by invocation. At each point of the
//! search the *frontier* is the earliest completion among those not yet
//! placed; every unplaced one invoked at or before the frontier is a
//! candidate to be placed next. A candidate is placed if its reply matches
//! the account set (placing it applies its effect); a depth-first search
//! tries the candidates in order and backtracks on a dead end. Every node
//! entered is remembered by (the set of placed operations as a bitset, the
//! account set, the timed-out operations used so far); a node met again
//! has already failed and is skipped. The history is linearizable when every
//! operation with a reply has been placed.
//!
//! One pruning keeps failing searches small: a candidate that changes nothing
//! (a list, a send, a refused create or delete) and whose reply fits the
//! account set as it is gets placed at once, as the node's only move. Any
//! valid order that places it later stays valid with it moved forward: it
//! changes no reply, and taking it out of the unplaced operations can only
//! move the frontier later. So the search branches only on writes.
//!
//! # Timed-out operations, placed lazily
//!
//! A timed-out `List` or `Send` changes nothing, and neither does a
//! timed-out `Delete` of a name that no operation creates: they are dropped.
//! A timed-out `Create(n)` or `Delete(n)` is a one-shot *token* that may
//! insert (or remove) `n` at any point after its invocation, i.e. once its
//! invocation is at or before the frontier. Using a token only matters when
//! a later reply sees the change, so a token is used only just before a
//! placed operation whose reply needs it (a `NameTaken` needs the name
//! present, a `List` needs exactly its names present among those its pattern
//! matches): any valid order can be rewritten so that each token's effect
//! moves later until the first operation that observes it. Tokens of the
//! same name and kind that are both available are interchangeable, so the
//! earliest-invoked one is always used, and the tokens used are a count per
//! (name, kind). Never using a token is its "took no effect" outcome. Thus
//! timed-out operations add no branching of their own.
//!
//! # Cost and bounds
//!
//! Each step tries one candidate: checking its reply costs O(names it
//! reads), and remembering the node hashes a key whose length is the window
//! of the bitset between the first unplaced operation and the last placed
//! one, plus the account set and the token counts. A mostly sequential
//! history is checked in a number of steps close to its length times the
//! number of overlapping operations. The general problem is NP-complete, so
//! the search stops after `SEARCH_STEPS_MAX` steps with
//! [`CheckError::TooHard`], which is not evidence of a violation; the memo
//! holds at most one key per step. A violation costs the most: it is
//! reported only once every order of the overlapping writes before it has
//! failed.
//!
//! Replies the real service has beyond this model (too many accounts, a full
//! mailbox, a truncated list) have no `AccountResult`: the simulator and the
//! chaos harness keep such operations out of the history or away from those
//! limits.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use regex::Regex;

/// A clock reading in the history's own unit: simulator ticks, or
/// microseconds since the start of a chaos run. Only their order matters.
pub type Tick = u64;

/// Most search steps (candidate placements tried) before [`check`] gives up
/// with [`CheckError::TooHard`]. Also bounds the memo to this many keys.
pub const SEARCH_STEPS_MAX: u64 = 5_000_000;

/// Lines of the longest linearizable prefix shown in a violation.
const EXPLANATION_PREFIX_LINES_MAX: usize = 12;

/// Candidates shown in a violation, at the point where the search got stuck.
const EXPLANATION_CANDIDATES_MAX: usize = 8;

/// One account operation as a client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountOp {
    /// Open an account with this name.
    Create(String),
    /// Close the account with this name.
    Delete(String),
    /// Send a message; only the names matter to this checker.
    Send {
        /// The sending account.
        from: String,
        /// The receiving account.
        to: String,
    },
    /// List the account names the regex matches anywhere (all for `None`).
    List(Option<String>),
}

/// The reply a client received for an [`AccountOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountResult {
    /// Done.
    Ok,
    /// `Create` of a name that exists.
    NameTaken,
    /// `Delete` of a missing name, or `Send` to one.
    NoSuchAccount,
    /// `Send` from a missing name (checked before the recipient).
    SenderUnknown,
    /// The reply to `List`: sorted, distinct.
    Names(Vec<String>),
}

/// One operation of the history, with the ticks that bound it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it (for explanations only).
    pub client: usize,
    /// What was asked.
    pub op: AccountOp,
    /// Tick at which the client sent it.
    pub invoked_at: Tick,
    /// `None`: timed out; the outcome is unknown.
    pub completed: Option<(Tick, AccountResult)>,
}

/// Proof that no linearization exists, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The reply no account set explains, or the longest linearizable prefix
    /// found, the account set after it and the operations that could not come
    /// next.
    pub explanation: String,
}

/// Why [`check`] did not accept a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The history is not linearizable.
    Violation(Violation),
    /// The search took `steps` steps without deciding; the history may well
    /// be linearizable. Not a failure of the system under test.
    TooHard {
        /// Search steps taken (`SEARCH_STEPS_MAX` from [`check`]).
        steps: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history is not linearizable: {}", self.explanation)
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(violation) => violation.fmt(f),
            CheckError::TooHard { steps } => {
                write!(f, "linearizability undecided after {steps} search steps")
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// Checks the history. Operations of one client never overlap (a client has
/// one operation outstanding), but an unknown operation may be followed by
/// later operations of the same client. The checker does not rely on either.
///
/// Returns `Err(CheckError::Violation)` when no linearization exists and
/// `Err(CheckError::TooHard)` when `SEARCH_STEPS_MAX` steps did not decide.
///
/// # Panics
///
/// When an operation completes before it was invoked (a bug in the
/// recording harness).
pub fn check(history: &[Operation]) -> Result<(), CheckError> {
    check_counting_steps(history, SEARCH_STEPS_MAX).map(|_steps| ())
}

/// [`check`] with an explicit step bound; returns the steps taken.
fn check_counting_steps(history: &[Operation], steps_max: u64) -> Result<u64, CheckError> {
    let problem = Problem::build(history).map_err(CheckError::Violation)?;
    Search::new(&problem, steps_max).run()
}

/// The reference sequential model: applies `op` to `accounts` and returns its
/// reply. A `List` pattern that does not compile matches nothing here;
/// `check` rejects a `Names` reply to such a pattern before searching.
fn model_step(accounts: &mut BTreeSet<String>, op: &AccountOp) -> AccountResult {
    match op {
        AccountOp::Create(name) if accounts.contains(name) => AccountResult::NameTaken,
        AccountOp::Create(name) => {
            accounts.insert(name.clone());
            AccountResult::Ok
        }
        AccountOp::Delete(name) => {
            if accounts.remove(name) {
                AccountResult::Ok
            } else {
                AccountResult::NoSuchAccount
            }
        }
        AccountOp::Send { from, .. } if !accounts.contains(from) => AccountResult::SenderUnknown,
        AccountOp::Send { to, .. } if !accounts.contains(to) => AccountResult::NoSuchAccount,
        AccountOp::Send { .. } => AccountResult::Ok,
        AccountOp::List(pattern) => {
            let regex = pattern.as_deref().map(Regex::new);
            let names = accounts.iter().filter(|name| match &regex {
                None => true,
                Some(Ok(regex)) => regex.is_match(name),
                Some(Err(_)) => false,
            });
            AccountResult::Names(names.cloned().collect())
        }
    }
}

/// Describes history entry `index` on one line.
fn describe(history: &[Operation], index: usize) -> String {
    let operation = &history[index];
    let head = format!("#{index} client {} {:?} invoked at {}", operation.client, operation.op, operation.invoked_at);
    match &operation.completed {
        Some((tick, result)) => format!("{head}, replied at {tick}: {result:?}"),
        None => format!("{head}, timed out"),
    }
}

/// Index of a name in `Problem::names`; ids follow the names' sorted order.
type NameId = usize;

/// A fixed-size set of small integers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bits {
    words: Vec<u64>,
}

impl Bits {
    fn new(len: usize) -> Bits {
        Bits { words: vec![0; len.div_ceil(64)] }
    }

    fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    fn insert(&mut self, i: usize) {
        assert!(!self.contains(i), "bit {i} is inserted twice");
        self.words[i / 64] |= 1 << (i % 64);
        assert!(self.contains(i));
    }

    fn remove(&mut self, i: usize) {
        assert!(self.contains(i), "bit {i} is removed while absent");
        self.words[i / 64] &= !(1 << (i % 64));
        assert!(!self.contains(i));
    }

    /// The lowest integer not in the set (may be past the set's length).
    fn first_absent(&self) -> usize {
        let full = self.words.iter().take_while(|&&word| word == u64::MAX).count();
        let tail = self.words.get(full).map_or(0, |word| word.trailing_ones());
        full * 64 + tail as usize
    }

    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.words.len() * 64).filter(|&i| self.contains(i))
    }
}

/// What a timed-out operation may do to its name when it takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TokenKind {
    Insert = 0,
    Remove = 1,
}

/// What a placed operation does to the account set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Nothing,
    Insert(NameId),
    Remove(NameId),
}

/// What an operation's reply demands of the account set just before it takes
/// effect, and its effect then. `present` and `absent` are sorted and
/// disjoint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    present: Vec<NameId>,
    absent: Vec<NameId>,
    effect: Effect,
}

/// An operation with a reply, compiled for the search.
#[derive(Clone, Debug)]
struct Timed {
    /// Position in the history.
    index: usize,
    invoked_at: Tick,
    completed_at: Tick,
    rule: Rule,
}

/// Timed-out operations of one (name, kind), earliest invocation first.
#[derive(Clone, Debug)]
struct TokenGroup {
    name: NameId,
    kind: TokenKind,
    /// (invoked_at, history index), sorted.
    invoked: Vec<(Tick, usize)>,
}

/// The history compiled for the search.
struct Problem<'h> {
    history: &'h [Operation],
    /// Every name some create mentions, sorted; a name's id is its position.
    names: Vec<String>,
    /// The operations with a reply, sorted by (invoked, completed, index).
    ops: Vec<Timed>,
    groups: Vec<TokenGroup>,
    /// Per name, per `TokenKind`: the index in `groups`, if any.
    group_of: Vec<[Option<usize>; 2]>,
}

/// Compiled `List` patterns: the sorted ids a pattern matches, or why it
/// does not compile.
type PatternMasks = BTreeMap<Option<String>, Result<Vec<NameId>, String>>;

impl<'h> Problem<'h> {
    /// Compiles the history; a reply that no account set could give is a
    /// violation on its own.
    fn build(history: &'h [Operation]) -> Result<Problem<'h>, Violation> {
        let names: Vec<String> = history
            .iter()
            .filter_map(|operation| match &operation.op {
                AccountOp::Create(name) => Some(name.clone()),
                _ => None,
            })
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let mut masks = PatternMasks::new();
        let mut ops = Vec::new();
        for (index, operation) in history.iter().enumerate() {
            let Some((completed_at, result)) = &operation.completed else {
                continue;
            };
            assert!(*completed_at >= operation.invoked_at, "history entry {index} completes before it is invoked");
            let rule = rule_for(&names, &mut masks, &operation.op, result).map_err(|reason| {
                let explanation = format!("{}: no account set gives this reply: {reason}", describe(history, index));
                Violation { explanation }
            })?;
            let (invoked_at, completed_at) = (operation.invoked_at, *completed_at);
            ops.push(Timed { index, invoked_at, completed_at, rule });
        }
        ops.sort_by_key(|timed| (timed.invoked_at, timed.completed_at, timed.index));
        let (groups, group_of) = token_groups(history, &names);
        Ok(Problem { history, names, ops, groups, group_of })
    }
}

fn name_id(names: &[String], name: &str) -> Option<NameId> {
    names.binary_search_by(|known| known.as_str().cmp(name)).ok()
}

/// The rule of one reply, or why no account set gives it.
fn rule_for(
    names: &[String],
    masks: &mut PatternMasks,
    op: &AccountOp,
    result: &AccountResult,
) -> Result<Rule, String> {
    let id = |name: &str| name_id(names, name);
    let never = |name: &str| format!("no operation creates {name:?}");
    let rule = |present: Vec<NameId>, absent: Vec<NameId>, effect| Rule { present, absent, effect };
    let mut rule = match (op, result) {
        (AccountOp::Create(name), AccountResult::Ok) => {
            let name = id(name).ok_or_else(|| never(name))?;
            rule(vec![], vec![name], Effect::Insert(name))
        }
        (AccountOp::Create(name), AccountResult::NameTaken) => {
            rule(vec![id(name).ok_or_else(|| never(name))?], vec![], Effect::Nothing)
        }
        (AccountOp::Delete(name), AccountResult::Ok) => {
            let name = id(name).ok_or_else(|| never(name))?;
            rule(vec![name], vec![], Effect::Remove(name))
        }
        (AccountOp::Delete(name), AccountResult::NoSuchAccount) => {
            rule(vec![], id(name).into_iter().collect(), Effect::Nothing)
        }
        (AccountOp::Send { from, .. }, AccountResult::SenderUnknown) => {
            rule(vec![], id(from).into_iter().collect(), Effect::Nothing)
        }
        (AccountOp::Send { from, to }, AccountResult::NoSuchAccount) => {
            let from = id(from).ok_or_else(|| never(from))?;
            rule(vec![from], id(to).into_iter().collect(), Effect::Nothing)
        }
        (AccountOp::Send { from, to }, AccountResult::Ok) => {
            let from = id(from).ok_or_else(|| never(from))?;
            rule(vec![from, id(to).ok_or_else(|| never(to))?], vec![], Effect::Nothing)
        }
        (AccountOp::List(pattern), AccountResult::Names(listed)) => {
            let mask = masks.entry(pattern.clone()).or_insert_with(|| pattern_mask(names, pattern.as_deref()));
            list_rule(names, mask.as_deref()?, listed)?
        }
        (op, result) => return Err(format!("{op:?} never replies {result:?}")),
    };
    rule.present.sort_unstable();
    rule.present.dedup();
    rule.absent.sort_unstable();
    rule.absent.dedup();
    if let Some(both) = rule.present.iter().find(|name| rule.absent.contains(name)) {
        return Err(format!("{:?} would have to be both present and absent", names[*both]));
    }
    Ok(rule)
}

/// The sorted ids of the names `pattern` matches anywhere.
fn pattern_mask(names: &[String], pattern: Option<&str>) -> Result<Vec<NameId>, String> {
    let regex = match pattern {
        None => None,
        Some(pattern) => Some(Regex::new(pattern).map_err(|error| error.to_string())?),
    };
    let matches = |name: &String| regex.as_ref().is_none_or(|regex| regex.is_match(name));
    Ok((0..names.len()).filter(|&id| matches(&names[id])).collect())
}

/// The rule of a `List` reply: exactly the `listed` names among `mask`.
fn list_rule(names: &[String], mask: &[NameId], listed: &[String]) -> Result<Rule, String> {
    if !listed.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err("the names are not sorted and distinct".to_string());
    }
    let mut present = Vec::with_capacity(listed.len());
    for name in listed {
        let id = name_id(names, name).ok_or_else(|| format!("no operation creates {name:?}"))?;
        if mask.binary_search(&id).is_err() {
            return Err(format!("{name:?} does not match the pattern"));
        }
        present.push(id);
    }
    assert!(present.windows(2).all(|pair| pair[0] < pair[1]), "ids follow name order");
    let absent = mask.iter().filter(|id| present.binary_search(id).is_err()).copied().collect();
    Ok(Rule { present, absent, effect: Effect::Nothing })
}

/// Groups the timed-out creates and deletes that can change the set.
fn token_groups(history: &[Operation], names: &[String]) -> (Vec<TokenGroup>, Vec<[Option<usize>; 2]>) {
    let mut by_name: BTreeMap<(NameId, TokenKind), Vec<(Tick, usize)>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        let token = match (&operation.op, &operation.completed) {
            (AccountOp::Create(name), None) => name_id(names, name).map(|id| (id, TokenKind::Insert)),
            (AccountOp::Delete(name), None) => name_id(names, name).map(|id| (id, TokenKind::Remove)),
            _ => None,
        };
        if let Some(token) = token {
            by_name.entry(token).or_default().push((operation.invoked_at, index));
        }
    }
    let mut group_of = vec![[None, None]; names.len()];
    let mut groups = Vec::with_capacity(by_name.len());
    for ((name, kind), mut invoked) in by_name {
        invoked.sort_unstable();
        group_of[name][kind as usize] = Some(groups.len());
        groups.push(TokenGroup { name, kind, invoked });
    }
    (groups, group_of)
}

/// One placement: the operation (index into `Problem::ops`) and the token
/// groups whose earliest unused token was used just before it.
#[derive(Clone, Debug)]
struct Move {
    op: usize,
    tokens: Vec<usize>,
}

/// One node of the depth-first search.
#[derive(Debug)]
struct Frame {
    /// Earliest completion among the unplaced operations.
    frontier: Tick,
    /// Next index of `Problem::ops` to try as a candidate.
    cursor: usize,
    /// A candidate that is safe to place now, tried alone (see `frame`).
    forced: Option<usize>,
    /// The placement that led here (`None` at the root).
    entered_by: Option<Move>,
}

/// The state of the depth-first search.
struct Search<'p> {
    problem: &'p Problem<'p>,
    /// Which of `Problem::ops` are placed.
    placed: Bits,
    placed_count: usize,
    /// The account set after the placed operations.
    accounts: Bits,
    /// Per token group, how many of its tokens have been used.
    tokens_used: Vec<usize>,
    /// Keys of the nodes entered so far.
    visited: HashSet<Vec<u64>>,
    stack: Vec<Frame>,
    steps: u64,
    steps_max: u64,
    /// Placement order of the deepest node left so far.
    deepest: Vec<usize>,
}

impl<'p> Search<'p> {
    fn new(problem: &'p Problem<'p>, steps_max: u64) -> Search<'p> {
        Search {
            problem,
            placed: Bits::new(problem.ops.len()),
            placed_count: 0,
            accounts: Bits::new(problem.names.len()),
            tokens_used: vec![0; problem.groups.len()],
            visited: HashSet::new(),
            stack: Vec::new(),
            steps: 0,
            steps_max,
            deepest: Vec::new(),
        }
    }

    /// Runs the search to a decision; returns the steps taken.
    fn run(mut self) -> Result<u64, CheckError> {
        if self.problem.ops.is_empty() {
            return Ok(0);
        }
        self.visited.insert(self.key());
        let root = self.frame(None);
        self.stack.push(root);
        loop {
            let Some(candidate) = self.next_candidate() else {
                if self.backtrack() {
                    continue;
                }
                return Err(CheckError::Violation(self.explain()));
            };
            if self.steps == self.steps_max {
                return Err(CheckError::TooHard { steps: self.steps });
            }
            self.steps += 1;
            let frontier = self.stack.last().expect("the search has a node").frontier;
            let Some(placement) = self.place(candidate, frontier) else {
                continue;
            };
            if self.placed_count == self.problem.ops.len() {
                return Ok(self.steps);
            }
            if self.visited.insert(self.key()) {
                let frame = self.frame(Some(placement));
                self.stack.push(frame);
            } else {
                self.unplace(placement);
            }
        }
    }

    /// A node for the current placements.
    fn frame(&self, entered_by: Option<Move>) -> Frame {
        let ops = &self.problem.ops;
        let first = self.placed.first_absent();
        assert!(first < ops.len(), "a node is made only while an operation is unplaced");
        let mut frontier = Tick::MAX;
        for (i, timed) in ops.iter().enumerate().skip(first) {
            if timed.invoked_at > frontier {
                break;
            }
            if !self.placed.contains(i) {
                frontier = frontier.min(timed.completed_at);
            }
        }
        assert!(frontier >= ops[first].invoked_at, "the first unplaced op is a candidate");
        let mut candidates = (first..ops.len()).take_while(|&i| ops[i].invoked_at <= frontier);
        let forced = candidates.find(|&i| !self.placed.contains(i) && self.fits_unchanged(i));
        let cursor = if forced.is_some() { ops.len() } else { first };
        Frame { frontier, cursor, forced, entered_by }
    }

    /// Whether `op` changes nothing and its reply fits the accounts as they
    /// are. Such a candidate is placed at once and alone: any order that
    /// places it later stays valid with it moved here, since it changes no
    /// reply and placing it early only lets the frontier move later.
    fn fits_unchanged(&self, op: usize) -> bool {
        let rule = &self.problem.ops[op].rule;
        rule.effect == Effect::Nothing
            && rule.present.iter().all(|&name| self.accounts.contains(name))
            && !rule.absent.iter().any(|&name| self.accounts.contains(name))
    }

    /// The next untried candidate of the current node.
    fn next_candidate(&mut self) -> Option<usize> {
        let frame = self.stack.last_mut()?;
        if let Some(forced) = frame.forced.take() {
            return Some(forced);
        }
        let ops = &self.problem.ops;
        while frame.cursor < ops.len() && ops[frame.cursor].invoked_at <= frame.frontier {
            let i = frame.cursor;
            frame.cursor += 1;
            if !self.placed.contains(i) {
                return Some(i);
            }
        }
        None
    }

    /// Leaves the current node; false when it was the root.
    fn backtrack(&mut self) -> bool {
        let depth = self.stack.len() - 1;
        if depth > self.deepest.len() {
            let placements = self.stack.iter().filter_map(|frame| frame.entered_by.as_ref());
            self.deepest = placements.map(|placement| placement.op).collect();
            assert_eq!(self.deepest.len(), depth);
        }
        let frame = self.stack.pop().expect("the search has a node");
        match frame.entered_by {
            Some(placement) => {
                self.unplace(placement);
                true
            }
            None => false,
        }
    }

    /// The earliest unused token of `name`'s `kind` group, if one was invoked
    /// by `frontier`.
    fn available_token(&self, name: NameId, kind: TokenKind, frontier: Tick) -> Option<usize> {
        let group = self.problem.group_of[name][kind as usize]?;
        let invoked = &self.problem.groups[group].invoked;
        let available = invoked.partition_point(|&(tick, _)| tick <= frontier);
        (self.tokens_used[group] < available).then_some(group)
    }

    /// Places `op` next if its reply fits, after the tokens that make it fit.
    fn place(&mut self, op: usize, frontier: Tick) -> Option<Move> {
        let rule = &self.problem.ops[op].rule;
        let mut tokens = Vec::new();
        for &name in &rule.present {
            if !self.accounts.contains(name) {
                tokens.push(self.available_token(name, TokenKind::Insert, frontier)?);
            }
        }
        for &name in &rule.absent {
            if self.accounts.contains(name) {
                tokens.push(self.available_token(name, TokenKind::Remove, frontier)?);
            }
        }
        for &group in &tokens {
            self.tokens_used[group] += 1;
            self.toggle(group, true);
        }
        match rule.effect {
            Effect::Nothing => {}
            Effect::Insert(name) => self.accounts.insert(name),
            Effect::Remove(name) => self.accounts.remove(name),
        }
        self.placed.insert(op);
        self.placed_count += 1;
        Some(Move { op, tokens })
    }

    /// Undoes `place`.
    fn unplace(&mut self, placement: Move) {
        self.placed.remove(placement.op);
        self.placed_count -= 1;
        match self.problem.ops[placement.op].rule.effect {
            Effect::Nothing => {}
            Effect::Insert(name) => self.accounts.remove(name),
            Effect::Remove(name) => self.accounts.insert(name),
        }
        for &group in placement.tokens.iter().rev() {
            assert!(self.tokens_used[group] > 0, "a used token is given back");
            self.tokens_used[group] -= 1;
            self.toggle(group, false);
        }
    }

    /// Applies (`forward`) or reverts a token of `group`.
    fn toggle(&mut self, group: usize, forward: bool) {
        let TokenGroup { name, kind, .. } = self.problem.groups[group];
        if (kind == TokenKind::Insert) == forward {
            self.accounts.insert(name);
        } else {
            self.accounts.remove(name);
        }
    }

    /// The memo key of the current node: the window of the placed bitset
    /// that is neither all ones nor all zeros, the accounts, the tokens used.
    fn key(&self) -> Vec<u64> {
        let words = &self.placed.words;
        let start = words.iter().take_while(|&&word| word == u64::MAX).count();
        let end = words.iter().rposition(|&word| word != 0).map_or(0, |last| last + 1);
        let end = end.max(start);
        let mut key = Vec::with_capacity(2 + end - start + self.accounts.words.len() + self.tokens_used.len());
        key.extend([start as u64, (end - start) as u64]);
        key.extend_from_slice(&words[start..end]);
        key.extend_from_slice(&self.accounts.words);
        key.extend(self.tokens_used.iter().map(|&used| used as u64));
        key
    }

    /// Replays the deepest prefix found and describes where it got stuck.
    fn explain(&self) -> Violation {
        let problem = self.problem;
        let mut replay = Search::new(problem, 0);
        let mut prefix = Vec::new();
        for &op in &self.deepest {
            let frontier = replay.frame(None).frontier;
            let placement = replay.place(op, frontier).expect("the deepest prefix replays");
            for &group in &placement.tokens {
                let (_, index) = problem.groups[group].invoked[replay.tokens_used[group] - 1];
                prefix.push(format!("{} (takes effect here)", describe(problem.history, index)));
            }
            prefix.push(describe(problem.history, problem.ops[op].index));
        }
        let accounts: BTreeSet<String> = replay.accounts.members().map(|id| problem.names[id].clone()).collect();
        let stuck = replay.frame(None);
        let first = replay.placed.first_absent();
        let candidates = (first..problem.ops.len())
            .take_while(|&i| problem.ops[i].invoked_at <= stuck.frontier)
            .filter(|&i| !replay.placed.contains(i))
            .map(|i| describe_candidate(problem.history, problem.ops[i].index, &accounts))
            .collect();
        Violation { explanation: render(self.deepest.len(), problem.ops.len(), &prefix, &accounts, candidates) }
    }
}

/// One operation that could come next, and what the model replies there.
fn describe_candidate(history: &[Operation], index: usize, accounts: &BTreeSet<String>) -> String {
    let mut after = accounts.clone();
    let model = model_step(&mut after, &history[index].op);
    let fits = history[index].completed.as_ref().is_some_and(|(_, result)| *result == model);
    let verdict = if fits {
        "fits here, but every order that continues from it fails later".to_string()
    } else {
        format!("the model replies {model:?} here")
    };
    format!("{} -- {verdict}", describe(history, index))
}

/// The text of a violation found by the search.
fn render(
    placed: usize,
    total: usize,
    prefix: &[String],
    accounts: &BTreeSet<String>,
    candidates: Vec<String>,
) -> String {
    let mut text = format!(
        "at best {placed} of the {total} operations with a reply can be ordered.\n\
         Longest linearizable prefix ({} steps, last {} shown):\n",
        prefix.len(),
        prefix.len().min(EXPLANATION_PREFIX_LINES_MAX)
    );
    for line in &prefix[prefix.len().saturating_sub(EXPLANATION_PREFIX_LINES_MAX)..] {
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str(&format!("Accounts after it: {accounts:?}\nNone of the operations that may come next fits:\n"));
    for line in candidates.iter().take(EXPLANATION_CANDIDATES_MAX) {
        text.push_str(&format!("  {line}\n"));
    }
    if candidates.len() > EXPLANATION_CANDIDATES_MAX {
        text.push_str(&format!("  ... and {} more\n", candidates.len() - EXPLANATION_CANDIDATES_MAX));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn create(name: &str) -> AccountOp {
        AccountOp::Create(name.to_string())
    }

    fn delete(name: &str) -> AccountOp {
        AccountOp::Delete(name.to_string())
    }

    fn send(from: &str, to: &str) -> AccountOp {
        AccountOp::Send { from: from.to_string(), to: to.to_string() }
    }

    fn list(pattern: Option<&str>) -> AccountOp {
        AccountOp::List(pattern.map(str::to_string))
    }

    fn names(listed: &[&str]) -> AccountResult {
        AccountResult::Names(listed.iter().map(|name| name.to_string()).collect())
    }

    fn done(client: usize, op: AccountOp, invoked_at: Tick, completed_at: Tick, result: AccountResult) -> Operation {
        Operation { client, op, invoked_at, completed: Some((completed_at, result)) }
    }

    fn timed_out(client: usize, op: AccountOp, invoked_at: Tick) -> Operation {
        Operation { client, op, invoked_at, completed: None }
    }

    fn assert_violation(history: &[Operation]) -> String {
        match check(history) {
            Err(CheckError::Violation(violation)) => violation.explanation,
            other => panic!("expected a violation, got {other:?} for {history:#?}"),
        }
    }

    /// One operation per client, one after another, each in its own ticks.
    fn sequential(steps: Vec<(AccountOp, AccountResult)>) -> Vec<Operation> {
        let ticks = |i: usize| 10 * i as Tick;
        steps.into_iter().enumerate().map(|(i, (op, result))| done(i % 3, op, ticks(i), ticks(i) + 5, result)).collect()
    }

    #[test]
    fn empty_history_passes() {
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&[timed_out(0, create("a"), 3)]), Ok(()));
    }

    #[test]
    fn valid_sequential_history_passes() {
        let history = sequential(vec![
            (list(None), names(&[])),
            (send("a", "b"), AccountResult::SenderUnknown),
            (create("a"), AccountResult::Ok),
            (send("a", "b"), AccountResult::NoSuchAccount),
            (create("b"), AccountResult::Ok),
            (create("a"), AccountResult::NameTaken),
            (send("a", "b"), AccountResult::Ok),
            (list(Some("^a")), names(&["a"])),
            (delete("a"), AccountResult::Ok),
            (delete("a"), AccountResult::NoSuchAccount),
            (delete("zed"), AccountResult::NoSuchAccount),
            (list(None), names(&["b"])),
        ]);
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn wrong_list_result_fails() {
        let history = sequential(vec![
            (create("a"), AccountResult::Ok),
            (create("b"), AccountResult::Ok),
            (list(Some("b")), names(&["a", "b"])),
        ]);
        let explanation = assert_violation(&history);
        assert!(explanation.contains("does not match the pattern"), "{explanation}");
        let history = sequential(vec![
            (create("a"), AccountResult::Ok),
            (create("b"), AccountResult::Ok),
            (list(None), names(&["a"])),
        ]);
        let explanation = assert_violation(&history);
        assert!(explanation.contains("at best 2 of the 3"), "{explanation}");
        assert!(explanation.contains(r#"the model replies Names(["a", "b"])"#), "{explanation}");
    }

    #[test]
    fn create_that_succeeds_twice_fails() {
        let history = sequential(vec![(create("a"), AccountResult::Ok), (create("a"), AccountResult::Ok)]);
        let explanation = assert_violation(&history);
        assert!(explanation.contains(r#"Accounts after it: {"a"}"#), "{explanation}");
        assert!(explanation.contains("the model replies NameTaken"), "{explanation}");
    }

    #[test]
    fn delete_of_missing_name_reported_ok_fails() {
        let history = sequential(vec![(create("a"), AccountResult::Ok), (delete("b"), AccountResult::Ok)]);
        let explanation = assert_violation(&history);
        assert!(explanation.contains(r#"no operation creates "b""#), "{explanation}");
        let history = sequential(vec![
            (create("a"), AccountResult::Ok),
            (delete("a"), AccountResult::Ok),
            (delete("a"), AccountResult::Ok),
        ]);
        assert_violation(&history);
    }

    #[test]
    fn impossible_replies_fail_before_the_search() {
        let history = [done(0, create("a"), 0, 1, names(&[]))];
        assert!(assert_violation(&history).contains("never replies"));
        let history = [done(0, list(Some("(")), 0, 1, names(&[]))];
        assert!(assert_violation(&history).contains("no account set gives this reply"));
        let history = [done(0, create("a"), 0, 1, AccountResult::Ok), done(0, list(None), 2, 3, names(&["a", "a"]))];
        assert!(assert_violation(&history).contains("not sorted and distinct"));
        let history = [
            done(0, create("a"), 0, 1, AccountResult::Ok),
            done(1, send("a", "a"), 2, 3, AccountResult::NoSuchAccount),
        ];
        assert!(assert_violation(&history).contains("both present and absent"));
    }

    #[test]
    #[should_panic(expected = "completes before it is invoked")]
    fn completion_before_invocation_is_a_harness_bug() {
        let _ = check(&[done(0, create("a"), 5, 4, AccountResult::Ok)]);
    }

    #[test]
    fn overlapping_creates_of_one_name_pass_in_either_order() {
        for (first, second) in
            [(AccountResult::Ok, AccountResult::NameTaken), (AccountResult::NameTaken, AccountResult::Ok)]
        {
            let history = [done(0, create("x"), 0, 10, first.clone()), done(1, create("x"), 5, 15, second.clone())];
            assert_eq!(check(&history), Ok(()));
        }
        let both_ok = [done(0, create("x"), 0, 10, AccountResult::Ok), done(1, create("x"), 5, 15, AccountResult::Ok)];
        assert_violation(&both_ok);
    }

    #[test]
    fn list_concurrent_with_create_may_or_may_not_see_it() {
        for seen in [names(&[]), names(&["x"])] {
            let history = [done(0, create("x"), 0, 10, AccountResult::Ok), done(1, list(None), 10, 12, seen)];
            assert_eq!(check(&history), Ok(()));
        }
    }

    #[test]
    fn list_after_completed_create_must_see_it() {
        let history = [done(0, create("x"), 0, 10, AccountResult::Ok), done(1, list(None), 11, 12, names(&[]))];
        assert_violation(&history);
    }

    #[test]
    fn stale_read_is_a_violation() {
        let history = [done(0, create("x"), 5, 10, AccountResult::Ok), done(1, list(None), 20, 22, names(&[]))];
        let explanation = assert_violation(&history);
        assert!(explanation.contains("#1 client 1 List(None) invoked at 20"), "{explanation}");
    }

    #[test]
    fn timed_out_create_may_or_may_not_take_effect() {
        for seen in [names(&[]), names(&["x"])] {
            let history = [timed_out(0, create("x"), 0), done(1, list(None), 20, 22, seen)];
            assert_eq!(check(&history), Ok(()));
        }
        let taken = [timed_out(0, create("x"), 0), done(1, create("x"), 20, 22, AccountResult::NameTaken)];
        assert_eq!(check(&taken), Ok(()));
        let fresh = [timed_out(0, create("x"), 0), done(1, create("x"), 20, 22, AccountResult::Ok)];
        assert_eq!(check(&fresh), Ok(()));
    }

    #[test]
    fn timed_out_create_cannot_take_effect_before_its_invocation() {
        let history = [done(1, list(None), 0, 2, names(&["x"])), timed_out(0, create("x"), 3)];
        assert_violation(&history);
    }

    #[test]
    fn timed_out_create_takes_effect_at_most_once() {
        let history = [
            timed_out(0, create("x"), 0),
            done(1, list(None), 5, 6, names(&["x"])),
            done(1, delete("x"), 7, 8, AccountResult::Ok),
            done(1, list(None), 9, 10, names(&["x"])),
        ];
        assert_violation(&history);
        let mut twice = history.to_vec();
        twice.insert(1, timed_out(2, create("x"), 1));
        assert_eq!(check(&twice), Ok(()));
    }

    #[test]
    fn timed_out_ops_of_a_client_may_be_followed_by_more() {
        let history = [
            done(0, create("a"), 0, 1, AccountResult::Ok),
            timed_out(0, delete("a"), 2),
            done(0, send("a", "a"), 9, 10, AccountResult::Ok),
            done(0, send("a", "a"), 11, 12, AccountResult::SenderUnknown),
            done(0, create("a"), 13, 14, AccountResult::Ok),
        ];
        assert_eq!(check(&history), Ok(()));
    }

    /// The search first reaches "all but the last list placed, no accounts"
    /// having spent both tokens (delete x made possible by the timed-out
    /// create), and fails; the valid order reaches the same placements and
    /// accounts with the create token still unused, so the memo must tell
    /// the two apart.
    #[test]
    fn tokens_used_are_part_of_the_memo_key() {
        let history = [
            done(0, delete("x"), 0, 10, AccountResult::Ok),
            timed_out(1, create("x"), 0),
            timed_out(2, delete("x"), 0),
            done(3, list(None), 0, 10, names(&["x"])),
            done(4, create("x"), 0, 10, AccountResult::Ok),
            done(3, list(None), 12, 14, names(&[])),
            done(3, list(None), 20, 30, names(&["x"])),
        ];
        assert!(brute_force(&history, &mut (0..history.len()).collect(), &BTreeSet::new()));
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn step_budget_is_reported_as_too_hard() {
        let history: Vec<Operation> = (0..6)
            .map(|client| done(client, list(None), 0, 10, names(&[])))
            .chain([done(7, create("z"), 0, 10, AccountResult::Ok), done(7, list(None), 11, 12, names(&[]))])
            .collect();
        assert!(matches!(check(&history), Err(CheckError::Violation(_))));
        assert_eq!(check_counting_steps(&history, 3), Err(CheckError::TooHard { steps: 3 }));
    }

    /// What the simulated client meant to do and how the run treats it.
    #[derive(Clone, Debug)]
    struct Plan {
        client: usize,
        op: AccountOp,
        /// Ticks between the client becoming free and invoking.
        gap: Tick,
        /// Ticks from invocation to the instant the operation takes effect.
        effect_delay: Tick,
        /// Ticks from that instant to the reply.
        reply_delay: Tick,
        fate: Fate,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Fate {
        Replied,
        TimedOutApplied,
        TimedOutLost,
    }

    /// Runs the plans against the real model, each taking effect at one
    /// instant of its window, and records the history clients would see.
    fn execute(plans: &[Plan], clients: usize) -> Vec<Operation> {
        let mut free_at = vec![0; clients];
        let mut history = Vec::with_capacity(plans.len());
        let mut effects = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let invoked_at = free_at[plan.client] + plan.gap;
            let effect_at = invoked_at + plan.effect_delay;
            let completed_at = effect_at + plan.reply_delay;
            free_at[plan.client] = if plan.fate == Fate::Replied { completed_at } else { invoked_at + 1 };
            if plan.fate != Fate::TimedOutLost {
                effects.push((effect_at, i));
            }
            history.push(Operation { client: plan.client, op: plan.op.clone(), invoked_at, completed: None });
            if plan.fate == Fate::Replied {
                history[i].completed = Some((completed_at, AccountResult::Ok));
            }
        }
        effects.sort_unstable();
        let mut accounts = BTreeSet::new();
        for (_, i) in effects {
            let result = model_step(&mut accounts, &plans[i].op);
            if let Some((_, recorded)) = &mut history[i].completed {
                *recorded = result;
            }
        }
        history
    }

    const NAMES: [&str; 3] = ["a", "b", "c"];
    const PATTERNS: [Option<&str>; 4] = [None, Some("a"), Some("^[ab]$"), Some("c|b")];

    fn op_strategy() -> impl Strategy<Value = AccountOp> {
        let name = || (0..NAMES.len()).prop_map(|i| NAMES[i].to_string());
        prop_oneof![
            3 => name().prop_map(AccountOp::Create),
            2 => name().prop_map(AccountOp::Delete),
            2 => (name(), name()).prop_map(|(from, to)| AccountOp::Send { from, to }),
            2 => (0..PATTERNS.len()).prop_map(|i| AccountOp::List(PATTERNS[i].map(str::to_string))),
        ]
    }

    fn plan_strategy(clients: usize) -> impl Strategy<Value = Plan> {
        let fate =
            prop_oneof![8 => Just(Fate::Replied), 1 => Just(Fate::TimedOutApplied), 1 => Just(Fate::TimedOutLost)];
        (0..clients, op_strategy(), 0..3u64, 0..4u64, 0..4u64, fate).prop_map(
            |(client, op, gap, effect_delay, reply_delay, fate)| {
                let effect_delay = if fate == Fate::Replied { effect_delay } else { effect_delay * 5 };
                Plan { client, op, gap, effect_delay, reply_delay, fate }
            },
        )
    }

    fn history_strategy() -> impl Strategy<Value = Vec<Operation>> {
        (1..=5usize).prop_flat_map(|clients| {
            prop::collection::vec(plan_strategy(clients), 0..40).prop_map(move |plans| execute(&plans, clients))
        })
    }

    /// Replies that are wrong for at least some operation.
    fn wrong_reply(pick: usize, right: &AccountResult) -> AccountResult {
        let choices = [
            AccountResult::Ok,
            AccountResult::NameTaken,
            AccountResult::NoSuchAccount,
            AccountResult::SenderUnknown,
            names(&[]),
            names(&["a"]),
            names(&["a", "b"]),
            names(&["b", "c"]),
        ];
        let first = &choices[pick % choices.len()];
        if first != right {
            first.clone()
        } else {
            choices[(pick + 1) % choices.len()].clone()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn real_executions_are_accepted(history in history_strategy()) {
            prop_assert_eq!(check(&history), Ok(()), "{:#?}", history);
        }

        #[test]
        fn agrees_with_the_naive_reference(history in arbitrary_history()) {
            let expected = brute_force(&history, &mut (0..history.len()).collect(), &BTreeSet::new());
            let verdict = check(&history);
            let too_hard = matches!(verdict, Err(CheckError::TooHard { .. }));
            prop_assert!(!too_hard);
            prop_assert_eq!(verdict.is_ok(), expected, "{:#?}", history);
        }

        #[test]
        fn one_wrong_reply_in_a_sequential_history_is_rejected(
            ops in prop::collection::vec(op_strategy(), 1..30),
            target in any::<prop::sample::Index>(),
            pick in 0..8usize,
        ) {
            let plans: Vec<Plan> = ops.into_iter().map(|op| Plan { client: 0, op, gap: 1, effect_delay: 0, reply_delay: 0, fate: Fate::Replied }).collect();
            let mut history = execute(&plans, 1);
            prop_assert_eq!(check(&history), Ok(()));
            let target = target.index(history.len());
            let (_, reply) = history[target].completed.as_mut().expect("all replied");
            *reply = wrong_reply(pick, reply);
            prop_assert!(matches!(check(&history), Err(CheckError::Violation(_))), "{:#?}", history);
        }
    }

    /// The naive reference: tries every order of every subset that holds all
    /// operations with a reply. `x` may come next unless some other remaining
    /// operation completed strictly before `x` was invoked.
    fn brute_force(history: &[Operation], remaining: &mut Vec<usize>, accounts: &BTreeSet<String>) -> bool {
        if remaining.iter().all(|&i| history[i].completed.is_none()) {
            return true;
        }
        for position in 0..remaining.len() {
            let x = remaining[position];
            let blocked = remaining
                .iter()
                .any(|&y| history[y].completed.as_ref().is_some_and(|(tick, _)| *tick < history[x].invoked_at));
            if blocked {
                continue;
            }
            let mut after = accounts.clone();
            let reply = model_step(&mut after, &history[x].op);
            let fits = history[x].completed.as_ref().is_none_or(|(_, result)| *result == reply);
            remaining.remove(position);
            let found = (fits && brute_force(history, remaining, &after))
                || (history[x].completed.is_none() && brute_force(history, remaining, accounts));
            remaining.insert(position, x);
            if found {
                return true;
            }
        }
        false
    }

    fn reply_strategy(op: &AccountOp) -> BoxedStrategy<AccountResult> {
        match op {
            AccountOp::Create(_) => prop_oneof![Just(AccountResult::Ok), Just(AccountResult::NameTaken)].boxed(),
            AccountOp::Delete(_) => prop_oneof![Just(AccountResult::Ok), Just(AccountResult::NoSuchAccount)].boxed(),
            AccountOp::Send { .. } => prop_oneof![
                Just(AccountResult::Ok),
                Just(AccountResult::NoSuchAccount),
                Just(AccountResult::SenderUnknown)
            ]
            .boxed(),
            AccountOp::List(_) => {
                prop::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len()).prop_map(|listed| names(&listed)).boxed()
            }
        }
    }

    /// Small histories with arbitrary windows and arbitrary (plausible) replies.
    fn arbitrary_history() -> impl Strategy<Value = Vec<Operation>> {
        let operation =
            (op_strategy(), 0..12u64, 0..5u64, 0..5usize).prop_flat_map(|(op, invoked_at, length, outcome)| {
                reply_strategy(&op).prop_map(move |reply| Operation {
                    client: outcome,
                    op: op.clone(),
                    invoked_at,
                    completed: (outcome > 0).then_some((invoked_at + length, reply)),
                })
            });
        prop::collection::vec(operation, 0..7)
    }

    /// A small deterministic generator (xorshift64*), so the test needs no
    /// random-number crate and always checks the same history.
    struct Xorshift(u64);

    impl Xorshift {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % bound
        }
    }

    /// 2,000 operations from 5 clients over 40 names, with short overlapping
    /// windows and about 3% timed out.
    fn large_history(seed: u64) -> Vec<Operation> {
        let mut random = Xorshift(seed);
        let name = |random: &mut Xorshift| format!("user{}", random.below(40));
        let plans: Vec<Plan> = (0..2_000)
            .map(|_| {
                let op = match random.below(10) {
                    0..=3 => AccountOp::Create(name(&mut random)),
                    4 | 5 => AccountOp::Delete(name(&mut random)),
                    6 | 7 => AccountOp::Send { from: name(&mut random), to: name(&mut random) },
                    8 => AccountOp::List(None),
                    _ => AccountOp::List(Some(format!("^user{}", random.below(4)))),
                };
                let fate = match random.below(100) {
                    0 | 1 => Fate::TimedOutApplied,
                    2 => Fate::TimedOutLost,
                    _ => Fate::Replied,
                };
                let (gap, effect_delay, reply_delay) = (random.below(3), random.below(3), random.below(3));
                Plan { client: random.below(5) as usize, op, gap, effect_delay, reply_delay, fate }
            })
            .collect();
        execute(&plans, 5)
    }

    #[test]
    fn two_thousand_operations_check_within_the_budget() {
        for seed in 1..=3 {
            let history = large_history(seed);
            let started = std::time::Instant::now();
            let steps = check_counting_steps(&history, SEARCH_STEPS_MAX);
            eprintln!("seed {seed}: {steps:?} in {:?}", started.elapsed());
            assert!(steps.is_ok(), "{steps:?}");
        }
    }

    #[test]
    fn a_stale_read_in_a_large_history_is_found() {
        let mut history = large_history(7);
        history.push(done(9, create("late"), 1_000_000, 1_000_001, AccountResult::Ok));
        history.push(done(9, list(Some("^late$")), 1_000_002, 1_000_003, names(&[])));
        let replied = history.iter().filter(|operation| operation.completed.is_some()).count();
        let explanation = assert_violation(&history);
        let expected = format!("at best {} of the {replied} operations", replied - 1);
        assert!(explanation.contains(&expected), "{explanation}");
        assert!(explanation.contains(r#"List(Some("^late$"))"#), "{explanation}");
    }
}
