//! `chorus chat`: the chat client of the original exercise.
//!
//! Commands are read line by line from standard input: with line editing
//! and history (rustyline, on its own thread) when it is a terminal, as
//! plain lines otherwise. Replies and delivered messages go to standard
//! output, for humans or, with `--json`, as one JSON object per line:
//!
//! ```text
//! {"command":"create","ok":true,"name":"user2"}
//! {"command":"connect","ok":true,"name":"user3"}
//! {"command":"delete","ok":true,"name":"user2"}
//! {"command":"list","ok":true,"names":["user2","user3"],"truncated":false}
//! {"command":"send","ok":true,"to":"user3","id":4}
//! {"command":"join","ok":true,"room":"#rust"}
//! {"command":"leave","ok":true,"room":"#rust"}
//! {"command":"say","ok":true,"room":"#rust","id":5}
//! {"command":"broadcast","ok":true,"room":"#all","id":6}
//! {"command":"rooms","ok":true,"rooms":[{"name":"#all","members":2},{"name":"#rust","members":1}],"truncated":false}
//! {"command":"history","ok":true,"room":"#rust","messages":[{"id":5,"from":"user3","room":"#rust","at":1732290001123,"text":"hi"}],"more":false}
//! {"command":"help","ok":true,"text":"..."}
//! {"command":"quit","ok":true}
//! {"command":"send","error":"no such account: bob"}
//! {"command":null,"error":"input line is not UTF-8; ignored"}
//! {"delivery":true,"id":4,"from":"user2","to":"user3","at":1732290001123,"text":"hello"}
//! {"delivery":true,"id":5,"from":"user3","to":"user2","room":"#rust","at":1732290001123,"text":"hi"}
//! {"delivery":true,"id":9,"from":"","to":"user2","room":"#rust","gap":true,"at":0,"text":"messages of #rust up to id 9 were dropped ..."}
//! {"delivery":true,"ended":true,"name":"user3","reason":"account deleted"}
//! ```

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use chorus_chat::{HistoryPage, ListResult, Message, RoomSummary, RoomsResult};
use chorus_client::command::{parse, Parsed};
use chorus_client::{Client, Delivery};
use chorus_proto::ClusterFile;
use rustyline::error::ReadlineError;
use rustyline::ExternalPrinter;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Longest input line accepted, in bytes: a full message plus the command
/// and the name, with room to spare. Longer lines are refused whole.
const LINE_BYTES_MAX: usize = chorus_limits::MESSAGE_TEXT_BYTES_MAX + 1024;

