// ffvol report: slice sliders and a small WebGL viewer for the embedded GLB (written for ffvol,
// no library). Any error is shown on the page and recorded in <body data-js-error>, which the
// browser test reads.
(function () {
  "use strict";
  function fail(msg) {
    document.body.setAttribute("data-js-error", String(msg));
    var box = document.getElementById("js-error");
    if (box) { box.textContent = "JavaScript error: " + msg; box.style.display = "block"; }
  }
  window.addEventListener("error", function (e) { fail(e.message + " (" + e.filename + ":" + e.lineno + ")"); });
  window.addEventListener("unhandledrejection", function (e) { fail("unhandled rejection: " + e.reason); });

  // slices: each .slices block has a range input and one <img> per slice
  document.querySelectorAll(".slices").forEach(function (block) {
    var range = block.querySelector("input[type=range]");
    var imgs = block.querySelectorAll("img");
    var label = block.querySelector(".slice-label");
    function show() {
      var k = Number(range.value);
      imgs.forEach(function (img, i) { img.style.display = i === k ? "block" : "none"; });
      if (label) { label.textContent = imgs[k].getAttribute("data-label"); }
    }
    range.addEventListener("input", show);
    show();
  });

  var holder = document.getElementById("glb-data");
  if (!holder) { document.body.setAttribute("data-viewer", "none"); return; }
  var canvas = document.getElementById("viewer");
  var gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
  if (!gl) {
    document.getElementById("viewer-note").textContent = "This browser has no WebGL: the 3D view is not available.";
    document.body.setAttribute("data-viewer", "no-webgl");
    return;
  }
  if (!gl.getExtension("OES_element_index_uint")) { throw new Error("WebGL lacks 32-bit indices (OES_element_index_uint)"); }

  // --- GLB: the JSON chunk, the BIN chunk, the accessors of the one primitive
  var b64 = holder.textContent.trim();
  var raw = atob(b64);
  var bytes = new Uint8Array(raw.length);
  for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
  var dv = new DataView(bytes.buffer);
  if (dv.getUint32(0, true) !== 0x46546c67) { throw new Error("embedded mesh is not a GLB file"); }
  var jsonLen = dv.getUint32(12, true);
  var doc = JSON.parse(new TextDecoder().decode(bytes.subarray(20, 20 + jsonLen)));
  var binStart = 20 + jsonLen + 8;
  function accessor(index, Type, comps) {
    var acc = doc.accessors[index];
    var view = doc.bufferViews[acc.bufferView];
    var offset = binStart + (view.byteOffset || 0) + (acc.byteOffset || 0);
    return new Type(bytes.buffer.slice(offset, offset + acc.count * comps * Type.BYTES_PER_ELEMENT));
  }
  var prim = doc.meshes[0].primitives[0];
  var pos = accessor(prim.attributes.POSITION, Float32Array, 3);
  var nrm = prim.attributes.NORMAL !== undefined ? accessor(prim.attributes.NORMAL, Float32Array, 3) : null;
  var col = prim.attributes.COLOR_0 !== undefined ? accessor(prim.attributes.COLOR_0, Uint8Array, 4) : null;
  var idx = accessor(prim.indices, Uint32Array, 1);
  var nv = pos.length / 3;
  if (!nrm) { // facet normals, area-weighted
    nrm = new Float32Array(pos.length);
    for (var t = 0; t < idx.length; t += 3) {
      var a = idx[t] * 3, b = idx[t + 1] * 3, c = idx[t + 2] * 3;
      var ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
      var vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
      var n = [uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx];
      [a, b, c].forEach(function (k) { nrm[k] += n[0]; nrm[k + 1] += n[1]; nrm[k + 2] += n[2]; });
    }
  }
  if (!col) { col = new Uint8Array(nv * 4); for (var q = 0; q < nv * 4; q++) { col[q] = q % 4 === 3 ? 255 : [201, 178, 142][q % 4]; } }
  var lo = doc.accessors[prim.attributes.POSITION].min, hi = doc.accessors[prim.attributes.POSITION].max;
  var centre = [0, 1, 2].map(function (k) { return (lo[k] + hi[k]) / 2; });
  var radius = Math.sqrt([0, 1, 2].reduce(function (s, k) { return s + (hi[k] - lo[k]) * (hi[k] - lo[k]); }, 0)) / 2 || 1;

  function shader(type, src) {
    var s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) { throw new Error("shader: " + gl.getShaderInfoLog(s)); }
    return s;
  }
  var prog = gl.createProgram();
  gl.attachShader(prog, shader(gl.VERTEX_SHADER,
    "attribute vec3 p; attribute vec3 n; attribute vec4 c; uniform mat4 mvp; uniform mat3 rot;" +
    "varying vec3 vn; varying vec4 vc; void main(){ vn = rot * n; vc = c; gl_Position = mvp * vec4(p, 1.0); }"));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER,
    "precision mediump float; varying vec3 vn; varying vec4 vc; void main(){ vec3 n = normalize(vn);" +
    " vec3 l = normalize(vec3(0.4, 0.6, 1.0)); float d = max(dot(n, l), 0.0);" +
    " float s = pow(max(dot(n, normalize(l + vec3(0.0, 0.0, 1.0))), 0.0), 40.0);" +
    " gl_FragColor = vec4(vc.rgb * (0.25 + 0.75 * d) + vec3(0.25 * s), 1.0); }"));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) { throw new Error("program: " + gl.getProgramInfoLog(prog)); }
  gl.useProgram(prog);
  function attrib(name, data, size, type, normalized) {
    var buf = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, buf); gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    var loc = gl.getAttribLocation(prog, name); gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, size, type, normalized, 0, 0);
  }
  attrib("p", pos, 3, gl.FLOAT, false);
  attrib("n", nrm, 3, gl.FLOAT, false);
  attrib("c", col, 4, gl.UNSIGNED_BYTE, true);
  var ibuf = gl.createBuffer(); gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ibuf); gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx, gl.STATIC_DRAW);
  var uMvp = gl.getUniformLocation(prog, "mvp"), uRot = gl.getUniformLocation(prog, "rot");

  var yaw = 0.6, pitch = 0.35, zoom = 1.0;
  function draw() {
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.97, 0.97, 0.98, 1); gl.enable(gl.DEPTH_TEST);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
    // rotation R = Rx(pitch)·Ry(yaw), column-major
    var r = [cy, sp * sy, -cp * sy, 0, cp, sp, sy, -sp * cy, cp * cy];
    var dist = 3.0 * radius / zoom, aspect = canvas.width / canvas.height, f = 1 / Math.tan(0.35);
    var near = Math.max(dist - 2 * radius, radius * 0.01), far = dist + 2 * radius;
    // model: translate(-centre), rotate, translate(0,0,-dist); then perspective
    var m = new Float32Array(16);
    for (var col2 = 0; col2 < 3; col2++) { for (var row = 0; row < 3; row++) { m[col2 * 4 + row] = r[col2 * 3 + row]; } }
    for (var row2 = 0; row2 < 3; row2++) {
      m[12 + row2] = -(r[row2] * centre[0] + r[3 + row2] * centre[1] + r[6 + row2] * centre[2]);
    }
    m[14] -= dist; m[15] = 1;
    var p = [f / aspect, f, (far + near) / (near - far), 2 * far * near / (near - far)];
    var mvp = new Float32Array(16);
    for (var c3 = 0; c3 < 4; c3++) {
      mvp[c3 * 4] = p[0] * m[c3 * 4];
      mvp[c3 * 4 + 1] = p[1] * m[c3 * 4 + 1];
      mvp[c3 * 4 + 2] = p[2] * m[c3 * 4 + 2] + p[3] * m[c3 * 4 + 3];
      mvp[c3 * 4 + 3] = -m[c3 * 4 + 2];
    }
    gl.uniformMatrix4fv(uMvp, false, mvp);
    gl.uniformMatrix3fv(uRot, false, new Float32Array(r));
    gl.drawElements(gl.TRIANGLES, idx.length, gl.UNSIGNED_INT, 0);
    var err = gl.getError();
    if (err !== gl.NO_ERROR) { throw new Error("WebGL error " + err); }
    document.body.setAttribute("data-viewer", "drawn");
  }
  var dragging = null;
  canvas.addEventListener("mousedown", function (e) { dragging = [e.clientX, e.clientY]; });
  window.addEventListener("mouseup", function () { dragging = null; });
  window.addEventListener("mousemove", function (e) {
    if (!dragging) { return; }
    yaw += (e.clientX - dragging[0]) * 0.01; pitch += (e.clientY - dragging[1]) * 0.01;
    pitch = Math.max(-1.5, Math.min(1.5, pitch)); dragging = [e.clientX, e.clientY]; draw();
  });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault(); zoom *= Math.exp(-e.deltaY * 0.001); zoom = Math.max(0.3, Math.min(10, zoom)); draw();
  }, { passive: false });
  draw();
})();
