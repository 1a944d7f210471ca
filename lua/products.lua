-- products.lua: the catalog (API.md "Products").
--
--   GET  /api/products                 list, cursor paging (id order)
--   GET  /api/products/:id             detail, plus remaining and state
--   GET  /api/products/:id/stock       the hot path: {product_id, remaining, state}, no MySQL per request
--   POST /api/products                 admin: create (409 PRODUCT_EXISTS on a taken name; Idempotency-Key)
--   PATCH /api/products/:id            admin: update fields
--   PUT  /api/products/:id/stock       admin: set stock (409 SALE_IN_PROGRESS for an open FLASH sale)
--
-- The stock read is served from a cache of the product's type, stock and sale window, kept per node
-- in the shared dictionary host.shared.catalog when the config declares it (shared_dicts = {
-- catalog = "8m" }), else per worker. An entry lives app.stock_cache_ttl seconds (default 1); every
-- write of a product's stock or sale (here, orders, cancels, returns) deletes its entry in this
-- node's cache once committed (products.invalidate). Staleness bound: none on the writing worker;
-- at most the TTL on other hosts (and, without host.shared, on other workers of the node). Unknown
-- ids are cached as absent for the same time, so a scan of ids cannot reach MySQL at request rate.
-- FLASH products are sold by the flash purchase, which keeps their live stock elsewhere; here their
-- state follows the sale window and the stock column.
local web = require "lib.web"
local json = require "lib.json"
local validate = require "lib.validate"
local fields = require "lib.fields"
local clock = require "lib.clock"
local auth = require "lib.auth"
local idempotency = require "lib.idempotency"
local host = require "host"

local tonumber, tostring, type, pairs, concat, unpack = tonumber, tostring, type, pairs, table.concat, unpack
local format, find, sub = string.format, string.find, string.sub
local fail, check = web.fail, web.check
local null = json.null
local epoch_of_sql = clock.epoch_of_sql

local _M = {}

