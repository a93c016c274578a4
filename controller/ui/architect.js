/* Canopy Architect: a live, read-only view of one tenant's logical network and of the physical side.
 *
 * Everything comes from the public REST API (/v1). The page polls /v1/status; when its change sequence
 * (policy) or state version (switches, bindings, VTEPs, BGP) moves, it reads the collections again and
 * redraws. Names are shown with textContent only: nothing from the API is ever parsed as HTML.
 */
"use strict";

const POLL_MS = 500;          // /v1/status is cheap: a change shows within a second
const SLOW_REFRESH_MS = 5000; // flow counts, HA and BGP state move without a State change
const GRID_COLUMNS = 8;       // endpoints per row inside a subnet box
const NODE_SPACING = 70;

const architect = {
  token: sessionStorage.getItem("canopy-token") || "",
  data: null,
  version: null,
  tenantId: null,
  selected: null,
  cy: null,
  lastRefresh: 0,
  refreshes: 0,
};
window.canopyArchitect = architect;

class Unauthorized extends Error {}

async function api(path) {
  const headers = architect.token ? {Authorization: "Bearer " + architect.token} : {};
  const resp = await fetch(path, {headers, cache: "no-store"});
  if (resp.status === 401) throw new Unauthorized(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

async function readAll() {
  const paths = {
    status: "/v1/status", tenants: "/v1/tenants", domains: "/v1/domains", subnets: "/v1/subnets",
    vports: "/v1/vports", acls: "/v1/acls", switches: "/v1/switches", vteps: "/v1/vteps",
    bgp: "/v1/bgp/peers", ha: "/v1/ha",
  };
  const names = Object.keys(paths);
  const bodies = await Promise.all(names.map((n) => api(paths[n])));
  const out = {};
  names.forEach((n, i) => { out[n] = bodies[i]; });
  return out;
}

// ---------------------------------------------------------------- the model of one tenant
function tenantModel(data, tenantId) {
  const domains = data.domains.items.filter((d) => d.tenant_id === tenantId);
  const subnets = data.subnets.items.filter((s) => s.tenant_id === tenantId);
  const subnetIds = new Set(subnets.map((s) => s.id));
  const hypervisors = new Map(data.switches.items.map((sw) => [sw.chassis, sw]));
  const endpoints = new Map(subnets.map((s) => [s.id, []]));
  for (const vp of data.vports.items) {
    if (!subnetIds.has(vp.subnet_id)) continue;
    const loc = vp.location;
    const hv = loc ? hypervisors.get(loc.chassis) : null;
    endpoints.get(vp.subnet_id).push({
      kind: "vport", id: vp.id, name: vp.name, vport: vp, status: vp.status,
      host: hv ? (hv.name || hv.chassis) : (loc ? loc.chassis : null),
      flavour: loc ? loc.flavour : (vp.binding || {}).flavour || null,
    });
  }
  // a bare-metal server declared as a vport is one endpoint: the vport, placed where a VTEP learnt its MAC
  const declared = new Map();
  for (const ep of [].concat(...endpoints.values())) {
    if (ep.flavour !== "baremetal") continue;
    Object.assign(ep, {baremetal: true, absent: "not learnt by a hardware VTEP yet"});
    declared.set(`${ep.vport.subnet_id} ${ep.vport.mac.toLowerCase()}`, ep);
  }
  const byVni = new Map(subnets.map((s) => [s.vni, s]));
  for (const vtep of data.vteps.items) {
    for (const m of vtep.local_macs || []) {
      const sub = byVni.get(m.vni);
      if (!sub) continue;
      const vport = declared.get(`${sub.id} ${m.mac.toLowerCase()}`);
      if (vport) {  // every VTEP that reports it: two are a conflict the operator must see, not the last one alone
        const vteps = (vport.vteps || []).filter((v) => v.name !== vtep.name).concat([vtep]);
        Object.assign(vport, {vteps, vtep: vteps[0], flavour: "bare metal",
          status: vteps.length > 1 ? "conflict" : "learnt", host: vteps.map((v) => v.name).join(", "),
          conflict: vteps.length > 1 ? `CONFLICT: ${vteps.length} hardware VTEPs report its MAC` : null});
        continue;
      }
      endpoints.get(sub.id).push({
        kind: "baremetal", id: `bm:${vtep.name}:${m.mac}`, name: m.mac, mac: m.mac, ip: m.ip,
        status: "learnt", host: vtep.name, flavour: "bare metal", vtep,
      });
    }
  }
  for (const list of endpoints.values()) list.sort((a, b) => a.name.localeCompare(b.name));
  const groups = domains.map((d) => ({id: d.id, label: `domain ${d.name} (L3 VNI ${d.l3_vni})`, domain: d,
    subnets: subnets.filter((s) => s.domain_id === d.id)}));
  const l2 = subnets.filter((s) => !s.domain_id);
  if (l2.length) groups.push({id: "l2-only", label: "L2-only subnets", domain: null, subnets: l2});
  for (const g of groups) g.subnets.sort((a, b) => a.name.localeCompare(b.name));
  return {groups, endpoints};
}

// ---------------------------------------------------------------- the diagram
function diagramElements(model) {
  const elements = [];
  let x0 = 0;
  for (const group of model.groups) {
    elements.push({group: "nodes", data: {id: "g:" + group.id, label: group.label}, classes: "domain"});
    let y = 0;
    let widest = 1;
    for (const sub of group.subnets) {
      const eps = model.endpoints.get(sub.id);
      elements.push({group: "nodes", data: {id: "s:" + sub.id, parent: "g:" + group.id,
        label: `${sub.name} ${sub.cidr || ""} VNI ${sub.vni}`}, classes: "subnet"});
      const cols = Math.min(GRID_COLUMNS, Math.max(1, eps.length));
      widest = Math.max(widest, cols);
      if (!eps.length) {
        elements.push({group: "nodes", data: {id: "e:" + sub.id, parent: "s:" + sub.id, label: "(no endpoints)"},
          position: {x: x0, y}, classes: "empty"});
      }
      eps.forEach((ep, i) => {
        elements.push({group: "nodes", classes: endpointClasses(ep),
          data: {id: "v:" + ep.id, parent: "s:" + sub.id, label: `${ep.name}\n${ep.host || ep.absent || "not bound"}`},
          position: {x: x0 + (i % cols) * NODE_SPACING * 1.6, y: y + Math.floor(i / cols) * NODE_SPACING}});
      });
      y += (Math.ceil(Math.max(1, eps.length) / cols) + 1.5) * NODE_SPACING;
    }
    x0 += (widest + 1.5) * NODE_SPACING * 1.6;
  }
  return elements;
}

const STYLE = [
  {selector: "node", style: {"label": "data(label)", "font-size": 11, "text-wrap": "wrap",
    "text-valign": "bottom", "text-margin-y": 4, "width": 22, "height": 22}},
  {selector: ".domain", style: {"background-color": "#eef3f8", "border-color": "#6b8fb3", "border-width": 2,
    "text-valign": "top", "font-weight": "bold", "font-size": 14, "padding": 24, "shape": "round-rectangle"}},
  {selector: ".subnet", style: {"background-color": "#ffffff", "border-color": "#9bb", "border-width": 1,
    "text-valign": "top", "font-size": 12, "padding": 16, "shape": "round-rectangle"}},
  {selector: ".endpoint", style: {"background-color": "#2e8b57"}},
  {selector: ".unbound", style: {"background-color": "#b0b0b0"}},
  {selector: ".baremetal", style: {"shape": "rectangle", "background-color": "#8a5a2b"}},
  // a declared bare-metal server no VTEP has learnt yet: a square, grey as any endpoint not bound
  {selector: ".baremetal.unbound", style: {"background-color": "#b0b0b0"}},
  // a declared bare-metal server whose MAC two or more VTEPs report: red, with a thick border
  {selector: ".baremetal.conflict", style: {"background-color": "#c0392b", "border-width": 3,
    "border-color": "#7b1f16"}},
  {selector: ".empty", style: {"background-opacity": 0, "color": "#888"}},
  {selector: ":selected", style: {"border-width": 3, "border-color": "#d33"}},
];

function drawDiagram(model, refit) {
  const container = document.getElementById("diagram");
  if (typeof cytoscape !== "function") {
    container.textContent = "diagram library missing";
    return;
  }
  const elements = diagramElements(model);
  if (!architect.cy) {
    architect.cy = cytoscape({container, elements, style: STYLE, layout: {name: "preset"},
      wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 3});
    architect.cy.on("tap", "node.endpoint", (ev) => select(ev.target.id().slice(2)));
    refit = true;
  } else {
    architect.cy.batch(() => syncElements(architect.cy, elements));
  }
  if (refit) architect.cy.fit(undefined, 20);
}

/* Bring the graph to ``elements`` touching only what differs: a live update of one vport among thousands
   must not rebuild (and re-render) them all. Parents come before their children in ``elements``. */
function syncElements(cy, elements) {
  const wanted = new Set();
  for (const want of elements) {
    const id = want.data.id;
    wanted.add(id);
    const have = cy.getElementById(id);
    if (have.empty()) {
      cy.add(want);
      continue;
    }
    if ((have.data("parent") || null) !== (want.data.parent || null)) have.move({parent: want.data.parent || null});
    if (have.data("label") !== want.data.label) have.data("label", want.data.label);
    if (have.classes().join(" ") !== want.classes.split(" ").filter(Boolean).join(" ")) have.classes(want.classes);
    const pos = want.position;
    if (pos && (have.position("x") !== pos.x || have.position("y") !== pos.y)) have.position(pos);
  }
  cy.nodes().filter((n) => !wanted.has(n.id())).remove();
}

// ---------------------------------------------------------------- the list (the same model, as HTML)
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function drawTree(model) {
  const tree = document.getElementById("tree");
  const parts = [];
  let count = 0;
  for (const group of model.groups) {
    const subnets = group.subnets.map((sub) => {
      const eps = model.endpoints.get(sub.id);
      count += eps.length;
      const rows = eps.map((ep) => el("li", {class: endpointClasses(ep), "data-id": ep.id,
        "data-name": ep.name, tabIndex: 0, onclick: () => select(ep.id),
        onkeydown: (e) => { if (e.key === "Enter") select(ep.id); }},
      el("span", {class: "name"}, ep.name), " ",
      el("span", {class: "host"}, ep.host ? "on " + ep.host : ep.absent || "not bound"), " ",
      el("span", {class: "muted"}, [ep.flavour, ep.status].filter(Boolean).join(", ")),
      ...(ep.conflict ? [" ", el("span", {class: "conflict"}, ep.conflict)] : [])));
      return el("details", {class: "subnet", open: eps.length <= 200, "data-id": sub.id, "data-name": sub.name},
        el("summary", {}, `${sub.name} ${sub.cidr || ""} (VNI ${sub.vni}, ${plural(eps.length, "endpoint")})`),
        el("ul", {}, ...rows));
    });
    parts.push(el("div", {class: "domain", "data-id": group.id}, el("h3", {}, group.label), ...subnets));
  }
  tree.replaceChildren(...parts);
  document.getElementById("counts").textContent =
    `(${plural(model.groups.length, "group")}, ${plural(count, "endpoint")})`;
}

function endpointClasses(ep) {
  return `endpoint ${ep.kind} ${ep.status}${ep.baremetal ? " baremetal" : ""}`;
}

function vtepPorts(places) {
  // a bare-metal vport's ports: per VTEP reporting its MAC, the port and VLAN binding its VNI there (REST learnt_on)
  if (!places || !places.length) return "-";
  return places.map((p) => `${p.vtep} ` + (p.port !== null && p.port !== undefined ? `${p.port} VLAN ${p.vlan}`
    : (p.ports || []).map((q) => `${q.port} VLAN ${q.vlan}`).join(" or ") || "?")).join(", ");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------- details of one endpoint
async function select(id) {
  architect.selected = id;
  for (const li of document.querySelectorAll("#tree li.selected")) li.classList.remove("selected");
  const row = document.querySelector(`#tree li[data-id="${CSS.escape(id)}"]`);
  if (row) row.classList.add("selected");
  await showDetails();
}

async function showDetails() {
  const list = document.getElementById("details-list");
  const id = architect.selected;
  const model = architect.model;
  let ep = null;
  if (model && id) {
    for (const eps of model.endpoints.values()) ep = ep || eps.find((e) => e.id === id);
  }
  document.getElementById("details-empty").hidden = Boolean(ep);
  if (!ep) { list.replaceChildren(); return; }
  const rows = [["name", ep.name], ["kind", ep.kind === "vport" ? "vport" : "bare-metal server"]];
  if (ep.kind === "vport") {
    const vp = ep.vport, loc = vp.location;
    const aclNames = (vp.acls || []).map((aid) => (architect.data.acls.items.find((a) => a.id === aid) || {}).name || aid);
    rows.push(["ref", vp.ref], ["status", vp.status], ["MAC", vp.mac], ["IPs", (vp.ips || []).join(", ")],
      ["binding", bindingText(vp.binding)],
      [ep.baremetal ? "hardware VTEP" : "hypervisor", (ep.host || ep.absent || "not bound") +
        (ep.conflict ? ` (${ep.conflict})` : "")],
      ["switch", loc && loc.datapath_id ? loc.datapath_id : "-"],
      ["port", ep.baremetal ? vtepPorts(vp.learnt_on) : loc ? loc.port + (loc.vlan ? ` VLAN ${loc.vlan}` : "") : "-"],
      ["ofport", loc && loc.ofport !== null && loc.ofport !== undefined ? String(loc.ofport) : "-"],
      ["security policies", aclNames.length ? aclNames.join(", ") : "none"],
      ["flows", loc && loc.datapath_id ? "…" : "-"]);
  } else {
    rows.push(["MAC", ep.mac], ["IP", ep.ip || "-"], ["hardware VTEP", ep.vtep.name],
      ["tunnel IPs", (ep.vtep.tunnel_ips || []).join(", ")]);
  }
  list.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {"data-field": k}, String(v))]));
  if (ep.kind === "vport" && ep.vport.location && ep.vport.location.datapath_id) {
    const loc = ep.vport.location;
    try {
      const flows = await api(`/v1/switches/${loc.datapath_id}/flows?owner=${encodeURIComponent(ep.id)}`);
      const installed = flows.flows.filter((f) => f.installed).length;
      const cell = list.querySelector('dd[data-field="flows"]');
      if (cell && architect.selected === id) cell.textContent = `${flows.count} on its switch (${installed} installed)`;
    } catch (err) { /* the switch went away meanwhile: keep "…" until the next refresh */ }
  }
}

