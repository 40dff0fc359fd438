//! Identity records as any bytes: decoding never panics, and whatever decodes re-encodes
//! to the same bytes (a record is only ever accepted verified).
#![no_main]

use libfuzzer_sys::fuzz_target;
use x0tta_pqc::IdentityRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = IdentityRecord::from_bytes(data) {
        assert_eq!(record.to_bytes(), data);
    }
});
