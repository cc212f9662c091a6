//! A client's line on the verdict socket, as the socket thread reads it: it is a command or an
//! error with a reason (and the `id` when one could be read), never a panic; a command survives
//! a round trip through its wire form.
#![no_main]

use inspectord::wire::{self, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match wire::parse_command(data) {
        Ok(command) => {
            let text = serde_json::to_string(&command).expect("a command serialises");
            let back: Command = serde_json::from_str(&text).expect("a command parses back");
            assert_eq!(back, command, "{text}");
        }
        Err((_id, reason)) => assert!(!reason.is_empty(), "an error without a reason"),
    }
});
