-- spec/support/openapi.lua -- docs/openapi.yaml for specs: which operations it describes, and a
-- checker of real responses against its schemas.
--
--   local openapi = require "spec.support.openapi"
--   local doc = openapi.load()                        -- the parsed document (lyaml)
--   openapi.operations(doc)                           -- { ["GET /api/users/me"] = op, ... }
--   openapi.path_of("/api/products/:id[%d]")          -- "/api/products/{id}"
--   openapi.check_response(doc, "GET", "/api/users/me", res)  -- raises when res does not fit
--
-- The checker knows the subset of JSON Schema the document uses: type (a name or a list; "integer"
-- = an integral number), const, enum, required, properties, additionalProperties (false or a
-- schema), minProperties, items, allOf, minimum, minLength/maxLength (in characters), $ref to
-- "#/...". pattern and format are not checked. A decoded empty table passes as an object or an
-- array (the JSON decoder cannot tell them apart).
local lyaml = require "lyaml"
local cjson = require "cjson.safe"
local server = require "spec.support.server"

local openapi = {}

local METHODS = { "get", "put", "post", "patch", "delete" }

function openapi.load()
    return lyaml.load(server.repo_file("docs/openapi.yaml"))
end

-- The OpenAPI path of a router pattern: ":name[class]" and ":name" -> "{name}", "*" -> "{splat}".
function openapi.path_of(pattern)
    return (pattern:gsub(":([%a_][%w_]*)%b[]", "{%1}"):gsub(":([%a_][%w_]*)", "{%1}"):gsub("%*$", "{splat}"))
end

function openapi.operations(doc)
    local ops = {}
    for path, item in pairs(doc.paths) do
        for _, m in ipairs(METHODS) do
            if item[m] then ops[m:upper() .. " " .. path] = item[m] end
        end
    end
    return ops
end

local function resolve(doc, node)
    local seen = 0
    while type(node) == "table" and node["$ref"] do
        local ref = node["$ref"]
        assert(ref:sub(1, 2) == "#/", "only local $ref: " .. ref)
        node = doc
        for part in ref:sub(3):gmatch("[^/]+") do
            node = node[part]
            assert(node ~= nil, "dangling $ref " .. ref)
        end
        seen = seen + 1
        assert(seen < 20, "$ref loop at " .. ref)
    end
    return node
end

local function is_null(v) return v == cjson.null or v == lyaml.null end

local function utf8_chars(s)
    local _, n = s:gsub("[^\128-\191]", "")
    return n
end

local function is_array(v)
    return type(v) == "table" and (next(v) == nil or v[1] ~= nil)
end

local function is_object(v)
    return type(v) == "table" and (next(v) == nil or v[1] == nil)
end

local TYPES = {
    string = function(v) return type(v) == "string" end,
    integer = function(v) return type(v) == "number" and v % 1 == 0 end,
    number = function(v) return type(v) == "number" end,
    boolean = function(v) return type(v) == "boolean" end,
    object = is_object,
    array = is_array,
    null = is_null,
}

local function fits(doc, schema, v, path)
    schema = resolve(doc, schema)
    if schema.allOf then
        for i, s in ipairs(schema.allOf) do
            local ok, err = fits(doc, s, v, path)
            if not ok then return nil, err .. " (allOf #" .. i .. ")" end
        end
    end
    local t = schema.type
    if t then
        local list = type(t) == "table" and t or { t }
        local ok = false
        for _, name in ipairs(list) do
            local f = assert(TYPES[name], "unknown type " .. tostring(name))
            if f(v) then ok = true break end
        end
        if not ok then
            return nil, path .. ": expected " .. table.concat(list, "|") .. ", got " .. cjson.encode(v)
        end
    end
    if schema.const ~= nil and v ~= schema.const then
        return nil, path .. ": expected " .. tostring(schema.const) .. ", got " .. tostring(v)
    end
    if schema.enum then
        local ok = false
        for _, e in ipairs(schema.enum) do
            if e == v then ok = true break end
        end
        if not ok then return nil, path .. ": " .. tostring(v) .. " is not in the enum" end
    end
    if type(v) == "string" then
        local n = utf8_chars(v)
        if schema.maxLength and n > schema.maxLength then return nil, path .. ": longer than maxLength" end
        if schema.minLength and n < schema.minLength then return nil, path .. ": shorter than minLength" end
    end
    if type(v) == "number" and schema.minimum and v < schema.minimum then
        return nil, path .. ": below minimum"
    end
    if is_object(v) and (schema.properties or schema.required or schema.additionalProperties ~= nil) then
        for _, name in ipairs(schema.required or {}) do
            if v[name] == nil then return nil, path .. ": missing required " .. name end
        end
        local count = 0
        for k, val in pairs(v) do
            count = count + 1
            local ps = schema.properties and schema.properties[k]
            if ps then
                local ok, err = fits(doc, ps, val, path .. "." .. k)
                if not ok then return nil, err end
            elseif schema.additionalProperties == false then
                return nil, path .. ": unexpected property " .. tostring(k)
            elseif type(schema.additionalProperties) == "table" then
                local ok, err = fits(doc, schema.additionalProperties, val, path .. "." .. k)
                if not ok then return nil, err end
            end
        end
        if schema.minProperties and count < schema.minProperties then return nil, path .. ": too few properties" end
    end
    if is_array(v) and schema.items then
        for i, item in ipairs(v) do
            local ok, err = fits(doc, schema.items, item, path .. "[" .. i .. "]")
            if not ok then return nil, err end
        end
    end
    return true
end
openapi.fits = fits

-- Raises unless res (a spec/support/http response) is a documented response of the operation and
-- its JSON body fits the documented schema.
function openapi.check_response(doc, method, pattern, res)
    local path = openapi.path_of(pattern)
    local item = doc.paths[path]
    local op = item and item[method:lower()]
    assert(op, "not in docs/openapi.yaml: " .. method .. " " .. path)
    local r = op.responses[tostring(res.status)]
    assert(r, method .. " " .. path .. ": status " .. res.status .. " is not documented (body "
        .. tostring(res.body) .. ")")
    r = resolve(doc, r)
    if not r.content then
        assert(res.body == nil or res.body == "", method .. " " .. path .. " " .. res.status .. ": unexpected body")
        return true
    end
    local media = r.content["application/json"]
    if not media then return true end -- text bodies: nothing to check
    local body, err = cjson.decode(res.body or "")
    assert(body ~= nil, method .. " " .. path .. ": body is not JSON: " .. tostring(err))
    local ok
    ok, err = fits(doc, media.schema, body, "body")
    assert(ok, method .. " " .. path .. " " .. res.status .. ": " .. tostring(err) .. "\n" .. tostring(res.body))
    return true
end

return openapi
