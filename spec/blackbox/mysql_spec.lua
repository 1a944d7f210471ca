-- Black-box specs of the MySQL data plane (host.mysql, fcfs migrate): the real binary ($FCFS_BIN,
-- default build/fcfs) with a temporary config and test app, talking to a real mariadbd. Most blocks
-- use the shared test server (FCFS_TEST_MYSQL_*, exported by `etc/dev test`); the fault block starts
-- a private mariadbd of its own (spec/support/db.lua) so that it can stop and restart it. Covered:
-- result typing through HTTP handlers and values stored verbatim (checked byte for byte with an
-- independent client), empty results as [], DATETIME(3) and UTC sessions, transactions rolled
-- back by a Lua error or a web.fail, an exhausted pool, a request deadline in the middle of a
-- statement (a transaction's connection is closed; a pooled statement is killed with KILL QUERY
-- and its connection reset and reused: 200 abandoned requests cost no reconnects), session state
-- (named locks, user variables, temporary tables, SET SESSION) never reaching the next request, the
-- event loop not blocked by a slow statement, mariadbd stopped with a statement in flight and
-- restarted under load (503 fast, circuit breaker in /metrics, /readyz, back within 2 s), pooled
-- connections a restart closed dropped before a request could get one, and
-- `fcfs migrate`. Every block ends by checking the error log for [error] lines it did not provoke
-- itself.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/mysql_spec.lua
-- (needs the FCFS_TEST_MYSQL_* and FCFS_TEST_REDIS variables `etc/dev test` exports)
local socket = require "socket"
local cjson = require "cjson.safe"
local server = require "spec.support.server"
local http = require "spec.support.http"
local db = require "spec.support.db"

local format = string.format
local null = cjson.null
local now = socket.gettime

local function write_file(path, data)
    local f = assert(io.open(path, "wb"))
    assert(f:write(data))
    assert(f:close())
end

local function hex(s)
    return (s:gsub(".", function(c)
        return format("%02X", c:byte())
    end))
end

-- The repository's app.lua (/readyz, /metrics, /hello) is the module mysqlspec_base of the test
-- app, which adds the routes below.
local BASE_APP = server.repo_file("lua/app.lua")

