//! Key files (JSON; the KDF is not run here, only parsing and parameter checks).
#![no_main]
use cairn::crypto::keyfile::KeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KeyFile::decode(data) {
        assert_eq!(KeyFile::decode(&k.encode()).unwrap(), k);
    }
});
