// berth console: a single page over berth's public APIs (/apis, /v2, /auth), with the user's
// own access token, so it can do nothing the CLI could not.
//
// Rules this file keeps: registry data only ever reaches the page as text (textContent and
// attribute values set through the DOM, never innerHTML), so a tag name or a label value
// cannot become markup; the token lives in sessionStorage and is sent only in the
// Authorization header, never in a URL; pages are addressed by the URL fragment.
"use strict";

const IMAGE_API = "/apis/image.openshift.io/v1";
const ACCEPT_MANIFESTS = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const TOKEN_KEY = "berth.console.token";
const TOKEN_ID_KEY = "berth.console.tokenId";
const NEXT_KEY = "berth.console.next"; // the page asked for before the login page

// ---- state

const state = {
  me: null, // whoami: {name, clusterRoles, namespaces}
  authOn: false, // the server wants credentials (whoami without a token was refused)
  renderedRv: 0, // the newest resourceVersion the page shows; older watch events are no news
  watch: null, // {key, ctl}
  refreshTimer: null,
  sort: { key: "name", dir: 1 },
  notice: null, // {text, kind} shown once above the next page render
};
const imageInfoCache = new Map(); // "<ns>/<stream>@<digest>" -> Promise<info>; images never change

// ---- DOM helpers: text only

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function link(href, text, attrs) {
  return h("a", Object.assign({ href }, attrs || {}), text);
}

function route(...parts) {
  // Digests keep their readable `sha256:` (a colon is fine in a fragment).
  return "#/" + parts.map((p) => encodeURIComponent(p).replace(/%3A/g, ":")).join("/");
}

function shortDigest(d) {
  if (!d) return "";
  const [alg, hex] = d.split(":");
  return hex ? `${alg}:${hex.slice(0, 12)}` : d;
}

function fmtSize(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

function timeEl(t) {
  return t ? h("time", { datetime: t }, fmtTime(t)) : "—";
}

function announce(text) {
  document.getElementById("live").textContent = text;
}

// ---- API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function headers(extra) {
  // X-Requested-With: the server then sends no Basic challenge, so the browser shows no
  // password dialog of its own.
  const hd = Object.assign({ "X-Requested-With": "berth-console" }, extra || {});
  const t = token();
  if (t && !hd.Authorization) hd.Authorization = "Bearer " + t;
  return hd;
}

async function errorOf(r) {
  let message = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    if (body.message) message = body.message; // Kubernetes Status
    else if (body.errors && body.errors.length) message = body.errors.map((e) => e.message || e.code).join("; "); // OCI
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(r.status, message);
}

async function request(method, path, { body, accept, auth } = {}) {
  const opts = {
    method,
    headers: headers(Object.assign({ Accept: accept || "application/json" }, auth ? { Authorization: auth } : {})),
    credentials: "omit",
    cache: "no-store",
  };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, opts);
  if (r.status === 401 && token() && !auth) {
    // The token expired or was revoked: start over at the login page.
    forgetToken();
    state.me = null;
    location.hash = "#/login";
    throw new ApiError(401, "your session ended: log in again");
  }
  if (!r.ok) throw await errorOf(r);
  return r;
}

async function getJSON(path, opts) {
  return (await request("GET", path, opts)).json();
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_ID_KEY);
}

async function whoami() {
  try {
    state.me = await getJSON("/auth/v1/whoami");
    state.authOn = !!token();
  } catch (e) {
    if (e.status !== 401) throw e;
    state.me = null;
    state.authOn = true;
  }
}

// What the signed-in user may do in a namespace (the roles of README's table); the server
// decides anyway, this only keeps controls away from users who would be refused.
function mayEdit(ns) {
  const me = state.me;
  if (!me) return false;
  if ((me.clusterRoles || []).includes("cluster-admin")) return true;
  const role = (me.namespaces || {})[ns];
  return role === "edit" || role === "admin";
}

function isPath(ns, ...rest) {
  return [IMAGE_API, "namespaces", ns, ...rest].join("/");
}

function streamTagsOf(is) {
  const spec = new Map(((is.spec || {}).tags || []).map((t) => [t.name, t]));
  const status = new Map(((is.status || {}).tags || []).map((t) => [t.tag, t]));
  const names = [...new Set([...spec.keys(), ...status.keys()])].sort();
  return names.map((name) => ({ name, spec: spec.get(name) || null, status: status.get(name) || null }));
}

function topOf(tag) {
  return ((tag.status || {}).items || [])[0] || null;
}

function lastUpdate(is) {
  let best = "";
  for (const t of (is.status || {}).tags || []) {
    const c = ((t.items || [])[0] || {}).created || "";
    if (c > best) best = c;
  }
  return best;
}

function repoOf(is) {
  const s = is.status || {};
  return s.publicDockerImageRepository || s.dockerImageRepository || `${location.host}/${is.metadata.namespace}/${is.metadata.name}`;
}

function rv(obj) {
  const v = Number(((obj || {}).metadata || {}).resourceVersion);
  return Number.isFinite(v) ? v : 0;
}

