//! Checks on a DICOM file made before dicom-rs reads or decodes it, so that malformed input is
//! refused with a clear error instead of reaching code that would allocate or index by it.
//!
//! - [`check_declared_lengths`]: dicom-parser allocates every value from the length its header
//!   declares and zero-fills it before reading (`try_reserve_exact` + `resize`): a 10 kB file
//!   declaring a 4 GiB element made the process touch 4 GiB before the read failed. The check
//!   walks the element headers as the parser reads them (the file meta group in explicit VR
//!   little endian, then the data set in its transfer syntax: implicit VR little endian, explicit
//!   VR little or big endian, deflated) and refuses a defined length larger than the bytes that
//!   follow it in the file (in the inflated stream for a deflated data set). Sequences (VR SQ,
//!   from the dictionary in implicit VR) and undefined-length elements are walked into, as the
//!   parser treats them; encapsulated pixel data fragments are skipped by their lengths. It only
//!   ever refuses a length that cannot be satisfied: where the structure is not what it expects
//!   (no `DICM`, an unknown transfer syntax, a truncated header) it stops and leaves the error to
//!   dicom-rs. It also refuses an element of a binary VR (`US`, `FL`, `FD`, `AT`, ...) whose
//!   length is not a whole number of its values: dicom-parser reads the whole values only and
//!   then takes the next header from the middle of the value, where a garbage length escaped
//!   the check (fuzz finding `dicom-fl-length-6`).
//! - [`check_rle_fragment`]: dicom-transfer-syntax-registry's RLE Lossless decoder indexes by the
//!   segment table of each fragment and by each segment's PackBits output, and panics out of
//!   bounds when a segment decodes to fewer than rows × columns bytes (fuzz finding
//!   `dicom-rle-panic-415998cb`), or on a fragment shorter than its segment table. The check
//!   validates the 64-byte RLE header (segment count 1..=15 and at least one segment per byte
//!   of a sample, offsets from 64, non-decreasing, within the fragment) and runs each segment's
//!   PackBits decoding as a count only, before the decoder sees the fragment.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use crate::{Error, Result};

/// The transfer syntaxes whose data set (after the file meta group) is deflated.
const DEFLATED: [&str; 2] = ["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"];
const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Checks every declared value length of the DICOM file `path` against the bytes that follow it
/// (see the module docs). An error names the file, the element and both numbers.
pub fn check_declared_lengths(path: &Path) -> Result<()> {
    let file = crate::io::open_file(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut w = Walk { src: Src::File(BufReader::new(file)), pos: 0, end: len, inflated: false };
    let io = |e: std::io::Error| Error::io(path, e);
    let bad = |m: String| Error::format(path, format!("cannot read the DICOM file: {m}"));
    let Some((ts, data_set_start)) = walk_meta(&mut w).map_err(io)?.map_err(bad)? else {
        return Ok(());
    };
    let encoding = if ts == IMPLICIT_VR_LITTLE_ENDIAN {
        Encoding { explicit: false, big: false }
    } else if ts == EXPLICIT_VR_BIG_ENDIAN {
        Encoding { explicit: true, big: true }
    } else {
        // every other transfer syntax of the standard is explicit VR little endian
        Encoding { explicit: true, big: false }
    };
    if DEFLATED.contains(&ts.as_str()) {
        // the inflated length first (counted, not kept), then the walk over a second inflation
        let inflate = || -> Result<flate2::read::DeflateDecoder<BufReader<File>>> {
            let mut f = crate::io::open_file(path)?;
            f.seek(SeekFrom::Start(data_set_start)).map_err(io)?;
            Ok(flate2::read::DeflateDecoder::new(BufReader::new(f)))
        };
        let mut counter = inflate()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        // an inflate error ends the stream where dicom-rs's reads end too
        while let Ok(n @ 1..) = counter.read(&mut buf) {
            total += n as u64;
        }
        w = Walk { src: Src::Inflate(Box::new(inflate()?)), pos: 0, end: total, inflated: true };
    }
    walk_data_set(&mut w, encoding).map_err(io)?.map_err(bad)
}

enum Src {
    File(BufReader<File>),
    Inflate(Box<flate2::read::DeflateDecoder<BufReader<File>>>),
}

/// A position in the file (or the inflated data set) and where it ends.
struct Walk {
    src: Src,
    pos: u64,
    end: u64,
    inflated: bool,
}

impl Walk {
    /// Fills `buf`; `false` when the input ends first.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.end - self.pos < buf.len() as u64 {
            return Ok(false);
        }
        let r = match &mut self.src {
            Src::File(f) => f.read_exact(buf),
            Src::Inflate(d) => d.read_exact(buf),
        };
        match r {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        match &mut self.src {
            Src::File(f) => f.seek_relative(n as i64)?,
            Src::Inflate(d) => {
                std::io::copy(&mut d.by_ref().take(n), &mut std::io::sink())?;
            }
        }
        self.pos += n;
        Ok(())
    }

    /// Refuses a value of `len` bytes that does not fit in what is left.
    fn check(&self, tag: Tag, len: u32) -> std::result::Result<(), String> {
        let left = self.end - self.pos;
        if u64::from(len) <= left {
            return Ok(());
        }
        let what = if self.inflated { "the inflated data set has" } else { "the file has" };
        Err(format!(
            "element ({:04X},{:04X}) declares a value of {len} bytes at byte {}, but {what} only {left} \
             more: damaged or truncated",
            tag.0, tag.1, self.pos
        ))
    }
}