/// The commands, for `help`.
const HELP: &str = "\
commands:
  create NAME      create account NAME with a new password (asked twice) and act as NAME
  connect NAME     sign in as NAME (password asked) and receive its messages: queued ones oldest first, then live ones
  delete NAME      delete account NAME (the one you act as) and its unread messages
  list [PATTERN]   account names matching the regular expression PATTERN anywhere (all if omitted)
  send NAME TEXT   send TEXT (the rest of the line) to NAME, from the account you act as
  join ROOM        join ROOM (a name starting with #; created if new): connect then delivers its messages too
  leave ROOM       leave ROOM
  say ROOM TEXT    post TEXT to ROOM, of which you are a member; every member sees the same order
  rooms [PATTERN]  rooms (with member counts) whose names match PATTERN anywhere (all if omitted)
  history ROOM [N [BEFORE]]
                   the last N (default 20) retained messages of ROOM with an id below BEFORE (newest if omitted)
  broadcast TEXT   post TEXT to #all, the built-in room every account is in
  help             this text
  quit             acknowledge the messages shown and leave";

/// Runs the chat client against the cluster described by `cluster`.
pub async fn run(cluster: &Path, json: bool) -> anyhow::Result<()> {
    let file = ClusterFile::load(cluster)?;
    let endpoints = chorus_client::Endpoints::from_cluster(&file)?;
    let client = Client::connect(endpoints).await.context("cannot open a session with the cluster")?;
    let (mut input, printer) = Input::start().await;
    let output = Output { json, printer };
    let stream = client.deliveries().context("the delivery stream was already taken")?;
    // Held while a `connect` runs, so its reply prints before the messages
    // it starts delivering.
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let printing = tokio::spawn(print_deliveries(stream, client.clone(), output.clone(), gate.clone()));
    let mut me: Option<String> = None;
    let passwords = Passwords::for_this_input();
    loop {
        let prompt = format!("{}> ", me.as_deref().unwrap_or("chorus"));
        let line = match input.next(prompt).await {
            InputEvent::Line(line) => line,
            InputEvent::Refused(reason) => {
                output.reply(&Reply::refused(reason))?;
                continue;
            }
            InputEvent::End => break,
            InputEvent::Failed(reason) => {
                eprintln!("error: cannot read input: {reason}");
                break;
            }
        };
        let Some((command, parsed)) = parse(&line) else {
            continue;
        };
        let held = match parsed {
            Ok(Parsed::Connect(_)) => Some(gate.lock().await),
            _ => None,
        };
        let result = match parsed {
            Ok(parsed) => execute(&client, &mut me, &passwords, parsed).await,
            Err(usage) => Err(usage),
        };
        let quitting = matches!(result, Ok(Done::Quit));
        output.reply(&Reply { command: Some(command), result })?;
        drop(held);
        if quitting {
            break;
        }
    }
    input.stop();
    if let Err(error) = client.flush().await {
        eprintln!("warning: {error}");
    }
    printing.abort();
    Ok(())
}

// ---- commands ------------------------------------------------------------

/// What a command did.
#[derive(Debug, PartialEq, Eq)]
enum Done {
    Created(String),
    Connected(String),
    Deleted(String),
    Listed(ListResult),
    Sent { to: String, id: u64 },
    Joined(String),
    Left(String),
    Said { room: String, id: u64 },
    RoomsListed(RoomsResult),
    History { room: String, count: u32, page: HistoryPage },
    Help,
    Quit,
}

/// A reply to print: the command word (none for an unreadable line) and
/// what happened.
struct Reply {
    command: Option<String>,
    result: Result<Done, String>,
}

impl Reply {
    /// The reply to a line that could not be read as a command.
    fn refused(reason: String) -> Reply {
        Reply { command: None, result: Err(reason) }
    }
}

/// Runs one command; `me` is the account the client acts as.
async fn execute(
    client: &Client,
    me: &mut Option<String>,
    passwords: &Passwords,
    parsed: Parsed,
) -> Result<Done, String> {
    let failed = |e: chorus_client::ClientError| e.to_string();
    match parsed {
        Parsed::Create(name) => {
            chorus_chat::validate_name(&name).map_err(|e| e.to_string())?;
            let password = passwords.get(&name, Purpose::New).await?;
            client.create(&name, &password).await.map_err(failed)?;
            client.sign_in(&name, &password).await.map_err(failed)?;
            *me = Some(name.clone());
            Ok(Done::Created(name))
        }
        Parsed::Connect(name) => {
            if client.signed_in_as().as_deref() != Some(name.as_str()) {
                chorus_chat::validate_name(&name).map_err(|e| e.to_string())?;
                let password = passwords.get(&name, Purpose::Existing).await?;
                client.sign_in(&name, &password).await.map_err(failed)?;
            }
            client.subscribe(&name).await.map_err(failed)?;
            *me = Some(name.clone());
            Ok(Done::Connected(name))
        }
        Parsed::Delete(name) => {
            client.delete(&name).await.map_err(failed)?;
            if me.as_deref() == Some(name.as_str()) {
                *me = None;
            }
            Ok(Done::Deleted(name))
        }
        Parsed::List(pattern) => client.list(pattern.as_deref()).await.map(Done::Listed).map_err(failed),
        Parsed::Send { to, text } => {
            let from = me.as_deref().ok_or_else(|| "sign in first with create or connect".to_string())?;
            chorus_chat::validate_name(&to).map_err(|e| e.to_string())?;
            let id = client.send(from, &to, &text).await.map_err(failed)?;
            Ok(Done::Sent { to, id })
        }
        Parsed::Help => Ok(Done::Help),
        Parsed::Quit => Ok(Done::Quit),
        room_command => execute_room(client, me.as_deref(), room_command).await,
    }
}

/// History messages shown when `history` is given no count.
const HISTORY_COUNT_DEFAULT: u32 = 20;

/// Runs one room command as `me`.
async fn execute_room(client: &Client, me: Option<&str>, parsed: Parsed) -> Result<Done, String> {
    let failed = |e: chorus_client::ClientError| e.to_string();
    if let Parsed::Rooms(pattern) = parsed {
        return client.rooms(pattern.as_deref()).await.map(Done::RoomsListed).map_err(failed);
    }
    let me = me.ok_or_else(|| "sign in first with create or connect".to_string())?;
    match parsed {
        Parsed::Join(room) => client.join(me, &room).await.map(|()| Done::Joined(room)).map_err(failed),
        Parsed::Leave(room) => client.leave(me, &room).await.map(|()| Done::Left(room)).map_err(failed),
        Parsed::Say { room, text } => {
            client.say(me, &room, &text).await.map(|id| Done::Said { room, id }).map_err(failed)
        }
        Parsed::Broadcast(text) => {
            let id = client.broadcast(me, &text).await.map_err(failed)?;
            Ok(Done::Said { room: chorus_chat::BROADCAST_ROOM.to_string(), id })
        }
        Parsed::History { room, count, before } => {
            let count = count.unwrap_or(HISTORY_COUNT_DEFAULT);
            let page = client.history(me, &room, before, count).await.map_err(failed)?;
            Ok(Done::History { room, count, page })
        }
        other => Err(format!("not a room command: {other:?}")),
    }
}

// ---- passwords -------------------------------------------------------------

/// The environment variable a password comes from when standard input is
/// not a terminal (scripts, tests).
const PASSWORD_VARIABLE: &str = "CHORUS_PASSWORD";

/// What a password is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// A new account: typed twice, both must match.
    New,
    /// Signing in.
    Existing,
}

