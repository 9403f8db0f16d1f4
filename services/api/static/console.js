// Wake console: live app list (Server-Sent Events), filter, time slider, confirmations.
// Plain ES module, no build step, no external fetch.


function badge(kind, value) {
  const span = document.createElement("span");
  value = value || "Unknown";
  span.className = `badge ${kind}-${value.toLowerCase()}`;
  span.dataset[kind] = value;
  span.textContent = value;
  return span;
}

function appRow(app) {
  const tr = document.createElement("tr");
  tr.dataset.app = app.name;
  tr.dataset.seq = String(app.seq);
  const cells = [];
  for (let i = 0; i < 6; i++) cells.push(document.createElement("td"));
  const link = document.createElement("a");
  link.href = `/apps/${encodeURIComponent(app.name)}`;
  link.textContent = app.name;
  cells[0].append(link);
  cells[1].append(badge("sync", app.sync));
  cells[2].append(badge("health", app.health));
  cells[3].className = "mono revision";
  cells[3].textContent = (app.revision || "").slice(0, 12) || "-";
  if (app.pending_approvals) {
    const pending = document.createElement("span");
    pending.className = "badge pending";
    pending.textContent = `${app.pending_approvals} to approve`;
    cells[4].append(pending);
  }
  cells[5].textContent = app.project;
  tr.append(...cells);
  return tr;
}

function applyFilter(table, text) {
  const wanted = text.trim().toLowerCase();
  for (const row of table.tBodies[0].rows) {
    row.hidden = wanted !== "" && !row.dataset.app.toLowerCase().includes(wanted);
  }
}

function liveAppList(table) {
  const filter = document.getElementById("filter");
  const live = document.getElementById("live");
  filter.addEventListener("input", () => applyFilter(table, filter.value));
  filter.form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter(table, filter.value);
  });
  const refreshing = new Map();
  async function refresh(app, seq) {
    const response = await fetch(
      `/api/v1/apps/${encodeURIComponent(app)}?min_seq=${seq}`,
      { credentials: "same-origin" },
    );
    if (response.status === 404) return;
    if (!response.ok) return;
    const found = await response.json();
    const row = appRow(found);
    const old = [...table.tBodies[0].rows].find((r) => r.dataset.app === app);
    if (old) {
      if (Number(old.dataset.seq) > found.seq) return;
      old.replaceWith(row);
    } else {
      const rows = [...table.tBodies[0].rows];
      const next = rows.find((r) => r.dataset.app > app);
      table.tBodies[0].insertBefore(row, next || null);
      document.getElementById("no-apps")?.remove();
    }
    applyFilter(table, filter.value);
  }
  // From the position the rows were read at (reconnecting: from the last event seen).
  const source = new EventSource(`/api/v1/events/stream?after=${table.dataset.after}`);
  source.onopen = () => { live.textContent = "live"; };
  source.onerror = () => { live.textContent = "reconnecting…"; };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.app.startsWith("_")) return;
    // Coalesce a burst of one app's events into one read.
    const pending = refreshing.get(event.app);
    refreshing.set(event.app, event.seq);
    if (pending !== undefined) return;
    setTimeout(() => {
      const seq = refreshing.get(event.app);
      refreshing.delete(event.app);
      refresh(event.app, seq);
    }, 50);
  };
}

function commitOf(row) {
  return row ? (row.commit || "").slice(0, 12) : "-";
}

function timeSlider(input) {
  const moments = JSON.parse(input.dataset.moments);
  const label = document.getElementById("when-label");
  const list = document.getElementById("moment");
  let timer;
  async function show() {
    const index = Number(input.value);
    if (index >= moments.length) {
      label.textContent = "now";
      list.replaceChildren();
      list.dataset.index = String(index);
      return;
    }
    // Just after the moment: its own event is part of the state shown.
    const at = new Date(new Date(moments[index]).getTime() + 1).toISOString();
    label.textContent = at.replace("T", " ").slice(0, 23);
    const response = await fetch(
      `/api/v1/apps/${encodeURIComponent(input.dataset.app)}/state?at=${encodeURIComponent(at)}`,
      { credentials: "same-origin" },
    );
    if (!response.ok) return;
    const state = await response.json();
    // A slower answer for a moment the slider has left since is not shown.
    if (Number(input.value) !== index) return;
    const rows = [
      ["desired", commitOf(state.desired)],
      ["planned", state.planned ? `${commitOf(state.planned)} (${state.planned.status})` : "-"],
      ["approved", state.approved ? `${state.approved.plan_id.slice(0, 8)} by ${state.approved.actor}` : "-"],
      ["applied", state.applied ? commitOf(state.applied) : "-"],
      ["sync", state.application ? state.application.sync_state : "-"],
    ];
    list.replaceChildren();
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.field = name;
      list.append(dt, dd);
    }
    list.dataset.at = at;
    list.dataset.index = String(index);
  }
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(show, 120);
  });
}

for (const button of document.querySelectorAll("button[data-confirm]")) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.dataset.confirm)) event.preventDefault();
  });
}

const apps = document.getElementById("apps");
if (apps) liveAppList(apps);
const slider = document.getElementById("when");
if (slider) timeSlider(slider);
document.documentElement.dataset.ready = "true";
