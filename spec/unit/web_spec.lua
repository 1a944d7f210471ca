local helper = require "spec.unit.helper"
local cjson = require "cjson"

local JSON_CT = "application/json; charset=utf-8"

describe("lib.web", function()
    local web, json

    setup(function()
        web = helper.strict_require "lib.web"
        json = require "lib.json"
    end)

    before_each(function()
        helper.reset()
    end)

    -- Asserts the documented error shape and returns the error object.
    local function assert_error(status, code, got_status, body, headers, request_id)
        assert.equal(status, got_status)
        assert.is_table(body, "error body is not JSON")
        assert.equal(request_id or "req-1", body.request_id)
        assert.is_table(body.error)
        assert.equal(code, body.error.code)
        assert.is_string(body.error.message)
        assert.equal(JSON_CT, headers["Content-Type"])
        return body.error
    end

    describe("responses", function()
        it("encodes json results with the JSON content type and status 200", function()
            local app = web.new()
            app:get("/x", function() return { json = { ok = true, items = json.array() } } end)
            local status, body, headers, route = app:handle(helper.req { path = "/x" })
            assert.equal(200, status)
            assert.same({ ok = true, items = {} }, cjson.decode(body))
            assert.equal(JSON_CT, headers["Content-Type"])
            assert.equal("/x", route)
        end)

        it("keeps status, extra headers and an explicit content type", function()
            local app = web.new()
            app:post("/things", function()
                return { status = 201, json = { id = 7 }, headers = { Location = "/things/7" } }
            end)
            app:get("/problem", function()
                return { json = { a = 1 }, headers = { ["content-type"] = "application/problem+json" } }
            end)
            local status, body, headers = app:handle(helper.req { method = "POST", path = "/things" })
            assert.equal(201, status)
            assert.equal('{"id":7}', body)
            assert.equal("/things/7", headers.Location)
            assert.equal(JSON_CT, headers["Content-Type"])
            local _, _, h2 = app:handle(helper.req { path = "/problem" })
            assert.equal("application/problem+json", h2["content-type"])
            assert.is_nil(h2["Content-Type"])
        end)

        it("freezes shared header tables (web.headers): read-only, their pairs through header_pairs", function()
            local h = web.headers { Location = "/a", ["X-N"] = "1" }
            assert.equal("/a", h.Location)
            assert.has_error(function() h.Location = "/b" end)
            assert.has_error(function() h["X-New"] = "1" end)
            assert.is_nil(next(h))
            local seen = {}
            for k, v in web.header_pairs(h) do seen[k] = v end
            assert.same({ Location = "/a", ["X-N"] = "1" }, seen)
            assert.equal(JSON_CT, web.JSON_HEADERS["Content-Type"])
            -- a json answer with a frozen table keeps its headers and gets the content type
            local app = web.new()
            app:get("/f", function() return { json = { ok = true }, headers = h } end)
            local _, _, headers = app:handle(helper.req { path = "/f" })
            assert.equal("/a", headers.Location)
            assert.equal(JSON_CT, headers["Content-Type"])
        end)

        it("gives matched requests their methods from a metatable, not as fields", function()
            local app = web.new()
            app:get("/m", function(req)
                return { json = { arg = req:arg("a"), raw = rawget(req, "arg") == nil, params = req.params ~= nil } }
            end)
            local _, body = app:handle(helper.req { path = "/m", query = "a=1" })
            assert.same({ arg = "1", raw = true, params = true }, cjson.decode(body))
        end)

        it("passes raw bodies through and answers 204 for an empty return", function()
            local app = web.new()
            app:get("/text", function() return { body = "hi", headers = { ["Content-Type"] = "text/plain" } } end)
            app:delete("/thing", function() end)
            app:get("/nocontent", function() return { status = 204, body = "dropped" } end)
            local status, body, headers = app:handle(helper.req { path = "/text" })
            assert.equal(200, status)
            assert.equal("hi", body)
            assert.equal("text/plain", headers["Content-Type"])
            status, body, headers = app:handle(helper.req { method = "DELETE", path = "/thing" })
            assert.equal(204, status)
            assert.is_nil(body)
            assert.is_nil(headers)
            status, body = app:handle(helper.req { path = "/nocontent" })
            assert.equal(204, status)
            assert.is_nil(body)
        end)

        it("exposes route params and the matched pattern", function()
            local app = web.new()
            app:get("/products/:id[%d]/reviews/:rid", function(req)
                return { json = { id = req.params.id, rid = req.params.rid, route = req.route } }
            end)
            local status, body, _, route = helper.call(app, helper.req { path = "/products/12/reviews/ab" })
            assert.equal(200, status)
            assert.same({ id = "12", rid = "ab", route = "/products/:id[%d]/reviews/:rid" }, body)
            assert.equal("/products/:id[%d]/reviews/:rid", route)
        end)

        it("answers HEAD with the GET handler", function()
            local app = web.new()
            app:get("/h", function(req) return { json = { m = req.method } } end)
            local status, body = helper.call(app, helper.req { method = "HEAD", path = "/h" })
            assert.equal(200, status)
            assert.same({ m = "HEAD" }, body)
        end)

        it("registers one handler for several methods with app:match", function()
            local app = web.new()
            app:match({ "PUT", "PATCH" }, "/m", function(req) return { json = { m = req.method } } end)
            app:match("/any", function() return { json = { any = true } } end)
            assert.equal(200, (app:handle(helper.req { method = "PUT", path = "/m" })))
            assert.equal(200, (app:handle(helper.req { method = "PATCH", path = "/m" })))
            assert.equal(405, (app:handle(helper.req { method = "GET", path = "/m" })))
            for _, m in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE" }) do
                assert.equal(200, (app:handle(helper.req { method = m, path = "/any" })))
            end
        end)
    end)

    describe("streamed answers", function()
        it("opens the stream with the status and content type, then runs the function with send", function()
            local app = web.new()
            app:get("/ev", function()
                return { status = 201, content_type = "text/plain", stream = function(send)
                    assert.is_true(send("a"))
                    send("b")
                end }
            end)
            local status, body, headers, route = app:handle(helper.req { path = "/ev" })
            assert.same({ 200, nil, nil, "/ev" }, { status, body, headers, route })
            assert.same({ status = 201, content_type = "text/plain", sent = { "a", "b" } }, helper.stream)
        end)

        it("refuses a stream that is not a function (500), and formats events with web.sse", function()
            local app = web.new()
            app:get("/bad", function() return { stream = "nope" } end)
            assert.equal(500, (app:handle(helper.req { path = "/bad" })))
            assert.is_nil(helper.stream.status)
            assert.equal("event: stock\ndata: {}\n\n", web.sse("stock", "{}"))
            assert.equal("event: e\nid: 7\ndata: a\ndata: b\ndata: c\n\n", web.sse("e", "a\nb\r\nc", 7))
        end)
    end)

    describe("routing errors", function()
        local app
        before_each(function()
            app = web.new()
            app:get("/orders/:id[%d]", function() return { json = {} } end)
            app:delete("/orders/:id[%d]", function() end)
        end)

        it("answers 404 NOT_FOUND with the request id", function()
            local status, body, headers, route = helper.call(app, helper.req { path = "/nope", request_id = "abc" })
            assert_error(404, "NOT_FOUND", status, body, headers, "abc")
            assert.equal("404", route)
            assert.equal("요청한 리소스를 찾을 수 없습니다.", body.error.message)
        end)

        it("answers 405 METHOD_NOT_ALLOWED with an Allow header", function()
            local status, body, headers, route = helper.call(app, helper.req { method = "POST", path = "/orders/1" })
            assert_error(405, "METHOD_NOT_ALLOWED", status, body, headers)
            assert.equal("DELETE, GET, HEAD", headers.Allow)
            assert.equal("405", route)
        end)

        it("puts keys in the documented order", function()
            local _, body = app:handle(helper.req { path = "/nope", request_id = "r9" })
            assert.truthy(body:find('^{"error":{"code":"NOT_FOUND","message":"[^"]+"},"request_id":"r9"}$'), body)
        end)

        it("speaks English when Accept-Language prefers it", function()
            local cases = {
                ["en-US,en;q=0.9,ko;q=0.8"] = "en",
                ["ko-KR,ko;q=0.9,en;q=0.8"] = "ko",
                ["fr-FR, en;q=0.5"] = "en",
                ["en;q=0, ko"] = "ko",
                ["de"] = "ko",
            }
            for al, want in pairs(cases) do
                local _, body = helper.call(app, helper.req { path = "/nope", headers = { ["Accept-Language"] = al } })
                assert.equal(web.messages.NOT_FOUND[want], body.error.message, al)
            end
        end)
    end)

    describe("web.fail", function()
        it("becomes the documented error body, with details and headers", function()
            local app = web.new()
            app:post("/buy", function()
                web.fail(409, "OUT_OF_STOCK", { ko = "재고가 부족합니다.", en = "Out of stock." }, { product_id = 3 },
                    { ["Retry-After"] = "1" })
            end)
            local status, body, headers, route = helper.call(app, helper.req { method = "POST", path = "/buy" })
            local err = assert_error(409, "OUT_OF_STOCK", status, body, headers)
            assert.equal("재고가 부족합니다.", err.message)
            assert.same({ product_id = 3 }, err.details)
            assert.equal("1", headers["Retry-After"])
            assert.equal("/buy", route)
            assert.same({}, helper.logs, "expected failures are not logged as errors")
        end)

        it("omits details when there are none", function()
            local app = web.new()
            app:get("/f", function() web.fail(403, "FORBIDDEN", "no") end)
            local _, body = app:handle(helper.req { path = "/f" })
            assert.equal('{"error":{"code":"FORBIDDEN","message":"no"},"request_id":"req-1"}', body)
        end)

        it("error bodies of one code keep each message's own text, escaped, and each request's id", function()
            local function body(id, message) return web.error_body({ request_id = id }, "X", message) end
            assert.equal('{"error":{"code":"X","message":"say \\"hi\\""},"request_id":"a"}', body("a", 'say "hi"'))
            assert.equal('{"error":{"code":"X","message":"other"},"request_id":"b"}', body("b", "other"))
            assert.equal('{"error":{"code":"X","message":"say \\"hi\\""},"request_id":"c"}', body("c", 'say "hi"'))
            assert.equal('{"error":{"code":"nil","message":"m"},"request_id":null}', web.error_body({}, nil, "m"))
        end)

        it("web.check passes values through and maps backend failures to 503", function()
            assert.equal(7, web.check(7, nil))
            local app = web.new()
            app:get("/down", function() return { json = { v = web.check(nil, "unavailable") } } end)
            app:get("/slow", function() return { json = { v = web.check(nil, "timeout") } } end)
            app:get("/sql", function() return { json = { v = web.check(nil, "Duplicate entry", 1062) } } end)
            local status, body, headers = helper.call(app, helper.req { path = "/down" })
            local err = assert_error(503, "UNAVAILABLE", status, body, headers)
            assert.same({ reason = "unavailable" }, err.details)
            assert.equal("1", headers["Retry-After"])
            status, body, headers = helper.call(app, helper.req { path = "/slow" })
            assert_error(503, "UNAVAILABLE", status, body, headers)
            app:get("/gone", function()
                return { json = { v = web.check(nil, "MySQL server has gone away", 2006) } }
            end)
            status, body, headers = helper.call(app, helper.req { path = "/gone" })
            assert_error(503, "UNAVAILABLE", status, body, headers)
            assert.same({}, helper.logs, "a backend outage is not a bug: no error log line")
            status, body, headers = helper.call(app, helper.req { path = "/sql" })
            assert_error(500, "INTERNAL", status, body, headers)
            assert.equal(1, #helper.logs)
            assert.truthy(helper.logs[1][1]:find("Duplicate entry", 1, true))
        end)

        it("is recognisable with web.is_fail", function()
            local ok, e = pcall(web.fail, 400, "X", "m")
            assert.is_false(ok)
            assert.is_true(web.is_fail(e))
            assert.is_false(web.is_fail("string error"))
        end)
    end)

    describe("uncaught errors", function()
        it("answer 500 INTERNAL and log message and traceback", function()
            local app = web.new()
            app:get("/boom", function() local t = nil; return t.field end)
            local status, body, headers, route = app:handle(helper.req {
                path = "/boom", query = "a=1", request_id = "rid-500",
            })
            assert.equal(500, status)
            assert.equal('{"error":{"code":"INTERNAL","message":"서버 내부 오류가 발생했습니다."},"request_id":"rid-500"}',
                body)
            assert.equal(JSON_CT, headers["Content-Type"])
            assert.equal("/boom", route)
            assert.equal(1, #helper.logs)
            local log = helper.logs[1]
            assert.equal("error", log.level)
            assert.truthy(log[1]:find("web_spec.lua:%d+: attempt to index"), log[1])
            assert.equal("\n", log[2])
            assert.truthy(log[3]:find("stack traceback", 1, true), log[3])
            assert.truthy(log[3]:find("web_spec.lua", 1, true), log[3])
        end)

        it("cover non-string error values and bad handler results", function()
            local app = web.new()
            app:get("/tbl", function() error({ weird = true }) end)
            app:get("/str", function() return "not a table" end)
            app:get("/badbody", function() return { body = 42 } end)
            app:get("/badjson", function() return { json = { f = print } } end)
            for _, p in ipairs({ "/tbl", "/str", "/badbody", "/badjson" }) do
                local status, body, headers = helper.call(app, helper.req { path = p })
                assert_error(500, "INTERNAL", status, body, headers)
            end
            assert.equal(4, #helper.logs)
        end)

        it("leave the app serving", function()
            local app = web.new()
            local n = 0
            app:get("/flaky", function()
                n = n + 1
                if n == 1 then error("first call fails") end
                return { json = { n = n } }
            end)
            assert.equal(500, (app:handle(helper.req { path = "/flaky" })))
            assert.equal(200, (app:handle(helper.req { path = "/flaky" })))
        end)
    end)

    describe("req:json()", function()
        local app
        before_each(function()
            app = web.new()
            app:post("/echo", function(req)
                local v = req:json()
                assert(rawequal(v, req:json()), "decoded once")
                return { json = v }
            end)
        end)

        it("decodes objects and arrays, charset allowed", function()
            local status, body = helper.call(app, helper.json_req("POST", "/echo", { a = 1, b = { "x" } }))
            assert.equal(200, status)
            assert.same({ a = 1, b = { "x" } }, body)
            local req = helper.json_req("POST", "/echo", "[1,2]",
                { ["content-type"] = "Application/JSON; Charset=UTF-8" })
            status, body = helper.call(app, req)
            assert.equal(200, status)
            assert.same({ 1, 2 }, body)
        end)

        it("answers 415 unless the content type is application/json", function()
            for _, ct in ipairs({ false, "text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                "application/json; charset=latin1" }) do
                local req = helper.req { method = "POST", path = "/echo", body = "{}",
                    headers = { ["Content-Type"] = ct or nil } }
                local status, body, headers = helper.call(app, req)
                assert_error(415, "UNSUPPORTED_MEDIA_TYPE", status, body, headers)
            end
        end)

        it("answers 400 BAD_JSON for invalid, empty or scalar bodies", function()
            for _, b in ipairs({ "{", "nope", "", "42", '"str"', "null" }) do
                local status, body, headers = helper.call(app, helper.json_req("POST", "/echo", b))
                assert_error(400, "BAD_JSON", status, body, headers)
            end
            local req = helper.json_req("POST", "/echo", "x")
            req.body = nil
            local status, body, headers = helper.call(app, req)
            assert_error(400, "BAD_JSON", status, body, headers)
            assert.same({}, helper.logs)
        end)
    end)

    describe("req:arg()", function()
        it("decodes query arguments once, first occurrence wins", function()
            local app = web.new()
            app:get("/q", function(req)
                return { json = { a = req:arg("a"), b = req:arg("b"), sp = req:arg("sp"), flag = req:arg("flag"),
                    missing = req:arg("missing") or json.null, same = rawequal(req:args(), req:args()) } }
            end)
            local _, body = helper.call(app, helper.req { path = "/q", query = "a=1&b=x%2Fy&a=2&sp=a+b%20c&flag" })
            assert.same({ a = "1", b = "x/y", sp = "a b c", flag = "", missing = cjson.null, same = true }, body)
            local _, empty = helper.call(app, helper.req { path = "/q" })
            assert.same({ missing = cjson.null, same = true }, empty)
        end)
    end)

    describe("before filters", function()
        it("run in order before the handler, with params set", function()
            local app = web.new()
            local seen = {}
            app:before(function(req) seen[#seen + 1] = "one:" .. tostring(req.params.id) end)
            app:before(function() seen[#seen + 1] = "two" end)
            app:get("/t/:id", function() seen[#seen + 1] = "handler" return { json = {} } end)
            assert.equal(200, (app:handle(helper.req { path = "/t/5" })))
            assert.same({ "one:5", "two", "handler" }, seen)
        end)

        it("short-circuit with a response or a failure", function()
            local app = web.new()
            local reached = false
            app:before(function(req)
                if req.headers.authorization == nil then web.fail(401, "UNAUTHORIZED", "login") end
                if req.headers.authorization == "teapot" then return { status = 418, json = { tea = true } } end
            end)
            app:get("/secret", function() reached = true return { json = { s = 1 } } end)
            local status, body, headers = helper.call(app, helper.req { path = "/secret" })
            assert_error(401, "UNAUTHORIZED", status, body, headers)
            status, body = helper.call(app, helper.req { path = "/secret", headers = { Authorization = "teapot" } })
            assert.equal(418, status)
            assert.same({ tea = true }, body)
            assert.is_false(reached)
            status = app:handle(helper.req { path = "/secret", headers = { Authorization = "ok" } })
            assert.equal(200, status)
            assert.is_true(reached)
        end)

        it("do not run for unmatched paths", function()
            local app = web.new()
            local ran = false
            app:before(function() ran = true end)
            assert.equal(404, (app:handle(helper.req { path = "/none" })))
            assert.is_false(ran)
        end)
    end)

    describe("init_worker", function()
        it("runs every function in registration order", function()
            local app = web.new()
            local order = {}
            app:init_worker(function() order[#order + 1] = 1 end)
            app:init_worker(function() order[#order + 1] = 2 end)
            app:init_worker(function() order[#order + 1] = 3 end)
            assert.is_true(app:run_init_worker())
            assert.same({ 1, 2, 3 }, order)
        end)

        it("raises on the first failure, naming it, and stops there", function()
            local app = web.new()
            local order = {}
            app:init_worker(function() order[#order + 1] = 1 end)
            app:init_worker(function() error("redis unreachable") end)
            app:init_worker(function() order[#order + 1] = 3 end)
            local ok, err = pcall(app.run_init_worker, app)
            assert.is_false(ok)
            assert.truthy(err:find("init_worker #2 failed", 1, true), err)
            assert.truthy(err:find("redis unreachable", 1, true), err)
            assert.truthy(err:find("stack traceback", 1, true), err)
            assert.same({ 1 }, order)
        end)

        it("can yield (host I/O) inside run_init_worker and handlers", function()
            local app = web.new()
            local got
            app:init_worker(function() got = coroutine.yield("io") end)
            app:get("/y", function() return { json = { v = coroutine.yield("io") } } end)
            local co = coroutine.create(function() return app:run_init_worker() end)
            assert.same({ true, "io" }, { coroutine.resume(co) })
            assert.same({ true, true }, { coroutine.resume(co, "reply") })
            assert.equal("reply", got)
            co = coroutine.create(function() return app:handle(helper.req { path = "/y" }) end)
            coroutine.resume(co)
            local ok, status, body = coroutine.resume(co, 5)
            assert.is_true(ok)
            assert.equal(200, status)
            assert.equal('{"v":5}', body)
        end)
    end)

    it("rejects bad registrations", function()
        local app = web.new()
        assert.has_error(function() app:get("/x", "not a function") end)
        assert.has_error(function() app:before(1) end)
        assert.has_error(function() app:init_worker(nil) end)
        assert.has_error(function() app:get("x", function() end) end)
    end)
end)

-- The operational routes of lua/app.lua, against the fake host.
describe("app.lua", function()
    local app

    setup(function()
        app = helper.strict_require "app"
    end)

    before_each(function()
        helper.reset()
    end)

    it("answers /healthz and /hello", function()
        local status, body, headers, route = helper.call(app, helper.req { path = "/healthz" })
        assert.equal(200, status)
        assert.same({ status = "ok" }, body)
        assert.equal(JSON_CT, headers["Content-Type"])
        assert.equal("/healthz", route)
        local s2, raw = app:handle(helper.req { path = "/hello" })
        assert.equal(200, s2)
        assert.equal('{"ok":true}', raw)
    end)

    it("reports readiness per check and 503 when one fails", function()
        local status, body = helper.call(app, helper.req { path = "/readyz" })
        assert.equal(200, status)
        assert.same({ ready = true, checks = { lua = "ok", redis = "ok", mysql = "ok" } }, body)
        helper.redis_reply = function() return nil, "unavailable" end
        helper.mysql_reply = function() return nil, "timeout" end
        status, body = helper.call(app, helper.req { path = "/readyz" })
        assert.equal(503, status)
        assert.is_false(body.ready)
        assert.equal("ok", body.checks.lua)
        assert.equal("unavailable", body.checks.redis)
        assert.equal("timeout", body.checks.mysql)
        helper.reset()
        app.ready_check("extra", function() error("boom") end)
        status, body = helper.call(app, helper.req { path = "/readyz" })
        assert.equal(503, status)
        assert.truthy(body.checks.extra:find("boom", 1, true))
    end)

    it("serves the host's metrics as Prometheus text", function()
        local status, body, headers, route = app:handle(helper.req { path = "/metrics", admin = true })
        assert.equal(200, status)
        assert.equal(helper.metrics, body)
        assert.equal("text/plain; version=0.0.4", headers["Content-Type"])
        assert.equal("/metrics", route)
    end)

    it("answers /metrics and /_host/* with 404 NOT_FOUND off the admin listener, even from loopback", function()
        local called = false
        helper.reload_result = function() called = true return true, 2 end
        for _, r in ipairs({ { "POST", "/_host/reload" }, { "GET", "/_host/status" }, { "GET", "/metrics" } }) do
            local status, body = helper.call(app, helper.req { method = r[1], path = r[2],
                remote_addr = "127.0.0.1", request_id = "ext" })
            assert.equal(404, status, r[2])
            assert.equal("NOT_FOUND", body.error.code)
            assert.equal("ext", body.request_id)
        end
        assert.is_false(called)
    end)

    it("reloads through the host and reports the outcome", function()
        local status, body = helper.call(app, helper.req { method = "POST", path = "/_host/reload", admin = true })
        assert.equal(200, status)
        assert.same({ ok = true, generation = 2, error = cjson.null }, body)
        helper.reload_result = function() return false, 1, "app.lua:3: syntax error" end
        status, body = helper.call(app, helper.req { method = "POST", path = "/_host/reload", admin = true })
        assert.equal(500, status)
        assert.same({ ok = false, generation = 1, error = "app.lua:3: syntax error" }, body)
        assert.equal(405, (app:handle(helper.req { path = "/_host/reload" })))
    end)

    it("reports worker and generation on /_host/status", function()
        helper.host.generation = 3
        local status, body = helper.call(app, helper.req { path = "/_host/status", admin = true })
        assert.equal(200, status)
        assert.equal(0, body.worker_id)
        assert.equal(1, body.worker_count)
        assert.equal(3, body.generation)
        assert.equal(4242, body.pid)
        assert.is_number(body.lua_memory_kb)
    end)
end)