/// Where passwords come from: typed at the terminal without echo, or the
/// `CHORUS_PASSWORD` environment variable.
enum Passwords {
    Terminal,
    Environment,
}

impl Passwords {
    fn for_this_input() -> Passwords {
        use std::io::IsTerminal;
        match std::io::stdin().is_terminal() {
            true => Passwords::Terminal,
            false => Passwords::Environment,
        }
    }

    async fn get(&self, name: &str, purpose: Purpose) -> Result<String, String> {
        match self {
            Passwords::Environment => std::env::var(PASSWORD_VARIABLE).map_err(|_| {
                format!("standard input is not a terminal: set {PASSWORD_VARIABLE} to the password of {name}")
            }),
            Passwords::Terminal => {
                let name = name.to_string();
                let typed = tokio::task::spawn_blocking(move || ask(&name, purpose));
                typed.await.map_err(|e| e.to_string())?
            }
        }
    }
}

/// Asks at the terminal, without echo (the line editor is not reading
/// while a command runs).
fn ask(name: &str, purpose: Purpose) -> Result<String, String> {
    let read = |prompt: &str| rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password: {e}"));
    let password = match purpose {
        Purpose::New => read(&format!("new password for {name}: "))?,
        Purpose::Existing => read(&format!("password for {name}: "))?,
    };
    if purpose == Purpose::New && read("the same password again: ")? != password {
        return Err("the two passwords differ; nothing was created".into());
    }
    Ok(password)
}

// ---- output ----------------------------------------------------------------

/// Where lines go: standard output, or rustyline's printer while a prompt
/// may be on the screen (so that deliveries do not garble it).
#[derive(Clone)]
struct Output {
    /// One JSON object per line instead of text for humans.
    json: bool,
    /// rustyline's printer, when the terminal is being edited.
    printer: Option<Arc<Mutex<Box<dyn ExternalPrinter + Send>>>>,
}