local APP = [==[
local app = require "mysqlspec_base"
local web = require "lib.web"
local host = require "host"
local mysql = host.mysql
local check, fail = web.check, web.fail
local null = host.null
local tonumber, error = tonumber, error

local state = { seen = {} } -- per VM: what handlers saw before they failed

local function opt(v)
    if v == nil then return null end
    return v
end

-- 1: typing and verbatim values
local COLUMNS = { "qty", "neg", "big", "price", "at", "note", "ratio", "flag", "tag" }

app:post("/items", function(req)
    local b = req:json()
    local v = {}
    for i = 1, #COLUMNS do v[i] = opt(b[COLUMNS[i]]) end
    local r = check(mysql.query("INSERT INTO myspec_items (qty, neg, big, price, at, note, ratio, flag, tag) "
        .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", unpack(v, 1, #COLUMNS)))
    return { status = 201, json = { id = r.insert_id, affected_rows = r.affected_rows } }
end)

app:get("/items/:id[%d]", function(req)
    local rows = check(mysql.query("SELECT * FROM myspec_items WHERE id = ?", tonumber(req.params.id)))
    if not rows[1] then fail(404, "NOT_FOUND", "no such item") end
    return { json = rows[1] }
end)

app:get("/items-by-tag", function(req)
    local rows = check(mysql.query("SELECT id FROM myspec_items WHERE tag = ? ORDER BY id", req:arg("tag")))
    local ids = {}
    for i = 1, #rows do ids[i] = rows[i].id end
    return { json = { ids = ids, n = #rows } }
end)

app:get("/literals", function(req)
    local rows = check(mysql.query("SELECT '?' AS lit, ? AS v, /* ? */ ? AS w, "
        .. "9007199254740992 AS edge, 9007199254740993 AS beyond, -9007199254740993 AS below, "
        .. "18446744073709551615 AS umax, "
        .. "CAST(-12.345 AS DECIMAL(10,3)) AS decimal_v, NULL AS nothing, 1.5e0 AS dbl, "
        .. "CAST('2026-01-02 03:04:05' AS DATETIME) AS at, CAST('2026-01-02' AS DATE) AS day",
        req:arg("v"), tonumber(req:arg("w"))))
    return { json = rows[1] }
end)

-- 2: transactions
app:post("/tx/:mode", function(req)
    local k, mode = req:arg("k"), req.params.mode
    local seen = check(mysql.tx(function(tx)
        check(tx:query("INSERT INTO myspec_tx (k, v) VALUES (?, 1)", k))
        local n = check(tx:query("SELECT COUNT(*) AS n FROM myspec_tx WHERE k = ?", k))[1].n
        state.seen[k] = n
        if mode == "boom" then error("mysqlspec: boom inside tx") end
        if mode == "conflict" then fail(409, "CONFLICT", "already taken", { seen = n }) end
        return n
    end))
    return { json = { committed = true, seen = seen } }
end)

app:get("/tx-count", function(req)
    local k = req:arg("k")
    local rows = check(mysql.query("SELECT COUNT(*) AS n FROM myspec_tx WHERE k = ?", k))
    return { json = { n = rows[1].n, seen_in_tx = opt(state.seen[k]) } }
end)

-- 3, 5: a statement that holds its connection; a plain query that reports what it got
app:get("/hold", function(req)
    local t0 = host.now()
    local rows = check(mysql.query("SELECT SLEEP(?) AS mysqlspec_hold, CONNECTION_ID() AS cid",
        tonumber(req:arg("s")) or 1))
    return { json = { slept = rows[1].mysqlspec_hold, cid = rows[1].cid, took = host.now() - t0 } }
end)

app:get("/one", function()
    local t0 = host.now()
    local rows, err, errno = mysql.query("SELECT 1 AS one")
    return { json = { one = rows and rows[1].one or null, err = opt(err), errno = opt(errno),
        took = host.now() - t0 } }
end)

-- 4: session state on a connection whose statement outlives the request
app:get("/dirty-tx", function()
    check(mysql.tx(function(tx)
        check(tx:query("SET @dirty = 1"))
        state.dirty_cid = check(tx:query("SELECT CONNECTION_ID() AS cid"))[1].cid
        check(tx:query("SELECT SLEEP(2)"))
    end))
    return { json = { finished = true } }
end)

app:get("/set-pooled", function()
    check(mysql.query("SET @dirty = 2"))
    local rows = check(mysql.query("SELECT @dirty AS dirty, CONNECTION_ID() AS cid"))
    state.dirty_cid = rows[1].cid
    return { json = rows[1] }
end)

app:get("/sleep-pooled", function()
    check(mysql.query("SELECT SLEEP(2)"))
    return { json = { finished = true } }
end)

app:get("/session", function()
    local rows = check(mysql.query("SELECT @dirty AS dirty, CONNECTION_ID() AS cid"))
    return { json = { dirty = rows[1].dirty, cid = rows[1].cid, dirty_cid = opt(state.dirty_cid) } }
end)

-- 8: empty results, DATETIME(3), UTC
app:get("/empty", function()
    local rows = check(mysql.query("SELECT id FROM myspec_items WHERE id < 0"))
    return { json = { rows = rows, n = #rows } }
end)

app:post("/times", function(req)
    local r = check(mysql.query("INSERT INTO myspec_times (at) VALUES (?)", req:json().at))
    local rows = check(mysql.query("SELECT at, @@session.time_zone AS tz, "
        .. "UNIX_TIMESTAMP('2026-01-02 00:00:00') AS epoch, "
        .. "TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) AS tz_offset FROM myspec_times WHERE id = ?",
        r.insert_id))
    return { json = rows[1] }
end)

-- 7: session state left behind by one request
app:get("/leave-state", function()
    local rows = check(mysql.query("SELECT GET_LOCK('myspec_lock', 0) AS got, CONNECTION_ID() AS cid"))
    check(mysql.query("SET @leak = 'from the previous request'"))
    check(mysql.query("CREATE TEMPORARY TABLE myspec_tmp (a INT)"))
    check(mysql.query("SET SESSION sql_mode = ''"))
    return { json = rows[1] }
end)

app:get("/see-state", function()
    local rows = check(mysql.query("SELECT IS_USED_LOCK('myspec_lock') AS holder, "
        .. "IS_FREE_LOCK('myspec_lock') AS free, @leak AS leak, @@sql_mode <> '' AS strict, "
        .. "CONNECTION_ID() AS cid"))
    local _, terr = mysql.query("SELECT COUNT(*) FROM myspec_tmp")
    local r = rows[1]
    r.tmp_err = opt(terr)
    return { json = r }
end)

-- 6: the route the fault spec calls
app:get("/db", function()
    local rows = check(mysql.query("SELECT 1 AS one"))
    return { json = { one = rows[1].one } }
end)

return app
]==]

local function start(conf)
    return server.start{
        app = APP,
        lua_files = { ["mysqlspec_base.lua"] = BASE_APP },
        conf = conf,
    }
end

-- A describe block's server: started before its first test with conf, stopped after the last;
-- box.s is the server.
local function serve(conf)
    local box = {}
    lazy_setup(function()
        box.s = start(conf)
    end)
    lazy_teardown(function()
        if box.s then box.s:stop() end
    end)
    return box
end

-- The closing test of a block: stop its server and find no [error] line but the allowed ones.
local function logs_no_unexpected_error(box, allowed)
    it("logs no unexpected error, through shutdown", function()
        box.s:stop()
        box.s:assert_no_errors(allowed)
    end)
end

local function get(s, path, timeout)
    return http.request{ port = s.port, path = path, timeout = timeout or 5 }
end

-- body: a table (cjson-encoded) or the JSON text itself.
local function post_json(s, path, body)
    if type(body) == "table" then body = cjson.encode(body) end
    return http.request{ port = s.port, method = "POST", path = path, timeout = 5,
        headers = { ["content-type"] = "application/json" }, body = body or "{}" }
end

-- A request sent now whose response is read later: { conn, t0 }, then :finish() -> res, seconds.
local function send_async(s, path)
    local c = assert(http.connect(s.port, nil, 10))
    assert(c:send_raw(http.format_request({ path = path }, s.port)))
    local t0 = now()
    return {
        finish = function()
            local res, err = c:read_response()
            local t = now() - t0
            c:close()
            return res, err, t
        end,
    }
end

-- Wait until the shared server shows a statement holding `marker` running (ours, via fcfs).
local function wait_running(marker)
    return db.wait_until(function()
        local rows = db.exec(format("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            .. "WHERE INFO LIKE '%%%s%%' AND ID <> CONNECTION_ID()", marker))
        return tonumber(rows[1][1]) > 0
    end, 5)
end

local function urlencode(s)
    return (s:gsub("[^%w%-_.~]", function(c)
        return format("%%%02X", c:byte())
    end))
end

local function circuit_state(s)
    return tonumber(s:metrics():match('fcfs_circuit_state{backend="mysql",worker="%d+"} (%d+)'))
end

---------------------------------------------------------------------------------------------------

describe("host.mysql", function()
    local s

    lazy_setup(function()
        db.exec("DROP TABLE IF EXISTS myspec_items")
        db.exec([[CREATE TABLE myspec_items (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            qty INT NOT NULL,
            neg BIGINT NULL,
            big BIGINT UNSIGNED NULL,
            price DECIMAL(12,2) NULL,
            at DATETIME NULL,
            note TEXT NULL,
            ratio DOUBLE NULL,
            flag TINYINT(1) NULL,
            tag VARCHAR(64) NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci]])
        db.exec("DROP TABLE IF EXISTS myspec_times")
        db.exec("CREATE TABLE myspec_times (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(3) NOT NULL)")
        db.exec("DROP TABLE IF EXISTS myspec_tx")
        db.exec("CREATE TABLE myspec_tx (k VARCHAR(64) NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
        s = start{}
    end)

    lazy_teardown(function()
        if s then s:stop() end
    end)

    it("types results: integers, NULL, DECIMAL and DATETIME as strings, utf8mb4 text", function()
        local item = {
            qty = 3, big = "18446744073709551615", price = "12.5", at = "2026-01-02 03:04:05",
            note = "한글 테스트 — 안녕하세요 🎉", ratio = 0.25, flag = true, tag = null,
        }
        -- cjson would round -(2^53 - 1) to 14 digits: that number goes in as text
        local body = cjson.encode(item):gsub("^{", '{"neg":-9007199254740991,')
        local res = assert(post_json(s, "/items", body))
        assert.equal(201, res.status, res.body)
        local created = http.json(res)
        assert.equal(1, created.affected_rows)
        assert.is_number(created.id)
        assert.is_true(created.id > 0)

        res = assert(get(s, "/items/" .. created.id))
        assert.equal(200, res.status, res.body)
        assert.matches('"tag":null', res.body, 1, true)
        local row = http.json(res)
        assert.same({
            id = created.id,
            qty = 3,
            neg = -9007199254740991,            -- exact within 2^53: a number
            big = "18446744073709551615",       -- beyond 2^53: the exact digits, as a string
            price = "12.50",                    -- DECIMAL: a string, as the server formats it
            at = "2026-01-02 03:04:05",         -- DATETIME: a string
            note = "한글 테스트 — 안녕하세요 🎉",
            ratio = 0.25,
            flag = 1,
            tag = null,
        }, row)
        -- what the server stored, through another client: utf8mb4 bytes, not mojibake
        local rows = db.exec("SELECT HEX(note), price, big FROM myspec_items WHERE id = " .. created.id)
        assert.same({ hex(item.note), "12.50", "18446744073709551615" }, rows[1])
    end)

    it("fills placeholders only outside quotes and comments, and types literals", function()
        local res = assert(get(s, "/literals?v=" .. urlencode("it's ? a \\ test") .. "&w=7"))
        assert.equal(200, res.status, res.body)
        local row = http.json(res)
        assert.same({
            lit = "?",
            v = "it's ? a \\ test",
            w = 7,
            edge = 9007199254740992,      -- 2^53: still exact as a number
            beyond = "9007199254740993",  -- 2^53 + 1: exact only as a string
            below = "-9007199254740993",
            umax = "18446744073709551615",
            decimal_v = "-12.345",
            nothing = null,
            dbl = 1.5,
            at = "2026-01-02 03:04:05",
            day = "2026-01-02",
        }, row)
    end)

    it("encodes an empty result as a JSON array", function()
        local res = assert(get(s, "/empty"))
        assert.equal(200, res.status, res.body)
        assert.matches('"rows":[]', res.body, 1, true)
        assert.same({ rows = {}, n = 0 }, http.json(res))
    end)

    it("round-trips DATETIME(3) with its milliseconds, in a UTC session", function()
        local res = assert(post_json(s, "/times", { at = "2026-03-04 05:06:07.089" }))
        assert.equal(200, res.status, res.body)
        assert.same({ at = "2026-03-04 05:06:07.089", tz = "+00:00", epoch = 1767312000, tz_offset = 0 },
            http.json(res))
    end)

    it("stores quotes, backslashes and SQL verbatim and still has its table", function()
        local evil = {
            "'; DROP TABLE myspec_items; --",
            "O'Reilly \"quoted\" '' \\' \\\" \\\\ \\n ends with a backslash\\",
            "? ?? '?' placeholders in a value",
            "nul\0byte, ctrl-z \26, crlf \r\n, tab \t, %_ wildcards",
            "\\",
            "'",
            "",
        }
        for i, text in ipairs(evil) do
            local tag = i == 1 and text or ("evil-" .. i)
            local res = assert(post_json(s, "/items", { qty = i, note = text, tag = tag }))
            assert.equal(201, res.status, res.body)
            local id = http.json(res).id

            res = assert(get(s, "/items/" .. id))
            assert.equal(200, res.status, res.body)
            local row = http.json(res)
            assert.equal(text, row.note, "note #" .. i .. " came back changed")
            assert.equal(tag, row.tag)
            assert.equal(null, row.price)

            -- a second query that selects by the value finds exactly that row
            res = assert(get(s, "/items-by-tag?tag=" .. urlencode(tag)))
            assert.equal(200, res.status, res.body)
            assert.same({ ids = { id }, n = 1 }, http.json(res))

            -- byte for byte, through another client
            local rows = db.exec(format("SELECT HEX(note), HEX(tag) FROM myspec_items WHERE id = %d", id))
            assert.same({ hex(text), hex(tag) }, rows[1], "stored bytes of value #" .. i)
        end
        local tables = db.exec("SHOW TABLES LIKE 'myspec_items'")
        assert.same({ { "myspec_items" } }, tables)
        assert.equal(#evil, tonumber(db.exec("SELECT COUNT(*) FROM myspec_items WHERE tag IS NOT NULL")[1][1]))
    end)

    it("commits a transaction whose function returns", function()
        local res = assert(post_json(s, "/tx/ok?k=committed"))
        assert.equal(200, res.status, res.body)
        assert.same({ committed = true, seen = 1 }, http.json(res))
        res = assert(get(s, "/tx-count?k=committed"))
        assert.same({ n = 1, seen_in_tx = 1 }, http.json(res))
        assert.same({ { "1" } }, db.exec("SELECT v FROM myspec_tx WHERE k = 'committed'"))
    end)

    it("rolls back on a Lua error inside host.mysql.tx (500, no row)", function()
        local res = assert(post_json(s, "/tx/boom?k=boom"))
        assert.equal(500, res.status, res.body)
        assert.equal("INTERNAL", http.json(res).error.code)
        res = assert(get(s, "/tx-count?k=boom"))
        -- the row was there inside the transaction, and is gone
        assert.same({ n = 0, seen_in_tx = 1 }, http.json(res))
        assert.same({ { "0" } }, db.exec("SELECT COUNT(*) FROM myspec_tx WHERE k = 'boom'"))
        assert.matches("mysqlspec: boom inside tx", s:error_log(), 1, true)
    end)

    it("rolls back on web.fail inside host.mysql.tx and answers its status and code", function()
        local res = assert(post_json(s, "/tx/conflict?k=conflict"))
        assert.equal(409, res.status, res.body)
        local body = http.json(res)
        assert.equal("CONFLICT", body.error.code)
        assert.same({ seen = 1 }, body.error.details)
        res = assert(get(s, "/tx-count?k=conflict"))
        assert.same({ n = 0, seen_in_tx = 1 }, http.json(res))
        assert.same({ { "0" } }, db.exec("SELECT COUNT(*) FROM myspec_tx WHERE k = 'conflict'"))
    end)

    it("keeps serving other requests while a statement runs (100 requests, each < 100 ms)", function()
        local hold = send_async(s, "/hold?s=1")
        assert.truthy(wait_running("mysqlspec_hold"), "the SLEEP(1) statement never showed up")
        local t_start = now()
        local c = assert(http.connect(s.port))
        local worst, codes = 0, {}
        for i = 1, 100 do
            local t0 = now()
            local res = assert(c:request{ path = "/hello" })
            local dt = now() - t0
            if dt > worst then worst = dt end
            codes[res.status] = (codes[res.status] or 0) + 1
            assert.equal(200, res.status, "request " .. i)
        end
        local t_end = now()
        c:close()
        local res, err, took = hold.finish()
        assert.truthy(res, err)
        assert.equal(200, res.status, res.body)
        assert.equal(0, http.json(res).slept)
        assert.is_true(took >= 0.95, "SLEEP(1) answered after " .. took .. " s")
        -- the 100 requests were all answered while the statement was still running
        assert.is_true(t_end - t_start < 0.9, format("100 requests took %.3f s", t_end - t_start))
        assert.is_true(worst < 0.1, format("slowest request took %.3f s", worst))
        assert.same({ [200] = 100 }, codes)
    end)

    it("reports mysql ok in /readyz", function()
        local res = assert(get(s, "/readyz"))
        assert.equal(200, res.status, res.body)
        assert.equal("ok", http.json(res).checks.mysql)
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors{ "mysqlspec: boom inside tx" }
    end)
end)

---------------------------------------------------------------------------------------------------

describe("host.mysql with an exhausted pool", function()
    local box = serve{ mysql_pool_size = 1, mysql_wait_timeout = 0.3 }

    it("answers nil, \"timeout\" after mysql_wait_timeout while the only connection is held", function()
        -- the pool's one connection exists and works
        local res = assert(get(box.s, "/one"))
        assert.equal(200, res.status, res.body)
        assert.same(1, http.json(res).one)

        local hold = send_async(box.s, "/hold?s=1")
        assert.truthy(wait_running("mysqlspec_hold"), "the SLEEP(1) statement never showed up")
        local t0 = now()
        res = assert(get(box.s, "/one"))
        local dt = now() - t0
        assert.equal(200, res.status, res.body)
        local body = http.json(res)
        assert.equal(null, body.one)
        assert.equal("timeout", body.err)
        assert.equal(null, body.errno)
        assert.is_true(dt >= 0.25 and dt < 0.7, format("the wait ended after %.3f s", dt))

        local hres, err, took = hold.finish()
        assert.truthy(hres, err)
        assert.equal(200, hres.status, hres.body)
        assert.is_true(took >= 0.95)

        -- the connection is free again
        res = assert(get(box.s, "/one"))
        body = http.json(res)
        assert.same({ 1, null }, { body.one, body.err })
    end)

    it("gives the requests waiting for the connection a new one when a rollback closes it", function()
        -- a rolled-back transaction closes its connection; before the fix the waiters stayed queued
        -- until mysql_wait_timeout (503) although the pool had room again
        local raw = require "spec.support.raw"
        db.exec("CREATE TABLE IF NOT EXISTS myspec_tx (k VARCHAR(64) NOT NULL PRIMARY KEY, v INT NOT NULL) "
            .. "ENGINE=InnoDB")
        local req = "POST /tx/conflict?k=mysqlspec-rollback HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            .. "Content-Length: 0\r\n\r\n"
        local results = raw.fanout { port = box.s.port, n = 10, request = req, timeout = 10 }
        for i, r in ipairs(results) do
            assert.equal(409, r.status, "request " .. i .. ": " .. tostring(r.err or r.body))
        end
    end)

    logs_no_unexpected_error(box)
end)

---------------------------------------------------------------------------------------------------

describe("host.mysql when the request deadline passes mid-statement", function()
    local box = serve{ mysql_pool_size = 1, request_timeout = 0.3 }

    local function expect_504(path)
        local t0 = now()
        local res = assert(get(box.s, path))
        local dt = now() - t0
        assert.equal(504, res.status, res.body)
        assert.equal("TIMEOUT", http.json(res).error.code)
        assert.is_true(dt < 1, format("504 after %.3f s", dt))
    end

    -- same_conn: the abandoned connection was reset and pooled again, not replaced
    local function expect_clean(same_conn)
        local t0 = now()
        local res = assert(get(box.s, "/session"))
        local dt = now() - t0
        assert.equal(200, res.status, res.body)
        local body = http.json(res)
        assert.equal(null, body.dirty)
        assert.is_number(body.dirty_cid)
        assert.is_number(body.cid)
        assert.equal(same_conn, body.dirty_cid == body.cid)
        assert.is_true(dt < 0.3, format("the next request took %.3f s", dt))
    end

    it("answers 504 inside a transaction and never reuses that connection", function()
        expect_504("/dirty-tx")
        expect_clean(false)
    end)

    it("answers 504 on a pooled statement, kills it and pools that connection again, reset", function()
        -- a healthy pooled connection keeps its session: the same one comes back (pool of 1)
        -- (user variables never outlive the statement's turn on the connection: it is reset)
        local res = assert(get(box.s, "/set-pooled"))
        assert.equal(200, res.status, res.body)
        local set = http.json(res)
        assert.equal(null, set.dirty)
        res = assert(get(box.s, "/session"))
        assert.same({ dirty = null, cid = set.cid, dirty_cid = set.cid }, http.json(res))

        expect_504("/sleep-pooled")
        expect_clean(true)
    end)

    logs_no_unexpected_error(box, { "request deadline of 0%.3s passed" })
end)

---------------------------------------------------------------------------------------------------

describe("host.mysql with 200 requests abandoned mid-statement", function()
    local POOL = 8
    local box = serve{ mysql_pool_size = POOL, request_timeout = 0.2 }

    local function pool_counter(name)
        local body = box.s:metrics()
        return tonumber(body:match(name .. '{backend="mysql"} (%d+)'))
    end

    it("keeps its connections (KILL QUERY, no reconnect) and leaves nothing running", function()
        local connects0, requests0 = pool_counter("fcfs_pool_connects_total"), pool_counter("fcfs_pool_requests_total")
        local codes = {}
        for _ = 1, 200 / POOL do
            local batch = {}
            for i = 1, POOL do batch[i] = send_async(box.s, "/hold?s=1") end
            for i = 1, POOL do
                local res = assert(batch[i].finish())
                codes[res.status] = (codes[res.status] or 0) + 1
            end
            -- the next batch once every abandoned connection is back (killed, drained, reset)
            assert.truthy(server.wait_until(function()
                return pool_counter("fcfs_pool_in_use") == 0
            end, 5), "abandoned connections did not come back")
        end
        assert.same({ [504] = 200 }, codes)
        local connects = pool_counter("fcfs_pool_connects_total") - connects0
        local started = pool_counter("fcfs_pool_requests_total") - requests0
        -- every statement reached the server; the pool opened its POOL connections and the side
        -- connection once, not one per abandoned request
        assert.is_true(started >= 200, "statements started: " .. started)
        assert.is_true(connects <= POOL + 1, "connects during the run: " .. connects)
        assert.is_true(pool_counter("fcfs_pool_connections") <= POOL)
        local idle = db.wait_until(function()
            local rows = db.exec("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                .. "WHERE INFO LIKE '%mysqlspec_hold%' AND ID <> CONNECTION_ID()")
            return tonumber(rows[1][1]) == 0
        end, 0.5)
        assert.truthy(idle, "an abandoned SLEEP still runs on the server")
        local res = assert(get(box.s, "/one"))
        assert.equal(200, res.status, res.body)
        assert.equal(1, http.json(res).one)
    end)

    logs_no_unexpected_error(box, { "request deadline of 0%.2s passed" })
end)

---------------------------------------------------------------------------------------------------

describe("host.mysql session state between requests", function()
    local box = serve{ mysql_pool_size = 1 }

    it("a named lock, a user variable, a temporary table and SET SESSION do not reach the next request", function()
        local res = assert(get(box.s, "/leave-state"))
        assert.equal(200, res.status, res.body)
        local left = http.json(res)
        assert.equal(1, left.got)
        res = assert(get(box.s, "/see-state"))
        assert.equal(200, res.status, res.body)
        local seen = http.json(res)
        assert.equal(null, seen.holder, "the lock is still held by connection " .. tostring(seen.holder))
        assert.equal(1, seen.free)
        assert.equal(null, seen.leak)
        assert.equal(1, seen.strict)
        assert.matches("doesn't exist", seen.tmp_err)
        -- the same connection (pool of one), reset rather than replaced
        assert.equal(left.cid, seen.cid)
        -- and another client sees the lock free too
        assert.same({ { "1" } }, db.exec("SELECT IS_FREE_LOCK('myspec_lock')"))
    end)

    logs_no_unexpected_error(box)
end)

---------------------------------------------------------------------------------------------------

describe("host.mysql when mariadbd stops and comes back", function()
    local m, s

    lazy_setup(function()
        m = db.private()
        m:exec("CREATE DATABASE fcfs_fault")
        s = start(m:conf{
            mysql_database = "fcfs_fault",
            mysql_pool_size = 2,
            mysql_connect_timeout = 0.5,
            mysql_breaker_failures = 2,
            mysql_breaker_cooldown = 0.5,
        })
    end)

    lazy_teardown(function()
        if s then s:stop() end
        if m then m:remove() end
    end)

    it("answers 503 fast while it is down, opens the circuit, and recovers by itself", function()
        local res = assert(get(s, "/db"))
        assert.equal(200, res.status, res.body)
        assert.same({ one = 1 }, http.json(res))
        res = assert(get(s, "/readyz"))
        assert.equal(200, res.status, res.body)
        assert.equal("ok", http.json(res).checks.mysql)
        assert.equal(0, circuit_state(s))

        -- a statement in flight when mariadbd goes away
        local inflight = send_async(s, "/hold?s=5")
        socket.sleep(0.2)
        local t_stop = now()
        m:stop()
        local ires = inflight.finish()
        assert.truthy(ires, "the request whose statement was in flight got no answer")
        assert.are_not.equal(200, ires.status)
        assert.is_true(now() - t_stop < 3, "the in-flight request hung")

        -- every answer while it is down: recorded here, checked after the recovery below
        local down, slowest = {}, 0
        for i = 1, 20 do
            local t0 = now()
            res = assert(get(s, "/db"))
            local dt = now() - t0
            if dt > slowest then slowest = dt end
            local body = cjson.decode(res.body) or {}
            down[i] = format("%d %s %s", res.status, tostring(body.error and body.error.code),
                tostring(res.headers["retry-after"]))
        end
        assert.is_true(slowest < 0.6, format("slowest answer while down took %.3f s", slowest))
        assert.equal(1, circuit_state(s))

        res = assert(get(s, "/readyz"))
        assert.equal(503, res.status, res.body)
        local ready = http.json(res)
        assert.is_false(ready.ready)
        assert.equal("ok", ready.checks.redis)
        assert.is_string(ready.checks.mysql)
        assert.are_not.equal("ok", ready.checks.mysql)

        m:start()
        -- under concurrent load (10 requests in flight at a time) from the moment it is back
        local t_up, recovered = now(), nil
        while not recovered and now() - t_up < 5 do
            local batch = {}
            for i = 1, 10 do batch[i] = send_async(s, "/db") end
            for i = 1, 10 do
                local r = batch[i].finish()
                if r and r.status == 200 and not recovered then recovered = now() - t_up end
            end
        end
        assert.truthy(recovered, "no successful request within 5 s of the restart")
        assert.is_true(recovered <= 2, format("recovered %.3f s after the restart", recovered))
        assert.equal(0, circuit_state(s))
        -- the breaker went through half-open probes (the failed ones while down, the good one)
        local probes = tonumber(s:metrics()
            :match('fcfs_pool_half_open_probes_total{backend="mysql"} (%d+)'))
        assert.is_true(probes >= 1, "half-open probes: " .. tostring(probes))
        res = assert(get(s, "/readyz"))
        assert.equal(200, res.status, res.body)
        assert.equal("ok", http.json(res).checks.mysql)
        for _ = 1, 5 do
            res = assert(get(s, "/db"))
            assert.equal(200, res.status, res.body)
        end

        -- 503 UNAVAILABLE with Retry-After, from the first request after the stop on
        local expected = {}
        for i = 1, #down do expected[i] = "503 UNAVAILABLE 1" end
        assert.same(expected, down)
    end)

    it("drops the pooled connections a restart closed: the first requests after it answer 200", function()
        local warm = {} -- both pooled connections busy at once, then idle
        for i = 1, 2 do warm[i] = send_async(s, "/hold?s=0.2") end
        local cids = {}
        for i = 1, 2 do
            local res = assert(warm[i].finish())
            assert.equal(200, res.status, res.body)
            cids[i] = http.json(res).cid
        end
        assert.are_not.equal(cids[1], cids[2])
        m:stop()
        m:start()
        for i = 1, 10 do
            local res = assert(get(s, "/db"))
            assert.equal(200, res.status, format("request %d after the restart: %s", i, res.body))
        end
        assert.equal(0, circuit_state(s))
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors()
    end)
end)

---------------------------------------------------------------------------------------------------

describe("fcfs migrate", function()
    local DBNAME = "fcfs_migspec"
    local s, dir

    local FILES = {
        ["0001_create_log.sql"] = "CREATE TABLE mig_log (seq INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(64) NOT NULL)"
            .. " ENGINE=InnoDB;\nINSERT INTO mig_log (what) VALUES ('0001');\n",
        ["0002_add_note.sql"] = "ALTER TABLE mig_log ADD COLUMN note VARCHAR(64) NULL;\n",
        ["0003_rows.sql"] = "-- several statements in one file\n"
            .. "INSERT INTO mig_log (what, note) VALUES ('0003', 'a');\n"
            .. "INSERT INTO mig_log (what, note) VALUES ('0003', 'b; with a semicolon');\n",
        ["0010_after_nine.sql"] = "INSERT INTO mig_log (what, note) VALUES ('0010', 'last');\n",
    }

    local function log_rows()
        return db.exec("SELECT seq, what, IFNULL(note, '-') FROM mig_log ORDER BY seq", DBNAME)
    end

    local function migrations()
        return db.exec("SELECT version, name, checksum FROM schema_migrations ORDER BY version", DBNAME)
    end

    lazy_setup(function()
        db.exec(format("DROP DATABASE IF EXISTS %s", DBNAME), false)
        db.exec(format("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", DBNAME), false)
        local _, out = db.sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-migrations.XXXXXX\"")
        dir = out:gsub("%s+$", "")
        -- written newest first: the runner orders by version, not by directory order
        for _, name in ipairs{ "0010_after_nine.sql", "0003_rows.sql", "0002_add_note.sql", "0001_create_log.sql" } do
            write_file(dir .. "/" .. name, FILES[name])
        end
        write_file(dir .. "/README.txt", "not a migration\n")
        s = start{ migrations_dir = dir, mysql_database = DBNAME }
    end)

    lazy_teardown(function()
        if s then s:stop() end
        if dir then db.sh("rm -rf '" .. dir .. "'") end
        db.query(format("DROP DATABASE IF EXISTS %s", DBNAME), false)
    end)

    it("applies NNNN_*.sql in version order and records them", function()
        local code, out = s:cli("migrate")
        assert.equal(0, code, out)
        local a1 = out:find("applied 0001_create_log.sql", 1, true)
        local a2 = out:find("applied 0002_add_note.sql", 1, true)
        local a3 = out:find("applied 0003_rows.sql", 1, true)
        local a10 = out:find("applied 0010_after_nine.sql", 1, true)
        assert.truthy(a1 and a2 and a3 and a10, out)
        assert.is_true(a1 < a2 and a2 < a3 and a3 < a10, out)
        assert.matches("4 migration%(s%) applied", out)
        assert.same({
            { "1", "0001", "-" },
            { "2", "0003", "a" },
            { "3", "0003", "b; with a semicolon" },
            { "4", "0010", "last" },
        }, log_rows())
        local applied = migrations()
        assert.equal(4, #applied)
        local names = {}
        for i, r in ipairs(applied) do names[i] = r[1] .. " " .. r[2] end
        assert.same({ "1 create_log", "2 add_note", "3 rows", "10 after_nine" }, names)
    end)

    it("lists them with migrate status", function()
        local code, out = s:cli("migrate status")
        assert.equal(0, code, out)
        for _, v in ipairs{ { 1, "create_log" }, { 2, "add_note" }, { 3, "rows" }, { 10, "after_nine" } } do
            assert.matches("\n" .. v[1] .. "%s+" .. v[2] .. "%s+applied%s+%d%d%d%d%-%d%d%-%d%d", "\n" .. out)
        end
        assert.is_nil(out:find("pending", 1, true), out)
    end)

    it("does nothing when run again", function()
        local before_log, before_mig = log_rows(), migrations()
        local code, out = s:cli("migrate")
        assert.equal(0, code, out)
        assert.matches("0 migration%(s%) applied", out)
        assert.is_nil(out:find("applied 0", 1, true), out)
        assert.same(before_log, log_rows())
        assert.same(before_mig, migrations())
    end)

    it("shows a new file as pending, then applies only it", function()
        write_file(dir .. "/0011_more.sql", "INSERT INTO mig_log (what) VALUES ('0011');\n")
        local code, out = s:cli("migrate status")
        assert.equal(0, code, out)
        assert.matches("\n11%s+more%s+pending", "\n" .. out)
        code, out = s:cli("migrate")
        assert.equal(0, code, out)
        assert.matches("applied 0011_more.sql", out, 1, true)
        assert.matches("1 migration%(s%) applied", out)
        assert.equal(5, #log_rows())
    end)

    it("refuses to run when an applied file was edited, naming it, and applies nothing", function()
        write_file(dir .. "/0002_add_note.sql", FILES["0002_add_note.sql"] .. "-- edited afterwards\n")
        write_file(dir .. "/0012_never.sql", "INSERT INTO mig_log (what) VALUES ('0012');\n")
        local before_log = log_rows()
        local code, out = s:cli("migrate")
        assert.are_not.equal(0, code, out)
        assert.matches("0002_add_note.sql", out, 1, true)
        assert.same(before_log, log_rows())
        assert.equal(5, #migrations())
        code, out = s:cli("migrate status")
        assert.are_not.equal(0, code, out)
        assert.matches("\n2%s+add_note%s+CHANGED", "\n" .. out)
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors()
    end)
end)

