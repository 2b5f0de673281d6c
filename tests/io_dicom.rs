//! DICOM series in (src/io/dicom.rs), checked against pydicom, nibabel.nicom and dicom2nifti
//! (scripts/check_dicom.py): pydicom's bundled real files (CT and MR slices in four transfer
//! syntaxes, a real 5-slice CT series, a real multi-frame RT Dose), series that pydicom writes
//! here (shuffled file order, oblique, per-file rescale, an enhanced multi-frame file with
//! per-frame positions and rescale), and the errors: mixed series, missing slices, unequal
//! spacing, duplicates, sizes, compressed syntaxes we cannot decode, truncated and lying headers,
//! non-DICOM files in the folder. Every reference comes from python3; without pydicom the tests
//! skip (fail under CI, where .ci/run installs it). Nothing needs the network.

use std::path::{Path, PathBuf};
use std::process::Command;

use ffvol::io::dicom::{read_dicom_dir, read_dicom_files, read_dicom_list};
use ffvol::io::volume::{load_volume, Volume};
use ffvol::io::write_nifti_f32;

mod common;
use common::{reader_from, scratch};

const PIP: &str = "pydicom nibabel numpy dicom2nifti";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_dicom.py")
}

fn py(args: &[&str]) -> String {
    let o = Command::new("python3").arg(script()).args(args).output().expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "check_dicom.py {args:?}:\n{text}");
    text
}

/// pydicom's bundled test files, or None (skipped) without pydicom.
fn testdata(what: &str) -> Option<PathBuf> {
    if !(reader_from("pydicom", PIP, what) && reader_from("nibabel", PIP, what)) {
        return None;
    }
    Some(PathBuf::from(py(&["testdata"]).trim()))
}