// Size and platforms of an image, from its manifest (and, for a list, its children's).
function imageInfo(ns, stream, digest) {
  const key = `${ns}/${stream}@${digest}`;
  if (!imageInfoCache.has(key)) {
    const p = (async () => {
      const m = await manifest(ns, stream, digest);
      if (m.manifests) {
        const children = await Promise.all(
          m.manifests.map(async (c) => {
            const child = await manifest(ns, stream, c.digest).catch(() => null);
            return child ? manifestSize(child) : 0;
          })
        );
        return {
          size: children.reduce((a, b) => a + b, 0),
          platforms: m.manifests.map((c) => platformName(c.platform)).filter(Boolean),
          list: true,
        };
      }
      let platforms = [];
      if (m.config && m.config.digest) {
        const cfg = await blobJSON(ns, stream, m.config.digest).catch(() => null);
        if (cfg && cfg.os) platforms = [platformName(cfg)];
      }
      return { size: manifestSize(m), platforms, list: false };
    })();
    p.catch(() => imageInfoCache.delete(key));
    imageInfoCache.set(key, p);
  }
  return imageInfoCache.get(key);
}

function manifestSize(m) {
  return ((m.config || {}).size || 0) + (m.layers || []).reduce((a, l) => a + (l.size || 0), 0);
}

function platformName(p) {
  if (!p) return "";
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

async function manifest(ns, stream, ref) {
  return getJSON(`/v2/${ns}/${stream}/manifests/${ref}`, { accept: ACCEPT_MANIFESTS });
}

async function blobJSON(ns, stream, digest) {
  return getJSON(`/v2/${ns}/${stream}/blobs/${digest}`, { accept: "*/*" });
}

// ---- live updates: the watch API, read as a stream of JSON lines

function watchStreams(ns, onlyName) {
  const path = ns ? isPath(ns, "imagestreams") : `${IMAGE_API}/imagestreams`;
  const key = `${path}|${onlyName || ""}|${token() || ""}`;
  if (state.watch && state.watch.key === key) return;
  stopWatch();
  const ctl = new AbortController();
  state.watch = { key, ctl };
  (async () => {
    let backoff = 1000;
    while (!ctl.signal.aborted) {
      let connected = false;
      try {
        const r = await fetch(`${path}?watch=1`, { headers: headers(), signal: ctl.signal, credentials: "omit", cache: "no-store" });
        if (!r.ok || !r.body) throw new Error(`watch: ${r.status}`);
        connected = true;
        backoff = 1000;
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let nl;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line) onWatchEvent(JSON.parse(line), onlyName);
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      // The watch ended (a restart, a 410 for a slow reader): look again, then watch anew. A
      // watch refused outright is retried ever more slowly, without redrawing the page.
      await new Promise((res) => setTimeout(res, backoff));
      if (connected && !ctl.signal.aborted) scheduleRefresh();
      if (!connected) backoff = Math.min(backoff * 2, 30000);
    }
  })();
}

function stopWatch() {
  if (state.watch) state.watch.ctl.abort();
  state.watch = null;
}

function onWatchEvent(ev, onlyName) {
  if (ev.type === "BOOKMARK") return;
  if (ev.type === "ERROR") {
    scheduleRefresh();
    return;
  }
  const obj = ev.object || {};
  if (onlyName && (obj.metadata || {}).name !== onlyName) return;
  // The first events of a watch replay what exists: no news unless newer than the page.
  if (ev.type !== "DELETED" && rv(obj) <= state.renderedRv) return;
  scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => render(true), 150);
}

// ---- pages

function crumbs(items) {
  const ol = document.getElementById("crumbs");
  ol.replaceChildren(
    ...items.map(([text, href], i) =>
      h("li", {}, i === items.length - 1 ? h("span", { "aria-current": "page" }, text) : link(href, text))
    )
  );
}

function userBox() {
  const box = document.getElementById("user");
  if (state.me && state.authOn) {
    box.replaceChildren(
      h("span", { class: "who" }, "Signed in as ", h("strong", { id: "whoami" }, state.me.name)),
      h("button", { type: "button", id: "logout", onclick: logout }, "Log out")
    );
  } else if (state.me) {
    box.replaceChildren(h("span", { class: "who", id: "whoami" }, "no authentication (open server)"));
  } else {
    box.replaceChildren();
  }
}

function noticeEl() {
  const n = state.notice;
  state.notice = null;
  // An empty text node when there is nothing to say: replaceChildren would print `null`.
  return n ? h("p", { class: `notice ${n.kind}`, role: n.kind === "error" ? "alert" : "status", id: "notice" }, n.text) : document.createTextNode("");
}