function bindingText(binding) {
  const set = Object.entries(binding || {}).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return set.length ? set.map(([k, v]) => `${k}=${v}`).join(", ") : "any hypervisor";
}

// ---------------------------------------------------------------- the physical side
function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, String(c))))));
}

function drawPhysical(data) {
  fill("hypervisors", data.switches.items.map((sw) => [sw.name || sw.chassis || sw.datapath_id, sw.flavour || "-",
    sw.vtep_ip || "-", sw.openflow && sw.openflow.connected ? "connected" : "down",
    sw.ovsdb && sw.ovsdb.connected ? "connected" : "down",
    sw.sync ? `${sw.sync.state} ${sw.sync.installed}/${sw.sync.desired}` : "-"]));
  fill("vteps", data.vteps.items.map((v) => [v.name, v.connected ? "connected" : "down",
    (v.tunnel_ips || []).join(", ") || "-", v.bindings.map((b) => `${b.port}/${b.vlan} → ${b.subnet.ref}`).join("; ") || "-",
    (v.local_macs || []).length]));
  fill("peers", data.bgp.items.map((p) => [p.address, p.asn, p.state, `${p.received} / ${p.sent}`]));
  const ha = document.getElementById("ha");
  ha.textContent = "HA: " + (data.ha.role || "standalone");
  ha.dataset.role = data.ha.role || "standalone";
}

