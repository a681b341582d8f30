// The console's charts: drawn from the tables the server rendered (they stay, for reading without JavaScript
// and for screen readers). Chart.js from npm, bundled by esbuild; no inline script anywhere (the CSP forbids it).
import { Chart, BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip } from "chart.js";

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

function drawCharts() {
  for (const table of document.querySelectorAll("table[data-chart]")) {
    const canvas = document.getElementById(table.dataset.chart);
    const data = tableData(table);
    if (!canvas || data.labels.length === 0) continue;
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

document.addEventListener("DOMContentLoaded", drawCharts);
