-- Black-box specs of the host's own error bodies: every status the host or lib/web.lua answers by
-- itself (400 404 405 408 413 414 415 431 500 503 504), produced by C (parser limits, timeouts,
-- the request deadline, a raising app:handle_error, /_host/* on the public listener) or by web.lua
-- (routing, req:json(), web.check, uncaught errors), must be {"error":{"code","message"},
-- "request_id"} with the Korean message by default and the English one when Accept-Language
-- prefers English.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/errors_spec.lua
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"

local APP = [==[
local app = require "errorsspec_base"
local web = require "lib.web"
local host = require "host"

app:post("/json", function(req) return { json = req:json() } end)
app:get("/boom", function() error("boom-marker-91c2") end)
app:get("/redis", function() return { json = { v = web.check(host.redis.call("GET", "k")) } } end)
app:get("/slow", function() host.sleep(5) end)

-- The host answers a raise of app:serve with app:handle_error; when that raises too, the host's
-- own 500.
local serve, handle_error = app.serve, app.handle_error
function app.serve(self, req)
    if req.path == "/raw-500" then error("raw-500-marker-3b7e") end
    return serve(self, req)
end
function app.handle_error(self, req, e, co)
    if req.path == "/raw-500" then error("raw-500-handler-marker-5d1a") end
    return handle_error(self, req, e, co)
end
return app
]==]

local KO, EN = "ko", "en"
-- Accept-Language values and the language each must give.
local LANGS = {
    { nil, KO },
    { "ko,en;q=0.5", KO },
    { "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", KO },
    { "en-US,en;q=0.9,ko;q=0.8", EN },
    { "fr;q=1, en;q=0.4, ko;q=0.3", EN },
    { "de", KO },
}

local M = {
    malformed = { "잘못된 요청입니다.", "The request is malformed." },
    bad_json = { "요청 본문이 올바른 JSON이 아닙니다.", "The request body is not valid JSON." },
    not_found = { "요청한 리소스를 찾을 수 없습니다.", "The requested resource was not found." },
    method = { "허용되지 않은 요청 메서드입니다.", "Method not allowed for this resource." },
    timeout = { "요청이 제시간에 도착하지 않았습니다.", "The request did not arrive in time." },
    too_large = { "요청 본문이 너무 큽니다.", "The request body is too large." },
    url = { "요청 URL이 너무 깁니다.", "The request URL is too long." },
    media = { "요청 본문은 application/json 형식이어야 합니다.", "The request body must be application/json." },
    headers = { "요청 헤더가 너무 큽니다.", "The request headers are too large." },
    internal = { "서버 내부 오류가 발생했습니다.", "An internal error occurred." },
    unavailable = { "일시적으로 서비스를 이용할 수 없습니다. 잠시 후 다시 시도해주세요.",
        "The service is temporarily unavailable. Please retry shortly." },
    deadline = { "요청 처리 시간이 초과되었습니다.", "The request took too long to process." },
}

local function al_line(al)
    return al and ("Accept-Language: " .. al .. "\r\n") or ""
end

local function fillers(n)
    local t = {}
    for i = 1, n do
        t[i] = "X-Filler-" .. i .. ": v\r\n"
    end
    return table.concat(t)
end

-- Each case: what, status, code, messages, and the request: its request line, the header lines
-- that follow Accept-Language, and the body (false: the head never ends).
local CASES = {
    { "400 (C, a header name with a space)", 400, "BAD_REQUEST", M.malformed, "GET /hello", "Bad Name: y\r\n", "" },
    { "400 (web.lua, bad JSON)", 400, "BAD_JSON", M.bad_json, "POST /json",
        "Content-Type: application/json\r\nContent-Length: 1\r\n", "{" },
    { "404 (web.lua, no route)", 404, "NOT_FOUND", M.not_found, "GET /no/such/route", "", "" },
    { "404 (C, /_host/ on the public listener)", 404, "NOT_FOUND", M.not_found, "POST /_host/reload",
        "Content-Length: 0\r\n", "" },
    { "405 (web.lua)", 405, "METHOD_NOT_ALLOWED", M.method, "POST /healthz", "Content-Length: 0\r\n", "" },
    { "408 (C, headers that never end)", 408, "REQUEST_TIMEOUT", M.timeout, "GET /hello", "", false },
    { "413 (C, Content-Length over max_body)", 413, "PAYLOAD_TOO_LARGE", M.too_large, "POST /json",
        "Content-Length: 5000\r\n", "" },
    { "415 (web.lua, not JSON)", 415, "UNSUPPORTED_MEDIA_TYPE", M.media, "POST /json",
        "Content-Type: text/plain\r\nContent-Length: 2\r\n", "hi" },
    { "431 (C, more headers than max_headers)", 431, "HEADERS_TOO_LARGE", M.headers, "GET /hello", fillers(30), "" },
    { "500 (web.lua, a handler raised)", 500, "INTERNAL", M.internal, "GET /boom", "", "" },
    { "500 (C, app:handle_error raised)", 500, "INTERNAL", M.internal, "GET /raw-500", "", "" },
    { "503 (web.lua, Redis down)", 503, "UNAVAILABLE", M.unavailable, "GET /redis", "", "" },
    { "504 (C, request_timeout)", 504, "TIMEOUT", M.deadline, "GET /slow", "", "" },
}

-- The bytes of a case's request with Accept-Language al (nil: none).
local function request(case, al)
    local body = case[7]
    return case[5] .. " HTTP/1.1\r\nHost: x\r\n" .. al_line(al) .. case[6] .. (body and ("\r\n" .. body) or "")
end

describe("the host's error bodies", function()
    local s

    setup(function()
        s = server.start{
            app = APP,
            lua_files = { ["errorsspec_base.lua"] = server.repo_file("lua/app.lua") },
            conf = {
                redis = "127.0.0.1:" .. raw.free_port(), -- nothing listens there: Redis is down
                header_timeout = 0.3,
                request_timeout = 0.3,
                max_body = 1024,
                max_headers = 20,
                max_url = 256,
            },
        }
    end)

    teardown(function()
        s:stop()
    end)

    local function ask(bytes)
        local c = assert(http.connect(s.port, nil, 5))
        assert(c:send_raw(bytes))
        local res, err = c:read_response()
        c:close()
        return assert(res, err)
    end

    local function check(res, status, code, msgs, lang, what)
        assert.equal(status, res.status, what .. ": " .. tostring(res.body))
        assert.matches("^application/json", res.headers["content-type"] or "", 1, false, what)
        local body = http.json(res)
        assert.equal(code, body.error.code, what)
        assert.equal(lang == KO and msgs[1] or msgs[2], body.error.message, what)
        assert.equal(res.headers["x-request-id"], body.request_id, what)
        return body
    end

    for _, case in ipairs(CASES) do
        local what, status, code, msgs = case[1], case[2], case[3], case[4]
        it(what .. ", in Korean by default and in English when preferred", function()
            for _, l in ipairs(LANGS) do
                local label = what .. " with Accept-Language " .. tostring(l[1])
                check(ask(request(case, l[1])), status, code, msgs, l[2], label)
            end
        end)
    end

    it("414 (C): in Korean, as the URL comes before any header could ask for English", function()
        local res = ask("GET /" .. string.rep("a", 300) .. " HTTP/1.1\r\nHost: x\r\nAccept-Language: en\r\n\r\n")
        check(res, 414, "URI_TOO_LONG", M.url, KO, "414")
    end)

    it("keeps the parser's reason for developers in details.reason", function()
        local body = check(ask(request(CASES[1], "en")), 400, "BAD_REQUEST", M.malformed, EN, "400")
        assert.equal("invalid character in header name", body.error.details.reason)
    end)

    it("logs only the errors it provoked", function()
        s:stop()
        s:assert_no_errors{ "boom%-marker%-91c2", "raw%-500%-marker%-3b7e", "raw%-500%-handler%-marker%-5d1a",
            "request deadline" }
    end)
end)
