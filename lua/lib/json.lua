-- lib/json.lua: the one JSON codec of the Lua side.
--
-- Decoding goes through lua-cjson (a private instance, so settings made here never leak into other
-- users of the shared module) and never raises: json.decode(s) -> value | nil, err.
--
-- Encoding: the cjson packaged with the OS cannot do two things the API needs: integers of 15 or
-- more digits come out in exponent form (its precision caps at 14 digits: 1e15 -> 1e+15), and an
-- empty table cannot be marked as an array. json.encode therefore asks cjson first and keeps its
-- output unless that output contains "e+" or "{}" (the only places where either problem can
-- show); then it encodes again with the Lua encoder below, which follows cjson's rules except:
--   * integral numbers print as integers ("%d"); other numbers with 14 significant digits,
--     as cjson does; NaN and infinities are refused;
--   * json.array(t) marks t to encode as a JSON array, even when empty (t must hold only 1..n);
--     the mark is a metatable whose __name is "json.array" (host.mysql puts one on result row
--     lists, so an empty result encodes as []).
-- Shared rules: a table whose keys are all positive integers is an array (holes become null)
-- unless it is excessively sparse (max key > 10 and > twice the key count), then it is an object;
-- other tables are objects with string or number keys; an unmarked empty table is "{}";
-- json.null (= cjson.null = host.null) encodes as null, and decoded nulls come back as it; key
-- order is unspecified; "/" may come out escaped as "\/".
-- A flat object (string keys; integer, boolean, string or null values) is written by a faster way
-- to the same bytes (encode_flat).
-- json.encode raises on values it cannot encode (functions, NaN, cycles): those are programming
-- errors and surface as a 500 with a traceback.
local cjson_shared = require "cjson"
local buffer = require "string.buffer"

local type, next, pairs, tostring = type, next, pairs, tostring
local error, getmetatable, setmetatable, pcall, rawget = error, getmetatable, setmetatable, pcall, rawget
local byte, char, find, format, gsub = string.byte, string.char, string.find, string.format, string.gsub
local huge = math.huge

local ok_nkeys, nkeys = pcall(require, "table.nkeys")
if not ok_nkeys then
    nkeys = function(t)
        local n = 0
        for _ in pairs(t) do n = n + 1 end
        return n
    end
end

local MAX_DEPTH = 256
local MAX_INT = 2 ^ 63

local ERR_NOT_STRING = "expected a string"
local ERR_DEPTH = "nesting too deep (a cycle?)"

local cjson = cjson_shared.new()
cjson.decode_invalid_numbers(false)
cjson.decode_max_depth(MAX_DEPTH)
cjson.encode_max_depth(MAX_DEPTH)
cjson.encode_sparse_array(true) -- excessively sparse arrays become objects instead of raising
local SPARSE_RATIO, SPARSE_SAFE = 2, 10

local null = cjson_shared.null
local array_mt = { __name = "json.array" }

local function marked(t)
    local mt = getmetatable(t)
    return type(mt) == "table" and rawget(mt, "__name") == "json.array"
end

local _M = { null = null, array_mt = array_mt }

-- Characters that need escaping inside a JSON string, and their escapes.
local ESCAPES = {
    ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
    ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
for i = 0, 31 do
    local c = char(i)
    if not ESCAPES[c] then ESCAPES[c] = format("\\u%04x", i) end
end
local NEEDS_ESCAPE = '[%z\1-\31"\\]'

local buf = buffer.new(256)

-- json.plain(s): true when the string s has nothing to escape in JSON (no control character, '"'
-- or '\'). A loop over the bytes, not find(s, NEEDS_ESCAPE): LuaJIT compiles the loop, while a
-- pattern with a class runs in the interpreter's matcher (some 200 instructions a byte).
local function plain(s)
    for i = 1, #s do
        local b = byte(s, i)
        if b < 32 or b == 34 or b == 92 then return false end
    end
    return true
end
_M.plain = plain

local function put_string(s)
    if not plain(s) then s = gsub(s, NEEDS_ESCAPE, ESCAPES) end
    buf:put('"', s, '"')
end

local function put_number(v)
    if v ~= v or v == huge or v == -huge then
        error("cannot encode " .. tostring(v) .. " as JSON", 0)
    end
    if v % 1 == 0 and v > -MAX_INT and v < MAX_INT then
        buf:putf("%d", v)
        return
    end
    buf:putf("%.14g", v)
end

local put_value

local function put_array(t, n, depth)
    buf:put("[")
    for i = 1, n do
        if i > 1 then buf:put(",") end
        put_value(t[i], depth)
    end
    buf:put("]")
end

-- cjson's rule: all keys positive integers and not excessively sparse -> an array of max key
-- elements; returns that length, or nil for an object. nkeys is a builtin in OpenResty's LuaJIT.
local function array_length(t)
    local n = #t
    if n > 0 and nkeys(t) == n then return n end
    local count, max = 0, 0
    for k in next, t do
        if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return nil end
        count = count + 1
        if k > max then max = k end
    end
    if count == 0 then return nil end
    if max > SPARSE_SAFE and max > count * SPARSE_RATIO then return nil end
    return max
end

local function put_table(t, depth)
    if depth > MAX_DEPTH then error(ERR_DEPTH, 0) end
    depth = depth + 1
    local n
    if marked(t) then n = #t else n = array_length(t) end
    if n then return put_array(t, n, depth) end
    buf:put("{")
    local first = true
    for k, v in next, t do
        if first then first = false else buf:put(",") end
        local kt = type(k)
        if kt == "string" then
            put_string(k)
        elseif kt == "number" then
            buf:put('"')
            put_number(k)
            buf:put('"')
        else
            error("cannot encode a " .. kt .. " key as JSON", 0)
        end
        buf:put(":")
        put_value(v, depth)
    end
    buf:put("}")
end

put_value = function(v, depth)
    local vt = type(v)
    if vt == "string" then
        put_string(v)
    elseif vt == "number" then
        put_number(v)
    elseif vt == "boolean" then
        buf:put(v and "true" or "false")
    elseif vt == "table" then
        put_table(v, depth)
    elseif v == nil or v == null then
        buf:put("null")
    else
        error("cannot encode a " .. vt .. " as JSON", 0)
    end
end

local cjson_encode = cjson.encode

-- Flat objects (string keys; values integers below 1e14, booleans, strings or null: most answers,
-- of a few pairs) are encoded here to cjson's very bytes -- names and strings by cjson itself (names
-- once, kept), integers by LuaJIT's "%d" (an integer conversion, compiled: "%.14g" would print the
-- same digits in that range, but the float formatting costs some 250 instructions a number), the
-- same digits as cjson's "%.14g" without its snprintf, which costs more than the rest of a small
-- request.
local names, nnames = {}, 0

