//! `report.html`: one self-contained page per run folder (no network: the styles, the script
//! and every image are inlined), and a side-by-side page comparing several runs.
//!
//! A run's page shows its settings (`run.toml`), its metrics beside the baselines the run folder
//! holds (the zero-filled reconstruction of MRI runs) and the paper's figures where the run follows
//! the paper's protocol (Table 1 of PAPER.md), the loss curve (`loss.csv`, inline SVG), for volume,
//! MRI and CT runs slices through the fit beside the truth and the error (PNG, base64) with a
//! slider, and for occupancy runs an interactive 3D view of the exported mesh (simplified to at
//! most [`VIEW_TRIANGLES`] triangles, normals from the field, embedded as GLB and drawn by a small
//! WebGL viewer, `viewer.js`).

use crate::export::normals::FieldGradient;
use crate::export::simplify::{simplify_mesh, SimplifyTarget};
use crate::train::run::{LOSS_CSV, METRICS, RUN_TOML};
use crate::{Error, Result};
use base64::Engine as _;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The report's file name in a run folder.
pub const REPORT: &str = "report.html";
/// The 3D view's mesh is simplified to at most this many triangles.
pub const VIEW_TRIANGLES: usize = 60_000;
/// Slices shown per volume (evenly spaced along z).
pub const SLICES: usize = 16;

const VIEWER_JS: &str = include_str!("viewer.js");
const STYLE: &str = include_str!("style.css");

/// What the report reads from a run folder.
struct RunFolder {
    dir: PathBuf,
    name: String,
    job: String,
    toml_text: String,
    toml: toml::Value,
    metrics: serde_json::Map<String, Value>,
    loss: Vec<(u64, f32)>,
}

impl RunFolder {
    fn open(dir: &Path) -> Result<Self> {
        let toml_path = dir.join(RUN_TOML);
        let toml_text = crate::io::read_text(&toml_path)?;
        let toml = toml::Value::Table(
            toml::from_str::<toml::Table>(&toml_text)
                .map_err(|e| Error::format(&toml_path, format!("{e}")))?,
        );
        let job = toml.get("job").and_then(|j| j.as_str()).unwrap_or("occupancy").to_string();
        let metrics_path = dir.join(METRICS);
        let metrics = match std::fs::read_to_string(&metrics_path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(Error::format(&metrics_path, "not a JSON object")),
                Err(e) => return Err(Error::format(&metrics_path, format!("{e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(Error::format(&metrics_path, format!("{e}"))),
        };
        // a damaged loss.csv leaves the report without its curve, not without the report
        let loss = crate::train::loss_log::read_loss_log(&dir.join(LOSS_CSV), u64::MAX)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, l, _)| (s, l))
            .collect();
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(RunFolder { dir: dir.to_path_buf(), name, job, toml_text, toml, metrics, loss })
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).and_then(Value::as_f64)
    }

    fn setting(&self, path: &[&str]) -> Option<&toml::Value> {
        let mut v = &self.toml;
        for p in path {
            v = v.get(p)?;
        }
        Some(v)
    }
}

/// Writes `dir/report.html` for the run in `dir`. Returns its path.
pub fn write_run_report(dir: &Path) -> Result<PathBuf> {
    let run = RunFolder::open(dir)?;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>ffvol run <code>{}</code> <span class=job>{}</span></h1>",
        esc(&run.name),
        esc(&run.job)
    );
    body += "<div id=js-error class=error></div>";
    body += &metrics_section(&run);
    body += "<section><h2>Loss</h2>";
    body += &loss_svg(&[(&run.name, &run.loss)]);
    body += "</section>";
    match run.job.as_str() {
        "occupancy" => body += &mesh_section(&run)?,
        _ => body += &slices_section(&run)?,
    }
    let _ = write!(body, "<section><h2>Settings (run.toml)</h2><pre>{}</pre></section>", esc(&run.toml_text));
    let path = dir.join(REPORT);
    crate::io::write_bytes_atomic(&path, page(&format!("ffvol · {}", run.name), &body).as_bytes())?;
    Ok(path)
}

