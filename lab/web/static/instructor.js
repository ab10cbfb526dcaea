"use strict";
// The instructor's dashboard: the class's snapshot arrives by server-sent events
// (no page reloads); a trainee's panel is refreshed every 2 s while it is open.
const newClass = document.getElementById("new-class");
const classBox = document.getElementById("class");
const classActions = document.getElementById("class-actions");
const rows = new Map();
let detailName = null;
let detailTimer = null;
let latest = null;

function stateText(t) {
  if (t.lab_state === "failed") return `failed: ${t.error}`;
  if (t.lab_state !== "up") return t.lab_state + (t.attempt === "scored" ? " \u00b7 scored" : "");
  return {"open": "working", "scoring": "scoring\u2026", "scored": "scored"}[t.attempt] || t.attempt;
}

function linkCell(t) {
  const url = location.origin + t.link;
  const input = el("input", {class: "link", value: url, readonly: "", "aria-label": `link for ${t.trainee}`});
  const copy = el("button", {class: "small", onclick: (e) => {
    e.stopPropagation(); navigator.clipboard.writeText(url).catch(() => { input.select(); });
  }}, "Copy");
  input.addEventListener("click", (e) => { e.stopPropagation(); input.select(); });
  return el("td", {}, input, copy);
}

function renderRow(t) {
  let tr = rows.get(t.trainee);
  if (!tr) {
    tr = el("tr", {"data-trainee": t.trainee, onclick: () => openDetail(t.trainee)});
    rows.set(t.trainee, tr);
    document.querySelector("#roster tbody").append(tr);
  }
  const used = t.seconds_used === null || t.seconds_used === undefined ? "" :
    mmss(t.seconds_used) + (t.time_limit ? ` / ${t.time_limit}:00` : "");
  const subs = el("td", {class: "subs"}, ...t.graded.map(gradeBadge));
  const score = t.score === null || t.score === undefined ? "" : `${t.score} / ${t.max}`;
  tr.replaceChildren(
    el("td", {class: "name"}, t.trainee), linkCell(t), el("td", {}, t.lab),
    el("td", {class: `state ${t.lab_state} ${t.attempt}`}, stateText(t)),
    el("td", {class: "num"}, used), el("td", {class: "num commands"}, t.commands),
    el("td", {class: "num"}, t.hints), subs, el("td", {class: "num score"}, score));
  tr.classList.toggle("selected", t.trainee === detailName);
}

function render(snap) {
  latest = snap;
  const ended = !snap || snap.phase === "ended";
  newClass.hidden = !ended;
  classBox.hidden = !snap;
  classActions.hidden = !snap;
  document.getElementById("end-class").hidden = ended;
  if (!snap) return;
  document.getElementById("class-title").textContent = `${snap.scenario}: ${snap.title}`;
  document.getElementById("class-phase").textContent = snap.phase;
  const p = snap.progress;
  document.getElementById("class-progress").textContent =
    `labs up ${p.up} of ${p.total}` + (p.starting ? `, ${p.starting} starting` : "") +
    (p.queued ? `, ${p.queued} waiting` : "") + (p.failed ? `, ${p.failed} failed` : "") +
    (p.stopping ? `, ${p.stopping} going down` : "") + (p.down ? `, ${p.down} down` : "");
  const bar = document.getElementById("progress-bar");
  bar.max = p.total; bar.value = p.up + p.failed + p.down;
  const names = new Set(snap.trainees.map((t) => t.trainee));
  for (const [name, tr] of rows) { if (!names.has(name)) { tr.remove(); rows.delete(name); } }
  snap.trainees.forEach(renderRow);
  document.getElementById("all-links").value =
    snap.trainees.map((t) => `${t.trainee}\t${location.origin}${t.link}`).join("\n");
}

async function refreshDetail() {
  if (!detailName) return;
  const response = await fetch(`/instructor/trainee/${encodeURIComponent(detailName)}`);
  if (!response.ok) return;
  const d = await response.json();
  document.getElementById("detail-title").textContent =
    `${detailName}: ${d.commands.length} command${d.commands.length === 1 ? "" : "s"}, ` +
    `${mmss(d.seconds_used || 0)} used`;
  document.getElementById("detail-commands").replaceChildren(...d.commands.map((c) =>
    el("tr", {}, el("td", {class: "num"}, mmss(c.t)), el("td", {}, c.node), el("td", {}, el("code", {}, c.line)))));
  document.getElementById("detail-hints").replaceChildren(...(d.hints || []).map((h) =>
    el("li", {}, `hint ${h.index} at ${mmss(h.t)} (-${h.cost})`)));
  document.getElementById("detail-submissions").replaceChildren(...(d.submissions || []).map((s) =>
    el("li", {}, `${mmss(s.t)} `, gradeBadge(s))));
  const box = document.getElementById("detail-report");
  const frame = document.getElementById("detail-report-frame");
  box.hidden = !d.report;
  const src = `/instructor/trainee/${encodeURIComponent(detailName)}/report`;
  if (d.report && frame.getAttribute("src") !== src) frame.setAttribute("src", src);
}

function openDetail(name) {
  detailName = name;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-report-frame").removeAttribute("src");
  if (latest) render(latest);
  clearInterval(detailTimer);
  refreshDetail();
  detailTimer = setInterval(refreshDetail, 2000);
}

document.getElementById("class-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const error = document.getElementById("class-error");
  error.textContent = "";
  const button = e.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await post("/instructor/class", Object.fromEntries(form.entries()));
    rows.forEach((tr) => tr.remove()); rows.clear();
  } catch (err) {
    error.textContent = err.message;
  } finally {
    button.disabled = false;
  }
});

document.getElementById("end-class").addEventListener("click", async () => {
  if (!confirm("End the class? Open attempts are scored and every lab goes down.")) return;
  try { await post("/instructor/end"); } catch (err) { alert(err.message); }
});

const events = new EventSource("/instructor/events");
events.onmessage = (e) => render(JSON.parse(e.data));
