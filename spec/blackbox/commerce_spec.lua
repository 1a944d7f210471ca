-- Black-box specs of the commerce routes (API.md "Products", "Wishlist", "Orders"): the real binary
-- with 2 workers, the repository's app, a database of its own migrated by `fcfs migrate`, a
-- private redis-server. Every response is checked against docs/openapi.yaml.
--
-- Covered: every route and error code of the three tables; 401 without a token, 403 for a member
-- on admin routes, 404 for another member's wishlist item and order; cursor paging; the stock read
-- following writes within its cache bound; prices kept at order time; status labels in Korean and
-- English; an order with one short item changing nothing; 200 concurrent orders for 50 units
-- (exactly 50 created, stock 0); Idempotency-Key (byte-identical replay, 422 for another body, 20
-- concurrent retries creating one order).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/commerce_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local shop = require "spec.support.shop"
local raw = require "spec.support.raw"

local format = string.format

describe("commerce", function()
    local env, a, b, admin

    local function call(...) return env:call(...) end

    local function expect_error(res, status, code)
        assert.equal(status, res.status, res.body)
        assert.equal(code, res.json.error.code, res.body)
        return res.json.error
    end

    local pn = 0
    local function product(over)
        pn = pn + 1
        local body = { name = format("상품 %d %s", pn, env.run), description = "설명", price = 1000 * pn, stock = 10 }
        for k, v in pairs(over or {}) do body[k] = v end
        local res = call("POST", "/api/products", { token = admin.token, json = body })
        assert.equal(201, res.status, res.body)
        return res.json
    end

    local function stock_of(id)
        return tonumber(env:sql(format("SELECT stock FROM products WHERE id = %d", id))[1][1])
    end

    local function count(sql)
        return tonumber(env:sql(sql)[1][1])
    end

    local function order(token, items, opts)
        opts = opts or {}
        return call("POST", "/api/orders", { token = token, json = { items = items }, headers = opts.headers })
    end

    -- RFC 3339 in the business time zone, s seconds from now
    local at = shop.at

    lazy_setup(function()
        env = shop.setup("fcfs_commerce_spec", { workers = 2 })
        a, b = env:member("a"), env:member("b")
        admin = env:member("admin", "ADMIN")
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    describe("access", function()
        it("answers 401 without a token on every member and admin route", function()
            for _, r in ipairs {
                { "POST", "/api/products" }, { "PATCH", "/api/products/{id}", "/api/products/1" },
                { "PUT", "/api/products/{id}/stock", "/api/products/1/stock" }, { "GET", "/api/wishlist" },
                { "POST", "/api/wishlist" }, { "PATCH", "/api/wishlist/{id}", "/api/wishlist/1" },
                { "DELETE", "/api/wishlist/{id}", "/api/wishlist/1" },
                { "POST", "/api/wishlist/{id}/order", "/api/wishlist/1/order" }, { "GET", "/api/orders" },
                { "POST", "/api/orders" }, { "GET", "/api/orders/{id}", "/api/orders/1" },
                { "POST", "/api/orders/{id}/cancel", "/api/orders/1/cancel" },
                { "POST", "/api/orders/{id}/return", "/api/orders/1/return" },
            } do
                expect_error(call(r[1], r[2], { path = r[3], json = {} }), 401, "UNAUTHORIZED")
            end
        end)

        it("answers 403 to a member on the admin routes", function()
            local p = product()
            expect_error(call("POST", "/api/products", { token = a.token, json = { name = "x", price = 1 } }), 403,
                "FORBIDDEN")
            expect_error(call("PATCH", "/api/products/{id}", { path = "/api/products/" .. p.id, token = a.token,
                json = { price = 1 } }), 403, "FORBIDDEN")
            expect_error(call("PUT", "/api/products/{id}/stock", { path = "/api/products/" .. p.id .. "/stock",
                token = a.token, json = { quantity = 1 } }), 403, "FORBIDDEN")
            assert.equal(10, stock_of(p.id))
        end)
    end)

    describe("products", function()
        it("creates a NORMAL product (201) and refuses a taken name (409 PRODUCT_EXISTS)", function()
            local p = product({ price = 12900, stock = 5 })
            assert.equal("NORMAL", p.type)
            assert.equal(12900, p.price)
            assert.equal(5, p.stock)
            assert.equal(cjson.null, p.per_user_limit)
            assert.matches("%+09:00$", p.created_at)
            expect_error(call("POST", "/api/products", { token = admin.token, json = { name = p.name, price = 1 } }),
                409, "PRODUCT_EXISTS")
        end)

        it("reports every failing field at once (400 VALIDATION_FAILED), writing nothing", function()
            local before = count("SELECT COUNT(*) FROM products")
            local e = expect_error(call("POST", "/api/products", { token = admin.token,
                json = { price = -1, type = "BOTH", stock = 1.5, role = "x" } }), 400, "VALIDATION_FAILED")
            for _, f in ipairs { "name", "price", "type", "stock", "role" } do assert.is_string(e.details[f], f) end
            e = expect_error(call("POST", "/api/products", { token = admin.token,
                json = { name = "n", price = 1, per_user_limit = 2 } }), 400, "VALIDATION_FAILED")
            assert.is_string(e.details.per_user_limit)
            expect_error(call("POST", "/api/products", { token = admin.token, body = "{nope" }), 400, "BAD_JSON")
            assert.equal(before, count("SELECT COUNT(*) FROM products"))
        end)

        it("creates a FLASH product: a sale window in order, per_user_limit 1 by default", function()
            local e = expect_error(call("POST", "/api/products", { token = admin.token,
                json = { name = "flash x", price = 1, type = "FLASH" } }), 400, "VALIDATION_FAILED")
            assert.is_string(e.details.sale_starts_at)
            assert.is_string(e.details.sale_ends_at)
            e = expect_error(call("POST", "/api/products", { token = admin.token, json = { name = "flash y", price = 1,
                type = "FLASH", sale_starts_at = at(60), sale_ends_at = at(30) } }), 400, "VALIDATION_FAILED")
            assert.is_string(e.details.sale_ends_at)
            e = expect_error(call("POST", "/api/products", { token = admin.token, json = { name = "flash z", price = 1,
                type = "FLASH", sale_starts_at = "tomorrow", sale_ends_at = at(30) } }), 400, "VALIDATION_FAILED")
            assert.is_string(e.details.sale_starts_at)
            local starts = at(60) -- once: a second boundary may pass while the product is created
            local p = product({ type = "FLASH", sale_starts_at = starts, sale_ends_at = at(120) })
            assert.equal(1, p.per_user_limit)
            assert.equal(shop.epoch(starts), shop.epoch(p.sale_starts_at))
            local d = call("GET", "/api/products/{id}", { path = "/api/products/" .. p.id })
            assert.equal("UPCOMING", d.json.state)
        end)

        it("lists in pages with an opaque cursor (limit default 20, max 100)", function()
            for _ = 1, 3 do product() end
            local seen, cursor, pages = {}, nil, 0
            repeat
                local path = "/api/products?limit=2" .. (cursor and ("&cursor=" .. cursor) or "")
                local res = call("GET", "/api/products", { path = path })
                assert.equal(200, res.status, res.body)
                assert.is_true(#res.json.items <= 2)
                for _, p in ipairs(res.json.items) do
                    assert.is_nil(seen[p.id])
                    seen[p.id] = true
                    assert.is_nil(p.stock)
                end
                cursor = res.json.next_cursor ~= cjson.null and res.json.next_cursor or nil
                pages = pages + 1
            until not cursor
            assert.equal(count("SELECT COUNT(*) FROM products"), (function()
                local n = 0
                for _ in pairs(seen) do n = n + 1 end
                return n
            end)())
            assert.is_true(pages >= 3)
            expect_error(call("GET", "/api/products", { path = "/api/products?limit=101" }), 400, "VALIDATION_FAILED")
            expect_error(call("GET", "/api/products", { path = "/api/products?cursor=abc" }), 400, "VALIDATION_FAILED")
        end)

        it("shows detail with remaining and state; 404 PRODUCT_NOT_FOUND", function()
            local p = product({ stock = 0 })
            local d = call("GET", "/api/products/{id}", { path = "/api/products/" .. p.id })
            assert.equal(200, d.status)
            assert.equal(0, d.json.remaining)
            assert.equal("SOLD_OUT", d.json.state)
            expect_error(call("GET", "/api/products/{id}", { path = "/api/products/99999999" }), 404,
                "PRODUCT_NOT_FOUND")
            expect_error(call("GET", "/api/products/{id}/stock", { path = "/api/products/99999999/stock" }), 404,
                "PRODUCT_NOT_FOUND")
        end)

        it("updates fields (PATCH): 404 unknown, 409 a taken name, 400 stock or type", function()
            local p, q = product(), product()
            local res = call("PATCH", "/api/products/{id}", { path = "/api/products/" .. p.id, token = admin.token,
                json = { price = 777, description = "새 설명" } })
            assert.equal(200, res.status, res.body)
            assert.equal(777, res.json.price)
            assert.equal("새 설명", res.json.description)
            expect_error(call("PATCH", "/api/products/{id}", { path = "/api/products/" .. p.id, token = admin.token,
                json = { name = q.name } }), 409, "PRODUCT_EXISTS")
            expect_error(call("PATCH", "/api/products/{id}", { path = "/api/products/99999999", token = admin.token,
                json = { price = 1 } }), 404, "PRODUCT_NOT_FOUND")
            local e = expect_error(call("PATCH", "/api/products/{id}", { path = "/api/products/" .. p.id,
                token = admin.token, json = { stock = 1, type = "FLASH" } }), 400, "VALIDATION_FAILED")
            assert.is_string(e.details.stock)
            assert.is_string(e.details.type)
        end)

        it("sets stock (PUT) and the stock read follows within the cache bound (1 s) on every worker", function()
            local p = product({ stock = 3 })
            local path = "/api/products/" .. p.id .. "/stock"
            local r = call("GET", "/api/products/{id}/stock", { path = path })
            assert.same({ product_id = p.id, remaining = 3, state = "OPEN" }, r.json)
            r = call("GET", "/api/products/{id}/stock", { path = "/api/products/00" .. p.id .. "/stock" })
            assert.same({ product_id = p.id, remaining = 3, state = "OPEN" }, r.json)
            local res = call("PUT", "/api/products/{id}/stock", { path = path, token = admin.token,
                json = { quantity = 0 } })
            assert.equal(200, res.status, res.body)
            assert.equal(0, res.json.stock)
            local t0 = socket.gettime()
            -- 20 reads over fresh connections land on both workers
            local stale_until = t0
            while socket.gettime() - t0 < 1.5 do
                local s = call("GET", "/api/products/{id}/stock", { path = path })
                if s.json.remaining ~= 0 then stale_until = socket.gettime() end
                socket.sleep(0.02)
            end
            assert.is_true(stale_until - t0 <= 1.1, format("stale for %.2f s", stale_until - t0))
            assert.equal("SOLD_OUT", call("GET", "/api/products/{id}/stock", { path = path }).json.state)
            expect_error(call("PUT", "/api/products/{id}/stock", { path = path, token = admin.token,
                json = { quantity = -1 } }), 400, "VALIDATION_FAILED")
            expect_error(call("PUT", "/api/products/{id}/stock", { path = "/api/products/99999999/stock",
                token = admin.token, json = { quantity = 1 } }), 404, "PRODUCT_NOT_FOUND")
        end)

        it("reads a flash product's stock with the state of its sale", function()
            for _, case in ipairs{ { at(3600), at(7200), "UPCOMING" }, { at(-60), at(3600), "OPEN" } } do
                local p = product({ type = "FLASH", stock = 4, sale_starts_at = case[1], sale_ends_at = case[2] })
                local r = call("GET", "/api/products/{id}/stock", { path = "/api/products/" .. p.id .. "/stock" })
                assert.same({ product_id = p.id, remaining = 4, state = case[3] }, r.json)
            end
        end)

        it("answers the stock read from the node's cache: one MySQL query per TTL window, not per read", function()
            local p = product({ stock = 7 })
            local quiet = env:start({ workers = 2 }, { lifecycle_interval = false }) -- no scheduler queries
            local sample = 'fcfs_pool_requests_total{backend="mysql"}'
            local q0 = raw.metric(quiet:metrics(), sample)
            local t0 = socket.gettime()
            for _ = 1, 300 do
                local r = call("GET", "/api/products/{id}/stock", { path = "/api/products/" .. p.id .. "/stock",
                    server = quiet })
                assert.equal(7, r.json.remaining)
            end
            local windows = math.ceil(socket.gettime() - t0) + 1
            local n = raw.metric(quiet:metrics(), sample) - q0
            print(format("\n300 stock reads in %.2f s: %d MySQL queries", socket.gettime() - t0, n))
            assert.is_true(n >= 1 and n <= windows, format("%d MySQL queries for 300 reads", n))
        end)

        it("refuses a stock change of a FLASH product while its sale is open (409 SALE_IN_PROGRESS)", function()
            local p = product({ type = "FLASH", sale_starts_at = at(-10), sale_ends_at = at(600), stock = 5 })
            local path = "/api/products/" .. p.id .. "/stock"
            expect_error(call("PUT", "/api/products/{id}/stock", { path = path, token = admin.token,
                json = { quantity = 9 } }), 409, "SALE_IN_PROGRESS")
            assert.equal(5, stock_of(p.id))
            assert.equal("OPEN", call("GET", "/api/products/{id}/stock", { path = path }).json.state)
            local up = product({ type = "FLASH", sale_starts_at = at(600), sale_ends_at = at(900), stock = 5 })
            local res = call("PUT", "/api/products/{id}/stock", { path = "/api/products/" .. up.id .. "/stock",
                token = admin.token, json = { quantity = 9 } })
            assert.equal(200, res.status, res.body)
            assert.equal(9, res.json.stock)
        end)
    end)

    describe("wishlist", function()
        it("adds (201), merges a re-add, refuses past 99 (400) and unknown products (404)", function()
            local p = product()
            local r1 = call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id, quantity = 2 } })
            assert.equal(201, r1.status, r1.body)
            assert.equal(2, r1.json.quantity)
            assert.same({ id = p.id, name = p.name, price = p.price }, r1.json.product)
            local r2 = call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id, quantity = 3 } })
            assert.equal(201, r2.status)
            assert.equal(r1.json.id, r2.json.id)
            assert.equal(5, r2.json.quantity)
            expect_error(call("POST", "/api/wishlist", { token = a.token,
                json = { product_id = p.id, quantity = 95 } }), 400, "VALIDATION_FAILED")
            expect_error(call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id, quantity = 0 } }),
                400, "VALIDATION_FAILED")
            expect_error(call("POST", "/api/wishlist", { token = a.token, json = { product_id = 99999999 } }), 404,
                "PRODUCT_NOT_FOUND")
            assert.equal(5, count(format("SELECT quantity FROM wishlist_items WHERE id = %d", r1.json.id)))
        end)

        it("is owner-scoped: another member's item is 404 on PATCH, DELETE and order; lists are private", function()
            local p = product()
            local item = call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id } }).json
            local path = "/api/wishlist/" .. item.id
            expect_error(call("PATCH", "/api/wishlist/{id}", { path = path, token = b.token, json = { quantity = 7 } }),
                404, "WISHLIST_ITEM_NOT_FOUND")
            expect_error(call("DELETE", "/api/wishlist/{id}", { path = path, token = b.token }), 404,
                "WISHLIST_ITEM_NOT_FOUND")
            expect_error(call("POST", "/api/wishlist/{id}/order", { path = path .. "/order", token = b.token }), 404,
                "WISHLIST_ITEM_NOT_FOUND")
            for _, it in ipairs(call("GET", "/api/wishlist", { token = b.token }).json.items) do
                assert.not_equal(item.id, it.id)
            end
            local mine = call("GET", "/api/wishlist", { token = a.token })
            assert.equal(200, mine.status)
            local found = false
            for _, it in ipairs(mine.json.items) do found = found or it.id == item.id end
            assert.is_true(found)
            assert.equal(10, stock_of(p.id))
        end)

        it("updates the quantity (1-99) and deletes (204)", function()
            local p = product()
            local item = call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id } }).json
            local path = "/api/wishlist/" .. item.id
            local res = call("PATCH", "/api/wishlist/{id}", { path = path, token = a.token, json = { quantity = 99 } })
            assert.equal(200, res.status, res.body)
            assert.equal(99, res.json.quantity)
            expect_error(call("PATCH", "/api/wishlist/{id}", { path = path, token = a.token,
                json = { quantity = 100 } }), 400, "VALIDATION_FAILED")
            expect_error(call("PATCH", "/api/wishlist/{id}", { path = path, token = a.token, json = {} }), 400,
                "VALIDATION_FAILED")
            assert.equal(204, call("DELETE", "/api/wishlist/{id}", { path = path, token = a.token }).status)
            expect_error(call("DELETE", "/api/wishlist/{id}", { path = path, token = a.token }), 404,
                "WISHLIST_ITEM_NOT_FOUND")
        end)

        it("orders an item (201) and removes it in the same transaction; a short item stays", function()
            local p = product({ stock = 4 })
            local item = call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id, quantity = 3 } })
                .json
            local res = call("POST", "/api/wishlist/{id}/order", { path = "/api/wishlist/" .. item.id .. "/order",
                token = a.token })
            assert.equal(201, res.status, res.body)
            assert.equal("ORDERED", res.json.status)
            assert.same({ { product_id = p.id, name = p.name, price = p.price, quantity = 3 } }, res.json.items)
            assert.equal(0, count(format("SELECT COUNT(*) FROM wishlist_items WHERE id = %d", item.id)))
            assert.equal(1, stock_of(p.id))
            local short = call("POST", "/api/wishlist", { token = a.token, json = { product_id = p.id, quantity = 2 } })
                .json
            expect_error(call("POST", "/api/wishlist/{id}/order", { path = "/api/wishlist/" .. short.id .. "/order",
                token = a.token }), 409, "OUT_OF_STOCK")
            assert.equal(1, count(format("SELECT COUNT(*) FROM wishlist_items WHERE id = %d", short.id)))
            assert.equal(1, stock_of(p.id))
        end)
    end)

    describe("orders", function()
        it("creates an order (201) keeping the price at order time, labels in Korean or English", function()
            local p, q = product({ price = 1500 }), product({ price = 2500 })
            local res = order(a.token, { { product_id = q.id, quantity = 1 }, { product_id = p.id, quantity = 2 } })
            assert.equal(201, res.status, res.body)
            local o = res.json
            assert.equal("ORDERED", o.status)
            assert.equal("배송 준비중", o.status_label)
            assert.equal(5500, o.total)
            assert.equal(2, #o.items)
            assert.equal(cjson.null, o.shipped_at)
            assert.equal(1, #o.transitions)
            assert.equal("ORDERED", o.transitions[1].to)
            assert.equal(8, stock_of(p.id))
            assert.equal(9, stock_of(q.id))
            call("PATCH", "/api/products/{id}", { path = "/api/products/" .. p.id, token = admin.token,
                json = { price = 9999 } })
            local d = call("GET", "/api/orders/{id}", { path = "/api/orders/" .. o.id, token = a.token,
                headers = { ["accept-language"] = "en-US,en;q=0.9" } })
            assert.equal(200, d.status)
            assert.equal("Preparing for shipment", d.json.status_label)
            for _, it in ipairs(d.json.items) do
                assert.equal(it.product_id == p.id and 1500 or 2500, it.price)
            end
            assert.equal(5500, d.json.total)
        end)

        it("refuses FLASH products (409 USE_FLASH_PURCHASE), unknown ones (404) and bad input (400)", function()
            local f = product({ type = "FLASH", sale_starts_at = at(-10), sale_ends_at = at(600) })
            local e = expect_error(order(a.token, { { product_id = f.id, quantity = 1 } }), 409, "USE_FLASH_PURCHASE")
            assert.equal(f.id, e.details.product_id)
            e = expect_error(order(a.token, { { product_id = 99999999, quantity = 1 } }), 404, "PRODUCT_NOT_FOUND")
            assert.equal(99999999, e.details.product_id)
            expect_error(order(a.token, {}), 400, "VALIDATION_FAILED")
            e = expect_error(order(a.token, { { product_id = f.id, quantity = 0 },
                { product_id = "x", quantity = 1 } }), 400, "VALIDATION_FAILED")
            assert.is_string(e.details["items[0].quantity"])
            assert.is_string(e.details["items[1].product_id"])
            assert.equal(10, stock_of(f.id))
        end)

        it("changes nothing when one item of several is short (409 OUT_OF_STOCK, details.product_id)", function()
            local p, q, r = product({ stock = 5 }), product({ stock = 1 }), product({ stock = 5 })
            local before = count("SELECT COUNT(*) FROM orders")
            local e = expect_error(order(a.token, { { product_id = p.id, quantity = 2 },
                { product_id = q.id, quantity = 2 }, { product_id = r.id, quantity = 1 } }), 409, "OUT_OF_STOCK")
            assert.equal(q.id, e.details.product_id)
            assert.equal(5, stock_of(p.id))
            assert.equal(1, stock_of(q.id))
            assert.equal(5, stock_of(r.id))
            assert.equal(before, count("SELECT COUNT(*) FROM orders"))
        end)

        it("lists newest first with ?status= and cursor paging; another member's order is 404", function()
            local p = product()
            local ids = {}
            for i = 1, 3 do ids[i] = order(b.token, { { product_id = p.id, quantity = 1 } }).json.id end
            call("POST", "/api/orders/{id}/cancel", { path = "/api/orders/" .. ids[2] .. "/cancel", token = b.token })
            local page = call("GET", "/api/orders", { path = "/api/orders?limit=2", token = b.token })
            assert.equal(200, page.status, page.body)
            assert.same({ ids[3], ids[2] }, { page.json.items[1].id, page.json.items[2].id })
            local rest = call("GET", "/api/orders", { path = "/api/orders?limit=2&cursor=" .. page.json.next_cursor,
                token = b.token })
            assert.equal(ids[1], rest.json.items[1].id)
            local cancelled = call("GET", "/api/orders", { path = "/api/orders?status=CANCELLED", token = b.token })
            assert.equal(1, #cancelled.json.items)
            assert.equal(ids[2], cancelled.json.items[1].id)
            expect_error(call("GET", "/api/orders", { path = "/api/orders?status=LOST", token = b.token }), 400,
                "VALIDATION_FAILED")
            for _, o in ipairs(call("GET", "/api/orders", { token = a.token }).json.items) do
                assert.is_true(o.id ~= ids[1] and o.id ~= ids[2] and o.id ~= ids[3])
            end
            local path = "/api/orders/" .. ids[1]
            expect_error(call("GET", "/api/orders/{id}", { path = path, token = a.token }), 404, "ORDER_NOT_FOUND")
            expect_error(call("POST", "/api/orders/{id}/cancel", { path = path .. "/cancel", token = a.token }), 404,
                "ORDER_NOT_FOUND")
            expect_error(call("POST", "/api/orders/{id}/return", { path = path .. "/return", token = a.token }), 404,
                "ORDER_NOT_FOUND")
            assert.equal("ORDERED", call("GET", "/api/orders/{id}", { path = path, token = b.token }).json.status)
        end)

        it("cancels while ORDERED with the stock back at once; then 409 CANNOT_CANCEL / NOT_DELIVERED", function()
            local p = product({ stock = 3 })
            local o = order(a.token, { { product_id = p.id, quantity = 2 } }).json
            assert.equal(1, stock_of(p.id))
            local path = "/api/orders/" .. o.id
            expect_error(call("POST", "/api/orders/{id}/return", { path = path .. "/return", token = a.token }), 409,
                "NOT_DELIVERED")
            local res = call("POST", "/api/orders/{id}/cancel", { path = path .. "/cancel", token = a.token })
            assert.equal(200, res.status, res.body)
            assert.equal("CANCELLED", res.json.status)
            assert.equal("취소 완료", res.json.status_label)
            assert.is_string(res.json.cancelled_at)
            assert.equal(3, stock_of(p.id))
            expect_error(call("POST", "/api/orders/{id}/cancel", { path = path .. "/cancel", token = a.token }), 409,
                "CANNOT_CANCEL")
            assert.equal(3, stock_of(p.id))
            assert.equal(2, count(format("SELECT COUNT(*) FROM order_transitions WHERE order_id = %d", o.id)))
        end)

        it("sells exactly the stock to 200 concurrent orders of 1 unit (50 x 201, 150 x 409, stock 0)", function()
            local p = product({ stock = 50 })
            local before = count("SELECT COUNT(*) FROM orders")
            local req = shop.raw_request("POST", "/api/orders", a.token,
                cjson.encode({ items = { { product_id = p.id, quantity = 1 } } }))
            local results = raw.fanout { port = env.s.port, n = 200, request = req, timeout = 30 }
            local by = {}
            for _, r in ipairs(results) do
                local k = r.status or r.err
                by[k] = (by[k] or 0) + 1
                if r.status == 409 then assert.matches('"OUT_OF_STOCK"', r.body) end
            end
            assert.same({ [201] = 50, [409] = 150 }, by)
            assert.equal(0, stock_of(p.id))
            assert.equal(before + 50, count("SELECT COUNT(*) FROM orders"))
            assert.equal(50, count(format("SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE product_id = %d",
                p.id)))
        end)
    end)

    describe("Idempotency-Key", function()
        it("replays the first response byte for byte; another body under the key is 422", function()
            local p = product()
            local key = { ["Idempotency-Key"] = "k-" .. env.run .. "-1" }
            local r1 = order(a.token, { { product_id = p.id, quantity = 1 } }, { headers = key })
            assert.equal(201, r1.status, r1.body)
            local r2 = order(a.token, { { product_id = p.id, quantity = 1 } }, { headers = key })
            assert.equal(201, r2.status)
            assert.equal(r1.body, r2.body)
            assert.equal(9, stock_of(p.id))
            expect_error(order(a.token, { { product_id = p.id, quantity = 2 } }, { headers = key }), 422,
                "IDEMPOTENCY_KEY_REUSED")
            -- the key is the member's: another member's same key is a new request
            local r3 = order(b.token, { { product_id = p.id, quantity = 1 } }, { headers = key })
            assert.equal(201, r3.status)
            assert.not_equal(r1.json.id, r3.json.id)
            expect_error(order(a.token, { { product_id = p.id, quantity = 1 } },
                { headers = { ["Idempotency-Key"] = "has space" } }), 400, "VALIDATION_FAILED")
        end)

        it("holds for product creation and wishlist adds too", function()
            local key = { ["Idempotency-Key"] = "k-" .. env.run .. "-2" }
            local body = { name = "idem " .. env.run, price = 5, stock = 3 }
            local r1 = call("POST", "/api/products", { token = admin.token, json = body, headers = key })
            assert.equal(201, r1.status, r1.body)
            local r2 = call("POST", "/api/products", { token = admin.token, json = body, headers = key })
            assert.equal(201, r2.status, r2.body)
            assert.equal(r1.body, r2.body)
            body.price = 6
            expect_error(call("POST", "/api/products", { token = admin.token, json = body, headers = key }), 422,
                "IDEMPOTENCY_KEY_REUSED")
            local w = { product_id = r1.json.id, quantity = 2 }
            local w1 = call("POST", "/api/wishlist", { token = a.token, json = w, headers = key })
            local w2 = call("POST", "/api/wishlist", { token = a.token, json = w, headers = key })
            assert.equal(201, w2.status, w2.body)
            assert.equal(w1.body, w2.body)
            assert.equal(2, count(format("SELECT quantity FROM wishlist_items WHERE id = %d", w1.json.id)))
        end)

        it("creates one order for 20 concurrent retries with one key, all with the same body", function()
            local p = product({ stock = 30 })
            local before = count("SELECT COUNT(*) FROM orders")
            local req = shop.raw_request("POST", "/api/orders", a.token,
                cjson.encode({ items = { { product_id = p.id, quantity = 1 } } }),
                { ["Idempotency-Key"] = "k-" .. env.run .. "-concurrent" })
            local results = raw.fanout { port = env.s.port, n = 20, request = req, timeout = 30 }
            local first = results[1].body
            for i, r in ipairs(results) do
                assert.equal(201, r.status, tostring(r.err or r.body))
                assert.equal(first, r.body, "response " .. i)
            end
            assert.equal(before + 1, count("SELECT COUNT(*) FROM orders"))
            assert.equal(29, stock_of(p.id))
        end)
    end)

    it("shows the wishlist and the 5 newest orders on my page", function()
        local res = call("GET", "/api/mypage", { token = a.token })
        assert.equal(200, res.status, res.body)
        local newest = call("GET", "/api/orders", { path = "/api/orders?limit=5", token = a.token }).json.items
        assert.equal(5, #res.json.recent_orders)
        for i = 1, 5 do assert.equal(newest[i].id, res.json.recent_orders[i].id) end
        local wl = call("GET", "/api/wishlist", { token = a.token }).json.items
        assert.equal(#wl, #res.json.wishlist)
        assert.is_true(#wl > 0)
        assert.equal(0, #call("GET", "/api/mypage", { token = admin.token }).json.recent_orders)
    end)

    describe("demo data", function()
        it("seeds 5 NORMAL products and one FLASH product opening later, idempotently (fcfs run)", function()
            local code, out = env.s:cli { "run", env.s.lua_dir .. "/cli/seed.lua", "120" }
            assert.equal(0, code, out)
            local flash = env:sql("SELECT id, stock, per_user_limit FROM products WHERE name = '선착순 한정판 스니커즈'")
            assert.equal(1, #flash)
            local d = call("GET", "/api/products/{id}", { path = "/api/products/" .. flash[1][1] })
            assert.equal("FLASH", d.json.type)
            assert.equal("UPCOMING", d.json.state)
            local opens = shop.epoch(d.json.sale_starts_at) - socket.gettime()
            assert.is_true(opens > 100 and opens <= 120, format("opens in %.1f s", opens))
            local n = count("SELECT COUNT(*) FROM products")
            code, out = env.s:cli { "run", env.s.lua_dir .. "/cli/seed.lua", "120" }
            assert.equal(0, code, out)
            assert.equal(n, count("SELECT COUNT(*) FROM products"))
            assert.equal(d.json.sale_starts_at, call("GET", "/api/products/{id}",
                { path = "/api/products/" .. flash[1][1] }).json.sale_starts_at)
            assert.equal(5, count("SELECT COUNT(*) FROM products WHERE name IN ('무선 이어폰', '기계식 키보드', "
                .. "'텀블러 500ml', '백팩', 'USB-C 충전기 65W')"))
        end)
    end)

    it("logs no unexpected error", function()
        env:assert_no_errors()
    end)
end)