/// Writes a page comparing the runs in `dirs` side by side to `output`: the settings that differ,
/// the metrics, the loss curves on one plot, and links to each run's own report.
pub fn write_comparison(dirs: &[PathBuf], output: &Path) -> Result<()> {
    if dirs.len() < 2 {
        return Err(Error::Config("a comparison needs at least two runs".into()));
    }
    let runs: Vec<RunFolder> = dirs.iter().map(|d| RunFolder::open(d)).collect::<Result<_>>()?;
    let base = output.parent().unwrap_or(Path::new("."));
    let mut body = String::from("<h1>ffvol: comparison of runs</h1><div id=js-error class=error></div>");
    // the settings that are not the same in every run
    let flat: Vec<Vec<(String, String)>> = runs.iter().map(|r| flatten(&r.toml)).collect();
    let mut keys: Vec<String> = flat.iter().flatten().map(|(k, _)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    let value_of = |i: usize, k: &str| {
        flat[i].iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_else(|| "—".into())
    };
    let differing: Vec<&String> = keys
        .iter()
        .filter(|k| k.as_str() != "output" && (1..runs.len()).any(|i| value_of(i, k) != value_of(0, k)))
        .collect();
    body += "<section><h2>Runs</h2><table><tr><th>run</th><th>job</th>";
    for k in &differing {
        let _ = write!(body, "<th>{}</th>", esc(k));
    }
    body += "</tr>";
    for (i, r) in runs.iter().enumerate() {
        let link = relative_link(base, &r.dir.join(REPORT));
        let _ = write!(
            body,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td>",
            esc(&link),
            esc(&r.name),
            esc(&r.job)
        );
        for k in &differing {
            let _ = write!(body, "<td>{}</td>", esc(&value_of(i, k)));
        }
        body += "</tr>";
    }
    body += "</table></section>";
    // metrics: every number any run has
    let mut mkeys: Vec<String> = Vec::new();
    for r in &runs {
        for (k, v) in &r.metrics {
            if v.is_number() && !is_timing(k) && !mkeys.contains(k) {
                mkeys.push(k.clone());
            }
        }
    }
    body += "<section><h2>Metrics</h2><table><tr><th>metric</th>";
    for r in &runs {
        let _ = write!(body, "<th>{}</th>", esc(&r.name));
    }
    body += "</tr>";
    for k in &mkeys {
        let _ = write!(body, "<tr><td>{}</td>", esc(k));
        for r in &runs {
            let _ = write!(body, "<td>{}</td>", r.number(k).map(fmt_number).unwrap_or_else(|| "—".into()));
        }
        body += "</tr>";
    }
    body += "</table></section><section><h2>Loss</h2>";
    let curves: Vec<(&str, &[(u64, f32)])> =
        runs.iter().map(|r| (r.name.as_str(), r.loss.as_slice())).collect();
    body += &loss_svg(&curves);
    body += "</section>";
    crate::io::write_bytes_atomic(output, page("ffvol · comparison", &body).as_bytes())
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{}</title>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
         <body>{body}<footer>written by ffvol {}</footer><script>{VIEWER_JS}</script></body></html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION")
    )
}

fn is_timing(key: &str) -> bool {
    key.contains("seconds") || key.contains("per_second")
}

fn fmt_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 1e-3 && x.abs() < 1e5 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// The metrics beside their baselines and the paper's figure.
fn metrics_section(run: &RunFolder) -> String {
    let mut s = String::from("<section><h2>Metrics</h2>");
    if run.metrics.is_empty() {
        s += "<p class=note>No metrics.json in this run folder (the run has not finished).</p></section>";
        return s;
    }
    let paper = paper_figures(run);
    s += "<table><tr><th>metric</th><th>this run</th><th>baseline in the run folder</th><th>paper (Table 1)</th></tr>";
    for (k, v) in &run.metrics {
        if is_timing(k) || k.ends_with("_zero_filled") {
            continue;
        }
        let shown = match v {
            Value::Number(n) => n.as_f64().map(fmt_number).unwrap_or_default(),
            Value::Null => "not measured".into(),
            Value::String(t) => t.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Array(a) if a.len() <= 4 => v.to_string(),
            _ => continue,
        };
        let baseline = run
            .number(&format!("{k}_zero_filled"))
            .map(|b| format!("{} (zero-filled)", fmt_number(b)))
            .unwrap_or_default();
        let p = paper.iter().find(|(key, _)| key == k).map(|(_, t)| t.clone()).unwrap_or_default();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k),
            esc(&shown),
            esc(&baseline),
            esc(&p)
        );
    }
    s += "</table>";
    if paper.is_empty() {
        s += "<p class=note>The paper's figures are shown only for runs that follow its protocol (PAPER.md); this one does not.</p>";
    }
    let timing: Vec<String> = run
        .metrics
        .iter()
        .filter(|(k, v)| is_timing(k) && v.is_number())
        .map(|(k, v)| format!("{k} {}", v.as_f64().map(fmt_number).unwrap_or_default()))
        .collect();
    if !timing.is_empty() {
        let _ = write!(s, "<p class=note>Timings: {}</p>", esc(&timing.join(", ")));
    }
    s + "</section>"
}

