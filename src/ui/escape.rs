//! The one escaping rule for everything arc prints: names from an archive or a tree, and the
//! messages that carry them, are escaped once, by [`escape`], at the moment they are printed.
//!
//! Escaped are backslashes (`\\`), newline, tab and carriage return (`\n`, `\t`, `\r`), the
//! other C0 and C1 control characters and DEL (`\u{1b}`), and the invisible format characters
//! that can make a line lie about a name: the bidi embeddings, overrides and isolates
//! (U+202A–202E, U+2066–2069), the directional marks (U+200E, U+200F, U+061C), the line and
//! paragraph separators (U+2028, U+2029), and the zero-width and other invisible characters
//! (U+00AD, U+115F, U+1160, U+180E, U+200B–200D, U+2060–2064, U+206A–206F, U+3164, U+FE00–FE0F,
//! U+FEFF, U+FFA0, U+FFF9–FFFB, U+1BCA0–1BCA3, U+1D173–1D17A, U+E0001, U+E0020–E007F,
//! U+E0100–E01EF), all as `\u{...}`. So one entry is always one line, a
//! terminal never interprets a name, and what is shown is every character there is.
//!
//! Names are bytes (Linux allows any but `/` and NUL), so a name that is not UTF-8 is carried
//! in messages by [`text_of`], which stands each byte that is not part of valid UTF-8 for a
//! marker character; [`escape`] prints a marker as `\xff`. Markers are the 128 private-use
//! characters U+10FE80–U+10FEFF, one per byte 0x80–0xFF; a name that holds one of them really
//! has it printed byte by byte (`\xf4\x8f\xba\x80`), so every printed name stands for one
//! sequence of bytes.
//!
//! [`unescape`] is the inverse: a name as printed, typed back as a PATH argument, finds the
//! entry. [`write_json`] applies the same rule to JSON output, with JSON's own escapes
//! (`\u202e`), so that a JSON string decodes to exactly the name; JSON cannot carry bytes, so
//! a name that is not UTF-8 appears there in its printed form (see `arc list --json`).

use std::borrow::Cow;

/// The first marker: byte `b` (0x80..=0xFF) stands in text as `MARKER_BASE + b`.
const MARKER_BASE: u32 = 0x10_FE00;

/// The byte that marker `c` stands for, if it is one.
fn marker_byte(c: char) -> Option<u8> {
    let v = c as u32;
    (MARKER_BASE + 0x80..=MARKER_BASE + 0xff).contains(&v).then(|| (v - MARKER_BASE) as u8)
}

fn push_marker(out: &mut String, byte: u8) {
    out.push(char::from_u32(MARKER_BASE + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER));
}

/// `bytes` as text for messages and listings: borrowed when they are UTF-8 (almost always),
/// else with each byte outside valid UTF-8 (or inside a marker character) as a marker, which
/// [`escape`] prints as `\xHH`. [`bytes_of`] is the inverse.
pub fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        // The markers' UTF-8 form starts with 0xF4 (U+100000..): only then look further.
        if !bytes.contains(&0xf4) || !s.chars().any(|c| marker_byte(c).is_some()) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if marker_byte(c).is_some() {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf).bytes().for_each(|b| push_marker(&mut out, b));
            } else {
                out.push(c);
            }
        }
        chunk.invalid().iter().for_each(|&b| push_marker(&mut out, b));
    }
    Cow::Owned(out)
}

/// Appends `bytes` as [`escape`] prints [`text_of`] them: at once when they are printable
/// ASCII without a backslash (almost every name), else through both.
pub fn push_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
    } else {
        out.extend_from_slice(escape(&text_of(bytes)).as_bytes());
    }
}

/// Whether `bytes` are all printable ASCII other than a backslash, eight bytes at a time: every
/// name `list` prints goes through this.
fn is_plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    const DELS: u64 = u64::from_ne_bytes([0x7f; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // Nonzero exactly when some byte of `word` is zero; for bytes below 0x80, when some byte
    // is below 0x20 after subtracting 0x20 the same way.
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let has_control = |word: u64| word.wrapping_sub(SPACES) & !word & HIGHS != 0;
    let mut words = bytes.chunks_exact(8);
    let plain = words.by_ref().all(|w| {
        let word = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        word & HIGHS == 0 && !has_control(word) && !has_zero(word ^ DELS) && !has_zero(word ^ BACKSLASHES)
    });
    plain && words.remainder().iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
}

/// The bytes that [`text_of`] gave `text` for.
pub fn bytes_of(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(|c| marker_byte(c).is_some()) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match marker_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is printed as an escape rather than as itself.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || marker_byte(c).is_some()
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
                | '\u{e0100}'..='\u{e01ef}'
        )
}