// ---------------------------------------------------------------- tenant picker, refresh loop
function drawTenantPicker(data) {
  const picker = document.getElementById("tenant");
  const tenants = [...data.tenants.items].sort((a, b) => a.name.localeCompare(b.name));
  const wanted = decodeURIComponent((location.hash.match(/tenant=([^&]*)/) || [])[1] || "");
  const byName = tenants.find((t) => t.name === wanted);
  if (!tenants.some((t) => t.id === architect.tenantId)) {
    architect.tenantId = byName ? byName.id : (tenants[0] ? tenants[0].id : null);
  }
  picker.replaceChildren(...tenants.map((t) => el("option", {value: t.id, selected: t.id === architect.tenantId}, t.name)));
}

function draw(refit) {
  const data = architect.data;
  drawTenantPicker(data);
  drawPhysical(data);
  architect.model = tenantModel(data, architect.tenantId);
  drawTree(architect.model);
  drawDiagram(architect.model, refit);
  showDetails();
}

function setLive(text, ok) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.dataset.ok = ok ? "yes" : "no";
}

async function refresh() {
  const started = performance.now();
  architect.data = await readAll();
  const read = performance.now();
  architect.version = [architect.data.status.seq, architect.data.status.state_version];
  architect.lastRefresh = Date.now();
  architect.refreshes += 1;
  draw();
  architect.timing = {readMs: read - started, drawMs: performance.now() - read};
  if (architect.firstDrawMs === undefined) architect.firstDrawMs = performance.now();
  document.body.dataset.refreshes = String(architect.refreshes);
}

