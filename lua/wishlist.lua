-- wishlist.lua: the caller's own wishlist (API.md "Wishlist").
--
--   GET    /api/wishlist              items with a product summary, cursor paging
--   POST   /api/wishlist              {product_id, quantity} -> 201 item; a product already there
--                                     adds to its quantity (at most 99 in all: else 400)
--   PATCH  /api/wishlist/:id          {quantity} (1-99)
--   DELETE /api/wishlist/:id          204
--   POST   /api/wishlist/:id/order    orders the item as POST /api/orders does and removes it, in
--                                     the same transaction (Idempotency-Key as there)
--
-- Every statement names the caller (user_id = ?), so another member's item is 404 like a missing
-- one. Adding is one INSERT ... ON DUPLICATE KEY UPDATE (concurrent adds of one product merge);
-- the table's CHECK (quantity BETWEEN 1 AND 99) refuses a sum past 99.
local web = require "lib.web"
local json = require "lib.json"
local validate = require "lib.validate"
local fields = require "lib.fields"
local clock = require "lib.clock"
local auth = require "lib.auth"
local idempotency = require "lib.idempotency"
local products = require "products"
local orders = require "orders"
local host = require "host"

local type, pairs = type, pairs
local fail, check = web.fail, web.check

local _M = {}

local MSG_NOT_FOUND = { ko = "위시리스트 항목을 찾을 수 없습니다.", en = "The wishlist item was not found." }
local MSG_TOO_MANY = {
    ko = "위시리스트의 수량은 99개를 넘을 수 없습니다.",
    en = "A wishlist item holds at most 99 units.",
}

local MAX_QUANTITY = 99
local CHECK_FAILED = 4025 -- MariaDB: CONSTRAINT ... failed

local function not_found()
    fail(404, "WISHLIST_ITEM_NOT_FOUND", MSG_NOT_FOUND)
end

-- Items are read from wishlist_items alone; their product summaries come from the catalog's Lua API
-- (products.read), never from a join: the products table is the catalog module's.
local ITEM_SQL = "SELECT id, product_id, quantity, created_at FROM wishlist_items WHERE user_id = ?"

-- The JSON items of wishlist rows, with their product summaries (an item whose product is gone is left out).
local function items_json(tx, rows)
    if #rows == 0 then return {} end
    local ids, by_id, out = {}, {}, {}
    for i = 1, #rows do ids[i] = rows[i].product_id end
    local ps = products.read(tx, ids)
    for i = 1, #ps do by_id[ps[i].id] = ps[i] end
    for i = 1, #rows do
        local r, p = rows[i], by_id[rows[i].product_id]
        if p then
            out[#out + 1] = {
                id = r.id, product_id = r.product_id, quantity = r.quantity, created_at = clock.from_sql(r.created_at),
                product = { id = p.id, name = p.name, price = p.price },
            }
        end
    end
    return out
end

local function load(tx, uid, id)
    local q = tx and function(...) return tx:query(...) end or host.mysql.query
    return items_json(tx, check(q(ITEM_SQL .. " AND id = ?", uid, id)))[1]
end

-- Checks a body of exactly the fields named in `want` (name -> required).
local function body_of(req, want)
    local body = validate.object(req)
    local f = fields.new(req)
    for k in pairs(body) do
        if want[k] == nil then f:bad(type(k) == "string" and #k <= 64 and k or "_other", validate.MSG.NOT_ALLOWED) end
    end
    local v = {}
    if want.product_id ~= nil then v.product_id = f:int("product_id", body.product_id, 1, fields.MAX_ID) end
    if body.quantity ~= nil or want.quantity then
        v.quantity = f:int("quantity", body.quantity, 1, MAX_QUANTITY)
    else
        v.quantity = 1
    end
    f:done()
    return v
end

local function list(req)
    local limit, after = fields.page(req)
    local items = items_json(nil, check(host.mysql.query(ITEM_SQL .. " AND id > ? ORDER BY id LIMIT ?", req.auth.uid,
        after or 0, limit + 1)))
    local next_cursor = fields.cursor(items, limit)
    return { json = { items = json.array(items), next_cursor = next_cursor } }
end

-- wishlist.items_of(uid, n): the member's n newest items (my page).
function _M.items_of(uid, n)
    return json.array(items_json(nil, check(host.mysql.query(ITEM_SQL .. " ORDER BY id DESC LIMIT ?", uid, n))))
end

local function add(req)
    local uid = req.auth.uid
    local v = body_of(req, { product_id = true, quantity = false })
    return idempotency.tx(req, uid, function(tx)
        if not products.read(tx, { v.product_id })[1] then products.not_found(v.product_id) end
        local r, err, errno = tx:query("INSERT INTO wishlist_items (user_id, product_id, quantity, created_at, "
            .. "updated_at) VALUES (?, ?, ?, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE "
            .. "quantity = quantity + VALUES(quantity), updated_at = VALUES(updated_at)", uid, v.product_id, v.quantity)
        if not r and errno == CHECK_FAILED then validate.fail(req, "quantity", MSG_TOO_MANY) end
        check(r, err, errno)
        local rows = check(tx:query("SELECT id FROM wishlist_items WHERE user_id = ? AND product_id = ?", uid,
            v.product_id))
        return 201, load(tx, uid, rows[1].id)
    end)
end

local function update(req)
    local uid, id = req.auth.uid, fields.path_id(req, not_found)
    local v = body_of(req, { quantity = true })
    check(host.mysql.query("UPDATE wishlist_items SET quantity = ?, updated_at = UTC_TIMESTAMP(3) WHERE id = ? "
        .. "AND user_id = ?", v.quantity, id, uid))
    local item = load(nil, uid, id)
    if not item then not_found() end
    return { json = item }
end

local function remove(req)
    local r = check(host.mysql.query("DELETE FROM wishlist_items WHERE id = ? AND user_id = ?",
        fields.path_id(req, not_found), req.auth.uid))
    if r.affected_rows == 0 then not_found() end
end

local function order(req)
    local uid, id = req.auth.uid, fields.path_id(req, not_found)
    return orders.create(req, uid, nil, function(tx)
        local rows = check(tx:query("SELECT product_id, quantity FROM wishlist_items WHERE id = ? AND user_id = ? "
            .. "FOR UPDATE", id, uid))
        if not rows[1] then not_found() end
        check(tx:query("DELETE FROM wishlist_items WHERE id = ?", id))
        return { { product_id = rows[1].product_id, quantity = rows[1].quantity } }
    end)
end

function _M.routes(app)
    app:get("/api/wishlist", auth.member(list))
    app:post("/api/wishlist", auth.member(add))
    app:patch("/api/wishlist/:id[%d]", auth.member(update))
    app:delete("/api/wishlist/:id[%d]", auth.member(remove))
    app:post("/api/wishlist/:id[%d]/order", auth.member(order))
end

return _M