/// The paper's Table 1 figure for this run's mapping, when the run follows the paper's protocol
/// for its job: (metric key, text).
fn paper_figures(run: &RunFolder) -> Vec<(String, String)> {
    let mapping = run.setting(&["encoding", "type"]).and_then(|v| v.as_str()).unwrap_or("");
    let row = match mapping {
        "none" => 0,
        "basic" => 1,
        "positional" => 2,
        "gaussian" => 3,
        _ => return vec![],
    };
    let int = |p: &[&str]| run.setting(p).and_then(|v| v.as_integer());
    let model = (int(&["model", "depth"]), int(&["model", "width"]));
    let steps = int(&["train", "steps"]);
    match run.job.as_str() {
        "occupancy" if model == (Some(8), Some(256)) && steps == Some(10_000) => {
            let near = [0.864, 0.892, 0.960, 0.973][row];
            let uniform = [0.959, 0.966, 0.987, 0.988][row];
            vec![
                ("iou_surface".into(), format!("{near} ({mapping})")),
                ("iou_uniform".into(), format!("{uniform} ({mapping})")),
            ]
        }
        "mri"
            if model == (Some(4), Some(256))
                && steps == Some(1000)
                && run.metrics.get("dims").is_some_and(|d| d == &serde_json::json!([96, 96, 96])) =>
        {
            vec![("psnr".into(), format!("{} dB ({mapping}, ATLAS)", [26.14, 28.58, 32.23, 34.51][row]))]
        }
        "ct" if model == (Some(4), Some(256)) && steps == Some(1000) => {
            let sl = [16.75, 23.31, 26.89, 28.33][row];
            let atlas = [15.44, 16.95, 19.55, 19.88][row];
            vec![("psnr".into(), format!("{sl} dB Shepp–Logan, {atlas} dB ATLAS ({mapping}, 2D, 20 views)"))]
        }
        _ => vec![],
    }
}

/// Loss curves on one log-scale plot, as inline SVG.
fn loss_svg(curves: &[(&str, &[(u64, f32)])]) -> String {
    const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
    let points: Vec<(u64, f32)> = curves
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .filter(|(_, l)| l.is_finite() && *l > 0.0)
        .collect();
    if points.is_empty() {
        return "<p class=note>No loss.csv (or no positive losses) in this run folder.</p>".into();
    }
    let (w, h, ml, mb) = (720.0f64, 300.0f64, 70.0f64, 40.0f64);
    let s_max = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let s_min = points.iter().map(|p| p.0).min().unwrap_or(0) as f64;
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1 as f64), b.max(p.1 as f64)));
    lo = lo.log10().floor();
    hi = hi.log10().ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    let x = |s: f64| ml + (s - s_min) / (s_max - s_min).max(1.0) * (w - ml - 10.0);
    let y = |l: f64| 10.0 + (hi - l.log10()) / (hi - lo) * (h - mb - 10.0);
    let mut svg = format!(
        "<svg class=loss viewBox=\"0 0 {w} {h}\" width={w} height={h} xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        svg,
        "<rect x={ml} y=10 width={} height={} fill=none stroke=#999 />",
        w - ml - 10.0,
        h - mb - 10.0
    );
    let mut decade = lo;
    while decade <= hi {
        let yy = y(10f64.powf(decade));
        let _ = write!(
            svg,
            "<line x1={ml} x2={} y1={yy:.1} y2={yy:.1} stroke=#ddd /><text x={} y={:.1} font-size=12 text-anchor=end>1e{decade}</text>",
            w - 10.0,
            ml - 6.0,
            yy + 4.0
        );
        decade += 1.0;
    }
    let _ = write!(
        svg,
        "<text x={ml} y={} font-size=12>step {}</text><text x={} y={} font-size=12 text-anchor=end>step {}</text>",
        h - 18.0,
        s_min,
        w - 10.0,
        h - 18.0,
        s_max
    );
    for (i, (name, curve)) in curves.iter().enumerate() {
        // at most ~2000 vertices per curve: every k-th step
        let kept: Vec<&(u64, f32)> = curve.iter().filter(|(_, l)| l.is_finite() && *l > 0.0).collect();
        let every = kept.len().div_ceil(2000).max(1);
        let path: String = kept
            .iter()
            .step_by(every)
            .map(|(s, l)| format!("{:.1},{:.1}", x(*s as f64), y(*l as f64)))
            .collect::<Vec<_>>()
            .join(" ");
        let colour = COLOURS[i % COLOURS.len()];
        let _ = write!(svg, "<polyline fill=none stroke=\"{colour}\" stroke-width=1.5 points=\"{path}\" />");
        if curves.len() > 1 {
            let _ = write!(
                svg,
                "<text x={} y={} font-size=12 fill=\"{colour}\">{}</text>",
                ml + 10.0,
                28.0 + 16.0 * i as f64,
                esc(name)
            );
        }
    }
    svg + "</svg>"
}

