-- spec/support/server.lua -- start the real fcfs binary for a black-box spec.
--
--   local server = require "spec.support.server"
--   local s = server.start{
--     app = [[ ... source of app.lua ... ]],     -- nil: the repository's lua/app.lua
--     lua_files = { ["lib/extra.lua"] = "..." }, -- more files under the Lua directory
--     base_module = "x_base",                    -- the repository's lua/app.lua as module x_base
--     conf = { workers = 0 },                    -- config keys over the test defaults
--     env = { FCFS_LOG_LEVEL = "info" },         -- environment of the server process
--   }
--   s.port, s.url, s.dir, s:pid(), s:worker_pids(), s:conn_per_worker(n), s:generations(n),
--   s:reload_workers(n) (HUP, then wait until n workers serve a newer generation), s:error_log(),
--   s:spawn() (start the process again, as a supervisor restarting it would),
--   s:write_lua(path, src),
--   s:signal("HUP"), s:cli("-s reload" [, env]) -> code, output, s:stop(), s:assert_no_errors{patterns}
--   s.admin_sock, s:admin{ method=, path=, ... } -> res, err  (HTTP on the admin unix socket, where
--   /_host/* and /metrics live), s:metrics() -> the Prometheus text
--   server.run("-c file -t", env, { cwd =, timeout = }) -> code, output   -- outside any server
--   server.free_port()                                     -- a free port on 127.0.0.1
--
-- Each server gets its own directory from mktemp -d (under $TMPDIR; `etc/dev test` points that at
-- its throw-away directory): lua/ mirrors the repository's lua/ as symlinks (so `require "lib.web"`
-- works; s:write_lua replaces a symlink by a real file, never touching the repository), fcfs.lua
-- is the config, error.log / access.log / stderr.log the logs, fcfs.pid and spawned.pid the pids.
-- The server listens on a free 127.0.0.1 port and, as admin, on dir/admin.sock; Redis and MySQL
-- come from FCFS_TEST_* (set by `etc/dev test`). FCFS_* variables of the caller's environment
-- are not passed on, so a spec sees exactly its own config. The binary is $FCFS_BIN (default
-- build/fcfs). s:stop() removes the directory (keep it with FCFS_TEST_KEEP=1); the logs stay
-- readable through s:error_log().
-- Sanitizer reports of every process started here (server, s:cli, server.run) are written to
-- files (ASAN_OPTIONS/UBSAN_OPTIONS log_path) and checked: s:cli and server.run raise after a
-- command that left one, s:stop() raises when the server left one.
local socket = require "socket"
local http = require "spec.support.http"
local shell = require "spec.support.shell"
local q, sh, read_file, alive = shell.q, shell.sh, shell.read_file, shell.alive

local concat, insert, format = table.concat, table.insert, string.format

local server = {}

local S = {}
S.__index = S

-- helpers ------------------------------------------------------------------------------------------




local function write_file(path, data)
    local tmp = path .. ".tmp"
    local f = assert(io.open(tmp, "wb"))
    assert(f:write(data))
    assert(f:close())
    assert(os.rename(tmp, path))
end

local function dirname(path)
    return path:match("^(.*)/[^/]*$") or "."
end

local function tail(text, n)
    if not text or text == "" then
        return "(empty)"
    end
    local lines = {}
    for line in text:gmatch("[^\n]*") do
        if line ~= "" then
            insert(lines, line)
        end
    end
    return concat(lines, "\n", math.max(1, #lines - n + 1))
end

-- The text of a file of the repository (e.g. "lua/app.lua", which test apps load as a module).
function server.repo_file(relpath)
    return assert(read_file(server.root .. "/" .. relpath))
end

-- Poll fn() every 20 ms until it returns a true value or timeout seconds pass.
function server.wait_until(fn, timeout, what)
    local deadline = socket.gettime() + (timeout or 5)
    repeat
        local v = fn()
        if v then
            return v
        end
        socket.sleep(0.02)
    until socket.gettime() > deadline
    if what then
        error("timed out waiting for " .. what, 2)
    end
    return nil
end

-- A TCP port on 127.0.0.1 that nobody listens on right now.
local function free_port()
    local s = socket.tcp()
    assert(s:bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end
server.free_port = free_port

-- The repository root: two levels above this file.
local function repo_root()
    local src = debug.getinfo(1, "S").source:gsub("^@", "")
    local dir = dirname(dirname(dirname(src)))
    if dir:sub(1, 1) ~= "/" then
        local _, pwd = sh("pwd")
        pwd = pwd:gsub("%s+$", "")
        dir = dir == "." and pwd or (pwd .. "/" .. dir:gsub("^%./", ""))
    end
    return dir
end

server.root = repo_root()
-- true under ASan (etc/dev test sets ASAN_OPTIONS) or the coverage run's Lua line hook, where the
-- host serves several times slower: latency bounds of the shipped build do not apply there
server.instrumented = os.getenv("ASAN_OPTIONS") ~= nil or os.getenv("FCFS_LUA_COVERAGE") ~= nil

local function binary()
    local bin = os.getenv("FCFS_BIN") or "build/fcfs"
    if bin:sub(1, 1) ~= "/" then
        bin = server.root .. "/" .. bin
    end
    return bin
end

-- Serialise a config value as Lua source.
local function lua_value(v, indent)
    local t = type(v)
    if t == "string" then
        return format("%q", v)
    elseif t == "number" or t == "boolean" then
        return tostring(v)
    elseif t == "table" then
        indent = indent or ""
        local keys = {}
        for k in pairs(v) do
            insert(keys, k)
        end
        table.sort(keys, function(a, b)
            return tostring(a) < tostring(b)
        end)
        local parts = {}
        for _, k in ipairs(keys) do
            local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. lua_value(k) .. "]")
            insert(parts, indent .. "  " .. key .. " = " .. lua_value(v[k], indent .. "  ") .. ",")
        end
        return "{\n" .. concat(parts, "\n") .. "\n" .. indent .. "}"
    end
    error("config value of type " .. t)
end

-- Sanitizer reports go to files <dir>/sanitizer.<pid> (log_path), so the report of any process
-- the suite starts is found, whether or not its output is looked at.
local function sanitizer_env(env, dir)
    for _, name in ipairs({ "ASAN_OPTIONS", "UBSAN_OPTIONS" }) do
        if env[name] == nil then
            local cur = os.getenv(name) or ""
            env[name] = (cur ~= "" and cur .. ":" or "") .. "log_path=" .. dir .. "/sanitizer"
        end
    end
    return env
end

-- Under `etc/dev test --coverage` ($FCFS_LUA_COVERAGE), the host runs spec/support/coverage.lua
-- first in every VM.
local function coverage_env(env)
    local cov = os.getenv("FCFS_LUA_COVERAGE")
    if cov and cov ~= "" and env.FCFS_LUA_INIT == nil then
        env.FCFS_LUA_INIT = server.root .. "/spec/support/coverage.lua"
        env.FCFS_LUA_COVERAGE = cov
    end
    return env
end

local function copy(t)
    local c = {}
    for k, v in pairs(t or {}) do
        c[k] = v
    end
    return c
end

-- The sanitizer reports under dir and the sanitizer lines of the given output, as one text (nil
-- when there is none).
local SANITIZER = { "AddressSanitizer", "LeakSanitizer", "runtime error:" }

local function sanitizer_reports(dir, output)
    local found = {}
    local _, files = sh("ls " .. q(dir) .. " 2>/dev/null | grep '^sanitizer\\.'")
    for name in files:gmatch("[^\n]+") do
        insert(found, "-- " .. dir .. "/" .. name .. ":\n" .. tail(read_file(dir .. "/" .. name), 40))
    end
    for _, word in ipairs(SANITIZER) do
        if output and output:find(word, 1, true) then
            insert(found, "-- sanitizer report in the output:\n" .. tail(output, 40))
            break
        end
    end
    return #found > 0 and concat(found, "\n") or nil
end

-- `env -u` for every FCFS_* variable of our environment that the spec did not ask for.
local function env_prefix(env)
    local _, out = sh("env")
    local args = { "env" }
    for line in out:gmatch("[^\n]+") do
        local name = line:match("^(FCFS_[%w_]*)=")
        if name and not (env and env[name] ~= nil) then
            insert(args, "-u " .. name)
        end
    end
    for k, v in pairs(env or {}) do
        insert(args, q(k .. "=" .. tostring(v)))
    end
    return concat(args, " ")
end

-- the server object --------------------------------------------------------------------------------

-- Start fcfs and wait until GET /healthz answers 200.
function server.start(opts)
    opts = opts or {}
    local bin = binary()
    local rc = sh("test -x " .. q(bin))
    if rc ~= 0 then
        error("no fcfs binary at " .. bin .. " (build it: etc/dev setup, or set FCFS_BIN)", 2)
    end

    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-spec.XXXXXX\"")
    dir = dir:gsub("%s+$", "")
    assert(dir:sub(1, 1) == "/", "mktemp failed: " .. dir)

    local s = setmetatable({ dir = dir, bin = bin, env = opts.env or {} }, S)
    s.lua_dir = dir .. "/lua"
    s.conf_path = dir .. "/fcfs.lua"

    -- lua/: the repository's Lua tree as symlinks, then the spec's own files.
    local src = server.root .. "/lua"
    rc = sh(format("mkdir -p %s && if [ -d %s ]; then cp -rs %s/. %s/; fi",
        q(s.lua_dir), q(src), q(src), q(s.lua_dir)))
    assert(rc == 0, "could not mirror " .. src)
    if opts.app then
        s:write_lua("app.lua", opts.app)
    end
    if opts.base_module then
        s:write_lua(opts.base_module .. ".lua", server.repo_file("lua/app.lua"))
    end
    for path, code in pairs(opts.lua_files or {}) do
        s:write_lua(path, code)
    end

    s.port = free_port()
    s.url = "http://127.0.0.1:" .. s.port
    local conf = {
        listen = "127.0.0.1:" .. s.port,
        admin_listen = "unix:" .. dir .. "/admin.sock",
        workers = 0,
        run_dir = dir,
        pid_file = dir .. "/fcfs.pid",
        error_log = dir .. "/error.log",
        access_log = dir .. "/access.log",
        lua_dir = s.lua_dir,
        migrations_dir = server.root .. "/migrations",
        redis = os.getenv("FCFS_TEST_REDIS"),
        mysql_socket = os.getenv("FCFS_TEST_MYSQL_SOCKET"),
        mysql_host = os.getenv("FCFS_TEST_MYSQL_HOST"),
        mysql_port = tonumber(os.getenv("FCFS_TEST_MYSQL_PORT") or ""),
        mysql_user = os.getenv("FCFS_TEST_MYSQL_USER"),
        mysql_password = os.getenv("FCFS_TEST_MYSQL_PASSWORD"),
        mysql_database = os.getenv("FCFS_TEST_MYSQL_DATABASE"),
    }
    for k, v in pairs(opts.conf or {}) do
        if v == false and k == "workers" then
            conf[k] = nil -- one worker per core
        else
            conf[k] = v
        end
    end
    s.conf = conf
    s.admin_sock = conf.admin_listen:match("^unix:(.*)$")
    write_file(s.conf_path, "-- written by spec/support/server.lua\nreturn " .. lua_value(conf) .. "\n")

    s.env_prefix = env_prefix(sanitizer_env(coverage_env(copy(s.env)), dir))
    s:spawn()

    local deadline = socket.gettime() + (opts.start_timeout or 10)
    while true do
        local res = http.request{ port = s.port, path = "/healthz", timeout = 1 }
        if res and res.status == 200 then
            break
        end
        local gone = not alive(s.spawned_pid) and not alive(s:pid())
        if gone or socket.gettime() > deadline then
            local why = gone and "exited" or "did not answer GET /healthz within "
                .. (opts.start_timeout or 10) .. " s"
            pcall(s.stop, s)
            error(format("fcfs %s (%s -c %s)\n-- error.log:\n%s\n-- stderr:\n%s%s", why, bin, s.conf_path,
                tail(s:error_log(), 30), tail(s:stderr(), 30),
                s.final_sanitizer and ("\n" .. s.final_sanitizer) or ""), 2)
        end
        socket.sleep(0.05)
    end
    return s
end

-- Start the fcfs process of this server (again, as a supervisor would: same command, directory and
-- config); does not wait for it.
function S:spawn()
    -- a simple command after `&`, so $! is the pid of fcfs itself (env execs it)
    local _, out = sh(format("cd %s || exit 1; %s %s -c %s </dev/null >>%s 2>&1 & echo $! >%s; cat %s",
        q(self.dir), self.env_prefix, q(self.bin), q(self.conf_path), q(self.dir .. "/stderr.log"),
        q(self.dir .. "/spawned.pid"), q(self.dir .. "/spawned.pid")))
    self.spawned_pid = tonumber(out:match("%d+"))
end

-- The master pid (from the pid file), or the spawned process while there is no pid file.
function S:pid()
    local pid = tonumber((read_file(self.dir .. "/fcfs.pid") or ""):match("%d+"))
    if pid and alive(pid) then
        return pid
    end
    if alive(self.spawned_pid) then
        return self.spawned_pid
    end
    return pid
end

-- Live child processes of the master.
function S:worker_pids()
    local pid = self:pid()
    local pids = {}
    if not pid then
        return pids
    end
    local _, out = sh("pgrep -P " .. pid)
    for p in out:gmatch("%d+") do
        p = tonumber(p)
        if alive(p) then
            insert(pids, p)
        end
    end
    table.sort(pids)
    return pids
end

-- One request on the admin listener (http.request options without port).
function S:admin(opts)
    local o = { unix = self.admin_sock }
    for k, v in pairs(opts) do
        o[k] = v
    end
    return http.request(o)
end

-- GET /metrics on the admin listener; the Prometheus text.
function S:metrics()
    local res = assert(self:admin{ path = "/metrics" })
    assert(res.status == 200, "GET /metrics answered " .. res.status)
    return res.body
end

-- One keep-alive connection per worker, keyed by worker id (GET /version of the spec's app, which
-- answers {worker = host.worker_id, ...}): connections are accepted by whichever worker is quicker,
-- so open them until each worker holds one.
function S:conn_per_worker(count)
    local conns, seen = {}, 0
    local deadline = socket.gettime() + 10
    while seen < count and socket.gettime() < deadline do
        local c = assert(http.connect(self.port))
        local res = assert(c:request{ path = "/version" })
        assert(res.status == 200, "GET /version: " .. tostring(res.status))
        local id = http.json(res).worker
        if conns[id] then
            c:close()
        else
            conns[id] = c
            seen = seen + 1
        end
    end
    assert(seen == count, "could not reach every worker")
    return conns
end

-- The VM generation each of count workers serves (GET /version of the spec's app), by worker id.
function S:generations(count)
    local conns = self:conn_per_worker(count)
    local g = {}
    for id, c in pairs(conns) do
        g[id] = http.get_json(c, "/version").generation
        c:close()
    end
    return g
end

-- HUP the master, then wait until each of count workers serves a newer generation.
function S:reload_workers(count)
    local before = self:generations(count)
    assert(self:signal("HUP"))
    server.wait_until(function()
        for id, gen in pairs(self:generations(count)) do
            if gen <= before[id] then
                return false
            end
        end
        return true
    end, 10, "every worker on a new generation")
end

function S:error_log()
    return self.final_error_log or read_file(self.dir .. "/error.log") or ""
end

function S:stderr()
    return self.final_stderr or read_file(self.dir .. "/stderr.log") or ""
end

function S:access_log()
    return self.final_access_log or read_file(self.dir .. "/access.log") or ""
end

-- Write (or replace) a file under the server's Lua directory; a symlink into the repository is
-- replaced, never written through.
function S:write_lua(relpath, src)
    assert(not relpath:find("..", 1, true), "relative path inside the Lua directory expected")
    local path = self.lua_dir .. "/" .. relpath
    assert(sh("mkdir -p " .. q(dirname(path))) == 0)
    os.remove(path)
    write_file(path, src)
end

-- Send a signal ("HUP", "QUIT", "TERM", ...) to the master; true if delivered.
function S:signal(sig, pid)
    pid = pid or self:pid()
    if not pid then
        return false
    end
    return sh(format("kill -s %s %d", sig, pid)) == 0
end

local function words(args)
    if type(args) == "table" then
        local w = {}
        for i, a in ipairs(args) do
            w[i] = q(a)
        end
        return concat(w, " ")
    end
    return args or ""
end

-- Run `$FCFS_BIN -c <conf> <args>` (args: a string or a list of words) with the server's
-- environment plus env (e.g. { FCFS_LUA_DIR = ... }); returns code, output. Raises when the
-- command (or the server meanwhile) left a sanitizer report.
function S:cli(args, env)
    local extra = {}
    for k, v in pairs(env or {}) do
        insert(extra, q(k .. "=" .. tostring(v)))
    end
    local code, out = sh(format("cd %s && %s %s %s -c %s %s </dev/null", q(self.dir), self.env_prefix or "env",
        concat(extra, " "), q(self.bin), q(self.conf_path), words(args)))
    local report = sanitizer_reports(self.dir, out)
    if report then
        error("sanitizer report after fcfs " .. words(args) .. ":\n" .. report, 2)
    end
    return code, out
end

-- Run `$FCFS_BIN <args>` outside any server (e.g. `-c file -t`), env a table of variables (the
-- caller's FCFS_* are not passed on); opts.cwd its directory, opts.timeout seconds before it is
-- killed (default 60). Returns code, output; raises on a sanitizer report.
function server.run(args, env, opts)
    opts = opts or {}
    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-run.XXXXXX\"")
    dir = dir:gsub("%s+$", "")
    local code, out = sh(format("cd %s && %s timeout %d %s %s </dev/null", q(opts.cwd or dir),
        env_prefix(sanitizer_env(coverage_env(copy(env)), dir)), opts.timeout or 60, q(binary()), words(args)))
    local report = sanitizer_reports(dir, out)
    sh("rm -rf " .. q(dir))
    if report then
        error("sanitizer report after fcfs " .. words(args) .. ":\n" .. report, 2)
    end
    return code, out
end

-- TERM the master, wait up to 5 s, then KILL it and any worker left. Keeps the logs in memory and
-- removes the directory (unless FCFS_TEST_KEEP=1). Safe to call twice.
function S:stop()
    if self.stopped then
        return
    end
    self.stopped = true
    local pid = self:pid()
    local workers = self:worker_pids()
    if pid and alive(pid) then
        self:signal("TERM", pid)
        server.wait_until(function()
            return not alive(pid)
        end, 5)
    end
    for _, p in ipairs({ pid, self.spawned_pid, unpack(workers) }) do
        if alive(p) then
            sh("kill -KILL " .. p)
            self.killed = true
        end
    end
    server.wait_until(function()
        for _, p in ipairs(workers) do
            if alive(p) then
                return false
            end
        end
        return true
    end, 5)
    self.final_error_log = self:error_log()
    self.final_stderr = self:stderr()
    self.final_access_log = self:access_log()
    self.final_sanitizer = sanitizer_reports(self.dir, self.final_stderr)
    if os.getenv("FCFS_TEST_KEEP") ~= "1" then
        sh("rm -rf " .. q(self.dir))
    end
    if self.final_sanitizer then
        error("sanitizer report of fcfs:\n" .. self.final_sanitizer, 2)
    end
end

local BAD_LEVEL = { "%[error%]", "%[crit%]", "%[alert%]", "%[emerg%]" }

-- Fail when the error log has an [error] (or worse) line that matches none of the allowed Lua
-- patterns, or the process output shows a sanitizer report. Call it after s:stop() to also cover
-- the shutdown.
function S:assert_no_errors(allowed)
    allowed = allowed or {}
    local bad = {}
    for line in self:error_log():gmatch("[^\n]+") do
        for _, level in ipairs(BAD_LEVEL) do
            if line:find(level) then
                local ok = false
                for _, pat in ipairs(allowed) do
                    if line:find(pat) then
                        ok = true
                        break
                    end
                end
                if not ok then
                    insert(bad, line)
                end
                break
            end
        end
    end
    local report = self.final_sanitizer or (not self.stopped and sanitizer_reports(self.dir, self:stderr()))
    if report then
        insert(bad, "sanitizer report:\n" .. report)
    end
    if #bad > 0 then
        error("unexpected errors in the fcfs log:\n" .. concat(bad, "\n"), 2)
    end
    return true
end

return server
