//! FORMAT.md §4.7: how version 2 packs a column into one CBOR byte string, so that a column
//! of a million elements is one CBOR item, decoded by a tight loop, rather than a million.
//!
//! - unsigned integers: LEB128 (7 bits a byte, low first, the high bit set on every byte but
//!   the last), the shortest form only;
//! - `mtime_secs`: each value's difference from the one before (from 0 for the first),
//!   zigzag-mapped (0, -1, 1, -2, ... as 0, 1, 2, 3, ...) then LEB128: the mtimes of a tree
//!   are close to each other;
//! - byte strings (names, targets, attribute names and values): the length in LEB128, then
//!   the bytes;
//! - block hashes: 8 bytes each, little-endian.
//!
//! The writer's side is serde `serialize_with` functions; the reader's is [`Unpack`], whose
//! every read is bounds-checked and refuses what the writer would never produce (overlong
//! integers, values over the column's limit), so that one archive has one encoding.

use serde::Serializer;

/// Appends `value` in LEB128.
pub fn put_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

/// A column of unsigned integers.
pub fn uints<S: Serializer, T: Copy + Into<u64>>(column: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    uints_of(column.iter().map(|&v| v.into()), serializer)
}

/// A column of unsigned integers given one by one.
pub fn uints_of<S: Serializer>(
    column: impl ExactSizeIterator<Item = u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = Vec::with_capacity(column.len() * 2);
    for value in column {
        put_uint(&mut out, value);
    }
    serializer.serialize_bytes(&out)
}

/// A column of signed integers, as zigzag differences from the value before.
pub fn deltas<S: Serializer>(column: &[i64], serializer: S) -> Result<S::Ok, S::Error> {
    deltas_of(column.iter().copied(), serializer)
}

/// The same, given one by one.
pub fn deltas_of<S: Serializer>(
    column: impl ExactSizeIterator<Item = i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = Vec::with_capacity(column.len() * 3);
    let mut before = 0i64;
    for value in column {
        put_uint(&mut out, zigzag(value.wrapping_sub(before)));
        before = value;
    }
    serializer.serialize_bytes(&out)
}

/// A column of byte strings, each its length then its bytes.
pub fn strings<S: Serializer>(column: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
    let mut out = Vec::with_capacity(column.iter().map(|s| s.len() + 1).sum());
    for bytes in column {
        put_uint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    serializer.serialize_bytes(&out)
}

/// A column of byte strings given one by one (`capacity`: about the bytes they take).
pub fn strings_of<'a, S: Serializer>(
    column: impl Iterator<Item = &'a [u8]>,
    capacity: usize,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = Vec::with_capacity(capacity);
    for bytes in column {
        put_uint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    serializer.serialize_bytes(&out)
}

/// A column of 64-bit values, 8 bytes each.
pub fn fixed64<S: Serializer>(column: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
    let out: Vec<u8> = column.iter().flat_map(|v| v.to_le_bytes()).collect();
    serializer.serialize_bytes(&out)
}

/// Whether every value of a packed column of unsigned integers is in its shortest form and
/// below 2^`bits`, and the last one ends the column: a check of its bytes in one pass that
/// makes no value. What it says yes to, [`Unpack::uint`] with a `max` of 2^`bits` − 1 or more
/// reads without an error, value after value; it may say no to a column that is right for a
/// larger `max` (a value of 2^`bits` or more), which is then read value by value.
pub fn plainly_valid(bytes: &[u8], bits: u32) -> bool {
    // The most the last byte of the longest value may hold.
    let top = |longest: u32| ((1u32 << (bits - 7 * (longest - 1))) - 1) as u8;
    match bits.div_ceil(7) {
        2 => plain::<2>(bytes, top(2)),
        5 => plain::<5>(bytes, top(5)),
        10 => plain::<10>(bytes, top(10)),
        _ => false,
    }
}

/// [`plainly_valid`] for values of at most `LONGEST` bytes, the last of a longest at most
/// `top`: loops without a branch or a carried count, which the compiler makes vector code.
fn plain<const LONGEST: usize>(bytes: &[u8], top: u8) -> bool {
    let Some(&last) = bytes.last() else { return true };
    let mut bad = last & 0x80;
    // A last byte of 0 after others: a longer form than needed.
    for (&before, &byte) in bytes.iter().zip(&bytes[1..]) {
        bad |= before & u8::from(byte == 0) << 7;
    }
    // The byte after LONGEST - 1 that go on is the longest value's last: at most `top` (a
    // high bit there would make it longer still).
    for end in LONGEST - 1..bytes.len() {
        let mut on = 0x80;
        for k in 1..LONGEST {
            on &= bytes[end - k];
        }
        bad |= on & u8::from(bytes[end] > top) << 7;
    }
    bad == 0
}

/// Reads a packed column: every read says what was wrong in words, for the caller to name the
/// column.
pub struct Unpack<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The value before, for [`Unpack::delta`].
    before: i64,
}