async function pageLogin(main) {
  stopWatch();
  crumbs([["Log in", "#/login"]]);
  const err = h("p", { class: "notice error", role: "alert", id: "login-error", hidden: true });
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to berth"),
    err,
    h("label", { for: "login-user" }, "User"),
    user,
    h("label", { for: "login-password" }, "Password"),
    pass,
    h("button", { type: "submit", id: "login-submit" }, "Log in")
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = true;
    try {
      const basic = "Basic " + base64(`${user.value}:${pass.value}`);
      const r = await request("POST", "/auth/v1/tokens", {
        body: { description: "berth console", expiresInSeconds: 12 * 3600 },
        auth: basic,
      });
      const created = await r.json();
      sessionStorage.setItem(TOKEN_KEY, created.token);
      sessionStorage.setItem(TOKEN_ID_KEY, created.id);
      pass.value = "";
      await whoami();
      const next = sessionStorage.getItem(NEXT_KEY) || "#/";
      sessionStorage.removeItem(NEXT_KEY);
      location.hash = next;
    } catch (x) {
      err.textContent = x.status === 401 ? "Wrong user name or password." : `Login failed: ${x.message}`;
      err.hidden = false;
      pass.value = "";
      pass.focus();
    }
  });
  main.replaceChildren(form);
}

function base64(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

async function logout() {
  const id = sessionStorage.getItem(TOKEN_ID_KEY);
  stopWatch();
  if (id) {
    // Revoke it on the server too, as `berth logout` does.
    await request("DELETE", `/auth/v1/tokens/${encodeURIComponent(id)}`).catch(() => {});
  }
  forgetToken();
  state.me = null;
  location.hash = "#/login";
  render();
}

async function pageNamespaces(main) {
  crumbs([["Namespaces", "#/"]]);
  const [nsList, streams] = await Promise.all([
    getJSON("/api/v1/namespaces"),
    getJSON(`${IMAGE_API}/imagestreams`),
  ]);
  state.renderedRv = rv(streams);
  const per = new Map();
  for (const is of streams.items || []) {
    const ns = is.metadata.namespace;
    const p = per.get(ns) || { streams: 0, updated: "" };
    p.streams++;
    const u = lastUpdate(is);
    if (u > p.updated) p.updated = u;
    per.set(ns, p);
  }
  const names = [...new Set([...(nsList.items || []).map((n) => n.metadata.name), ...per.keys()])].sort();
  const rows = names.map((ns) => {
    const p = per.get(ns) || { streams: 0, updated: "" };
    return h("tr", {}, h("th", { scope: "row" }, link(route("ns", ns), ns)), h("td", { class: "num" }, p.streams), h("td", {}, timeEl(p.updated)));
  });
  main.replaceChildren(
    h("h1", {}, "Namespaces"),
    noticeEl(),
    names.length
      ? h(
          "table",
          { id: "namespaces" },
          h("caption", { class: "sr-only" }, "Namespaces holding image streams"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Namespace"), h("th", { scope: "col", class: "num" }, "Streams"), h("th", { scope: "col" }, "Last update"))),
          h("tbody", {}, rows)
        )
      : h("p", {}, "No image streams yet. Push an image (", h("code", {}, `docker push ${location.host}/<namespace>/<stream>:<tag>`), ") or import one.")
  );
  watchStreams(null);
}

const STREAM_COLUMNS = [
  { key: "name", label: "Stream" },
  { key: "tags", label: "Tags", num: true },
  { key: "updated", label: "Last update" },
  { key: "size", label: "Size", num: true },
];

async function pageStreams(main, ns) {
  crumbs([["Namespaces", "#/"], [ns, route("ns", ns)]]);
  const list = await getJSON(isPath(ns, "imagestreams"));
  state.renderedRv = rv(list);
  const rows = (list.items || []).map((is) => ({
    is,
    name: is.metadata.name,
    tags: streamTagsOf(is).length,
    updated: lastUpdate(is),
    size: null,
  }));
  const table = h("table", { id: "streams" });
  const draw = () => {
    const { key, dir } = state.sort;
    rows.sort((a, b) => {
      const x = a[key] === null ? -1 : a[key];
      const y = b[key] === null ? -1 : b[key];
      return (x < y ? -1 : x > y ? 1 : 0) * dir || (a.name < b.name ? -1 : 1);
    });
    const head = STREAM_COLUMNS.map((c) => {
      const active = state.sort.key === c.key;
      const sort = active ? (state.sort.dir > 0 ? "ascending" : "descending") : "none";
      return h(
        "th",
        { scope: "col", "aria-sort": sort, class: c.num ? "num" : null },
        h(
          "button",
          {
            type: "button",
            class: "sort",
            id: `sort-${c.key}`,
            onclick: () => {
              state.sort = { key: c.key, dir: active ? -state.sort.dir : c.key === "name" ? 1 : -1 };
              draw();
              document.getElementById(`sort-${c.key}`).focus();
            },
          },
          c.label,
          h("span", { "aria-hidden": "true", class: "arrow" }, active ? (state.sort.dir > 0 ? " ▲" : " ▼") : "")
        )
      );
    });
    table.replaceChildren(
      h("caption", { class: "sr-only" }, `Image streams in ${ns}; sort with the column buttons`),
      h("thead", {}, h("tr", {}, head)),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            { "data-stream": r.name },
            h("th", { scope: "row" }, link(route("ns", ns, r.name), r.name)),
            h("td", { class: "num" }, r.tags),
            h("td", {}, timeEl(r.updated)),
            h("td", { class: "num", "data-size": r.size === null ? "" : r.size }, r.size === null ? "…" : fmtSize(r.size))
          )
        )
      )
    );
  };
  draw();
  main.replaceChildren(
    h("div", { class: "title" }, h("h1", {}, `Image streams in ${ns}`), mayEdit(ns) ? link(route("import", ns), "Import an image", { class: "button", id: "import-link" }) : null),
    noticeEl(),
    rows.length ? table : h("p", {}, "This namespace has no image streams.")
  );
  watchStreams(ns);
  // Sizes (the current image of every tag, each counted once per stream) arrive later; the
  // table is drawn again with them.
  Promise.all(
    rows.map(async (r) => {
      const digests = new Set(streamTagsOf(r.is).map((t) => (topOf(t) || {}).image).filter(Boolean));
      const infos = await Promise.all([...digests].map((d) => imageInfo(ns, r.name, d).catch(() => null)));
      r.size = infos.reduce((a, i) => a + (i ? i.size : 0), 0);
    })
  ).then(() => {
    const focused = document.activeElement && document.activeElement.id;
    draw();
    table.dataset.sizes = "loaded";
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  });
}

