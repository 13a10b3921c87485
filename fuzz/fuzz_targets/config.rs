//! The repository config.
#![no_main]
use cairn::repo::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Config::peek_version(data);
    if let Ok(c) = Config::decode(data) {
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
    }
});
