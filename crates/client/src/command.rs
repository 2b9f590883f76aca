//! The chat client's command language: one line in, a [`Parsed`] command
//! (or a usage error) out. Names are checked here, before anything is
//! sent; texts and patterns are checked by the replicas.

/// One parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Create(String),
    Connect(String),
    Delete(String),
    List(Option<String>),
    Send {
        to: String,
        text: String,
    },
    Join(String),
    Leave(String),
    Say {
        room: String,
        text: String,
    },
    Rooms(Option<String>),
    /// `history ROOM [N [BEFORE]]`: the last `count` messages with id
    /// below `before`.
    History {
        room: String,
        count: Option<u32>,
        before: Option<u64>,
    },
    Broadcast(String),
    Help,
    Quit,
}

/// Splits off the first whitespace-separated word; the rest keeps its
/// inner spacing but not the separating whitespace.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

/// The single account name a command takes, checked locally.
fn one_name(rest: &str, usage: &str) -> Result<String, String> {
    let (name, extra) = split_word(rest);
    if name.is_empty() {
        return Err(format!("missing account name (usage: {usage})"));
    }
    if !extra.trim().is_empty() {
        return Err(format!("too many arguments (usage: {usage})"));
    }
    chorus_chat::validate_name(name).map_err(|e| e.to_string())?;
    Ok(name.to_string())
}

/// Parses one line: `None` for a blank line, else the command word (for
/// the reply) and the command or a usage error.
pub fn parse(line: &str) -> Option<(String, Result<Parsed, String>)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (word, rest) = split_word(line);
    if word.is_empty() {
        return None;
    }
    let command = word.to_ascii_lowercase();
    let parsed = match command.as_str() {
        "create" => one_name(rest, "create NAME").map(Parsed::Create),
        "connect" => one_name(rest, "connect NAME").map(Parsed::Connect),
        "delete" => one_name(rest, "delete NAME").map(Parsed::Delete),
        "list" => {
            let pattern = rest.trim();
            Ok(Parsed::List((!pattern.is_empty()).then(|| pattern.to_string())))
        }
        "send" => parse_send(rest),
        "join" => one_room(rest, "join ROOM").map(Parsed::Join),
        "leave" => one_room(rest, "leave ROOM").map(Parsed::Leave),
        "say" => parse_say(rest),
        "rooms" => {
            let pattern = rest.trim();
            Ok(Parsed::Rooms((!pattern.is_empty()).then(|| pattern.to_string())))
        }
        "history" => parse_history(rest),
        "broadcast" if rest.is_empty() => Err("missing message text (usage: broadcast TEXT)".into()),
        "broadcast" => Ok(Parsed::Broadcast(rest.to_string())),
        "help" => Ok(Parsed::Help),
        "quit" => Ok(Parsed::Quit),
        _ => Err(format!("unknown command: {word} (type help for the list)")),
    };
    Some((command, parsed))
}

/// `send NAME TEXT...`: the text is the rest of the line.
fn parse_send(rest: &str) -> Result<Parsed, String> {
    let (to, text) = split_word(rest);
    if to.is_empty() {
        return Err("missing recipient (usage: send NAME TEXT)".into());
    }
    if text.is_empty() {
        return Err("missing message text (usage: send NAME TEXT)".into());
    }
    Ok(Parsed::Send { to: to.to_string(), text: text.to_string() })
}

/// The single room name a command takes, checked locally.
fn one_room(rest: &str, usage: &str) -> Result<String, String> {
    let (room, extra) = split_word(rest);
    if room.is_empty() {
        return Err(format!("missing room name (usage: {usage})"));
    }
    if !extra.trim().is_empty() {
        return Err(format!("too many arguments (usage: {usage})"));
    }
    chorus_chat::validate_room(room).map_err(|e| e.to_string())?;
    Ok(room.to_string())
}

/// `say ROOM TEXT...`: the text is the rest of the line.
fn parse_say(rest: &str) -> Result<Parsed, String> {
    let (room, text) = split_word(rest);
    if room.is_empty() {
        return Err("missing room name (usage: say ROOM TEXT)".into());
    }
    chorus_chat::validate_room(room).map_err(|e| e.to_string())?;
    if text.is_empty() {
        return Err("missing message text (usage: say ROOM TEXT)".into());
    }
    Ok(Parsed::Say { room: room.to_string(), text: text.to_string() })
}

