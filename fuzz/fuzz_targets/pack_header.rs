//! Plaintext pack headers: decode must reject or round-trip, never panic or over-allocate.
#![no_main]
use cairn::repo::pack::PackHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = PackHeader::decode(data) {
        assert_eq!(PackHeader::decode(&h.encode()).unwrap(), h);
    }
});
