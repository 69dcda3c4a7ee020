//! Whatever bytes a peer sends, decoding returns a message or an error, never panics;
//! and a message that decodes re-encodes to bytes that decode to the same message.
#![no_main]

use hatchery::protocol::{decode, encode, Event, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode::<Request>(data) {
        let again = encode(&request).expect("a decoded request re-encodes");
        assert_eq!(
            decode::<Request>(&again).expect("and decodes again"),
            request
        );
    }
    if let Ok(event) = decode::<Event>(data) {
        let again = encode(&event).expect("a decoded event re-encodes");
        assert_eq!(decode::<Event>(&again).expect("and decodes again"), event);
    }
});
