"use strict";
// The trainee's page: one xterm.js terminal per node (opened when its tab is first
// shown), each a websocket to a shell sealed in that node; hints, the diagnosis,
// finishing; the clock counts down from the server's figure and is re-synchronised.
const app = document.getElementById("app");
const NAME = app.dataset.name;
const base = `/trainee/${encodeURIComponent(NAME)}`;
const area = document.getElementById("term-area");
const terminals = new Map();
let secondsLeft = Number(app.dataset.secondsLeft);
let finished = app.dataset.attempt === "scored";

// --- terminals --------------------------------------------------------------------
function openTerminal(node) {
  const box = el("div", {class: "term", "data-node": node});
  area.append(box);
  const term = new Terminal({cursorBlink: true, fontSize: 14, scrollback: 5000,
    fontFamily: "'DejaVu Sans Mono', 'Liberation Mono', monospace",
    theme: {background: "#10161d", foreground: "#dfe6ee"}});
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  const entry = {node, box, term, fit, ws: null};
  terminals.set(node, entry);
  term.onData((data) => {
    if (entry.ws && entry.ws.readyState === WebSocket.OPEN) {
      entry.ws.send(new TextEncoder().encode(data));
    } else if (!finished && (!entry.ws || entry.ws.readyState === WebSocket.CLOSED)) {
      connect(entry);  // a key in an ended terminal opens a new shell
    }
  });
  term.onResize(({rows, cols}) => {
    if (entry.ws && entry.ws.readyState === WebSocket.OPEN) {
      entry.ws.send(JSON.stringify({resize: [rows, cols]}));
    }
  });
  return entry;
}

function connect(entry) {
  const {term, node} = entry;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${base}/term/${encodeURIComponent(node)}` +
                           `?rows=${term.rows}&cols=${term.cols}`);
  ws.binaryType = "arraybuffer";
  entry.ws = ws;
  entry.ended = false;
  setTab(node, "live");
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      const message = JSON.parse(e.data);
      if (message.ended) ended(entry, message.ended);
    } else {
      term.write(new Uint8Array(e.data));
    }
  };
  ws.onclose = () => ended(entry, "the connection closed");
}

function ended(entry, why) {
  if (entry.ended) return;
  entry.ended = true;
  const again = finished ? "" : " \u2014 press a key for a new shell";
  entry.term.write(`\r\n\x1b[1;31m[${why}]\x1b[0m${again}\r\n`);
  setTab(entry.node, "ended");
}

function setTab(node, state) {
  const tab = document.querySelector(`.tab[data-node="${CSS.escape(node)}"]`);
  if (tab) tab.dataset.state = state;
}

function show(node) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.node === node));
  }
  let entry = terminals.get(node);
  for (const other of terminals.values()) other.box.hidden = other !== entry;
  if (!entry) {
    entry = openTerminal(node);
    entry.fit.fit();
    if (!finished) connect(entry);
  }
  entry.box.hidden = false;
  entry.fit.fit();
  entry.term.focus();
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => show(tab.dataset.node));
}
for (const g of document.querySelectorAll("#topology g.node")) {
  g.addEventListener("click", () => show(g.dataset.node));  // a node in the picture
}
new ResizeObserver(() => {
  for (const entry of terminals.values()) if (!entry.box.hidden) entry.fit.fit();
}).observe(area);

// --- clock -------------------------------------------------------------------------
const clock = document.getElementById("clock");
function tick() {
  if (finished) {
    clock.textContent = "finished";
    clock.classList.remove("late", "soon");
    return;
  }
  if (app.dataset.labState !== "up") {
    clock.textContent = "--:--";
    return;
  }
  clock.textContent = secondsLeft >= 0 ? mmss(secondsLeft) : `over by ${mmss(-secondsLeft)}`;
  clock.classList.toggle("late", secondsLeft < 0);
  clock.classList.toggle("soon", secondsLeft >= 0 && secondsLeft < 120);
  secondsLeft -= 1;
}
setInterval(tick, 1000);
tick();

async function sync() {
  const response = await fetch(`${base}/state`);
  if (!response.ok) return;
  const state = await response.json();
  secondsLeft = state.seconds_left;
  document.getElementById("hints-left").textContent = state.hints_left;
  if (state.lab_state !== app.dataset.labState && app.dataset.labState !== "up") {
    location.reload();  // the lab came up (or failed) since the page was made
    return;
  }
  if (state.attempt === "scored" && !finished) showReport();
  if (state.score !== null) showScore(state.score, state.max);
}
setInterval(sync, ["queued", "starting"].includes(app.dataset.labState) ? 2000 : 15000);

// --- hints, diagnosis, finishing ------------------------------------------------------
document.getElementById("hint-button").addEventListener("click", async () => {
  const error = document.getElementById("hint-error");
  error.textContent = "";
  if (!confirm("A hint costs points. Take the next hint?")) return;
  try {
    const h = await post(`${base}/hint`);
    document.getElementById("hints").append(el("li", {}, `${h.text} (-${h.cost} points)`));
    document.getElementById("hints-left").textContent = h.of - h.index;
  } catch (err) {
    error.textContent = err.message;
  }
});

document.getElementById("submit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const error = document.getElementById("submit-error");
  error.textContent = "";
  try {
    const r = await post(`${base}/submit`, {cause: form.get("cause"), node: form.get("node")});
    document.getElementById("submissions").append(
      el("li", {class: `answer ${r.answer}`}, `${form.get("cause")} on ${form.get("node")}: ${r.answer}`));
  } catch (err) {
    error.textContent = err.message;
  }
});

const finishButton = document.getElementById("finish-button");
finishButton.addEventListener("click", async () => {
  if (!confirm("Finish the exercise? Your work is scored and the terminals close.")) return;
  finishButton.disabled = true;
  finishButton.textContent = "Scoring\u2026";
  try {
    const r = await post(`${base}/finish`);
    showReport(r);
  } catch (err) {
    finishButton.disabled = false;
    finishButton.textContent = "Finish and score";
    alert(err.message);
  }
});

async function showReport(scored) {
  finished = true;
  if (!scored) {
    const svg = await fetch(`${base}/topology.svg`);
    if (svg.ok) document.getElementById("topology").innerHTML = await svg.text();
  } else {
    document.getElementById("topology").innerHTML = scored.svg;
    showScore(scored.total, scored.max);
  }
  for (const b of [finishButton, document.getElementById("hint-button"),
                   ...document.querySelectorAll("#submit-form button")]) b.disabled = true;
  finishButton.textContent = "Finished";
  tick();
  document.getElementById("terminals").hidden = true;
  for (const entry of terminals.values()) if (entry.ws) entry.ws.close();
  document.getElementById("report").hidden = false;
  document.getElementById("report-frame").setAttribute("src", `${base}/report`);
  app.classList.add("finished");
}

function showScore(total, max) {
  document.getElementById("score").textContent = `${total} / ${max}`;
}

if (finished) {
  showReport();
  sync();
} else if (app.dataset.labState === "up") {
  const first = document.querySelector(".tab");
  if (first) show(first.dataset.node);
}