impl Output {
    /// Writes one line and flushes it (scripts read the output live).
    fn line(&self, text: &str) -> std::io::Result<()> {
        if let Some(printer) = &self.printer {
            let mut printer = printer.lock().unwrap_or_else(PoisonError::into_inner);
            return printer.print(format!("{text}\n")).map_err(|e| std::io::Error::other(e.to_string()));
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()
    }

    /// Prints a command's reply.
    fn reply(&self, reply: &Reply) -> std::io::Result<()> {
        if self.json {
            return self.line(&reply_json(reply));
        }
        match &reply.result {
            Ok(Done::Quit) => Ok(()),
            Ok(done) => self.line(&reply_text(done)),
            Err(error) => self.line(&format!("error: {}", printable(error))),
        }
    }

    /// Prints one delivery.
    fn delivery(&self, delivery: &Delivery) -> std::io::Result<()> {
        let text = match (delivery, self.json) {
            (Delivery::Message(m), true) => to_json(&MessageLine::delivered(m)),
            (Delivery::Message(m), false) => message_text(m),
            (Delivery::Ended { name, reason }, true) => {
                to_json(&EndedLine { delivery: true, ended: true, name, reason })
            }
            (Delivery::Ended { name, reason }, false) => {
                format!("-- delivery for {name} ended: {}", printable(reason))
            }
        };
        self.line(&text)
    }
}

/// A reply as one JSON object; fields in this order, absent ones left out.
#[derive(Debug, Default, Serialize)]
struct ReplyLine<'a> {
    command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [RoomSummary]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<HistoryLine<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    more: Option<bool>,
}

/// A message of a `history` reply as one JSON object.
#[derive(Debug, Serialize)]
struct HistoryLine<'a> {
    id: u64,
    from: &'a str,
    room: &'a str,
    /// The leader's timestamp, in milliseconds since the Unix epoch.
    at: u64,
    text: &'a str,
}

/// A delivered message as one JSON object.
#[derive(Debug, Serialize)]
struct MessageLine<'a> {
    delivery: bool,
    id: u64,
    from: &'a str,
    to: &'a str,
    /// The room, for a room message (absent for a direct one).
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    /// True for a gap notice (messages dropped from history unread).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    gap: bool,
    /// The leader's timestamp, in milliseconds since the Unix epoch.
    at: u64,
    text: &'a str,
}

impl<'a> MessageLine<'a> {
    /// The line for a delivered message.
    fn delivered(message: &'a Message) -> MessageLine<'a> {
        MessageLine {
            delivery: true,
            id: message.id,
            from: &message.from,
            to: &message.to,
            room: message.room.as_deref(),
            gap: message.is_gap_notice(),
            at: message.at_millis,
            text: &message.text,
        }
    }
}

/// The end of a delivery as one JSON object (`delivery` too, so that
/// scripts never mistake it for a reply).
#[derive(Debug, Serialize)]
struct EndedLine<'a> {
    delivery: bool,
    ended: bool,
    name: &'a str,
    reason: &'a str,
}

/// A reply as one JSON line.
fn reply_json(reply: &Reply) -> String {
    let command = reply.command.as_deref();
    let line = match &reply.result {
        Err(error) => ReplyLine { command, error: Some(error), ..ReplyLine::default() },
        Ok(done) => {
            let ok = ReplyLine { command, ok: Some(true), ..ReplyLine::default() };
            match done {
                Done::Created(name) | Done::Connected(name) | Done::Deleted(name) => {
                    ReplyLine { name: Some(name), ..ok }
                }
                Done::Listed(list) => ReplyLine { names: Some(&list.names), truncated: Some(list.truncated), ..ok },
                Done::Sent { to, id } => ReplyLine { to: Some(to), id: Some(*id), ..ok },
                Done::Joined(room) | Done::Left(room) => ReplyLine { room: Some(room), ..ok },
                Done::Said { room, id } => ReplyLine { room: Some(room), id: Some(*id), ..ok },
                Done::RoomsListed(list) => {
                    ReplyLine { rooms: Some(&list.rooms), truncated: Some(list.truncated), ..ok }
                }
                Done::History { room, page, .. } => {
                    let messages = page.messages.iter().map(history_line).collect();
                    ReplyLine { room: Some(room), messages: Some(messages), more: Some(page.more), ..ok }
                }
                Done::Help => ReplyLine { text: Some(HELP), ..ok },
                Done::Quit => ok,
            }
        }
    };
    to_json(&line)
}

/// A history message as a JSON object.
fn history_line(message: &Message) -> HistoryLine<'_> {
    HistoryLine {
        id: message.id,
        from: &message.from,
        room: message.room.as_deref().unwrap_or_default(),
        at: message.at_millis,
        text: &message.text,
    }
}

/// One JSON line; these plain structs always serialize.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("strings and integers always serialize")
}

