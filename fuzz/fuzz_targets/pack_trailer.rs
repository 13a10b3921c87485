//! Whole pack tails under a fixed key: trailer length and sealed header handling.
#![no_main]
use cairn::crypto::MasterKey;
use cairn::repo::pack::read_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_seed(0);
    let _ = read_header(&key, data, data.len() as u64);
});