function sourceOf(tag, stream, ns) {
  const from = (tag.spec || {}).from;
  if (!from) return h("span", { class: "muted" }, "pushed");
  const fromNs = from.namespace && from.namespace !== ns ? `${from.namespace}/` : "";
  if (from.kind === "ImageStreamTag") {
    const [s, t] = from.name.includes(":") ? from.name.split(":") : [stream, from.name];
    const same = !fromNs && s === stream;
    return h(
      "span",
      { class: "arrow-src", title: "tracks this tag: follows it when it moves" },
      h("span", { "aria-hidden": "true" }, "→ "),
      "tracks ",
      same ? link(route("ns", ns, stream, "tag", t), t) : `${fromNs}${from.name}`
    );
  }
  if (from.kind === "ImageStreamImage") {
    return h("span", { class: "arrow-src", title: "set from a fixed image" }, h("span", { "aria-hidden": "true" }, "← "), `${fromNs}${from.name.split("@")[0]}@${shortDigest(from.name.split("@")[1])}`);
  }
  return h("span", { class: "arrow-src", title: "imported from another registry" }, h("span", { "aria-hidden": "true" }, "⇐ "), "imports ", h("code", {}, from.name));
}

function importStatus(tag) {
  const conds = (tag.status || {}).conditions || [];
  const failed = conds.find((c) => c.type === "ImportSuccess" && c.status === "False");
  if (failed) return h("span", { class: "bad", title: failed.message || "" }, "import failed: ", failed.message || failed.reason || "");
  const from = (tag.spec || {}).from;
  if (from && from.kind === "DockerImage") {
    const top = topOf(tag);
    return top ? h("span", { class: "ok" }, "imported") : h("span", { class: "muted" }, "pending");
  }
  return "";
}

// Tag -> the tags of the same stream that track it (spec tags from an ImageStreamTag).
function trackersOf(is) {
  const name = is.metadata.name;
  const trackedBy = new Map();
  for (const t of streamTagsOf(is)) {
    const from = (t.spec || {}).from;
    if (from && from.kind === "ImageStreamTag" && (!from.namespace || from.namespace === is.metadata.namespace)) {
      const [s, src] = from.name.includes(":") ? from.name.split(":") : [name, from.name];
      if (s === name) trackedBy.set(src, [...(trackedBy.get(src) || []), t.name]);
    }
  }
  return trackedBy;
}

async function pageStream(main, ns, name) {
  crumbs([["Namespaces", "#/"], [ns, route("ns", ns)], [name, route("ns", ns, name)]]);
  const is = await getJSON(isPath(ns, "imagestreams", name));
  state.renderedRv = rv(is);
  const tags = streamTagsOf(is);
  const trackedBy = trackersOf(is);
  const rows = tags.map((t) => {
    const top = topOf(t);
    const scheduled = !!(((t.spec || {}).importPolicy || {}).scheduled);
    const followers = trackedBy.get(t.name) || [];
    return h(
      "tr",
      { "data-tag": t.name },
      h("th", { scope: "row" }, link(route("ns", ns, name, "tag", t.name), t.name)),
      h("td", {}, top && top.image ? link(`${route("ns", ns, name, "image", top.image)}?tag=${encodeURIComponent(t.name)}`, shortDigest(top.image), { class: "digest" }) : h("span", { class: "muted" }, "none")),
      h("td", {}, timeEl(top && top.created)),
      h(
        "td",
        {},
        sourceOf(t, name, ns),
        followers.length ? h("div", { class: "muted" }, h("span", { "aria-hidden": "true" }, "← "), "tracked by ", followers.join(", ")) : null
      ),
      h("td", {}, importStatus(t)),
      h("td", {}, scheduled ? h("span", { class: "badge" }, "scheduled") : "")
    );
  });
  main.replaceChildren(
    h("div", { class: "title" }, h("h1", {}, `${ns}/${name}`), mayEdit(ns) ? link(`${route("import", ns)}?stream=${encodeURIComponent(name)}`, "Import an image", { class: "button", id: "import-link" }) : null),
    noticeEl(),
    h("p", {}, "Repository: ", h("code", { id: "repository" }, repoOf(is))),
    tags.length
      ? h(
          "table",
          { id: "tags" },
          h("caption", { class: "sr-only" }, `Tags of ${name}`),
          h(
            "thead",
            {},
            h("tr", {}, ["Tag", "Current image", "Updated", "Source", "Import", "Scheduled"].map((c) => h("th", { scope: "col" }, c)))
          ),
          h("tbody", {}, rows)
        )
      : h("p", {}, "No tags.")
  );
  watchStreams(ns, name);
}