/// Writes each volume as NIfTI and compares it with pydicom's reading of its source (and
/// nibabel's and dicom2nifti's where they apply), all in one python3 run.
fn compare(pairs: &[(&Volume, &Path)], dir: &Path) -> String {
    let mut args = vec!["compare".to_string()];
    for (i, (v, src)) in pairs.iter().enumerate() {
        let out = dir.join(format!("ffvol{i}.nii"));
        write_nifti_f32(&out, &v.data, v.dims, v.world_from_voxel).unwrap();
        args.push(out.display().to_string());
        args.push(src.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = py(&args);
    eprintln!("{text}");
    text
}

/// Writes the test series `kinds` (scripts/check_dicom.py make) into `dir/KIND`.
fn make(dir: &Path, kinds: &[&str]) {
    py(&[&["make", dir.to_str().unwrap()][..], kinds].concat());
}

fn err(r: ffvol::Result<Volume>) -> String {
    match r {
        Ok(v) => panic!("expected an error, read a {:?} volume", v.dims),
        Err(e) => e.to_string(),
    }
}

#[test]
fn real_ct_and_mr_slices_match_pydicom() {
    let Some(td) = testdata("reading pydicom's CT and MR files") else { return };
    let dir = scratch("slices");
    let ct = td.join("CT_small.dcm");
    let v = read_dicom_files(&[ct.clone()], &ct).unwrap();
    assert_eq!(v.dims, [128, 128, 1]);
    // Stored 128..2191 (pydicom's pixel_array), RescaleIntercept −1024: Hounsfield units.
    let (lo, hi) = v.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    assert_eq!((lo, hi), (-896.0, 1167.0));
    let mr = read_dicom_files(&[td.join("MR_small.dcm")], &td).unwrap();
    compare(&[(&v, &ct), (&mr, &td.join("MR_small.dcm"))], &dir);
    // The same MR image in three more transfer syntaxes decodes to the same values.
    for other in ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"] {
        let o = read_dicom_files(&[td.join(other)], &td).unwrap();
        assert_eq!(o.data, mr.data, "{other}");
        assert_eq!(o.world_from_voxel, mr.world_from_voxel, "{other}");
    }
}

#[test]
fn a_real_ct_series_in_a_folder_matches_pydicom_and_dicom2nifti() {
    let Some(td) = testdata("reading pydicom's 5-slice CT series") else { return };
    let dir = scratch("ct5");
    // Copied under shuffled names, with a DICOMDIR and a hidden file beside them (both skipped).
    let src = td.join("dicomdirtests/98892001/CT5N");
    let series = dir.join("series");
    std::fs::create_dir_all(&series).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for (i, p) in names.iter().enumerate() {
        std::fs::copy(p, series.join(format!("slice{}", (i * 3) % 5))).unwrap();
    }
    std::fs::copy(td.join("dicomdirtests/DICOMDIR"), series.join("DICOMDIR")).unwrap();
    std::fs::write(series.join(".DS_Store"), b"x").unwrap();
    let v = load_volume(&series).unwrap();
    assert_eq!(v.dims, [16, 16, 5]);
    // Axial, positions 8.7625 down to −1.2375 in 2.5 mm steps: sorted ascending along +z.
    let a = v.world_from_voxel;
    assert!((a[2][2] - 2.5).abs() < 1e-9 && (a[2][3] + 1.2375).abs() < 1e-9, "{a:?}");
    assert!((a[0][0] + 0.488281).abs() < 1e-9 && (a[1][1] + 0.488281).abs() < 1e-9, "{a:?}");
    assert!((a[0][3] - 72.199997).abs() < 1e-9 && (a[1][3] - 143.0).abs() < 1e-9, "{a:?}");
    let text = compare(&[(&v, &src)], &dir);
    assert!(text.contains("ok dicom2nifti") || !common::python_has("dicom2nifti"), "{text}");
    // The same series as a list file gives the same volume.
    let list = dir.join("series.txt");
    let lines: Vec<String> = (0..5).map(|i| format!("series/slice{i}")).collect();
    std::fs::write(&list, format!("# CT5N\n{}\n", lines.join("\n"))).unwrap();
    let l = load_volume(&list).unwrap();
    assert_eq!((l.data, l.world_from_voxel), (v.data, v.world_from_voxel));
}

#[test]
fn jpeg_lossless_and_rle_slices_decode_to_the_uncompressed_values() {
    let Some(td) = testdata("compressed DICOM") else { return };
    if !reader_from("gdcm", PIP, "JPEG Lossless DICOM (written by gdcm, a dicom2nifti dependency)") {
        return;
    }
    let dir = scratch("compressed");
    make(&dir, &["compressed"]);
    let plain = read_dicom_dir(&td.join("dicomdirtests/98892001/CT5N")).unwrap();
    let packed = read_dicom_dir(&dir.join("compressed")).unwrap();
    assert_eq!(packed.dims, [16, 16, 5]);
    assert_eq!(packed.data, plain.data);
    assert_eq!(packed.world_from_voxel, plain.world_from_voxel);
}

#[test]
fn a_real_multi_frame_rt_dose_matches_pydicom() {
    let Some(td) = testdata("reading pydicom's multi-frame RT Dose") else { return };
    let dir = scratch("rtdose");
    let p = td.join("rtdose.dcm");
    let v = load_volume(&p).unwrap();
    assert_eq!(v.dims, [10, 10, 15]);
    compare(&[(&v, &p)], &dir);
    // The same dose in explicit VR big endian (32-bit samples; dicom-rs swaps OW words only).
    let o = load_volume(&td.join("rtdose_expb.dcm")).unwrap();
    assert_eq!((&o.data, o.world_from_voxel), (&v.data, v.world_from_voxel));
}

#[test]
fn written_series_match_pydicom_and_nibabel() {
    let Some(_) = testdata("series written by pydicom") else { return };
    let dir = scratch("written");
    make(&dir, &["shuffled", "oblique", "rescale", "multiframe"]);
    let mut read = Vec::new();
    for kind in ["shuffled", "oblique", "rescale"] {
        let d = dir.join(kind);
        let v = read_dicom_dir(&d).unwrap();
        assert_eq!(v.dims, [10, 12, 7], "{kind}");
        read.push((v, d));
    }
    let enhanced = dir.join("multiframe/enhanced.dcm");
    let v = load_volume(&enhanced).unwrap();
    assert_eq!(v.dims, [10, 12, 7]);
    read.push((v, enhanced));
    let pairs: Vec<(&Volume, &Path)> = read.iter().map(|(v, p)| (v, p.as_path())).collect();
    let text = compare(&pairs, &dir);
    assert_eq!(text.matches("ok in-plane affine = nibabel.nicom's").count(), 3, "{text}");
    assert!(text.contains("ok affine = nibabel MultiframeWrapper's"), "{text}");
}

#[test]
fn bad_series_are_errors_that_say_what_is_wrong() {
    let Some(td) = testdata("errors on bad series") else { return };
    let dir = scratch("bad");
    make(&dir, &["missing", "unequal", "duplicate", "mixed", "sizes", "lying", "notdicom"]);
    let e = err(read_dicom_dir(&&dir.join("missing")));
    assert!(
        e.contains("1 slice(s) missing between IM0002")
            && e.contains("5.0000 mm apart, the other slices 2.5000 mm"),
        "{e}"
    );
    let e = err(read_dicom_dir(&&dir.join("unequal")));
    assert!(e.contains("unequal slice spacing between") && e.contains("IM0004"), "{e}");
    let e = err(read_dicom_dir(&&dir.join("duplicate")));
    assert!(e.contains("are at one position") && e.contains("several volumes in one series"), "{e}");
    let e = err(read_dicom_dir(&&dir.join("mixed")));
    assert!(
        e.contains("the files hold 2 series") && e.contains("5 file(s)") && e.contains("2 file(s)"),
        "{e}"
    );
    let e = err(read_dicom_dir(&&dir.join("sizes")));
    assert!(e.contains("IM0004 is 10 × 10 pixels but IM0000 is 10 × 12"), "{e}");
    let e = err(read_dicom_dir(&&dir.join("lying")));
    assert!(e.contains("IM0000") && e.contains("truncated?"), "{e}");
    let e = err(read_dicom_dir(&&dir.join("notdicom")));
    assert!(
        e.contains("1 of the folder's 8 files is not") && e.contains("notes.txt (not a DICOM file"),
        "{e}"
    );
    // Real series from pydicom's data: several series and orientations in one folder, a gap.
    let e = err(read_dicom_dir(&td.join("dicomdirtests/98892003/MR2")));
    assert!(e.contains("the files hold 3 series") && e.contains("\"FAST LOCALIZER\": 1 file(s)"), "{e}");
    let e = err(read_dicom_dir(&td.join("dicomdirtests/98892003/MR700")));
    assert!(e.contains("share an orientation"), "{e}");
    let e = err(read_dicom_dir(&td.join("dicomdirtests/77654033/CT2")));
    assert!(e.contains("slice(s) missing between") || e.contains("unequal slice spacing"), "{e}");
    let e = err(read_dicom_dir(&td.join("dicomdirtests/77654033")));
    assert!(e.contains("no files in the folder; it has 4 subfolder(s)"), "{e}");
    // Compressed syntaxes without a pure-Rust decoder are named.
    let ls = td.join("MR_small_jpeg_ls_lossless.dcm");
    let e = err(read_dicom_files(&[ls.clone()], &ls));
    assert!(e.contains("1.2.840.10008.1.2.4.80 (JPEG-LS Lossless") && e.contains("not supported"), "{e}");
    let j2k = td.join("MR_small_jp2klossless.dcm");
    let e = err(read_dicom_files(&[j2k.clone()], &j2k));
    assert!(e.contains("1.2.840.10008.1.2.4.90 (JPEG 2000") && e.contains("not supported"), "{e}");
    // A truncated file, a colour image, a non-image object, a list naming a missing file.
    let t = td.join("MR_truncated.dcm");
    let e = err(read_dicom_files(&[t.clone()], &t));
    assert!(e.starts_with(&t.display().to_string()), "{e}");
    let rgb = td.join("SC_rgb_small_odd.dcm");
    let e = err(read_dicom_files(&[rgb.clone()], &rgb));
    assert!(e.contains("a colour image (3 samples per pixel"), "{e}");
    let list = dir.join("l.txt");
    std::fs::write(&list, "nowhere.dcm\n").unwrap();
    let e = err(read_dicom_list(&list));
    assert!(e.contains("nowhere.dcm"), "{e}");
    // A single slice is a valid series but too thin for a volume fit.
    let e = err(load_volume(&td.join("CT_small.dcm")));
    assert!(e.contains("[128, 128, 1] volume is too small"), "{e}");
}

#[test]
fn fit_volume_reads_a_dicom_folder_and_writes_its_affine() {
    let Some(td) = testdata("fit volume on a DICOM folder") else { return };
    let dir = scratch("fit");
    let src = td.join("dicomdirtests/98892001/CT5N");
    let run = dir.join("run");
    let o = Command::new(common::ffvol_exe())
        .args(["fit", "volume", "--volume", src.to_str().unwrap(), "--output", run.to_str().unwrap()])
        .args(["--steps", "5", "--depth", "2", "--width", "16", "--features", "16", "--threads", "1"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("[16, 16, 5]"), "{text}");
    // The fit is written on the input grid with the series' affine.
    let v = load_volume(&src).unwrap();
    let (_, dims, affine) = ffvol::io::read_nifti_f32(&run.join("fit.nii.gz")).unwrap();
    assert_eq!(dims, v.dims);
    for (r, w) in affine.iter().zip(&v.world_from_voxel) {
        for (a, b) in r.iter().zip(w) {
            assert!((a - b).abs() < 1e-4, "{affine:?} vs {:?}", v.world_from_voxel);
        }
    }
}

/// A seed file of fuzz/seeds/dicom (pydicom's test files, in the repository).
fn seed(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/dicom").join(name)).unwrap()
}

/// The pre-scan of declared lengths (io::dicom_check) at the boundary: MR_small.dcm's Pixel Data
/// (explicit VR little endian, OW) declaring exactly the bytes left passes it (and fails later,
/// in dicom-rs, for want of the elements it then swallows), one byte more is refused by it,
/// naming the element, the length and what is left. The unmodified seeds pass.
#[test]
fn a_declared_length_past_the_end_of_the_file_is_refused_by_the_prescan() {
    use ffvol::io::dicom_check::check_declared_lengths;
    let dir = scratch("prescan");
    for name in ["MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm"] {
        let p = dir.join(name);
        std::fs::write(&p, seed(name)).unwrap();
        check_declared_lengths(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut b = seed("MR_small.dcm");
    let at = b.windows(6).position(|w| w == b"\xe0\x7f\x10\x00OW").unwrap();
    let left = (b.len() - (at + 12)) as u32;
    let p = dir.join("pixel-length.dcm");
    b[at + 8..at + 12].copy_from_slice(&left.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    check_declared_lengths(&p).unwrap();
    b[at + 8..at + 12].copy_from_slice(&(left + 1).to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let e = check_declared_lengths(&p).unwrap_err().to_string();
    let want = format!(
        "element (7FE0,0010) declares a value of {} bytes at byte {}, but the file has only {left} more",
        left + 1,
        at + 12
    );
    assert!(e.contains("pixel-length.dcm") && e.contains(&want), "{e}");
    // the reader refuses it with the same words (pass 1, before dicom-rs reads the file)
    let e = err(read_dicom_files(&[p.clone()], &p));
    assert!(e.contains(&want), "{e}");
    // a length in the file meta group (Media Storage SOP Class UID, UI: 16-bit length)
    let mut b = seed("MR_small.dcm");
    let at = b.windows(6).position(|w| w == b"\x02\x00\x02\x00UI").unwrap();
    b[at + 6..at + 8].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(&p, &b[..300]).unwrap();
    let e = check_declared_lengths(&p).unwrap_err().to_string();
    assert!(e.contains("element (0002,0002) declares a value of 65535 bytes"), "{e}");
}

/// A binary value whose length is not a whole number of its values (fuzz findings: three
/// timeouts, MR_small_RLE.dcm with a VR changed, `tests/corpus/volume/fuzz-dicom-timeout-*.dcm`):
/// dicom-parser reads `len / 4` floats of an `FL` of 6 bytes but counts 6 as read, takes the
/// next header from inside the value and zero-filled its garbage length (765 MB, 1.7–21 s in
/// the release build). The pre-scan refuses it, naming the element, the VR and the length;
/// the same element with its own VR (TM, 6 bytes) passes.
#[test]
fn a_binary_value_of_a_partial_length_is_refused_by_the_prescan() {
    use ffvol::io::dicom_check::check_declared_lengths;
    let dir = scratch("partial-value");
    let good = seed("MR_small_RLE.dcm");
    for (find, vr, want) in [
        (&b"\x08\x00\x13\x00TM"[..], b"FL", "element (0008,0013) of VR FL declares 6 bytes at byte "),
        (&b"\x18\x00\x50\x00DS"[..], b"AT", "element (0018,0050) of VR AT declares 6 bytes at byte "),
    ] {
        let mut b = good.clone();
        let at = b.windows(6).position(|w| w == find).unwrap();
        b[at + 4..at + 6].copy_from_slice(vr);
        let p = dir.join("partial.dcm");
        std::fs::write(&p, &b).unwrap();
        let e = check_declared_lengths(&p).unwrap_err().to_string();
        assert!(e.contains("partial.dcm") && e.contains(want) && e.contains("not a whole number"), "{e}");
        let e = err(read_dicom_files(&[p.clone()], &p));
        assert!(e.contains(want), "{e}");
    }
    for name in [
        "fuzz-dicom-timeout-29ef1c17.dcm",
        "fuzz-dicom-timeout-8b4c0fb8.dcm",
        "fuzz-dicom-timeout-1af244f0.dcm",
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/volume").join(name);
        let e = check_declared_lengths(&p).unwrap_err().to_string();
        assert!(e.contains("not a whole number"), "{name}: {e}");
    }
}

/// RLE Lossless fragments are checked before dicom-rs's decoder, which indexed out of bounds on
/// a short segment (fuzz finding 415998cb; the firewall caught it, now the check stops it with
/// the numbers) and sliced by the header's segment count. MR_small_RLE.dcm (64 × 64, 16 bits:
/// two segments) mutated three ways; without the check each is stopped by the firewall ("the
/// decoder failed on malformed data"), which this test refuses.
#[test]
fn malformed_rle_fragments_are_refused_before_the_decoder() {
    let dir = scratch("rle");
    let good = seed("MR_small_RLE.dcm");
    let p = dir.join("MR_small_RLE.dcm");
    std::fs::write(&p, &good).unwrap();
    let v = read_dicom_files(&[p.clone()], &p).unwrap();
    assert_eq!(v.dims, [64, 64, 1]);
    // the fragment: after the Pixel Data header (12 bytes), the offset table item (8 + 4) and the
    // fragment's item header (8)
    let pd = good.windows(6).position(|w| w == b"\xe0\x7f\x10\x00OB").unwrap();
    let f = pd + 12 + 12 + 8;
    assert_eq!(&good[f..f + 8], &[2, 0, 0, 0, 64, 0, 0, 0], "the RLE header of the seed");
    let frag_len = u32::from_le_bytes(good[f - 4..f].try_into().unwrap()) as usize;
    let case = |name: &str, edit: &dyn Fn(&mut Vec<u8>), want: &str| {
        let mut b = good.clone();
        edit(&mut b);
        let p = dir.join(name);
        std::fs::write(&p, &b).unwrap();
        let e = err(read_dicom_files(&[p.clone()], &p));
        assert!(e.contains(name) && e.contains("RLE frame 1: ") && e.contains(want), "{name}: {e}");
        assert!(!e.contains("the decoder failed"), "{name}: the firewall, not the check, stopped it: {e}");
    };
    case(
        "segments-max.dcm",
        &|b| b[f..f + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
        "4294967295 segments",
    );
    case(
        "offset-past-end.dcm",
        &|b| b[f + 8..f + 12].copy_from_slice(&(frag_len as u32 + 9).to_le_bytes()),
        "past the",
    );
    // the second segment cut to its first 10 bytes: the rest of the fragment becomes zero
    // literal runs of one byte each, so it decodes to far fewer than 64 × 64 bytes
    case(
        "short-segment.dcm",
        &|b| {
            let s1 = u32::from_le_bytes(b[f + 8..f + 12].try_into().unwrap()) as usize;
            for x in &mut b[f + s1 + 10..f + frag_len] {
                *x = 0x80; // PackBits no-op
            }
        },
        "RLE segment 1 decodes to",
    );
    // the fuzz finding's fragment is also cut short of its declared length (dicom-rs reads a
    // fragment with io::copy and took what was there): the length pre-scan refuses it first
    let finding =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/volume/fuzz-dicom-rle-panic-415998cb.dcm");
    let e = err(read_dicom_files(&[finding.clone()], &finding));
    assert!(e.contains("element (FFFE,E000) declares a value of 6108 bytes at byte 1536, but the file has only 4602 more"), "{e}");
}

/// The pre-scan never refuses a file dicom-rs reads: over every file of pydicom's test data
/// (about 80 files: implicit and explicit VR, big endian, deflated, encapsulated, nested and
/// undefined-length sequences, private tags, broken files), each file it refuses is one that
/// dicom-object cannot read either.
#[test]
fn the_prescan_refuses_only_files_dicom_rs_cannot_read() {
    let Some(td) = testdata("the DICOM length pre-scan against dicom-object") else { return };
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&td).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    assert!(files.len() > 50, "{} files in {}", files.len(), td.display());
    let (mut passed, mut refused) = (0, 0);
    for f in &files {
        match ffvol::io::dicom_check::check_declared_lengths(f) {
            Ok(()) => passed += 1,
            Err(e) => {
                refused += 1;
                let full = dicom_object::OpenFileOptions::new().open_file(f);
                assert!(
                    full.is_err(),
                    "{}: refused by the pre-scan ({e}) but dicom-object reads it",
                    f.display()
                );
            }
        }
    }
    println!("{passed} files passed the pre-scan, {refused} refused (none that dicom-object reads)");
    assert!(passed > 50, "{passed} passed");
}

/// An item header at the data set level, outside any sequence (fuzz finding 00d3cb77: a
/// zero-length Pixel Data element followed by what were its fragments): dicom-parser reads it as
/// a plain element of VR UN and skips its value, where the pre-scan used to walk into it, lost
/// step with the reader, and missed the garbage length (0x80808080) the reader then allocated
/// 2.1 GB by. The pre-scan now follows the reader's states: it refuses the finding, naming
/// that length, and passes a valid file whose top-level item holds bytes that would look like a
/// huge length to a walk that entered it (dicom-object reads that file too).
#[test]
fn the_prescan_reads_a_top_level_item_as_the_parser_does() {
    use ffvol::io::dicom_check::check_declared_lengths;
    let finding =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/volume/fuzz-dicom-oom-00d3cb77.dcm");
    let e = check_declared_lengths(&finding).unwrap_err().to_string();
    assert!(e.contains("declares a value of 2155905152 bytes"), "{e}");
    let e = err(read_dicom_files(&[finding.clone()], &finding));
    assert!(e.contains("fuzz-dicom-oom-00d3cb77.dcm") && e.contains("2155905152"), "{e}");

    // MR_small.dcm with a top-level item inserted before Pixel Data; inside it, bytes that read
    // as an OB element of 2^31 bytes
    let good = seed("MR_small.dcm");
    let pd = good.windows(6).position(|w| w == b"\xe0\x7f\x10\x00OW").unwrap();
    let mut inner = Vec::new();
    inner.extend_from_slice(b"\x09\x00\x10\x00OB\x00\x00");
    inner.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    let mut b = good[..pd].to_vec();
    b.extend_from_slice(b"\xfe\xff\x00\xe0");
    b.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    b.extend_from_slice(&inner);
    b.extend_from_slice(&good[pd..]);
    let p = scratch("top-level-item").join("item.dcm");
    std::fs::write(&p, &b).unwrap();
    dicom_object::OpenFileOptions::new().open_file(&p).expect("dicom-object reads the file");
    check_declared_lengths(&p).expect("the pre-scan passes what dicom-object reads");
}
