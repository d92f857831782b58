// astro_mantis web page: a client of the service's own API (POST /predict, /predict/batch).
// No framework, no third-party code; every text from the server is set with textContent.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let southLimit = -30;
  let lastList = null;   // CSV text of the last pasted list

  // ------------------------------------------------------------------ helpers
  function say(text) { $("status").textContent = text; }

  function alertBox(text) {
    const box = $("alert");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function fieldError(input, errorId, text) {
    const p = $(errorId);
    p.textContent = text || "";
    p.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function fmt(x, digits) {
    return (x === null || x === undefined) ? "n/a" : Number(x).toFixed(digits === undefined ? 3 : digits);
  }

  async function errorText(resp) {
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    let text = (body && body.error) ? body.error : `${resp.status} ${resp.statusText}`;
    const retry = resp.headers.get("Retry-After");
    if (resp.status === 429) text = `Too many requests: please wait ${retry || "a few"} s and try again.`;
    else if (resp.status === 503) text = `The service is busy (${text}); please try again in ${retry || "a few"} s.`;
    return text;
  }

  function isNumber(text) { return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text.trim()); }

  // Client-side checks of what can be checked without the server (numbers in degrees);
  // the server checks everything again, including sexagesimal text.
  function checkPosition(ra, dec) {
    const errors = {};
    if (!ra.trim()) errors.ra = "Enter the right ascension.";
    else if (isNumber(ra) && !(Number(ra) >= 0 && Number(ra) < 360)) errors.ra = "RA in degrees must be at least 0 and below 360.";
    if (!dec.trim()) errors.dec = "Enter the declination.";
    else if (isNumber(dec)) {
      const d = Number(dec);
      if (!(d >= -90 && d <= 90)) errors.dec = "Dec must lie between -90 and +90 degrees.";
      else if (d < southLimit) errors.dec = `Dec ${d} is south of ${southLimit}: Pan-STARRS has no images there, so positions with Dec < ${southLimit} are refused here (the API answers them with flags).`;
    }
    return errors;
  }

  // ------------------------------------------------------------------ start-up
  async function start() {
    try {
      const h = await fetch("/healthz");
      const state = await h.json();
      if (state.model) {
        $("model-line").textContent = `Model ${state.model.name} (weights sha256 ${String(state.model.sha256).slice(0, 12)}…), ${state.model.version}.`;
      }
      if (state.limits && typeof state.limits.south_limit === "number") southLimit = state.limits.south_limit;
      $("demo-note").hidden = !state.demo;
    } catch (e) { /* the form still works */ }
    try {
      const r = await fetch("/examples");
      const examples = r.ok ? await r.json() : [];
      if (examples.length) {
        const sel = $("examples");
        for (const ex of examples) {
          const opt = document.createElement("option");
          opt.value = JSON.stringify(ex);
          opt.textContent = `${ex.NAME}: RA ${ex.RA}, Dec ${ex.DEC} (${ex.note})`;
          sel.appendChild(opt);
        }
        $("examples-field").hidden = false;
      }
    } catch (e) { /* no examples */ }
  }

  $("examples").addEventListener("change", (ev) => {
    if (!ev.target.value) return;
    const ex = JSON.parse(ev.target.value);
    $("ra").value = ex.RA;
    $("dec").value = ex.DEC;
    $("name").value = ex.NAME;
  });

  // ------------------------------------------------------------------ one position
  async function predictOne(ra, dec, name) {
    alertBox("");
    const button = $("single-submit");
    button.disabled = true;
    say("Fetching the cutouts and running the model…");
    try {
      const body = { RA: isNumber(ra) ? Number(ra) : ra.trim(), DEC: isNumber(dec) ? Number(dec) : dec.trim(), require_ps1: true };
      if (name && name.trim()) body.NAME = name.trim();
      const resp = await fetch("/predict", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (!resp.ok) {
        const text = await errorText(resp);
        say("");
        alertBox(text);
        if (resp.status === 422) {
          const target = /^RA\b/.test(text) ? ["ra", "ra-error"] : (/DEC\b/.test(text) ? ["dec", "dec-error"] : null);
          if (target) { fieldError($(target[0]), target[1], text); $(target[0]).focus(); }
        }
        return;
      }
      const result = await resp.json();
      showResult(result);
      say(result.estimated ? `Redshift ${fmt(result.photo_z)} ± ${fmt(result.z_std)}.` : "No redshift estimate for this position (see the flags).");
    } catch (e) {
      say("");
      alertBox(`The service could not be reached: ${e}`);
    } finally {
      button.disabled = false;
    }
  }

  $("single").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const ra = $("ra").value, dec = $("dec").value;
    const errors = checkPosition(ra, dec);
    fieldError($("ra"), "ra-error", errors.ra);
    fieldError($("dec"), "dec-error", errors.dec);
    if (errors.ra || errors.dec) {
      alertBox(errors.ra || errors.dec);
      (errors.ra ? $("ra") : $("dec")).focus();
      return;
    }
    predictOne(ra, dec, $("name").value);
  });

  function dd(list, term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const d = document.createElement("dd");
    d.textContent = value;
    list.append(dt, d);
  }

  function link(list, href, text) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.setAttribute("download", "");
    li.appendChild(a);
    list.appendChild(li);
  }

  function showResult(r) {
    const ra = r.RA, dec = r.DEC;
    const where = `${encodeURIComponent(ra)}/${encodeURIComponent(dec)}`;
    const label = r.NAME ? `${r.NAME} (RA ${fmt(ra, 5)}, Dec ${fmt(dec, 5)})` : `RA ${fmt(ra, 5)}, Dec ${fmt(dec, 5)}`;
    $("result-title").textContent = `Result for ${label}`;
    const panel = $("panel");
    panel.src = `/cutouts/${where}?format=png&layout=row`;
    $("panel-grid").srcset = `/cutouts/${where}?format=png&layout=grid`;
    const missing = r.flags.names.filter((n) => n.endsWith("_MISSING")).map((n) => n.replace("_MISSING", ""));
    panel.alt = `Cutouts at ${label} in nine bands` + (missing.length ? `; missing: ${missing.join(", ")}` : "");

    const list = $("summary");
    list.replaceChildren();
    if (r.estimated) {
      dd(list, "Redshift (mean)", `${fmt(r.z_mean)} ± ${fmt(r.z_std)}`);
      dd(list, "Median, mode", `${fmt(r.z_median)}, ${fmt(r.z_mode)}`);
      dd(list, "Odds (median within 0.05 (1 + z))", fmt(r.z_odds, 2));
      dd(list, "68% interval", `${fmt(r.intervals["68"][0])} – ${fmt(r.intervals["68"][1])}`);
      dd(list, "95% interval", `${fmt(r.intervals["95"][0])} – ${fmt(r.intervals["95"][1])}`);
    } else {
      dd(list, "Redshift", "not estimated");
    }
    dd(list, "Flags", r.flags.value ? `${r.flags.value}: ${r.flags.names.join(", ")}` : "none");
    dd(list, "Model", `${r.model.name}, sha256 ${r.model.sha256.slice(0, 16)}…`);
    drawPdf(r);

    const q = new URLSearchParams({ RA: String(ra), DEC: String(dec) });
    if (r.NAME) q.set("NAME", String(r.NAME));
    const dl = $("downloads");
    dl.replaceChildren();
    for (const [format, text] of [["json", "Redshift PDF (JSON)"], ["ecsv", "Redshift table (ECSV)"], ["fits", "Redshift table (FITS)"]]) {
      q.set("format", format);
      link(dl, `/predict?${q}`, text);
    }
    link(dl, `/cutouts/${where}?format=fits`, "Cutouts, all surveys (FITS)");
    for (const s of ["galex", "panstarrs", "unwise"]) link(dl, `/cutouts/${where}?format=fits&survey=${s}`, `Cutouts, ${s} (FITS)`);
    link(dl, `/cutouts/${where}?format=png`, "Cutout panel (PNG)");

    const section = $("result");
    section.hidden = false;
    section.focus();
  }

  function svgEl(name, attrs, text) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function drawPdf(r) {
    const svg = $("pdf-plot");
    for (const el of Array.from(svg.children)) if (el.tagName !== "title" && el.tagName !== "desc") el.remove();
    const W = 640, H = 280, L = 56, R = 16, T = 14, B = 44;
    const edges = r.bin_edges, zmin = edges[0], zmax = edges[edges.length - 1];
    const x = (z) => L + (z - zmin) / (zmax - zmin) * (W - L - R);
    if (!r.estimated || !r.pdf) {
      $("pdf-desc").textContent = "No redshift estimate for this position.";
      svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No redshift estimate for this position"));
      return;
    }
    const ymax = Math.max(...r.pdf) * 1.08 || 1;
    const y = (p) => H - B - p / ymax * (H - T - B);
    const band = (lo, hi, fill) => svg.appendChild(svgEl("rect", { x: x(lo), y: T, width: Math.max(1, x(hi) - x(lo)), height: H - T - B, fill }));
    band(r.intervals["95"][0], r.intervals["95"][1], "#d2e3fc");
    band(r.intervals["68"][0], r.intervals["68"][1], "#8ab4f8");
    let d = `M ${x(edges[0])} ${y(0)}`;
    r.pdf.forEach((p, k) => { d += ` L ${x(edges[k])} ${y(p)} L ${x(edges[k + 1])} ${y(p)}`; });
    d += ` L ${x(zmax)} ${y(0)}`;
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: "#1a1a1a", "stroke-width": 1.5 }));
    svg.appendChild(svgEl("line", { x1: x(r.z_mean), x2: x(r.z_mean), y1: T, y2: H - B, stroke: "#b3261e", "stroke-width": 2, "stroke-dasharray": "6 4" }));
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#1a1a1a" }));
    svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#1a1a1a" }));
    for (let z = 0; z <= zmax + 1e-9; z += 0.2) {
      svg.appendChild(svgEl("line", { x1: x(z), x2: x(z), y1: H - B, y2: H - B + 5, stroke: "#1a1a1a" }));
      svg.appendChild(svgEl("text", { x: x(z), y: H - B + 19, "text-anchor": "middle" }, z.toFixed(1)));
    }
    svg.appendChild(svgEl("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "redshift z"));
    svg.appendChild(svgEl("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, "p(z)"));
    $("pdf-desc").textContent = `Mean ${fmt(r.z_mean)}, 68% of the probability between ${fmt(r.intervals["68"][0])} and ${fmt(r.intervals["68"][1])}, 95% between ${fmt(r.intervals["95"][0])} and ${fmt(r.intervals["95"][1])}.`;
  }

  // ------------------------------------------------------------------ a list
  function csvField(text) { return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text; }

  function listToCsv(text) {
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    if (!lines.length) throw new Error("Paste at least one position: RA, Dec, name (optional).");
    if (lines.length > 1000) throw new Error(`${lines.length} lines: paste at most 1000 (upload larger tables to POST /predict/batch).`);
    const rows = ["NAME,RA,DEC"];
    lines.forEach((line, i) => {
      const parts = line.includes(",") ? line.split(",").map((p) => p.trim()) : line.split(/\s+/);
      if (parts.length < 2 || parts.length > 3) throw new Error(`Line ${i + 1} ("${line.slice(0, 40)}"): expected RA, Dec and an optional name.`);
      rows.push([csvField(parts[2] || `row ${i + 1}`), csvField(parts[0]), csvField(parts[1])].join(","));
    });
    return rows.join("\n") + "\n";
  }

  async function runBatch(csv, format) {
    const form = new FormData();
    form.append("file", new Blob([csv], { type: "text/csv" }), "positions.csv");
    form.append("format", format);
    form.append("input_format", "csv");
    let resp = await fetch("/predict/batch", { method: "POST", body: form });
    if (resp.status === 202) {
      let job = await resp.json();
      while (job.status === "queued" || job.status === "running") {
        say(`Job ${job.status}: ${job.rows_done} of ${job.n_rows} rows done…`);
        await new Promise((res) => setTimeout(res, 1000));
        const s = await fetch(job.status_url);
        if (!s.ok) throw new Error(await errorText(s));
        job = await s.json();
      }
      if (job.status !== "done") throw new Error(`The job failed: ${job.error}`);
      resp = await fetch(job.result_url);
    }
    if (!resp.ok) throw new Error(await errorText(resp));
    return resp;
  }

  $("list").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    alertBox("");
    const area = $("positions");
    let csv;
    try { csv = listToCsv(area.value); } catch (e) {
      fieldError(area, "positions-error", e.message);
      area.focus();
      return;
    }
    fieldError(area, "positions-error", "");
    const button = $("list-submit");
    button.disabled = true;
    say("Estimating the redshifts of the list…");
    try {
      const resp = await runBatch(csv, "json");
      const table = await resp.json();
      lastList = csv;
      showList(table.rows);
      say(`${table.rows.length} rows done.`);
    } catch (e) {
      say("");
      alertBox(e.message || String(e));
    } finally {
      button.disabled = false;
    }
  });

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function showList(rows) {
    const body = document.querySelector("#list-table tbody");
    body.replaceChildren();
    rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      cell(tr, String(i + 1), "num");
      cell(tr, row.NAME === null ? "" : String(row.NAME));
      cell(tr, fmt(row.RA, 5), "num");
      cell(tr, fmt(row.DEC, 5), "num");
      cell(tr, row.z_mean === null ? "not estimated" : `${fmt(row.z_mean)} ± ${fmt(row.z_std)}`, "num");
      cell(tr, row.z_lo68 === null ? "n/a" : `${fmt(row.z_lo68)} – ${fmt(row.z_hi68)}`, "num");
      cell(tr, row.z_flags ? `${row.z_flags}: ${row.z_flag_names.join(", ")}` : "none");
      const td = cell(tr, "");
      if (row.RA !== null && row.DEC !== null) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link";
        b.textContent = "Show";
        b.setAttribute("aria-label", `Show cutouts and PDF of row ${i + 1}`);
        b.addEventListener("click", () => {
          $("ra").value = row.RA; $("dec").value = row.DEC; $("name").value = row.NAME || "";
          predictOne(String(row.RA), String(row.DEC), row.NAME || "");
        });
        td.appendChild(b);
      }
      body.appendChild(tr);
    });
    const section = $("list-result");
    section.hidden = false;
    section.focus();
  }

  for (const b of document.querySelectorAll("#list-result button[data-format]")) {
    b.addEventListener("click", async () => {
      if (!lastList) return;
      const format = b.dataset.format;
      say(`Preparing the ${format.toUpperCase()} file…`);
      try {
        const resp = await runBatch(lastList, format);
        const blob = await resp.blob();
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = `positions_photoz.${format === "votable" ? "xml" : format}`;
        document.body.appendChild(a);
        a.click();
        a.remove();
        say(`${format.toUpperCase()} file ready.`);
      } catch (e) {
        say("");
        alertBox(e.message || String(e));
      }
    });
  }

  start();
})();
