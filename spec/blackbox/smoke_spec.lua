-- The smallest end-to-end check: the real binary with the repository's lua/app.lua, one process,
-- answers health checks and JSON, reports unknown paths as a JSON 404 with the request id, and
-- logs no error while doing so.
local server = require "spec.support.server"
local http = require "spec.support.http"

describe("smoke", function()
    local s

    setup(function()
        s = server.start{ conf = { workers = 0 } }
    end)

    teardown(function()
        if s then
            s:stop()
        end
    end)

    it("GET /healthz answers 200 {\"status\":\"ok\"}", function()
        local res = assert(http.request{ port = s.port, path = "/healthz" })
        assert.equal(200, res.status)
        assert.matches("^application/json", res.headers["content-type"])
        assert.same({ status = "ok" }, http.json(res))
    end)

    it("GET /hello answers 200 {\"ok\":true}", function()
        local res = assert(http.request{ port = s.port, path = "/hello" })
        assert.equal(200, res.status)
        assert.matches("^application/json", res.headers["content-type"])
        assert.same({ ok = true }, http.json(res))
    end)

    it("serves several requests on one keep-alive connection", function()
        local c = assert(http.connect(s.port))
        for _ = 1, 3 do
            local res = assert(c:request{ path = "/hello" })
            assert.equal(200, res.status)
            assert.same({ ok = true }, http.json(res))
        end
        c:close()
    end)

    it("answers an unknown path with a JSON 404 carrying the request id", function()
        local res = assert(http.request{ port = s.port, path = "/no/such/path" })
        assert.equal(404, res.status)
        assert.matches("^application/json", res.headers["content-type"])
        local body = http.json(res)
        assert.is_table(body.error)
        assert.is_string(body.error.code)
        assert.is_string(body.error.message)
        assert.is_string(body.request_id)
        assert.is_true(#body.request_id > 0)
        assert.equal(res.headers["x-request-id"], body.request_id)
    end)

    it("leaves no error in the log, through shutdown", function()
        s:stop()
        s:assert_no_errors()
    end)
end)
