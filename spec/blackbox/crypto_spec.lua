-- Black-box specs of host.crypto: the real binary with keys from the environment (FCFS_SECRET_*,
-- fresh random ones per spec) or from a secrets file. Password hashing runs on the thread pool while
-- /healthz keeps answering; a request cancelled mid-hash leaves nothing behind (the ASan build
-- reports leaks and use-after-free in stderr, which assert_no_errors reads); sealing round-trips,
-- detects forgeries and rotates keys; the shipped DEMO keys are refused with dev = false; keys never
-- show in host.config, /metrics or the logs.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/crypto_spec.lua
local socket = require "socket"
local cjson = require "cjson"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local shell = require "spec.support.shell"
local q, sh = shell.q, shell.sh

local format, concat, insert = string.format, table.concat, table.insert

local BASE_APP = server.repo_file("lua/app.lua")

local APP = [==[
local app = require "cryptospec_base"
local host = require "host"
local crypto = host.crypto
local b64e, b64d = crypto.b64url_encode, crypto.b64url_decode

app:post("/hash", function(req)
    local h, err = crypto.password_hash(req:json().pw)
    return { json = { hash = h, err = err } }
end)

app:post("/verify", function(req)
    local b = req:json()
    return { json = { ok = crypto.password_verify(b.hash, b.pw) } }
end)

app:post("/rehash", function(req)
    return { json = { needs = crypto.password_needs_rehash(req:json().hash) } }
end)

-- binary values cross JSON as base64url
app:post("/seal", function(req)
    local b = req:json()
    local sealed = crypto.seal(b.pt, b.ad)
    return { json = { sealed = b64e(sealed), key_id = sealed:byte(1), len = #sealed } }
end)

app:post("/open", function(req)
    local b = req:json()
    local bytes = assert(b64d(b.sealed))
    if b.flip then -- flip one bit of byte b.flip (1-based)
        local i = b.flip
        bytes = bytes:sub(1, i - 1) .. string.char(bit.bxor(bytes:byte(i), 1)) .. bytes:sub(i + 1)
    end
    if b.cut then bytes = bytes:sub(1, b.cut) end
    local pt, err = crypto.open(bytes, b.ad)
    return { json = { pt = pt, err = err } }
end)

local function both(a, b) return tostring(a) .. " " .. tostring(b) end

app:post("/keyed", function(req)
    local s = req:json().s
    local tag = crypto.hmac(s)
    return { json = {
        blind = crypto.blind(s), blind_again = crypto.blind(s), blind_other = crypto.blind(s .. "x"),
        hmac = tag, hmac_ok = crypto.hmac_verify(s, tag), hmac_other = crypto.hmac_verify(s .. "x", tag),
        hmac_bad = crypto.hmac_verify(s, "not base64 !"), hmac_short = crypto.hmac_verify(s, tag:sub(1, 20)),
        -- the signed form of an access token: b64url(msg) .. "." .. hmac of that
        open = crypto.hmac_open(b64e(s) .. "." .. crypto.hmac(b64e(s))),
        open_other = both(crypto.hmac_open(b64e(s .. "x") .. "." .. crypto.hmac(b64e(s)))),
        open_long = both(crypto.hmac_open(b64e(s) .. "." .. crypto.hmac(b64e(s)) .. "A")),
        open_nodot = both(crypto.hmac_open(b64e(s))),
        open_notb64 = both(crypto.hmac_open("a+b/." .. crypto.hmac("a+b/"))),
    } }
end)

app:get("/keyless", function()
    local r = crypto.random(16)
    local t1, t2 = crypto.token(), crypto.token(9)
    local bad, bad_err = b64d("a+b/")
    return { json = {
        random_len = #r, random_differs = r ~= crypto.random(16),
        token_len = #t1, token9_len = #t2, token_urlsafe = t1:find("^[%w_-]+$") ~= nil,
        equal_same = crypto.equal("abc", "abc"), equal_diff = crypto.equal("abc", "abd"),
        equal_len = crypto.equal("abc", "abcd"), equal_empty = crypto.equal("", ""),
        sha256_abc = crypto.sha256("abc"),
        b64 = b64e("\255\254\253 한"), b64_back = b64d(b64e("\255\254\253 한")) == "\255\254\253 한",
        b64_empty = b64e(""), b64_bad = bad == nil and bad_err or "accepted",
        b64_pad = b64d("YQ==") == nil, b64_noncanon = b64d("YR") == nil, b64_ok = b64d("YQ"),
    } }
end)

app:get("/config", function()
    local seen = {}
    for _, k in ipairs{ "secrets_file", "argon2_ops", "argon2_mem_kib", "seal_keys", "blind_key",
                        "token_key", "FCFS_SECRET_SEAL_KEYS" } do
        seen[k] = host.config[k] == nil and "nil" or tostring(host.config[k])
    end
    return { json = seen }
end)

app:get("/nokey", function(req)
    local fn = req:arg("fn")
    local ok, err = pcall(crypto[fn], "x")
    return { json = { ok = ok, err = tostring(err) } }
end)

return app
]==]

local function random_key()
    local rc, out = sh("head -c 32 /dev/urandom | base64 -w0")
    assert(rc == 0 and #out == 44, "base64 key: " .. tostring(out))
    return out
end

local function start(conf, env)
    return server.start{
        app = APP,
        lua_files = { ["cryptospec_base.lua"] = BASE_APP },
        conf = conf or {},
        env = env or {},
    }
end

local function post(s, path, body, timeout)
    local res = assert(http.request{ port = s.port, method = "POST", path = path, timeout = timeout or 10,
        headers = { ["content-type"] = "application/json" }, body = cjson.encode(body) })
    return res, http.json(res)
end

local function get(s, path)
    local res = assert(http.request{ port = s.port, path = path, timeout = 10 })
    return res, http.json(res)
end

local function keys_env(seal, blind, token)
    return { FCFS_SECRET_SEAL_KEYS = seal, FCFS_SECRET_BLIND_KEY = blind, FCFS_SECRET_TOKEN_KEY = token }
end

-- The keys' base64 text must never appear in /metrics, the logs or the process output.
local function assert_not_leaked(s, keys)
    local metrics_text = s:metrics()
    assert.matches("fcfs_", metrics_text)
    for _, k in ipairs(keys) do
        for _, where in ipairs{ { "metrics", metrics_text }, { "error log", s:error_log() },
                                { "access log", s:access_log() }, { "stderr", s:stderr() } } do
            assert.is_nil(where[2]:find(k, 1, true), "key text in the " .. where[1])
        end
    end
end

describe("host.crypto passwords", function()
    local s
    local K = { seal = "1:" .. random_key(), blind = random_key(), token = random_key() }
    lazy_setup(function()
        s = start({ workers = 0 }, keys_env(K.seal, K.blind, K.token))
    end)
    lazy_teardown(function()
        if s then s:stop() end
    end)

    it("hashes 50 passwords at once off the loop: /healthz p99 under 20 ms meanwhile", function()
        local body = cjson.encode{ pw = "비밀번호 correct horse" }
        local req = format("POST /hash HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s", #body, body)
        local pending, parts, results = {}, {}, {}
        for i = 1, 50 do
            local c = socket.tcp()
            c:settimeout(5)
            assert(c:connect("127.0.0.1", s.port))
            assert(c:send(req))
            c:settimeout(0)
            pending[i], parts[c] = c, {}
        end
        local probe = assert(http.connect(s.port))
        local lat = {}
        local deadline = socket.gettime() + 60
        while #pending > 0 and socket.gettime() < deadline do
            local t0 = socket.gettime()
            local res = assert(probe:request{ path = "/healthz" })
            insert(lat, socket.gettime() - t0)
            assert.equal(200, res.status)
            local readable = socket.select(pending, nil, 0.005)
            for _, c in ipairs(readable or {}) do
                local data, err, partial = c:receive(65536)
                insert(parts[c], data or partial or "")
                if err == "closed" then
                    insert(results, concat(parts[c]))
                    c:close()
                    for k = #pending, 1, -1 do
                        if pending[k] == c then table.remove(pending, k) end
                    end
                end
            end
        end
        probe:close()
        assert.equal(50, #results, "all 50 hashes answered")
        local seen = {}
        for _, bytes in ipairs(results) do
            local status, _, rbody = raw.parse(bytes)
            assert.equal(200, status)
            local h = cjson.decode(rbody).hash
            assert.matches("^%$argon2id%$v=19%$m=19456,t=2,p=1%$", h)
            assert.is_nil(seen[h], "salted: every hash differs")
            seen[h] = true
        end
        table.sort(lat)
        local p99 = lat[math.ceil(#lat * 0.99)]
        print(format("# /healthz during 50 hashes: %d probes, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
            #lat, lat[math.ceil(#lat * 0.5)] * 1000, p99 * 1000, lat[#lat] * 1000))
        assert.is_true(#lat >= 20, "only " .. #lat .. " /healthz probes while the hashes ran")
        assert.is_true(p99 < 0.020, format("/healthz p99 %.1f ms over %d probes (max %.1f ms)",
            p99 * 1000, #lat, lat[#lat] * 1000))
    end)

    it("verifies the right password and refuses a wrong one; knows when to rehash", function()
        local _, h = post(s, "/hash", { pw = "비밀 pass" })
        assert.is_string(h.hash)
        assert.is_true(select(2, post(s, "/verify", { hash = h.hash, pw = "비밀 pass" })).ok)
        assert.is_false(select(2, post(s, "/verify", { hash = h.hash, pw = "비밀 pasS" })).ok)
        assert.is_false(select(2, post(s, "/verify", { hash = h.hash, pw = "" })).ok)
        assert.is_false(select(2, post(s, "/verify", { hash = "garbage", pw = "x" })).ok)
        assert.is_false(select(2, post(s, "/verify", { hash = h.hash, pw = ("x"):rep(5000) })).ok)
        assert.is_false(select(2, post(s, "/rehash", { hash = h.hash })).needs)
        local weaker = h.hash:gsub("t=2", "t=1")
        assert.is_true(select(2, post(s, "/rehash", { hash = weaker })).needs)
        assert.is_true(select(2, post(s, "/rehash", { hash = "$argon2i$v=19$m=19456,t=2,p=1$x$y" })).needs)
        assert.is_true(select(2, post(s, "/rehash", { hash = "nope" })).needs)
        local _, long = post(s, "/hash", { pw = ("x"):rep(5000) })
        assert.equal("too long", long.err)
        assert_not_leaked(s, { K.blind, K.token, K.seal:sub(3) })
        s:stop()
        s:assert_no_errors()
    end)
end)

describe("host.crypto cancelled hash", function()
    it("a request that times out mid-hash answers 504 and leaks nothing; stopping mid-hash is clean",
        function()
        -- argon2 at 8 passes over 64 MiB takes far longer than the 50 ms deadline
        local s = start({ workers = 0, request_timeout = 0.05, argon2_ops = 8, argon2_mem_kib = 65536 })
        finally(function() s:stop() end)
        local t0 = socket.gettime()
        local res = post(s, "/hash", { pw = "slow" })
        assert.equal(504, res.status)
        assert.is_true(socket.gettime() - t0 < 1, "the deadline did not wait for the hash")
        -- the loop keeps serving while the orphaned hash runs, then finishes it
        assert.equal(200, get(s, "/healthz").status)
        socket.sleep(1.5)
        assert.equal(504, post(s, "/hash", { pw = "slow again" }).status)
        -- TERM while that second hash still runs: the worker waits for the pool, frees, exits
        s:stop()
        assert.is_falsy(s.killed, "fcfs had to be killed")
        s:assert_no_errors{ "request deadline of 0%.05s passed" }
    end)
end)

describe("host.crypto sealing", function()
    local K1, K2 = random_key(), random_key()
    local KB, KT = random_key(), random_key()

    it("round-trips Korean text, detects every forgery, blinds and signs", function()
        local s = start({}, keys_env("1:" .. K1, KB, KT))
        finally(function() s:stop() end)
        local pt = "주문번호 42: 서울특별시 강남구 테헤란로 1 ✓"
        local _, sealed = post(s, "/seal", { pt = pt, ad = "user:7" })
        assert.equal(1, sealed.key_id)
        assert.equal(#pt + 1 + 24 + 16, sealed.len)
        local _, again = post(s, "/seal", { pt = pt, ad = "user:7" })
        assert.are_not.equal(sealed.sealed, again.sealed) -- a fresh nonce each time
        local _, opened = post(s, "/open", { sealed = sealed.sealed, ad = "user:7" })
        assert.equal(pt, opened.pt)
        for _, i in ipairs{ 2, 20, 26, 30, sealed.len } do -- nonce, ciphertext, tag
            local _, r = post(s, "/open", { sealed = sealed.sealed, ad = "user:7", flip = i })
            assert.same({ err = "forged" }, r, "byte " .. i)
        end
        local function open(extra)
            extra.sealed = sealed.sealed
            return select(2, post(s, "/open", extra))
        end
        assert.same({ err = "forged" }, open{ ad = "user:8" })
        assert.same({ err = "forged" }, open{})
        assert.same({ err = "forged" }, open{ ad = "user:7", cut = 40 })
        assert.same({ err = "unknown key" }, open{ ad = "user:7", flip = 1 })
        local _, empty = post(s, "/seal", { pt = "" })
        assert.equal("", select(2, post(s, "/open", { sealed = empty.sealed })).pt)

        local _, k = post(s, "/keyed", { s = "kim@example.com" })
        assert.matches("^%x+$", k.blind)
        assert.equal(64, #k.blind)
        assert.equal(k.blind, k.blind_again)
        assert.are_not.equal(k.blind, k.blind_other)
        assert.equal(43, #k.hmac)
        assert.is_true(k.hmac_ok)
        assert.is_false(k.hmac_other)
        assert.is_false(k.hmac_bad)
        assert.is_false(k.hmac_short)
        assert.equal("kim@example.com", k.open)
        assert.equal("nil forged", k.open_other)
        assert.equal("nil forged", k.open_long)
        assert.equal("nil malformed", k.open_nodot)
        assert.equal("nil malformed", k.open_notb64)

        local _, kl = get(s, "/keyless")
        assert.same({
            random_len = 16, random_differs = true, token_len = 43, token9_len = 12, token_urlsafe = true,
            equal_same = true, equal_diff = false, equal_len = false, equal_empty = true,
            sha256_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            b64 = "__79IO2VnA", b64_back = true, b64_empty = "", b64_bad = "invalid",
            b64_pad = true, b64_noncanon = true, b64_ok = "a",
        }, kl)
        assert_not_leaked(s, { K1, KB, KT })
        s:stop()
        s:assert_no_errors()
    end)

    it("rotates: data sealed under key 1 opens after key 2 is added, new data uses key 2", function()
        local s1 = start({}, keys_env("1:" .. K1))
        local _, old = post(s1, "/seal", { pt = "옛 데이터" })
        s1:stop()
        assert.equal(1, old.key_id)

        local s2 = start({}, keys_env("1:" .. K1 .. ", 2:" .. K2))
        finally(function() s2:stop() end)
        assert.equal("옛 데이터", select(2, post(s2, "/open", { sealed = old.sealed })).pt)
        local _, new = post(s2, "/seal", { pt = "새 데이터" })
        assert.equal(2, new.key_id)
        s2:stop()

        local s3 = start({}, keys_env("2:" .. K2)) -- key 1 retired
        finally(function() s3:stop() end)
        assert.same({ err = "unknown key" }, select(2, post(s3, "/open", { sealed = old.sealed })))
        assert.equal("새 데이터", select(2, post(s3, "/open", { sealed = new.sealed })).pt)
        s3:stop()
        s3:assert_no_errors()
    end)

    it("reads keys from secrets_file, the environment winning; none in host.config", function()
        local file = os.tmpname()
        finally(function() os.remove(file) end)
        local f = assert(io.open(file, "w"))
        f:write("# test keys\n\nFCFS_SECRET_SEAL_KEYS = 3:", K1, "\nFCFS_SECRET_BLIND_KEY=", KB, "\n")
        f:close()
        local s = start({ secrets_file = file }, { FCFS_SECRET_BLIND_KEY = KT })
        finally(function() s:stop() end)
        local _, sealed = post(s, "/seal", { pt = "x" })
        assert.equal(3, sealed.key_id)
        local _, cfg = get(s, "/config")
        assert.same({ secrets_file = file, argon2_ops = "2", argon2_mem_kib = "19456", seal_keys = "nil",
            blind_key = "nil", token_key = "nil", FCFS_SECRET_SEAL_KEYS = "nil" }, cfg)
        -- no token key: hmac is a configuration error naming the secret
        local _, nk = get(s, "/nokey?fn=hmac")
        assert.is_false(nk.ok)
        assert.matches("FCFS_SECRET_TOKEN_KEY", nk.err)
        assert.matches("secrets: 1 seal key%(s%), blind key set, token key not set", s:error_log())
        assert_not_leaked(s, { K1, KB, KT })
        s:stop()
        s:assert_no_errors{ "FCFS_SECRET_TOKEN_KEY" }
    end)

    it("without keys: seal and blind raise naming their secret, open says unknown key", function()
        local s = start()
        finally(function() s:stop() end)
        for fn, name in pairs{ seal = "FCFS_SECRET_SEAL_KEYS", blind = "FCFS_SECRET_BLIND_KEY" } do
            local _, r = get(s, "/nokey?fn=" .. fn)
            assert.is_false(r.ok)
            assert.matches(name, r.err)
        end
        -- 60 bytes claiming key id 1
        local _, r = post(s, "/open", { sealed = "AQ" .. ("A"):rep(78) })
        assert.same({ err = "unknown key" }, r)
        local _, h = post(s, "/hash", { pw = "no keys needed" })
        assert.is_string(h.hash)
    end)
end)

describe("host.crypto secrets at start", function()
    local dir
    before_each(function()
        local _, out = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-crypto.XXXXXX\"")
        dir = out:gsub("%s+$", "")
    end)
    after_each(function()
        sh("rm -rf " .. q(dir))
    end)

    -- Run fcfs (start, or -t) on a minimal config; returns exit code and output.
    local function run(conf_text, args, env)
        local conf = dir .. "/fcfs.lua"
        local f = assert(io.open(conf, "w"))
        f:write(conf_text)
        f:close()
        -- the caller's FCFS_* (secrets included) are not passed on
        return server.run(format("-c %s %s", q(conf), args or ""), env, { cwd = dir, timeout = 20 })
    end

    local function conf(dev)
        return format([[return {
  listen = "127.0.0.1:%d", workers = 0, run_dir = %q, lua_dir = %q, dev = %s,
  redis = "127.0.0.1:%d", secrets_file = %q,
}]], raw.free_port(), dir, server.root .. "/lua", tostring(dev), raw.free_port(),
            server.root .. "/etc/secrets.dev")
    end

    it("refuses the shipped DEMO keys with dev = false, naming the key, at start and with -t", function()
        local rc, out = run(conf(false))
        assert.equal(1, rc)
        assert.matches("FCFS_SECRET_SEAL_KEYS key 1 is a shipped DEMO key", out)
        rc, out = run(conf(false), "-t")
        assert.equal(1, rc)
        assert.matches("FCFS_SECRET_SEAL_KEYS key 1 is a shipped DEMO key", out)
        -- the environment may replace the demo seal keys; the next demo key is then named
        rc, out = run(conf(false), "-t", { FCFS_SECRET_SEAL_KEYS = "1:" .. random_key() })
        assert.equal(1, rc)
        assert.matches("FCFS_SECRET_BLIND_KEY is a shipped DEMO key", out)
        rc, out = run(conf(false), "-t", { FCFS_SECRET_SEAL_KEYS = "1:" .. random_key(),
            FCFS_SECRET_BLIND_KEY = random_key(), FCFS_SECRET_TOKEN_KEY = random_key() })
        assert.equal(0, rc, out)
        -- dev = true accepts them
        rc, out = run(conf(true), "-t")
        assert.equal(0, rc, out)
    end)

    it("refuses malformed secrets without echoing them", function()
        local cases = {
            { { FCFS_SECRET_BLIND_KEY = "c2VjcmV0LXZhbHVlLXRvby1zaG9ydA==" }, "FCFS_SECRET_BLIND_KEY is not 32 bytes" },
            { { FCFS_SECRET_SEAL_KEYS = "0:c2VjcmV0LXZhbHVlLXRvby1zaG9ydA==" }, "ids 1 to 255" },
            { { FCFS_SECRET_SEAL_KEYS = "1:" .. random_key() .. ",1:" .. random_key() }, "names key 1 twice" },
        }
        for _, case in ipairs(cases) do
            local rc, out = run(conf(true), "-t", case[1])
            assert.equal(1, rc)
            assert.matches(case[2], out, 1, true)
            assert.is_nil(out:find("c2VjcmV0", 1, true), "the value was echoed: " .. out)
        end
        local f = assert(io.open(dir .. "/bad-secrets", "w"))
        f:write("FCFS_SECRET_SEAL_KEYS=1:" .. random_key() .. "\nFCFS_SECRET_OTHER=c2VjcmV0\n")
        f:close()
        local text = conf(true):gsub('secrets_file = "[^"]*"', 'secrets_file = "bad-secrets"')
        local rc, out = run(text, "-t")
        assert.equal(1, rc)
        assert.matches("bad-secrets:2: unknown secret name", out, 1, true)
        assert.is_nil(out:find("c2VjcmV0", 1, true))
    end)
end)
