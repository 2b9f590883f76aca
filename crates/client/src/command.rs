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
    Send { to: String, text: String },
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
}
