//! Tree blobs: accepted trees re-encode to trees that decode to the same value.
#![no_main]
use cairn::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data) {
        let mut again = t.clone();
        assert_eq!(Tree::decode(&again.encode()).unwrap(), t);
    }
});