/// A successful reply for humans.
fn reply_text(done: &Done) -> String {
    match done {
        Done::Created(name) => format!("ok: created {name}"),
        Done::Connected(name) => format!("ok: connected as {name}"),
        Done::Deleted(name) => format!("ok: deleted {name}"),
        Done::Listed(list) if list.names.is_empty() => "(no matching accounts)".into(),
        Done::Listed(list) => {
            let mut text = list.names.join("\n");
            if list.truncated {
                text.push_str("\n(more names match; narrow the pattern)");
            }
            text
        }
        Done::Sent { to, id } => format!("ok: sent to {to} (id {id})"),
        Done::Joined(room) => format!("ok: joined {room}"),
        Done::Left(room) => format!("ok: left {room}"),
        Done::Said { room, id } => format!("ok: posted to {room} (id {id})"),
        Done::RoomsListed(list) => rooms_text(list),
        Done::History { room, count, page } => history_text(room, *count, page),
        Done::Help => HELP.into(),
        Done::Quit => String::new(),
    }
}

/// A `rooms` reply for humans: one `NAME (N members)` line per room.
fn rooms_text(list: &RoomsResult) -> String {
    if list.rooms.is_empty() {
        return "(no matching rooms)".into();
    }
    let lines: Vec<String> = list.rooms.iter().map(|r| format!("{} ({} members)", r.name, r.members)).collect();
    let mut text = lines.join("\n");
    if list.truncated {
        text.push_str("\n(more rooms match; narrow the pattern)");
    }
    text
}

/// A `history` page for humans, with the command that pages further back.
fn history_text(room: &str, count: u32, page: &HistoryPage) -> String {
    let mut lines: Vec<String> = page.messages.iter().map(message_text).collect();
    if lines.is_empty() {
        lines.push(format!("(no retained messages in {room})"));
    }
    if let (true, Some(first)) = (page.more, page.messages.first()) {
        lines.push(format!("(older messages retained: history {room} {count} {})", first.id));
    }
    lines.join("\n")
}

/// A delivered message for humans: `[YYYY-MM-DD HH:MM:SS.mmm] from: text`,
/// with the room before the sender for a room message; a gap notice as
/// `-- ROOM: text`.
fn message_text(message: &Message) -> String {
    if message.is_gap_notice() {
        let room = message.room.as_deref().unwrap_or_default();
        return format!("-- {room}: {}", printable(&message.text));
    }
    let at = format_utc_millis(message.at_millis);
    match &message.room {
        Some(room) => format!("[{at}] {room} {}: {}", message.from, printable(&message.text)),
        None => format!("[{at}] {}: {}", message.from, printable(&message.text)),
    }
}

