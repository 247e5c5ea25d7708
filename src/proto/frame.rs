//! RFC 6455 §5 frame headers: the opcode, the header codec and the validating reader.
//!
//! [`FrameHeader::encode`] writes a header in its shortest form into a 14-byte array.
//! [`FrameReader`] turns received bytes into validated headers. It applies the checks of
//! Beast's `parse_fh` in the same order, so that a frame breaking several rules is rejected
//! with the same [`Error`] (and therefore the same close code) as Beast would send, and it
//! keeps the message state those checks need (continuation expected, message size so far,
//! opcode and compression of the current message).

use crate::{Error, Role};

/// The largest possible frame header: 2 fixed bytes, an 8-byte length and a 4-byte mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode defined by RFC 6455 (the reserved values are not representable).
///
/// ```
/// use rbeast::proto::frame::Opcode;
/// assert_eq!(Opcode::try_from(0x9), Ok(Opcode::Ping));
/// assert!(Opcode::Ping.is_control());
/// assert_eq!(Opcode::try_from(0x3), Err(rbeast::Error::BadOpcode));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// A continuation frame of a fragmented message (0x0).
    Continuation = 0x0,
    /// The first frame of a text message (0x1).
    Text = 0x1,
    /// The first frame of a binary message (0x2).
    Binary = 0x2,
    /// A close frame (0x8).
    Close = 0x8,
    /// A ping frame (0x9).
    Ping = 0x9,
    /// A pong frame (0xA).
    Pong = 0xA,
}

impl Opcode {
    /// True for close, ping and pong: frames that may not be fragmented and carry at most
    /// 125 bytes.
    ///
    /// ```
    /// use rbeast::proto::frame::Opcode;
    /// assert!(Opcode::Close.is_control());
    /// assert!(!Opcode::Continuation.is_control());
    /// ```
    #[inline]
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// The 4-bit value of this opcode on the wire.
    ///
    /// ```
    /// use rbeast::proto::frame::Opcode;
    /// assert_eq!(Opcode::Pong.as_u8(), 0xA);
    /// ```
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Opcode {
    type Error = Error;

    /// Converts a 4-bit opcode; the reserved values 0x3–0x7 and 0xB–0xF, and anything above
    /// 0xF, are [`Error::BadOpcode`].
    #[inline]
    fn try_from(v: u8) -> Result<Self, Error> {
        Ok(match v {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return Err(Error::BadOpcode),
        })
    }
}

/// The fields of one frame header.
///
/// `mask` holds the 4 key bytes in wire order when the MASK bit is set. `len` is the payload
/// length; a header that is sent must have `len < 2^63` (RFC 6455 §5.2).
///
/// ```
/// use rbeast::proto::frame::{FrameHeader, Opcode};
/// let h = FrameHeader::new(true, Opcode::Binary, 300, Some([1, 2, 3, 4]));
/// let mut out = [0u8; 14];
/// let n = h.encode(&mut out);
/// assert_eq!(&out[..n], &[0x82, 0xFE, 0x01, 0x2C, 1, 2, 3, 4]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// RSV1 (the permessage-deflate "compressed" bit on the first frame of a message).
    pub rsv1: bool,
    /// RSV2 (no extension we support defines it).
    pub rsv2: bool,
    /// RSV3 (no extension we support defines it).
    pub rsv3: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub len: u64,
}