/// `history ROOM [N [BEFORE]]`.
fn parse_history(rest: &str) -> Result<Parsed, String> {
    const USAGE: &str = "usage: history ROOM [N [BEFORE]]";
    let (room, rest) = split_word(rest);
    if room.is_empty() {
        return Err(format!("missing room name ({USAGE})"));
    }
    chorus_chat::validate_room(room).map_err(|e| e.to_string())?;
    let (count, rest) = split_word(rest);
    let (before, extra) = split_word(rest);
    if !extra.is_empty() {
        return Err(format!("too many arguments ({USAGE})"));
    }
    let number = |word: &str, what: &str| match word {
        "" => Ok(None),
        word => word.parse::<u64>().map(Some).map_err(|_| format!("{what} must be a number ({USAGE})")),
    };
    let count = number(count, "N")?.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let before = number(before, "BEFORE")?;
    Ok(Parsed::History { room: room.to_string(), count, before })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_word_for_word() {
        let parsed = |line: &str| parse(line).map(|(_, p)| p);
        assert_eq!(parsed("  "), None);
        assert_eq!(parsed("create user2"), Some(Ok(Parsed::Create("user2".into()))));
        assert_eq!(parsed("list"), Some(Ok(Parsed::List(None))));
        assert_eq!(parsed("list ^a b"), Some(Ok(Parsed::List(Some("^a b".into())))));
        assert_eq!(
            parsed("send user3  hello   there \r\n"),
            Some(Ok(Parsed::Send { to: "user3".into(), text: "hello   there ".into() }))
        );
        assert!(matches!(parsed("send user3"), Some(Err(e)) if e.contains("missing message text")));
        assert!(matches!(parsed("connect"), Some(Err(e)) if e.contains("missing account name")));
        assert!(matches!(parsed("delete a b"), Some(Err(e)) if e.contains("too many arguments")));
        assert!(matches!(parsed("create bad/name"), Some(Err(e)) if e.contains("invalid account name")));
        assert!(matches!(parsed("frobnicate x"), Some(Err(e)) if e.contains("unknown command")));
        assert_eq!(parse("QUIT").map(|(c, _)| c), Some("quit".into()));
    }

    #[test]
    fn room_commands_parse() {
        let parsed = |line: &str| parse(line).map(|(_, p)| p);
        assert_eq!(parsed("join #rust"), Some(Ok(Parsed::Join("#rust".into()))));
        assert_eq!(parsed("leave #rust"), Some(Ok(Parsed::Leave("#rust".into()))));
        assert!(matches!(parsed("join rust"), Some(Err(e)) if e.contains("starts with #")));
        assert!(matches!(parsed("join"), Some(Err(e)) if e.contains("missing room name")));
        assert_eq!(parsed("say #r  hi  all"), Some(Ok(Parsed::Say { room: "#r".into(), text: "hi  all".into() })));
        assert!(matches!(parsed("say #r"), Some(Err(e)) if e.contains("missing message text")));
        assert_eq!(parsed("rooms"), Some(Ok(Parsed::Rooms(None))));
        assert_eq!(parsed("rooms ^#a"), Some(Ok(Parsed::Rooms(Some("^#a".into())))));
        let history = |count, before| Some(Ok(Parsed::History { room: "#r".into(), count, before }));
        assert_eq!(parsed("history #r"), history(None, None));
        assert_eq!(parsed("history #r 5"), history(Some(5), None));
        assert_eq!(parsed("history #r 5 40"), history(Some(5), Some(40)));
        assert!(matches!(parsed("history #r x"), Some(Err(e)) if e.contains("must be a number")));
        assert!(matches!(parsed("history #r 1 2 3"), Some(Err(e)) if e.contains("too many")));
        assert_eq!(parsed("broadcast hello all"), Some(Ok(Parsed::Broadcast("hello all".into()))));
        assert!(matches!(parsed("broadcast "), Some(Err(e)) if e.contains("missing message text")));
    }
}
