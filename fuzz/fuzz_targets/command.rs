//! The chat client's command parser: any line gives a command or a usage
//! error, and a parsed command holds what the grammar promises.
#![no_main]

use chorus_client::command::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let Some((word, parsed)) = parse(&line) else {
        assert!(line.trim().is_empty(), "only a blank line parses to nothing");
        return;
    };
    assert!(!word.is_empty() && word == word.to_ascii_lowercase());
    match parsed {
        Ok(Parsed::Create(name) | Parsed::Connect(name) | Parsed::Delete(name)) => {
            assert!(chorus_chat::validate_name(&name).is_ok(), "an invalid name passed: {name:?}");
        }
        Ok(Parsed::Send { to, text }) => assert!(!to.is_empty() && !text.is_empty()),
        Ok(Parsed::List(Some(pattern))) => assert!(!pattern.trim().is_empty()),
        Ok(_) => {}
        Err(usage) => assert!(!usage.is_empty()),
    }
});