async function rollback(ns, stream, tag, digest) {
  // What `berth tag <stream>@<digest> <stream>:<tag>` sends (src/cli/tag.rs).
  const body = {
    kind: "ImageStreamTag",
    apiVersion: "image.openshift.io/v1",
    metadata: { name: `${stream}:${tag}`, namespace: ns },
    tag: {
      name: tag,
      reference: false,
      importPolicy: { insecure: false, scheduled: false, importMode: "" },
      referencePolicy: { type: "Source" },
      from: { kind: "ImageStreamImage", name: `${stream}@${digest}` },
    },
  };
  await request("PUT", isPath(ns, "imagestreamtags", `${stream}:${tag}`), { body });
}

async function pageTag(main, ns, name, tagName) {
  crumbs([["Namespaces", "#/"], [ns, route("ns", ns)], [name, route("ns", ns, name)], [`:${tagName}`, route("ns", ns, name, "tag", tagName)]]);
  const is = await getJSON(isPath(ns, "imagestreams", name));
  state.renderedRv = rv(is);
  const tag = streamTagsOf(is).find((t) => t.name === tagName);
  if (!tag) {
    main.replaceChildren(h("h1", {}, `${name}:${tagName}`), noticeEl(), h("p", { id: "no-tag" }, "This tag does not exist (any more)."), link(route("ns", ns, name), `Back to ${name}`));
    watchStreams(ns, name);
    return;
  }
  const items = (tag.status || {}).items || [];
  const editable = mayEdit(ns);
  const followers = trackersOf(is).get(tagName) || [];
  const status = h("p", { role: "status", class: "muted", id: "action-status" });
  const rows = items.map((item, i) => {
    const info = h("td", { class: "num" }, "…");
    const plats = h("td", {}, "…");
    if (item.image) {
      imageInfo(ns, name, item.image)
        .then((x) => {
          info.textContent = fmtSize(x.size);
          plats.textContent = x.platforms.join(", ") || "—";
        })
        .catch(() => {
          info.textContent = "—";
          plats.textContent = "—";
        });
    } else {
      info.textContent = "—";
      plats.textContent = "—";
    }
    let action = "";
    if (i === 0) action = h("span", { class: "badge current" }, "current");
    else if (editable && item.image) {
      action = h(
        "button",
        {
          type: "button",
          class: "rollback",
          id: `rollback-${i}`,
          "aria-label": `Roll back ${tagName} to ${shortDigest(item.image)}`,
          onclick: async (e) => {
            e.target.disabled = true;
            status.textContent = "Rolling back…";
            try {
              await rollback(ns, name, tagName, item.image);
              state.notice = { kind: "ok", text: `${name}:${tagName} now points to ${shortDigest(item.image)}.` };
              await render(true);
            } catch (x) {
              status.textContent = `Rollback refused: ${x.message}`;
              e.target.disabled = false;
            }
          },
        },
        "Roll back to this"
      );
    }
    return h(
      "tr",
      { "data-image": item.image || "" },
      h("td", { class: "num" }, items.length - i),
      h("td", {}, item.image ? link(`${route("ns", ns, name, "image", item.image)}?tag=${encodeURIComponent(tagName)}`, shortDigest(item.image), { class: "digest", title: item.image }) : item.dockerImageReference || "—"),
      h("td", {}, timeEl(item.created)),
      info,
      plats,
      h("td", {}, action)
    );
  });
  const del = editable ? deleteControl(ns, name, tagName) : null;
  main.replaceChildren(
    h("div", { class: "title" }, h("h1", {}, `${name}:${tagName}`), del),
    noticeEl(),
    status,
    h(
      "p",
      {},
      "Source: ",
      sourceOf(tag, name, ns),
      " ",
      importStatus(tag),
      followers.length ? [h("span", { class: "muted" }, " · ", h("span", { "aria-hidden": "true" }, "← "), "tracked by "), followers.map((f, i) => [i ? ", " : "", link(route("ns", ns, name, "tag", f), f)])] : null
    ),
    h("h2", { id: "history-title" }, "History (newest first)"),
    items.length
      ? h(
          "table",
          { id: "history", "aria-labelledby": "history-title" },
          h("thead", {}, h("tr", {}, ["#", "Image", "Created", "Size", "Platforms", ""].map((c, i) => h("th", { scope: "col", class: i === 0 || i === 3 ? "num" : null }, c || h("span", { class: "sr-only" }, "Actions"))))),
          h("tbody", {}, rows)
        )
      : h("p", {}, "No image yet.")
  );
  watchStreams(ns, name);
}

