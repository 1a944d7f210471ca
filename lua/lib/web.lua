-- lib/web.lua: the small web framework every route of the Lua side is written in.
--
--   local app = web.new()
--   app:get("/users/:id[%d]", function(req) return { json = { id = tonumber(req.params.id) } } end)
--   app:before(function(req) ... end)      -- return a response table to short-circuit
--   app:init_worker(function() ... end)    -- run once per VM generation, may do host I/O
--
-- The C host calls app:serve(req) once per request, in the request's own coroutine, and gets back
-- status, body, headers, route (route = the matched pattern, or "404"/"405", for metrics and the
-- access log); when it raises, app:handle_error(req, err, co) gives the answer instead (serve runs
-- under no xpcall: LuaJIT cannot compile a return through one, and the request path would fall back
-- to the interpreter). app:handle(req) is the same, protected, for callers in Lua. The host calls
-- app:run_init_worker() once per VM generation and treats a raise as a failed reload.
--
-- Handlers take req (as built by C, plus req.params, req.route, req:json(), req:arg(name),
-- req:args()) and return {status=, json=, headers=} or {status=, body=, headers=} (status defaults
-- to 200) or nothing (204). Expected failures are raised with web.fail(status, code, message,
-- details) and become {"error":{code, message, details?}, "request_id"} bodies; anything else that
-- raises is logged with a traceback and answered 500 INTERNAL. A message may be a string or a
-- {ko=, en=} table, picked by the request's Accept-Language (Korean by default).
--
-- A handler may stream its answer instead (server-sent events): it returns
-- {status=, content_type=, stream=function(send) ... end} (status 200 and content type
-- text/event-stream by default; other headers are not sent). The head goes out, then the function
-- runs, still in the request's coroutine, and writes with send(data) -> true | nil, "closed" |
-- "timeout" (host.stream.send: it yields while the client is slow, never longer than
-- stream_send_timeout). The answer ends when the function returns; if it raises, the client sees
-- the stream cut. web.sse(event, data [, id]) formats one event. A streaming function should loop
-- `while not host.exiting()` so a reload or stop ends it, and give up when send fails.
--
-- Returned header tables may be shared constants: C must only read them. web.headers(t) freezes
-- one (web.JSON_HEADERS is): the host then checks and formats it once, not at every answer.
local router = require "lib.router"
local json = require "lib.json"
local host = require "host"

local type, error, pairs, tostring, setmetatable, getmetatable = type, error, pairs, tostring, setmetatable,
    getmetatable
local xpcall, tonumber, rawget = xpcall, tonumber, rawget
local char, find, gsub, lower, match, gmatch, sub = string.char, string.find, string.gsub, string.lower,
    string.match, string.gmatch, string.sub
local traceback = debug.traceback
local encode, decode, quote, plain = json.encode, json.decode, json.quote, json.plain

local JSON_CONTENT_TYPE = "application/json; charset=utf-8"

-- Messages of the errors this module raises itself.
local MSG_NOT_FOUND = { ko = "요청한 리소스를 찾을 수 없습니다.", en = "The requested resource was not found." }
local MSG_METHOD_NOT_ALLOWED = { ko = "허용되지 않은 요청 메서드입니다.", en = "Method not allowed for this resource." }
local MSG_UNSUPPORTED_MEDIA_TYPE = {
    ko = "요청 본문은 application/json 형식이어야 합니다.",
    en = "The request body must be application/json.",
}
local MSG_BAD_JSON = { ko = "요청 본문이 올바른 JSON이 아닙니다.", en = "The request body is not valid JSON." }
local MSG_BAD_JSON_SHAPE = {
    ko = "요청 본문은 JSON 객체 또는 배열이어야 합니다.",
    en = "The request body must be a JSON object or array.",
}
local MSG_INTERNAL = { ko = "서버 내부 오류가 발생했습니다.", en = "An internal error occurred." }

local ERR_BAD_RESULT = "handler must return a table or nothing, got "
local ERR_BAD_BODY = "response body must be a string, got "
local ERR_BAD_STREAM = "response stream must be a function, got "

