-- Slow and non-reading clients (issue 11), the short version of bench/slow_clients.sh: the same
-- client (bench/slow_clients.c, built here with cc) against the real binary with 2 workers,
-- header_timeout = 2 s and idle_timeout = 3 s.
--   * 500 connections send headers a byte per second: each is closed by the header timeout with a
--     408 (not earlier, not much later), /healthz answers all along, the workers' RSS stays bounded;
--   * 60 connections pipeline requests and never read: each is served 64 requests per loop turn
--     (/healthz keeps answering promptly), the server stops parsing at its write-queue
--     bound and reading at its backlog bound, and closes them (a request it had begun to parse
--     meets header_timeout: 408, then the close's 2 s linger reads and drops what still comes;
--     else idle_timeout), /healthz answers all along, RSS stays bounded.
-- Latency thresholds are the bench's (this machine may be loaded): here only behaviour is asserted.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/slow_clients_spec.lua
local socket = require "socket"
local server = require "spec.support.server"
local http = require "spec.support.http"
local shell = require "spec.support.shell"

local format = string.format

local HEADER_TIMEOUT, IDLE_TIMEOUT = 2, 3
-- Under ASan (etc/dev test sets ASAN_OPTIONS) or the Lua line hook of the coverage run the host
-- serves several times slower and ASan's quarantine keeps freed memory: the pipelining case then
-- uses fewer clients, gives them more time and bounds neither the wait nor the RSS.
local INSTRUMENTED = server.instrumented

local function rss_kb(pid)
    local f = io.open("/proc/" .. pid .. "/status")
    if not f then return 0 end
    local kb = tonumber(f:read("*a"):match("VmRSS:%s*(%d+)")) or 0
    f:close()
    return kb
end

local function field(line, name)
    return tonumber(line:match(" " .. name .. "=([%d.%-]+)"))
end

describe("slow clients", function()
    local s, client, tmp

    lazy_setup(function()
        local code, out = shell.sh('mktemp -d "${TMPDIR:-/tmp}/fcfs-slow.XXXXXX"')
        assert(code == 0, out)
        tmp = out:match("^%s*(.-)%s*$")
        client = tmp .. "/slow_clients"
        code, out = shell.sh(format("cc -O2 -Wall -Wextra -o %s %s", shell.q(client),
            shell.q(server.root .. "/bench/slow_clients.c")))
        assert(code == 0, out)
        -- max_requests_per_conn high: a pipelining client must meet the write-queue bound, not the
        -- per-connection request limit (which closes it after a linger of its own)
        s = server.start { conf = { workers = 2, header_timeout = HEADER_TIMEOUT, idle_timeout = IDLE_TIMEOUT,
            max_connections = 4000, max_requests_per_conn = 100000000 } }
    end)

    lazy_teardown(function()
        if s then s:stop() end
        if tmp then shell.sh("rm -rf " .. shell.q(tmp)) end
    end)

    -- Runs the client (args after the mode) until it ends (at most `seconds`) while /healthz is
    -- asked every 0.1 s and the workers' RSS sampled; -> the client's RESULT line, the /healthz
    -- answers, the peak RSS growth (kB).
    local function run_client(mode, args, seconds)
        local workers = s:worker_pids()
        local base = {}
        for _, p in ipairs(workers) do base[p] = rss_kb(p) end
        local out_file = format("%s/%s.out", tmp, mode)
        assert(os.execute(format("%s %s 127.0.0.1 %d %s >%s 2>&1 &", shell.q(client), mode, s.port, args,
            shell.q(out_file))) == 0)
        local deadline = socket.gettime() + seconds + 5
        local answers, statuses, growth, worst, line = 0, {}, 0, 0
        repeat
            socket.sleep(0.1)
            local t0 = socket.gettime()
            local res, err = http.request { port = s.port, path = "/healthz", timeout = 5 }
            worst = math.max(worst, socket.gettime() - t0)
            if res and res.status == 200 then
                answers = answers + 1
            else
                statuses[#statuses + 1] = res and res.status or err
            end
            for _, p in ipairs(workers) do
                local g = rss_kb(p) - base[p]
                if g > growth then growth = g end
            end
            line = (shell.read_file(out_file) or ""):match("(RESULT[^\n]*)")
        until line or socket.gettime() > deadline
        assert(line, "no RESULT from the client: " .. tostring(shell.read_file(out_file)))
        assert.same({}, statuses, "/healthz failed while " .. mode .. " clients ran")
        print(format("\n%s; /healthz answered %d times (worst %.3f s); worker RSS grew at most %d kB", line, answers,
            worst, growth))
        return line, answers, growth, worst
    end

    it("closes 500 slowly sent headers at header_timeout with 408 and keeps serving", function()
        local line, answers, growth = run_client("slow", format("500 %d 1000", HEADER_TIMEOUT + 4),
            HEADER_TIMEOUT + 4)
        assert.equal(500, field(line, "connected"), line)
        assert.equal(500, field(line, "closed"), line)
        assert.equal(500, field(line, "answered_408"), line)
        -- closed by the header timeout: not before it, and not long after it (a loaded machine)
        assert.is_true(field(line, "first_close_s") >= HEADER_TIMEOUT - 0.1, line)
        assert.is_true(field(line, "last_close_s") < HEADER_TIMEOUT + 2, line)
        assert.is_true(answers > 5, "healthz answered " .. answers .. " times")
        assert.is_true(growth < 64 * 1024, "worker RSS grew by " .. growth .. " kB")
    end)

    it("pauses and then closes pipelining clients that never read, and keeps serving", function()
        -- they are closed once the host's buffers are full and a timeout passed: how long filling
        -- takes depends on the machine's load, so the client may run up to 40 s
        local n, seconds = 60, 40
        if INSTRUMENTED then n, seconds = 20, 60 end
        local line, answers, growth, worst = run_client("pipeline", format("%d %d /healthz", n, seconds), seconds)
        assert.equal(n, field(line, "connected"), line)
        assert.equal(0, field(line, "errors"), line)
        -- every one closed, also those answered an error (408) that they never read: such a
        -- connection used to wait for its write forever, with no timer (0 of 20 closed under ASan)
        assert.equal(n, field(line, "closed"), line)
        -- served in turns: a pipelining client gets 64 requests per loop turn, so the others are
        -- answered meanwhile (without turns one loop turn served tens of thousands of requests per
        -- pipelining connection and /healthz waited past its 5 s timeout)
        if INSTRUMENTED then return end
        assert.is_true(worst < 2, format("/healthz waited %.3f s", worst))
        assert.is_true(answers > 5, "healthz answered " .. answers .. " times")
        -- at most a write queue (256 KiB) and a backlog (1 MiB) per connection, plus slack
        assert.is_true(growth < n * 1536 + 32 * 1024, "worker RSS grew by " .. growth .. " kB")
    end)

    it("logged no error", function()
        s:assert_no_errors()
    end)
end)
