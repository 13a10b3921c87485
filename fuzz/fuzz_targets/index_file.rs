//! Plaintext index files.
#![no_main]
use cairn::repo::index::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = IndexFile::decode(data) {
        assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
    }
});