local _M = {
    JSON_CONTENT_TYPE = JSON_CONTENT_TYPE,
    messages = {
        NOT_FOUND = MSG_NOT_FOUND,
        METHOD_NOT_ALLOWED = MSG_METHOD_NOT_ALLOWED,
        UNSUPPORTED_MEDIA_TYPE = MSG_UNSUPPORTED_MEDIA_TYPE,
        BAD_JSON = MSG_BAD_JSON,
        BAD_JSON_SHAPE = MSG_BAD_JSON_SHAPE,
        INTERNAL = MSG_INTERNAL,
    },
}

-- The content of each frozen header table (web.headers), for the pairs that cannot see it.
local frozen = setmetatable({}, { __mode = "k" })

local function read_only() error("a frozen header table (web.headers) is read-only", 2) end

-- web.headers(t) -> a frozen copy of the header table t, for answers that share one: indexing it
-- works, assigning to it raises and pairs() sees nothing in it (web.header_pairs(h) does); the host
-- checks and formats its header lines once, at its first answer, instead of at every answer.
function _M.headers(t)
    local content = {}
    for k, v in pairs(t) do content[k] = v end
    local h = setmetatable({}, { __index = content, __newindex = read_only, __metatable = false,
        __fcfs_headers = content })
    frozen[h] = content
    return h
end

-- web.header_pairs(h): pairs(h) for any header table, frozen or not.
local function header_pairs(h)
    return pairs(frozen[h] or h)
end
_M.header_pairs = header_pairs

local JSON_HEADERS = _M.headers { ["Content-Type"] = JSON_CONTENT_TYPE }
_M.JSON_HEADERS = JSON_HEADERS

---------------------------------------------------------------------------------------------------
-- Structured failures

local Fail = { __name = "web.fail" }
Fail.__index = Fail
Fail.__tostring = function(f) return "web.fail " .. tostring(f.status) .. " " .. tostring(f.code) end

-- web.fail(status, code, message, details, headers): raise an expected error; never returns.
function _M.fail(status, code, message, details, headers)
    error(setmetatable({ status = status, code = code, message = message, details = details,
        headers = headers }, Fail), 0)
end

function _M.is_fail(e)
    return getmetatable(e) == Fail
end

-- Errors of the data plane that mean "the backend cannot serve now" (host.redis, host.mysql):
-- the client may retry, so they answer 503, not 500.
local BACKEND_DOWN = { unavailable = true, timeout = true, closed = true, busy = true }
-- MySQL client/server error numbers that mean the connection or the server went away (the host
-- returns them as nil, message, errno): 2002/2003 can't connect, 2006 gone away, 2013/2055 lost
-- during a query, 1040 too many connections, 1053 shutting down.
local MYSQL_DOWN = { [2002] = true, [2003] = true, [2006] = true, [2013] = true, [2055] = true,
    [1040] = true, [1053] = true }
local MSG_UNAVAILABLE = {
    ko = "일시적으로 서비스를 이용할 수 없습니다. 잠시 후 다시 시도해주세요.",
    en = "The service is temporarily unavailable. Please retry shortly.",
}

-- web.check(v, err, errno): v when the call worked; otherwise 503 UNAVAILABLE for a backend that
-- is down or slow, and a plain error (logged, 500) for anything else, e.g. an SQL error.
function _M.check(v, err, errno, ...)
    if v ~= nil then return v, err, errno, ... end
    if BACKEND_DOWN[err] or MYSQL_DOWN[errno] then
        _M.fail(503, "UNAVAILABLE", MSG_UNAVAILABLE, { reason = BACKEND_DOWN[err] and err or "closed" },
            { ["Retry-After"] = "1" })
    end
    error(tostring(err or "backend error"), 2)
end

-- The Internal wrapper carries an unexpected error and its traceback out of xpcall.
local Internal = {}

local function on_error(e)
    if getmetatable(e) == Fail then return e end
    local msg = type(e) == "string" and e or tostring(e)
    -- traceback("") starts with a newline before "stack traceback:"; drop it
    return setmetatable({ msg = msg, tb = sub(traceback("", 2), 2) }, Internal)
end

---------------------------------------------------------------------------------------------------
-- Language and error bodies