-- Puts t's pair at name k after sep; the next name of t (nil after the last), or false when the
-- value is not one of a flat object.
local function put_pair(t, k, sep)
    if type(k) ~= "string" then return false end
    local name = names[k]
    if name == nil then
        if nnames >= 1000 then names, nnames = {}, 0 end
        name = cjson_encode(k) .. ":"
        names[k], nnames = name, nnames + 1
    end
    local v = t[k]
    local vt = type(v)
    if vt == "number" then
        if not (v % 1 == 0 and v > -1e14 and v < 1e14) then return false end
        if v ~= 0 then
            buf:putf("%s%s%d", sep, name, v)
        else
            buf:put(sep, name, v) -- -0 stays "-0"
        end
    elseif vt == "boolean" then
        buf:put(sep, name, v and "true" or "false")
    elseif vt == "string" then
        buf:put(sep, name, cjson_encode(v))
    elseif v == null then
        buf:put(sep, name, "null")
    else
        return false
    end
    return (next(t, k))
end

-- t as JSON when it is a flat object of at most 8 pairs, else nil. Unrolled, not a loop: LuaJIT
-- cannot start a trace in a function that runs an inner loop, and every answer goes through here.
local function encode_flat(t)
    if getmetatable(t) ~= nil then return nil end
    local k = next(t)
    if k == nil then return nil end
    buf:reset()
    k = put_pair(t, k, "{")
    k = k and put_pair(t, k, ",")
    k = k and put_pair(t, k, ",")
    k = k and put_pair(t, k, ",")
    k = k and put_pair(t, k, ",")
    k = k and put_pair(t, k, ",")
    k = k and put_pair(t, k, ",")
    k = k and put_pair(t, k, ",")
    if k ~= nil then return nil end -- false: not flat; a name: more than 8 pairs
    buf:put("}")
    local out = buf:get() -- not a tail call: see quote
    return out
end

-- json.encode(v) -> string. Raises on unencodable input (see the header).
function _M.encode(v)
    if type(v) == "table" then
        local flat = encode_flat(v)
        if flat then return flat end
    end
    local ok, s = pcall(cjson_encode, v)
    if ok and not find(s, "e+", 1, true) and not find(s, "{}", 1, true) then
        return s
    end
    buf:reset()
    put_value(v, 0)
    local out = buf:get() -- not a tail call: see quote
    return out
end

-- json.decode(s) -> value | nil, err. Never raises; JSON null decodes to json.null.
local decode = cjson.decode
function _M.decode(s)
    if type(s) ~= "string" then return nil, ERR_NOT_STRING end
    local ok, v = pcall(decode, s)
    if not ok then return nil, v end
    return v
end

-- json.array(t) -> t, marked to encode as a JSON array (a new empty one when t is nil).
function _M.array(t)
    return setmetatable(t or {}, array_mt)
end

-- json.is_array(t): true when t carries the array mark.
function _M.is_array(t)
    return marked(t)
end

-- json.quote(s) -> s as a JSON string literal (for callers that assemble fixed-shape bodies).
function _M.quote(s)
    if type(s) == "string" and plain(s) then return '"' .. s .. '"' end
    buf:reset()
    put_string(s)
    -- not `return buf:get()`: LuaJIT cannot compile a tail call of a buffer method that returns to
    -- a frame below the trace's start (NYI: return to lower frame)
    local q = buf:get()
    return q
end

return _M