impl FrameHeader {
    /// A header with the reserved bits clear.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameHeader, Opcode};
    /// let h = FrameHeader::new(false, Opcode::Text, 5, None);
    /// assert!(!h.fin && !h.rsv1 && h.mask.is_none());
    /// ```
    #[inline]
    pub const fn new(fin: bool, opcode: Opcode, len: u64, mask: Option<[u8; 4]>) -> Self {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            len,
        }
    }

    /// The number of bytes [`encode`](Self::encode) writes for this header (2 to 14).
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameHeader, Opcode};
    /// assert_eq!(FrameHeader::new(true, Opcode::Text, 125, None).encoded_len(), 2);
    /// assert_eq!(FrameHeader::new(true, Opcode::Text, 126, None).encoded_len(), 4);
    /// assert_eq!(FrameHeader::new(true, Opcode::Text, 65536, Some([1; 4])).encoded_len(), 14);
    /// ```
    #[inline]
    pub const fn encoded_len(&self) -> usize {
        let ext = if self.len <= 125 {
            0
        } else if self.len <= 0xFFFF {
            2
        } else {
            8
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out` using the shortest length form and returns the number of
    /// bytes written. The bytes of `out` past that number are left as they were.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameHeader, Opcode};
    /// let mut out = [0u8; 14];
    /// let n = FrameHeader::new(true, Opcode::Ping, 0, None).encode(&mut out);
    /// assert_eq!(&out[..n], &[0x89, 0x00]);
    /// ```
    #[inline]
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = if self.len <= 125 {
            out[1] = mask_bit | self.len as u8;
            2
        } else if self.len <= 0xFFFF {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            10
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }
}

/// The total header length announced by the first two header bytes.
#[inline]
fn announced_len(b1: u8) -> usize {
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// The rules a [`FrameReader`] applies to received headers.
///
/// ```
/// use rbeast::proto::frame::ReadRules;
/// use rbeast::Role;
/// let rules = ReadRules::new(Role::Server);
/// assert_eq!(rules.read_message_max, 16 * 1024 * 1024);
/// assert!(!rules.pmd_active);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadRules {
    /// Our role: a server requires masked frames, a client requires unmasked frames.
    pub role: Role,
    /// permessage-deflate was negotiated, so RSV1 may mark the first frame of a data
    /// message as compressed.
    pub pmd_active: bool,
    /// The largest message accepted, in bytes; 0 means no limit. For uncompressed messages
    /// it is checked from the frame headers; for compressed messages the inflater checks it
    /// (see [`ReadRules::exceeds_max`]).
    pub read_message_max: u64,
}

impl ReadRules {
    /// Beast's default `read_message_max`: 16 MiB.
    pub const DEFAULT_READ_MESSAGE_MAX: u64 = 16 * 1024 * 1024;

    /// Rules for `role` with permessage-deflate off and Beast's default message limit.
    ///
    /// ```
    /// use rbeast::proto::frame::ReadRules;
    /// assert_eq!(ReadRules::new(rbeast::Role::Client).role, rbeast::Role::Client);
    /// ```
    pub const fn new(role: Role) -> Self {
        ReadRules {
            role,
            pmd_active: false,
            read_message_max: Self::DEFAULT_READ_MESSAGE_MAX,
        }
    }

    /// True when a message of `so_far` bytes growing by `more` bytes would pass
    /// `read_message_max` (never when the limit is 0). Overflow-safe.
    ///
    /// ```
    /// use rbeast::proto::frame::ReadRules;
    /// let mut rules = ReadRules::new(rbeast::Role::Server);
    /// rules.read_message_max = 10;
    /// assert!(!rules.exceeds_max(4, 6));
    /// assert!(rules.exceeds_max(4, 7));
    /// assert!(rules.exceeds_max(u64::MAX, u64::MAX));
    /// ```
    #[inline]
    pub const fn exceeds_max(&self, so_far: u64, more: u64) -> bool {
        let max = self.read_message_max;
        max != 0 && (so_far > max || more > max - so_far)
    }
}

/// Validates received frame headers and tracks the state of the message they belong to.
///
/// Two ways to feed it:
///
/// * [`decode`](Self::decode) looks at the start of the caller's receive buffer and, once a
///   whole header is there, returns it with its length (the caller then consumes those bytes);
///   until then it answers `Ok(None)` and the caller keeps the bytes and reads more.
/// * [`push`](Self::push) copies header bytes into the reader's own 14-byte buffer, so the
///   caller can drop what it has handed over; it never takes payload bytes.
///
/// Use one of them per reader. The checks run only once the whole header (2 to 14 bytes) is
/// available, as in Beast, and in Beast's order:
///
/// 1. by opcode — text/binary: continuation expected ([`Error::BadDataFrame`]), RSV2/RSV3 or
///    RSV1 without permessage-deflate ([`Error::BadReservedBits`]); continuation: no message
///    in progress ([`Error::BadContinuation`]), any RSV bit ([`Error::BadReservedBits`]);
///    otherwise: reserved opcode ([`Error::BadOpcode`]), FIN clear
///    ([`Error::BadControlFragment`]), length over 125 ([`Error::BadControlSize`]), any RSV
///    bit ([`Error::BadReservedBits`]);
/// 2. the mask: unmasked at a server ([`Error::BadUnmaskedFrame`]), masked at a client
///    ([`Error::BadMaskedFrame`]);
/// 3. the length form: 16-bit length under 126, 64-bit length under 65536 or with its top
///    bit set ([`Error::BadSize`]);
/// 4. data frames: the message size so far plus this length overflows `u64`, or, for an
///    uncompressed message, passes `read_message_max` ([`Error::MessageTooBig`]).
///
/// Beast also waits for a control frame's whole payload before it accepts the header; since
/// no check depends on that payload, the reader returns the header at once and the caller
/// collects the (at most 125) payload bytes. A rejected header leaves the message state as
/// it was, but the connection is failed: Beast reads no further frames, and the reader
/// should not be fed again before [`reset`](Self::reset).
///
/// ```
/// use rbeast::proto::frame::{FrameReader, Opcode, ReadRules};
/// use rbeast::{Error, Role};
/// let mut r = FrameReader::new(ReadRules::new(Role::Client));
/// // An unfragmented text frame "Hi", then a continuation with no message in progress.
/// let (h, n) = r.decode(&[0x81, 0x02, b'H', b'i']).unwrap().unwrap();
/// assert_eq!((h.opcode, h.len, n), (Opcode::Text, 2, 2));
/// assert_eq!(r.decode(&[0x80, 0x00]), Err(Error::BadContinuation));
/// // Not enough bytes yet:
/// assert_eq!(r.decode(&[0x82]), Ok(None));
/// ```
#[derive(Debug, Clone)]
pub struct FrameReader {
    rules: ReadRules,
    /// Header bytes collected by `push`.
    buf: [u8; MAX_HEADER_LEN],
    buffered: u8,
    /// A continuation frame is expected (the current data message is not finished).
    cont: bool,
    /// Payload bytes announced by the headers of the current data message so far.
    msg_size: u64,
    /// Opcode (text or binary) of the current or last data message.
    msg_opcode: Option<Opcode>,
    /// The current or last data message is compressed (RSV1 on its first frame).
    msg_compressed: bool,
}

impl FrameReader {
    /// A reader with no message in progress.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let r = FrameReader::new(ReadRules::new(rbeast::Role::Server));
    /// assert!(!r.continuation_expected());
    /// ```
    pub const fn new(rules: ReadRules) -> Self {
        FrameReader {
            rules,
            buf: [0; MAX_HEADER_LEN],
            buffered: 0,
            cont: false,
            msg_size: 0,
            msg_opcode: None,
            msg_compressed: false,
        }
    }

    /// The rules in force.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let r = FrameReader::new(ReadRules::new(rbeast::Role::Server));
    /// assert_eq!(r.rules().role, rbeast::Role::Server);
    /// ```
    pub const fn rules(&self) -> &ReadRules {
        &self.rules
    }

    /// Replaces the rules (for instance once permessage-deflate has been negotiated, or when
    /// `read_message_max` changes); the message state is kept.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Server));
    /// let mut rules = *r.rules();
    /// rules.pmd_active = true;
    /// r.set_rules(rules);
    /// assert!(r.rules().pmd_active);
    /// ```
    pub fn set_rules(&mut self, rules: ReadRules) {
        self.rules = rules;
    }

    /// Forgets the message state and any buffered header bytes (a new connection).
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Client));
    /// r.decode(&[0x01, 0x00]).unwrap();
    /// assert!(r.continuation_expected());
    /// r.reset();
    /// assert!(!r.continuation_expected());
    /// ```
    pub fn reset(&mut self) {
        *self = FrameReader::new(self.rules);
    }

    /// True while a data message is in progress, so the next data frame must be a
    /// continuation (Beast's `rd_cont`).
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Client));
    /// r.decode(&[0x02, 0x00]).unwrap(); // binary, FIN clear
    /// assert!(r.continuation_expected());
    /// ```
    pub const fn continuation_expected(&self) -> bool {
        self.cont
    }

    /// The opcode ([`Opcode::Text`] or [`Opcode::Binary`]) of the current message, or of the
    /// last one when none is in progress; `None` before the first data frame.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, Opcode, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Client));
    /// assert_eq!(r.message_opcode(), None);
    /// r.decode(&[0x81, 0x00]).unwrap();
    /// assert_eq!(r.message_opcode(), Some(Opcode::Text));
    /// ```
    pub const fn message_opcode(&self) -> Option<Opcode> {
        self.msg_opcode
    }

    /// True when the current (or last) message is compressed with permessage-deflate.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let mut rules = ReadRules::new(rbeast::Role::Client);
    /// rules.pmd_active = true;
    /// let mut r = FrameReader::new(rules);
    /// r.decode(&[0xC1, 0x00]).unwrap(); // FIN, RSV1, text
    /// assert!(r.message_compressed());
    /// ```
    pub const fn message_compressed(&self) -> bool {
        self.msg_compressed
    }

    /// The payload bytes announced by the headers of the current (or last) message.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Client));
    /// r.decode(&[0x01, 0x03]).unwrap();
    /// r.decode(&[0x80, 0x04]).unwrap();
    /// assert_eq!(r.message_size(), 7);
    /// ```
    pub const fn message_size(&self) -> u64 {
        self.msg_size
    }

    /// Header bytes held by [`push`](Self::push) while waiting for the rest of a header.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Client));
    /// r.push(&[0x81]).unwrap();
    /// assert_eq!(r.pending(), 1);
    /// ```
    pub const fn pending(&self) -> usize {
        self.buffered as usize
    }

    /// Looks for a whole header at the start of `input`. Returns `Ok(None)` when more bytes
    /// are needed, or the validated header and the number of header bytes to consume (the
    /// payload follows them). Nothing changes in the reader unless a header is returned.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, Opcode, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Server));
    /// let frame = [0x89, 0x80, 1, 2, 3, 4]; // masked empty ping
    /// assert_eq!(r.decode(&frame[..5]), Ok(None));
    /// let (h, n) = r.decode(&frame).unwrap().unwrap();
    /// assert_eq!((h.opcode, h.mask, n), (Opcode::Ping, Some([1, 2, 3, 4]), 6));
    /// ```
    #[inline]
    pub fn decode(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
        if input.len() < 2 {
            return Ok(None);
        }
        let need = announced_len(input[1]);
        match input.get(..need) {
            None => Ok(None),
            Some(raw) => self.accept(raw).map(|h| Some((h, need))),
        }
    }

    /// Takes header bytes from the start of `input` into the reader's own buffer. Returns
    /// how many bytes were taken and, once the header is whole, the validated header (the
    /// bytes after the taken ones are its payload). Never takes more than the header.
    ///
    /// ```
    /// use rbeast::proto::frame::{FrameReader, Opcode, ReadRules};
    /// let mut r = FrameReader::new(ReadRules::new(rbeast::Role::Client));
    /// let frame = [0x82, 0x7E, 0x01, 0x00, 0xAA];
    /// assert_eq!(r.push(&frame[..1]).unwrap(), (1, None));
    /// let (n, h) = r.push(&frame[1..]).unwrap();
    /// assert_eq!((n, h.unwrap().len), (3, 256));
    /// ```
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<FrameHeader>), Error> {
        let mut taken = 0;
        loop {
            let have = self.buffered as usize;
            // Until the second byte is in, only two bytes are known to be needed.
            let need = if have < 2 {
                2
            } else {
                announced_len(self.buf[1])
            };
            let n = (need - have).min(input.len() - taken);
            self.buf[have..have + n].copy_from_slice(&input[taken..taken + n]);
            taken += n;
            let have = have + n;
            self.buffered = have as u8;
            if have < need {
                return Ok((taken, None));
            }
            if have == announced_len(self.buf[1]) {
                self.buffered = 0;
                let raw = self.buf;
                return self.accept(&raw[..have]).map(|h| (taken, Some(h)));
            }
            // Two bytes in, and they announce a longer header: take the rest.
        }
    }

    /// Looks for a whole message at the start of `input`: an unfragmented text or binary
    /// frame that [`accept_whole_short`](Self::accept_whole_short) accepts, with all of its
    /// payload (at most `max_payload` bytes) in `input`. Returns the header and its length,
    /// with the message state advanced as [`decode`](Self::decode) would; `None` (nothing
    /// changed) for anything else, which `decode` then handles.
    #[inline]
    pub(crate) fn decode_whole_message(
        &mut self,
        input: &[u8],
        max_payload: usize,
    ) -> Option<(FrameHeader, usize)> {
        if input.len() < 2 {
            return None;
        }
        let need = announced_len(input[1]);
        let header = self.parse_whole_short(input.get(..need)?)?;
        let len = usize::try_from(header.len).ok()?;
        if len > max_payload || input.len() - need < len {
            return None;
        }
        self.note_whole_message(&header);
        Some((header, need))
    }

    /// The most common header, accepted with fewer tests: an unfragmented text or binary
    /// frame (FIN set, no reserved bit) outside a message, masked as our role requires, with
    /// a 7-bit or a canonical 16-bit length within the message limit. `None` for any other
    /// header, which [`accept`](Self::accept) then checks in full (with the same outcome
    /// for these).
    #[inline]
    fn accept_whole_short(&mut self, raw: &[u8]) -> Option<FrameHeader> {
        let header = self.parse_whole_short(raw)?;
        self.note_whole_message(&header);
        Some(header)
    }

    /// The header [`accept_whole_short`](Self::accept_whole_short) accepts, without
    /// changing the message state.
    #[inline]
    fn parse_whole_short(&self, raw: &[u8]) -> Option<FrameHeader> {
        let (b0, b1) = (raw[0], raw[1]);
        let opcode = match b0 {
            0x81 => Opcode::Text,
            0x82 => Opcode::Binary,
            _ => return None,
        };
        let masked = b1 & 0x80 != 0;
        let (len, key_at) = match b1 & 0x7F {
            127 => return None,
            126 => match raw.get(2..4) {
                Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
                _ => return None,
            },
            short => (u64::from(short), 2),
        };
        if self.cont
            || masked != (self.rules.role == Role::Server)
            || (key_at == 4 && len < 126)
            || self.rules.exceeds_max(0, len)
        {
            return None;
        }
        let mask = match raw.get(key_at..key_at + 4) {
            Some(&[k0, k1, k2, k3]) if masked => Some([k0, k1, k2, k3]),
            _ => None,
        };
        Some(FrameHeader::new(true, opcode, len, mask))
    }

    /// The message state after a whole-message header: a new message, not compressed.
    #[inline]
    fn note_whole_message(&mut self, header: &FrameHeader) {
        self.msg_opcode = Some(header.opcode);
        self.msg_compressed = false;
        self.msg_size = header.len;
    }

    /// Validates a complete header (`raw.len() == announced_len(raw[1])`) and advances the
    /// message state.
    fn accept(&mut self, raw: &[u8]) -> Result<FrameHeader, Error> {
        if let Some(header) = self.accept_whole_short(raw) {
            return Ok(header);
        }
        let (b0, b1) = (raw[0], raw[1]);
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        let rsv2 = b0 & 0x20 != 0;
        let rsv3 = b0 & 0x10 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;

        // 1. Opcode-specific rules.
        let opcode = match b0 & 0x0F {
            0x1 | 0x2 => {
                if self.cont {
                    return Err(Error::BadDataFrame);
                }
                if rsv2 || rsv3 || (rsv1 && !self.rules.pmd_active) {
                    return Err(Error::BadReservedBits);
                }
                if b0 & 0x0F == 0x1 {
                    Opcode::Text
                } else {
                    Opcode::Binary
                }
            }
            0x0 => {
                if !self.cont {
                    return Err(Error::BadContinuation);
                }
                if rsv1 || rsv2 || rsv3 {
                    return Err(Error::BadReservedBits);
                }
                Opcode::Continuation
            }
            op => {
                let opcode = Opcode::try_from(op)?;
                if !fin {
                    return Err(Error::BadControlFragment);
                }
                if len7 > 125 {
                    return Err(Error::BadControlSize);
                }
                if rsv1 || rsv2 || rsv3 {
                    return Err(Error::BadReservedBits);
                }
                opcode
            }
        };

        // 2. Mask direction.
        match self.rules.role {
            Role::Server if !masked => return Err(Error::BadUnmaskedFrame),
            Role::Client if masked => return Err(Error::BadMaskedFrame),
            _ => {}
        }

        // 3. Length, in its canonical form.
        let (len, key_at) = match len7 {
            126 => {
                let len = u16::from_be_bytes([raw[2], raw[3]]);
                if len < 126 {
                    return Err(Error::BadSize);
                }
                (u64::from(len), 4)
            }
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&raw[2..10]);
                let len = u64::from_be_bytes(be);
                if len < 0x1_0000 || len >> 63 != 0 {
                    return Err(Error::BadSize);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            Some([
                raw[key_at],
                raw[key_at + 1],
                raw[key_at + 2],
                raw[key_at + 3],
            ])
        } else {
            None
        };

        // 4. Message size, for data frames.
        if !opcode.is_control() {
            let (so_far, compressed) = if opcode == Opcode::Continuation {
                (self.msg_size, self.msg_compressed)
            } else {
                (0, rsv1)
            };
            let total = so_far.checked_add(len).ok_or(Error::MessageTooBig)?;
            if !compressed && self.rules.exceeds_max(so_far, len) {
                return Err(Error::MessageTooBig);
            }
            if opcode != Opcode::Continuation {
                self.msg_opcode = Some(opcode);
                self.msg_compressed = rsv1;
            }
            self.msg_size = total;
            self.cont = !fin;
        }

        Ok(FrameHeader {
            fin,
            rsv1,
            rsv2,
            rsv3,
            opcode,
            mask,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(role: Role, pmd: bool, max: u64) -> ReadRules {
        ReadRules {
            role,
            pmd_active: pmd,
            read_message_max: max,
        }
    }

    fn reader(role: Role) -> FrameReader {
        FrameReader::new(rules(role, false, 0))
    }

    /// A reader whose current message expects a continuation.
    fn in_message(role: Role, pmd: bool) -> FrameReader {
        let mut r = FrameReader::new(rules(role, pmd, 0));
        let first: &[u8] = match role {
            Role::Client => &[0x01, 0x00],
            Role::Server => &[0x01, 0x80, 0, 0, 0, 0],
        };
        assert!(r.decode(first).unwrap().is_some());
        assert!(r.continuation_expected());
        r
    }

    fn encode(h: &FrameHeader) -> Vec<u8> {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut out);
        out[..n].to_vec()
    }

    #[test]
    fn opcode_conversion() {
        for v in 0..=255u8 {
            let got = Opcode::try_from(v);
            match v {
                0 | 1 | 2 | 8 | 9 | 10 => {
                    let op = got.unwrap();
                    assert_eq!(op.as_u8(), v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                _ => assert_eq!(got, Err(Error::BadOpcode), "{v}"),
            }
        }
    }

    #[test]
    fn encode_uses_the_shortest_form() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (125, &[0x7D]),
            (126, &[0x7E, 0x00, 0x7E]),
            (65535, &[0x7E, 0xFF, 0xFF]),
            (65536, &[0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
            (
                (1 << 63) - 1,
                &[0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
        ];
        for &(len, tail) in cases {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = FrameHeader::new(true, Opcode::Binary, len, mask);
                let bytes = encode(&h);
                assert_eq!(bytes.len(), h.encoded_len());
                assert_eq!(bytes[0], 0x82);
                assert_eq!(bytes[1] & 0x80 != 0, mask.is_some());
                assert_eq!(bytes[1] & 0x7F, tail[0]);
                assert_eq!(&bytes[2..1 + tail.len()], &tail[1..]);
                if let Some(k) = mask {
                    assert_eq!(&bytes[bytes.len() - 4..], &k);
                }
            }
        }
        let mut h = FrameHeader::new(false, Opcode::Continuation, 1, None);
        h.rsv1 = true;
        h.rsv2 = true;
        h.rsv3 = true;
        assert_eq!(encode(&h), [0x70, 0x01]);
    }

    #[test]
    fn encode_decode_round_trip() {
        let lens = [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1];
        for len in lens {
            for (role, mask) in [(Role::Client, None), (Role::Server, Some([1, 0, 0, 0]))] {
                for fin in [false, true] {
                    for pmd in [false, true] {
                        let mut h = FrameHeader::new(fin, Opcode::Text, len, mask);
                        h.rsv1 = pmd;
                        let bytes = encode(&h);
                        let mut r = FrameReader::new(rules(role, pmd, 0));
                        let (got, n) = r.decode(&bytes).unwrap().unwrap();
                        assert_eq!((got, n), (h, bytes.len()));
                        assert_eq!(r.continuation_expected(), !fin);
                        assert_eq!(r.message_size(), len);
                        assert_eq!(r.message_compressed(), pmd);
                    }
                }
            }
        }
    }

    /// Every rejection, one vector each, with the error and the close code Beast sends.
    #[test]
    fn each_rule_has_its_error_and_close_code() {
        use Role::*;
        struct Case {
            name: &'static str,
            role: Role,
            pmd: bool,
            in_msg: bool,
            max: u64,
            bytes: &'static [u8],
            err: Error,
            code: u16,
        }
        let c = |name, role, pmd, in_msg, max, bytes, err, code| Case {
            name,
            role,
            pmd,
            in_msg,
            max,
            bytes,
            err,
            code,
        };
        #[rustfmt::skip]
        let cases = [
            c("reserved opcode 3", Client, false, false, 0, &[0x83, 0x00], Error::BadOpcode, 1002),
            c("reserved opcode 7", Client, false, false, 0, &[0x87, 0x00], Error::BadOpcode, 1002),
            c("reserved opcode B", Client, false, false, 0, &[0x8B, 0x00], Error::BadOpcode, 1002),
            c("reserved opcode F", Server, false, false, 0, &[0x8F, 0x80, 1, 2, 3, 4], Error::BadOpcode, 1002),
            c("text in message", Client, false, true, 0, &[0x81, 0x00], Error::BadDataFrame, 1002),
            c("binary in message", Client, false, true, 0, &[0x02, 0x00], Error::BadDataFrame, 1002),
            c("continuation alone", Client, false, false, 0, &[0x80, 0x00], Error::BadContinuation, 1002),
            c("rsv1 without pmd", Client, false, false, 0, &[0xC1, 0x00], Error::BadReservedBits, 1002),
            c("rsv2 on text", Client, true, false, 0, &[0xA1, 0x00], Error::BadReservedBits, 1002),
            c("rsv3 on binary", Client, true, false, 0, &[0x92, 0x00], Error::BadReservedBits, 1002),
            c("rsv1 on continuation", Client, true, true, 0, &[0xC0, 0x00], Error::BadReservedBits, 1002),
            c("rsv2 on continuation", Client, false, true, 0, &[0xA0, 0x00], Error::BadReservedBits, 1002),
            c("rsv1 on ping", Client, true, false, 0, &[0xC9, 0x00], Error::BadReservedBits, 1002),
            c("rsv3 on close", Client, false, false, 0, &[0x98, 0x00], Error::BadReservedBits, 1002),
            c("fragmented ping", Client, false, false, 0, &[0x09, 0x00], Error::BadControlFragment, 1002),
            c("fragmented close", Client, false, false, 0, &[0x08, 0x00], Error::BadControlFragment, 1002),
            c("pong of 126", Client, false, false, 0, &[0x8A, 0x7E, 0x00, 0x7E], Error::BadControlSize, 1002),
            c("ping of 64-bit", Client, false, false, 0, &[0x89, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0], Error::BadControlSize, 1002),
            c("unmasked at server", Server, false, false, 0, &[0x82, 0x00], Error::BadUnmaskedFrame, 1002),
            c("unmasked ping at server", Server, false, false, 0, &[0x89, 0x00], Error::BadUnmaskedFrame, 1002),
            c("masked at client", Client, false, false, 0, &[0x82, 0x80, 1, 2, 3, 4], Error::BadMaskedFrame, 1002),
            c("16-bit length 125", Client, false, false, 0, &[0x82, 0x7E, 0x00, 0x7D], Error::BadSize, 1002),
            c("16-bit length 0", Client, false, false, 0, &[0x82, 0x7E, 0x00, 0x00], Error::BadSize, 1002),
            c("64-bit length 65535", Client, false, false, 0, &[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF], Error::BadSize, 1002),
            c("64-bit length 0", Client, false, false, 0, &[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0], Error::BadSize, 1002),
            c("64-bit length 2^63", Client, false, false, 0, &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], Error::BadSize, 1002),
            c("64-bit length 2^64-1", Client, false, false, 0, &[0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Error::BadSize, 1002),
            c("over max", Client, false, false, 10, &[0x82, 0x0B], Error::MessageTooBig, 1009),
            c("over max, continuation", Client, false, true, 10, &[0x80, 0x0B], Error::MessageTooBig, 1009),
            c("over max, 64-bit", Server, false, false, 65536, &[0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4], Error::MessageTooBig, 1009),
            // Simultaneous violations: the first in Beast's order wins.
            c("data in message + rsv2", Client, false, true, 0, &[0xA1, 0x00], Error::BadDataFrame, 1002),
            c("data in message + masked", Client, false, true, 0, &[0x82, 0x80, 1, 2, 3, 4], Error::BadDataFrame, 1002),
            c("continuation alone + rsv1", Client, true, false, 0, &[0xC0, 0x00], Error::BadContinuation, 1002),
            c("reserved opcode + fragmented", Client, false, false, 0, &[0x03, 0x7E, 0, 0], Error::BadOpcode, 1002),
            c("fragmented + too long control", Client, false, false, 0, &[0x49, 0x7E, 0, 0], Error::BadControlFragment, 1002),
            c("too long control + rsv1", Client, true, false, 0, &[0xC9, 0x7E, 0, 0], Error::BadControlSize, 1002),
            c("rsv on control + masked at client", Client, false, false, 0, &[0xA9, 0x80, 1, 2, 3, 4], Error::BadReservedBits, 1002),
            c("rsv1 no pmd + unmasked at server", Server, false, false, 0, &[0xC2, 0x00], Error::BadReservedBits, 1002),
            c("unmasked at server + bad size", Server, false, false, 0, &[0x82, 0x7E, 0x00, 0x01], Error::BadUnmaskedFrame, 1002),
            c("bad size + over max", Client, false, false, 1, &[0x82, 0x7E, 0x00, 0x7D], Error::BadSize, 1002),
            c("2^63 + over max", Client, false, false, 1, &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1], Error::BadSize, 1002),
        ];
        for case in cases {
            let mut r = if case.in_msg {
                in_message(case.role, case.pmd)
            } else {
                FrameReader::new(rules(case.role, case.pmd, 0))
            };
            r.set_rules(rules(case.role, case.pmd, case.max));
            let err = r.decode(case.bytes).unwrap_err();
            assert_eq!(err, case.err, "{}", case.name);
            assert_eq!(err.close_code(), Some(case.code), "{}", case.name);
            // Pushing the same bytes one at a time gives the same verdict.
            let mut r2 = if case.in_msg {
                in_message(case.role, case.pmd)
            } else {
                FrameReader::new(rules(case.role, case.pmd, 0))
            };
            r2.set_rules(rules(case.role, case.pmd, case.max));
            let mut got = None;
            for (i, b) in case.bytes.iter().enumerate() {
                match r2.push(std::slice::from_ref(b)) {
                    Ok((1, None)) => assert!(i + 1 < case.bytes.len(), "{}", case.name),
                    Ok(other) => panic!("{}: unexpected {other:?}", case.name),
                    Err(e) => {
                        assert_eq!(i + 1, case.bytes.len(), "{}", case.name);
                        got = Some(e);
                    }
                }
            }
            assert_eq!(got, Some(case.err), "{}", case.name);
        }
    }

    #[test]
    fn accepted_edges() {
        // Control payload of exactly 125; 16-bit 126 and 65535; 64-bit 65536 and 2^63-1.
        let mut r = reader(Role::Client);
        let (h, n) = r.decode(&[0x89, 0x7D]).unwrap().unwrap();
        assert_eq!((h.opcode, h.len, n), (Opcode::Ping, 125, 2));
        for (bytes, len) in [
            (&[0x82, 0x7E, 0x00, 0x7E][..], 126u64),
            (&[0x82, 0x7E, 0xFF, 0xFF][..], 65535),
            (&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0][..], 65536),
            (
                &[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..],
                (1 << 63) - 1,
            ),
        ] {
            let mut r = reader(Role::Client);
            let (h, n) = r.decode(bytes).unwrap().unwrap();
            assert_eq!((h.len, n), (len, bytes.len()));
        }
        // Exactly at the limit is fine.
        let mut r = FrameReader::new(rules(Role::Client, false, 10));
        assert!(r.decode(&[0x02, 0x04]).unwrap().is_some());
        assert!(r.decode(&[0x80, 0x06]).unwrap().is_some());
        assert_eq!(r.message_size(), 10);
        // A new message starts counting from zero.
        assert!(r.decode(&[0x82, 0x0A]).unwrap().is_some());
        assert_eq!(r.message_size(), 10);
    }

    #[test]
    fn a_whole_message_is_decoded_only_when_all_of_it_is_there_and_fits() {
        let key = [1, 2, 3, 4];
        // A masked binary frame of 5 bytes, then a masked 16-bit-length text frame of 200.
        let mut short = vec![0x82, 0x85, 1, 2, 3, 4];
        short.extend_from_slice(b"hello");
        let mut long = vec![0x81, 0xFE, 0x00, 0xC8, 1, 2, 3, 4];
        long.extend_from_slice(&[b'a'; 200]);
        for (frame, len, header_len) in [(&short, 5u64, 6), (&long, 200, 8)] {
            let mut r = reader(Role::Server);
            // Cut anywhere before the end, or with less room than the payload: nothing.
            for cut in 0..frame.len() {
                assert_eq!(r.decode_whole_message(&frame[..cut], usize::MAX), None);
            }
            assert_eq!(r.decode_whole_message(frame, len as usize - 1), None);
            assert_eq!(r.message_opcode(), None, "no state changed");
            let (h, n) = r.decode_whole_message(frame, len as usize).unwrap();
            assert_eq!(
                (h.fin, h.len, h.mask, n),
                (true, len, Some(key), header_len)
            );
            // The state is what `decode` leaves.
            let mut r2 = reader(Role::Server);
            assert_eq!(r2.decode(frame).unwrap(), Some((h, n)));
            assert_eq!(
                (
                    r.message_opcode(),
                    r.message_size(),
                    r.continuation_expected()
                ),
                (
                    r2.message_opcode(),
                    r2.message_size(),
                    r2.continuation_expected()
                )
            );
        }
        // Anything but a whole one-frame message is left to `decode`, state untouched: a
        // first fragment, a control frame, an unmasked frame to a server, a 64-bit length,
        // a reserved bit.
        for frame in [
            &[0x02, 0x80, 1, 2, 3, 4][..],
            &[0x89, 0x80, 1, 2, 3, 4],
            &[0x82, 0x00],
            &[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0],
            &[0xC2, 0x80, 1, 2, 3, 4],
        ] {
            let mut r = reader(Role::Server);
            assert_eq!(r.decode_whole_message(frame, usize::MAX), None);
            let mut fresh = reader(Role::Server);
            assert_eq!(r.decode(frame), fresh.decode(frame));
        }
    }

    #[test]
    fn compressed_messages_are_not_limited_by_headers() {
        let mut r = FrameReader::new(rules(Role::Client, true, 10));
        assert!(r.decode(&[0x41, 0x64]).unwrap().is_some()); // RSV1 text, 100 bytes
        assert!(r.message_compressed());
        assert!(r.decode(&[0x80, 0x64]).unwrap().is_some());
        assert_eq!(r.message_size(), 200);
        // ...but an uncompressed one is.
        assert_eq!(r.decode(&[0x81, 0x64]), Err(Error::MessageTooBig));
    }

    #[test]
    fn message_size_overflow_is_too_big() {
        let mut r = reader(Role::Client);
        let huge = [0x02, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let huge_cont = [0x00, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(r.decode(&huge).unwrap().is_some());
        assert!(r.decode(&huge_cont).unwrap().is_some());
        assert_eq!(r.message_size(), u64::MAX - 1);
        assert_eq!(r.decode(&[0x80, 0x01]).unwrap().unwrap().0.len, 1);
        assert_eq!(r.message_size(), u64::MAX);
        let mut r = reader(Role::Client);
        r.decode(&huge).unwrap();
        r.decode(&huge_cont).unwrap();
        assert_eq!(r.decode(&[0x80, 0x02]), Err(Error::MessageTooBig));
        // With pmd the overflow check still applies.
        let mut r = FrameReader::new(rules(Role::Client, true, 0));
        r.decode(&[0x42, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            .unwrap();
        r.decode(&huge_cont).unwrap();
        assert_eq!(r.decode(&[0x80, 0x02]), Err(Error::MessageTooBig));
    }

    #[test]
    fn message_state_and_interleaved_control_frames() {
        let mut r = FrameReader::new(rules(Role::Client, true, 0));
        r.decode(&[0x42, 0x03]).unwrap(); // RSV1 binary, FIN clear
        assert_eq!(r.message_opcode(), Some(Opcode::Binary));
        assert!(r.message_compressed() && r.continuation_expected());
        // A ping in the middle changes nothing.
        let (h, _) = r.decode(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!((h.opcode, h.len), (Opcode::Ping, 5));
        assert!(r.continuation_expected());
        assert_eq!(r.message_size(), 3);
        let (h, _) = r.decode(&[0x80, 0x02]).unwrap().unwrap();
        assert_eq!(h.opcode, Opcode::Continuation);
        assert!(!h.rsv1);
        assert!(!r.continuation_expected());
        assert!(r.message_compressed());
        assert_eq!(r.message_size(), 5);
        // Next message: uncompressed text.
        r.decode(&[0x81, 0x00]).unwrap();
        assert_eq!(r.message_opcode(), Some(Opcode::Text));
        assert!(!r.message_compressed());
        assert_eq!(r.message_size(), 0);
    }

    /// The verdict of Beast's `parse_fh` on a header, written as plainly as possible: the
    /// checks in Beast's order, from the header bits.
    fn reference(b0: u8, b1: u8, ext: u64, role: Role, pmd: bool, cont: bool) -> Result<(), Error> {
        let fin = b0 & 0x80 != 0;
        let rsv = [b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0];
        let op = b0 & 0xF;
        let len7 = b1 & 0x7F;
        let masked = b1 & 0x80 != 0;
        if op == 1 || op == 2 {
            if cont {
                return Err(Error::BadDataFrame);
            }
            if rsv[1] || rsv[2] || (rsv[0] && !pmd) {
                return Err(Error::BadReservedBits);
            }
        } else if op == 0 {
            if !cont {
                return Err(Error::BadContinuation);
            }
            if rsv.contains(&true) {
                return Err(Error::BadReservedBits);
            }
        } else {
            if (3..=7).contains(&op) || op >= 11 {
                return Err(Error::BadOpcode);
            }
            if !fin {
                return Err(Error::BadControlFragment);
            }
            if len7 > 125 {
                return Err(Error::BadControlSize);
            }
            if rsv.contains(&true) {
                return Err(Error::BadReservedBits);
            }
        }
        if role == Role::Server && !masked {
            return Err(Error::BadUnmaskedFrame);
        }
        if role == Role::Client && masked {
            return Err(Error::BadMaskedFrame);
        }
        if len7 == 126 && ext < 126 {
            return Err(Error::BadSize);
        }
        if len7 == 127 && !(65536..1 << 63).contains(&ext) {
            return Err(Error::BadSize);
        }
        Ok(())
    }

    /// Every first and second header byte, both roles, with and without pmd, with and
    /// without a message in progress, and several extended lengths: the reader's verdict
    /// matches the reference, so the precedence between simultaneous violations is Beast's.
    #[test]
    fn precedence_matches_beast_for_every_header() {
        let exts = [0u64, 125, 126, 65535, 65536, (1 << 63) - 1, 1 << 63];
        let mut checked = 0u32;
        for role in [Role::Client, Role::Server] {
            for pmd in [false, true] {
                for cont in [false, true] {
                    for b0 in 0..=255u8 {
                        for b1 in 0..=255u8 {
                            let ext_list: &[u64] = match b1 & 0x7F {
                                126 | 127 => &exts,
                                _ => &[0],
                            };
                            for &ext in ext_list {
                                let mut bytes = vec![b0, b1];
                                match b1 & 0x7F {
                                    126 => bytes.extend_from_slice(&(ext as u16).to_be_bytes()),
                                    127 => bytes.extend_from_slice(&ext.to_be_bytes()),
                                    _ => {}
                                }
                                if b1 & 0x80 != 0 {
                                    bytes.extend_from_slice(&[5, 6, 7, 8]);
                                }
                                let ext = match b1 & 0x7F {
                                    126 => u64::from(ext as u16),
                                    _ => ext,
                                };
                                let mut r = if cont {
                                    in_message(role, pmd)
                                } else {
                                    FrameReader::new(rules(role, pmd, 0))
                                };
                                let want = reference(b0, b1, ext, role, pmd, cont);
                                let got = r.decode(&bytes).map(|o| {
                                    let (h, n) = o.unwrap();
                                    assert_eq!(n, bytes.len());
                                    assert_eq!(encode(&h)[0], b0);
                                });
                                assert_eq!(
                                    got, want,
                                    "{bytes:02x?} {role:?} pmd={pmd} cont={cont}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 8 * 65536);
    }

    /// A stream of frames split at every byte, and fed one byte at a time, gives the same
    /// headers as the whole buffer; shorter prefixes always ask for more.
    #[test]
    fn split_headers_are_never_misparsed() {
        let frames: Vec<(Role, FrameHeader)> = vec![
            (Role::Client, FrameHeader::new(true, Opcode::Text, 5, None)),
            (
                Role::Client,
                FrameHeader::new(false, Opcode::Binary, 300, None),
            ),
            (
                Role::Client,
                FrameHeader::new(true, Opcode::Ping, 125, None),
            ),
            (
                Role::Client,
                FrameHeader::new(true, Opcode::Binary, 70000, None),
            ),
            (
                Role::Server,
                FrameHeader::new(true, Opcode::Text, 0, Some([1, 2, 3, 4])),
            ),
            (
                Role::Server,
                FrameHeader::new(false, Opcode::Binary, 65535, Some([9; 4])),
            ),
            (
                Role::Server,
                FrameHeader::new(true, Opcode::Binary, (1 << 63) - 1, Some([0xFF; 4])),
            ),
            (
                Role::Server,
                FrameHeader::new(true, Opcode::Close, 2, Some([7; 4])),
            ),
        ];
        for (role, h) in frames {
            let bytes = encode(&h);
            // Prefixes through `decode`.
            for cut in 0..bytes.len() {
                let mut r = reader(role);
                assert_eq!(r.decode(&bytes[..cut]), Ok(None), "{h:?} cut {cut}");
                assert!(!r.continuation_expected());
            }
            // Two pieces through `push`, at every split point, with payload bytes after.
            let mut with_payload = bytes.clone();
            with_payload.extend_from_slice(&[0xEE; 3]);
            for cut in 0..=bytes.len() {
                let mut r = reader(role);
                let (n1, h1) = r.push(&with_payload[..cut]).unwrap();
                assert_eq!(n1, cut);
                assert_eq!(h1, (cut == bytes.len()).then_some(h));
                if h1.is_none() {
                    let (n2, h2) = r.push(&with_payload[cut..]).unwrap();
                    assert_eq!(n2, bytes.len() - cut, "{h:?} cut {cut}");
                    assert_eq!(h2, Some(h));
                }
                assert_eq!(r.pending(), 0);
            }
            // One byte at a time.
            let mut r = reader(role);
            for (i, b) in bytes.iter().enumerate() {
                let (n, got) = r.push(std::slice::from_ref(b)).unwrap();
                assert_eq!(n, 1);
                assert_eq!(got.is_some(), i + 1 == bytes.len());
            }
            // Empty input takes nothing.
            assert_eq!(r.push(&[]), Ok((0, None)));
        }
    }

    #[test]
    fn push_walks_a_stream_of_frames() {
        // Three frames back to back: text "abc" (FIN clear), ping "", continuation "de".
        let stream = [
            0x01, 0x03, b'a', b'b', b'c', 0x89, 0x00, 0x80, 0x02, b'd', b'e',
        ];
        for chunk in 1..=stream.len() {
            let mut r = reader(Role::Client);
            let mut seen = Vec::new();
            let mut payload_left = 0usize;
            for piece in stream.chunks(chunk) {
                let mut p = piece;
                while !p.is_empty() {
                    if payload_left > 0 {
                        let k = payload_left.min(p.len());
                        payload_left -= k;
                        p = &p[k..];
                        continue;
                    }
                    let (n, h) = r.push(p).unwrap();
                    p = &p[n..];
                    if let Some(h) = h {
                        payload_left = h.len as usize;
                        seen.push((h.opcode, h.len));
                    }
                }
            }
            assert_eq!(
                seen,
                [
                    (Opcode::Text, 3),
                    (Opcode::Ping, 0),
                    (Opcode::Continuation, 2)
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_rejected_header_changes_nothing() {
        let mut r = in_message(Role::Client, false);
        r.set_rules(rules(Role::Client, false, 1));
        let before = (
            r.continuation_expected(),
            r.message_size(),
            r.message_opcode(),
        );
        assert_eq!(r.decode(&[0x80, 0x05]), Err(Error::MessageTooBig));
        assert_eq!(r.decode(&[0x81, 0x00]), Err(Error::BadDataFrame));
        let after = (
            r.continuation_expected(),
            r.message_size(),
            r.message_opcode(),
        );
        assert_eq!(before, after);
        assert!(r.decode(&[0x80, 0x01]).unwrap().is_some());
        assert!(!r.continuation_expected());
    }

    #[test]
    fn exceeds_max_is_overflow_safe() {
        let r = rules(Role::Client, false, u64::MAX);
        assert!(!r.exceeds_max(u64::MAX, 0));
        assert!(r.exceeds_max(u64::MAX, 1));
        assert!(!rules(Role::Client, false, 0).exceeds_max(u64::MAX, u64::MAX));
        let r = rules(Role::Client, false, 5);
        assert!(r.exceeds_max(6, 0));
        assert!(!r.exceeds_max(5, 0));
    }
}
