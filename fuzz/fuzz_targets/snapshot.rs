//! Snapshot JSON.
#![no_main]
use cairn::repo::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode(data) {
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    }
});