function deleteControl(ns, name, tagName) {
  const box = h("div", { class: "danger" });
  const ask = () => {
    const yes = h(
      "button",
      {
        type: "button",
        class: "destructive",
        id: "delete-confirm",
        onclick: async () => {
          try {
            await request("DELETE", isPath(ns, "imagestreamtags", `${name}:${tagName}`));
            state.notice = { kind: "ok", text: `Deleted tag ${name}:${tagName}.` };
            location.hash = route("ns", ns, name);
          } catch (x) {
            box.replaceChildren(h("p", { role: "alert", class: "notice error" }, `Delete refused: ${x.message}`), start());
          }
        },
      },
      `Delete ${tagName}`
    );
    box.replaceChildren(
      h("span", { id: "delete-question" }, `Delete tag ${name}:${tagName} and its history?`),
      yes,
      h("button", { type: "button", id: "delete-cancel", onclick: () => { box.replaceChildren(start()); document.getElementById("delete-tag").focus(); } }, "Cancel")
    );
    yes.focus();
  };
  const start = () => h("button", { type: "button", class: "destructive", id: "delete-tag", onclick: ask }, "Delete tag");
  box.append(start());
  return box;
}

function pullCommands(repo, ref, sep, stream) {
  const target = `${repo}${sep}${ref}`;
  const local = sep === ":" ? `${stream}:${ref}` : stream;
  return [
    ["docker", `docker pull ${target}`],
    ["podman", `podman pull ${target}`],
    ["skopeo", `skopeo copy docker://${target} oci:${local}`],
  ];
}

function copyField(id, label, text) {
  const input = h("input", { id, readonly: true, value: text, class: "cmd", "aria-label": label });
  const button = h(
    "button",
    {
      type: "button",
      class: "copy",
      "aria-label": `Copy: ${label}`,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(text);
        } catch (_) {
          // No clipboard API (a page not on https or loopback): copy the selection instead.
          input.select();
          document.execCommand("copy");
        }
        announce(`Copied: ${text}`);
      },
    },
    "Copy"
  );
  return h("div", { class: "copyrow" }, h("span", { class: "tool" }, label), input, button);
}

// A table cell with an image's size (config and layers), filled in when known.
function sizeCell(ns, stream, digest) {
  const td = h("td", { class: "num" }, "…");
  imageInfo(ns, stream, digest)
    .then((x) => (td.textContent = fmtSize(x.size)))
    .catch(() => (td.textContent = "—"));
  return td;
}