impl<'a> Unpack<'a> {
    pub fn new(bytes: &'a [u8]) -> Unpack<'a> {
        Unpack { bytes, at: 0, before: 0 }
    }

    /// The same, read from byte `at` on: where [`Unpack::at`] said an earlier reader was.
    pub fn new_at(bytes: &'a [u8], at: usize) -> Unpack<'a> {
        Unpack { bytes, at: at.min(bytes.len()), before: 0 }
    }

    /// How many bytes are read.
    pub fn at(&self) -> usize {
        self.at
    }

    /// Passes over the next `n` values of a column of integers without making them (a column
    /// [`plainly_valid`] said yes to: any other may stop anywhere).
    pub fn skip(&mut self, mut n: usize) {
        // Chunks of 64 bytes with fewer ends than that at once, then byte by byte.
        while let Some(chunk) = self.bytes.get(self.at..self.at + 64) {
            let ends = chunk.iter().filter(|&&b| b < 0x80).count();
            if ends >= n {
                break;
            }
            (self.at, n) = (self.at + 64, n - ends);
        }
        while n > 0 {
            let Some(&byte) = self.bytes.get(self.at) else { return };
            self.at += 1;
            n -= usize::from(byte < 0x80);
        }
    }

    /// Goes to the end of the column (one [`plainly_valid`] said yes to, read no further).
    pub fn finish(&mut self) {
        self.at = self.bytes.len();
    }

    /// Whether the column is read to its end.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// An unsigned integer of at most `max`, in its shortest LEB128 form.
    #[inline(always)]
    pub fn uint(&mut self, max: u64) -> Result<u64, String> {
        // One byte or two (a mode, a small size), the usual cases: no loop.
        if let Some(&byte) = self.bytes.get(self.at) {
            if byte < 0x80 && u64::from(byte) <= max {
                self.at += 1;
                return Ok(byte.into());
            }
            if let Some(&high) = self.bytes.get(self.at + 1) {
                let value = u64::from(byte & 0x7f) | u64::from(high) << 7;
                if byte >= 0x80 && high < 0x80 && high != 0 && value <= max {
                    self.at += 2;
                    return Ok(value);
                }
            }
        }
        self.long_uint(max)
    }

    fn long_uint(&mut self, max: u64) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err("ends inside an integer".to_owned());
            };
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("an integer over 64 bits".to_owned());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err("an integer in a longer form than needed".to_owned());
                }
                if value > max {
                    return Err(format!("{value} is over {max}"));
                }
                return Ok(value);
            }
        }
        Err("an integer over 64 bits".to_owned())
    }

    /// The next value of a column of differences ([`deltas`]; both sides wrap, so every
    /// sequence of 64-bit values has one encoding).
    #[inline(always)]
    pub fn delta(&mut self) -> Result<i64, String> {
        let value = self.before.wrapping_add(unzigzag(self.uint(u64::MAX)?));
        self.before = value;
        Ok(value)
    }

    /// A byte string of at most `max` bytes.
    #[inline(always)]
    pub fn string(&mut self, max: usize) -> Result<&'a [u8], String> {
        let len = self.uint(u64::MAX)?;
        if len > max as u64 {
            return Err(format!("a string of {len} bytes is longer than {max}"));
        }
        let bytes = self.bytes.get(self.at..self.at + len as usize).ok_or("ends inside a string")?;
        self.at += len as usize;
        Ok(bytes)
    }

    /// A 64-bit value of [`fixed64`].
    pub fn fixed64(&mut self) -> Result<u64, String> {
        let bytes = self.bytes.get(self.at..self.at + 8).ok_or("ends inside a value")?;
        self.at += 8;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| "ends inside a value")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(values: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        values.iter().for_each(|&v| put_uint(&mut out, v));
        out
    }

    #[test]
    fn integers_round_trip_in_their_shortest_form() {
        let values = [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX.into(), u64::MAX - 1, u64::MAX];
        let bytes = packed(&values);
        let mut unpack = Unpack::new(&bytes);
        for &v in &values {
            assert_eq!(unpack.uint(u64::MAX), Ok(v));
        }
        assert!(unpack.is_done());
        assert_eq!(packed(&[127]), [0x7f]);
        assert_eq!(packed(&[128]), [0x80, 0x01]);
        assert_eq!(packed(&[u64::MAX]).len(), 10);
        // Overlong forms, values over 64 bits, a cut integer, a value over the limit.
        for (bytes, why) in [
            (&[0x80, 0x00][..], "longer form"),
            (&[0xff; 10][..], "over 64 bits"),
            (&[0x80; 11][..], "over 64 bits"),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..], "over 64 bits"),
            (&[0x80][..], "ends inside"),
            (&[0x90, 0x03][..], "over 255"),
        ] {
            let got = Unpack::new(bytes).uint(255);
            assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{bytes:?}: {got:?}");
        }
    }

    /// Whether `uint(2^bits - 1)` reads the whole column, value after value, and how many.
    fn read_one_by_one(bytes: &[u8], bits: u32) -> Option<usize> {
        let (mut unpack, mut count) = (Unpack::new(bytes), 0);
        while !unpack.is_done() {
            unpack.uint(u64::MAX >> (64 - bits)).ok()?;
            count += 1;
        }
        Some(count)
    }

    #[test]
    fn a_column_plainly_valid_reads_value_by_value_and_skips_to_any_of_them() {
        for bits in [12, 29, 32, 64] {
            let max = u64::MAX >> (64 - bits);
            let values = [0, 1, 127, 128, 420, 0o7777, 16_384, max / 2, max - 1, max];
            let values: Vec<u64> = values.into_iter().filter(|&v| v <= max).collect();
            let bytes = packed(&values);
            assert!(plainly_valid(&bytes, bits), "{bits} bits: {values:?}");
            assert!(plainly_valid(&[], bits));
            for (i, &v) in values.iter().enumerate() {
                let mut unpack = Unpack::new(&bytes);
                unpack.skip(i);
                assert_eq!(unpack.uint(u64::MAX), Ok(v), "value {i} of {bits} bits");
            }
            // One more than the largest, an overlong form, a cut value: no.
            let over = max.checked_add(1).map(|v| packed(&[0, v]));
            for wrong in over.into_iter().chain([vec![0x80, 0x00], vec![5, 0x80]]) {
                assert!(!plainly_valid(&wrong, bits), "{bits} bits: {wrong:x?}");
            }
        }
        // What it says yes to is read without an error, every byte: all columns of up to
        // three bytes, and some longer ones.
        let mut columns: Vec<Vec<u8>> =
            (0..=0xff_ffffu32).step_by(97).map(|n| n.to_le_bytes()[..3].to_vec()).collect();
        columns.extend((0..=0xffffu32).map(|n| n.to_le_bytes()[..2].to_vec()));
        columns.extend((0..=0xffu32).map(|n| vec![n as u8]));
        columns.extend([
            vec![0xff; 4],
            [&[0xff; 4][..], &[0x0f]].concat(),
            [&[0xff; 4][..], &[0x10]].concat(),
        ]);
        columns.extend([[&[0xff; 9][..], &[0x01]].concat(), [&[0xff; 9][..], &[0x02]].concat()]);
        for bytes in &columns {
            for bits in [12, 29, 32, 64] {
                if plainly_valid(bytes, bits) {
                    assert!(read_one_by_one(bytes, bits).is_some(), "{bits} bits: {bytes:x?}");
                }
            }
        }
    }

    #[test]
    fn deltas_and_strings_round_trip() {
        let mut out = Vec::new();
        for value in [1_700_000_000i64, 1_700_000_005, -5, i64::MIN, i64::MAX, 0] {
            let zig = zigzag(value);
            assert_eq!(unzigzag(zig), value);
            put_uint(&mut out, zig);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        let mut strings = Vec::new();
        for s in [&b""[..], b"a", &[0xff; 300]] {
            put_uint(&mut strings, s.len() as u64);
            strings.extend_from_slice(s);
        }
        let mut unpack = Unpack::new(&strings);
        assert_eq!(unpack.string(300), Ok(&b""[..]));
        assert_eq!(unpack.string(300), Ok(&b"a"[..]));
        assert_eq!(unpack.string(300).map(<[u8]>::len), Ok(300));
        assert!(unpack.is_done());
        assert!(Unpack::new(&strings[2..]).string(1).is_err(), "a string over the limit");
        assert!(Unpack::new(&[5, b'a']).string(10).is_err(), "a cut string");
        // Differences wrap on both sides: the extremes follow each other.
        let values = [i64::MIN, i64::MAX, 0, i64::MIN];
        let mut bytes = Vec::new();
        let mut before = 0i64;
        for v in values {
            put_uint(&mut bytes, zigzag(v.wrapping_sub(before)));
            before = v;
        }
        let mut unpack = Unpack::new(&bytes);
        for v in values {
            assert_eq!(unpack.delta(), Ok(v));
        }
        assert!(unpack.is_done());
    }
}