/// `text` with control characters escaped, so a message cannot move the
/// cursor, clear the screen or fake another line.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
fn format_utc_millis(at_millis: u64) -> String {
    const DAY_MILLIS: u64 = 86_400_000;
    let (year, month, day) = civil_from_days((at_millis / DAY_MILLIS) as i64);
    let of_day = at_millis % DAY_MILLIS;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`: eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    (year, month as u32, day as u32)
}

/// Prints deliveries as they come and reports each shown message, so the
/// read position advances only past what was printed.
async fn print_deliveries(
    mut stream: mpsc::Receiver<Delivery>,
    client: Client,
    output: Output,
    gate: Arc<tokio::sync::Mutex<()>>,
) {
    while let Some(delivery) = stream.recv().await {
        let _turn = gate.lock().await;
        if output.delivery(&delivery).is_err() {
            return; // Standard output is gone: nothing more can be shown.
        }
        if let Delivery::Message(message) = &delivery {
            client.shown(&message.to, message.id);
        }
    }
}

// ---- input -----------------------------------------------------------------

/// One line of input, or why there is none.
enum InputEvent {
    Line(String),
    /// A line that cannot be a command (too long, not UTF-8).
    Refused(String),
    End,
    Failed(String),
}

/// Lines from a dedicated thread: a blocking read must not hold up the
/// runtime, and the thread is simply left behind at exit.
struct Input {
    lines: mpsc::Receiver<InputEvent>,
    /// For the line editor: the next prompt (`None` stops it). The editor
    /// waits for it, so a reply is printed before the next prompt.
    resume: Option<std::sync::mpsc::Sender<Option<String>>>,
}

/// rustyline's printer, shareable between the reply loop and the printer task.
type SharedPrinter = Arc<Mutex<Box<dyn ExternalPrinter + Send>>>;

impl Input {
    /// Starts reading: with the line editor when standard input is a
    /// terminal (and the editor starts), else plain lines.
    async fn start() -> (Input, Option<SharedPrinter>) {
        use std::io::IsTerminal;
        let (lines_tx, lines) = mpsc::channel(1);
        if std::io::stdin().is_terminal() {
            let (resume_tx, resume_rx) = std::sync::mpsc::channel();
            let (ready_tx, ready_rx) = oneshot::channel();
            let lines_for_editor = lines_tx.clone();
            std::thread::spawn(move || edit_lines(lines_for_editor, resume_rx, ready_tx));
            if let Ok(Ok(printer)) = ready_rx.await {
                let input = Input { lines, resume: Some(resume_tx) };
                return (input, printer.map(|p| Arc::new(Mutex::new(p))));
            }
        }
        std::thread::spawn(move || read_plain_lines(lines_tx));
        (Input { lines, resume: None }, None)
    }

    /// The next line; `prompt` is shown by the line editor.
    async fn next(&mut self, prompt: String) -> InputEvent {
        if let Some(resume) = &self.resume {
            let _ = resume.send(Some(prompt));
        }
        self.lines.recv().await.unwrap_or(InputEvent::End)
    }

    /// Stops the line editor (plain reading just ends with the process).
    fn stop(&mut self) {
        if let Some(resume) = self.resume.take() {
            let _ = resume.send(None);
        }
    }
}

/// The line-editor thread: reads a line whenever the reply loop sends the
/// next prompt. First reports whether the editor started (and its printer).
fn edit_lines(
    lines: mpsc::Sender<InputEvent>,
    resume: std::sync::mpsc::Receiver<Option<String>>,
    ready: oneshot::Sender<Result<Option<Box<dyn ExternalPrinter + Send>>, String>>,
) {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(error) => {
            let _ = ready.send(Err(error.to_string()));
            return;
        }
    };
    let printer = editor.create_external_printer().ok().map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>);
    if ready.send(Ok(printer)).is_err() {
        return;
    }
    while let Ok(Some(prompt)) = resume.recv() {
        let event = match editor.readline(&prompt) {
            Ok(line) if line.len() > LINE_BYTES_MAX => InputEvent::Refused(too_long()),
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                InputEvent::Line(line)
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => InputEvent::End,
            Err(error) => InputEvent::Failed(error.to_string()),
        };
        let last = matches!(event, InputEvent::End | InputEvent::Failed(_));
        if lines.blocking_send(event).is_err() || last {
            return;
        }
    }
}

/// The plain-input thread: bounded lines from standard input until its end.
fn read_plain_lines(lines: mpsc::Sender<InputEvent>) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = Vec::new();
    loop {
        let event = match read_bounded_line(&mut stdin, &mut buffer) {
            Ok(Some(event)) => event,
            Ok(None) => InputEvent::End,
            Err(error) => InputEvent::Failed(error.to_string()),
        };
        let last = matches!(event, InputEvent::End | InputEvent::Failed(_));
        if lines.blocking_send(event).is_err() || last {
            return;
        }
    }
}

/// Reads one line of at most `LINE_BYTES_MAX` bytes; a longer one is
/// skipped to its end and refused. `None` at the end of input.
fn read_bounded_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<Option<InputEvent>> {
    buffer.clear();
    let limit = LINE_BYTES_MAX as u64 + 1;
    if reader.by_ref().take(limit).read_until(b'\n', buffer)? == 0 {
        return Ok(None);
    }
    if !buffer.ends_with(b"\n") && buffer.len() > LINE_BYTES_MAX {
        loop {
            buffer.clear();
            let read = reader.by_ref().take(limit).read_until(b'\n', buffer)?;
            if read == 0 || buffer.ends_with(b"\n") {
                return Ok(Some(InputEvent::Refused(too_long())));
            }
        }
    }
    while buffer.ends_with(b"\n") || buffer.ends_with(b"\r") {
        buffer.pop();
    }
    Ok(Some(match std::str::from_utf8(buffer) {
        Ok(line) => InputEvent::Line(line.to_string()),
        Err(_) => InputEvent::Refused("input line is not UTF-8; ignored".into()),
    }))
}

fn too_long() -> String {
    format!("input line is longer than {LINE_BYTES_MAX} bytes; ignored")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(format_utc_millis(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_utc_millis(1_732_290_001_123), "2024-11-22 15:40:01.123");
        assert_eq!(format_utc_millis(951_868_799_999), "2000-02-29 23:59:59.999");
        assert_eq!(format_utc_millis(1_709_164_800_000), "2024-02-29 00:00:00.000");
        assert_eq!(format_utc_millis(4_102_444_800_000), "2100-01-01 00:00:00.000");
    }

    #[test]
    fn json_replies_have_the_documented_shapes() {
        let reply = |command: &str, result| reply_json(&Reply { command: Some(command.into()), result });
        let sent = Done::Sent { to: "user3".into(), id: 4 };
        assert_eq!(reply("send", Ok(sent)), r#"{"command":"send","ok":true,"to":"user3","id":4}"#);
        let list = ListResult { names: vec!["a".into()], truncated: false };
        assert_eq!(
            reply("list", Ok(Done::Listed(list))),
            r#"{"command":"list","ok":true,"names":["a"],"truncated":false}"#
        );
        assert_eq!(
            reply("create", Ok(Done::Created("user2".into()))),
            r#"{"command":"create","ok":true,"name":"user2"}"#
        );
        assert_eq!(
            reply("send", Err("no such account: bob".into())),
            r#"{"command":"send","error":"no such account: bob"}"#
        );
        assert_eq!(reply("quit", Ok(Done::Quit)), r#"{"command":"quit","ok":true}"#);
        assert_eq!(reply_json(&Reply::refused("x".into())), r#"{"command":null,"error":"x"}"#);
        let mut message = Message {
            id: 4,
            from: "user2".into(),
            to: "user3".into(),
            room: None,
            at_millis: 1_732_290_001_123,
            text: "hello".into(),
        };
        let line = to_json(&MessageLine::delivered(&message));
        assert_eq!(line, r#"{"delivery":true,"id":4,"from":"user2","to":"user3","at":1732290001123,"text":"hello"}"#);
        message.room = Some("#rust".into());
        assert_eq!(
            to_json(&MessageLine::delivered(&message)),
            r##"{"delivery":true,"id":4,"from":"user2","to":"user3","room":"#rust","at":1732290001123,"text":"hello"}"##
        );
        let said = Done::Said { room: "#rust".into(), id: 5 };
        assert_eq!(reply("say", Ok(said)), r##"{"command":"say","ok":true,"room":"#rust","id":5}"##);
        let rooms = RoomsResult { rooms: vec![RoomSummary { name: "#all".into(), members: 2 }], truncated: false };
        assert_eq!(
            reply("rooms", Ok(Done::RoomsListed(rooms))),
            r##"{"command":"rooms","ok":true,"rooms":[{"name":"#all","members":2}],"truncated":false}"##
        );
        let page = HistoryPage { messages: vec![message], more: false };
        assert_eq!(
            reply("history", Ok(Done::History { room: "#rust".into(), count: 20, page })),
            r##"{"command":"history","ok":true,"room":"#rust","messages":[{"id":4,"from":"user2","room":"#rust","at":1732290001123,"text":"hello"}],"more":false}"##
        );
    }

    #[test]
    fn long_and_broken_lines_are_refused_and_skipped() {
        let mut input = Vec::new();
        input.extend_from_slice(&vec![b'x'; LINE_BYTES_MAX + 10]);
        input.extend_from_slice(b"\nlist\n\xff\nhelp");
        let mut reader = std::io::Cursor::new(input);
        let mut buffer = Vec::new();
        let mut next = || read_bounded_line(&mut reader, &mut buffer).expect("reads");
        assert!(matches!(next(), Some(InputEvent::Refused(e)) if e.contains("longer")));
        assert!(matches!(next(), Some(InputEvent::Line(l)) if l == "list"));
        assert!(matches!(next(), Some(InputEvent::Refused(e)) if e.contains("UTF-8")));
        assert!(matches!(next(), Some(InputEvent::Line(l)) if l == "help"));
        assert!(next().is_none());
    }

    #[test]
    fn control_characters_are_escaped_for_humans() {
        assert_eq!(printable("hi\u{1b}[2J\nthere"), "hi\\u{1b}[2J\\nthere");
    }
}
