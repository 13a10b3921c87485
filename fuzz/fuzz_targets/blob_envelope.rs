//! Sealed blobs and unpacked-file envelopes under a fixed key, including the codec framing
//! and bounded zstd decompression.
#![no_main]
use cairn::crypto::MasterKey;
use cairn::repo::blob::{BlobType, open_blob, open_file, unframe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_seed(0);
    let id = key.blob_id(b"");
    let _ = open_blob(&key, BlobType::Data, &id, data, 1 << 16);
    let _ = open_file(&key, b"cairn index v1", data, 1 << 16);
    let _ = unframe(data, 1 << 16);
});
