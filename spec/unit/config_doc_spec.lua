-- The configuration reference (docs/config.md) against the key table of host/conf.c: every key has
-- one row with its type, bounds, default and environment name, and no row names a key the host
-- does not know; every key also has its documented line in etc/fcfs.lua.
local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local TYPES = { S = "string", I = "integer", N = "number", B = "boolean", L = "list", D = "dicts" }

-- name -> "type[ lo..hi]", default text, in the order of keys[]
local function conf_keys()
    local src = read("host/conf.c")
    local body = assert(src:match("static const conf_key_t keys%[%] = (%b{})"), "keys[] not found in host/conf.c")
    local keys, order = {}, {}
    for line in body:gmatch("[^\n]+") do
        local t, args = line:match("^%s*([SINBLD])(%b())")
        if t then
            local name, def, rest = args:match('^%(([%w_]+),%s*"([^"]*)"(.*)%)$')
            assert(name, "unparsed row: " .. line)
            local lo, hi = rest:match("^,%s*([^,]+),%s*(.+)$")
            keys[name] = { type = TYPES[t] .. (lo and (" " .. lo .. ".." .. hi) or ""), def = def }
            order[#order + 1] = name
        end
    end
    return keys, order
end

describe("docs/config.md", function()
    local keys, order = conf_keys()
    local doc = read("docs/config.md")
    local rows = {}
    for name, ty, def, env in doc:gmatch("\n| `([%w_]+)` | ([^|]-) | `([^`]*)` | `([%w_]+)` |") do
        rows[name] = { type = ty, def = def, env = env }
    end

    it("parses the key table of host/conf.c", function()
        assert.is_true(#order >= 60, tostring(#order))
    end)

    it("has one row per key with its type, bounds, default and environment name", function()
        for _, name in ipairs(order) do
            local r, k = rows[name], keys[name]
            assert.is_truthy(r, "no row for " .. name)
            assert.equal(k.type, r.type, name)
            assert.equal(k.def == "" and '""' or k.def, r.def, name)
            assert.equal("FCFS_" .. name:upper(), r.env, name)
        end
    end)

    it("names no key the host does not know", function()
        for name in pairs(rows) do
            assert.is_truthy(keys[name], name .. " is in docs/config.md but not in host/conf.c")
        end
    end)

    it("every key has its line in etc/fcfs.lua", function()
        local conf = read("etc/fcfs.lua")
        for _, name in ipairs(order) do
            assert.is_truthy(conf:find("\n%s*%-?%-? ?" .. name .. " = "), name)
        end
    end)
end)