/// The interactive view of an occupancy run's mesh.
fn mesh_section(run: &RunFolder) -> Result<String> {
    let mut s = String::from("<section><h2>Surface</h2>");
    let Some(path) = ["mesh.ply", "mesh.obj", "mesh.stl", "mesh.glb"]
        .iter()
        .map(|n| run.dir.join(n))
        .find(|p| p.exists() && p.extension().is_some_and(|e| e != "glb"))
    else {
        s += "<p class=note>No exported mesh (mesh.ply, .obj or .stl) in this run folder.</p></section>";
        return Ok(s);
    };
    let full = crate::io::read_mesh(&path)?;
    let mut mesh = if full.triangles.len() > VIEW_TRIANGLES {
        let target = SimplifyTarget { triangles: Some(VIEW_TRIANGLES), max_error: None };
        match simplify_mesh(&full, &target) {
            Ok(m) => m.1,
            Err(e) => {
                let _ = write!(
                    s,
                    "<p class=note>The mesh could not be simplified for viewing ({}).</p></section>",
                    esc(&e.to_string())
                );
                return Ok(s);
            }
        }
    } else {
        crate::export::simplify::weld(&full)
    };
    let normals_from = match crate::job::occupancy::SavedRun::open(&run.dir) {
        Ok(saved) => {
            use crate::export::surface::ExportFrame;
            let (_, unit_from_mesh) = saved.frame();
            let field =
                FieldGradient::new(saved.checkpoint.encoding.clone(), saved.checkpoint.state.mlp.clone())?;
            crate::export::surface::set_field_normals(&mut mesh, &field, |p| unit_from_mesh.apply(p), |g| g);
            "normals from the field"
        }
        Err(_) => {
            mesh.compute_vertex_normals();
            "facet normals (no usable checkpoint)"
        }
    };
    let glb = crate::io::glb::encode(&mesh).map_err(|m| Error::Input(format!("report: {m}")))?;
    let _ = write!(
        s,
        "<p class=note>{}: {} triangles shown of {} ({}); drag to turn, scroll to zoom.</p>\
         <p id=viewer-note class=note></p><canvas id=viewer width=720 height=540></canvas>\
         <script type=\"application/octet-stream\" id=glb-data>{}</script></section>",
        esc(&path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        mesh.triangles.len(),
        full.triangles.len(),
        normals_from,
        base64::engine::general_purpose::STANDARD.encode(&glb)
    );
    Ok(s)
}

/// Slices through the fit beside the truth, the error and (MRI) the zero-filled image.
fn slices_section(run: &RunFolder) -> Result<String> {
    let mut s = String::from("<section><h2>Slices</h2>");
    let fit_name = if run.job == "ct" { "recon.nii.gz" } else { "fit.nii.gz" };
    let fit_path = run.dir.join(fit_name);
    if !fit_path.exists() {
        let _ = write!(s, "<p class=note>No {fit_name} in this run folder.</p></section>");
        return Ok(s);
    }
    let (fit, dims, _) = crate::io::nifti::read_nifti_f32(&fit_path)?;
    let truth_key = if run.job == "ct" { "truth" } else { "volume" };
    let mut notes = Vec::new();
    let truth = match run.toml.get(truth_key).and_then(|v| v.as_str()) {
        Some(p) => match crate::io::volume::read_volume(Path::new(p)) {
            Ok(v) if v.dims == dims => Some(v.data),
            Ok(v) => {
                notes.push(format!("the truth {p} is {:?}, the fit {dims:?}: not compared", v.dims));
                None
            }
            Err(e) => {
                notes.push(format!("the truth could not be read: {e}"));
                None
            }
        },
        None => {
            notes.push("the run has no truth volume".to_string());
            None
        }
    };
    let zero_filled = if run.job == "mri" {
        crate::io::nifti::read_nifti_f32(&run.dir.join("zero_filled.nii.gz"))
            .ok()
            .filter(|z| z.1 == dims)
            .map(|z| z.0)
    } else {
        None
    };
    // one grey scale for every panel: the truth's range (the fit's when there is none)
    let reference = truth.as_deref().unwrap_or(&fit);
    let (lo, hi) = reference
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !(lo.is_finite() && hi > lo) {
        notes.push("the volume is constant: shown as it is".into());
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut panels: Vec<(&str, &[f32], bool)> = Vec::new();
    if let Some(t) = &truth {
        panels.push(("truth", t, false));
    }
    panels.push(("fit", &fit, false));
    let error: Option<Vec<f32>> =
        truth.as_ref().map(|t| t.iter().zip(&fit).map(|(a, b)| (a - b).abs()).collect());
    if let Some(e) = &error {
        panels.push(("|error|", e, true));
    }
    if let Some(z) = &zero_filled {
        panels.push(("zero-filled", z, false));
    }
    let [nx, ny, nz] = dims;
    let plane = nx.checked_mul(ny).ok_or_else(|| Error::format(&fit_path, "slice size overflows"))?;
    let count = SLICES.min(nz);
    let _ = write!(
        s,
        "<p class=note>Panels: {}. Grey scale {} to {} (the truth's range); the error ×4 on the same scale.</p>",
        esc(&panels.iter().map(|p| p.0).collect::<Vec<_>>().join(" · ")),
        fmt_number(lo as f64),
        fmt_number(hi as f64)
    );
    for n in &notes {
        let _ = write!(s, "<p class=note>{}</p>", esc(n));
    }
    let _ = write!(
        s,
        "<div class=slices><input type=range min=0 max={} value={} aria-label=slice> <span class=slice-label></span><div class=frames>",
        count - 1,
        count / 2
    );
    let width = nx * panels.len() + 2 * (panels.len() - 1);
    for i in 0..count {
        let z = if count == 1 { 0 } else { i * (nz - 1) / (count - 1) };
        let mut pixels = vec![255u8; width * ny];
        for (p, (_, data, is_error)) in panels.iter().enumerate() {
            let x0 = p * (nx + 2);
            for y in 0..ny {
                for x in 0..nx {
                    let v = data[z * plane + y * nx + x];
                    let t = if *is_error { 4.0 * v / span } else { (v - lo) / span };
                    // rows top to bottom with y growing upwards (radiological pictures differ; this is voxel order)
                    pixels[(ny - 1 - y) * width + x0 + x] = (t.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        let png = encode_png_gray(width, ny, &pixels)?;
        let _ = write!(
            s,
            "<img data-label=\"slice z = {z} of {nz}\" src=\"data:image/png;base64,{}\" alt=\"slice {z}\">",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
    }
    s += "</div></div></section>";
    Ok(s)
}

fn encode_png_gray(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let err = |e: png::EncodingError| Error::Input(format!("report: PNG slice: {e}"));
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(pixels).map_err(err)?;
        w.finish().map_err(err)?;
    }
    Ok(out)
}

/// `table.key = value` pairs of a TOML document, tables flattened with dots.
fn flatten(v: &toml::Value) -> Vec<(String, String)> {
    fn go(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    go(&key, v, out);
                }
            }
            toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    go("", v, &mut out);
    out
}

/// A link from a page in `base` to `target` (relative when both are under one directory).
fn relative_link(base: &Path, target: &Path) -> String {
    let (Ok(b), Ok(t)) =
        (base.canonicalize(), target.parent().map(Path::to_path_buf).unwrap_or_default().canonicalize())
    else {
        return target.display().to_string();
    };
    let common = b.components().zip(t.components()).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in b.components().skip(common) {
        rel.push("..");
    }
    for c in t.components().skip(common) {
        rel.push(c);
    }
    rel.push(target.file_name().unwrap_or_default());
    rel.display().to_string()
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_flattens() {
        assert_eq!(esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
        let v = toml::Value::Table(toml::from_str("job = \"mri\"\n[model]\ndepth = 4\n").unwrap());
        let f = flatten(&v);
        assert!(f.contains(&("model.depth".into(), "4".into())));
        assert!(f.contains(&("job".into(), "mri".into())));
    }

    #[test]
    fn loss_plot_needs_positive_losses() {
        assert!(loss_svg(&[("a", &[])]).contains("No loss.csv"));
        let svg = loss_svg(&[("a", &[(1, 0.5), (2, 0.25), (3, 0.1)])]);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    }
}
