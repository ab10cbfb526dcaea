"use strict";
// Shared by the classroom pages: POST with the page's CSRF token, small DOM helpers.
const CSRF = document.querySelector('meta[name="csrf-token"]').content;

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { /* a 403 page is not JSON */ }
  if (!response.ok) {
    throw new Error(data.error ? data.error + (data.hint ? ` (${data.hint})` : "")
                               : `refused (HTTP ${response.status})`);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function mmss(seconds) {  // whole seconds cut off, as the scoring report writes them
  const sign = seconds <= -1 ? "-" : "";
  const s = Math.floor(Math.abs(seconds));
  return `${sign}${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function gradeBadge(sub) {
  const cls = {"right": "right", "partial": "partial", "red herring": "herring"}[sub.grade] || "wrong";
  return el("span", {class: `grade ${cls}`, title: `${sub.grade} at ${mmss(sub.t)}`},
            `${sub.grade === "right" ? "\u2714" : sub.grade === "partial" ? "\u00bd" : "\u2718"} `
            + `${sub.cause} on ${sub.node}`);
}