async function pageImage(main, ns, name, digest, params) {
  const tagName = params.get("tag");
  const trail = [["Namespaces", "#/"], [ns, route("ns", ns)], [name, route("ns", ns, name)]];
  if (tagName) trail.push([`:${tagName}`, route("ns", ns, name, "tag", tagName)]);
  trail.push([`@${shortDigest(digest)}`, route("ns", ns, name, "image", digest)]);
  crumbs(trail);
  const [is, m, referrers] = await Promise.all([
    getJSON(isPath(ns, "imagestreams", name)),
    manifest(ns, name, digest),
    getJSON(`/v2/${ns}/${name}/referrers/${digest}`, { accept: "application/vnd.oci.image.index.v1+json" }).catch(() => ({ manifests: [] })),
  ]);
  state.renderedRv = rv(is);
  const repo = repoOf(is);
  const sections = [];
  const pointing = streamTagsOf(is).filter((t) => (topOf(t) || {}).image === digest).map((t) => t.name);
  sections.push(
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Digest"),
      h("dd", {}, h("code", { id: "image-digest" }, digest)),
      h("dt", {}, "Media type"),
      h("dd", {}, m.mediaType || (m.manifests ? "application/vnd.oci.image.index.v1+json" : "application/vnd.oci.image.manifest.v1+json")),
      h("dt", {}, "Current in tags"),
      h("dd", {}, pointing.length ? pointing.map((t, i) => [i ? ", " : "", link(route("ns", ns, name, "tag", t), t)]) : "none")
    )
  );

  const pulls = h("section", { "aria-labelledby": "pull-title" }, h("h2", { id: "pull-title" }, "Pull"));
  const byTag = tagName || pointing[0];
  if (byTag) pullCommands(repo, byTag, ":", name).forEach(([tool, cmd]) => pulls.append(copyField(`pull-tag-${tool}`, `${tool} by tag`, cmd)));
  pullCommands(repo, digest, "@", name).forEach(([tool, cmd]) => pulls.append(copyField(`pull-digest-${tool}`, `${tool} by digest`, cmd)));
  sections.push(pulls);

  if (m.manifests) {
    sections.push(
      h(
        "section",
        { "aria-labelledby": "platforms-title" },
        h("h2", { id: "platforms-title" }, "Platforms"),
        h(
          "table",
          { id: "platforms" },
          h("thead", {}, h("tr", {}, ["Platform", "Manifest", "Size"].map((c, i) => h("th", { scope: "col", class: i === 2 ? "num" : null }, c)))),
          h(
            "tbody",
            {},
            m.manifests.map((c) =>
              h(
                "tr",
                {},
                h("td", {}, platformName(c.platform) || "—"),
                h("td", {}, link(route("ns", ns, name, "image", c.digest), shortDigest(c.digest), { class: "digest", title: c.digest })),
                sizeCell(ns, name, c.digest)
              )
            )
          )
        )
      )
    );
  } else {
    const cfg = m.config && m.config.digest ? await blobJSON(ns, name, m.config.digest).catch(() => ({})) : {};
    const c = cfg.config || {};
    const list = (v) => (Array.isArray(v) && v.length ? h("code", {}, JSON.stringify(v)) : "—");
    const kv = (obj) => {
      const entries = Object.entries(obj || {});
      return entries.length ? h("ul", { class: "kv" }, entries.map(([k, v]) => h("li", {}, h("code", {}, k), v === undefined || (v && typeof v === "object") ? "" : ` = ${v}`))) : "—";
    };
    sections.push(
      h(
        "section",
        { "aria-labelledby": "config-title" },
        h("h2", { id: "config-title" }, "Configuration"),
        h(
          "dl",
          { class: "facts", id: "config" },
          h("dt", {}, "Platform"),
          h("dd", {}, platformName(cfg) || "—"),
          h("dt", {}, "Created"),
          h("dd", {}, timeEl(cfg.created)),
          h("dt", {}, "Entrypoint"),
          h("dd", {}, list(c.Entrypoint)),
          h("dt", {}, "Cmd"),
          h("dd", {}, list(c.Cmd)),
          h("dt", {}, "User"),
          h("dd", {}, c.User || "—"),
          h("dt", {}, "Working directory"),
          h("dd", {}, c.WorkingDir || "—"),
          h("dt", {}, "Ports"),
          h("dd", {}, Object.keys(c.ExposedPorts || {}).join(", ") || "—"),
          h("dt", {}, "Environment"),
          h("dd", {}, (c.Env || []).length ? h("ul", { class: "kv" }, c.Env.map((e) => h("li", {}, h("code", {}, e)))) : "—"),
          h("dt", {}, "Labels"),
          h("dd", { id: "labels" }, kv(c.Labels))
        )
      )
    );
    const history = (cfg.history || []).filter((x) => !x.empty_layer);
    const layers = m.layers || [];
    sections.push(
      h(
        "section",
        { "aria-labelledby": "layers-title" },
        h("h2", { id: "layers-title" }, `Layers (${layers.length}, ${fmtSize(manifestSize(m))} with the config)`),
        h(
          "table",
          { id: "layers" },
          h("thead", {}, h("tr", {}, ["#", "Digest", "Size", "Created by"].map((x, i) => h("th", { scope: "col", class: i === 0 || i === 2 ? "num" : null }, x)))),
          h(
            "tbody",
            {},
            layers.map((l, i) =>
              h(
                "tr",
                {},
                h("td", { class: "num" }, i + 1),
                h("td", {}, h("code", { title: l.digest }, shortDigest(l.digest))),
                h("td", { class: "num" }, fmtSize(l.size)),
                h("td", { class: "created-by" }, (history[i] || {}).created_by || "—")
              )
            )
          )
        )
      )
    );
  }
  const refs = referrers.manifests || [];
  sections.push(
    h(
      "section",
      { "aria-labelledby": "referrers-title" },
      h("h2", { id: "referrers-title" }, "Referrers (signatures, SBOMs, attestations)"),
      refs.length
        ? h(
            "table",
            { id: "referrers" },
            h("thead", {}, h("tr", {}, ["Artifact type", "Digest", "Size"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, refs.map((r) => h("tr", {}, h("td", {}, r.artifactType || r.mediaType || "—"), h("td", {}, link(route("ns", ns, name, "image", r.digest), shortDigest(r.digest), { class: "digest", title: r.digest })), h("td", { class: "num" }, fmtSize(r.size)))))
          )
        : h("p", { id: "no-referrers" }, "None.")
    )
  );
  main.replaceChildren(h("h1", {}, `${name}@${shortDigest(digest)}`), noticeEl(), ...sections);
  watchStreams(ns, name);
}

async function pageImport(main, ns, params) {
  stopWatch();
  crumbs([["Namespaces", "#/"], [ns, route("ns", ns)], ["Import", route("import", ns)]]);
  const field = (id, label, attrs, hint) => [h("label", { for: id }, label), h("input", Object.assign({ id, name: id }, attrs)), hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null];
  const check = (id, label) => h("div", { class: "check" }, h("input", { id, name: id, type: "checkbox" }), h("label", { for: id }, label));
  const result = h("div", { id: "import-result", role: "status", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "import-title" },
    h("h1", { id: "import-title" }, `Import an image into ${ns}`),
    field("import-from", "Source image (pull spec)", { required: true, placeholder: "registry.example/team/app:1.0", "aria-describedby": "import-from-hint", autocomplete: "off" }, "Any registry the server allows imports from."),
    field("import-stream", "Image stream", { required: true, value: params.get("stream") || "", pattern: "[a-z0-9]+([._-][a-z0-9]+)*", autocomplete: "off" }),
    field("import-tag", "Tag", { required: true, value: "latest", autocomplete: "off" }),
    check("import-insecure", "Allow plain HTTP or unverified TLS"),
    check("import-scheduled", "Re-import periodically (scheduled)"),
    check("import-all-platforms", "Keep every platform of a manifest list (PreserveOriginal)"),
    h("button", { type: "submit", id: "import-submit" }, "Import")
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (id) => document.getElementById(id);
    const stream = v("import-stream").value.trim();
    const tag = v("import-tag").value.trim();
    const policy = {
      insecure: v("import-insecure").checked,
      scheduled: v("import-scheduled").checked,
      importMode: v("import-all-platforms").checked ? "PreserveOriginal" : "",
    };
    // What `berth import-image <stream>:<tag> --from <spec> --confirm` sends (src/cli/import.rs).
    const body = {
      kind: "ImageStreamImport",
      apiVersion: "image.openshift.io/v1",
      metadata: { name: stream, namespace: ns },
      spec: {
        import: true,
        images: [{ from: { kind: "DockerImage", name: v("import-from").value.trim() }, to: { name: tag }, importPolicy: policy, referencePolicy: { type: "Source" } }],
      },
    };
    v("import-submit").disabled = true;
    result.replaceChildren(h("p", {}, "Importing…"));
    try {
      const r = await (await request("POST", isPath(ns, "imagestreamimports"), { body })).json();
      const img = ((r.status || {}).images || [])[0] || {};
      const st = img.status || {};
      if (st.status === "Success") {
        const digest = (img.image || {}).metadata ? img.image.metadata.name : "";
        result.replaceChildren(
          h("p", { class: "notice ok", id: "import-ok" }, `Imported ${shortDigest(digest)} into ${stream}:${tag}.`),
          link(route("ns", ns, stream, "tag", tag), `Open ${stream}:${tag}`, { id: "import-open" })
        );
      } else {
        result.replaceChildren(h("p", { class: "notice error", id: "import-failed", role: "alert" }, `Import failed: ${st.message || st.reason || "unknown error"}`));
      }
    } catch (x) {
      result.replaceChildren(h("p", { class: "notice error", id: "import-failed", role: "alert" }, `Import refused: ${x.message}`));
    } finally {
      v("import-submit").disabled = false;
    }
  });
  main.replaceChildren(form, result);
}