/// The bytes that may start something [`escape`] escapes (see the comment there): a table, so
/// that the scan of every name printed is one load a byte.
static SUSPECT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20
            || matches!(b as u8, 0x7f | b'\\' | 0xc2 | 0xd8 | 0xe1 | 0xe2 | 0xe3 | 0xef | 0xf0 | 0xf3 | 0xf4);
        b += 1;
    }
    table
};

/// `s` with backslashes, control and invisible format characters escaped (see the module
/// documentation). Borrows when nothing needs escaping, which is almost always.
pub fn escape(s: &str) -> Cow<'_, str> {
    // Byte scan first: everything escaped is below 0x20, 0x7f, a backslash, or a character
    // whose UTF-8 form starts with one of these lead bytes (U+0080..U+00BF: 0xC2; U+061C:
    // 0xD8; U+115F.., U+180E: 0xE1; U+200B..U+206F: 0xE2; U+3164: 0xE3; U+FE00.., U+FEFF,
    // U+FFA0, U+FFF9..: 0xEF; U+1BCA0.., U+1D173..: 0xF0; U+E0001..: 0xF3; markers: 0xF4).
    if !s.bytes().any(|b| SUSPECT[b as usize]) {
        return Cow::Borrowed(s);
    }
    if !s.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                use std::fmt::Write;
                let _ = match marker_byte(c) {
                    Some(b) => write!(out, "\\x{b:02x}"),
                    None => write!(out, "\\u{{{:x}}}", c as u32),
                };
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text that [`escape`] printed as `s`, or `None` if `s` holds a backslash that is not one
/// of [`escape`]'s sequences (then `s` was not printed by it).
pub fn unescape(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('\\') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            // A byte outside UTF-8, as text_of marks it; a byte below 0x80 is never printed so.
            'x' => {
                let hi = chars.next()?.to_digit(16)?;
                let lo = chars.next()?.to_digit(16)?;
                let byte = u8::try_from(hi * 16 + lo).ok().filter(|&b| b >= 0x80)?;
                push_marker(&mut out, byte);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                // One to six hex digits, then `}`: nothing else is an escape this module wrote.
                let mut value = 0u32;
                let mut digits = 0;
                loop {
                    let c = chars.next()?;
                    if c == '}' {
                        break;
                    }
                    value = value * 16 + c.to_digit(16)?;
                    digits += 1;
                    if digits > 6 {
                        return None;
                    }
                }
                if digits == 0 {
                    return None;
                }
                // A marker is printed as the bytes it stands for, never as \u{...}.
                out.push(char::from_u32(value).filter(|&c| marker_byte(c).is_none())?);
            }
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

/// Writes `value` as one line of JSON, escaping in strings everything [`escape`] escapes
/// (serde_json escapes only U+0000–U+001F of them).
pub fn write_json<W: std::io::Write, T: serde::Serialize>(out: &mut W, value: &T) -> std::io::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, JsonEscapes);
    value.serialize(&mut serializer).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// serde_json's compact output, with the characters of [`needs_escape`] escaped in strings.
struct JsonEscapes;