#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    big: bool,
}

impl Encoding {
    fn u16(self, b: [u8; 2]) -> u16 {
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// The value length field of an explicit VR header is 16 bits for these VRs (PS3.5 7.1.2, as
/// dicom-encoding reads it), 32 bits after 2 reserved bytes for all others.
fn short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

type Walked<T> = std::io::Result<std::result::Result<T, String>>;

/// The preamble and file meta group, as dicom-object reads them: the transfer syntax UID and
/// where the data set starts; `None` where dicom-object would fail on its own.
fn walk_meta(w: &mut Walk) -> Walked<Option<(String, u64)>> {
    let mut head = [0u8; 132];
    let n = match &mut w.src {
        Src::File(f) => {
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            f.seek(SeekFrom::Start(0))?;
            n
        }
        Src::Inflate(_) => return Ok(Ok(None)),
    };
    let start = if n >= 132 && &head[128..132] == b"DICM" {
        132
    } else if n >= 4 && &head[..4] == b"DICM" {
        4
    } else {
        return Ok(Ok(None));
    };
    w.skip(start)?;
    let le = Encoding { explicit: true, big: false };
    let Some((tag, _vr, len, _)) = header(w, le)? else { return Ok(Ok(None)) };
    if tag != Tag(0x0002, 0x0000) || len != 4 {
        return Ok(Ok(None));
    }
    let mut v = [0u8; 4];
    if !w.fill(&mut v)? {
        return Ok(Ok(None));
    }
    let group_length = u64::from(u32::from_le_bytes(v));
    let mut read = 0u64;
    let mut ts = None;
    while read < group_length {
        let Some((tag, _vr, len, header_bytes)) = header(w, le)? else { return Ok(Ok(None)) };
        if len == UNDEFINED {
            return Ok(Ok(None));
        }
        if let Err(m) = w.check(tag, len) {
            return Ok(Err(m));
        }
        if tag == Tag(0x0002, 0x0010) && len <= 64 {
            let mut uid = vec![0u8; len as usize];
            if !w.fill(&mut uid)? {
                return Ok(Ok(None));
            }
            let uid = String::from_utf8_lossy(&uid);
            ts = Some(uid.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string());
        } else {
            w.skip(u64::from(len))?;
        }
        read += header_bytes + u64::from(len);
    }
    Ok(Ok(ts.map(|t| (t, w.pos))))
}

/// One header: tag, VR, length and its size in bytes; `None` at the end of the input. Item tags
/// (group FFFE) have no VR.
fn header(w: &mut Walk, e: Encoding) -> std::io::Result<Option<(Tag, VR, u32, u64)>> {
    let Some(tag) = read_tag(w, e)? else { return Ok(None) };
    if tag.0 == 0xFFFE || !e.explicit {
        let Some(len) = read_u32(w, e)? else { return Ok(None) };
        let vr = if tag.0 == 0xFFFE {
            VR::UN
        } else if tag == Tag(0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
            VR::OW
        } else {
            StandardDataDictionary.by_tag(tag).map(|entry| entry.vr().relaxed()).unwrap_or(VR::UN)
        };
        return Ok(Some((tag, vr, len, 8)));
    }
    let mut v = [0u8; 2];
    if !w.fill(&mut v)? {
        return Ok(None);
    }
    let vr = VR::from_binary(v).unwrap_or(VR::UN);
    if short_length(vr) {
        if !w.fill(&mut v)? {
            return Ok(None);
        }
        Ok(Some((tag, vr, u32::from(e.u16(v)), 8)))
    } else {
        // 2 reserved bytes, then the 32-bit length
        if !w.fill(&mut v)? {
            return Ok(None);
        }
        let Some(len) = read_u32(w, e)? else { return Ok(None) };
        Ok(Some((tag, vr, len, 12)))
    }
}

/// A tag (group, element) in the encoding's byte order; `None` at the end of the input.
fn read_tag(w: &mut Walk, e: Encoding) -> std::io::Result<Option<Tag>> {
    let mut t = [0u8; 4];
    if !w.fill(&mut t)? {
        return Ok(None);
    }
    Ok(Some(Tag(e.u16([t[0], t[1]]), e.u16([t[2], t[3]]))))
}

/// A 32-bit value in the encoding's byte order; `None` at the end of the input.
fn read_u32(w: &mut Walk, e: Encoding) -> std::io::Result<Option<u32>> {
    let mut l = [0u8; 4];
    if !w.fill(&mut l)? {
        return Ok(None);
    }
    Ok(Some(e.u32(l)))
}

/// An open sequence or item, as dicom-parser's `DataSetReader` stacks them: where its value
/// started and its defined length (or [`UNDEFINED`]), and whether it belongs to encapsulated
/// pixel data (whose items are read as bytes, not walked into).
struct Open {
    item: bool,
    pixel: bool,
    len: u32,
    base: u64,
}

/// The data set, token by token to its end, in the order and with the state dicom-parser's
/// `DataSetReader` reads it (dicom-parser 0.10 `dataset/read.rs`): every length the reader would
/// allocate a value by is checked against what is left, and the walk stops wherever the reader
/// would stop with an error of its own. Mirroring its states matters: an item header at the
/// data set level (outside any sequence, or inside an item) is read by it as a plain element of
/// VR UN and its value skipped, not walked into; a walk that entered it lost step with the
/// reader and missed the garbage length the reader then allocated 2.1 GB by (fuzz finding
/// `dicom-oom-00d3cb77`).
fn walk_data_set(w: &mut Walk, e: Encoding) -> Walked<()> {
    let mut open: Vec<Open> = Vec::new();
    // expecting an item header (or a delimiter) next, as the reader's `in_sequence`
    let mut in_sequence = false;
    // whether a defined-length sequence or item may have just ended
    let mut ends_pending = false;
    // the header just read was encapsulated pixel data: its item headers follow
    let mut pixel_start = false;
    // the next pixel data item is the basic offset table
    let mut offset_table = false;
    loop {
        if ends_pending {
            match open.last() {
                Some(o) if o.len != UNDEFINED => {
                    let end = o.base + u64::from(o.len);
                    if end == w.pos {
                        in_sequence = o.item;
                        open.pop();
                        continue;
                    }
                    if end < w.pos {
                        // the reader fails: a value ran past the end of its sequence or item
                        return Ok(Ok(()));
                    }
                }
                _ => {}
            }
            ends_pending = false;
        }
        if in_sequence || pixel_start {
            let Some((tag, len)) = item_header(w, e)? else { return Ok(Ok(())) };
            let first_of_pixels = std::mem::take(&mut pixel_start);
            if first_of_pixels {
                open.push(Open { item: false, pixel: true, len: UNDEFINED, base: w.pos });
            }
            match tag {
                Tag(0xFFFE, 0xE000) => {
                    let Some(pixel) = open.last().map(|o| o.pixel) else { return Ok(Ok(())) };
                    in_sequence = false;
                    open.push(Open { item: true, pixel, len, base: w.pos });
                    if len == 0 {
                        ends_pending = true;
                    } else if first_of_pixels {
                        offset_table = true;
                    }
                }
                Tag(0xFFFE, 0xE00D) if !first_of_pixels => {
                    open.pop();
                    in_sequence = true;
                    ends_pending = true;
                }
                Tag(0xFFFE, 0xE0DD) => {
                    open.pop();
                    in_sequence = false;
                    ends_pending = !first_of_pixels;
                }
                // the reader fails on any other tag here
                _ => return Ok(Ok(())),
            }
            continue;
        }
        if let Some(o) = open.last().filter(|o| o.item && o.pixel) {
            // a pixel data fragment (or the offset table), read as bytes
            if o.len == UNDEFINED {
                return Ok(Ok(()));
            }
            if let Err(m) = w.check(Tag(0xFFFE, 0xE000), o.len) {
                return Ok(Err(m));
            }
            if std::mem::take(&mut offset_table) && o.len % 4 != 0 {
                // the reader reads whole 4-byte offsets only and loses step with the rest
                return Ok(Err(format!(
                    "the basic offset table of the pixel data declares {} bytes at byte {}, not a \
                     whole number of 4-byte offsets: damaged",
                    o.len, w.pos
                )));
            }
            w.skip(u64::from(o.len))?;
            ends_pending = true;
            continue;
        }
        let Some((tag, vr, len, _)) = header(w, e)? else { return Ok(Ok(())) };
        // a sequence: VR SQ, or any undefined length but encapsulated pixel data's (read as a
        // sequence, its VR discarded); an item delimiter never has VR SQ, so taking it after
        // these is the reader's order
        let pixels = tag == Tag(0x7FE0, 0x0010) && len == UNDEFINED;
        if vr == VR::SQ || (len == UNDEFINED && !pixels && tag != Tag(0xFFFE, 0xE00D)) {
            in_sequence = true;
            open.push(Open { item: false, pixel: false, len, base: w.pos });
            ends_pending = len == 0;
            continue;
        }
        if tag == Tag(0xFFFE, 0xE00D) {
            // an item delimiter outside any sequence is ignored
            if !open.is_empty() {
                in_sequence = true;
                open.pop();
                ends_pending = true;
            }
            continue;
        }
        if pixels {
            pixel_start = true;
            continue;
        }
        // a primitive value: allocated by its length and read (an item or sequence delimiter
        // header here too, with VR UN)
        if let Err(m) = w.check(tag, len) {
            return Ok(Err(m));
        }
        if let Some(size) = value_size(vr).filter(|&size| len % size != 0) {
            return Ok(Err(format!(
                "element ({:04X},{:04X}) of VR {vr} declares {len} bytes at byte {}, not a whole \
                 number of its {size}-byte values: damaged",
                tag.0, tag.1, w.pos
            )));
        }
        w.skip(u64::from(len))?;
        ends_pending = true;
    }
}

/// An item or delimiter header (tag and length, no VR in any transfer syntax), as the reader
/// decodes one where it expects an item; `None` at the end of the input.
fn item_header(w: &mut Walk, e: Encoding) -> std::io::Result<Option<(Tag, u32)>> {
    let Some(tag) = read_tag(w, e)? else { return Ok(None) };
    Ok(read_u32(w, e)?.map(|len| (tag, len)))
}

/// The size of one value of a binary VR. dicom-parser reads `len / size` values of such an
/// element but counts `len` bytes as read, so a length that is not a multiple of the size (an
/// `FL` of 6 bytes) leaves it reading the next header from the middle of a value: a garbage
/// length it then allocated and zero-filled (fuzz finding `dicom-fl-length-6`, 765 MB and
/// 1.7–21 s from a 7.8 kB file). The standard allows only whole values.
fn value_size(vr: VR) -> Option<u32> {
    use VR::*;
    match vr {
        US | SS | OW => Some(2),
        UL | SL | FL | OF | OL | AT => Some(4),
        FD | OD | SV | UV | OV => Some(8),
        _ => None,
    }
}

/// Checks one RLE Lossless fragment (one frame) of a single-sample image of `rows` × `cols`
/// pixels and `bytes_per_sample` (1 or 2) bytes a sample, before the decoder reads it: the
/// 64-byte header, and that each segment the decoder uses decodes to at least rows × cols bytes.
pub fn check_rle_fragment(
    fragment: &[u8],
    rows: usize,
    cols: usize,
    bytes_per_sample: usize,
) -> std::result::Result<(), String> {
    if fragment.len() < 64 {
        return Err(format!("{} bytes, shorter than the 64-byte RLE header", fragment.len()));
    }
    let word =
        |k: usize| u32::from_le_bytes([fragment[k], fragment[k + 1], fragment[k + 2], fragment[k + 3]]);
    let segments = word(0) as usize;
    if !(bytes_per_sample..=15).contains(&segments) {
        return Err(format!(
            "the RLE header declares {segments} segments ({bytes_per_sample}..=15 for {} bits a sample)",
            8 * bytes_per_sample
        ));
    }
    let mut offsets: Vec<usize> = (0..segments).map(|k| word(4 + 4 * k) as usize).collect();
    offsets.push(fragment.len());
    if offsets[0] != 64 {
        return Err(format!(
            "the first RLE segment starts at byte {}, not after the 64-byte header",
            offsets[0]
        ));
    }
    if let Some(k) = (0..segments).find(|&k| offsets[k + 1] < offsets[k]) {
        let what = if k + 1 == segments {
            format!("past the {}-byte fragment", fragment.len())
        } else {
            format!("before segment {} (at {})", k + 1, offsets[k + 1])
        };
        return Err(format!("RLE segment {k} starts at byte {}, {what}", offsets[k]));
    }
    let need = rows * cols;
    for k in 0..bytes_per_sample {
        let out = packbits_len(&fragment[offsets[k]..offsets[k + 1]])
            .map_err(|m| format!("RLE segment {k}: {m}"))?;
        if out < need {
            return Err(format!(
                "RLE segment {k} decodes to {out} bytes, but {cols} × {rows} pixels need {need}"
            ));
        }
    }
    Ok(())
}

/// The number of bytes the decoder's PackBits reader produces from `seg` (the same loop, counting
/// instead of writing), or its error.
fn packbits_len(seg: &[u8]) -> std::result::Result<usize, String> {
    let (mut pos, mut consumed, mut out) = (0usize, 0usize, 0usize);
    while consumed < seg.len() {
        let Some(&h) = seg.get(pos) else {
            return Err("the PackBits data end inside a run".into());
        };
        pos += 1;
        consumed += 1;
        let h = h as i8;
        if (-127..=-1).contains(&h) {
            if pos >= seg.len() {
                return Err("the PackBits data end inside a run".into());
            }
            pos += 1;
            consumed += 1;
            out += (1 - h as isize) as usize;
        } else if h >= 0 {
            let n = h as usize + 1;
            let copied = n.min(seg.len() - pos);
            pos += copied;
            out += copied;
            consumed += n;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of `n` bytes: runs of 128 replicated bytes, then the rest.
    fn packbits(n: usize) -> Vec<u8> {
        let mut s = Vec::new();
        let mut left = n;
        while left >= 2 {
            let run = left.min(128);
            s.extend_from_slice(&[(1 - run as isize) as i8 as u8, 7]);
            left -= run;
        }
        if left == 1 {
            s.extend_from_slice(&[0, 7]);
        }
        s
    }

    fn fragment(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut at = 64u32;
        for (k, s) in segments.iter().enumerate() {
            f[4 + 4 * k..8 + 4 * k].copy_from_slice(&at.to_le_bytes());
            at += s.len() as u32;
        }
        for s in segments {
            f.extend_from_slice(s);
        }
        f
    }

    #[test]
    fn packbits_length_counts_runs_as_the_decoder_does() {
        assert_eq!(packbits_len(&packbits(1000)), Ok(1000));
        assert_eq!(packbits_len(&[2, 1, 2, 3]), Ok(3));
        // a literal run cut short copies what is there (the decoder's io::copy), a replicate
        // run without its byte is an error
        assert_eq!(packbits_len(&[5, 1, 2]), Ok(2));
        assert!(packbits_len(&[0xFE]).is_err());
        assert_eq!(packbits_len(&[0x80, 0x80]), Ok(0)); // -128: no-op
    }

    #[test]
    fn rle_fragments_are_checked_before_the_decoder() {
        let good = fragment(&[packbits(12 * 10), packbits(12 * 10)]);
        assert_eq!(check_rle_fragment(&good, 10, 12, 2), Ok(()));
        assert_eq!(check_rle_fragment(&fragment(&[packbits(120)]), 10, 12, 1), Ok(()));
        // the fuzz finding's class: a segment that decodes to fewer than rows × cols bytes
        let short = fragment(&[packbits(119)]);
        let e = check_rle_fragment(&short, 10, 12, 1).unwrap_err();
        assert!(e.contains("decodes to 119 bytes") && e.contains("need 120"), "{e}");
        // 16 bits a sample need two segments
        assert!(check_rle_fragment(&fragment(&[packbits(120)]), 10, 12, 2)
            .unwrap_err()
            .contains("1 segments"));
        // a fragment shorter than the header, a huge segment count, offsets out of the fragment
        assert!(check_rle_fragment(&[1, 0, 0, 0], 1, 1, 1).unwrap_err().contains("64-byte"));
        let mut f = good.clone();
        f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_rle_fragment(&f, 10, 12, 2).unwrap_err().contains("4294967295 segments"));
        let mut f = good.clone();
        let past = f.len() as u32 + 1;
        f[8..12].copy_from_slice(&past.to_le_bytes());
        assert!(
            check_rle_fragment(&f, 10, 12, 2).unwrap_err().contains("past the"),
            "{:?}",
            check_rle_fragment(&f, 10, 12, 2)
        );
        let mut f = good;
        f[4..8].copy_from_slice(&60u32.to_le_bytes());
        assert!(check_rle_fragment(&f, 10, 12, 2).unwrap_err().contains("not after the 64-byte header"));
    }
}
