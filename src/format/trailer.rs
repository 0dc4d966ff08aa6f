//! FORMAT.md §5: the trailer, the last 32 bytes of every archive, which says where the index
//! is and how to check it.

use xxhash_rust::xxh3::Xxh3;

use super::{
    corrupt, FormatError, Result, HEADER_LEN, INDEX_RATIO_FLOOR, MAX_INDEX_LEN, MAX_INDEX_RATIO,
    MAX_INDEX_RAW, TRAILER_LEN, TRAILER_MAGIC,
};

/// FORMAT.md §5. The trailer, the last 32 bytes: where the index is and how to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Length of the compressed index frame, which ends where the trailer starts.
    pub index_len: u64,
    /// Length of the CBOR index once decompressed.
    pub index_raw_len: u64,
    /// XXH3-64 of the compressed index frame followed by the trailer's first 16 bytes.
    pub index_hash: u64,
}

impl Trailer {
    pub fn new(index_frame: &[u8], index_raw_len: u64) -> Trailer {
        let index_len = index_frame.len() as u64;
        let index_hash = index_hash(index_frame, index_len, index_raw_len);
        Trailer { index_len, index_raw_len, index_hash }
    }

    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[0..8].copy_from_slice(&self.index_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.index_raw_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.index_hash.to_le_bytes());
        out[24..32].copy_from_slice(&TRAILER_MAGIC);
        out
    }

    /// Decodes the trailer and checks its numbers against the archive's length and the caps.
    pub fn decode(bytes: &[u8; TRAILER_LEN as usize], archive_len: u64) -> Result<Trailer> {
        if bytes[24..32] != TRAILER_MAGIC {
            return Err(FormatError::Truncated("no index trailer at the end"));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let trailer = Trailer { index_len: word(0), index_raw_len: word(8), index_hash: word(16) };
        if trailer.index_len == 0 || trailer.index_len > MAX_INDEX_LEN {
            return Err(corrupt(format!("index length {} out of range", trailer.index_len)));
        }
        if trailer.index_raw_len > MAX_INDEX_RAW {
            return Err(corrupt(format!("index size {} out of range", trailer.index_raw_len)));
        }
        if trailer.index_raw_len > INDEX_RATIO_FLOOR
            && trailer.index_raw_len / trailer.index_len > MAX_INDEX_RATIO
        {
            return Err(corrupt(format!(
                "index claims to expand {} times (at most {MAX_INDEX_RATIO})",
                trailer.index_raw_len / trailer.index_len
            )));
        }
        let room = archive_len.saturating_sub(HEADER_LEN + TRAILER_LEN);
        if trailer.index_len > room {
            return Err(corrupt("index length larger than the archive"));
        }
        Ok(trailer)
    }

    /// Offset of the index frame, which is also where the block region ends.
    pub fn index_offset(&self, archive_len: u64) -> u64 {
        archive_len - TRAILER_LEN - self.index_len
    }

    pub fn check(&self, index_frame: &[u8]) -> Result<()> {
        if index_hash(index_frame, self.index_len, self.index_raw_len) != self.index_hash {
            return Err(corrupt("index checksum mismatch"));
        }
        Ok(())
    }
}

fn index_hash(frame: &[u8], index_len: u64, index_raw_len: u64) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(frame);
    hasher.update(&index_len.to_le_bytes());
    hasher.update(&index_raw_len.to_le_bytes());
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip_and_checks() {
        let frame = b"pretend index frame";
        let trailer = Trailer::new(frame, 99);
        let bytes = trailer.encode();
        let archive_len = HEADER_LEN + frame.len() as u64 + TRAILER_LEN;
        assert_eq!(Trailer::decode(&bytes, archive_len), Ok(trailer));
        assert_eq!(trailer.index_offset(archive_len), HEADER_LEN);
        assert!(trailer.check(frame).is_ok());
        assert!(trailer.check(b"pretend index framf").is_err());
        // An index longer than the file is refused before anything is read.
        assert!(Trailer::decode(&bytes, archive_len - 1).is_err());
        let mut magic = bytes;
        magic[31] ^= 1;
        assert!(Trailer::decode(&magic, archive_len).is_err());
        // A small frame may not claim to expand into gigabytes.
        let bomb = Trailer { index_len: 1000, index_raw_len: INDEX_RATIO_FLOOR + 1, index_hash: 0 }.encode();
        let err = Trailer::decode(&bomb, 1 << 20).expect_err("ratio cap");
        assert!(err.to_string().contains("expand"), "{err}");
        let fine = Trailer { index_len: 1000, index_raw_len: INDEX_RATIO_FLOOR, index_hash: 0 }.encode();
        assert!(Trailer::decode(&fine, 1 << 20).is_ok());
    }
}
