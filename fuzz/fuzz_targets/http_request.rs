//! What a browser, a scraper or anything else on the network sends the gateway's HTTP side, as
//! its request parser reads it: a complete GET/HEAD head with a path (query and fragment cut
//! off), "not yet complete" only while within the head limit, or a refusal with its status —
//! never a panic.
#![no_main]

use inspectord::gateway::http::{MAX_HEAD, Refusal, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(Some(r)) => {
            assert!(!r.path.contains(['?', '#']), "{:?}", r.path);
            // The head ends at an empty line (LF or CRLF line ends, as httparse accepts).
            let head = data.windows(2).any(|w| w == b"\n\n") || data.windows(3).any(|w| w == b"\n\r\n");
            assert!(head, "a request without the end of its head");
        }
        Ok(None) => assert!(data.len() <= MAX_HEAD, "an unbounded incomplete head"),
        Err(r) => assert!(matches!(
            (r, r.status()),
            (Refusal::BadRequest, 400) | (Refusal::MethodNotAllowed, 405) | (Refusal::HeadTooLarge, 431)
        )),
    }
});