impl serde_json::ser::Formatter for JsonEscapes {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if needs_escape(c) {
                out.write_all(&fragment.as_bytes()[start..at])?;
                // JSON escapes UTF-16 units: a character past U+FFFF is a surrogate pair.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}")?;
                }
                start = at + c.len_utf8();
            }
        }
        out.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_backslash_and_invisible_characters() {
        assert_eq!(escape("plain name"), "plain name");
        assert!(matches!(escape("plain name"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\\c\x1b"), "a\\nb\\\\c\\u{1b}");
        assert_eq!(escape("del\x7f c1\u{85}"), "del\\u{7f} c1\\u{85}");
        // A name that would display as "txt.exe" reversed, and a zero-width space.
        assert_eq!(escape("evil\u{202e}exe.txt"), "evil\\u{202e}exe.txt");
        assert_eq!(escape("a\u{2066}b\u{2069}"), "a\\u{2066}b\\u{2069}");
        assert_eq!(escape("zero\u{200b}width\u{feff}"), "zero\\u{200b}width\\u{feff}");
        // Line separators, tag characters (outside the BMP), variation selectors.
        assert_eq!(escape("a\u{2028}b\u{e0041}c\u{fe0f}"), "a\\u{2028}b\\u{e0041}c\\u{fe0f}");
        // Printable characters that share a lead byte with escaped ones stay as they are.
        assert_eq!(escape("emoji 😀 and 漢字"), "emoji 😀 and 漢字");
        assert_eq!(escape("café – “quoted” ½ ï"), "café – “quoted” ½ ï");
    }

    #[test]
    fn push_escaped_is_escape_of_text_of() {
        for bytes in
            [&b"plain-name.txt"[..], b"a\\b", b"tab\there", b"caf\xe9", b"\x7f", b"~ !", "é".as_bytes()]
        {
            // At every place of a word and of the remainder.
            for at in 0..12 {
                let mut name = b"abcdefghijkl".to_vec();
                name.splice(at..at + 1, bytes.iter().copied());
                let mut out = Vec::new();
                push_escaped(&name, &mut out);
                assert_eq!(out, escape(&text_of(&name)).as_bytes(), "{name:?}");
            }
            let mut out = Vec::new();
            push_escaped(bytes, &mut out);
            assert_eq!(out, escape(&text_of(bytes)).as_bytes(), "{bytes:?}");
        }
    }

    #[test]
    fn unescape_inverts_escape() {
        for s in ["plain", "a\\b", "tab\there", "new\nline", "\u{202e}x", "\u{1b}[31m", "a\\\\b", "\r\u{7f}"]
        {
            assert_eq!(unescape(&escape(s)).as_deref(), Some(s), "{s:?}");
        }
        assert_eq!(unescape("a\\q"), None);
        assert_eq!(unescape("trailing\\"), None);
        assert_eq!(unescape("\\u{110000}"), None);
        assert_eq!(unescape("\\u{}"), None);
        assert_eq!(unescape("\\u{41"), None, "unterminated");
        assert_eq!(unescape("\\u{+41}"), None);
        assert_eq!(unescape("\\u{0000041}"), None, "more than six digits");
        assert_eq!(unescape("\\u{d800}"), None, "a surrogate is no character");
    }

    #[test]
    fn bytes_that_are_not_utf8_print_as_hex_and_come_back() {
        for bytes in [&b"caf\xe9"[..], b"\xff\xfe", b"ok", b"a\\xff", "\u{10fe80}".as_bytes(), b"\xf4\x8f"] {
            let text = text_of(bytes);
            assert_eq!(bytes_of(&text).as_ref(), bytes, "{bytes:?}");
            let printed = escape(&text);
            assert!(printed.is_ascii() || std::str::from_utf8(bytes).is_ok(), "{printed}");
            let back = unescape(&printed).expect("printed by escape");
            assert_eq!(bytes_of(&back).as_ref(), bytes, "{printed}");
        }
        assert_eq!(escape(&text_of(b"caf\xe9")), "caf\\xe9");
        assert_eq!(escape(&text_of(b"a\\xff")), "a\\\\xff", "a real backslash is doubled");
        assert_eq!(escape(&text_of("\u{10fe80}".as_bytes())), "\\xf4\\x8f\\xba\\x80");
        assert!(matches!(text_of(b"plain"), Cow::Borrowed(_)));
        assert_eq!(unescape("\\x41"), None, "ASCII is never printed as \\x");
        assert_eq!(unescape("\\u{10fe80}"), None, "markers are printed as \\x");
        assert_eq!(unescape("\\xg0"), None);
    }

    #[test]
    fn json_escapes_the_same_characters_and_decodes_to_the_name() {
        let name = "a\"b\\c\u{7f}d\u{85}e\u{202e}f\u{200b}g\u{1b}h ü\u{e0041}";
        let mut out = Vec::new();
        write_json(&mut out, &name).expect("writing");
        let line = String::from_utf8(out).expect("UTF-8");
        assert_eq!(line, "\"a\\\"b\\\\c\\u007fd\\u0085e\\u202ef\\u200bg\\u001bh ü\\udb40\\udc41\"\n");
        let back: String = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back, name);
    }
}
