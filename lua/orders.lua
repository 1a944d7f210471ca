-- orders.lua: orders of NORMAL products (API.md "Orders").
--
--   POST /api/orders                {items:[{product_id, quantity}]} -> 201 order (Idempotency-Key)
--   GET  /api/orders                the caller's orders, newest first, ?status=, cursor paging
--   GET  /api/orders/:id            one order: items, total, status, status_label, every transition
--   POST /api/orders/:id/cancel     only while ORDERED; the stock back in the same transaction
--   POST /api/orders/:id/return     only while DELIVERED and within 1D of delivered_at
--
-- Creation is all or nothing in one transaction: each product is checked (404 PRODUCT_NOT_FOUND,
-- 409 USE_FLASH_PURCHASE, 409 OUT_OF_STOCK with details.product_id), the order, its items (name and
-- price at order time) and its first history row are written, and the stock is taken with
-- conditional UPDATEs (stock >= quantity: never negative) in product id order (every writer of
-- several products locks them in that order, so they cannot deadlock each other). Any failure rolls
-- everything back. Another member's order answers 404. The lifecycle
-- itself is jobs/lifecycle.lua; cancel and return first apply the transitions already due to the
-- locked order, so they decide on the status the order has now.
local web = require "lib.web"
local json = require "lib.json"
local validate = require "lib.validate"
local fields = require "lib.fields"
local clock = require "lib.clock"
local auth = require "lib.auth"
local idempotency = require "lib.idempotency"
local products = require "products"
local lifecycle = require "jobs.lifecycle"
local host = require "host"

local type, pairs, sort, concat, unpack = type, pairs, table.sort, table.concat, unpack
local format = string.format
local fail, check, lang = web.fail, web.check, web.lang
local null = json.null

local _M = {}

local MSG = {
    ORDER_NOT_FOUND = { ko = "주문을 찾을 수 없습니다.", en = "The order was not found." },
    OUT_OF_STOCK = { ko = "재고가 부족합니다.", en = "Not enough stock." },
    USE_FLASH = {
        ko = "선착순 상품은 선착순 구매로만 주문할 수 있습니다.",
        en = "Flash products can only be bought through the flash purchase.",
    },
    CANNOT_CANCEL = {
        ko = "배송 준비중인 주문만 취소할 수 있습니다.",
        en = "Only orders that have not shipped yet can be cancelled.",
    },
    NOT_DELIVERED = { ko = "배송 완료된 주문만 반품할 수 있습니다.", en = "Only delivered orders can be returned." },
    RETURN_WINDOW_CLOSED = {
        ko = "반품 가능 기간이 지났습니다.",
        en = "The return period of this order is over.",
    },
    ITEMS = { ko = "주문할 상품을 1개 이상 50개 이하로 입력해주세요.", en = "Give 1 to 50 items." },
    ITEM = { ko = "{product_id, quantity} 형식이어야 합니다.", en = "Must be {product_id, quantity}." },
    STATUS = { ko = "올바른 주문 상태가 아닙니다.", en = "Not an order status." },
}

local LABELS = {
    ko = {
        ORDERED = "배송 준비중", SHIPPING = "배송중", DELIVERED = "배송 완료", CANCELLED = "취소 완료",
        RETURN_REQUESTED = "반품 신청", RETURNED = "반품 완료",
    },
    en = {
        ORDERED = "Preparing for shipment", SHIPPING = "Shipping", DELIVERED = "Delivered", CANCELLED = "Cancelled",
        RETURN_REQUESTED = "Return requested", RETURNED = "Returned",
    },
}

local MAX_ITEMS, MAX_QUANTITY = 50, 99

local function not_found()
    fail(404, "ORDER_NOT_FOUND", MSG.ORDER_NOT_FOUND)
end

---------------------------------------------------------------------------------------------------
-- Reading orders

local ORDER_COLUMNS = "id, status, total, ordered_at, shipped_at, delivered_at, cancelled_at, "
    .. "return_requested_at, returned_at"
local TIMES = { "ordered_at", "shipped_at", "delivered_at", "cancelled_at", "return_requested_at", "returned_at" }

-- q(sql, ...): the query function of a transaction or of the pool.
local function querier(tx)
    if tx then return function(...) return tx:query(...) end end
    return host.mysql.query
