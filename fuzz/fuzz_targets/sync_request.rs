//! Fuzz target: arbitrary bytes into the catch-up parsers (request and response). A parent
//! parses requests from any member of its broker; a child parses responses. Neither may
//! panic, and a request that parses must respect the page limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

use kairan_protocol::sync::{MAX_SYNC_PAGE_ENTRIES, parse_request, parse_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data) {
        assert!(request.limit >= 1 && request.limit <= MAX_SYNC_PAGE_ENTRIES);
    }
    if let Ok(response) = parse_response(data) {
        assert!(response.scanned_upto >= response.after);
    }
});
