//! report.html in a real browser: headless Chromium (Debian's `chromium`, installed by .ci/run)
//! opens the report of a small occupancy run and of a small volume run, and the comparison page;
//! the test fails on any JavaScript error (the page records it in `<body data-js-error>`, read
//! back with `--dump-dom`), checks the 3D view was drawn, and checks the screenshot is not blank:
//! the viewer's canvas region must hold many distinct colours. Without Chromium the test is
//! skipped, unless CI is set.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn ffvol(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ffvol")).args(args).output().expect("run ffvol");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ffvol {}\n{text}", args.join(" "));
    text
}

/// The Chromium binary, or `None` (skipped) when there is none and CI is not set.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Some(PathBuf::from(name));
        }
    }
    let why = "no chromium on PATH, so report.html is not checked in a browser (apt-get install chromium, as .ci/run does)";
    if common::in_ci() {
        panic!("CI is set but {why}");
    }
    println!("skipped: {why}");
    None
}

/// Headless flags: no GPU, WebGL through SwiftShader (software), no sandbox (CI runs as root).
const FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
];

fn dump_dom(browser: &Path, page: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out = Command::new(browser).args(FLAGS).arg("--dump-dom").arg(&url).output().expect("run chromium");
    assert!(out.status.success(), "chromium --dump-dom: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of the page, decoded: (width, height, RGBA rows).
fn screenshot(browser: &Path, page: &Path, png_path: &Path, size: (u32, u32)) -> (usize, usize, Vec<u8>) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out = Command::new(browser)
        .args(FLAGS)
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium --screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgba: Vec<u8> = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|p| match channels {
            4 => [p[0], p[1], p[2], p[3]],
            3 => [p[0], p[1], p[2], 255],
            _ => [p[0], p[0], p[0], 255],
        })
        .collect();
    (info.width as usize, info.height as usize, rgba)
}

/// Distinct colours in the rectangle [x0, x1) × [y0, y1).
fn distinct_colours(img: &(usize, usize, Vec<u8>), x0: usize, y0: usize, x1: usize, y1: usize) -> usize {
    let (w, h, px) = img;
    let mut set = std::collections::HashSet::new();
    for y in y0..y1.min(*h) {
        for x in x0..x1.min(*w) {
            let i = 4 * (y * w + x);
            set.insert([px[i], px[i + 1], px[i + 2]]);
        }
    }
    set.len()
}

fn attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let body = &dom[dom.find("<body")?..];
    let tag = &body[..body.find('>')?];
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn reports_open_in_chromium_without_errors_and_show_the_mesh_and_slices() {
    let Some(browser) = chromium() else { return };
    let dir = common::scratch("browser");
    let occ = dir.join("bunny");
    let bunny = common::bunny_path().to_string_lossy().into_owned();
    let net = ["--depth", "3", "--width", "48", "--features", "48", "--threads", "2", "--device", "cpu"];
    let mut args =
        vec!["fit", "occupancy", "--mesh", &bunny, "--output", occ.to_str().unwrap(), "--steps", "120"];
    args.extend_from_slice(&["--batch", "4096", "--test-points", "4096", "--resolution", "64"]);
    args.extend_from_slice(&net);
    let text = ffvol(&args);
    assert!(text.contains("report:"), "{text}");
    let report = occ.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") || !html.contains("<script src"), "the report must not load anything");
    assert!(html.contains("id=glb-data") && html.contains("iou_surface"));

    let dom = dump_dom(&browser, &report);
    assert_eq!(attribute(&dom, "data-js-error"), None, "JavaScript error in {}", report.display());
    assert_eq!(attribute(&dom, "data-viewer"), Some("drawn"), "the 3D view was not drawn");
    let img = screenshot(&browser, &report, &dir.join("occupancy.png"), (1100, 1400));
    // the canvas sits below the title, metrics and loss plot: find it as the band of the page
    // with the most distinct colours rather than by a fixed offset
    let (w, h, _) = img;
    let best = (0..h.saturating_sub(200))
        .step_by(100)
        .map(|y| distinct_colours(&img, 0, y, w, y + 200))
        .max()
        .unwrap();
    println!("occupancy report: {best} distinct colours in the richest 200-pixel band");
    assert!(best > 200, "the screenshot looks blank ({best} colours)");
    // the loss plot is there
    assert!(html.contains("<polyline"));

    // a volume run: slices with a slider
    let vol = dir.join("vol");
    let mut args = vec!["fit", "volume", "--output", vol.to_str().unwrap(), "--steps", "30"];
    args.extend_from_slice(&net);
    ffvol(&args);
    let vreport = vol.join("report.html");
    let vhtml = std::fs::read_to_string(&vreport).unwrap();
    assert!(vhtml.matches("data:image/png;base64,").count() >= 8, "slices missing");
    assert!(vhtml.contains("truth · fit · |error|"), "truth and error panels missing");
    let vdom = dump_dom(&browser, &vreport);
    assert_eq!(attribute(&vdom, "data-js-error"), None, "JavaScript error in {}", vreport.display());
    let vimg = screenshot(&browser, &vreport, &dir.join("volume.png"), (1100, 1400));
    let (w, h, _) = vimg;
    let colours = distinct_colours(&vimg, 0, 0, w, h);
    assert!(colours > 100, "the volume report looks blank ({colours} colours)");

    // the comparison page, regenerated reports
    let cmp = dir.join("cmp.html");
    ffvol(&["report", occ.to_str().unwrap(), vol.to_str().unwrap(), "--output", cmp.to_str().unwrap()]);
    let chtml = std::fs::read_to_string(&cmp).unwrap();
    assert!(chtml.contains("bunny/report.html") && chtml.contains("vol/report.html"), "links missing");
    assert!(chtml.matches("<polyline").count() == 2, "both loss curves");
    let cdom = dump_dom(&browser, &cmp);
    assert_eq!(attribute(&cdom, "data-js-error"), None, "JavaScript error in the comparison page");
}

#[test]
fn report_of_a_folder_without_a_run_is_an_error() {
    let dir = common::scratch("empty");
    let out = Command::new(env!("CARGO_BIN_EXE_ffvol")).arg("report").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run.toml"), "{err}");
}