-- The flash module, required when first needed: it requires this one (the catalog's Lua API) at load.
local function flash_sale()
    return require "flash"
end

local MSG_NOT_FOUND = { ko = "상품을 찾을 수 없습니다.", en = "The product was not found." }
local MSG_EXISTS = { ko = "이미 같은 이름의 상품이 있습니다.", en = "A product with this name already exists." }
local MSG_SALE_OPEN = {
    ko = "판매 중인 선착순 상품의 재고는 변경할 수 없습니다.",
    en = "The stock of a flash product cannot be changed while its sale is open.",
}
local MSG_SALE_ORDER = {
    ko = "판매 종료 시각은 시작 시각보다 뒤여야 합니다.",
    en = "The sale must end after it starts.",
}
local MSG_FLASH_ONLY = { ko = "선착순 상품에만 지정할 수 있습니다.", en = "Only for FLASH products." }
local MSG_TYPE = { ko = "NORMAL 또는 FLASH 중 하나여야 합니다.", en = "Must be NORMAL or FLASH." }

local MAX_PRICE = 1e12
local MAX_STOCK = 1e9
local MAX_LIMIT = 1000

local NAME_RULES = validate.rules { { "name", "text", required = true, max = 200 } }
local DESCRIPTION_RULES = validate.rules { { "description", "text", max = 2000, multiline = true } }

local COLUMNS = "id, name, description, price, type, stock, sale_starts_at, sale_ends_at, per_user_limit, "
    .. "created_at"

local function not_found(id)
    fail(404, "PRODUCT_NOT_FOUND", MSG_NOT_FOUND, { product_id = id })
end
_M.not_found = not_found

---------------------------------------------------------------------------------------------------
-- State and JSON

-- state(type, stock, starts, ends, now) for epoch times (nil for a NORMAL product).
local function state_of(ptype, stock, starts, ends, now)
    if ptype == "FLASH" then
        if now < starts then return "UPCOMING" end
        if now >= ends then return "CLOSED" end
    end
    return stock > 0 and "OPEN" or "SOLD_OUT"
end

local function time_or_null(s)
    if s == null or s == nil then return null end
    return clock.from_sql(s)
end

-- The product object of API.md from a row.
function _M.to_json(row)
    return {
        id = row.id, name = row.name, description = row.description, price = row.price, type = row.type,
        stock = row.stock, sale_starts_at = time_or_null(row.sale_starts_at),
        sale_ends_at = time_or_null(row.sale_ends_at), per_user_limit = row.per_user_limit,
        created_at = clock.from_sql(row.created_at),
    }
end

local function detail_json(row)
    local p = _M.to_json(row)
    p.remaining = row.stock
    local starts = row.sale_starts_at ~= null and epoch_of_sql(row.sale_starts_at) or nil
    local ends = row.sale_ends_at ~= null and epoch_of_sql(row.sale_ends_at) or nil
    p.state = state_of(row.type, row.stock, starts, ends, host.now())
    return p
end

local function load(id)
    local rows = check(host.mysql.query("SELECT " .. COLUMNS .. " FROM products WHERE id = ?", id))
    return rows[1]
end

---------------------------------------------------------------------------------------------------
-- The stock cache

-- Per-worker stand-in for host.shared.catalog (same get/set/delete).
local worker_cache = { data = {} }
function worker_cache:get(k)
    local e = self.data[k]
    if e and e.exp > host.now() then return e.v end
    self.data[k] = nil
    return nil
end
function worker_cache:set(k, v, ttl)
    self.data[k] = { v = v, exp = host.now() + ttl }
    return true
end
function worker_cache:delete(k)
    self.data[k] = nil
    return true
end

local function cache()
    local shared = host.shared
    return shared and shared.catalog or worker_cache
end

---------------------------------------------------------------------------------------------------
-- The catalog's Lua API: other modules (orders, wishlist, the lifecycle) never query the products
-- table themselves; they call these, inside their own transaction when they pass tx (nil: pooled).

local function run(tx, sql, ...)
    if tx then return check(tx:query(sql, ...)) end
    return check(host.mysql.query(sql, ...))
end

-- products.read(tx, ids) -> rows {id, name, price, type, stock, now} of the ids that exist (no lock).
function _M.read(tx, ids)
    local list = {}
    for i = 1, #ids do list[i] = format("%d", ids[i]) end
    return run(tx, "SELECT id, name, price, type, stock, UTC_TIMESTAMP(3) AS now FROM products WHERE id IN ("
        .. concat(list, ",") .. ")")
end

-- products.take(tx, id, n) -> true when n units of the NORMAL product were taken (its row stays
-- locked until tx ends), false when it has fewer.
function _M.take(tx, id, n)
    return run(tx, "UPDATE products SET stock = stock - ?, updated_at = UTC_TIMESTAMP(3) WHERE id = ? "
        .. "AND stock >= ? AND type = 'NORMAL'", n, id, n).affected_rows == 1
end

-- products.put_back(tx, id, n): n units go back to the product's stock (a cancel or a return).
function _M.put_back(tx, id, n)
    run(tx, "UPDATE products SET stock = stock + ?, updated_at = UTC_TIMESTAMP(3) WHERE id = ?", n, id)
end

-- products.load(id) -> the product row (every column) | nil.
_M.load = load

-- products.lock_stock(tx, id) -> the stock column, the row locked until tx ends.
function _M.lock_stock(tx, id)
    return run(tx, "SELECT stock FROM products WHERE id = ? FOR UPDATE", id)[1].stock
end

-- products.end_sale(id): an open sale of the product ends now (nothing when it is not open).
function _M.end_sale(id)
    run(nil, "UPDATE products SET sale_ends_at = UTC_TIMESTAMP(3), updated_at = UTC_TIMESTAMP(3) WHERE id = ? "
        .. "AND sale_starts_at < UTC_TIMESTAMP(3) AND sale_ends_at > UTC_TIMESTAMP(3)", id)
end

-- products.live_flash_ids() -> ids of the FLASH products whose sale has not been over for a day.
function _M.live_flash_ids()
    local rows = run(nil, "SELECT id FROM products WHERE type = 'FLASH' AND sale_ends_at > UTC_TIMESTAMP(3) - "
        .. "INTERVAL 1 DAY")
    local ids = {}
    for i = 1, #rows do ids[i] = rows[i].id end
    return ids
end

-- products.invalidate(ids): drop the cached stock of these product ids on this node (after commit).
function _M.invalidate(ids)
    local c = cache()
    for i = 1, #ids do c:delete("s:" .. tostring(ids[i])) end
end

-- products.restocked(units): after a commit that changed products.stock by {[product id] = units}:
-- the cached stock dropped, and the flash sale of a FLASH product told (flash.units_back).
function _M.restocked(units)
    local ids = {}
    for id in pairs(units) do ids[#ids + 1] = id end
    _M.invalidate(ids)
    flash_sale().units_back(units)
end

local JSON_HEADERS = web.JSON_HEADERS

-- Cache entry: "N|stock" or "F|stock|starts|ends" (epoch seconds), or "-" for no such product.
local function stock_entry(id)
    local c = cache()
    local key = "s:" .. id
    local v = c:get(key)
    if v then return v end
    local rows = check(host.mysql.query("SELECT type, stock, sale_starts_at, sale_ends_at FROM products WHERE id = ?",
        id))
    local row = rows[1]
    if not row then
        v = "-"
    elseif row.type == "FLASH" then
        v = format("F|%d|%.3f|%.3f", row.stock, epoch_of_sql(row.sale_starts_at), epoch_of_sql(row.sale_ends_at))
    else
        v = format("N|%d", row.stock)
    end
    c:set(key, v, fields.app_conf("stock_cache_ttl", 1))
    return v
end

local function get_stock(req)
    local id = format("%d", fields.path_id(req, not_found)) -- "007" -> "7": the cache key and the JSON number
    local v = stock_entry(id)
    if v == "-" then not_found(tonumber(id)) end
    -- the entry parsed by plain finds: string.match is not compiled, and this is the hot read
    local bar = find(v, "|", 3, true)
    local stock = tonumber(sub(v, 3, bar and bar - 1))
    local state
    if bar then -- "F|stock|starts|ends"
        local bar2 = find(v, "|", bar + 1, true)
        state = state_of("FLASH", stock, tonumber(sub(v, bar + 1, bar2 - 1)), tonumber(sub(v, bar2 + 1)), host.now())
    else
        state = stock > 0 and "OPEN" or "SOLD_OUT"
    end
    return {
        body = '{"product_id":' .. id .. ',"remaining":' .. stock .. ',"state":"' .. state .. '"}',
        headers = JSON_HEADERS,
    }
end

---------------------------------------------------------------------------------------------------
-- Reads

local LIST_COLUMNS = "id, name, description, price, type, sale_starts_at, sale_ends_at"

local function list(req)
    local limit, after = fields.page(req)
    local rows = check(host.mysql.query("SELECT " .. LIST_COLUMNS .. " FROM products WHERE id > ? ORDER BY id LIMIT ?",
        after or 0, limit + 1))
    local items = {}
    for i = 1, #rows do
        local r = rows[i]
        items[i] = {
            id = r.id, name = r.name, description = r.description, price = r.price, type = r.type,
            sale_starts_at = time_or_null(r.sale_starts_at), sale_ends_at = time_or_null(r.sale_ends_at),
        }
    end
    local next_cursor = fields.cursor(items, limit)
    return { json = { items = json.array(items), next_cursor = next_cursor } }
end

local function detail(req)
    local id = fields.path_id(req, not_found)
    local row = load(id)
    if not row then not_found(id) end
    return { json = detail_json(row) }
end

---------------------------------------------------------------------------------------------------
-- Admin writes

-- Checks a create (all fields) or an update (only the fields present, merged over `current`):
-- returns the column values to write.
local function check_product(req, body, current)
    local f = fields.new(req)
    local allowed = { name = true, description = true, price = true, sale_starts_at = true, sale_ends_at = true,
        per_user_limit = true, type = not current, stock = not current }
    for k in pairs(body) do
        if not allowed[k] then f:bad(type(k) == "string" and #k <= 64 and k or "_other", validate.MSG.NOT_ALLOWED) end
    end
    local v = {}
    if body.name ~= nil or not current then v.name = f:text("name", body.name, NAME_RULES) end
    if body.description ~= nil then
        v.description = f:text("description", body.description, DESCRIPTION_RULES)
        if v.description == null then v.description = "" end
    elseif not current then
        v.description = ""
    end
    if body.price ~= nil or not current then v.price = f:int("price", body.price, 0, MAX_PRICE) end
    local ptype = current and current.type or "NORMAL"
    if not current and body.type ~= nil then
        if body.type ~= "NORMAL" and body.type ~= "FLASH" then
            f:bad("type", MSG_TYPE)
        else
            ptype = body.type
        end
        v.type = ptype
    end
    if not current then v.stock = body.stock == nil and 0 or f:int("stock", body.stock, 0, MAX_STOCK) end

    local flash = ptype == "FLASH"
    local starts = current and current.sale_starts_at ~= null and epoch_of_sql(current.sale_starts_at) or nil
    local ends = current and current.sale_ends_at ~= null and epoch_of_sql(current.sale_ends_at) or nil
    for _, name in pairs { "sale_starts_at", "sale_ends_at", "per_user_limit" } do
        if not flash and body[name] ~= nil and body[name] ~= null then f:bad(name, MSG_FLASH_ONLY) end
    end
    if flash then
        if body.sale_starts_at ~= nil or not current then starts = f:time("sale_starts_at", body.sale_starts_at) end
        if body.sale_ends_at ~= nil or not current then ends = f:time("sale_ends_at", body.sale_ends_at) end
        if starts and ends and starts >= ends then f:bad("sale_ends_at", MSG_SALE_ORDER) end
        if starts then v.sale_starts_at = fields.sql_time(starts) end
        if ends then v.sale_ends_at = fields.sql_time(ends) end
        if body.per_user_limit ~= nil then
            v.per_user_limit = f:int("per_user_limit", body.per_user_limit, 1, MAX_LIMIT)
        elseif not current then
            v.per_user_limit = 1
        end
    end
    f:done()
    return v
end

local function exists()
    fail(409, "PRODUCT_EXISTS", MSG_EXISTS)
end

local DUPLICATE = 1062

local function create(req)
    local v = check_product(req, validate.object(req), nil)
    local id
    local res = idempotency.tx(req, req.auth.uid, function(tx)
        local r, err, errno = tx:query("INSERT INTO products (name, description, price, type, stock, "
            .. "sale_starts_at, sale_ends_at, per_user_limit, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
            .. "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))", v.name, v.description, v.price, v.type or "NORMAL", v.stock,
            v.sale_starts_at or null, v.sale_ends_at or null, v.per_user_limit or null)
        if not r and errno == DUPLICATE then exists() end
        id = check(r, err, errno).insert_id
        local rows = check(tx:query("SELECT " .. COLUMNS .. " FROM products WHERE id = ?", id))
        return 201, _M.to_json(rows[1])
    end)
    if id then _M.invalidate({ id }) end
    return res
end

local function update(req)
    local id = fields.path_id(req, not_found)
    local current = load(id)
    if not current then not_found(id) end
    local v = check_product(req, validate.object(req), current)
    local sets, args = {}, {}
    for _, col in pairs { "name", "description", "price", "sale_starts_at", "sale_ends_at", "per_user_limit" } do
        if v[col] ~= nil then
            sets[#sets + 1] = col .. " = ?"
            args[#args + 1] = v[col]
        end
    end
    if #sets > 0 then
        args[#args + 1] = id
        local r, err, errno = host.mysql.query("UPDATE products SET " .. concat(sets, ", ")
            .. ", updated_at = UTC_TIMESTAMP(3) WHERE id = ?", unpack(args))
        if not r and errno == DUPLICATE then exists() end
        check(r, err, errno)
        _M.invalidate({ id })
        if current.type == "FLASH" and (v.sale_starts_at or v.sale_ends_at or v.per_user_limit) then
            flash_sale().sale_changed(id)
        end
    end
    return { json = _M.to_json(load(id)) }
end

local function set_stock(req)
    local id = fields.path_id(req, not_found)
    local body = validate.object(req)
    local f = fields.new(req)
    for k in pairs(body) do
        if k ~= "quantity" then f:bad(type(k) == "string" and #k <= 64 and k or "_other", validate.MSG.NOT_ALLOWED) end
    end
    local qty = f:int("quantity", body.quantity, 0, MAX_STOCK)
    f:done()
    local row = load(id)
    if not row then not_found(id) end
    local function sale_open()
        fail(409, "SALE_IN_PROGRESS", MSG_SALE_OPEN)
    end
    if row.type == "FLASH" and state_of("FLASH", 1, epoch_of_sql(row.sale_starts_at), epoch_of_sql(row.sale_ends_at),
        host.now()) == "OPEN" then
        sale_open()
    end
    -- the statement decides again (the sale may have opened meanwhile); the old stock is read under
    -- the row lock, so the change handed to the flash sale is exact whatever other writers do
    local delta = check(host.mysql.tx(function(tx)
        local old = check(tx:query("SELECT stock FROM products WHERE id = ? FOR UPDATE", id))[1].stock
        local r = check(tx:query("UPDATE products SET stock = ?, updated_at = UTC_TIMESTAMP(3) WHERE id = ? "
            .. "AND NOT (type = 'FLASH' AND sale_starts_at <= UTC_TIMESTAMP(3) AND sale_ends_at > UTC_TIMESTAMP(3))",
            qty, id))
        if r.affected_rows == 0 and old ~= qty then sale_open() end
        return qty - old
    end))
    if row.type == "FLASH" and delta ~= 0 then
        _M.restocked({ [id] = delta })
    else
        _M.invalidate({ id })
    end
    return { json = _M.to_json(load(id)) }
end

function _M.routes(app)
    app:get("/api/products", list)
    app:get("/api/products/:id[%d]", detail)
    app:get("/api/products/:id[%d]/stock", get_stock)
    app:post("/api/products", auth.admin(create))
    app:patch("/api/products/:id[%d]", auth.admin(update))
    app:put("/api/products/:id[%d]/stock", auth.admin(set_stock))
end

return _M
