//! FORMAT.md §2: the header, the first 16 bytes of every archive.

use super::{corrupt, FormatError, Result, HEADER_LEN, MAGIC, OLDEST_VERSION, VERSION};

/// FORMAT.md §2. The header: magic, version, six zero bytes.
pub fn encode_header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// Checks a header and returns the archive's format version (1 or 2: this arc reads both).
pub fn decode_header(bytes: &[u8]) -> Result<u16> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err(FormatError::NotArc);
    }
    if bytes.len() < HEADER_LEN as usize {
        return Err(FormatError::Truncated("header"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version > VERSION {
        return Err(FormatError::NewerVersion(version));
    }
    if version < OLDEST_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    if bytes[10..16].iter().any(|&b| b != 0) {
        return Err(corrupt("reserved header bytes are not zero"));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let header = encode_header();
        assert_eq!(decode_header(&header), Ok(VERSION));
        let mut old = header;
        old[8] = 1;
        assert_eq!(decode_header(&old), Ok(1));
        old[8] = 0;
        assert!(matches!(decode_header(&old), Err(FormatError::Corrupt(_))));
        assert_eq!(decode_header(b"hello world, not"), Err(FormatError::NotArc));
        assert_eq!(decode_header(&header[..9]), Err(FormatError::Truncated("header")));
        let mut newer = header;
        newer[8] = 3;
        assert_eq!(decode_header(&newer), Err(FormatError::NewerVersion(3)));
        let mut reserved = header;
        reserved[12] = 1;
        assert!(matches!(decode_header(&reserved), Err(FormatError::Corrupt(_))));
    }
}