// ---- router

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

let renderSeq = 0;

async function render(live) {
  const seq = ++renderSeq;
  const main = document.getElementById("main");
  const { parts, params } = parseHash();
  const askedFor = location.hash;
  const focusId = live && document.activeElement ? document.activeElement.id : null;
  const scroll = window.scrollY;
  const staging = document.createElement("div");
  try {
    if (!state.me && !(parts[0] === "login")) {
      await whoami();
      if (!state.me) {
        if (parts.length && parts[0] !== "login") sessionStorage.setItem(NEXT_KEY, askedFor);
        location.hash = "#/login";
        return;
      }
    }
    userBox();
    const [p0, p1, p2, p3, p4] = parts;
    if (p0 === "login") {
      if (state.me) location.hash = "#/"; // signed in already, or no authentication at all
      else await pageLogin(staging);
    } else if (!p0) await pageNamespaces(staging);
    else if (p0 === "ns" && p1 && !p2) await pageStreams(staging, p1);
    else if (p0 === "ns" && p2 && !p3) await pageStream(staging, p1, p2);
    else if (p0 === "ns" && p3 === "tag" && p4) await pageTag(staging, p1, p2, p4);
    else if (p0 === "ns" && p3 === "image" && p4) await pageImage(staging, p1, p2, p4, params);
    else if (p0 === "import" && p1) await pageImport(staging, p1, params);
    else staging.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No such page. "), link("#/", "Namespaces"));
  } catch (e) {
    if (seq !== renderSeq) return;
    staging.replaceChildren(h("h1", {}, "Error"), h("p", { class: "notice error", role: "alert", id: "error" }, e.message));
  }
  if (seq !== renderSeq) return; // a newer navigation won
  main.replaceChildren(...staging.childNodes);
  if (live) {
    window.scrollTo(0, scroll);
    if (focusId && document.getElementById(focusId)) document.getElementById(focusId).focus();
    announce(`Updated ${new Date().toLocaleTimeString()}`);
  } else {
    // A form's first field, else the page itself: keyboard users start where the page does.
    const first = main.querySelector("form input");
    if (first) first.focus();
    else main.focus({ preventScroll: true });
  }
  document.body.dataset.rendered = String(seq);
  document.title = `${(main.querySelector("h1") || {}).textContent || "berth"} · berth console`;
}

window.addEventListener("hashchange", () => render(false));
window.addEventListener("DOMContentLoaded", () => render(false));
