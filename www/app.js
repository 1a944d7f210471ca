// fcfs storefront: plain JavaScript, no build step, only the public API (docs/openapi.yaml).
// Hash routes: #/ products, #/product/ID, #/flash/ID, #/signup, #/verify?email=, #/login,
// #/wishlist, #/orders, #/orders/ID. Korean by default; the language button switches to English
// (kept in localStorage, sent as Accept-Language so the API's own messages and labels follow).
// Tokens live in localStorage; a 401 refreshes the access token once and retries.
"use strict";

(function () {
  const T = {
    ko: {
      brand: "fcfs 스토어", nav_products: "상품", nav_wishlist: "위시리스트", nav_orders: "주문 내역",
      nav_login: "로그인", nav_signup: "회원가입", nav_logout: "로그아웃", lang_other: "English",
      products: "상품 목록", more: "더 보기", flash: "선착순", won: "원", loading: "불러오는 중…",
      no_products: "등록된 상품이 없습니다.", starts_at: "판매 시작", price: "가격",
      stock: "재고", quantity: "수량", order: "주문하기", add_wishlist: "위시리스트에 담기",
      added_wishlist: "위시리스트에 담았습니다.", ordered: "주문이 완료되었습니다.",
      go_flash: "선착순 구매 페이지로", signup: "회원가입", email: "이메일", password: "비밀번호 (8자 이상)",
      name: "이름", phone: "휴대폰 (010-1234-5678)", address: "주소", submit_signup: "가입하기",
      signup_done: "인증 코드를 메일로 보냈습니다. 메일의 6자리 코드를 입력해주세요.",
      verify: "이메일 인증", code: "인증 코드 (6자리)", submit_verify: "인증하기", resend: "코드 다시 받기",
      resent: "새 코드를 보냈습니다.", verified: "인증되었습니다. 로그인해주세요.",
      login: "로그인", submit_login: "로그인", logged_in: "로그인되었습니다.", logged_out: "로그아웃되었습니다.",
      need_login: "로그인이 필요합니다.", wishlist: "위시리스트", empty_wishlist: "위시리스트가 비어 있습니다.",
      remove: "삭제", orders: "주문 내역", no_orders: "주문 내역이 없습니다.", order_no: "주문 번호",
      status: "상태", total: "합계", ordered_at: "주문 일시", items: "상품", cancel_order: "주문 취소",
      cancelled: "주문이 취소되었습니다.", opens_in: "판매 시작까지", ends_in: "판매 종료까지",
      remaining: "남은 수량", enter: "구매 신청", pay: "결제하기", give_up: "포기하기",
      held: "1개를 확보했습니다. 제한 시간 안에 결제해주세요.", pay_before: "결제 기한",
      paid: "결제가 완료되었습니다. 주문 내역에서 확인하세요.", view_order: "주문 보기",
      hold_released: "확보한 상품을 반납했습니다.", per_user: "1인당 구매 한도",
      live_sse: "실시간 (SSE)", live_poll: "실시간 (폴링)",
      state_UPCOMING: "판매 예정", state_OPEN: "판매 중", state_SOLD_OUT: "품절", state_PAUSED: "일시 중단",
      state_CLOSED: "판매 종료",
      SALE_NOT_OPEN: "아직 판매가 시작되지 않았습니다. 시작 시간에 다시 시도해주세요.",
      OUT_OF_STOCK: "품절되었습니다. 모든 수량이 판매되었습니다.",
      PAYMENT_FAILED: "결제에 실패했습니다. 확보한 상품은 반납되었으니 다시 구매 신청해주세요.",
      RESERVATION_EXPIRED: "결제 가능 시간이 지나 예약이 만료되었습니다. 다시 구매 신청해주세요.",
      ALREADY_PURCHASED: "이미 구매하셨습니다. 1인당 구매 한도를 넘었습니다.",
      SALE_CLOSED: "판매가 종료되었습니다.", SALE_PAUSED: "판매가 잠시 중단되었습니다. 잠시 후 다시 시도해주세요.",
      UNAUTHORIZED: "로그인이 필요합니다.", network: "서버에 연결할 수 없습니다. 잠시 후 다시 시도해주세요.",
    },
    en: {
      brand: "fcfs store", nav_products: "Products", nav_wishlist: "Wishlist", nav_orders: "Orders",
      nav_login: "Log in", nav_signup: "Sign up", nav_logout: "Log out", lang_other: "한국어",
      products: "Products", more: "More", flash: "Flash sale", won: " KRW", loading: "Loading…",
      no_products: "No products yet.", starts_at: "Sale starts", price: "Price",
      stock: "Stock", quantity: "Quantity", order: "Order", add_wishlist: "Add to wishlist",
      added_wishlist: "Added to your wishlist.", ordered: "Your order is placed.",
      go_flash: "Go to the flash sale", signup: "Sign up", email: "Email", password: "Password (8+ characters)",
      name: "Name", phone: "Mobile (010-1234-5678)", address: "Address", submit_signup: "Sign up",
      signup_done: "We mailed you a code. Enter the 6 digits from the mail.",
      verify: "Verify your email", code: "Code (6 digits)", submit_verify: "Verify", resend: "Send a new code",
      resent: "A new code is on its way.", verified: "Verified. Please log in.",
      login: "Log in", submit_login: "Log in", logged_in: "You are logged in.", logged_out: "You are logged out.",
      need_login: "Please log in first.", wishlist: "Wishlist", empty_wishlist: "Your wishlist is empty.",
      remove: "Remove", orders: "Orders", no_orders: "No orders yet.", order_no: "Order no.",
      status: "Status", total: "Total", ordered_at: "Ordered at", items: "Items", cancel_order: "Cancel order",
      cancelled: "The order is cancelled.", opens_in: "Opens in", ends_in: "Ends in",
      remaining: "Remaining", enter: "Buy now", pay: "Pay", give_up: "Give up",
      held: "One unit is held for you. Pay before the deadline.", pay_before: "Pay before",
      paid: "Paid. You can find it in your orders.", view_order: "View order",
      hold_released: "The held unit went back.", per_user: "Limit per member",
      live_sse: "live (SSE)", live_poll: "live (polling)",
      state_UPCOMING: "Upcoming", state_OPEN: "On sale", state_SOLD_OUT: "Sold out", state_PAUSED: "Paused",
      state_CLOSED: "Sale over",
      SALE_NOT_OPEN: "The sale has not started yet. Try again when it opens.",
      OUT_OF_STOCK: "Sold out: every unit has been sold.",
      PAYMENT_FAILED: "The payment failed. The unit went back; you may buy again.",
      RESERVATION_EXPIRED: "Your reservation expired before the payment. Please buy again.",
      ALREADY_PURCHASED: "You have already bought this: the limit per member is reached.",
      SALE_CLOSED: "The sale is over.", SALE_PAUSED: "The sale is paused for a moment. Please retry shortly.",
      UNAUTHORIZED: "Please log in.", network: "Cannot reach the server. Please retry shortly.",
    },
  };

  let lang = localStorage.getItem("lang") === "en" ? "en" : "ko";
  const t = (k) => T[lang][k] || T.ko[k] || k;
  const view = document.getElementById("view");
  let cleanup = []; // stoppers of the current page (timers, event streams)

  // ---- DOM helpers ---------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function show(...nodes) {
    view.replaceChildren(...nodes);
  }

  let noticeTimer = null;
  function notice(text, kind) {
    const n = document.getElementById("notice");
    n.textContent = text;
    n.className = "notice" + (kind === "error" ? " error" : "");
    n.hidden = !text;
    clearTimeout(noticeTimer);
    if (text) noticeTimer = setTimeout(() => { n.hidden = true; }, 5000);
  }

  function message(text, kind, testid) {
    return h("div", { class: "message " + (kind || "info"), role: "alert", "data-testid": testid || "message" }, text);
  }

  const money = (n) => (lang === "ko" ? n.toLocaleString("ko-KR") + t("won") : n.toLocaleString("en-US") + t("won"));
  const when = (s) => (s ? new Date(s).toLocaleString(lang === "ko" ? "ko-KR" : "en-US", { timeZone: "Asia/Seoul" }) : "");

  function duration(ms) {
    if (ms < 0) ms = 0;
    const s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400);
    const hh = String(Math.floor((s % 86400) / 3600)).padStart(2, "0");
    const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return (d > 0 ? d + (lang === "ko" ? "일 " : "d ") : "") + hh + ":" + mm + ":" + ss;
  }

  function idemKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // ---- the API ------------------------------------------------------------------------------

  const auth = {
    get access() { return localStorage.getItem("access_token"); },
    get refresh() { return localStorage.getItem("refresh_token"); },
    save(tokens) {
      localStorage.setItem("access_token", tokens.access_token);
      localStorage.setItem("refresh_token", tokens.refresh_token);
      if (tokens.user) localStorage.setItem("user", JSON.stringify(tokens.user));
    },
    clear() {
      for (const k of ["access_token", "refresh_token", "user"]) localStorage.removeItem(k);
    },
  };

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || "HTTP " + status);
      this.status = status;
      this.code = e.code || (status === 0 ? "network" : "HTTP_" + status);
      this.details = e.details;
    }
  }

  async function raw(method, path, body, headers) {
    const h2 = Object.assign({ "Accept-Language": lang, Accept: "application/json" }, headers || {});
    if (auth.access) h2.Authorization = "Bearer " + auth.access;
    if (body !== undefined) h2["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, { method, headers: h2, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, null);
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
    return { status: res.status, json };
  }

  let refreshing = null;
  async function refreshTokens() {
    if (!auth.refresh) return false;
    refreshing = refreshing || raw("POST", "/api/auth/refresh", { refresh_token: auth.refresh }).finally(() => {
      setTimeout(() => { refreshing = null; }, 0);
    });
    const r = await refreshing;
    if (r.status === 200) { auth.save(r.json); return true; }
    auth.clear();
    return false;
  }

  async function api(method, path, body, headers) {
    let r = await raw(method, path, body, headers);
    if (r.status === 401 && auth.refresh && (await refreshTokens())) r = await raw(method, path, body, headers);
    if (r.status >= 400) throw new ApiError(r.status, r.json);
    return r.json;
  }

  // The message for a failed call: ours for the codes a buyer must understand, else the API's own.
  function explain(err) {
    if (T.ko[err.code]) return t(err.code);
    if (err.status === 401) return t("need_login");
    return err.message;
  }

  function failBox(err) {
    return message(explain(err), "error", "error");
  }

  function requireLogin() {
    if (auth.access) return true;
    notice(t("need_login"), "error");
    location.hash = "#/login?next=" + encodeURIComponent(location.hash);
    return false;
  }

  // ---- pages --------------------------------------------------------------------------------

  async function productsPage() {
    show(h("h1", { text: t("products") }), h("p", { class: "muted", text: t("loading") }));
    const grid = h("div", { class: "grid", "data-testid": "product-list" });
    const more = h("button", { type: "button", class: "secondary", hidden: true }, t("more"));
    let cursor = null;
    async function page() {
      const q = "/api/products?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const data = await api("GET", q);
      for (const p of data.items) {
        const href = p.type === "FLASH" ? "#/flash/" + p.id : "#/product/" + p.id;
        grid.append(h("div", { class: "card", "data-testid": "product-card" },
          p.type === "FLASH" ? h("span", { class: "badge flash" }, t("flash")) : null,
          h("h2", {}, h("a", { href, "data-testid": "product-link" }, p.name)),
          h("p", { class: "muted" }, p.description),
          h("div", { class: "price" }, money(p.price)),
          p.type === "FLASH" ? h("div", { class: "muted" }, t("starts_at") + ": " + when(p.sale_starts_at)) : null));
      }
      cursor = data.next_cursor;
      more.hidden = !cursor;
    }
    more.addEventListener("click", () => page().catch((e) => notice(explain(e), "error")));
    try {
      await page();
      show(h("h1", { text: t("products") }), grid.children.length ? grid : message(t("no_products"), "info", "empty"),
        h("p", {}, more));
    } catch (e) {
      show(h("h1", { text: t("products") }), failBox(e));
    }
  }

  async function productPage(id) {
    let p;
    try {
      p = await api("GET", "/api/products/" + id);
    } catch (e) {
      show(failBox(e));
      return;
    }
    if (p.type === "FLASH") {
      location.replace("#/flash/" + id);
      return;
    }
    const out = h("div", {});
    const qty = h("input", { type: "number", min: "1", max: "99", value: "1", "data-testid": "quantity" });
    const orderBtn = h("button", { type: "button", "data-testid": "order" }, t("order"));
    const wishBtn = h("button", { type: "button", class: "secondary", "data-testid": "add-wishlist" }, t("add_wishlist"));
    orderBtn.addEventListener("click", async () => {
      if (!requireLogin()) return;
      orderBtn.disabled = true;
      try {
        const o = await api("POST", "/api/orders", { items: [{ product_id: p.id, quantity: Number(qty.value) }] },
          { "Idempotency-Key": idemKey() });
        out.replaceChildren(message(t("ordered"), "ok", "ordered"), h("a", { href: "#/orders/" + o.id }, t("view_order")));
      } catch (e) {
        out.replaceChildren(failBox(e));
      } finally {
        orderBtn.disabled = false;
      }
    });
    wishBtn.addEventListener("click", async () => {
      if (!requireLogin()) return;
      try {
        await api("POST", "/api/wishlist", { product_id: p.id, quantity: Number(qty.value) },
          { "Idempotency-Key": idemKey() });
        out.replaceChildren(message(t("added_wishlist"), "ok", "wishlisted"));
      } catch (e) {
        out.replaceChildren(failBox(e));
      }
    });
    show(h("div", { class: "card" },
      h("h1", { "data-testid": "product-name" }, p.name),
      h("p", {}, p.description),
      h("p", { class: "price" }, money(p.price)),
      h("p", { class: "muted" }, t("stock") + ": " + p.remaining),
      h("div", { class: "row" }, h("label", {}, t("quantity"), qty), orderBtn, wishBtn),
      out));
  }

  // The flash page: countdown, live remaining (SSE, else polling), entry, pay.
  async function flashPage(id) {
    let p;
    try {
      p = await api("GET", "/api/flash/products/" + id);
    } catch (e) {
      show(failBox(e));
      return;
    }
    const starts = Date.parse(p.sale_starts_at), ends = Date.parse(p.sale_ends_at);
    const countdownLabel = h("div", { class: "muted" });
    const countdown = h("div", { class: "countdown", "data-testid": "countdown" });
    const remaining = h("strong", { "data-testid": "remaining" }, String(p.remaining));
    const state = h("span", { class: "badge", "data-testid": "state" });
    const live = h("span", { class: "live", "data-testid": "live" });
    const enterBtn = h("button", { type: "button", "data-testid": "enter" }, t("enter"));
    const out = h("div", { "data-testid": "flash-result" });
    const stateMsg = h("div", { class: "message info", "data-testid": "state-message", hidden: true });
    const STATE_MESSAGE = { UPCOMING: "SALE_NOT_OPEN", SOLD_OUT: "OUT_OF_STOCK", CLOSED: "SALE_CLOSED", PAUSED: "SALE_PAUSED" };
    let hold = null; // { order_id, pay_before }

    function setState(s, n) {
      p.state = s;
      if (n !== undefined) { p.remaining = n; remaining.textContent = String(n); }
      state.textContent = t("state_" + s);
      state.className = "badge " + s;
      state.dataset.state = s;
      enterBtn.disabled = s !== "OPEN" || hold !== null;
      stateMsg.hidden = !STATE_MESSAGE[s];
      stateMsg.textContent = STATE_MESSAGE[s] ? t(STATE_MESSAGE[s]) : "";
    }

    function tick() {
      const now = Date.now();
      if (now < starts) {
        countdownLabel.textContent = t("opens_in");
        countdown.textContent = duration(starts - now);
      } else if (now < ends && p.state !== "CLOSED") {
        countdownLabel.textContent = t("ends_in");
        countdown.textContent = duration(ends - now);
      } else {
        countdownLabel.textContent = "";
        countdown.textContent = t("state_CLOSED");
      }
      if (hold) {
        const left = Date.parse(hold.pay_before) - now;
        const el = document.querySelector("[data-testid=pay-countdown]");
        if (el) el.textContent = duration(left);
      }
    }
    const timer = setInterval(tick, 250);
    cleanup.push(() => clearInterval(timer));

    // live remaining stock: EventSource; if the browser has none or the stream keeps failing, poll
    let polling = null;
    function poll() {
      if (polling) return;
      live.textContent = t("live_poll");
      polling = setInterval(async () => {
        try {
          const v = await api("GET", "/api/flash/products/" + id);
          setState(v.state, v.remaining);
        } catch (e) { /* keep polling */ }
      }, 2000);
      cleanup.push(() => clearInterval(polling));
    }
    if (window.EventSource) {
      const es = new EventSource("/api/flash/products/" + id + "/events");
      let failures = 0;
      live.textContent = t("live_sse");
      es.addEventListener("stock", (ev) => {
        failures = 0;
        const d = JSON.parse(ev.data);
        setState(d.state, d.remaining);
        if (d.state === "CLOSED") es.close();
      });
      es.addEventListener("error", () => {
        if (++failures >= 3) { es.close(); poll(); }
      });
      cleanup.push(() => es.close());
    } else {
      poll();
    }

    function holdBox() {
      const payBtn = h("button", { type: "button", "data-testid": "pay" }, t("pay"));
      const giveUp = h("button", { type: "button", class: "secondary", "data-testid": "give-up" }, t("give_up"));
      payBtn.addEventListener("click", async () => {
        payBtn.disabled = giveUp.disabled = true;
        try {
          const r = await api("POST", "/api/flash/orders/" + hold.order_id + "/pay", undefined,
            { "Idempotency-Key": hold.payKey });
          hold = null;
          out.replaceChildren(message(t("paid"), "ok", "paid"),
            h("a", { href: "#/orders/" + r.order_id, "data-testid": "view-order" }, t("view_order")));
        } catch (e) {
          if (e.code === "PAYMENT_FAILED" || e.code === "RESERVATION_EXPIRED" || e.code === "ORDER_NOT_FOUND") hold = null;
          out.replaceChildren(failBox(e));
          if (hold) out.append(holdBox());
        }
        setState(p.state);
      });
      giveUp.addEventListener("click", async () => {
        try {
          await api("POST", "/api/flash/orders/" + hold.order_id + "/cancel");
          hold = null;
          out.replaceChildren(message(t("hold_released"), "info", "released"));
        } catch (e) {
          out.replaceChildren(failBox(e));
        }
        setState(p.state);
      });
      return h("div", { class: "card flash-box" },
        message(t("held"), "ok", "held"),
        h("div", {}, t("pay_before") + ": " + when(hold.pay_before) + " (", h("span", { "data-testid": "pay-countdown" }), ")"),
        h("div", { class: "row" }, payBtn, giveUp));
    }

    enterBtn.addEventListener("click", async () => {
      if (!requireLogin()) return;
      enterBtn.disabled = true;
      try {
        const r = await api("POST", "/api/flash/products/" + id + "/entry", undefined, { "Idempotency-Key": idemKey() });
        hold = { order_id: r.order_id, pay_before: r.pay_before, payKey: idemKey() };
        out.replaceChildren(holdBox());
      } catch (e) {
        out.replaceChildren(failBox(e));
        if (e.code === "OUT_OF_STOCK") setState("SOLD_OUT", 0);
        if (e.code === "SALE_CLOSED") setState("CLOSED");
      }
      setState(p.state);
    });

    show(h("div", { class: "card flash-box" },
      h("span", { class: "badge flash" }, t("flash")),
      h("h1", { "data-testid": "product-name" }, p.name),
      h("div", { class: "price" }, money(p.price)),
      h("div", { class: "muted" }, t("per_user") + ": " + p.per_user_limit),
      h("div", {}, countdownLabel, countdown),
      h("div", { class: "remaining" }, t("remaining") + " ", remaining, " ", state, " ", live),
      h("div", { class: "row" }, enterBtn),
      stateMsg,
      out));
    setState(p.state, p.remaining);
    tick();
  }

  function field(name, type, attrs) {
    return h("label", {}, t(name), h("input", Object.assign({ name, type, required: true, "data-testid": name }, attrs || {})));
  }

  function signupPage() {
    const out = h("div", {});
    const form = h("form", { class: "stack", "data-testid": "signup-form" },
      field("email", "email", { autocomplete: "email" }),
      field("password", "password", { minlength: "8", autocomplete: "new-password" }),
      field("name", "text"),
      field("phone", "tel", { pattern: "01[01]-[0-9]{4}-[0-9]{4}", placeholder: "010-1234-5678" }),
      field("address", "text"),
      h("button", { type: "submit", "data-testid": "submit" }, t("submit_signup")),
      out);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      try {
        await api("POST", "/api/users", f);
        notice(t("signup_done"));
        location.hash = "#/verify?email=" + encodeURIComponent(f.email);
      } catch (e) {
        out.replaceChildren(failBox(e));
        if (e.details) for (const [k, v] of Object.entries(e.details)) out.append(h("div", { class: "muted" }, k + ": " + v));
      }
    });
    show(h("h1", { text: t("signup") }), form);
  }

  function verifyPage(params) {
    const out = h("div", {});
    const email = params.get("email") || "";
    const form = h("form", { class: "stack", "data-testid": "verify-form" },
      field("email", "email", { value: email }),
      field("code", "text", { pattern: "[0-9]{6}", inputmode: "numeric", autocomplete: "one-time-code" }),
      h("button", { type: "submit", "data-testid": "submit" }, t("submit_verify")),
      h("button", { type: "button", class: "secondary", "data-testid": "resend", onclick: async () => {
        try {
          await api("POST", "/api/users/verify/resend", { email: form.elements.email.value });
          out.replaceChildren(message(t("resent"), "ok"));
        } catch (e) { out.replaceChildren(failBox(e)); }
      } }, t("resend")),
      out);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      try {
        await api("POST", "/api/users/verify", { email: f.email, code: f.code });
        notice(t("verified"));
        location.hash = "#/login?email=" + encodeURIComponent(f.email);
      } catch (e) {
        out.replaceChildren(failBox(e));
      }
    });
    show(h("h1", { text: t("verify") }), form);
  }

  function loginPage(params) {
    const out = h("div", {});
    const form = h("form", { class: "stack", "data-testid": "login-form" },
      field("email", "email", { value: params.get("email") || "", autocomplete: "email" }),
      field("password", "password", { autocomplete: "current-password" }),
      h("button", { type: "submit", "data-testid": "submit" }, t("submit_login")),
      out);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      try {
        auth.clear();
        auth.save(await api("POST", "/api/auth/login", { email: f.email, password: f.password }));
        notice(t("logged_in"));
        location.hash = params.get("next") || "#/";
      } catch (e) {
        out.replaceChildren(failBox(e));
      }
    });
    show(h("h1", { text: t("login") }), form);
  }

  async function wishlistPage() {
    if (!requireLogin()) return;
    try {
      const data = await api("GET", "/api/wishlist?limit=100");
      if (data.items.length === 0) {
        show(h("h1", { text: t("wishlist") }), message(t("empty_wishlist"), "info", "empty"));
        return;
      }
      const out = h("div", {});
      const rows = data.items.map((it) => h("tr", { "data-testid": "wish-row" },
        h("td", {}, h("a", { href: "#/product/" + it.product_id }, it.product.name)),
        h("td", {}, money(it.product.price)),
        h("td", {}, String(it.quantity)),
        h("td", {},
          h("button", { type: "button", onclick: async () => {
            try {
              const o = await api("POST", "/api/wishlist/" + it.id + "/order", undefined, { "Idempotency-Key": idemKey() });
              notice(t("ordered"));
              location.hash = "#/orders/" + o.id;
            } catch (e) { out.replaceChildren(failBox(e)); }
          } }, t("order")), " ",
          h("button", { type: "button", class: "secondary", onclick: async () => {
            try { await api("DELETE", "/api/wishlist/" + it.id); wishlistPage(); } catch (e) { out.replaceChildren(failBox(e)); }
          } }, t("remove")))));
      show(h("h1", { text: t("wishlist") }), out,
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("items")), h("th", {}, t("price")),
          h("th", {}, t("quantity")), h("th", {}))), h("tbody", {}, rows)));
    } catch (e) {
      show(h("h1", { text: t("wishlist") }), failBox(e));
    }
  }

  function statusBadge(o) {
    return h("span", { class: "badge " + o.status, "data-testid": "order-status", "data-status": o.status }, o.status_label);
  }

  async function ordersPage() {
    if (!requireLogin()) return;
    try {
      const data = await api("GET", "/api/orders?limit=50");
      if (data.items.length === 0) {
        show(h("h1", { text: t("orders") }), message(t("no_orders"), "info", "empty"));
        return;
      }
      const rows = data.items.map((o) => h("tr", { "data-testid": "order-row", "data-order-id": String(o.id) },
        h("td", {}, h("a", { href: "#/orders/" + o.id }, "#" + o.id)),
        h("td", {}, o.items.map((i) => i.name + " × " + i.quantity).join(", ")),
        h("td", {}, money(o.total)),
        h("td", {}, when(o.ordered_at)),
        h("td", {}, statusBadge(o))));
      show(h("h1", { text: t("orders") }),
        h("table", { "data-testid": "orders" }, h("thead", {}, h("tr", {}, h("th", {}, t("order_no")), h("th", {}, t("items")),
          h("th", {}, t("total")), h("th", {}, t("ordered_at")), h("th", {}, t("status")))), h("tbody", {}, rows)));
    } catch (e) {
      show(h("h1", { text: t("orders") }), failBox(e));
    }
  }

  async function orderPage(id) {
    if (!requireLogin()) return;
    try {
      const o = await api("GET", "/api/orders/" + id);
      const out = h("div", {});
      const cancel = o.status === "ORDERED" ? h("button", { type: "button", class: "secondary", onclick: async () => {
        try { await api("POST", "/api/orders/" + id + "/cancel"); notice(t("cancelled")); orderPage(id); } catch (e) { out.replaceChildren(failBox(e)); }
      } }, t("cancel_order")) : null;
      show(h("div", { class: "card", "data-testid": "order" },
        h("h1", {}, t("order_no") + " #" + o.id + " ", statusBadge(o)),
        h("p", { class: "muted" }, t("ordered_at") + ": " + when(o.ordered_at)),
        h("ul", {}, o.items.map((i) => h("li", {}, i.name + " × " + i.quantity + " — " + money(i.price)))),
        h("p", { class: "price" }, t("total") + ": " + money(o.total)),
        h("ul", { class: "muted" }, (o.transitions || []).map((tr) => h("li", {}, when(tr.at) + " " + (tr.from || "—") + " → " + tr.to))),
        cancel, out));
    } catch (e) {
      show(failBox(e));
    }
  }

  // ---- routing and chrome ---------------------------------------------------------------------

  function chrome() {
    document.documentElement.lang = lang;
    document.title = t("brand");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    document.getElementById("lang").textContent = t("lang_other");
    const inside = !!auth.access;
    for (const el of document.querySelectorAll("[data-auth]")) el.hidden = (el.dataset.auth === "in") !== inside;
  }

  function route() {
    for (const stop of cleanup) stop();
    cleanup = [];
    chrome();
    const [path, query] = (location.hash.slice(1) || "/").split("?");
    const params = new URLSearchParams(query || "");
    const parts = path.split("/").filter(Boolean);
    const id = parts[1] && /^\d+$/.test(parts[1]) ? parts[1] : null;
    if (parts[0] === "product" && id) return productPage(id);
    if (parts[0] === "flash" && id) return flashPage(id);
    if (parts[0] === "signup") return signupPage();
    if (parts[0] === "verify") return verifyPage(params);
    if (parts[0] === "login") return loginPage(params);
    if (parts[0] === "wishlist") return wishlistPage();
    if (parts[0] === "orders" && id) return orderPage(id);
    if (parts[0] === "orders") return ordersPage();
    return productsPage();
  }

  window.addEventListener("hashchange", () => { route(); });
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "ko" ? "en" : "ko";
    localStorage.setItem("lang", lang);
    route();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    try { if (auth.access) await api("POST", "/api/auth/logout"); } catch (e) { /* gone anyway */ }
    auth.clear();
    notice(t("logged_out"));
    location.hash = "#/";
    route();
  });
  route();
})();
