// The StyleHub demo page: plain JavaScript calling the served API (no build step, no CDN).
"use strict";
const BASE = document.body.dataset.base || "";
const $ = (id) => document.getElementById(id);
const state = {outfit: {set_name: "", top: null, bottom: null, shoe: null}, liked: []};

async function api(path, options) {
  const r = await fetch(BASE + path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || body.error || `${r.status} ${r.statusText}`);
  return body;
}

function el(tag, attrs, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children || []) e.appendChild(c);
  return e;
}

function articleCard(item, hit) {
  const id = item.article_id;
  const lines = [id, item.prod_name || "",
    [item.product_type_name, item.colour_group_name].filter(Boolean).join(" | ")];
  if (item.score !== undefined) lines.push(`score ${Number(item.score).toFixed(3)}`);
  return el("div", {class: "card" + (hit ? " hit" : "")}, [
    el("img", {src: `${BASE}/ui/photo/article/${id}`, alt: id, loading: "eager"}),
    ...lines.map((t, i) => el("div", {class: i > 1 ? "tag" : "", text: t}))]);
}

function showError(out, err) {
  out.replaceChildren(el("p", {class: "error", text: String(err.message || err)}));
}

async function lookUp(customerId) {
  const out = $("customer-out");
  out.replaceChildren(el("p", {class: "tag", text: "loading…"}));
  try {
    const [rec, hist] = await Promise.all([
      api(`/recommend/${customerId}?k=12`), api(`/ui/history/${customerId}`)]);
    out.replaceChildren(
      el("div", {class: "tag", text: `recent purchases (${hist.recent.length})`}),
      el("div", {class: "cards", id: "recent-cards"},
         hist.recent.map((item) => articleCard(item))),
      el("div", {class: "tag",
                 text: `recommendations: answered by the ${rec.path} path` +
                       (rec.ranked_by ? `, ranked by ${rec.ranked_by}` : "")}),
      el("div", {class: "cards", id: "rec-cards"}, rec.items.map((i) => articleCard(i))));
  } catch (err) { showError(out, err); }
}

async function randomCustomer() {
  const body = await api("/ui/customers");
  const ids = body.customers;
  const id = ids[Math.floor(Math.random() * Math.min(ids.length, 10))];
  $("customer-id").value = id;
  await lookUp(id);
}

async function similarTo(articleId) {
  const out = $("similar-out");
  out.replaceChildren(el("p", {class: "tag", text: "loading…"}));
  try {
    const body = await api(`/similar/${articleId}?k=12`);
    out.replaceChildren(el("div", {class: "tag", text: `similar to ${articleId} (${body.source})`}),
                        el("div", {class: "cards", id: "similar-cards"},
                           body.items.map((i) => articleCard(i))));
  } catch (err) { showError(out, err); }
}

async function similarToUpload(file) {
  const out = $("similar-out");
  out.replaceChildren(el("p", {class: "tag", text: "loading…"}));
  try {
    const body = await api("/similar-image?k=12", {
      method: "POST", body: file, headers: {"Content-Type": file.type || "image/jpeg"}});
    out.replaceChildren(el("div", {class: "tag", text: `looks like your photo (${body.source})`}),
                        el("div", {class: "cards", id: "similar-cards"},
                           body.items.map((i) => articleCard(i))));
  } catch (err) { showError(out, err); }
}

async function loadArticles() {
  const body = await api(`/ui/articles?n=8&seed=${Math.floor(Math.random() * 1e6)}`);
  $("pick-articles").replaceChildren(...body.articles.map((item) => {
    const card = articleCard(item);
    card.classList.add("pick");
    card.addEventListener("click", () => similarTo(item.article_id));
    return card;
  }));
}

function itemCard(setName, category, id) {
  const card = el("div", {class: "card pick", "data-id": String(id)}, [
    el("img", {src: `${BASE}/ui/photo/item/${setName}/${category}/${id}`, alt: `${category} ${id}`}),
    el("div", {text: `${category} ${id}`})]);
  card.addEventListener("click", () => {
    state.outfit[category] = id;
    for (const c of card.parentNode.children) c.classList.toggle("chosen", c === card);
  });
  return card;
}

async function loadOutfitItems() {
  const set = encodeURIComponent(state.modelSet || "");
  const body = await api(`/ui/outfit-items?n=6&seed=1&set_name=${set}`);
  state.outfit.set_name = body.set_name;
  const slots = ["top", "bottom", "shoe"].map((cat) => {
    const ids = body.items[cat];
    state.outfit[cat] = ids[0];
    const cards = ids.map((id) => itemCard(body.set_name, cat, id));
    if (cards.length) cards[0].classList.add("chosen");
    return el("div", {class: "row"}, [el("div", {class: "tag", text: `${cat}s (set ${body.set_name})`}),
                                     el("div", {class: "cards"}, cards)]);
  });
  $("outfit-picker").replaceChildren(...slots);
}

function currentOutfit() {
  const o = state.outfit;
  return {top: o.top, bottom: o.bottom, shoe: o.shoe};
}

async function scoreOutfit(forNewUser) {
  const out = $("outfit-out");
  const request = {set_name: state.outfit.set_name, outfits: [currentOutfit()]};
  if (forNewUser) {
    if (!state.liked.length) { showError(out, new Error("like at least one outfit first")); return; }
    request.liked = state.liked;
  } else {
    request.user = Number($("outfit-user").value || 0);
  }
  try {
    const body = await api("/outfit-score", {method: "POST", body: JSON.stringify(request),
                                             headers: {"Content-Type": "application/json"}});
    const score = body.scores ? body.scores[0] : (body.outfits ? body.outfits[0].score : undefined);
    out.replaceChildren(el("div", {class: "score", id: "outfit-score",
                                   text: `score ${Number(score).toFixed(3)}`}),
                        el("div", {class: "tag", text: JSON.stringify(body).slice(0, 300)}));
  } catch (err) { showError(out, err); }
}

async function start() {
  let health = null;
  try { health = await api("/healthz"); } catch (err) { $("status").textContent = String(err); }
  const served = (health && health.served) || {};
  const outfits = health && health.parts && health.parts.outfits;
  state.modelSet = (outfits && outfits.set_name) || "";  // the set the FND-CL model knows
  $("status").textContent = health
    ? `run ${health.run || "-"}; outfits run ${health.outfits_run || "-"}`
    : "the server did not answer /healthz";
  $("recommend-section").hidden = !served.recommend;
  $("similar-section").hidden = !(served.similar || served["similar-image"]);
  $("outfit-section").hidden = !served["outfit-score"];
  $("customer-form").addEventListener("submit", (e) => {
    e.preventDefault(); lookUp($("customer-id").value.trim());
  });
  $("random-customer").addEventListener("click", randomCustomer);
  $("photo-upload").addEventListener("change", (e) => {
    if (e.target.files.length) similarToUpload(e.target.files[0]);
  });
  $("more-articles").addEventListener("click", loadArticles);
  $("score-user").addEventListener("click", () => scoreOutfit(false));
  $("score-new").addEventListener("click", () => scoreOutfit(true));
  $("like-outfit").addEventListener("click", () => {
    state.liked.push(currentOutfit()); $("liked-n").textContent = String(state.liked.length);
  });
  if (served.similar || served["similar-image"]) loadArticles().catch(() => {});
  if (served["outfit-score"]) loadOutfitItems().catch((err) => showError($("outfit-out"), err));
}
start();
