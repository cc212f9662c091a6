// inspectord gateway — operator page (read-only).
// Consumes the SSE stream at /events (hello, state, verdicts, gallery) and renders
// counts, link states, a score-over-time chart, a score histogram and the gallery
// of the last failed frames. Vanilla JS, no dependencies; CSP-safe (no inline code,
// no innerHTML with data: everything goes through textContent).
'use strict';

(function () {
  const MAX_POINTS = 600;           // points held for the chart
  const REDRAW_MS = 500;            // charts are redrawn at most twice a second
  const WATCHDOG_MS = 6000;         // no SSE message for this long = stream lost
  const RATE_WINDOW_MS = 5 * 60 * 1000;
  const MEAN_WINDOW = 25;           // rolling mean of scores drawn over the dots
  const COLORS = {
    pass: '#34d27b', fail: '#ff4d4d', error: '#ffab1f', skipped: '#9aa6b2',
    thr: '#ffd83d', mean: '#7cc4ff', grid: '#2a3441', axis: '#a4b0bd',
    text: '#eef2f6', failZone: 'rgba(255, 77, 77, 0.10)', neutral: '#5f7a99',
  };

  // ---- page model -------------------------------------------------------
  const model = {
    state: null,        // last PageState
    points: [],         // [{seq, t (ms or NaN), verdict, score, threshold}]
    gallery: [],        // [GalleryItem], newest first
    gatewayUp: false,   // true between a hello and the next stream error
    everConnected: false,
    lastMessage: 0,     // performance.now() of the last SSE message
    lastUpdateWall: 0,  // Date.now() of the last SSE message (for the banner)
  };

  const $ = (id) => document.getElementById(id);

  // ---- small formatting helpers ------------------------------------------
  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
  const pad2 = (n) => (n < 10 ? '0' : '') + n;

  // RFC 3339 with microseconds -> epoch ms (Date.parse wants at most ms).
  function parseTime(s) {
    if (typeof s !== 'string') return NaN;
    return Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
  }
  // Local wall clock HH:MM:SS.
  function clock(ms) {
    if (!isNum(ms)) return '—';
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }
  function fixed(x, digits) { return isNum(x) ? x.toFixed(digits) : '—'; }
  function count(x) { return isNum(x) ? String(Math.trunc(x)) : '—'; }
  function duration(s) {
    if (!isNum(s) || s < 0) return '—';
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + pad2(m) + 'm';
    if (m > 0) return m + 'm ' + pad2(s % 60) + 's';
    return s + 's';
  }
  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }
  // "1.95%" with a smaller "%" (textContent of the element stays "1.95%").
  function setPercent(el, pct) {
    const num = isNum(pct) ? pct.toFixed(2) : '—';
    if (el.dataset.value === num) return;
    el.dataset.value = num;
    const unit = document.createElement('span');
    unit.className = 'unit';
    unit.textContent = isNum(pct) ? '%' : '';
    el.replaceChildren(document.createTextNode(num), unit);
  }
  // Replace ok/warn/bad/idle on a status chip.
  function setLevel(el, level) {
    if (!el) return;
    for (const c of ['ok', 'warn', 'bad', 'idle']) el.classList.toggle(c, c === level);
  }

  // ---- state rendering ----------------------------------------------------
  function renderState() {
    const s = model.state || {};
    const daemon = s.daemon || null;
    const counters = s.counters || {};
    const daemonDown = !!daemon && daemon.up === false;
    const gatewayLost = model.everConnected && !model.gatewayUp;

    // Daemon / gateway reachability.
    let daemonText, daemonLevel;
    if (gatewayLost) {
      daemonText = 'Gateway unreachable';
      daemonLevel = 'bad';
    } else if (!model.everConnected) {
      daemonText = 'Connecting…';
      daemonLevel = 'idle';
    } else if (daemonDown) {
      const since = parseTime(daemon.since);
      daemonText = isNum(since) ? 'Daemon unreachable since ' + clock(since) : 'Daemon unreachable';
      daemonLevel = 'bad';
    } else {
      daemonText = 'Daemon running';
      daemonLevel = 'ok';
    }
    setText($('daemon-state'), daemonText);
    setLevel($('daemon-chip'), daemonLevel);

    const parts = [];
    if (daemon) {
      if (daemon.version) parts.push(daemon.version);
      if (daemon.run_id) parts.push('run ' + daemon.run_id);
      if (daemon.trigger_mode) parts.push(daemon.trigger_mode);
    }
    if (isNum(s.uptime_s)) parts.push('up ' + duration(s.uptime_s));
    setText($('daemon-detail'), parts.length ? parts.join(' · ') : '—');

    renderLinks(s);
    renderInfoAndCounts(s, counters);
    renderBanner(daemonDown, gatewayLost, daemon);
  }

  // Camera, PLC links, MQTT chips ("—" until the first state arrives).
  function renderLinks(s) {
    if (!model.state) {
      for (const id of ['camera', 'plc', 'mqtt']) {
        setText($(id + '-state'), '—');
        setLevel($(id + '-chip'), 'idle');
      }
      return;
    }
    const cam = typeof s.camera === 'string' && s.camera ? s.camera : 'unknown';
    setText($('camera-state'), cam);
    setLevel($('camera-chip'), cam === 'running' ? 'ok' : cam === 'lost' ? 'bad' : cam === 'replay' ? 'warn' : 'idle');

    // PLC links (bridges).
    const links = Array.isArray(s.plc_links) ? s.plc_links : [];
    if (links.length === 0) {
      setText($('plc-state'), 'no loss reported');
      setLevel($('plc-chip'), 'idle');
    } else {
      const txt = links.map((l) => {
        const name = (l && l.source) || 'bridge';
        if (l && l.up) return name + ' up';
        const since = parseTime(l && l.since);
        return name + ' down' + (isNum(since) ? ' since ' + clock(since) : '');
      });
      setText($('plc-state'), txt.join(' · '));
      setLevel($('plc-chip'), links.every((l) => l && l.up) ? 'ok' : 'bad');
    }

    // MQTT.
    const mq = s.mqtt;
    if (!mq) {
      setText($('mqtt-state'), 'not configured');
      setLevel($('mqtt-chip'), 'idle');
    } else if (mq.connected) {
      // a small outbox is normal in-flight traffic; only a backlog is worth showing
      setText($('mqtt-state'), 'connected' + (isNum(mq.outbox) && mq.outbox >= 100 ? ' · outbox ' + mq.outbox : ''));
      setLevel($('mqtt-chip'), 'ok');
    } else {
      setText($('mqtt-state'), 'disconnected' + (isNum(mq.outbox) ? ' · outbox ' + mq.outbox : ''));
      setLevel($('mqtt-chip'), 'bad');
    }

  }

  // Model, reference set, threshold, counts, fps, fail rate.
  function renderInfoAndCounts(s, counters) {
    const m = s.model;
    let modelText = '—';
    if (m && m.name) modelText = m.name + (m.version ? ' ' + m.version : '');
    setText($('model'), modelText);
    setText($('reference-set'), typeof s.reference_set === 'string' && s.reference_set ? s.reference_set : '—');
    setText($('threshold'), fixed(s.threshold, 4));

    // Counts (plain integers), fps, fail rate.
    setText($('n-pass'), count(counters.pass));
    setText($('n-fail'), count(counters.fail));
    setText($('n-error'), count(counters.error));
    setText($('n-skipped'), count(counters.skipped));
    setText($('n-frames'), count(counters.frames));
    setText($('fps'), fixed(s.fps, 1));
    const frames = counters.frames, fails = counters.fail;
    setPercent($('fail-rate'), isNum(frames) && frames > 0 && isNum(fails) ? 100 * fails / frames : null);
  }

  // Full-width red banner + body classes that dim possibly stale values.
  function renderBanner(daemonDown, gatewayLost, daemon) {
    const banner = $('banner');
    let text = '';
    if (gatewayLost) {
      text = 'GATEWAY UNREACHABLE — ' +
        (model.lastUpdateWall ? 'no live data since ' + clock(model.lastUpdateWall) + ', ' : '') + 'reconnecting…';
    } else if (daemonDown) {
      const since = parseTime(daemon.since);
      text = 'DAEMON UNREACHABLE' + (isNum(since) ? ' since ' + clock(since) : '') +
        ' — showing last known values';
    }
    setText(banner, text);
    banner.hidden = text === '';
    const body = document.body;
    body.classList.toggle('offline', text !== '');
    body.classList.toggle('daemon-down', daemonDown && !gatewayLost);
    body.classList.toggle('gateway-lost', gatewayLost);
    body.classList.toggle('connecting', !model.everConnected);
  }

  // Fail rate over the last 5 min, from the held points (window relative to the
  // newest point's time, so the browser clock does not matter).
  function renderRecentRate() {
    const pts = model.points;
    const el = $('fail-rate-5m');
    if (pts.length === 0) { setText(el, 'last 5 min: —'); return; }
    let newest = NaN;
    for (let i = pts.length - 1; i >= 0; i--) if (isNum(pts[i].t)) { newest = pts[i].t; break; }
    let n = 0, f = 0, oldest = NaN;
    for (let i = pts.length - 1; i >= 0; i--) {
      const p = pts[i];
      if (isNum(newest) && isNum(p.t) && newest - p.t > RATE_WINDOW_MS) break;
      n++;
      if (p.verdict === 'fail') f++;
      if (isNum(p.t)) oldest = p.t;
    }
    // If the held points cover less than 5 min (buffer full), say what they cover.
    let label = 'last 5 min';
    const span = newest - oldest;
    if (n === pts.length && pts.length >= MAX_POINTS && isNum(span) && span < RATE_WINDOW_MS) {
      label = 'last ' + duration(span / 1000);
    }
    setText(el, label + ': ' + (100 * f / n).toFixed(2) + '% (' + f + '/' + n + ')');
  }

  // ---- points -----------------------------------------------------------------
  function toPoint(p) {
    if (!p || typeof p !== 'object') return null;
    return {
      seq: p.seq,
      t: parseTime(p.t),
      verdict: typeof p.verdict === 'string' ? p.verdict : 'error',
      score: isNum(p.score) ? p.score : null,
      threshold: isNum(p.threshold) ? p.threshold : null,
    };
  }
  function addPoints(list, replace) {
    if (replace) model.points = [];
    if (Array.isArray(list)) {
      for (const raw of list) {
        const p = toPoint(raw);
        if (p) model.points.push(p);
      }
    }
    if (model.points.length > MAX_POINTS) model.points.splice(0, model.points.length - MAX_POINTS);
  }
  // Threshold to draw: the state's, else the newest point's.
  function currentThreshold() {
    if (model.state && isNum(model.state.threshold)) return model.state.threshold;
    for (let i = model.points.length - 1; i >= 0; i--) {
      if (isNum(model.points[i].threshold)) return model.points[i].threshold;
    }
    return null;
  }

  // ---- gallery ----------------------------------------------------------------
  const figures = new Map();   // name -> <figure>, reused across updates

  function captionParts(item) {
    const at = parseTime(item.at);
    return {
      score: fixed(item.score, 3),
      seq: '#' + (isNum(item.seq) ? item.seq : '—'),
      time: clock(at),
    };
  }
  function makeFigure(item) {
    const fig = document.createElement('figure');
    fig.className = item.verdict === 'error' ? 'v-error' : 'v-fail';
    const img = document.createElement('img');
    img.alt = 'Failed frame, seq ' + item.seq;
    img.decoding = 'async';
    img.addEventListener('error', () => img.classList.add('broken'));
    img.src = item.url;
    const cap = document.createElement('figcaption');
    const parts = captionParts(item);
    for (const [cls, text] of [['cap-score', parts.score], ['cap-seq', parts.seq], ['cap-time', parts.time]]) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = text;
      cap.appendChild(span);
      cap.appendChild(document.createTextNode(' '));
    }
    fig.appendChild(img);
    fig.appendChild(cap);
    fig.addEventListener('click', () => openLightbox(item));
    return fig;
  }
  function renderGallery(items) {
    model.gallery = Array.isArray(items) ? items.filter((i) => i && typeof i.url === 'string') : [];
    const next = [];
    const keep = new Set();
    for (const item of model.gallery) {
      const key = item.name || item.url;
      keep.add(key);
      let fig = figures.get(key);
      if (!fig) { fig = makeFigure(item); figures.set(key, fig); }
      next.push(fig);
    }
    for (const key of Array.from(figures.keys())) if (!keep.has(key)) figures.delete(key);
    $('gallery').replaceChildren(...next);
    $('gallery-empty').hidden = next.length > 0;
  }

  function openLightbox(item) {
    const box = $('lightbox');
    const img = $('lightbox-img');
    const parts = captionParts(item);
    img.src = item.url;
    img.alt = 'Failed frame, seq ' + item.seq;
    setText($('lightbox-caption'), (item.verdict === 'error' ? 'error' : 'fail') +
      ' · score ' + parts.score + ' · seq ' + parts.seq.slice(1) + ' · ' + parts.time);
    box.hidden = false;
  }
  function closeLightbox() { $('lightbox').hidden = true; }

  // ---- canvas helpers -------------------------------------------------------
  // Size the backing store to the CSS box × devicePixelRatio; returns geometry.
  function prepCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
    return { ctx, w: canvas.clientWidth, h: canvas.clientHeight };
  }
  // A "nice" round number >= x (1, 2, 2.5, 5 × 10^k).
  function niceCeil(x) {
    if (!(x > 0)) return 1;
    const k = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * k >= x - 1e-12) return m * k;
    return 10 * k;
  }
  function drawMessage(ctx, w, h, text) {
    ctx.fillStyle = COLORS.axis;
    ctx.font = '20px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(text, w / 2, h / 2);
  }
  function dashedLine(ctx, x0, y0, x1, y1, color, width) {
    ctx.save();
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.setLineDash([10, 6]);
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    ctx.restore();
  }
  // Y range shared by chart and fallback histogram: always includes the threshold.
  function scoreRange() {
    let lo = 0, hi = 0;
    for (const p of model.points) {
      if (p.score === null) continue;
      if (p.score < lo) lo = p.score;
      if (p.score > hi) hi = p.score;
    }
    const thr = currentThreshold();
    if (thr !== null) hi = Math.max(hi, thr * 1.25);
    hi = niceCeil(Math.max(hi * 1.05, 0.1));
    lo = lo < 0 ? -niceCeil(-lo * 1.05) : 0;
    return { lo, hi, thr };
  }

  // ---- score-over-time chart ----------------------------------------------------
  function drawChart() {
    const { ctx, w, h } = prepCanvas($('chart'));
    const pts = model.points;
    const L = 58, R = 12, T = 10, B = 30;             // plot margins (CSS px)
    const pw = w - L - R, ph = h - T - B;
    if (pw < 20 || ph < 20) return;
    if (pts.length === 0) { drawMessage(ctx, w, h, 'Waiting for verdicts…'); return; }

    const { lo, hi, thr } = scoreRange();
    const yOf = (v) => T + ph - (v - lo) / (hi - lo) * ph;

    // X: time when available (gaps show stops), else sequence order.
    const useTime = pts.every((p) => isNum(p.t));
    const xv = useTime ? pts.map((p) => p.t) : pts.map((_, i) => i);
    let x0 = xv[0], x1 = xv[xv.length - 1];
    if (!(x1 > x0)) { x1 = x0 + (useTime ? 1000 : 1); }
    const xOf = (v) => L + (v - x0) / (x1 - x0) * pw;

    // Fail zone above the threshold.
    if (thr !== null) {
      ctx.fillStyle = COLORS.failZone;
      ctx.fillRect(L, T, pw, Math.max(0, yOf(thr) - T));
    }
    // Grid + y labels.
    ctx.font = '15px system-ui, sans-serif';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    const step = niceCeil((hi - lo) / 5);
    for (let v = lo; v <= hi + 1e-9; v += step) {
      const y = Math.round(yOf(v)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
      ctx.fillStyle = COLORS.axis;
      ctx.fillText(v.toFixed(step < 0.1 ? 2 : 1), L - 8, y);
    }
    // X labels: clock times (or seq numbers) at the ends and middle.
    ctx.textBaseline = 'top';
    const xl = (v) => useTime ? clock(v) : String(pts[Math.min(pts.length - 1, Math.round(v))].seq);
    ctx.textAlign = 'left';   ctx.fillText(xl(x0), L, T + ph + 8);
    ctx.textAlign = 'center'; ctx.fillText(xl((x0 + x1) / 2), L + pw / 2, T + ph + 8);
    ctx.textAlign = 'right';  ctx.fillText(xl(x1), L + pw, T + ph + 8);

    // Error / skipped frames have no score: short ticks along the bottom.
    ctx.lineWidth = 2;
    for (let i = 0; i < pts.length; i++) {
      const p = pts[i];
      if (p.score !== null) continue;
      ctx.strokeStyle = p.verdict === 'skipped' ? COLORS.skipped : COLORS.error;
      const x = xOf(xv[i]);
      ctx.beginPath(); ctx.moveTo(x, T + ph); ctx.lineTo(x, T + ph - 10); ctx.stroke();
    }
    // Dots: passes first, fails on top.
    for (const pass of [true, false]) {
      ctx.fillStyle = pass ? COLORS.pass : COLORS.fail;
      const r = pass ? 3 : 4.5;
      ctx.beginPath();
      for (let i = 0; i < pts.length; i++) {
        const p = pts[i];
        if (p.score === null || (p.verdict === 'fail') === pass) continue;
        const x = xOf(xv[i]), y = yOf(p.score);
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    // Rolling mean of scores: makes drift toward the threshold obvious.
    ctx.strokeStyle = COLORS.mean;
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    let sum = 0, n = 0, started = false;
    const win = [];
    for (let i = 0; i < pts.length; i++) {
      if (pts[i].score === null) continue;
      win.push(pts[i].score); sum += pts[i].score; n++;
      if (win.length > MEAN_WINDOW) { sum -= win.shift(); n--; }
      const x = xOf(xv[i]), y = yOf(sum / n);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    }
    ctx.stroke();
    // Threshold line + label.
    if (thr !== null) {
      const y = yOf(thr);
      dashedLine(ctx, L, y, L + pw, y, COLORS.thr, 2.5);
      ctx.font = 'bold 16px system-ui, sans-serif';
      ctx.fillStyle = COLORS.thr;
      ctx.textAlign = 'left';
      ctx.textBaseline = 'bottom';
      ctx.fillText('threshold ' + thr.toFixed(4), L + 6, y - 4);
    }
    // Axis frame.
    ctx.strokeStyle = COLORS.axis;
    ctx.lineWidth = 1;
    ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);
  }

  // ---- histogram ----------------------------------------------------------------
  // Buckets [{lo, hi, n}] from state.score_histogram (counts per bucket, last one
  // for +Inf), or built from the held points when the state has none.
  function histogramBuckets() {
    const sh = model.state && model.state.score_histogram;
    if (sh && Array.isArray(sh.bounds) && Array.isArray(sh.counts) && sh.bounds.length > 0 &&
        sh.counts.length === sh.bounds.length + 1) {
      const b = sh.bounds;
      const first = b.length > 1 ? b[1] - b[0] : b[0];
      const buckets = b.map((hi, i) => ({
        lo: i === 0 ? (b[0] > 0 ? 0 : b[0] - first) : b[i - 1], hi, n: Number(sh.counts[i]) || 0,
      }));
      const overflow = Number(sh.counts[b.length]) || 0;
      return { buckets, overflow, source: 'all frames' };
    }
    const { lo, hi } = scoreRange();
    const nb = 20, width = (hi - lo) / nb;
    const buckets = [];
    for (let i = 0; i < nb; i++) buckets.push({ lo: lo + i * width, hi: lo + (i + 1) * width, n: 0 });
    let overflow = 0, total = 0;
    for (const p of model.points) {
      if (p.score === null) continue;
      total++;
      const i = Math.floor((p.score - lo) / width);
      if (i >= nb) overflow++; else buckets[Math.max(0, i)].n++;
    }
    return { buckets, overflow, source: 'last ' + total + ' scores' };
  }

  function drawHistogram() {
    const { ctx, w, h } = prepCanvas($('histogram'));
    const { buckets, overflow, source } = histogramBuckets();
    setText($('histogram-source'), source);
    const L = 50, R = 12, T = 10, B = 30;
    const pw = w - L - R, ph = h - T - B;
    if (pw < 20 || ph < 20) return;
    const total = buckets.reduce((a, b) => a + b.n, overflow);
    if (total === 0) { drawMessage(ctx, w, h, 'No scores yet'); return; }

    const thr = currentThreshold();
    const lo = buckets[0].lo, hiB = buckets[buckets.length - 1].hi;
    // The +Inf bucket gets one average bucket width at the right, if non-empty.
    const ovW = overflow > 0 ? (hiB - lo) / buckets.length : 0;
    const xOf = (v) => L + (v - lo) / (hiB + ovW - lo) * pw;
    const maxN = Math.max(overflow, ...buckets.map((b) => b.n));
    const top = niceCeil(maxN);
    const yOf = (n) => T + ph - n / top * ph;

    // Y grid: 0, half, top.
    ctx.font = '15px system-ui, sans-serif';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of [0, top / 2, top]) {
      const y = Math.round(yOf(v)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
      ctx.fillStyle = COLORS.axis;
      ctx.fillText(v >= 1000 ? (v / 1000).toFixed(v % 1000 ? 1 : 0) + 'k' : String(+v.toFixed(1)), L - 6, y);
    }
    // Bars: green below the threshold, red above, neutral where a bucket straddles it.
    const colorOf = (b) => thr === null ? COLORS.neutral : b.hi <= thr ? COLORS.pass : b.lo >= thr ? COLORS.fail : COLORS.neutral;
    for (const b of buckets) {
      if (b.n === 0) continue;
      const x0 = xOf(b.lo), x1 = xOf(b.hi);
      ctx.fillStyle = colorOf(b);
      ctx.fillRect(x0 + 1, yOf(b.n), Math.max(1, x1 - x0 - 2), T + ph - yOf(b.n));
    }
    if (overflow > 0) {
      const x0 = xOf(hiB), x1 = xOf(hiB + ovW);
      ctx.fillStyle = thr !== null && hiB >= thr ? COLORS.fail : COLORS.neutral;
      ctx.fillRect(x0 + 1, yOf(overflow), Math.max(1, x1 - x0 - 2), T + ph - yOf(overflow));
    }
    // X labels: round score ticks (+ overflow marker under the +Inf bar).
    ctx.fillStyle = COLORS.axis;
    ctx.textBaseline = 'top';
    const xstep = niceCeil((hiB - lo) / 4);
    for (let v = Math.ceil(lo / xstep - 1e-9) * xstep; v <= hiB + 1e-9; v += xstep) {
      const x = xOf(v);
      ctx.textAlign = x < L + 10 ? 'left' : x > L + pw - 10 ? 'right' : 'center';
      ctx.fillText(String(+v.toFixed(3)), x, T + ph + 8);
    }
    if (overflow > 0) {
      ctx.textAlign = 'right';
      ctx.fillText('+', L + pw, T + ph + 8);
    }
    // Threshold marker.
    if (thr !== null && thr >= lo && thr <= hiB + ovW) {
      const x = xOf(thr);
      dashedLine(ctx, x, T, x, T + ph, COLORS.thr, 2.5);
      ctx.font = 'bold 16px system-ui, sans-serif';
      ctx.fillStyle = COLORS.thr;
      ctx.textBaseline = 'top';
      ctx.textAlign = x > L + pw / 2 ? 'right' : 'left';
      ctx.fillText(thr.toFixed(3), x + (x > L + pw / 2 ? -6 : 6), T + 2);
    }
    ctx.strokeStyle = COLORS.axis;
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(L, T + ph + 0.5); ctx.lineTo(L + pw, T + ph + 0.5); ctx.stroke();
  }

  // ---- throttled redraw ---------------------------------------------------------
  let drawPending = false;
  let lastDraw = -Infinity;
  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    const wait = Math.max(0, lastDraw + REDRAW_MS - performance.now());
    setTimeout(() => requestAnimationFrame(draw), wait);
  }
  function draw() {
    drawPending = false;
    lastDraw = performance.now();
    renderRecentRate();
    drawChart();
    drawHistogram();
  }

  // ---- SSE connection -----------------------------------------------------------
  let source = null;
  let retryTimer = 0;

  function parse(ev) {
    model.lastMessage = performance.now();
    model.lastUpdateWall = Date.now();
    try {
      return JSON.parse(ev.data);
    } catch (e) {
      console.debug('ignored malformed SSE data for', ev.type);
      return undefined;
    }
  }
  function markUp() {
    const changed = !model.gatewayUp;
    model.gatewayUp = true;
    model.everConnected = true;
    if (changed) renderState();
  }

  const handlers = {
    hello(ev) {
      const msg = parse(ev);
      if (!msg || typeof msg !== 'object') return;
      model.gatewayUp = true;
      model.everConnected = true;
      model.state = msg.state || null;
      addPoints(msg.chart, true);
      renderGallery(msg.gallery);
      renderState();
      requestDraw();
    },
    state(ev) {
      const msg = parse(ev);
      if (!msg || typeof msg !== 'object') return;
      model.state = msg;
      model.gatewayUp = true;
      model.everConnected = true;
      renderState();
      requestDraw();
    },
    verdicts(ev) {
      const msg = parse(ev);
      if (!Array.isArray(msg)) return;
      markUp();
      addPoints(msg, false);
      requestDraw();
    },
    gallery(ev) {
      const msg = parse(ev);
      if (!Array.isArray(msg)) return;
      markUp();
      renderGallery(msg);
    },
  };

  function streamLost() {
    if (model.gatewayUp || !model.everConnected) {
      model.gatewayUp = false;
      model.everConnected = true;   // so the page says "Gateway unreachable"
      renderState();
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    model.lastMessage = performance.now();
    source = new EventSource('/events');
    for (const name of Object.keys(handlers)) source.addEventListener(name, handlers[name]);
    source.addEventListener('error', () => {
      streamLost();
      // EventSource retries by itself unless the server answered with an error
      // status / wrong content type (readyState CLOSED): then retry ourselves.
      if (source.readyState === EventSource.CLOSED) retryTimer = setTimeout(connect, 3000);
    });
  }

  // Watchdog: the gateway sends `state` every second; a silent stream is a dead one
  // (e.g. cable pulled, no TCP reset), so drop it and reconnect.
  function watchdog() {
    if (model.gatewayUp && performance.now() - model.lastMessage > WATCHDOG_MS) {
      streamLost();
      connect();
    }
  }

  // ---- start ----------------------------------------------------------------------
  function init() {
    $('lightbox').addEventListener('click', closeLightbox);
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeLightbox(); });
    const ref = $('reference-set-box');
    ref.addEventListener('click', () => ref.classList.toggle('expanded'));
    window.addEventListener('resize', requestDraw);
    renderState();
    renderGallery([]);
    requestDraw();
    connect();
    setInterval(watchdog, 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
