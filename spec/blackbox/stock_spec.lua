-- Black-box specs of host.stock (the stock gates in shared memory): the real binary with two
-- workers (or one process), a test app, real HTTP. They cover an update through one worker seen by
-- the other on its next request, versions (older ignored), gates surviving a reload (HUP), the
-- /metrics gauges, a full table, `fcfs run` scripts (with the FFI and without it: the Lua C API
-- binding), and the sold-out hot path: a loop of 1e6 host.stock.sold_out(id) that the JIT
-- compiles into one looping trace (no abort, no stitch around a C function), that allocates
-- nothing, and that makes no syscall (strace -c on the worker).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/stock_spec.lua
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local shell = require "spec.support.shell"

local format = string.format

local BASE_APP = server.repo_file("lua/app.lua")

local APP = [==[
local app = require "stockspec_base"
local host = require "host"
local jit = require "jit"
local jutil = require "jit.util"
local vmdef = require "jit.vmdef"
local collectgarbage, format, tonumber, tostring = collectgarbage, string.format, tonumber, tostring

local stock = host.stock
local sold_out = stock.sold_out

local function answer(t)
    t.worker = host.worker_id
    return { json = t }
end

app:get("/version", function()
    return { json = { worker = host.worker_id, generation = host.generation, pid = host.pid } }
end)

app:get("/st/get", function(req)
    local remaining, out, version, paused, age = stock.get(tonumber(req:arg("id")))
    return answer{ remaining = remaining, sold_out = out, version = version, paused = paused, age = age,
        gate = remaining ~= nil }
end)
app:get("/st/update", function(req)
    local ok, err = stock.update(tonumber(req:arg("id")), tonumber(req:arg("r")), tonumber(req:arg("v")),
        req:arg("p") == "1")
    return answer{ ok = ok, err = err }
end)
app:get("/st/sold_out", function(req)
    return answer{ v = stock.sold_out(tonumber(req:arg("id"))) }
end)
app:get("/st/forget", function(req)
    return answer{ ok = stock.forget(tonumber(req:arg("id"))) }
end)
app:get("/st/list", function()
    local used, capacity = stock.usage()
    return answer{ gates = stock.list(), used = used, capacity = capacity }
end)

-- the sold-out crowd's check, n times
local function spin(id, n)
    local hits = 0
    for _ = 1, n do
        if sold_out(id) then
            hits = hits + 1
        end
    end
    return hits
end

-- spin once under jit.attach (traces started, stopped and how they link -- "loop" for a loop
-- compiled whole, "stitch" around a call the JIT cannot compile, such as a Lua C API function --
-- aborted and why), then again measuring the Lua heap
app:get("/st/spin", function(req)
    local id, n = tonumber(req:arg("id")), tonumber(req:arg("n"))
    if not jit.status() then -- the coverage run: JIT off, a line hook (spec/support/coverage.lua)
        return answer{ jit = false }
    end
    local ev, why, links = { start = 0, stop = 0, abort = 0 }, {}, {}
    local function on_trace(what, tr, func, pc, code, extra)
        ev[what] = (ev[what] or 0) + 1
        if what == "stop" then
            links[#links + 1] = jutil.traceinfo(tr).linktype
        elseif what == "abort" then
            why[#why + 1] = format("%s: " .. vmdef.traceerr[code], jutil.funcinfo(func, pc).loc, tostring(extra))
        end
    end
    jit.attach(on_trace, "trace")
    local warm = spin(id, n)
    jit.attach(on_trace)
    local before = collectgarbage("count")
    local hits = spin(id, n)
    local after = collectgarbage("count")
    return answer{ warm = warm, hits = hits, heap_kb = after - before, jit = jit.status(), started = ev.start,
        stopped = ev.stop, aborted = ev.abort, why = why, links = table.concat(links, " ") }
end)

return app
]==]

local function start(conf)
    conf.redis = "127.0.0.1:" .. raw.free_port() -- nothing listens there: no Redis needed
    conf.drain_timeout = 1
    return server.start{ app = APP, lua_files = { ["stockspec_base.lua"] = BASE_APP }, conf = conf }
end

local get = http.get_json

describe("host.stock, two workers", function()
    local s
    setup(function()
        s = start{ workers = 2 }
    end)
    teardown(function()
        s:stop()
        s:assert_no_errors()
    end)

    it("shows an update through worker 0 to worker 1 on its next request", function()
        local conns = s:conn_per_worker(2)
        assert.is_false(get(conns[1], "/st/get?id=42").gate)
        assert.is_true(get(conns[0], "/st/update?id=42&r=5&v=1").ok)
        local g = get(conns[1], "/st/get?id=42")
        assert.equal(1, g.worker)
        assert.same({ 5, false, 1, false }, { g.remaining, g.sold_out, g.version, g.paused })
        assert.is_true(g.age >= 0 and g.age < 5, tostring(g.age))
        assert.is_false(get(conns[1], "/st/sold_out?id=42").v)
        -- sold out through worker 1, seen by worker 0
        assert.is_true(get(conns[1], "/st/update?id=42&r=0&v=2").ok)
        assert.is_true(get(conns[0], "/st/sold_out?id=42").v)
        -- an older version is ignored, whoever sends it
        assert.is_false(get(conns[0], "/st/update?id=42&r=9&v=1").ok)
        g = get(conns[1], "/st/get?id=42")
        assert.same({ 0, true, 2 }, { g.remaining, g.sold_out, g.version })
        -- paused: not sold out (the entry path decides)
        assert.is_true(get(conns[0], "/st/update?id=42&r=0&v=3&p=1").ok)
        assert.is_false(get(conns[1], "/st/sold_out?id=42").v)
        g = get(conns[1], "/st/get?id=42")
        assert.same({ 0, false, true }, { g.remaining, g.sold_out, g.paused })
        assert.is_true(get(conns[1], "/st/update?id=42&r=0&v=4").ok)
        -- forget on one worker: gone on the other
        assert.is_true(get(conns[0], "/st/update?id=7&r=1&v=1").ok)
        assert.is_true(get(conns[1], "/st/forget?id=7").ok)
        assert.is_false(get(conns[0], "/st/get?id=7").gate)
        assert.is_false(get(conns[0], "/st/forget?id=7").ok)
        -- bad ids
        local r = get(conns[0], "/st/update?id=0&r=1&v=1")
        assert.equal("bad id", r.err)
        for id = 0, 1 do conns[id]:close() end
    end)

    it("lists the gates and shows them in /metrics", function()
        assert.is_true(get(s.port, "/st/update?id=9001&r=17&v=40").ok)
        local l = get(s.port, "/st/list")
        local by_id = {}
        for _, g in ipairs(l.gates) do by_id[g.id] = g end
        assert.same({ id = 9001, remaining = 17, version = 40, paused = false }, by_id[9001])
        assert.equal(1024, l.capacity)
        assert.equal(#l.gates, l.used)
        local text = s:metrics()
        assert.equal(17, raw.metric(text, 'fcfs_stock_remaining{product="9001"}'))
        assert.equal(0, raw.metric(text, 'fcfs_stock_paused{product="9001"}'))
        assert.equal(40, raw.metric(text, 'fcfs_stock_version{product="9001"}'))
        assert.equal(l.used, raw.metric(text, "fcfs_stock_gates"))
        assert.equal(1024, raw.metric(text, "fcfs_stock_gates_capacity"))
        assert.matches("# TYPE fcfs_stock_remaining gauge\n", text, 1, true)
    end)

    it("keeps the gates across a reload (HUP)", function()
        assert.is_true(get(s.port, "/st/update?id=31&r=3&v=8").ok)
        s:reload_workers(2)
        local conns = s:conn_per_worker(2)
        for id = 0, 1 do
            local g = get(conns[id], "/st/get?id=31")
            assert.same({ 3, 8 }, { g.remaining, g.version })
            assert.is_true(get(conns[id], "/st/sold_out?id=42").v) -- sold out before the reload
            conns[id]:close()
        end
    end)
end)

describe("host.stock, one process", function()
    local s
    setup(function()
        s = start{ workers = 0, stock_slots = 4 }
    end)
    teardown(function()
        s:stop()
        s:assert_no_errors()
    end)

    it("refuses a gate beyond stock_slots with nil, \"full\", and harms none", function()
        for id = 1, 4 do
            assert.is_true(get(s.port, "/st/update?id=" .. id .. "&r=" .. id .. "&v=1").ok)
        end
        local r = get(s.port, "/st/update?id=5&r=5&v=1")
        assert.same({ nil, "full" }, { r.ok, r.err })
        for id = 1, 4 do
            assert.equal(id, get(s.port, "/st/get?id=" .. id).remaining)
            assert.is_true(get(s.port, "/st/update?id=" .. id .. "&r=0&v=2").ok) -- existing: still updates
        end
        assert.is_true(get(s.port, "/st/forget?id=2").ok)
        assert.is_true(get(s.port, "/st/update?id=5&r=5&v=1").ok)
        local l = get(s.port, "/st/list")
        assert.same({ 4, 4 }, { l.used, l.capacity })
        assert.equal(4, raw.metric(s:metrics(), "fcfs_stock_gates"))
    end)

    it("answers 1e6 sold-out checks from a JIT-compiled loop, allocating nothing", function()
        assert.is_true(get(s.port, "/st/update?id=1&r=0&v=9").ok)
        local r = get(s.port, "/st/spin?id=1&n=1000000")
        if r.jit == false then
            pending("the JIT is off (Lua coverage run)")
            return
        end
        assert.equal(1000000, r.warm)
        assert.equal(1000000, r.hits)
        assert.equal(0, r.aborted, table.concat(r.why, "\n"))
        assert.is_true(r.stopped >= 1, "a trace was compiled")
        assert.matches("loop", r.links) -- the loop is one trace, FFI call included
        assert.not_matches("stitch", r.links)
        assert.equal(0, r.heap_kb)
        -- no gate: false, same path
        assert.equal(0, get(s.port, "/st/spin?id=99&n=1000").hits)
    end)

    it("makes no syscall in the sold-out loop (strace -c on the worker)", function()
        if shell.sh("command -v strace") ~= 0 then
            pending("strace is not installed")
            return
        end
        assert.is_true(get(s.port, "/st/update?id=1&r=0&v=10").ok)
        if get(s.port, "/st/spin?id=1&n=1000").jit == false then -- warm
            pending("the JIT is off (Lua coverage run): a 1e6 loop under a line hook is too slow")
            return
        end
        local out = s.dir .. "/strace.txt"
        local pid = s:pid()
        local rc, started = shell.sh(format("strace -c -f -p %d -o %s >/dev/null 2>&1 & echo $!", pid,
            shell.q(out)))
        assert.equal(0, rc)
        local tracer = tonumber(started:match("%d+"))
        server.wait_until(function()
            local status = shell.read_file("/proc/" .. pid .. "/status") or ""
            return tonumber(status:match("TracerPid:%s*(%d+)")) == tracer
        end, 10, "strace attached")
        local r = get(s.port, "/st/spin?id=1&n=1000000")
        assert.equal(1000000, r.hits)
        shell.sh("kill -INT " .. tracer)
        server.wait_until(function()
            return not shell.alive(tracer) and (shell.read_file(out) or ""):match("total") ~= nil
        end, 10, "strace summary")
        local summary = shell.read_file(out)
        local calls = tonumber(summary:match("\n[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*total"))
        assert(calls, summary)
        -- the request itself: a few reads, writes and polls; 2e6 checks would be millions
        assert.is_true(calls < 200, summary)
    end)
end)

describe("host.stock in `fcfs run`", function()
    local s
    setup(function()
        s = start{ workers = 0 }
        s:write_lua("cli/stock.lua", [[
local host = require "host"
local s = host.stock
assert(s.get(5) == nil)
assert(s.update(5, 0, 3) == true)
assert(s.update(5, 4, 2) == false)
assert(s.update("6", 2, 1) == true)
local remaining, sold_out, version, paused, age = s.get(5)
assert(age >= 0 and age < 5)
local _, err = s.update(0, 1, 1)
print("stock", remaining, sold_out, version, paused, s.sold_out(5), s.sold_out(6), s.forget(6), s.forget(6),
    #s.list(), err, (pcall(s.get, {})), debug.getinfo(s.sold_out).what)
]])
        -- without the ffi module: the Lua C API binding
        s:write_lua("noffi.lua", "package.loaded.ffi = nil\npackage.preload.ffi = function() error('no ffi') end\n")
    end)
    teardown(function()
        s:stop()
    end)

    local WANT = "stock\t0\ttrue\t3\tfalse\ttrue\tfalse\ttrue\tfalse\t1\tbad id\tfalse"

    it("works on the script's own segment", function()
        local code, out = s:cli{ "run", s.lua_dir .. "/cli/stock.lua" }
        assert.equal(0, code, out)
        assert.matches(WANT .. "\tLua\n", out, 1, true) -- the FFI face
    end)

    it("answers the same through the Lua C API when there is no FFI", function()
        local code, out = s:cli({ "run", s.lua_dir .. "/cli/stock.lua" }, { FCFS_LUA_INIT = s.lua_dir .. "/noffi.lua" })
        assert.equal(0, code, out)
        assert.matches(WANT .. "\tC\n", out, 1, true)
    end)
end)