-- web.lang(req) -> "ko" | "en": the supported language Accept-Language prefers (ko by default).
local function lang(req)
    local l = rawget(req, "_lang") -- not req._lang: a miss would call the request table's __index (C)
    if l then return l end
    l = "ko"
    local al = host.header(req, "accept-language")
    if al then
        local best = 0
        for tag, rest in gmatch(al, "%s*([^,;%s]+)([^,]*)") do
            local q = tonumber(match(rest, ";%s*q%s*=%s*([%d.]+)")) or 1
            local primary = lower(match(tag, "^[^-_]+") or tag)
            if (primary == "en" or primary == "ko") and q > best then
                best, l = q, primary
            end
        end
    end
    req._lang = l
    return l
end
_M.lang = lang

local function localize(req, message)
    if type(message) == "table" then
        return message[lang(req)] or message.ko or message.en or ""
    end
    return message == nil and "" or tostring(message)
end
_M.localize = localize

-- The start of error bodies, '{"error":{"code":..,"message":..', by code and message text: the
-- refusals a busy route answers again and again are not escaped anew each time. Bounded.
local heads, nheads = {}, 0

local function error_head(code, text)
    code = tostring(code)
    local by_code = heads[code]
    local head = by_code and by_code[text]
    if head then return head end
    head = '{"error":{"code":' .. quote(code) .. ',"message":' .. quote(text)
    if nheads >= 1000 then heads, nheads = {}, 0 end
    if not heads[code] then heads[code] = {} end
    heads[code][text], nheads = head, nheads + 1
    return head
end

