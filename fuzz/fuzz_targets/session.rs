//! Session records: the JSON plaintext (as if it had authenticated, since a forged envelope
//! never does), its liveness judgement, and the sealed envelope under a fixed key.
#![no_main]
use std::time::Duration;

use cairn::crypto::MasterKey;
use cairn::repo::session::{self, SessionInfo};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = SessionInfo::decode(data) {
        assert_eq!(SessionInfo::decode(&info.encode()).unwrap(), info);
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let _ = info.is_live(now, Duration::from_secs(600), "fuzz-host");
        // Within the sealed record's plaintext limit (64 KiB), the seal round-trips too.
        if data.len() < 60_000 {
            let key = MasterKey::from_seed(0);
            assert_eq!(session::open(&key, &session::seal(&key, &info)).unwrap(), info);
        }
    }
    let _ = session::open(&MasterKey::from_seed(0), data);
});
