-- spec/fuzz/fuzz_json.lua -- the Lua side of spec/fuzz/fuzz_json.c: returns check(s).
--
-- check(s) hands s to json.decode and raises when the documented contract is broken: decode
-- never raises and returns a value, or nil and an error string. A decoded value is encoded again;
-- when json.encode accepts it (it may refuse: 1e999 decodes to inf), its output must decode.
-- It returns the features of the outcome as space-separated words (the error message with its
-- numbers blanked, or the type, depth and size class of every decoded value): the harness turns
-- them into libFuzzer counters, the fuzzer's only view into cjson and LuaJIT, which are not
-- instrumented.
local json = require "lib.json"

local type, tostring, pcall, pairs, concat = type, tostring, pcall, pairs, table.concat
local floor, huge = math.floor, math.huge

local function size_class(n)
    if n == 0 then return "0" elseif n == 1 then return "1" elseif n < 8 then return "s" end
    return n < 64 and "m" or "l"
end

local function number_class(v)
    if v ~= v then return "nan" end
    if v == huge or v == -huge then return "inf" end
    if v == floor(v) then
        return (v < 0 and "-" or "") .. ((v > 2 ^ 53 or v < -2 ^ 53) and "bigint" or "int")
    end
    return v < 0 and "-frac" or "frac"
end

local function features(v, depth, out)
    local t = type(v)
    if t == "table" then
        local n, keys = 0, 0
        for k in pairs(v) do
            n = n + 1
            if type(k) == "string" then keys = keys + 1 end
        end
        out[#out + 1] = (keys > 0 and "obj" or "arr") .. depth .. size_class(n)
        if depth < 8 then
            for k, x in pairs(v) do
                if type(k) == "string" then out[#out + 1] = "key" .. size_class(#k) end
                features(x, depth + 1, out)
            end
        end
    elseif t == "string" then
        out[#out + 1] = "str" .. depth .. size_class(#v)
    elseif t == "number" then
        out[#out + 1] = "num" .. depth .. number_class(v)
    else
        out[#out + 1] = t .. depth .. tostring(v == json.null and "null" or v)
    end
end

return function(s)
    local ok, v, err = pcall(json.decode, s)
    assert(ok, "json.decode raised: " .. tostring(v))
    if v == nil then
        assert(type(err) == "string", "nil without an error string")
        return "err:" .. err:gsub("%d+", "#"):gsub(" ", "_")
    end
    assert(err == nil, "a value and an error")
    local eok, out = pcall(json.encode, v)
    if eok then
        assert(type(out) == "string", "encode returned a non-string")
        local again, err2 = json.decode(out)
        assert(again ~= nil, "encode output does not decode: " .. tostring(err2) .. ": " .. out)
    end
    local f = { eok and "encodes" or "refused" }
    features(v, 0, f)
    return concat(f, " ")
end