-- The error body, assembled so that keys come out in the documented order.
local function error_body(req, code, message, details)
    local id = req.request_id
    local body = error_head(code, localize(req, message))
    if details ~= nil then
        body = body .. ',"details":' .. encode(details)
    end
    if not id then return body .. '},"request_id":null}' end
    id = tostring(id)
    -- a plain id (the host's always are) is concatenated as it is: one string made, not two
    if plain(id) then return body .. '},"request_id":"' .. id .. '"}' end
    return body .. '},"request_id":' .. quote(id) .. "}"
end
_M.error_body = error_body

-- A copy of headers whose content type is ours (error bodies are always JSON).
local function with_json_type(headers)
    local h = {}
    for k, v in header_pairs(headers) do
        if lower(k) ~= "content-type" then h[k] = v end
    end
    h["Content-Type"] = JSON_CONTENT_TYPE
    return h
end

-- headers itself when it names a content type (the handler's choice wins), else a copy plus ours.
local function ensure_json_type(headers)
    for k in header_pairs(headers) do
        if lower(k) == "content-type" then return headers end
    end
    return with_json_type(headers)
end

---------------------------------------------------------------------------------------------------
-- Request helpers (req's methods once serve matched a route)

local function is_json_type(ct)
    local mt, params = match(ct, "^%s*([^;%s]+)%s*(.*)$")
    if not mt or lower(mt) ~= "application/json" then return false end
    local charset = match(lower(params), "charset%s*=%s*\"?([%w%-_]+)")
    return charset == nil or charset == "utf-8" or charset == "utf8"
end

-- req:json() -> the decoded body (an object or array table); raises 415 / 400 (see header).
local function req_json(req)
    local v = req._json
    if v ~= nil then return v end
    local headers = req.headers
    local ct = headers and headers["content-type"]
    if not ct or not is_json_type(ct) then
        _M.fail(415, "UNSUPPORTED_MEDIA_TYPE", MSG_UNSUPPORTED_MEDIA_TYPE)
    end
    local body = req.body
    if body == nil or body == "" then _M.fail(400, "BAD_JSON", MSG_BAD_JSON) end
    v = decode(body)
    if v == nil then _M.fail(400, "BAD_JSON", MSG_BAD_JSON) end
    if type(v) ~= "table" then _M.fail(400, "BAD_JSON", MSG_BAD_JSON_SHAPE) end
    req._json = v
    return v
end

local function hex_char(h) return char(tonumber(h, 16)) end

local function unescape_arg(s)
    if find(s, "+", 1, true) then s = gsub(s, "+", " ") end
    if find(s, "%", 1, true) then s = gsub(s, "%%(%x%x)", hex_char) end
    return s
end

-- Decodes a query string into name -> value; the first occurrence of a name wins, a name without
-- "=" maps to "".
local function parse_query(q)
    local args = {}
    if q == nil or q == "" then return args end
    for pair in gmatch(q, "[^&;]+") do
        local k, v = match(pair, "^([^=]*)=(.*)$")
        if not k then k, v = pair, "" end
        k = unescape_arg(k)
        if k ~= "" and args[k] == nil then args[k] = unescape_arg(v) end
    end
    return args
end
_M.parse_query = parse_query

-- req:args() -> table of decoded query arguments (parsed once per request).
local function req_args(req)
    local args = req._args
    if not args then
        args = parse_query(req.query)
        req._args = args
    end
    return args
end

-- req:arg(name) -> string or nil.
local function req_arg(req, name)
    return req_args(req)[name]
end

-- The metatable serve gives request tables: the methods above, then the fields the host makes on
-- first use (host.request_field: nothing for a table not made by the host), so that a request
-- table holds only what a handler reads (a fresh table per request: its size is garbage).
-- A table the host did not make (a Lua caller's) gets the methods alone. __fcfs_request tells
-- host.header that the table is the running request's: it may read a header without req.headers.
local REQ_METHODS = { json = req_json, arg = req_arg, args = req_args }
local HOST_FIELDS = { headers = true, query = true, request_id = true, remote_addr = true, admin = true }
local request_field = host.request_field
local REQ_MT = {
    __index = function(req, k)
        local m = REQ_METHODS[k]
        if m ~= nil then return m end
        if HOST_FIELDS[k] then return request_field(req, k) end
        return nil
    end,
    __fcfs_request = true,
}
local PLAIN_MT = { __index = REQ_METHODS }

-- The metatable serve gives req: REQ_MT for the host's request tables (their metatable is marked
-- __fcfs_request too), PLAIN_MT for the others.
local function req_mt(req)
    local mt = getmetatable(req)
    if mt and rawget(mt, "__fcfs_request") then return REQ_MT end
    return PLAIN_MT
end

---------------------------------------------------------------------------------------------------
-- The app

local App = {}
App.__index = App

function _M.new()
    return setmetatable({ router = router.new(), filters = {}, init_fns = {} }, App)
end

local ALL_METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE" }

-- app:match(method_or_methods, pattern, fn) or app:match(pattern, fn) for every method.
function App:match(methods, pattern, fn)
    if fn == nil then methods, pattern, fn = ALL_METHODS, methods, pattern end
    if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call) then
        error("handler for " .. tostring(pattern) .. " must be a function", 2)
    end
    if type(methods) == "string" then methods = { methods } end
    for i = 1, #methods do
        self.router:add(methods[i], pattern, fn)
    end
    return self
end

function App:get(pattern, fn) return self:match("GET", pattern, fn) end
function App:post(pattern, fn) return self:match("POST", pattern, fn) end
function App:put(pattern, fn) return self:match("PUT", pattern, fn) end
function App:patch(pattern, fn) return self:match("PATCH", pattern, fn) end
function App:delete(pattern, fn) return self:match("DELETE", pattern, fn) end

-- app:before(fn): fn(req) runs before every matched handler, in registration order; a non-nil
-- return is the response and skips the rest.
function App:before(fn)
    if type(fn) ~= "function" then error("before filter must be a function", 2) end
    self.filters[#self.filters + 1] = fn
    return self
end

-- app:init_worker(fn): fn() runs once per VM generation (may do host I/O).
function App:init_worker(fn)
    if type(fn) ~= "function" then error("init_worker expects a function", 2) end
    self.init_fns[#self.init_fns + 1] = fn
    return self
end

function App:run_init_worker()
    local fns = self.init_fns
    for i = 1, #fns do
        local ok, err = xpcall(fns[i], traceback)
        if not ok then
            error("init_worker #" .. i .. " failed: " .. tostring(err), 0)
        end
    end
    return true
end

-- Turns a handler's result into status, body, headers.
local function render(res)
    if res == nil then return 204, nil, nil end
    if type(res) ~= "table" then error(ERR_BAD_RESULT .. type(res), 0) end
    local status = res.status or 200
    local headers = res.headers
    local body
    local j = res.json
    if j ~= nil then
        body = encode(j)
        if headers == nil then
            headers = JSON_HEADERS
        else
            headers = ensure_json_type(headers)
        end
    else
        body = res.body
        if body ~= nil and type(body) ~= "string" then error(ERR_BAD_BODY .. type(body), 0) end
    end
    if status == 204 or status == 304 or status < 200 then body = nil end
    return status, body, headers
end

-- A streamed answer (see the header): the head now, then the stream function; the status returned
-- to the host is ignored once the stream is open.
local function stream(res)
    local fn = res.stream
    if type(fn) ~= "function" then error(ERR_BAD_STREAM .. type(fn), 0) end
    local host_stream = host.stream
    if host_stream.open(res.status or 200, res.content_type) then fn(host_stream.send) end
    return 200
end

local function run(app, handler, req)
    local filters = app.filters
    for i = 1, #filters do
        local res = filters[i](req)
        if res ~= nil then return render(res) end
    end
    local res = handler(req)
    if type(res) == "table" and res.stream ~= nil then return stream(res) end
    return render(res)
end

-- web.sse(event, data [, id]) -> one server-sent event: "event:", "id:" and one "data:" line per
-- line of data, then the blank line that ends it.
function _M.sse(event, data, id)
    local out = "event: " .. event .. "\n"
    if id ~= nil then out = out .. "id: " .. tostring(id) .. "\n" end
    return out .. "data: " .. gsub(data, "\r?\n", "\ndata: ") .. "\n\n"
end

local function error_reply(req, status, code, message, details, headers)
    local h = JSON_HEADERS
    if headers ~= nil then h = with_json_type(headers) end
    return status, error_body(req, code, message, details), h
end

-- app:serve(req) -> status, body, headers, route; raises what the handler raised (the host's
-- entry: see the header).
function App:serve(req)
    local handler, params, pattern = self.router:match(req.method, req.path)
    if not handler then
        if params == router.METHOD_NOT_ALLOWED then
            local status, body, headers = error_reply(req, 405, "METHOD_NOT_ALLOWED", MSG_METHOD_NOT_ALLOWED, nil,
                { Allow = router.allow_header(pattern) })
            return status, body, headers, "405"
        end
        local status, body, headers = error_reply(req, 404, "NOT_FOUND", MSG_NOT_FOUND)
        return status, body, headers, "404"
    end
    setmetatable(req, req_mt(req))
    req.params = params
    req.route = pattern
    local status, body, headers = run(self, handler, req)
    return status, body, headers, pattern
end

-- The answer to e raised while serving req: a web.fail's error body, else 500 INTERNAL with the
-- error logged with tb (a traceback, or a coroutine to take one from).
local function fail_reply(req, e, tb)
    local status, body, headers
    if getmetatable(e) == Fail then
        status, body, headers = error_reply(req, e.status or 500, e.code or "INTERNAL", e.message, e.details,
            e.headers)
        return status, body, headers, req.route
    end
    if type(tb) == "thread" then tb = sub(traceback(tb, "", 0), 2) end
    -- the host adds the request id, client and request line to every log line of a request
    host.log("error", type(e) == "string" and e or tostring(e), "\n", tb)
    status, body, headers = error_reply(req, 500, "INTERNAL", MSG_INTERNAL)
    return status, body, headers, req.route
end

-- app:handle_error(req, e, co) -> status, body, headers, route: what the host answers when serve
-- raised e in coroutine co (dead, its stack kept for the traceback). req is a request table like the
-- one serve got, made anew by the host (what the handler put in its own is gone): the route is
-- matched again.
function App:handle_error(req, e, co)
    local handler, _, pattern = self.router:match(req.method, req.path)
    if handler then req.route = pattern end
    return fail_reply(req, e, co)
end

-- app:handle(req) -> status, body, headers, route: serve with the raises answered, for callers
-- in Lua (tests, benches).
function App:handle(req)
    local ok, status, body, headers, route = xpcall(self.serve, on_error, self, req)
    if ok then return status, body, headers, route end
    if getmetatable(status) == Internal then return fail_reply(req, status.msg, status.tb) end
    return fail_reply(req, status)
end

return _M
