//! The traffic state file's reader (`ringway::traffic::state_file::parse`) on arbitrary
//! text: no panic; what it accepts, `render` writes back to text that parses to the same
//! counts (a saved file always loads as it was saved).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::traffic::state_file::{parse, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(quotas) = parse(text) {
        let again = parse(&render(&quotas)).expect("a rendered state file parses");
        assert_eq!(again, quotas);
    }
});
