// The valence/arousal pad of etlib.widgets.ValenceArousalPad (an anywidget module).
// A canvas shows the plane [-1, 1]^2 (valence right, arousal up), the circles of radius 0.5 and 0.8 that
// hold the 12 points of Sec. S6 with their labels, the keyframes of the typed sentence, and the current
// point. Pressing or dragging inside the disc of radius 1 sets `valence` and `arousal` (two decimals);
// a drag sends at most one update per animation frame, and the kernel coalesces renders on its side.

function render({ model, el }) {
  const canvas = document.createElement("canvas");
  canvas.className = "etlib-pad-canvas";
  canvas.style.touchAction = "none"; // a drag on a touch screen moves the point, not the page
  canvas.style.cursor = "crosshair";
  el.classList.add("etlib-pad");
  el.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  let dragging = false;
  let queued = null;

  const size = () => model.get("size");
  const margin = () => 0.1 * size(); // room for the labels of the outer points
  const scale = () => (size() / 2 - margin()) / 1.0; // pixels per unit of valence/arousal
  const toCanvas = (v, a) => [size() / 2 + v * scale(), size() / 2 - a * scale()];

  function toVA(event) {
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) * size()) / box.width;
    const y = ((event.clientY - box.top) * size()) / box.height;
    let v = (x - size() / 2) / scale();
    let a = (size() / 2 - y) / scale();
    const r = Math.hypot(v, a);
    if (r > 1) { v /= r; a /= r; } // the disc of radius 1: the widest the model was taught
    return [Math.round(v * 100) / 100, Math.round(a * 100) / 100];
  }

  function draw() {
    const s = size();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = s * ratio;
    canvas.height = s * ratio;
    canvas.style.width = s + "px";
    canvas.style.height = s + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, s, s);
    ctx.fillStyle = "#fafafa";
    ctx.beginPath();
    ctx.arc(s / 2, s / 2, scale(), 0, 2 * Math.PI);
    ctx.fill();
    ctx.strokeStyle = "#cccccc";
    ctx.lineWidth = 1;
    for (const r of [0.5, 0.8, 1.0]) {
      ctx.beginPath();
      ctx.arc(s / 2, s / 2, r * scale(), 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.beginPath();
    ctx.moveTo(margin(), s / 2); ctx.lineTo(s - margin(), s / 2);
    ctx.moveTo(s / 2, margin()); ctx.lineTo(s / 2, s - margin());
    ctx.stroke();
    ctx.fillStyle = "#888888";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.fillText("valence", s - 2, s / 2 - 4);
    ctx.textAlign = "left";
    ctx.fillText("arousal", s / 2 + 4, 10);

    ctx.font = "9px sans-serif";
    ctx.textAlign = "center";
    for (const [v, a, label] of model.get("points")) {
      const [x, y] = toCanvas(v, a);
      ctx.fillStyle = "#1f77b4";
      ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
      ctx.fillStyle = "#335";
      ctx.fillText(label, x, a >= 0 ? y - 5 : y + 12);
    }

    const keys = model.get("keyframes"); // [[t, v, a], ...] in time order
    if (keys.length) {
      ctx.strokeStyle = "#ff7f0e";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      keys.forEach(([, v, a], k) => { const [x, y] = toCanvas(v, a); k ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
      ctx.stroke();
      ctx.fillStyle = "#ff7f0e";
      ctx.font = "9px sans-serif";
      for (const [t, v, a] of keys) {
        const [x, y] = toCanvas(v, a);
        ctx.beginPath(); ctx.arc(x, y, 3, 0, 2 * Math.PI); ctx.fill();
        ctx.fillText(t.toFixed(1) + "s", x + 12, y + 3);
      }
    }

    const [x, y] = toCanvas(model.get("valence"), model.get("arousal"));
    ctx.fillStyle = "#d62728";
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = "white"; ctx.lineWidth = 1.5; ctx.stroke();
  }

  function send(event) {
    queued = toVA(event);
    requestAnimationFrame(() => {
      if (queued === null) return;
      const [v, a] = queued;
      queued = null;
      model.set("valence", v);
      model.set("arousal", a);
      model.save_changes();
      draw();
    });
  }

  canvas.addEventListener("pointerdown", (event) => {
    dragging = true;
    canvas.setPointerCapture(event.pointerId);
    send(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (dragging) send(event); });
  const stop = (event) => {
    if (!dragging) return;
    dragging = false;
    canvas.releasePointerCapture(event.pointerId);
    send(event);
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);

  for (const name of ["valence", "arousal", "points", "keyframes", "size"]) {
    model.on("change:" + name, draw);
  }
  draw();
  return () => { for (const name of ["valence", "arousal", "points", "keyframes", "size"]) model.off("change:" + name, draw); };
}

export default { render };