async function poll() {
  try {
    const status = await api("/v1/status");
    const version = [status.seq, status.state_version];
    const moved = !architect.version || version[0] !== architect.version[0] || version[1] !== architect.version[1];
    if (moved || Date.now() - architect.lastRefresh > SLOW_REFRESH_MS) await refresh();
    setLive("live", true);
  } catch (err) {
    if (err instanceof Unauthorized) {
      document.getElementById("login").hidden = false;
      setLive("token needed", false);
    } else {
      setLive("controller unreachable", false);
    }
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("tenant").addEventListener("change", (ev) => {
  architect.tenantId = ev.target.value;
  const t = architect.data.tenants.items.find((x) => x.id === architect.tenantId);
  if (t) history.replaceState(null, "", "#tenant=" + encodeURIComponent(t.name));
  architect.selected = null;
  draw(true);
});

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  architect.token = document.getElementById("token").value.trim();
  try {
    await api("/v1/status");
    sessionStorage.setItem("canopy-token", architect.token);
    document.getElementById("login").hidden = true;
    document.getElementById("login-error").textContent = "";
    architect.version = null;
  } catch (err) {
    document.getElementById("login-error").textContent = "that token was not accepted";
  }
});

window.addEventListener("resize", () => {
  if (architect.cy) {
    architect.cy.resize();
    architect.cy.fit(undefined, 20);
  }
});

poll();
