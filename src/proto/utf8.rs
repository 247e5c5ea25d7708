//! Incremental UTF-8 validation of text messages (Beast's `utf8_checker`).
//!
//! A text message arrives in pieces (frames, and reads within frames) that may split a
//! multi-byte character anywhere. [`Utf8Validator`] checks each piece as it comes and fails
//! on the first byte after which the message can no longer be valid UTF-8 — an overlong
//! form, a surrogate, a code point above U+10FFFF, a stray continuation byte — even when that
//! byte ends a piece ("fail fast", as the Autobahn 6.4.x cases require). At the end of the
//! message [`Utf8Validator::finish`] rejects a truncated character.
//!
//! The bulk of each piece is checked with `simdutf8`; at most 3 bytes of an unfinished
//! character are carried to the next piece.

use crate::Error;

/// The length of the UTF-8 sequence that starts with `lead`, for a lead byte that can
/// begin an unfinished but so far valid sequence (0xC2..=0xF4).
#[inline]
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

/// Validates one text message fed in pieces.
///
/// ```
/// use rbeast::proto::utf8::Utf8Validator;
/// let mut v = Utf8Validator::new();
/// let euro = "€".as_bytes(); // E2 82 AC
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..]).unwrap();
/// v.finish().unwrap();
/// // A surrogate is rejected as soon as its second byte is seen.
/// assert_eq!(v.feed(&[0xED, 0xA0]), Err(rbeast::Error::BadFramePayload));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The start of an unfinished character from the previous piece.
    carry: [u8; 4],
    carry_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    ///
    /// ```
    /// let v = rbeast::proto::utf8::Utf8Validator::new();
    /// assert!(v.is_boundary());
    /// ```
    pub const fn new() -> Self {
        Utf8Validator {
            carry: [0; 4],
            carry_len: 0,
        }
    }

    /// True when the bytes fed so far end on a character boundary (nothing is carried).
    ///
    /// ```
    /// let mut v = rbeast::proto::utf8::Utf8Validator::new();
    /// v.feed(&[0xC3]).unwrap();
    /// assert!(!v.is_boundary());
    /// v.feed(&[0xA9]).unwrap();
    /// assert!(v.is_boundary());
    /// ```
    pub const fn is_boundary(&self) -> bool {
        self.carry_len == 0
    }

    /// Checks the next piece of the message. Fails with [`Error::BadFramePayload`] as soon
    /// as the bytes fed so far cannot begin any valid UTF-8 text. After an error the
    /// validator must be [`reset`](Self::reset) before it is used again.
    ///
    /// ```
    /// let mut v = rbeast::proto::utf8::Utf8Validator::new();
    /// assert!(v.feed(b"plain ascii").is_ok());
    /// assert!(v.feed(&[0xF4]).is_ok()); // may still become U+10xxxx
    /// assert!(v.feed(&[0x90]).is_err()); // F4 90 would be above U+10FFFF
    /// ```
    #[inline]
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), Error> {
        let mut rest = piece;
        if self.carry_len != 0 {
            let have = self.carry_len as usize;
            let want = sequence_len(self.carry[0]) - have;
            let take = want.min(rest.len());
            self.carry[have..have + take].copy_from_slice(&rest[..take]);
            let now = have + take;
            match core::str::from_utf8(&self.carry[..now]) {
                Ok(_) => {
                    self.carry_len = 0;
                    rest = &rest[take..];
                }
                Err(e) if e.error_len().is_none() => {
                    // Still unfinished: the whole piece went into the carry.
                    self.carry_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(Error::BadFramePayload),
            }
        }
        if simdutf8::basic::from_utf8(rest).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &rest[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Error::BadFramePayload),
        }
    }

    /// Ends the message: fails with [`Error::BadFramePayload`] if it stops inside a
    /// character. The validator is then ready for the next message either way.
    ///
    /// ```
    /// let mut v = rbeast::proto::utf8::Utf8Validator::new();
    /// v.feed(&[0xE2, 0x82]).unwrap();
    /// assert!(v.finish().is_err());
    /// assert!(v.finish().is_ok());
    /// ```
    pub fn finish(&mut self) -> Result<(), Error> {
        let complete = self.carry_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(Error::BadFramePayload)
        }
    }

    /// Forgets any carried bytes: the next piece starts a new message.
    ///
    /// ```
    /// let mut v = rbeast::proto::utf8::Utf8Validator::new();
    /// v.feed(&[0xF0]).unwrap();
    /// v.reset();
    /// assert!(v.is_boundary());
    /// ```
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }
}

