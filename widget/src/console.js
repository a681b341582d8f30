// The console's script (no inline script anywhere: the CSP forbids it). Two jobs:
// - htmx (from npm, bundled): links and forms in <main> update the page in place (partial swaps, see base.html);
//   every page works without it as plain links and forms.
// - charts drawn from the tables the server rendered (they stay, for reading without JavaScript and for screen
//   readers), with Chart.js from npm.
/*! Bundled: htmx.org 2.0.11 (https://htmx.org), BSD Zero-Clause License (0BSD), (c) Big Sky Software;
    2.x, not 4.0: 4.0 (2026) changed attribute inheritance and its request engine, 2.x is the maintained line. */
import htmx from "htmx.org";
import { Chart, BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip } from "chart.js";

// Set before htmx starts (on DOMContentLoaded): its indicator <style> and eval'd attributes would break the CSP.
htmx.config.includeIndicatorStyles = false;
htmx.config.allowEval = false;
htmx.config.allowScriptTags = false;
htmx.config.historyCacheSize = 0; // pages hold transcripts: keep no copies in localStorage; history refetches
htmx.config.refreshOnHistoryMiss = true;
window.htmx = htmx;

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);
window.Chart = Chart; // Chart.getChart(canvas): the charts' data, for scripts and tests

const COLORS = ["#0f766e", "#1d4ed8", "#b45309", "#7c3aed", "#be123c", "#15803d", "#475569"];

function tableData(table) {
  const series = [...table.tHead.rows[0].cells].slice(1).map((cell) => cell.textContent.trim());
  const rows = [...table.tBodies[0].rows].filter((row) => row.cells.length === series.length + 1);
  return {
    labels: rows.map((row) => row.cells[0].textContent.trim()),
    datasets: series.map((label, i) => ({
      label,
      data: rows.map((row) => Number(row.cells[i + 1].textContent.trim())),
      backgroundColor: COLORS[i % COLORS.length],
    })),
  };
}

function drawCharts(root) {
  for (const table of root.querySelectorAll("table[data-chart]")) {
    const canvas = document.getElementById(table.dataset.chart);
    const data = tableData(table);
    if (!canvas || data.labels.length === 0 || Chart.getChart(canvas)) continue;
    new Chart(canvas, {
      type: "bar",
      data,
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }
}

// The page's own content at start and whatever htmx swaps in later.
htmx.onLoad(drawCharts);

// A refused request (4xx: bad CSRF, unknown KB, bad search) is not swapped in: its reason is shown instead.
function flash(text) {
  const box = document.getElementById("flash");
  if (box) box.textContent = text;
}
document.addEventListener("htmx:beforeRequest", () => flash(""));
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  let reason = xhr.statusText || `HTTP ${xhr.status}`;
  try {
    const detail = JSON.parse(xhr.responseText).detail;
    reason = typeof detail === "string" ? detail : detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ");
  } catch {
    if (xhr.responseText && xhr.responseText.length < 300) reason = xhr.responseText;
  }
  flash(`Refused (${xhr.status}): ${reason}`);
});
document.addEventListener("htmx:sendError", () => flash("The server could not be reached."));