end

local function order_json(req, row, items)
    local o = { id = row.id, status = row.status, status_label = LABELS[lang(req)][row.status], total = row.total,
        items = json.array(items or {}) }
    for i = 1, #TIMES do
        local t = row[TIMES[i]]
        o[TIMES[i]] = t == null and null or clock.from_sql(t)
    end
    return o
end

-- Items of the orders in ids: order id -> list of item objects.
local function items_of(q, ids)
    local by_order = {}
    if #ids == 0 then return by_order end
    local list = {}
    for i = 1, #ids do list[i] = format("%d", ids[i]) end
    local rows = check(q("SELECT order_id, product_id, name, price, quantity FROM order_items WHERE order_id IN ("
        .. concat(list, ",") .. ") ORDER BY order_id, product_id"))
    for i = 1, #rows do
        local r = rows[i]
        local l = by_order[r.order_id]
        if not l then
            l = {}
            by_order[r.order_id] = l
        end
        l[#l + 1] = { product_id = r.product_id, name = r.name, price = r.price, quantity = r.quantity }
    end
    return by_order
end

-- The full order of uid (items and transitions), or nil.
local function load(req, tx, uid, id)
    local q = querier(tx)
    local rows = check(q("SELECT " .. ORDER_COLUMNS .. " FROM orders WHERE id = ? AND user_id = ?", id, uid))
    local row = rows[1]
    if not row then return nil end
    local o = order_json(req, row, items_of(q, { id })[row.id])
    local ts = check(q("SELECT from_status, to_status, at FROM order_transitions WHERE order_id = ? ORDER BY at, "
        .. "to_status", id))
    local transitions = {}
    for i = 1, #ts do
        transitions[i] = { from = ts[i].from_status, to = ts[i].to_status, at = clock.from_sql(ts[i].at) }
    end
    o.transitions = json.array(transitions)
    return o
end

---------------------------------------------------------------------------------------------------
-- Creating

-- orders.check_items(req, list) -> {{product_id=, quantity=}, ...} merged by product, sorted by id;
-- raises 400 VALIDATION_FAILED.
function _M.check_items(req, list)
    local f = fields.new(req)
    if type(list) ~= "table" or not (json.is_array(list) or list[1] ~= nil) or #list < 1 or #list > MAX_ITEMS then
        f:bad("items", MSG.ITEMS)
        f:done()
    end
    local merged, out = {}, {}
    for i = 1, #list do
        local it, name = list[i], format("items[%d]", i - 1)
        if type(it) ~= "table" then
            f:bad(name, MSG.ITEM)
        else
            for k in pairs(it) do
                if k ~= "product_id" and k ~= "quantity" then f:bad(name, MSG.ITEM) end
            end
            local pid = f:int(name .. ".product_id", it.product_id, 1, fields.MAX_ID)
            local qty = f:int(name .. ".quantity", it.quantity, 1, MAX_QUANTITY)
            if pid and qty then
                local m = merged[pid]
                if m then
                    m.quantity = m.quantity + qty
                else
                    m = { product_id = pid, quantity = qty }
                    merged[pid] = m
                    out[#out + 1] = m
                end
            end
        end
    end
    f:done()
    sort(out, function(a, b) return a.product_id < b.product_id end)
    return out
end

local function product_rows(tx, items)
    local ids = {}
    for i = 1, #items do ids[i] = items[i].product_id end
    return products.read(tx, ids)
end

-- The order lines and total of items for their product rows (product_rows); raises 404 / 409.
local function lines_of(rows, items)
    local by_id = {}
    for i = 1, #rows do by_id[rows[i].id] = rows[i] end
    local total, out = 0, {}
    for i = 1, #items do
        local it = items[i]
        local p = by_id[it.product_id]
        if not p then products.not_found(it.product_id) end
        if p.type ~= "NORMAL" then fail(409, "USE_FLASH_PURCHASE", MSG.USE_FLASH, { product_id = p.id }) end
        if p.stock < it.quantity then
            fail(409, "OUT_OF_STOCK", MSG.OUT_OF_STOCK, { product_id = p.id, available = p.stock })
        end
        total = total + p.price * it.quantity
        out[i] = { product_id = p.id, name = p.name, price = p.price, quantity = it.quantity }
    end
    return out, total
end

-- orders.record(tx, uid, lines, total, now) -> the new order id: an ORDERED order of the lines ({product_id,
-- name, price, quantity}) with its items and first transition, written in tx. Also how the flash purchase
-- records a paid hold: the orders tables are written only here.
function _M.record(tx, uid, lines, total, now)
    local r = check(tx:query("INSERT INTO orders (user_id, status, total, ordered_at) VALUES (?, 'ORDERED', ?, ?)",
        uid, total, now))
    local oid = r.insert_id
    local values, args = {}, {}
    for i = 1, #lines do
        local it, n = lines[i], (i - 1) * 5
        values[i] = "(?, ?, ?, ?, ?)"
        args[n + 1], args[n + 2], args[n + 3], args[n + 4], args[n + 5] = oid, it.product_id, it.name, it.price,
            it.quantity
    end
    check(tx:query("INSERT INTO order_items (order_id, product_id, name, price, quantity) VALUES "
        .. concat(values, ", "), unpack(args)))
    check(tx:query("INSERT INTO order_transitions (order_id, from_status, to_status, at) VALUES (?, NULL, 'ORDERED', "
        .. "?)", oid, now))
    return oid
end

-- orders.place(req, tx, uid, items) -> order object, product ids (to invalidate after commit).
-- items as check_items returns them. Raises the 404/409 failures (the transaction rolls back).
-- The product rows are read without a lock (a short item fails here, locking nothing); the order is
-- written; only then is the stock taken, product by product in id order, each a conditional UPDATE
-- that locks its row until the commit. So a product's row lock is held for the last statements of
-- the transaction only, and a sold-out product costs no lock at all.
function _M.place(req, tx, uid, items)
    local rows = product_rows(tx, items)
    local out, total = lines_of(rows, items)
    local now = rows[1].now
    local oid = _M.record(tx, uid, out, total, now)
    local ids = {}
    for i = 1, #out do
        local it = out[i]
        if not products.take(tx, it.product_id, it.quantity) then
            fail(409, "OUT_OF_STOCK", MSG.OUT_OF_STOCK, { product_id = it.product_id, available = 0 })
        end
        ids[i] = it.product_id
    end
    local o = order_json(req, { id = oid, status = "ORDERED", total = total, ordered_at = now, shipped_at = null,
        delivered_at = null, cancelled_at = null, return_requested_at = null, returned_at = null }, out)
    o.transitions = json.array({ { from = null, to = "ORDERED", at = o.ordered_at } })
    return o, ids
end

-- orders.create(req, uid, items, before): the idempotent transaction of a new order; before(tx), if
-- given, runs first in it (the wishlist takes its row there). Returns the response.
function _M.create(req, uid, items, before)
    if items and not req.headers["idempotency-key"] then
        -- refused at the cost of one pooled read, without a transaction (the sold-out crowd); the
        -- transaction checks again under its conditional updates
        lines_of(product_rows(nil, items), items)
    end
    local changed
    local res = idempotency.tx(req, uid, function(tx)
        if before then items = before(tx) end
        local order
        order, changed = _M.place(req, tx, uid, items)
        return 201, order
    end)
    if changed then products.invalidate(changed) end
    return res
end

local function create(req)
    local body = validate.object(req)
    local f = fields.new(req)
    for k in pairs(body) do
        if k ~= "items" then f:bad(type(k) == "string" and #k <= 64 and k or "_other", validate.MSG.NOT_ALLOWED) end
    end
    f:done()
    return _M.create(req, req.auth.uid, _M.check_items(req, body.items))
end

---------------------------------------------------------------------------------------------------
-- Reading routes

local STATUSES = { ORDERED = true, SHIPPING = true, DELIVERED = true, CANCELLED = true, RETURN_REQUESTED = true,
    RETURNED = true }

-- The orders of uid, newest first (status and after optional): limit + 1 order objects at most.
local function orders_of(req, uid, status, after, limit)
    local sql = "SELECT " .. ORDER_COLUMNS .. " FROM orders WHERE user_id = ?"
    local args = { uid }
    if status then
        sql = sql .. " AND status = ?"
        args[#args + 1] = status
    end
    if after then
        sql = sql .. " AND id < ?"
        args[#args + 1] = after
    end
    args[#args + 1] = limit + 1
    local rows = check(host.mysql.query(sql .. " ORDER BY id DESC LIMIT ?", unpack(args)))
    local ids = {}
    for i = 1, #rows do ids[i] = rows[i].id end
    local items = items_of(host.mysql.query, ids)
    local out = {}
    for i = 1, #rows do out[i] = order_json(req, rows[i], items[rows[i].id]) end
    return out
end

-- orders.recent(req, uid, n): the member's n newest orders (my page).
function _M.recent(req, uid, n)
    local out = orders_of(req, uid, nil, nil, n)
    out[n + 1] = nil
    return json.array(out)
end

local function list(req)
    local limit, after = fields.page(req)
    local status = req:arg("status")
    if status ~= nil and not STATUSES[status] then
        local f = fields.new(req)
        f:bad("status", MSG.STATUS)
        f:done()
    end
    local out = orders_of(req, req.auth.uid, status, after, limit)
    local next_cursor = fields.cursor(out, limit)
    return { json = { items = json.array(out), next_cursor = next_cursor } }
end

local function detail(req)
    local o = load(req, nil, req.auth.uid, fields.path_id(req, not_found))
    if not o then not_found() end
    return { json = o }
end

---------------------------------------------------------------------------------------------------
-- Cancel and return

-- Locks the caller's order, applies what is due, then act(tx, status, row) decides; answers the order.
local function change(req, act)
    local uid, id = req.auth.uid, fields.path_id(req, not_found)
    local changed
    local o = check(host.mysql.tx(function(tx)
        local rows = check(tx:query("SELECT id FROM orders WHERE id = ? AND user_id = ? FOR UPDATE", id, uid))
        if not rows[1] then not_found() end
        changed = lifecycle.advance(tx, id)
        local now = check(tx:query("SELECT status FROM orders WHERE id = ?", id))[1]
        changed = act(tx, id, now.status) or changed
        return load(req, tx, uid, id)
    end))
    if changed then products.restocked(changed) end
    return { json = o }
end

local function cancel(req)
    return change(req, function(tx, id, status)
        if status ~= "ORDERED" then fail(409, "CANNOT_CANCEL", MSG.CANNOT_CANCEL, { status = status }) end
        check(tx:query("UPDATE orders SET status = 'CANCELLED', cancelled_at = UTC_TIMESTAMP(3) WHERE id = ? "
            .. "AND status = 'ORDERED'", id))
        check(tx:query("INSERT INTO order_transitions (order_id, from_status, to_status, at) SELECT id, 'ORDERED', "
            .. "'CANCELLED', cancelled_at FROM orders WHERE id = ?", id))
        return lifecycle.restock(tx, "order_id = ?", id)
    end)
end

local function request_return(req)
    return change(req, function(tx, id, status)
        if status ~= "DELIVERED" then fail(409, "NOT_DELIVERED", MSG.NOT_DELIVERED, { status = status }) end
        local r = check(tx:query("UPDATE orders SET status = 'RETURN_REQUESTED', return_requested_at = "
            .. "UTC_TIMESTAMP(3) WHERE id = ? AND status = 'DELIVERED' AND delivered_at > UTC_TIMESTAMP(3) - "
            .. "INTERVAL ? MICROSECOND", id, lifecycle.day_us()))
        if r.affected_rows ~= 1 then fail(409, "RETURN_WINDOW_CLOSED", MSG.RETURN_WINDOW_CLOSED) end
        check(tx:query("INSERT INTO order_transitions (order_id, from_status, to_status, at) SELECT id, 'DELIVERED', "
            .. "'RETURN_REQUESTED', return_requested_at FROM orders WHERE id = ?", id))
    end)
end

function _M.routes(app)
    app:post("/api/orders", auth.member(create))
    app:get("/api/orders", auth.member(list))
    app:get("/api/orders/:id[%d]", auth.member(detail))
    app:post("/api/orders/:id[%d]/cancel", auth.member(cancel))
    app:post("/api/orders/:id[%d]/return", auth.member(request_return))
end

return _M