/// Checks a whole text (a close reason, an unfragmented message) at once.
///
/// ```
/// use rbeast::proto::utf8::validate;
/// assert!(validate("κόσμε".as_bytes()).is_ok());
/// assert!(validate(&[0xC0, 0xAF]).is_err()); // overlong '/'
/// ```
#[inline]
pub fn validate(bytes: &[u8]) -> Result<(), Error> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| Error::BadFramePayload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// True when `bytes` can begin some valid UTF-8 text (std as the reference).
    fn valid_prefix(bytes: &[u8]) -> bool {
        match core::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    /// Feeds `pieces` in turn; returns the index of the piece that failed, or `None` when
    /// all were accepted, and the verdict of `finish`.
    fn run(pieces: &[&[u8]]) -> (Option<usize>, Result<(), Error>) {
        let mut v = Utf8Validator::new();
        for (i, p) in pieces.iter().enumerate() {
            if v.feed(p).is_err() {
                return (Some(i), Err(Error::BadFramePayload));
            }
        }
        (None, v.finish())
    }

    /// What `run` must answer, from the reference: the first piece after which the
    /// concatenation stops being a valid prefix.
    fn expected(pieces: &[&[u8]]) -> (Option<usize>, Result<(), Error>) {
        let mut all = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            all.extend_from_slice(p);
            if !valid_prefix(&all) {
                return (Some(i), Err(Error::BadFramePayload));
            }
        }
        let end = core::str::from_utf8(&all)
            .map(|_| ())
            .map_err(|_| Error::BadFramePayload);
        (None, end)
    }

    fn check_all_splits(bytes: &[u8]) {
        assert_eq!(run(&[bytes]), expected(&[bytes]), "{bytes:02x?}");
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&singles), expected(&singles), "{bytes:02x?} bytewise");
        for cut in 0..=bytes.len() {
            let two = [&bytes[..cut], &bytes[cut..]];
            assert_eq!(run(&two), expected(&two), "{bytes:02x?} cut {cut}");
        }
    }

    #[test]
    fn every_scalar_class_at_every_split() {
        for s in [
            "", "a", "\u{7F}", "\u{80}", "é", "\u{7FF}", "\u{800}", "€", "\u{D7FF}",
        ] {
            check_all_splits(s.as_bytes());
        }
        for s in [
            "\u{E000}",
            "\u{FFFF}",
            "\u{10000}",
            "𝄞",
            "\u{10FFFF}",
            "aé€𝄞z",
        ] {
            check_all_splits(s.as_bytes());
            let (none, ok) = run(&[s.as_bytes()]);
            assert_eq!((none, ok), (None, Ok(())));
        }
    }

    #[test]
    fn invalid_forms_fail_at_the_first_bad_byte() {
        let cases: &[&[u8]] = &[
            &[0x80], // stray continuation
            &[0xBF],
            &[0xC0, 0x80], // overlong 2-byte lead: bad alone
            &[0xC1, 0xBF],
            &[0xE0, 0x80, 0x80], // overlong 3-byte: bad at second byte
            &[0xE0, 0x9F, 0xBF],
            &[0xF0, 0x80, 0x80, 0x80], // overlong 4-byte
            &[0xF0, 0x8F, 0xBF, 0xBF],
            &[0xED, 0xA0, 0x80], // surrogates
            &[0xED, 0xBF, 0xBF],
            &[0xF4, 0x90, 0x80, 0x80], // above U+10FFFF
            &[0xF5, 0x80, 0x80, 0x80],
            &[0xFF],
            &[0xFE],
            &[0xF8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
            &[0xC3, 0x41],                   // lead then ASCII
            &[0xE2, 0x82, 0x41],
            &[0xF0, 0x9F, 0x98, 0x41],
        ];
        for bytes in cases {
            check_all_splits(bytes);
            assert!(run(&[bytes]).0.is_some(), "{bytes:02x?}");
            // Fed bytewise, the error comes at the first byte after which no valid text
            // can follow.
            let bad_at = (1..=bytes.len()).find(|&n| !valid_prefix(&bytes[..n]));
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(run(&singles).0.map(|i| i + 1), bad_at, "{bytes:02x?}");
        }
        // Exactly where the fail-fast points are:
        assert_eq!(run(&[&[0xC0]]).0, Some(0));
        assert_eq!(run(&[&[0xED], &[0xA0]]).0, Some(1));
        assert_eq!(run(&[&[0xF4], &[0x90]]).0, Some(1));
        assert_eq!(run(&[&[0xE0], &[0x80]]).0, Some(1));
    }

    #[test]
    fn truncated_at_message_end() {
        for bytes in [
            &[0xC3][..],
            &[0xE2, 0x82],
            &[0xF0, 0x9F, 0x98],
            &[b'a', 0xF4, 0x8F],
        ] {
            let (at, end) = run(&[bytes]);
            assert_eq!(
                (at, end),
                (None, Err(Error::BadFramePayload)),
                "{bytes:02x?}"
            );
        }
    }

    /// Autobahn 6.4.1–6.4.4: "κόσμε" then a code point above U+10FFFF; the frame carrying
    /// the first bad byte must fail, even when the bad byte ends it.
    #[test]
    fn autobahn_fail_fast_vectors() {
        fn hex(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        let a = [
            hex("cebae1bdb9cf83cebcceb5"),
            hex("f4908080"),
            hex("656469746564"),
        ];
        let b = [
            hex("cebae1bdb9cf83cebcceb5f4"),
            hex("90"),
            hex("8080656469746564"),
        ];
        for parts in [&a, &b] {
            let pieces: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            assert_eq!(run(&pieces).0, Some(1));
            // Chopped into single bytes (6.4.3/6.4.4 send them in 1-byte chops).
            let all: Vec<u8> = parts.concat();
            let singles: Vec<&[u8]> = all.chunks(1).collect();
            // The byte that fails is the 0x90 after 0xF4 (F4 90 is above U+10FFFF).
            let f4 = all.iter().position(|&b| b == 0xF4);
            assert_eq!(run(&singles).0, f4.map(|i| i + 1));
        }
        // 6.3.x: a surrogate in the middle of a message.
        let s = hex("cebae1bdb9cf83cebcceb5eda080656469746564");
        check_all_splits(&s);
        assert_eq!(run(&[&s[..12], &s[12..]]).0, Some(1));
        assert!(validate(&s).is_err());
        assert!(validate(&a[0]).is_ok());
    }

    /// Exhaustive over short strings of interesting bytes, every 2-way split and bytewise.
    #[test]
    fn exhaustive_short_strings() {
        const ALPHABET: [u8; 16] = [
            0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xF0,
            0xF4, 0xF5,
        ];
        let mut buf = [0u8; 4];
        for len in 0..=4u32 {
            for n in 0..16usize.pow(len) {
                let mut x = n;
                for b in buf.iter_mut().take(len as usize) {
                    *b = ALPHABET[x % 16];
                    x /= 16;
                }
                check_all_splits(&buf[..len as usize]);
            }
        }
    }

    /// Long random mixtures with random chunkings, against the reference.
    #[test]
    fn random_texts_and_chunkings() {
        let mut rng = SmallRng::seed_from_u64(0x5EED);
        let samples = ["a", "é", "€", "𝄞", "\u{10FFFF}", "\u{7FF}", "\u{E000}"];
        for round in 0..400 {
            let mut text = Vec::new();
            while text.len() < rng.random_range(0..300) {
                text.extend_from_slice(samples[rng.random_range(0..samples.len())].as_bytes());
            }
            if round % 2 == 1 && !text.is_empty() {
                let at = rng.random_range(0..text.len());
                text[at] = rng.random();
            }
            let mut pieces = Vec::new();
            let mut rest = &text[..];
            while !rest.is_empty() {
                let k = rng.random_range(0..=rest.len().min(40));
                pieces.push(&rest[..k]);
                rest = &rest[k..];
            }
            assert_eq!(run(&pieces), expected(&pieces), "round {round}");
        }
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xF0, 0x9F]).unwrap();
        assert!(v.finish().is_err());
        v.feed(b"ok").unwrap();
        assert!(v.finish().is_ok());
        v.feed(&[0xC3]).unwrap();
        v.reset();
        v.feed(b"x").unwrap();
        assert!(v.finish().is_ok());
    }
}
