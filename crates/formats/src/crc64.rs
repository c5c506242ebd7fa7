//! CRC-64 as Redis computes it (Jones polynomial, reflected, init 0).

// Slice-by-16 tables: several times faster than byte-at-a-time on large files.
const CRC: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_REDIS);

/// One-shot checksum.
pub fn crc64(data: &[u8]) -> u64 {
    CRC.checksum(data)
}

/// A running checksum.
pub struct Crc64 {
    digest: crc::Digest<'static, u64, crc::Table<16>>,
}

impl Default for Crc64 {
    fn default() -> Self {
        Crc64 {
            digest: CRC.digest(),
        }
    }
}

impl Crc64 {
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    pub fn value(&self) -> u64 {
        self.digest.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_check_value() {
        // The check value Redis's own crc64 test uses.
        assert_eq!(super::crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }
}
