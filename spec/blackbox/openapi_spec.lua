-- docs/openapi.yaml and the app, kept in step: every route of lua/app.lua is described and every
-- described operation is a route (read from the app's router, loaded here with the unit specs' fake
-- host), and real responses of the running host fit the documented schemas. The member routes'
-- successful answers are checked the same way in users_spec.lua; this file checks the operational
-- routes and the errors every route gives before any backend is involved.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/openapi_spec.lua
local server = require "spec.support.server"
local http = require "spec.support.http"
local openapi = require "spec.support.openapi"

local JSON = { ["content-type"] = "application/json" }

describe("docs/openapi.yaml", function()
    local doc, routes

    lazy_setup(function()
        doc = openapi.load()
        -- the app's routes, as its router holds them (no I/O at require time, so the fake host suffices)
        local saved_path, saved_loaded = package.path, {}
        for k, v in pairs(package.loaded) do saved_loaded[k] = v end
        require "spec.unit.helper"
        local app = require "app"
        routes = {}
        for _, r in ipairs(app.router.routes) do routes[#routes + 1] = { method = r.method, pattern = r.pattern } end
        package.path = saved_path
        for k in pairs(package.loaded) do
            if saved_loaded[k] == nil then package.loaded[k] = nil end
        end
    end)

    it("is OpenAPI 3.1", function()
        assert.matches("^3%.1%.", doc.openapi)
    end)

    it("describes every route of the app", function()
        local ops, missing = openapi.operations(doc), {}
        for _, r in ipairs(routes) do
            local key = r.method .. " " .. openapi.path_of(r.pattern)
            if not ops[key] then missing[#missing + 1] = key end
        end
        assert.same({}, missing)
    end)

    it("describes no operation the app does not have", function()
        local have, extra = {}, {}
        for _, r in ipairs(routes) do have[r.method .. " " .. openapi.path_of(r.pattern)] = true end
        for key in pairs(openapi.operations(doc)) do
            if not have[key] then extra[#extra + 1] = key end
        end
        table.sort(extra)
        assert.same({}, extra)
    end)

    it("resolves every $ref and documents every operation's responses", function()
        for key, op in pairs(openapi.operations(doc)) do
            assert.is_table(op.responses, key)
            for status, r in pairs(op.responses) do
                if r["$ref"] then
                    local name = r["$ref"]:match("^#/components/responses/(.+)$")
                    assert.is_table(doc.components.responses[name], key .. " " .. status)
                end
            end
        end
    end)

    describe("against the running host", function()
        local s

        lazy_setup(function()
            s = server.start()
        end)

        lazy_teardown(function()
            if s then s:stop() end
        end)

        local function call(method, pattern, opts)
            opts = opts or {}
            local req = { port = s.port, method = method, path = opts.path or pattern, headers = opts.headers,
                body = opts.body }
            local res
            if opts.admin then
                req.port = nil
                res = assert(s:admin(req))
            else
                res = assert(http.request(req))
            end
            openapi.check_response(doc, method, pattern, res)
            return res
        end

        it("operational routes fit their schemas", function()
            assert.equal(200, call("GET", "/healthz").status)
            assert.equal(200, call("GET", "/readyz").status)
            assert.equal(200, call("GET", "/hello").status)
            assert.equal(200, call("GET", "/metrics", { admin = true }).status)
            assert.equal(200, call("GET", "/_host/status", { admin = true }).status)
            assert.equal(404, call("GET", "/metrics").status)
        end)

        it("errors before any backend fit the error schema", function()
            assert.equal(400, call("POST", "/api/users", { headers = JSON, body = "{nope" }).status)
            assert.equal(415, call("POST", "/api/users", { headers = { ["content-type"] = "text/plain" },
                body = "x" }).status)
            assert.equal(400, call("POST", "/api/users", { headers = JSON, body = '{"email":1}' }).status)
            assert.equal(400, call("POST", "/api/auth/login", { headers = JSON, body = "{}" }).status)
            assert.equal(400, call("POST", "/api/users/verify", { headers = JSON, body = '{"code":"12"}' }).status)
            assert.equal(400, call("GET", "/api/users/verify", { path = "/api/users/verify?code=x" }).status)
            assert.equal(400, call("POST", "/api/users/verify/resend", { headers = JSON, body = "[]" }).status)
            assert.equal(400, call("POST", "/api/auth/refresh", { headers = JSON, body = '{"refresh_token":"a b"}' })
                .status)
            for _, r in ipairs {
                { "POST", "/api/auth/logout" }, { "POST", "/api/auth/logout-all" }, { "GET", "/api/auth/session" },
                { "GET", "/api/users/me" }, { "PATCH", "/api/users/me" }, { "PUT", "/api/users/me/password" },
                { "GET", "/api/mypage" },
            } do
                local res = call(r[1], r[2])
                assert.equal(401, res.status, r[1] .. " " .. r[2])
            end
        end)

        it("logs no unexpected error", function()
            s:stop()
            s:assert_no_errors()
        end)
    end)
end)
