-- lib/router.lua: maps (method, path) to a route, compiled once per VM generation.
--
-- Patterns, Lapis style:
--   /users            literal segments
--   /users/:id        a named parameter: one non-empty path segment
--   /users/:id[%d]    a parameter whose every character must be in the Lua character class [%d]
--   /files/*          a splat: the rest of the path after the slash (may contain slashes, may be
--                     empty), captured as params.splat; only as the last segment
-- Routes live in a trie of path segments. At each segment the walk tries the literal child first,
-- then parameter children (constrained ones before unconstrained ones, each in registration order),
-- then a splat, backtracking when a deeper level fails: literal > param > splat whatever the
-- registration order. HEAD is answered by the GET route when no HEAD route exists.
--
-- match(method, path) -> route_handler, params, pattern
--                      | nil, router.NOT_FOUND
--                      | nil, router.METHOD_NOT_ALLOWED, allowed (sorted list of method names)
-- r.routes lists every route ({method=, pattern=, handler=, ...}) in registration order (the API
-- description spec compares it with docs/openapi.yaml).
-- The path is raw (not percent-decoded); segments are matched raw, captured values are
-- percent-decoded. params is a fresh table for routes with parameters and a shared read-only empty
-- table otherwise. An all-literal path is one hash lookup (the exact table); other paths are split
-- once into segment offsets and walked without recursion. Matching allocates only the segment
-- strings looked up in literal children and, on success, the params table; the scratch arrays are
-- module-level and safe to share because a match never yields. A path with parameters that matched
-- is remembered (per method, up to CACHE_MAX paths of at most CACHE_PATH bytes, forgotten all at
-- once when full or when a route is added): the next match of it is two hash lookups and the
-- params table, not a walk (a sale's crowd requests one path again and again).
local type, error, pairs, ipairs, pcall, load, assert = type, error, pairs, ipairs, pcall, load, assert
local tonumber, tostring, setmetatable = tonumber, tostring, setmetatable
local byte, char, find, sub, gsub, format = string.byte, string.char, string.find, string.sub, string.gsub,
    string.format
local concat, sort, insert = table.concat, table.sort, table.insert

local _M = {
    NOT_FOUND = "not found",
    METHOD_NOT_ALLOWED = "method not allowed",
}

local SLASH = byte("/")
local ERR_BAD_PATTERN = "bad route pattern"
local ERR_DUPLICATE = "duplicate route"

-- Shared params for routes without parameters; writing to it is a bug.
local NO_PARAMS = setmetatable({}, {
    __newindex = function() error("params of a route without parameters are read-only", 2) end,
})
_M.NO_PARAMS = NO_PARAMS

-- Nodes whose path matched but had no route for the method (filled only on a miss).
local missed, nmissed = {}, 0

local CACHE_MAX, CACHE_PATH = 1000, 256

local function new_node()
    return { lit = nil, params = nil, splat = nil, methods = nil }
end

local router = {}
router.__index = router

function _M.new()
    return setmetatable({ root = new_node(), exact = {}, routes = {}, cache = {}, ncache = 0 }, router)
end

local function bad(pattern, why)
    error(ERR_BAD_PATTERN .. " '" .. tostring(pattern) .. "': " .. why, 3)
end

-- Compiles a character class to a byte -> true table, so that matching needs no Lua patterns
-- (string.find with a pattern is not JIT-compiled).
local function class_set(pattern, class)
    local pat = "^[" .. class .. "]$"
    if not pcall(find, "", pat) then bad(pattern, "bad character class [" .. class .. "]") end
    local set = {}
    for c = 0, 255 do
        if find(char(c), pat) then set[c] = true end
    end
    return set
end

-- Splits a pattern into segment descriptors: {kind = "lit"|"param"|"splat", value/name/class}.
local function parse(pattern)
    if type(pattern) ~= "string" or byte(pattern, 1) ~= SLASH then
        bad(pattern, "must start with /")
    end
    local segs = {}
    if pattern == "/" then return segs end
    local pos, len = 1, #pattern
    while pos <= len do
        local nxt = find(pattern, "/", pos + 1, true) or len + 1
        local seg = sub(pattern, pos + 1, nxt - 1)
        if segs.splat then bad(pattern, "* must be the last segment") end
        if seg == "*" then
            segs[#segs + 1] = { kind = "splat" }
            segs.splat = true
        elseif byte(seg, 1) == byte(":") then
            local name, class = seg:match("^:([%a_][%w_]*)%[(.+)%]$")
            if not name then
                name = seg:match("^:([%a_][%w_]*)$")
                if not name then bad(pattern, "bad parameter '" .. seg .. "'") end
            end
            local set
            if class then
                set = class_set(pattern, class)
            end
            segs[#segs + 1] = { kind = "param", name = name, class = class or "", set = set }
        else
            if find(seg, "[:*]") then bad(pattern, "':' or '*' inside a literal segment") end
            segs[#segs + 1] = { kind = "lit", value = seg }
        end
        pos = nxt
    end
    return segs
end

-- params_maker(names) -> function(match) returning a fresh {[names[i]] = match[i + 1]}: a table
-- constructor with constant keys, which LuaJIT makes from a template (storing keys one by one into
-- an empty table costs some 800 instructions a request).
local function params_maker(names)
    local fields = {}
    for i = 1, #names do fields[i] = format("[%q] = m[%d]", names[i], i + 1) end
    return assert(load("return function(m) return { " .. concat(fields, ", ") .. " } end", "=router.params"))()
end

-- router:add(method, pattern, handler): register; raises on a bad pattern or a duplicate.
function router:add(method, pattern, handler)
    if type(method) ~= "string" or method == "" then error("route method must be a string", 2) end
    if handler == nil then error("route " .. method .. " " .. tostring(pattern) .. " has no handler", 2) end
    self.cache, self.ncache = {}, 0
    local segs = parse(pattern)
    local node, names, caps, all_literal = self.root, {}, {}, true
    for i = 1, #segs do
        local s = segs[i]
        if s.kind == "lit" then
            node.lit = node.lit or {}
            local child = node.lit[s.value]
            if not child then
                child = new_node()
                node.lit[s.value] = child
            end
            node = child
        elseif s.kind == "param" then
            all_literal = false
            names[#names + 1], caps[#caps + 1] = s.name, i
            node.params = node.params or {}
            local child
            for _, p in ipairs(node.params) do
                if p.class == s.class then child = p.node break end
            end
            if not child then
                child = new_node()
                local list = node.params
                local entry = { class = s.class, set = s.set, node = child }
                if s.class ~= "" then
                    -- constrained parameters go before the first unconstrained one
                    local at = #list + 1
                    for j = 1, #list do
                        if list[j].class == "" then at = j break end
                    end
                    insert(list, at, entry)
                else
                    list[#list + 1] = entry
                end
            end
            node = child
        else
            all_literal = false
            names[#names + 1], caps[#caps + 1] = "splat", -i
            node.splat = node.splat or new_node()
            node = node.splat
        end
    end
    node.methods = node.methods or {}
    if node.methods[method] then
        error(ERR_DUPLICATE .. " " .. method .. " " .. pattern .. " (clashes with " ..
            node.methods[method].pattern .. ")", 2)
    end
    -- caps[i] is the segment index of the i-th parameter, negated for the splat (rest of the path)
    local route = { handler = handler, method = method, pattern = pattern, names = names, caps = caps,
        params = #names > 0 and params_maker(names) or nil }
    node.methods[method] = route
    if all_literal then self.exact[pattern] = node end
    self.routes[#self.routes + 1] = route
    return route
end

local function hit(node, method)
    local methods = node.methods
    if not methods then return nil end
    local r = methods[method]
    if r then return r end
    if method == "HEAD" then
        r = methods.GET
        if r then return r end
    end
    nmissed = nmissed + 1
    missed[nmissed] = node
    return nil
end

-- Scratch for one match: segment i of the path spans seg_s[i]..seg_e[i]; the walk keeps a node
-- and a stage per depth (0: literal child next, k: k-th parameter child next, #params+1: splat).
local seg_s, seg_e = {}, {}
local stack_node, stack_stage = {}, {}

-- Depth-first walk over the trie in precedence order, with explicit backtracking (recursion and
-- string.find keep LuaJIT from compiling the hot path, so neither is used here).
local function walk(root, path, nseg, method)
    local d = 1
    stack_node[1], stack_stage[1] = root, 0
    while d > 0 do
        local node = stack_node[d]
        if d > nseg then
            local r = hit(node, method)
            if r then return r end
            d = d - 1
        else
            local stage = stack_stage[d]
            local child
            if stage == 0 then
                stack_stage[d] = 1
                local lit = node.lit
                if lit then child = lit[sub(path, seg_s[d], seg_e[d])] end
            else
                local params = node.params
                local np = params and #params or 0
                if stage <= np then
                    stack_stage[d] = stage + 1
                    local s, e = seg_s[d], seg_e[d]
                    if e >= s then
                        local p = params[stage]
                        local set = p.set
                        child = p.node
                        if set then
                            for i = s, e do
                                if not set[byte(path, i)] then child = nil break end
                            end
                        end
                    end
                elseif stage == np + 1 then
                    stack_stage[d] = stage + 1
                    local splat = node.splat
                    if splat then
                        local r = hit(splat, method)
                        if r then return r end
                    end
                else
                    d = d - 1
                end
            end
            if child then
                d = d + 1
                stack_node[d], stack_stage[d] = child, 0
            end
        end
    end
    return nil
end

local function hex_char(h) return char(tonumber(h, 16)) end

local function unescape(v)
    if find(v, "%", 1, true) then
        v = gsub(v, "%%(%x%x)", hex_char)
    end
    return v
end

local function allowed_methods()
    local set, list = {}, {}
    for i = 1, nmissed do
        for m in pairs(missed[i].methods) do
            if not set[m] then set[m] = true list[#list + 1] = m end
        end
        missed[i] = nil
    end
    nmissed = 0
    if set.GET and not set.HEAD then list[#list + 1] = "HEAD" end
    sort(list)
    return list
end

-- The match of route for path: {route, the value of each parameter}, remembered for method and
-- path; its params are made by route.params from it.
local function found(self, method, route, path, len)
    for i = 1, nmissed do missed[i] = nil end
    nmissed = 0
    local caps = route.caps
    local ncap = #caps
    if ncap == 0 then return route.handler, NO_PARAMS, route.pattern end
    local match = { route }
    for i = 1, ncap do
        local at = caps[i]
        if at > 0 then
            match[i + 1] = unescape(sub(path, seg_s[at], seg_e[at]))
        else
            match[i + 1] = unescape(sub(path, seg_s[-at], len))
        end
    end
    if len <= CACHE_PATH then
        if self.ncache >= CACHE_MAX then self.cache, self.ncache = {}, 0 end
        local by_method = self.cache[method]
        if not by_method then
            by_method = {}
            self.cache[method] = by_method
        end
        by_method[path], self.ncache = match, self.ncache + 1
    end
    return route.handler, route.params(match), route.pattern
end

function router:match(method, path)
    nmissed = 0
    if type(path) ~= "string" or byte(path, 1) ~= SLASH then
        return nil, _M.NOT_FOUND
    end
    -- Fast path: an all-literal route wins at every level, so a hit on the whole path is final.
    local node = self.exact[path]
    if node then
        local r = hit(node, method)
        if r then return r.handler, NO_PARAMS, r.pattern end
        nmissed = 0
    end
    local by_method = self.cache[method]
    local remembered = by_method and by_method[path]
    if remembered then
        local route = remembered[1]
        return route.handler, route.params(remembered), route.pattern
    end
    local len, nseg = #path, 0
    if len > 1 then
        -- one pass over the bytes to find the segments
        local s = 2
        for i = 2, len do
            if byte(path, i) == SLASH then
                nseg = nseg + 1
                seg_s[nseg], seg_e[nseg] = s, i - 1
                s = i + 1
            end
        end
        nseg = nseg + 1
        seg_s[nseg], seg_e[nseg] = s, len
    end
    local route = walk(self.root, path, nseg, method)
    if route then return found(self, method, route, path, len) end
    if nmissed > 0 then
        return nil, _M.METHOD_NOT_ALLOWED, allowed_methods()
    end
    return nil, _M.NOT_FOUND
end

-- router:allow_header(list) -> "GET, HEAD, POST" (the value of an Allow header).
function _M.allow_header(list)
    return concat(list, ", ")
end

return _M
